"""The graded labs, end to end: sources pass, student versions leak nothing, the grader grades anything.

nbgrader runs in this process (karpa_lab.autograde.pipeline drives its Python API); every notebook runs in its
own kernel. The slow tests are split so that `pytest -n 2` spreads them over two workers. The source labs
also run under nbval with the lessons (`make notebooks`: the Makefile's NOTEBOOKS lists labs/*/*.ipynb).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from karpa_lab.autograde import pipeline as driver

pytest.importorskip("nbgrader")
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning",  # nbgrader's gradebook, not ours
                                        "ignore::nbformat.warnings.MissingIDFieldWarning")

ROOT = Path(__file__).resolve().parents[1]
LABS = ROOT / "labs"
NAMES = driver.lab_names(LABS)
CELL_TIMEOUT = 15  # seconds per cell for lab 01's bad submissions: cells take < 1 s, imports 3-6 s on a busy CPU


def source_py(lab: str) -> str:
    return (LABS / lab / f"{lab}.py").read_text(encoding="utf-8")


def secret_lines(lab: str) -> set[str]:
    """Read from the .py twin, independently of the driver: lines inside the solution / hidden-test markers
    and the model answers of written questions, that appear nowhere else in the source."""
    text = source_py(lab)
    secret = set()
    for m in re.finditer(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", text, re.S):
        secret |= {line.strip() for line in m.group(2).splitlines()}
    for m in re.finditer(r'# %% \[markdown\] nbgrader=\{[^\n]*"solution": true[^\n]*\n(.*?)(?=\n# %%|\Z)', text, re.S):
        secret |= {line.strip().lstrip("# ").strip() for line in m.group(1).splitlines()}
    public = re.sub(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n.*?### END \1", "", text, flags=re.S)
    public_lines = {line.strip() for line in public.splitlines()}
    return {line for line in secret - public_lines if len(line) > 8}


def cells_by_id(nb: dict) -> dict[str, dict]:
    return {c["metadata"]["nbgrader"]["grade_id"]: c for c in nb["cells"] if "nbgrader" in c.get("metadata", {})}


def points(notebook: Path, manual: bool = False) -> dict[str, float]:
    """Points of each graded cell: the code tests, or (manual=True) the written answers."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return {k: c["metadata"]["nbgrader"]["points"] for k, c in cells_by_id(nb).items()
            if c["metadata"]["nbgrader"].get("grade") and (c["cell_type"] == "markdown") == manual}


def validator(**traits):
    from nbgrader.validator import Validator
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(LABS)).load_config()
    return Validator(config=config, **traits)


