"""Grade one submission: its code runs in the sandbox, every test runs here, outside its reach.

1. The plan: the student's cells in their order, each locked cell replaced by the released original (a
   deleted one put back, a repeated one or one with stray grade metadata run as an ordinary cell and said
   so in the report). Test cells are not run in the sandbox at all.
2. The sandbox (:mod:`karpa_lab.autograde.sandbox`) runs the plan in a scratch folder that holds only the
   released notebook and the submission.
3. The grader builds its own namespace from the released notebook's locked cells and helper definitions,
   where each of the student's functions is a :class:`~karpa_lab.autograde.remote.RemoteFunction`, and
   runs each test cell of the instructor's source there: its visible part (what it prints is the student's
   feedback), then its hidden part (only "a hidden test failed" and the assertion's message come back).
   A test fails if the notebook rebound the checks' building blocks (torch's comparisons, builtins, the
   course's checks) or called a torch function the lab forbids while the test ran.
4. The executed notebook, laid out as nbgrader expects (each graded cell once), carries the sandbox's
   outputs for the student's cells and the grader's for the tests: nbgrader scores it without running it.
"""

from __future__ import annotations

import ast
import contextlib
import json
import random
import re
import warnings
from pathlib import Path

import nbformat
import torch

from karpa_lab.autograde.remote import RemoteFunction, Session, captured
from karpa_lab.autograde.runner import SWITCHED_OFF
from karpa_lab.autograde.sandbox import Runner, SandboxStopped

HIDDEN = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS\n?", re.S)

# What each lab forbids inside the student's functions. ``torch``: torch functions, by a part of their name,
# caught however they are reached (nn.LSTMCell, torch.lstm_cell, torch._VF, torch.ops.aten, getattr).
# ``course``: the course's own reference implementations of the lab ("module:name"), caught when called
# during a test, however they were imported.
FORBIDDEN = {
    "01_lstm_cell": {"torch": ("lstm", "gru", "rnn_tanh", "rnn_relu"),
                     "course": ("karpa_lab.models.lstm:lstm_step", "karpa_lab.models.lstm:lstm_sequence",
                                "karpa_lab.models.lstm:LSTMCell", "karpa_lab.models.lstm:chrono_init_")},
    "02_gan_step": {"torch": ("binary_cross_entropy", "hinge", "margin"),
                    "course": ("karpa_lab.models.gan:discriminator_loss", "karpa_lab.models.gan:generator_loss",
                               "karpa_lab.models.gan:GANUpdate", "karpa_lab.metrics:mode_coverage",
                               "karpa_lab.data.synthetic:GaussianMixture2D.modes_covered",
                               "karpa_lab.data.synthetic:GaussianMixture2D.assign",
                               "karpa_lab.data.synthetic:GaussianMixture2D.quality")},
    "03_self_attention": {"torch": ("scaled_dot_product", "multi_head_attention"),
                          "course": ("karpa_lab.models.attention:scaled_dot_product_attention",
                                     "karpa_lab.models.attention:MultiHeadAttention",
                                     "karpa_lab.models.attention:causal_mask",
                                     "karpa_lab.models.attention:padding_mask")},
    "04_nas_evolution": {"torch": (), "course": ("karpa_lab.nas.searchers:regularized_evolution",
                                                 "karpa_lab.nas.space:Space.mutate")},
    "05_conv_layer": {"torch": ("conv", "backward", "grad"),
                      "course": ("karpa_lab.models.conv:conv2d_loops", "karpa_lab.models.conv:conv2d_im2col",
                                 "karpa_lab.models.conv:conv2d_backward")},
    "06_beam_search": {"torch": (), "course": ("karpa_lab.models.captioning:beam_search",
                                               "karpa_lab.models.captioning:exhaustive_search",
                                               "karpa_lab.models.captioning:sequence_logprob")},
    "07_policy_gradient": {"torch": (), "course": ("karpa_lab.rl:discounted_returns",
                                                   "karpa_lab.rl:policy_gradient_loss")},
    "08_distillation": {"torch": ("softmax", "cross_entropy", "kl_div", "nll_loss"),
                        "course": ("karpa_lab.models.distill:softmax_t",
                                   "karpa_lab.models.distill:soft_target_cross_entropy",
                                   "karpa_lab.models.distill:distillation_loss")},
    "09_gram_style": {"torch": (), "course": ("karpa_lab.models.texture:gram_matrix",
                                              "karpa_lab.models.texture:grams",
                                              "karpa_lab.models.texture:texture_loss")},
}


