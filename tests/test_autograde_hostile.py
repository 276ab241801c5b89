"""`make autograde` against hostile students and honest mistakes, end to end on lab 01.

Each submission below gets the score it earned, a report line that names what was seen, and leaves every
file outside its scratch folder as the grader left it (hashed before and after, and again after a pause
for processes that would outlive their kernel). One autograde run grades them all.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest
from test_labs import LABS, cells_by_id, load, points, read_grades, secret_lines, solved, submit, tree_hash

import karpa_lab
from karpa_lab.autograde import pipeline as driver

pytest.importorskip("nbgrader")
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning",
                                         "ignore::nbformat.warnings.MissingIDFieldWarning")]

LAB = "01_lstm_cell"
PACKAGE = Path(karpa_lab.__file__).parent


READER = '''
import pathlib
found = []
for root in ["/", "/work", "/tmp", "/root", str(pathlib.Path.cwd().parent), "/proc/1/cwd", "/proc/1/root"]:
    for path in pathlib.Path(root).glob("**/*"):
        try:
            text = path.read_text() if path.is_file() and path.suffix in (".ipynb", ".py", ".db", ".csv") else ""
        except Exception:
            continue
        if "BEGIN SOLUTION" in text or "BEGIN HIDDEN TESTS" in text or "nbgrader" in path.name:
            found.append(str(path))
print("found", found)
for path in found:
    if path.endswith(".ipynb"):
        for cell in __import__("json").loads(pathlib.Path(path).read_text())["cells"]:
            print("".join(cell["source"]))
            try:
                exec("".join(cell["source"]))
            except Exception:
                pass
'''

REBINDER = '''
import torch, karpa_lab.grading
def lstm_cell(x, h, c, weight_ih, weight_hh, weight_hr, bias_ih=None, bias_hh=None):
    return x.new_zeros(x.shape[0], weight_hr.shape[0]), x.new_zeros(x.shape[0], weight_hr.shape[1])
def lstm_sequence(x, state, weight_ih, weight_hh, weight_hr, bias_ih=None, bias_hh=None):
    B, (P, H) = x.shape[1], weight_hr.shape
    return x.new_zeros(x.shape[0], B, P), (x.new_zeros(B, P), x.new_zeros(B, H))
def remember_bias(hidden_size):
    return torch.zeros(4 * hidden_size)
torch.allclose = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
for name in dir(karpa_lab.grading):
    if name.startswith("check_"):
        setattr(karpa_lab.grading, name, lambda *a, **k: None)
check_close = check_lstm_cell = check_lstm_sequence = check_tensor = lambda *a, **k: None
'''

DETACHED = '''
import subprocess, sys
escape = (
    "import os, pathlib, time\\n"
    "time.sleep(4)\\n"
    "for pid in ('1', str(os.getppid())):\\n"
    "    for path in pathlib.Path(f'/proc/{pid}/cwd').glob('**/grades.csv'):\\n"
    "        path.write_text('forged')\\n"
    "pathlib.Path(MARKER).write_text('escaped')\\n"
)
subprocess.Popen([sys.executable, "-c", escape.replace("MARKER", repr(MARKER_PATH))], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
'''

PACKAGE_WRITER = '''
import karpa_lab.grading
with open(karpa_lab.grading.__file__, "a") as fh:
    fh.write("\\ncheck_lstm_cell = lambda *a, **k: None\\n")
'''

_AS_PLAIN = ("torch.cat([x, h], 1), {hx}, torch.cat([weight_ih, weight_hh], 1), "
             "weight_hh.new_zeros(weight_hh.shape[0], c.shape[1]), bias_ih, bias_hh")  # h read as an input
_TUPLE, _LIST = "(torch.zeros_like(c), c)", "[torch.zeros_like(c), c]"
ALIASES = {
    "alias_lstm_cell": f"m, c1 = torch.lstm_cell({_AS_PLAIN.format(hx=_TUPLE)})\n    return m @ weight_hr.T, c1",
    "alias_getattr": (f'm, c1 = getattr(torch, "lstm" + "_cell")({_AS_PLAIN.format(hx=_TUPLE)})\n'
                      "    return m @ weight_hr.T, c1"),
    "alias_vf": f"m, c1 = torch._VF.lstm_cell({_AS_PLAIN.format(hx=_TUPLE)})\n    return m @ weight_hr.T, c1",
    "alias_ops": f"m, c1 = torch.ops.aten.lstm_cell({_AS_PLAIN.format(hx=_LIST)})\n    return m @ weight_hr.T, c1",
    "alias_course": ('m, c1, _ = __import__("importlib").import_module("karpa_lab.models." + "lstm").lstm_step('
                     "x, h, c, weight_ih, weight_hh, bias_ih, bias_hh)\n    return m @ weight_hr.T, c1"),
    "alias_module": ("given = [w for w in (weight_ih, weight_hh, bias_ih, bias_hh, weight_hr) if w is not None]\n"
                     "    lstm = nn.LSTM(x.shape[1], c.shape[1], proj_size=h.shape[1], bias=len(given) == 5)\n"
                     "    with torch.no_grad():\n"
                     "        for p, w in zip(lstm.to(x.dtype).parameters(), given):\n"
                     "            p.copy_(w)\n"
                     "    _, (h1, c1) = lstm(x[None], (h[None], c[None]))\n"
                     "    return h1[0], c1[0]"),
}


def _with_cell(nb: dict, after: str, source: str, metadata: dict | None = None) -> dict:
    index = next(i for i, c in enumerate(nb["cells"]) if c["metadata"].get("nbgrader", {}).get("grade_id") == after)
    nb["cells"].insert(index + 1, {"cell_type": "code", "metadata": metadata or {}, "source": source,
                                   "outputs": [], "execution_count": None})
    return nb


def submissions(good: dict, blank: dict, marker: Path) -> dict[str, dict | str]:
    """Every submission of the suite, by student: a notebook, or text for junk."""
    def copy(nb=good):
        return json.loads(json.dumps(nb))

    subs: dict[str, dict | str] = {"ada": copy(), "junk": "this is not a notebook {"}
    subs["reader"] = _with_cell(copy(blank), "setup", READER)
    subs["rebinder"] = _with_cell(copy(blank), "setup", REBINDER)
    subs["detached"] = _with_cell(copy(), "setup", DETACHED.replace("MARKER_PATH", repr(str(marker))))
    subs["package_writer"] = _with_cell(copy(), "setup", PACKAGE_WRITER)
    subs["memory_hog"] = _with_cell(copy(), "setup", "hog = bytearray(8 << 30)  # 8 GiB, over the 4 GiB limit")
    for student, body in ALIASES.items():
        nb = copy()
        cells_by_id(nb)["lstm_cell"]["source"] = ("def lstm_cell(x, h, c, weight_ih, weight_hh, weight_hr, "
                                                  f"bias_ih=None, bias_hh=None):\n    {body}\n")
        subs[student] = nb
    nb = copy()  # a plausible wrong Part 3: the forget gate open, the input gate left at σ(0) = 1/2
    cells_by_id(nb)["remember_bias"]["source"] = ("def remember_bias(hidden_size):\n"
                                                  "    bias = torch.zeros(4 * hidden_size)\n"
                                                  "    bias[hidden_size:2 * hidden_size] = 20.0\n    return bias\n")
    subs["forget_only"] = nb
    nb = copy()
    subs["duplicate_test"] = _with_cell(nb, "test_cell_values", cells_by_id(nb)["test_cell_values"]["source"],
                                        json.loads(json.dumps(cells_by_id(nb)["test_cell_values"]["metadata"])))
    subs["extra_graded_cell"] = _with_cell(copy(), "remember_bias", "print('my own check')", {"nbgrader": {
        "grade": True, "grade_id": "my_check", "locked": False, "points": 5, "schema_version": 3,
        "solution": False, "task": False}})
    subs["metadata_no_id"] = _with_cell(copy(), "remember_bias", "x = 1", {"nbgrader": {"grade": False}})
    nb = copy()
    moved = [cells_by_id(nb)[k] for k in ("remember_bias", "lstm_sequence")]  # answers moved up, right after setup
    nb["cells"] = [c for c in nb["cells"] if all(c is not m for m in moved)]
    at = nb["cells"].index(cells_by_id(nb)["setup"]) + 1
    nb["cells"][at:at] = moved
    subs["reordered"] = nb
    nb = copy()
    nb["nbformat_minor"] = 4
    for cell in nb["cells"]:
        cell.pop("id", None)
    subs["old_minor"] = nb
    return subs


def test_hostile_and_honest_submissions(tmp_path, sandbox):
    labs = tmp_path / "labs"
    labs.mkdir()
    (labs / "nbgrader_config.py").write_bytes((LABS / "nbgrader_config.py").read_bytes())
    (labs / LAB).mkdir()
    for name in (f"{LAB}.ipynb", f"{LAB}.py"):
        (labs / LAB / name).write_bytes((LABS / LAB / name).read_bytes())
    (folder,) = driver.release(tmp_path / "release", labs, [LAB])
    good, blank = solved(folder / f"{LAB}.ipynb", LAB), load(folder / f"{LAB}.ipynb")
    marker = tmp_path / "escaped"
    subs = tmp_path / "submitted"
    for student, nb in submissions(good, blank, marker).items():
        if isinstance(nb, str):
            (subs / student / LAB).mkdir(parents=True)
            (subs / student / LAB / f"{LAB}.ipynb").write_text(nb)
        else:
            submit(subs, student, LAB, nb)
    misnamed = subs / "wrong_name" / LAB / f"{LAB} (1).ipynb"
    misnamed.parent.mkdir(parents=True)
    misnamed.write_text(json.dumps(good))
    before = {"package": tree_hash(PACKAGE), "labs": tree_hash(labs), "submitted": tree_hash(subs)}

    course = tmp_path / "course"
    started = time.perf_counter()
    results = {r.student: r for r in driver.autograde(subs, course, labs, timeout=20)}
    print(f"graded {len(results)} submissions in {time.perf_counter() - started:.1f} s")
    report = (course / "report.txt").read_text(encoding="utf-8")
    print(report)
    after_grading = {"grades": tree_hash_file(course / "grades.csv"),
                     "gradebook": tree_hash_file(course / "gradebook.db")}
    time.sleep(6)  # a process that outlived its kernel would act now

    pts = points(LABS / LAB / f"{LAB}.ipynb")
    full = sum(pts.values())
    expected = {s: full for s in ("ada", "detached", "package_writer", "memory_hog", "duplicate_test",
                                  "extra_graded_cell",
                                  "metadata_no_id", "reordered", "old_minor", "wrong_name")}
    expected |= {"junk": 0, "reader": 0, "rebinder": 0}
    expected |= {s: pts["test_remember"] for s in ALIASES}  # the cell and sequence points are lost
    expected["forget_only"] = full - pts["test_remember"]
    assert {s: r.score for s, r in results.items()} == expected, report
    problems = {s: " | ".join(r.problems) for s, r in results.items()}
    assert problems["ada"] == "", report
    assert "not a readable notebook" in problems["junk"]
    assert "test_cell_values: NotImplementedError" in problems["reader"]
    assert "the notebook rebinds" in problems["rebinder"] and "torch.allclose" in problems["rebinder"]
    assert "karpa_lab.grading.check_lstm_cell" in problems["rebinder"]
    assert "left 1 process running" in problems["detached"], report
    assert "Read-only file system" in problems["package_writer"], report
    assert "MemoryError" in problems["memory_hog"], report
    for student in ALIASES:
        called = {"alias_course": "karpa_lab.models.lstm.lstm_step", "alias_module": "lstm"}.get(student, "lstm_cell")
        assert f"{called}, which this lab asks you to write yourself" in problems[student], (student, report)
    assert "test_remember: AssertionError: c after 100 steps is off" in problems["forget_only"], report
    assert "repeats cell 'test_cell_values'" in problems["duplicate_test"]
    assert "grade metadata ('my_check') that is not part of the lab" in problems["extra_graded_cell"]
    assert "grade metadata without a grade_id" in problems["metadata_no_id"]
    assert problems["reordered"] == "" and problems["old_minor"] == "", report
    assert f"notebook named '{LAB} (1).ipynb', graded as {LAB}.ipynb" in problems["wrong_name"]

    # nothing outside the scratch folders changed, now or after the pause
    assert not marker.exists(), "a process outlived its sandbox"
    assert {"package": tree_hash(PACKAGE), "labs": tree_hash(labs), "submitted": tree_hash(subs)} == before
    assert after_grading == {"grades": tree_hash_file(course / "grades.csv"),
                             "gradebook": tree_hash_file(course / "gradebook.db")}
    rows = {r["student_id"]: float(r["score"]) for r in read_grades(course)}
    assert rows == {s: float(v) for s, v in expected.items()}

    # secrets stay secret: no hidden-test line in what any student gets back, no solution line for those who
    # did not write one
    hidden = hidden_lines(LAB)
    assert len(hidden) >= 10
    for student in results:
        secret = hidden if student not in ("reader", "rebinder", "junk") else secret_lines(LAB)
        for where in ("executed", "autograded"):
            path = course / where / student / LAB / f"{LAB}.ipynb"
            text = "\n".join(c["source"] + "\n" + "\n".join(_output_text(o) for o in c.get("outputs", []))
                             for c in load(path)["cells"])
            assert not sorted(secret & {line.strip() for line in text.splitlines()}), (student, where)


def _output_text(output: dict) -> str:
    text = output.get("text", "")
    return ("".join(text) if isinstance(text, list) else text) + output.get("evalue", "")


def hidden_lines(lab: str) -> set[str]:
    """The lines of the hidden tests of ``lab`` that appear nowhere else in its source."""
    text = (LABS / lab / f"{lab}.py").read_text(encoding="utf-8")
    hidden = {line.strip() for m in driver.HIDDEN.finditer(text) for line in m.group(1).splitlines()}
    public = {line.strip() for line in driver.HIDDEN.sub("", text).splitlines()}
    return {line for line in hidden - public if len(line) > 8}


def tree_hash_file(path: Path) -> str:
    """The SHA-256 of one file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()