def load(notebook: Path) -> dict:
    """A notebook as JSON, each cell's source one string."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        cell["source"] = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    return nb


def solved(released: Path, lab: str) -> dict:
    """The released notebook with every answer cell filled in from the source: a student who got it all right."""
    nb = load(released)
    answers = cells_by_id(load(LABS / lab / f"{lab}.ipynb"))
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            cell["source"] = answers[meta["grade_id"]]["source"]
    return nb


def submit(folder: Path, student: str, lab: str, nb: dict) -> None:
    path = folder / student / lab / f"{lab}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


def grade_edits(tmp_path: Path, lab: str, edits: dict[str, tuple[str, list[tuple[str, str]]]],
                timeout: float | None = None) -> tuple[dict, Path]:
    """Autograde the worked solution (as "ada") and, in the same run, one submission per student of ``edits``:
    the solution with (old, new) replacements made in one answer cell. Returns the results and the course."""
    labs = tmp_path / "labs"
    labs.mkdir()
    shutil.copy(LABS / "nbgrader_config.py", labs)
    shutil.copytree(LABS / lab, labs / lab)
    (folder,) = driver.release(tmp_path / "release", labs, [lab])
    good = solved(folder / f"{lab}.ipynb", lab)
    subs = tmp_path / "submitted"
    submit(subs, "ada", lab, good)
    for student, (cell, replacements) in edits.items():
        nb = json.loads(json.dumps(good))
        source = cells_by_id(nb)[cell]["source"]
        for old, new in replacements:
            assert source.count(old) == 1, (student, cell, old)  # the worked solution still reads as expected
            source = source.replace(old, new)
        cells_by_id(nb)[cell]["source"] = source
        submit(subs, student, lab, nb)
    course = tmp_path / "course"
    return {r.student: r for r in driver.autograde(subs, course, labs, timeout=timeout)}, course


def read_grades(course: Path) -> list[dict]:
    with open(course / "grades.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_there_are_labs():
    assert "01_lstm_cell" in NAMES
    assert (LABS / "nbgrader_config.py").exists()


def test_alembic_is_asked_once_per_process(tmp_path, monkeypatch):
    """A new gradebook runs `alembic heads` in a subprocess (seconds of CPU): two releases ask it once."""
    import nbgrader.api

    calls = []
    original = getattr(nbgrader.api.get_alembic_version, "__wrapped__", nbgrader.api.get_alembic_version)
    monkeypatch.setattr(nbgrader.api, "get_alembic_version", lambda: calls.append(1) or original())
    for name in ("first", "second"):
        (folder,) = driver.release(tmp_path / name, LABS, [NAMES[0]])
        assert (folder / f"{NAMES[0]}.ipynb").exists()
    assert len(calls) == 1


@pytest.mark.parametrize("lab", NAMES)
def test_lab_is_well_formed(lab):
    """At least 10 points over several test cells, hidden tests, one written answer, the .py carrying nbgrader."""
    notebook = LABS / lab / f"{lab}.ipynb"
    tests, written = points(notebook), points(notebook, manual=True)
    assert sum(tests.values()) + sum(written.values()) >= 10 and len(tests) >= 3, (tests, written)
    assert len(written) == 1, f"{lab} should have one written answer graded by hand, has {written}"
    text = source_py(lab)
    assert text.count("### BEGIN HIDDEN TESTS") >= 3 and text.count("### BEGIN SOLUTION") >= 2
    assert text.count(' nbgrader={"grade": true') == len(tests) + len(written), "nbgrader metadata in the .py"


@pytest.mark.parametrize("lab", NAMES)
def test_nbgrader_metadata_survives_jupytext(lab):
    """The .py twin carries each cell's nbgrader metadata, and .ipynb -> .py -> .ipynb changes nothing."""
    import jupytext

    py, ipynb = LABS / lab / f"{lab}.py", LABS / lab / f"{lab}.ipynb"
    from_py = [c.metadata.get("nbgrader") for c in jupytext.read(py).cells]
    from_ipynb = [c.get("metadata", {}).get("nbgrader") for c in load(ipynb)["cells"]]
    assert from_py == from_ipynb and sum(m is not None for m in from_py) >= 8
    assert jupytext.writes(jupytext.read(ipynb), fmt="py:percent") == py.read_text(encoding="utf-8")


@pytest.mark.slow
@pytest.mark.parametrize("lab", NAMES)
def test_source_lab_passes_nbgrader_validate(lab):
    assert validator().validate(str(LABS / lab / f"{lab}.ipynb")) == {}


@pytest.mark.slow
@pytest.mark.parametrize("lab", NAMES)
def test_release_leaks_nothing_and_passes_no_test(lab, tmp_path):
    before = tree_hash(LABS)
    (folder,) = driver.release(tmp_path / "release", LABS, [lab])
    assert sorted(p.name for p in folder.iterdir()) == [f"{lab}.ipynb"], "only the notebook is handed out"
    released = folder / f"{lab}.ipynb"
    text = "\n".join(c["source"] for c in load(released)["cells"])
    for marker in driver.MARKERS:
        assert marker not in text
    secret = secret_lines(lab)
    assert len(secret) >= 10, "the leak check must have solution lines to look for"
    leaked = sorted(secret & {line.strip() for line in text.splitlines()})
    assert not leaked, f"solution or hidden-test lines in the student version: {leaked}"
    assert "jupytext" not in json.loads(released.read_text(encoding="utf-8"))["metadata"]
    result = validator(invert=True).validate(str(released))
    assert result == {}, f"the untouched student version passes tests: {result}"
    assert tree_hash(LABS) == before, "releasing must not write into labs/"


