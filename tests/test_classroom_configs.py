"""The classroom's configuration files parse, name settings that exist, and point at files the course has.

The one-server hub (classroom/jupyterhub_config.py) runs for real in tests/browser/test_classroom_hub.py; the
recipes for The Littlest JupyterHub and Zero to JupyterHub need a server or a cluster, so here they are parsed
and checked against the settings those projects define (TLJH's config schema, the Helm chart's values, the
JupyterHub and Spawner traits) and against the course's own layout.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")
jupyterhub = pytest.importorskip("jupyterhub")

from jupyterhub.app import JupyterHub  # noqa: E402
from jupyterhub.auth import Authenticator, DummyAuthenticator  # noqa: E402
from jupyterhub.proxy import ConfigurableHTTPProxy  # noqa: E402
from jupyterhub.spawner import LocalProcessSpawner  # noqa: E402
from traitlets.config import Config  # noqa: E402
from traitlets.config.loader import PyFileConfigLoader  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROOM = REPO / "classroom"
CLASSES = {"JupyterHub": JupyterHub, "Authenticator": Authenticator, "DummyAuthenticator": DummyAuthenticator,
           "Spawner": LocalProcessSpawner, "ConfigurableHTTPProxy": ConfigurableHTTPProxy}
# KubeSpawner is not installed here: the settings of it that the recipe uses, from its documentation.
KUBESPAWNER = {"pre_spawn_hook"}


def unknown_traits(config: Config, classes: dict = CLASSES, extra: dict | None = None) -> list[str]:
    """Every ``Class.trait`` that ``config`` sets and the class does not have."""
    bad = []
    for section, values in config.items():
        known = (extra or {}).get(section)
        for trait in values:
            if known is not None:
                ok = trait in known
            else:
                ok = section in classes and classes[section].class_traits(config=True).get(trait) is not None
            if not ok:
                bad.append(f"{section}.{trait}")
    return bad


def spawner(name: str, user_id: int = 7) -> SimpleNamespace:
    return SimpleNamespace(user=SimpleNamespace(name=name, id=user_id), environment={})


def load_hub_config(monkeypatch) -> Config:
    for key, value in {"KARPA_INSTRUCTORS": "teacher", "KARPA_STUDENTS": "ada bob", "KARPA_HUB_AUTHENTICATOR":
                       "dummy", "KARPA_HUB_PASSWORD": "x", "KARPA_HUB_SERVICE_TOKEN": "t"}.items():
        monkeypatch.setenv(key, value)
    return PyFileConfigLoader("jupyterhub_config.py", path=str(ROOM)).load_config()


def settings_dirs(environment: dict, course: Path = REPO, prefix: str | None = None) -> list[Path]:
    paths = environment["JUPYTER_CONFIG_PATH"].split(os.pathsep)
    return [course / Path(p).relative_to(prefix) if prefix else Path(p) for p in paths]


def test_one_server_hub_config(monkeypatch):
    config = load_hub_config(monkeypatch)
    assert unknown_traits(config) == []
    assert config.Authenticator.allowed_users == {"teacher", "ada", "bob"}
    assert config.JupyterHub.load_groups["formgrade-karpa-lab"]["users"] == ["teacher"]
    for name, role in (("teacher", "instructor"), ("ada", "student")):
        s = spawner(name)
        config.Spawner.pre_spawn_hook(s)
        dirs = settings_dirs(s.environment)
        assert dirs[0] == ROOM / "jupyter" / role and all(d.is_dir() for d in dirs), dirs
        assert s.environment["KARPA_EXCHANGE"] == "/srv/nbgrader/exchange"
    assert Path(config.Spawner.cmd[0]).name == "jupyterhub-singleuser"


def test_students_lose_the_teacher_tools_and_keep_the_assignments():
    student = ROOM / "jupyter" / "student"
    disabled = json.loads((student / "labconfig" / "page_config.json").read_text())["disabledExtensions"]
    assert {k for k, v in disabled.items() if v} == {"@jupyter/nbgrader:formgrader",
                                                     "@jupyter/nbgrader:create-assignment",
                                                     "@jupyter/nbgrader:course-list"}
    server = json.loads((student / "jupyter_server_config.json").read_text())["ServerApp"]["jpserver_extensions"]
    assert server == {"nbgrader.server_extensions.formgrader": False,
                      "nbgrader.server_extensions.course_list": False}
    nbgrader = PyFileConfigLoader("nbgrader_config.py", path=str(ROOM / "jupyter" / "common")).load_config()
    course = PyFileConfigLoader("nbgrader_config.py", path=str(REPO / "labs")).load_config()
    assert nbgrader.CourseDirectory.course_id == course.CourseDirectory.course_id


# TLJH's own schema (tljh/config_schema.py) for the sections the recipe sets.
TLJH_SCHEMA = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "users": {"type": "object", "additionalProperties": False, "properties": {
            "allowed": {"type": "array", "items": {"type": "string"}},
            "admin": {"type": "array", "items": {"type": "string"}},
            "banned": {"type": "array", "items": {"type": "string"}},
            "extra_user_groups": {"type": "object"}}},
        "limits": {"type": "object", "additionalProperties": False, "properties": {
            "memory": {"type": "string"}, "cpu": {"type": "integer"}}},
        "user_environment": {"type": "object", "additionalProperties": False, "properties": {
            "default_app": {"enum": ["jupyterlab", "classic"]}}},
        "services": {"type": "object", "properties": {"cull": {
            "type": "object", "additionalProperties": False, "properties": {
                "enabled": {"type": "boolean"}, "timeout": {"type": "integer"}, "every": {"type": "integer"},
                "concurrency": {"type": "integer"}, "users": {"type": "boolean"}, "max_age": {"type": "integer"},
                "remove_named_servers": {"type": "boolean"}}}}},
    },
}


def test_tljh_recipe():
    config = yaml.safe_load((ROOM / "tljh" / "config.yaml").read_text())
    jsonschema.validate(config, TLJH_SCHEMA)
    assert set(config["users"]["admin"]) <= set(config["users"]["allowed"])
    snippet = PyFileConfigLoader("karpa_lab.py", path=str(ROOM / "tljh")).load_config()
    assert unknown_traits(snippet) == []
    for name, role in (("instructor", "instructor"), ("ada", "student")):
        s = spawner(name)
        snippet.Spawner.pre_spawn_hook(s)
        dirs = settings_dirs(s.environment, prefix="/opt/karpa-lab")
        assert dirs[0].name == role and all(d.is_dir() for d in dirs), dirs
    script = ROOM / "tljh" / "setup.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    copied = re.search(r"^cp -r (.+) /opt/karpa-lab/$", script.read_text(), re.M).group(1).split()
    assert copied and all((REPO / p).exists() for p in copied), copied


# The Helm chart's values (jupyterhub/values.schema.yaml of the 4.x chart) for the keys the recipe sets.
def _obj(**props) -> dict:
    return {"type": "object", "additionalProperties": False, "properties": props}


Z2JH_SCHEMA = _obj(
    hub=_obj(config={"type": "object"}, extraConfig={"type": "object", "additionalProperties": {"type": "string"}}),
    singleuser=_obj(
        image=_obj(name={"type": "string"}, tag={"type": "string"}), uid={"type": "integer"},
        fsGid={"type": "integer"}, defaultUrl={"type": "string"},
        memory=_obj(limit={"type": "string"}, guarantee={"type": "string"}),
        cpu=_obj(limit={"type": "number"}, guarantee={"type": "number"}),
        extraEnv={"type": "object"}, initContainers={"type": "array"},
        storage=_obj(homeMountPath={"type": "string"}, extraVolumes={"type": "array"},
                     extraVolumeMounts={"type": "array"})),
    cull=_obj(enabled={"type": "boolean"}, timeout={"type": "integer"}),
)


def test_z2jh_recipe():
    values = yaml.safe_load((ROOM / "z2jh" / "values.yaml").read_text())
    jsonschema.validate(values, Z2JH_SCHEMA)
    hub = Config(values["hub"]["config"])
    assert unknown_traits(hub) == []
    config = Config()
    exec(compile(values["hub"]["extraConfig"]["karpa-lab"], "extraConfig", "exec"), {"c": config})
    assert unknown_traits(config, extra={"KubeSpawner": KUBESPAWNER}) == []
    s = spawner("ada", user_id=3)
    config.KubeSpawner.pre_spawn_hook(s)
    assert s.environment["NB_USER"] == "ada" and s.environment["NB_UID"] == "10003"
    assert all(d.is_dir() for d in settings_dirs(s.environment, prefix="/opt/karpa-lab"))
    mounts = {m["name"]: m["mountPath"] for m in values["singleuser"]["storage"]["extraVolumeMounts"]}
    assert mounts["nbgrader-exchange"] == values["singleuser"]["extraEnv"]["KARPA_EXCHANGE"]
    claim = yaml.safe_load((ROOM / "z2jh" / "exchange-pvc.yaml").read_text())
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    volume = values["singleuser"]["storage"]["extraVolumes"][0]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_course_image():
    text = (ROOM / "z2jh" / "Dockerfile").read_text()
    for line in re.findall(r"^COPY (.+)$", text, re.M):
        *sources, _ = line.split()
        assert all((REPO / s).exists() for s in sources), line
    assert text.index("torch==2.13.0") < text.index("[lab,grading,classroom]"), "torch is installed first"
    assert text.count("-c /opt/karpa-lab/constraints.txt") == 2, "both installs are pinned"
