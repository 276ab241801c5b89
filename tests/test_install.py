"""The two install routes agree: the Makefile's venv and environment.yml's conda environment take the same
Python, the same torch pin, the same learner extras and the same locked versions (constraints.txt)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def makefile_var(name: str) -> str:
    return re.search(rf"^{name} := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).strip()


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower().replace("_", "-")


def test_environment_yml_takes_what_make_lab_takes():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    python = next(d for d in conda if d.startswith("python="))
    locked_with = re.search(r"Python (\d+\.\d+)", (ROOT / "constraints.txt").read_text()).group(1)
    assert python == f"python={locked_with}", "environment.yml's Python is not the one constraints.txt was made with"
    assert "-c constraints.txt" in pip
    torch_pin = next(d for d in pyproject()["project"]["dependencies"] if d.startswith("torch"))
    assert torch_pin in pip and "torch==2.13.0" in (ROOT / "Makefile").read_text()
    assert f"-e .[{makefile_var('LEARNER_EXTRAS')}]" in pip


def test_every_extra_the_makefile_names_exists():
    extras = set(pyproject()["project"]["optional-dependencies"])
    for var in ("LEARNER_EXTRAS", "TEST_EXTRAS"):
        assert set(makefile_var(var).split(",")) <= extras, var
    assert set(makefile_var("LEARNER_EXTRAS").split(",")) <= set(makefile_var("TEST_EXTRAS").split(","))


def test_the_lock_pins_every_dependency_and_agrees_with_pyproject():
    pins = constraints()
    project = pyproject()["project"]
    test_extras = makefile_var("TEST_EXTRAS").split(",")
    wanted = project["dependencies"] + [r for e in test_extras for r in project["optional-dependencies"][e]]
    missing = [r for r in wanted if requirement_name(r) not in pins]
    assert not missing, f"not in constraints.txt (run make lock): {missing}"
    for r in wanted:
        if "==" in r:
            assert pins[requirement_name(r)] == r.split("==")[1], r
    assert not any("+" in v for v in pins.values()), "a local version label (+cpu) does not exist on other platforms"