@pytest.mark.slow
@pytest.mark.parametrize("lab", [name for name in NAMES if name != "01_lstm_cell"])  # 01: in the test below
def test_solution_gets_full_marks_and_the_release_zero(lab, tmp_path, sandbox):
    labs = tmp_path / "labs"
    labs.mkdir()
    shutil.copy(LABS / "nbgrader_config.py", labs)
    shutil.copytree(LABS / lab, labs / lab)
    (folder,) = driver.release(tmp_path / "release", labs, [lab])
    subs = tmp_path / "submissions"
    submit(subs, "ada", lab, solved(folder / f"{lab}.ipynb", lab))
    submit(subs, "bob", lab, load(folder / f"{lab}.ipynb"))
    kept = dict(zip(driver.EXCHANGE_FILES, ("2026-12-01 10:00:00.000000 UTC", "5e" * 64)))
    for name, text in kept.items():  # as `nbgrader collect` leaves them beside the notebook
        (subs / "ada" / lab / name).write_text(text, encoding="utf-8")
    results = {r.student: r for r in driver.autograde(subs, tmp_path / "course", labs)}  # nbgrader_config's timeout
    graded = tmp_path / "course" / "autograded" / "ada" / lab
    for name, text in kept.items():  # release_feedback pairs the feedback with the submission by its secret
        assert (graded / name).read_text(encoding="utf-8") == text, name
    full = sum(points(LABS / lab / f"{lab}.ipynb").values())
    assert results["ada"].score == full and results["ada"].max_auto == full, results["ada"]
    assert results["ada"].problems == [] and results["ada"].needs_manual, results["ada"]
    assert results["bob"].score == 0 and not results["bob"].needs_manual, results["bob"]
    rows = {r["student_id"]: r for r in read_grades(tmp_path / "course")}
    assert set(rows) == {"ada", "bob"} and float(rows["bob"]["score"]) == 0
    assert float(rows["ada"]["score"]) == full, "the written answer waits for the teacher"


VANDAL = '''
import pathlib
junk = "not a notebook"
for target in ["../../../gradebook.db", "../../../source/{lab}/{lab}.ipynb", "../../../release/{lab}/{lab}.ipynb",
               "../../ada/{lab}/{lab}.ipynb", "../../../submitted/ada/{lab}/{lab}.ipynb", "../../../grades.csv",
               "{labs}/{lab}/{lab}.ipynb", "{labs}/{lab}/planted.py"]:
    path = pathlib.Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(junk)
'''


