"""Release and autograde the course's labs: what `make release` and `make autograde` run.

    python -m karpa_lab.autograde release [--out release]
    python -m karpa_lab.autograde autograde SUBMISSIONS [--course grading] [--timeout 120] [--no-sandbox]
    python -m karpa_lab.autograde course DIR      # put the labs into your own (JupyterHub) course directory

**release** builds a temporary nbgrader course directory from ``labs/`` (``labs/nbgrader_config.py`` and
``source/<lab>/<lab>.ipynb``; the jupytext twin ``<lab>.py``, which holds every solution, is left out), runs
``nbgrader generate_assignment`` for every lab, refuses to go on if a solution line or a marker survived, and
copies ``release/<lab>/`` to ``--out``. Nothing is written into ``labs/``.

**autograde** takes a folder laid out ``<student>/<lab>/<lab>.ipynb`` (nbgrader's ``submitted/``, from
``nbgrader collect`` or filled by hand) and grades it in the course directory ``--course`` in two passes:

1. student code runs, each submission alone, in a bubblewrap sandbox (:mod:`karpa_lab.autograde.sandbox`)
   whose only writable folder is a scratch folder holding the released notebook and the submission; every
   test runs in this process against the values the sandbox hands back (:mod:`karpa_lab.autograde.grade`),
   and the executed notebook is written to ``<course>/executed/``. Without bubblewrap (macOS, a machine
   without ``bwrap``) autograde refuses; ``--no-sandbox`` runs the notebooks unconfined, for trusted
   notebooks only, and the report says so on its first line.
2. no student code runs: ``nbgrader autograde --no-execute`` in the course directory reads the executed
   notebooks and records the scores in ``gradebook.db``; ``autograded/`` then serves the formgrader and
   ``nbgrader generate_feedback``. The course directory's ``source/`` holds the labs without their hidden
   tests, so neither the autograded notebooks nor the feedback show them.

**course** copies the labs into ``DIR/source/`` and runs ``generate_assignment`` there (keeping ``DIR``'s own
nbgrader_config.py if it has one), so that ``nbgrader release_assignment`` and ``nbgrader collect`` of a
JupyterHub course work on them.

Then ``nbgrader export`` writes ``<course>/grades.csv`` (every student, every lab) and ``<course>/report.txt``
lists each submission's automatic score and every problem seen (failed tests, timeouts, edited or deleted
test cells put back, rebound checks, forbidden calls, notebooks that could not be read).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from karpa_lab.autograde.grade import HIDDEN, grade_submission, read_submission
from karpa_lab.autograde.sandbox import sandbox_problem

LABS = Path(__file__).resolve().parents[2] / "labs"
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
_REGION = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.S)
# What nbgrader's exchange puts beside a collected notebook: the submission time, and the secret that
# `release_feedback` and the student's `fetch_feedback` use to find each other's feedback.
EXCHANGE_FILES = ("timestamp.txt", "submission_secret.txt")
_COPY_IGNORE = shutil.ignore_patterns("*.py", ".ipynb_checkpoints", "__pycache__")


def lab_names(labs_dir: Path = LABS) -> list[str]:
    """The labs: folders ``NN_topic`` of ``labs_dir`` holding ``NN_topic.ipynb``."""
    return sorted(p.name for p in labs_dir.iterdir() if p.is_dir() and (p / f"{p.name}.ipynb").exists())


@contextmanager
def _environment_on_path():
    """nbgrader runs `alembic` from PATH when it creates a gradebook: use this environment's, as if activated."""
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{old}"
    try:
        yield
    finally:
        os.environ["PATH"] = old


def _ask_alembic_once() -> None:
    """Each new gradebook makes nbgrader run ``alembic heads`` in a subprocess, which imports nbgrader again
    and takes about 5 s of CPU here. The answer depends only on the installed nbgrader, so this process asks
    once and remembers it (a release, and every autograde, creates a gradebook)."""
    import nbgrader.api

    if not hasattr(nbgrader.api.get_alembic_version, "cache_info"):
        nbgrader.api.get_alembic_version = functools.cache(nbgrader.api.get_alembic_version)


