"""The package a student installs does not carry the labs' answers: its nearest functions fail the graded tests.

Each lab asks for a published variant of what ``karpa_lab`` implements for its lesson (lab 05 a circularly
padded convolution, where ``karpa_lab.models.conv`` pads with zeros). Here every graded test cell of the lab
runs, its hidden part included, in one namespace built from the lab's notebook: with the lab's own solution
(the control: every test passes) and with the student's functions replaced by the package's nearest ones,
which must fail each test named, on their values (a message of the lab's checks, not a refusal by name).
"""

from __future__ import annotations

import ast
import contextlib
import io
from collections.abc import Callable
from pathlib import Path

import jupytext
import pytest

LABS = Path(__file__).resolve().parents[1] / "labs"


def _definitions(source: str) -> str:
    keep = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
    return ast.unparse(ast.Module(body=[n for n in ast.parse(source).body if isinstance(n, keep)], type_ignores=[]))


def run_tests(lab: str, answers: dict[str, Callable] | None = None) -> dict[str, str]:
    """Run the lab's graded test cells in order; {grade_id: the error} for each one that fails.

    The namespace is the lab's setup and helper cells, its solution cells, then ``answers`` over them; the
    functions and imports of every test cell are defined first, so that one failing cell does not leave a
    later one without the helpers it shares."""
    cells = [c for c in jupytext.read(LABS / lab / f"{lab}.py").cells if c.cell_type == "code"]
    ns: dict = {"__name__": "__lab__"}
    tests = []
    for cell in cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            tests.append((meta["grade_id"], cell.source))
        else:
            exec(cell.source if meta else _definitions(cell.source), ns)
    for _, source in tests:
        exec(_definitions(source), ns)
    ns.update(answers or {})
    failed = {}
    for grade_id, source in tests:
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(source, ns)
        except Exception as err:  # noqa: BLE001 (any error fails the test, as in nbgrader)
            failed[grade_id] = f"{type(err).__name__}: {err}"
    return failed


# ---------------------------------------------------------------------------------------------- lab 05
def _course_conv(x, weight, bias=None, stride=1, padding=0):
    from karpa_lab.models.conv import conv2d_im2col

    return conv2d_im2col(x, weight, bias, stride, padding)


def _course_conv_backward(x, weight, grad_out, stride=1, padding=0):
    from karpa_lab.models.conv import conv2d_backward

    return conv2d_backward(x, weight, grad_out, stride, padding)


CASES = {
    "05_conv_layer": ({"circular_conv2d": _course_conv, "circular_conv2d_backward": _course_conv_backward},
                      {"test_forward_shift": "zeros in the padding break it at the border",
                       "test_forward_values": "does not match F.conv2d with circular padding",
                       "test_grad_input": "grad_x does not match autograd",
                       "test_grad_params": "grad_weight does not match autograd"}),
}


@pytest.mark.parametrize("lab", sorted(CASES))
def test_the_lab_solution_passes_every_test(lab):
    assert run_tests(lab) == {}


@pytest.mark.parametrize("lab", sorted(CASES))
def test_the_course_function_fails_the_lab(lab):
    answers, expected = CASES[lab]
    failed = run_tests(lab, answers)
    assert set(failed) == set(expected), failed
    for grade_id, phrase in expected.items():
        assert phrase in failed[grade_id], (grade_id, failed[grade_id])