@pytest.mark.slow
def test_bad_submissions_are_graded_and_contained(tmp_path, sandbox):
    """Raising, looping forever, editing or deleting test cells, writing outside its folder: each gets a grade."""
    lab = "01_lstm_cell"
    labs = tmp_path / "labs"
    labs.mkdir()
    shutil.copy(LABS / "nbgrader_config.py", labs)
    shutil.copytree(LABS / lab, labs / lab)
    (folder,) = driver.release(tmp_path / "release", labs, [lab])
    good = solved(folder / f"{lab}.ipynb", lab)
    pts = points(LABS / lab / f"{lab}.ipynb")
    full = sum(pts.values())

    def variant(edit) -> dict:
        nb = json.loads(json.dumps(good))
        edit(nb, cells_by_id(nb))
        return nb

    def raises(nb, cells):  # a stray error at the top of the sequence cell: lstm_sequence is never defined
        cells["lstm_sequence"]["source"] = "raise ValueError('half done')\n" + cells["lstm_sequence"]["source"]

    def loops(nb, cells):  # a loop that forgets to advance, before the function: the cell never ends
        cells["remember_bias"]["source"] = ("import time\nt = 0\nwhile t < 3:\n    time.sleep(0.05)  # spares the CPU\n"
                                            + cells["remember_bias"]["source"])

    def edits(nb, cells):  # a wrong cell (h = o * c), and the test that would catch it rewritten to pass
        src = cells["lstm_cell"]["source"]
        cells["lstm_cell"]["source"] = src.replace("* torch.tanh(c_next)", "* c_next")
        cells["test_cell_values"]["source"] = "print('all good')"

    def deletes(nb, cells):  # a wrong bias, and its test deleted (with two more)
        cells["remember_bias"]["source"] = "def remember_bias(hidden_size):\n    return torch.zeros(4 * hidden_size)\n"
        nb["cells"] = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in
                       ("test_remember", "test_cell_shapes", "test_cell_values")]

    def vandal(nb, cells):
        cells["remember_bias"]["source"] += VANDAL.format(lab=lab, labs=labs)

    assert "* torch.tanh(c_next)" in cells_by_id(good)["lstm_cell"]["source"], "the edit below must change it"
    subs = tmp_path / "submissions"
    submit(subs, "ada", lab, good)
    submit(subs, "blank", lab, load(folder / f"{lab}.ipynb"))  # the untouched student version
    for student, edit in [("raiser", raises), ("looper", loops), ("editor", edits), ("deleter", deletes),
                          ("vandal", vandal)]:
        submit(subs, student, lab, variant(edit))
    sources_before, subs_before = tree_hash(labs), tree_hash(subs)

    course = tmp_path / "course"
    results = {r.student: r for r in driver.autograde(subs, course, labs, timeout=CELL_TIMEOUT)}
    report = (course / "report.txt").read_text(encoding="utf-8")

    expected = {
        "ada": full,
        "blank": 0,
        "raiser": full - pts["test_sequence_values"] - pts["test_sequence_chunks"],
        "looper": full - pts["test_remember"],
        "editor": pts["test_cell_shapes"] + pts["test_sequence_chunks"] + pts["test_remember"],
        "deleter": full - pts["test_remember"],
        "vandal": full,
    }
    assert {s: r.score for s, r in results.items()} == expected, report
    problems = {s: " | ".join(r.problems) for s, r in results.items()}
    assert results["ada"].problems == [], report
    assert results["ada"].needs_manual and not results["blank"].needs_manual, "the written answer waits for the teacher"
    assert "ValueError: half done" in problems["raiser"] and "test_sequence_values: NameError" in problems["raiser"]
    assert f"remember_bias: stopped after the {CELL_TIMEOUT} s limit per cell" in problems["looper"]
    assert "locked cell test_cell_values was edited" in problems["editor"]
    assert "test_cell_values: AssertionError" in problems["editor"]
    assert "locked cell test_remember was deleted" in problems["deleter"]
    assert "test_remember: AssertionError" in problems["deleter"]
    assert "changed" not in problems["vandal"], report  # its writes land in its sandbox, never in labs/

    # nothing outside the vandal's own throwaway copy changed
    assert tree_hash(labs) == sources_before and tree_hash(subs) == subs_before
    assert not (labs / lab / "planted.py").exists()
    for student in expected:
        nb = json.loads((course / "autograded" / student / lab / f"{lab}.ipynb").read_text(encoding="utf-8"))
        assert len(nb["cells"]) >= len(good["cells"]) - 2
    hidden = [driver.HIDDEN.sub("", c["source"]) for c in load(labs / lab / f"{lab}.ipynb")["cells"]]
    assert [c["source"] for c in load(course / "source" / lab / f"{lab}.ipynb")["cells"]] == hidden, \
        "the course's source is the lab without its hidden tests"
    rows = read_grades(course)
    assert sorted(r["student_id"] for r in rows) == sorted(expected)
    assert {r["student_id"]: float(r["score"]) for r in rows} == {s: float(v) for s, v in expected.items()}
