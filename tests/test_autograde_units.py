"""The grader's parts that need no sandbox: the refusal without one, the data codec, the sandbox's mounts, the plan."""

from __future__ import annotations

import random
from collections import deque
from pathlib import Path

import pytest
import torch

from karpa_lab.autograde import grade, pipeline, sandbox
from karpa_lab.autograde.runner import decode, encode
from karpa_lab.nas.space import Genome

ROOT = Path(__file__).resolve().parents[1]


def test_autograde_refuses_without_a_sandbox(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "sandbox_problem", lambda: "bubblewrap is not installed")
    with pytest.raises(pipeline.SandboxUnavailable, match="--no-sandbox"):
        pipeline.autograde(tmp_path, tmp_path / "course")
    with pytest.raises(SystemExit, match="bubblewrap is not installed"):
        pipeline.main(["autograde", str(tmp_path), "--course", str(tmp_path / "course")])


def test_the_report_warns_when_unsandboxed():
    report = pipeline.format_report([pipeline.Result("ada", "01_lstm_cell", score=11, max_auto=11)], sandboxed=False)
    assert report.startswith("WARNING: graded with --no-sandbox")


def test_the_codec_rebuilds_data_and_nothing_else():
    rng = random.Random(3)
    value = ({"a": torch.arange(6.0).reshape(2, 3), 1: [None, True, 2.5, "x"]}, deque([Genome.mlp(8, 16)]), rng,
             torch.zeros(0, dtype=torch.bool))
    buffers: list[bytes] = []
    data = encode(value, buffers)
    classes = {f"{Genome.__module__}.{Genome.__qualname__}": Genome}
    back = decode(data, buffers, classes)
    assert torch.equal(back[0]["a"], value[0]["a"]) and back[0][1] == value[0][1]
    assert back[1] == value[1] and back[2].random() == random.Random(3).random() and back[3].shape == (0,)
    with pytest.raises(TypeError, match="does not read"):
        decode(data, buffers, {})
    with pytest.raises(TypeError, match="cannot be handed"):
        encode(object(), [])


def test_the_sandbox_sees_neither_the_course_nor_the_network(tmp_path):
    cmd = sandbox.bwrap_command(tmp_path, ["python"])
    assert {"--unshare-all", "--die-with-parent", "--new-session", "--clearenv"} <= set(cmd)
    writable = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--bind"]
    assert writable == [str(tmp_path)]
    mounted = {cmd[i + 1] for i, arg in enumerate(cmd) if arg in ("--ro-bind", "--bind")}
    assert str(ROOT / "labs") not in mounted and str(ROOT) not in mounted
    assert str(ROOT / "karpa_lab") in mounted
    # A course cloned under /tmp: its package and venv are bound after the private /tmp, not hidden by it.
    tmpfs = cmd.index("--tmpfs")
    assert cmd[tmpfs + 1] == "/tmp"
    binds = [i for i, arg in enumerate(cmd) if arg in ("--ro-bind", "--bind")]
    assert all(i > tmpfs for i in binds if cmd[i + 1].startswith("/tmp") or cmd[i + 1] == str(ROOT / "karpa_lab"))


def _cell(source: str, **nbgrader) -> dict:
    return {"cell_type": "code", "source": source, "metadata": {"nbgrader": nbgrader} if nbgrader else {}}


def test_the_plan_grades_each_cell_once_and_says_what_it_ignored():
    release = {"cells": [_cell("import torch", grade_id="setup", locked=True),
                         _cell("def f(): pass", grade_id="f", solution=True),
                         _cell("assert f() is None", grade_id="test_f", grade=True, locked=True, points=1)]}
    student = {"cells": [_cell("def f(): return None", grade_id="f", solution=True),
                         _cell("assert f() is None", grade_id="test_f", grade=True, locked=True, points=1),
                         _cell("assert f() is None", grade_id="test_f", grade=True, locked=True, points=1),
                         _cell("x = 1", grade_id="mine", grade=True, points=9),
                         _cell("y = 2", grade=False)]}
    cells, problems = grade.plan(student, release)
    assert [c["role"] for c in cells] == ["locked", "answer", "test", "ordinary", "ordinary", "ordinary"]
    assert cells[0]["source"] == "import torch" and cells[1]["source"] == "def f(): return None"
    assert problems == ["cell 2 repeats cell 'test_f': run as an ordinary cell, not graded",
                        "cell 3 carries grade metadata ('mine') that is not part of the lab: run as an ordinary "
                        "cell, not graded",
                        "cell 4 carries grade metadata without a grade_id: run as an ordinary cell, not graded"]
