"""Every lesson/lab notebook is a pair NAME.py (py:percent, the source) + NAME.ipynb with the same inputs."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for folder in ("lessons", "labs") for p in (ROOT / folder).rglob("*.py")
                 if ".ipynb_checkpoints" not in p.parts and "# %%" in p.read_text(encoding="utf-8"))
NOTEBOOKS = sorted(p for folder in ("lessons", "labs") for p in (ROOT / folder).rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in p.parts)


def cells(nb) -> list[tuple[str, str]]:
    out = []
    for cell in nb["cells"]:
        src = cell["source"]
        out.append((cell["cell_type"], ("".join(src) if isinstance(src, list) else src).strip()))
    return out


def test_there_are_lessons():
    assert (ROOT / "lessons" / "00_tour.py").exists()


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pair_inputs_agree(source: Path):
    notebook = source.with_suffix(".ipynb")
    assert notebook.exists(), f"{source.relative_to(ROOT)} has no .ipynb: run 'make sync'"
    a = cells(jupytext.read(source))
    b = cells(json.loads(notebook.read_text(encoding="utf-8")))
    assert a == b, f"{source.relative_to(ROOT)} and its .ipynb differ: run 'make sync' (then 'make execute')"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_has_source_and_outputs(notebook: Path):
    assert notebook.with_suffix(".py").exists(), f"{notebook.relative_to(ROOT)} has no paired .py"
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    if notebook.parts[-3] == "lessons" or "lessons" in notebook.parts:
        assert all(c.get("execution_count") for c in code), (
            f"{notebook.relative_to(ROOT)} has cells that were never run: run 'make execute' so it carries outputs"
        )


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT)))
def test_stored_outputs_hold_no_error_and_every_figure(notebook: Path):
    """The committed outputs are what a learner sees before running anything: no traceback, and a picture
    wherever a cell shows one at its top level. A run under a non-interactive backend (MPLBACKEND=Agg, as
    nbval uses) stores none, and only drawing a figure parses its labels' mathtext."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        outputs = cell.get("outputs", [])
        errors = [o["ename"] for o in outputs if o.get("output_type") == "error"]
        assert not errors, f"{notebook.name} cell {index} stored an error ({errors[0]}): fix it, then make execute"
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if any(line.startswith("plt.show()") for line in source.splitlines()):
            assert any("image/png" in o.get("data", {}) for o in outputs), (
                f"{notebook.name} cell {index} shows a figure but stored none: execute it without MPLBACKEND=Agg")