def _meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def plan(student: dict, release: dict) -> tuple[list[dict], list[str]]:
    """The cells to assemble, in the student's order: each with ``role`` answer/locked/test/ordinary/markdown.

    Every graded or locked cell of ``release`` appears exactly once (missing ones are appended).
    """
    released = {_meta(c)["grade_id"]: c for c in release["cells"] if _meta(c).get("grade_id")}
    cells, seen, problems = [], set(), []
    for index, cell in enumerate(student.get("cells", [])):
        gid = _meta(cell).get("grade_id")
        if gid in released and gid not in seen:
            seen.add(gid)
            cells.append(_planned(released[gid], _source(cell)))
            continue
        if _meta(cell):
            what = f"repeats cell {gid!r}" if gid in released else (
                f"carries grade metadata ({gid!r}) that is not part of the lab" if gid else "carries grade metadata "
                "without a grade_id")
            problems.append(f"cell {index} {what}: run as an ordinary cell, not graded")
        kind = "ordinary" if cell.get("cell_type") == "code" else "markdown"
        cells.append({"role": kind, "source": _source(cell), "cell_type": cell.get("cell_type", "markdown"),
                      "metadata": {}})
    missing = [c for gid, c in released.items() if gid not in seen]
    setup = [c for c in missing if _meta(c).get("locked") and not _meta(c).get("grade")]
    rest = [c for c in missing if c not in setup]
    return [_planned(c, _source(c)) for c in setup] + cells + [_planned(c, _source(c)) for c in rest], problems


def _planned(released: dict, theirs: str) -> dict:
    meta = _meta(released)
    role = ("test" if meta.get("grade") else "locked") if meta.get("locked") else "answer"
    if released["cell_type"] == "markdown":
        role = "markdown"
    return {"role": role, "source": _source(released) if meta.get("locked") else theirs,
            "cell_type": released["cell_type"], "metadata": {"nbgrader": meta}, "grade_id": meta["grade_id"]}


def run_in_sandbox(runner: Runner, cells: list[dict], timeout: float) -> None:
    """Run every code cell (the tests' visible parts too, which later cells may use); outputs are stored in them.

    What a test cell prints here is replaced by what it prints when the grader runs it.
    """
    for index, cell in enumerate(cells):
        cell["outputs"] = []
        if cell["cell_type"] != "code" or not cell["source"].strip():
            continue
        try:
            reply = runner.request("cell", timeout + 30, code=cell["source"], timeout=timeout, index=index)
        except SandboxStopped as err:
            cell["outputs"] = [_error("SandboxStopped", f"the sandbox was stopped: {err}")]
            return
        if reply["stdout"]:
            cell["outputs"].append(nbformat.v4.new_output("stream", name="stdout", text=reply["stdout"]))
        if reply["error"]:
            err = reply["error"]
            ename = "CellTimeoutError" if err["ename"] == "CellTimeout" else err["ename"]
            cell["outputs"].append(_error(ename, err["evalue"], err["traceback"]))


def _error(ename: str, evalue: str, traceback: list[str] | None = None):
    return nbformat.v4.new_output("error", ename=ename, evalue=evalue, traceback=traceback or [f"{ename}: {evalue}"])


def _definitions(source: str) -> str:
    """The imports, functions and classes of an ordinary released cell (its examples are not re-run)."""
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    body = [node for node in ast.parse(source).body if isinstance(node, keep)]
    return ast.unparse(ast.Module(body=body, type_ignores=[]))