def course_api(course: Path, **settings):
    """nbgrader's own Python API on ``course``, configured by its nbgrader_config.py plus ``settings``.

    ``settings`` name a trait as ``Class__trait``, e.g. ``ExecutePreprocessor__timeout=5``. nbgrader runs
    in this process; student code runs in its kernels.
    """
    from nbgrader.apps import NbGraderAPI
    from traitlets.config.loader import PyFileConfigLoader

    _ask_alembic_once()
    config = PyFileConfigLoader("nbgrader_config.py", path=str(course)).load_config()
    config.CourseDirectory.root = str(course)
    for key, value in settings.items():
        section, trait = key.split("__")
        config[section][trait] = value
    return NbGraderAPI(config=config)


def _checked(result: dict, what: str) -> dict:
    if not result["success"]:
        raise RuntimeError(f"nbgrader {what} failed:\n{result.get('log', '')}\n{result.get('error', '')}")
    return result


def _sources(cell: dict) -> str:
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def build_course(course: Path, labs: list[str], labs_dir: Path = LABS, hide_tests: bool = False) -> None:
    """Make ``course`` an nbgrader course directory holding ``labs`` and run ``generate_assignment`` for each.

    ``labs/nbgrader_config.py`` is copied only where the course has no configuration of its own. With
    ``hide_tests`` the course's source notebooks lose their hidden tests (the grader reads them from
    ``labs_dir``), so that nothing nbgrader writes from the gradebook (autograded notebooks, feedback)
    shows them.
    """
    course.mkdir(parents=True, exist_ok=True)
    if not (course / "nbgrader_config.py").exists():
        shutil.copy(labs_dir / "nbgrader_config.py", course / "nbgrader_config.py")
    for lab in labs:
        source = course / "source" / lab
        if source.exists():
            shutil.rmtree(source)
        shutil.copytree(labs_dir / lab, source, ignore=_COPY_IGNORE)
        notebook = source / f"{lab}.ipynb"
        nb = json.loads(notebook.read_text(encoding="utf-8"))
        nb["metadata"].pop("jupytext", None)  # students' copies must not pair themselves with a .py
        if hide_tests:
            for cell in nb["cells"]:
                cell["source"] = HIDDEN.sub("", _sources(cell))
        notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    api = course_api(course)
    with _environment_on_path():
        for lab in labs:
            _checked(api.generate_assignment(lab, force=True), f"generate_assignment {lab}")


def solution_lines(notebook: Path) -> set[str]:
    """Lines of a source lab that only its solutions and hidden tests contain (longer than a few characters)."""
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    secret, public = set(), set()
    for cell in nb["cells"]:
        text = _sources(cell)
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell["cell_type"] == "markdown" and meta.get("solution"):
            secret |= {line.strip() for line in text.splitlines()}
            continue
        secret |= {line.strip() for m in _REGION.finditer(text) for line in m.group(2).splitlines()}
        public |= {line.strip() for line in _REGION.sub("", text).splitlines()}
    return {line for line in secret - public if len(line) > 8 and line.strip("#()[]{}:,. ")}


def find_leaks(release_dir: Path, secret: set[str]) -> list[str]:
    """Every marker and solution line found in the files of ``release_dir`` (notebooks read cell by cell)."""
    leaks = []
    for path in sorted(p for p in release_dir.rglob("*") if p.is_file()):
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".ipynb":
            text = "\n".join(_sources(c) for c in json.loads(text)["cells"])
        lines = {line.strip() for line in text.splitlines()}
        leaks += [f"{path.name}: marker {m!r}" for m in MARKERS if m in text]
        leaks += [f"{path.name}: solution line {line!r}" for line in sorted(secret & lines)]
    return leaks


def release(out: Path, labs_dir: Path = LABS, labs: list[str] | None = None) -> list[Path]:
    """Generate the student version of every lab into ``out/<lab>/``; returns the folders written."""
    labs = labs or lab_names(labs_dir)
    written = []
    with tempfile.TemporaryDirectory(prefix="karpa-release-") as tmp:
        course = Path(tmp)
        build_course(course, labs, labs_dir)
        for lab in labs:
            leaks = find_leaks(course / "release" / lab, solution_lines(labs_dir / lab / f"{lab}.ipynb"))
            if leaks:
                raise RuntimeError(f"{lab}: the student version would leak:\n  " + "\n  ".join(leaks))
            dest = out / lab
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(course / "release" / lab, dest)
            written.append(dest)
    return written