def _in_sandbox(cell: dict) -> bool:
    """A locked helper tagged ``sandbox`` runs next to the student's code (its results must be plain data)."""
    return "sandbox" in cell.get("metadata", {}).get("tags", [])


def trusted_namespace(session: Session, release: dict) -> dict:
    """The grader's namespace: the student's functions as remote calls, then the released setup and helpers.

    The helpers tagged ``sandbox`` (a training loop that calls the student's step a few hundred times) are
    defined again in the sandbox from the released notebook and called there; a test checks what they
    return here (a generator's weights, say), so that the student's code never sees the check.
    """
    for cell in release["cells"]:
        if _in_sandbox(cell) and cell["cell_type"] == "code":
            session.runner.request("cell", session.timeout + 30, code=_source(cell), timeout=session.timeout,
                                   index=-1)
    listing = session.runner.request("names", 60)["callables"]
    ns: dict = {"__name__": "__karpa_grader__"}
    for name, code_names in listing.items():
        ns[name] = RemoteFunction(session, name, code_names)
    for cell in release["cells"]:
        meta = _meta(cell)
        if cell["cell_type"] != "code" or meta.get("grade") or meta.get("solution") or _in_sandbox(cell):
            continue
        before = dict(ns)
        exec(compile(_source(cell) if meta.get("locked") else _definitions(_source(cell)), "<lab>", "exec"), ns)
        session.shared |= {k: v for k, v in ns.items() if k in listing and before.get(k) is not v and callable(v)}
    return ns


def _failure(err: BaseException, hidden: bool) -> str:
    message = str(err).strip()
    if hidden:
        first = message.splitlines()[0] if message else ""
        return f"a hidden test failed ({type(err).__name__}{': ' + first if first else ''})"
    return message


def run_test(ns: dict, session: Session, source: str) -> list:
    """One test cell in the grader's namespace; its outputs (what it printed, and an error when it fails)."""
    visible = HIDDEN.sub("", source)
    session.events.tampered.clear()
    session.events.forbidden.clear()
    error, hidden = None, False
    with captured() as printed:
        try:
            exec(compile(visible, "<test>", "exec"), ns)
            hidden = True
            with contextlib.redirect_stdout(None):
                for part in HIDDEN.findall(source):
                    exec(compile(part, "<hidden test>", "exec"), ns)
        except Exception as err:  # noqa: BLE001 (any error fails the test, as in nbgrader)
            error = (type(err).__name__, _failure(err, hidden))
    events = session.events
    switched = sorted(n for n in events.forbidden if SWITCHED_OFF in n)
    called = sorted(events.forbidden - set(switched))
    if called:
        error = ("AssertionError", f"the notebook's functions called {', '.join(called)}, which "
                 "this lab asks you to write yourself: no points for this test")
    if switched:
        error = ("AssertionError", f"the notebook's functions called {', '.join(switched)}: the grader cannot "
                 "see which torch functions they use then, so no points for this test")
    if events.tampered:
        names = sorted(events.tampered, key=lambda n: (n.startswith("karpa_lab"), n))  # torch's and builtins first
        error = ("AssertionError", f"the notebook rebinds {', '.join(names[:6])}"
                 f"{' and more' if len(events.tampered) > 6 else ''}: no points for the tests it touches")
    outputs = [nbformat.v4.new_output("stream", name="stdout", text=printed[0])] if printed[0] else []
    if error:
        outputs.append(_error(*error))
    return outputs