# ---------------------------------------------------------------- autograde

@dataclass
class Result:
    """One submission: its automatic score and what went wrong, for the report."""

    student: str
    lab: str
    problems: list[str] = field(default_factory=list)
    score: float | None = None
    max_auto: float = 0.0
    max_manual: float = 0.0
    needs_manual: bool = False


def _snapshot(folder: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def _restore(folder: Path, snapshot: dict[Path, bytes], keep: Path) -> list[str]:
    """Put ``folder`` back as in ``snapshot``; what had changed is first copied under ``keep``. Returns the changes."""
    changed = []
    now = {p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    for path in sorted(now - snapshot.keys()) + [p for p in snapshot if p not in now or p.read_bytes() != snapshot[p]]:
        verb = "created" if path not in snapshot else "changed" if path.exists() else "deleted"
        if path.exists():
            copy = keep / path.relative_to(folder)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, copy)
            path.unlink()
        if path in snapshot:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(snapshot[path])
        changed.append(f"{verb} {path.relative_to(folder)}")
    return changed


def _tampering(student: dict, released: Path) -> list[str]:
    """Locked cells of the released notebook that the submission edited or deleted, and edited grade metadata
    (the grader uses the originals)."""
    theirs: dict[str, dict] = {}
    for cell in student.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader", {}) or {}
        theirs.setdefault(meta.get("grade_id"), cell)
    problems = []
    for cell in json.loads(released.read_text(encoding="utf-8"))["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        cell_id = meta.get("grade_id")
        if cell_id is None:
            continue
        mine = theirs.get(cell_id)
        their_meta = (mine or {}).get("metadata", {}).get("nbgrader", {})
        keys = ("points", "locked", "grade", "solution")
        if mine is not None and any(their_meta.get(k) != meta.get(k) for k in keys):
            problems.append(f"the metadata of cell {cell_id} was edited: the original was used")
        if not meta.get("locked"):
            continue
        if mine is None:
            problems.append(f"locked cell {cell_id} was deleted: the original was put back")
        elif _sources(mine).strip() != _sources(cell).strip():
            problems.append(f"locked cell {cell_id} was edited: the original was put back")
    return problems


def _notebook_problems(notebook: Path, timeout: float) -> list[str]:
    """Failed cells of an executed notebook: the cell id and the error, timeouts said as such."""
    problems = []
    for index, cell in enumerate(json.loads(notebook.read_text(encoding="utf-8"))["cells"]):
        where = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", f"cell {index} (not graded)")
        errors = [out for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        if any(out["ename"] == "CellTimeoutError" for out in errors):
            problems.append(f"{where}: stopped after the {timeout:g} s limit per cell (an endless loop?)")
        elif errors:
            first = errors[0]["evalue"].splitlines()[0] if errors[0]["evalue"] else ""
            problems.append(f"{where}: {errors[0]['ename']}" + (f": {first}" if first else ""))
    return problems


def _find_notebook(folder: Path, lab: str) -> tuple[Path | None, list[str]]:
    expected = folder / f"{lab}.ipynb"
    if expected.exists():
        return expected, []
    notebooks = sorted(folder.glob("*.ipynb"))
    if len(notebooks) == 1:
        return notebooks[0], [f"notebook named {notebooks[0].name!r}, graded as {lab}.ipynb"]
    return None, [f"no {lab}.ipynb in the submission ({len(notebooks)} notebooks)"]


@dataclass
class Limits:
    """How a submission runs: seconds per cell (and per call of a test), memory, wall clock, sandbox or not."""

    timeout: float = 120.0
    memory_gib: float = 4.0
    wall_clock: float = 900.0
    sandboxed: bool = True


def grade_in_isolation(student: str, lab: str, folder: Path, template: Path, executed: Path,
                       limits: Limits, labs_dir: Path = LABS) -> Result:
    """Pass 1: run one submission in a sandbox and test it here; keep the executed notebook in ``executed``."""
    result = Result(student, lab)
    notebook, result.problems = _find_notebook(folder, lab)
    if notebook is None:
        return result
    released = template / "release" / lab / f"{lab}.ipynb"
    with tempfile.TemporaryDirectory(prefix="karpa-grade-") as scratch:
        nb, problems = grade_submission(notebook, released, labs_dir / lab / f"{lab}.ipynb", lab, Path(scratch),
                                        timeout=limits.timeout, sandboxed=limits.sandboxed,
                                        memory_bytes=int(limits.memory_gib * 2**30), wall_clock=limits.wall_clock)
    theirs, unreadable = read_submission(notebook)
    result.problems += ([] if unreadable else _tampering(theirs, released)) + problems
    dest = executed / student / lab
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    (dest / f"{lab}.ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")
    for kept in EXCHANGE_FILES:
        if (folder / kept).exists():
            shutil.copy(folder / kept, dest / kept)
    result.problems += _notebook_problems(dest / f"{lab}.ipynb", limits.timeout)
    return result


def record_scores(course: Path, results: list[Result]) -> None:
    """Pass 2: score the executed notebooks in ``course`` without running them, then export grades.csv.

    Every student of ``results`` ends up in the gradebook, so the grade table lists them all (0 when
    nothing could be graded). Fills each result's scores from the gradebook.
    """
    from nbgrader.api import MissingEntry
    from nbgrader.plugins.export import CsvExportPlugin

    api = course_api(course, Execute__enabled=False, ClearOutput__enabled=False,
                     CourseDirectory__submitted_directory="executed")
    for r in results:
        if (course / "executed" / r.student / r.lab / f"{r.lab}.ipynb").exists():
            _checked(api.autograde(r.lab, r.student), f"autograde --no-execute {r.lab} for {r.student}")
    with api.gradebook as gb:
        for r in results:
            gb.update_or_create_student(r.student)
            try:
                submission = gb.find_submission(r.lab, r.student)
            except MissingEntry:
                continue
            grades = [g for nb in submission.notebooks for g in nb.grades]
            auto = [g for g in grades if g.cell.cell_type == "code"]
            r.score = sum(g.score for g in auto)
            r.max_auto = sum(g.max_score for g in auto)
            r.max_manual = sum(g.max_score for g in grades if g.cell.cell_type != "code")
            r.needs_manual = submission.needs_manual_grade
        CsvExportPlugin(to=str(course / "grades.csv")).export(gb)


class SandboxUnavailable(RuntimeError):
    """Autograding was asked for with a sandbox, and this machine cannot make one."""


def autograde(submissions: Path, course: Path, labs_dir: Path = LABS, timeout: float | None = None,
              limits: Limits | None = None) -> list[Result]:
    """Grade ``submissions/<student>/<lab>/`` in the course directory ``course``; write grades.csv and report.txt.

    ``timeout`` (seconds per cell) overrides nbgrader_config.py's and ``limits.timeout``. ``course`` is created
    when missing and reused otherwise (its gradebook keeps the manual grades given in the formgrader).
    Raises :class:`SandboxUnavailable` when ``limits.sandboxed`` and bubblewrap cannot run here.
    """
    limits = limits or Limits()
    problem = sandbox_problem() if limits.sandboxed else None
    if problem:
        raise SandboxUnavailable(f"no sandbox for the students' notebooks: {problem}. Install bubblewrap, or "
                                 "grade only notebooks you trust with --no-sandbox (make autograde NO_SANDBOX=1)")
    submissions, course = submissions.resolve(), course.resolve()
    labs = lab_names(labs_dir)
    results = []
    with tempfile.TemporaryDirectory(prefix="karpa-template-") as tmp:
        template = Path(tmp)
        build_course(template, labs, labs_dir, hide_tests=True)  # a gradebook that knows the labs and no student
        config = course_api(template).config.ExecutePreprocessor
        limits.timeout = timeout if timeout is not None else config.get("timeout", limits.timeout)
        if (course / "gradebook.db").exists():
            build_course(course, labs, labs_dir, hide_tests=True)
        else:
            shutil.copytree(template, course, dirs_exist_ok=True)
        if submissions != course / "submitted":
            shutil.copytree(submissions, course / "submitted", dirs_exist_ok=True)
        executed = course / "executed"
        if executed.exists():
            shutil.rmtree(executed)
        for student in sorted(p for p in submissions.iterdir() if p.is_dir()):
            for folder in sorted(p for p in student.iterdir() if p.is_dir()):
                if folder.name not in labs:
                    results.append(Result(student.name, folder.name, [f"unknown lab {folder.name!r}: not graded"]))
                    continue
                sources = _snapshot(labs_dir)
                r = grade_in_isolation(student.name, folder.name, folder, template, executed, limits, labs_dir)
                kept = course / "logs" / "changed-sources" / f"{student.name}-{folder.name}"
                touched = _restore(labs_dir, sources, kept)
                if touched:
                    r.problems.append(f"changed {labs_dir} while it ran: " + "; ".join(touched)
                                      + f" (restored; what it wrote is kept in {kept})")
                results.append(r)
    record_scores(course, results)
    (course / "report.txt").write_text(format_report(results, limits.sandboxed), encoding="utf-8")
    return results


def format_report(results: list[Result], sandboxed: bool = True) -> str:
    """One line per submission (automatic score, manual points pending), then its problems indented."""
    lines = [] if sandboxed else ["WARNING: graded with --no-sandbox: the notebooks ran unconfined, with this "
                                  "user's rights; their grades hold only if their authors are trusted"]
    for r in results:
        score = "not graded" if r.score is None else f"{r.score:g} / {r.max_auto:g} automatic"
        manual = f", {r.max_manual:g} to grade by hand" if r.needs_manual else ""
        lines.append(f"{r.student:<20} {r.lab:<20} {score}{manual}")
        lines += [f"    {p}" for p in r.problems]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """The command line: release, autograde, course."""
    parser = argparse.ArgumentParser(prog="python -m karpa_lab.autograde", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    rel = sub.add_parser("release", help="generate the student version of every lab")
    rel.add_argument("--out", type=Path, default=Path("release"))
    grade = sub.add_parser("autograde", help="grade SUBMISSIONS/<student>/<lab>/<lab>.ipynb")
    grade.add_argument("submissions", type=Path)
    grade.add_argument("--course", type=Path, default=Path("grading"), help="nbgrader course directory to grade in")
    grade.add_argument("--timeout", type=float, default=None, help="seconds per cell (default: nbgrader_config.py)")
    grade.add_argument("--memory", type=float, default=Limits.memory_gib, help="GiB of memory per submission")
    grade.add_argument("--wall-clock", type=float, default=Limits.wall_clock, help="seconds per submission")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="run the notebooks without bubblewrap (trusted notebooks only; the report says so)")
    own = sub.add_parser("course", help="add the labs to an nbgrader course directory (JupyterHub)")
    own.add_argument("dir", type=Path)
    for p in (rel, grade, own):
        p.add_argument("--labs", type=Path, default=LABS, help="the source labs (default: the course's labs/)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", module="nbgrader")  # SQLAlchemy noise from nbgrader's gradebook
    if args.command == "course":
        build_course(args.dir.resolve(), lab_names(args.labs), args.labs)
        print(f"{args.dir}: labs {', '.join(lab_names(args.labs))} in source/ and release/; next, in {args.dir}: "
              "nbgrader release_assignment <lab>")
        return
    if args.command == "release":
        for path in release(args.out, args.labs):
            print(f"released {path}")
        return
    if not args.submissions.is_dir():
        parser.error(f"{args.submissions} is not a folder of <student>/<lab>/<lab>.ipynb")
    limits = Limits(memory_gib=args.memory, wall_clock=args.wall_clock, sandboxed=not args.no_sandbox)
    try:
        results = autograde(args.submissions, args.course, args.labs, timeout=args.timeout, limits=limits)
    except SandboxUnavailable as err:
        sys.exit(f"make autograde: {err}")
    print(format_report(results), end="")
    print(f"grade table: {args.course / 'grades.csv'}   report: {args.course / 'report.txt'}")