def grade_cells(cells: list[dict], session: Session, release: dict, source: dict) -> list[str]:
    """Run the tests of ``cells`` (in the order of the lab) outside the sandbox; returns what was detected."""
    tests = {_meta(c)["grade_id"]: _source(c) for c in source["cells"] if _meta(c).get("grade")
             and c["cell_type"] == "code"}
    by_id = {c.get("grade_id"): c for c in cells if c["role"] == "test"}
    seen: set[str] = set()
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]), _random_state():
        try:
            ns = trusted_namespace(session, release)
        except SandboxStopped as err:
            session.events.stopped = str(err)
            ns = {}
        for gid, test_source in tests.items():
            if session.events.stopped or not ns:
                by_id[gid]["outputs"] = [_error("SandboxStopped", f"not tested: {session.events.stopped}")]
                continue
            by_id[gid]["outputs"] = run_test(ns, session, test_source)
            seen |= session.events.tampered
    if not seen:
        return []
    names = sorted(seen, key=lambda n: (n.startswith("karpa_lab"), n))
    return [f"the notebook rebinds {', '.join(names)}: the tests that ran after it got no points"]


@contextlib.contextmanager
def _random_state():
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)


def executed_notebook(cells: list[dict], release: dict) -> dict:
    """The notebook nbgrader scores: the planned cells with their outputs, fresh cell ids."""
    nb = nbformat.v4.new_notebook(metadata=release.get("metadata", {}))
    for cell in cells:
        if cell["cell_type"] == "code":
            nb.cells.append(nbformat.v4.new_code_cell(cell["source"], metadata=cell["metadata"],
                                                      outputs=cell.get("outputs", [])))
        else:
            nb.cells.append(nbformat.v4.new_markdown_cell(cell["source"], metadata=cell["metadata"]))
    return nb


def read_submission(path: Path) -> tuple[dict, list[str]]:
    """The submitted notebook as nbformat 4 JSON, or an empty one (and why) when it is not a notebook."""
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8", errors="replace"), as_version=4)
        return json.loads(nbformat.writes(nb)), []
    except Exception as err:  # noqa: BLE001 (junk gets zero, never a crash)
        return {"cells": []}, [f"not a readable notebook ({type(err).__name__}): graded as empty"]


def grade_submission(notebook: Path, released: Path, source: Path, lab: str, scratch: Path, *, timeout: float,
                     sandboxed: bool, memory_bytes: int, wall_clock: float) -> tuple[dict, list[str]]:
    """Run ``notebook`` in a sandbox in ``scratch`` and test it here: the executed notebook and the problems.

    ``released`` is the student version of the lab (what its folder ships is copied into the scratch folder
    next to the submission), ``source`` the instructor's notebook, read only by this process.
    """
    student, problems = read_submission(notebook)
    release = json.loads(released.read_text(encoding="utf-8"))
    for item in released.parent.iterdir():
        if item.is_file() and item.name != released.name:
            (scratch / item.name).write_bytes(item.read_bytes())
    (scratch / released.name).write_text(notebook.read_text(encoding="utf-8", errors="replace"), encoding="utf-8")
    cells, planned = plan(student, release)
    problems += planned
    rules = FORBIDDEN.get(lab, {})
    runner = Runner(scratch, sandboxed, memory_bytes, wall_clock)
    try:
        runner.request("forbid", 60, course=list(rules.get("course", ())))
        run_in_sandbox(runner, cells, timeout)
        session = Session(runner, timeout, tuple(rules.get("torch", ())))
        problems += grade_cells(cells, session, release, json.loads(source.read_text(encoding="utf-8")))
        if session.events.stopped:
            problems.append(f"the sandbox stopped: {session.events.stopped}; what had not run got no points")
        if sandboxed and not session.events.stopped:
            problems += _leftovers(runner)
    finally:
        runner.close()
    return executed_notebook(cells, release), problems


def _leftovers(runner: Runner) -> list[str]:
    """The processes the notebook left running: they end with the sandbox, and the report names them."""
    left = runner.request("processes", 30)["processes"]
    if not left:
        return []
    return [f"the notebook left {len(left)} process{'es' if len(left) > 1 else ''} running ("
            + "; ".join(" ".join(c.split())[:80] for c in left[:3])
            + "): ended with its sandbox, before anything was recorded"]
