"""Lab 08 (the distillation loss) graded end to end: each plausible wrong loss loses the points of what it breaks."""

from __future__ import annotations

import pytest
from test_labs import LABS, grade_edits, points

pytest.importorskip("nbgrader")
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning",
                                         "ignore::nbformat.warnings.MissingIDFieldWarning")]

LAB = "08_distillation"
SOFT = "return alpha * T**2 * soft_cross_entropy(student_logits, teacher_logits, T) + (1 - alpha) * hard"

MISTAKES = {
    # exp of the raw logits: right for small ones, NaN (inf / inf) for logits near 1000
    "no_max_shift": ("softmax_t", "e = torch.exp(z - z.max(dim=-1, keepdim=True).values)", "e = torch.exp(z)"),
    # the teacher's targets taken at T = 1 while the student is softened
    "hard_teacher": ("soft_cross_entropy", "p = softmax_t(teacher_logits.detach(), T)",
                     "p = softmax_t(teacher_logits.detach(), 1.0)"),
    # the soft term without its T^2 factor
    "no_t_squared": ("distillation_loss", SOFT, SOFT.replace("alpha * T**2 *", "alpha *")),
    # T instead of T^2
    "t_not_squared": ("distillation_loss", SOFT, SOFT.replace("T**2", "T")),
    # the library's softmax, reached by a name built at run time
    "library_softmax": ("softmax_t", "### BEGIN SOLUTION",
                        "return getattr(torch, 'soft' + 'max')(logits / T, dim=-1)\n    ### BEGIN SOLUTION"),
}


def test_each_wrong_loss_loses_its_points(tmp_path, sandbox):
    results = grade_edits(tmp_path, LAB, MISTAKES)
    pts = points(LABS / LAB / f"{LAB}.ipynb")
    full = sum(pts.values())
    part3 = pts["test_kd_loss"] + pts["test_kd_gradient"]
    expected = {
        "honest": full,
        "no_max_shift": full - pts["test_softmax"],
        # the soft term is wrong, and so is the loss built on it
        "hard_teacher": full - pts["test_soft_ce"] - part3,
        "no_t_squared": full - part3,
        "t_not_squared": full - part3,
        # every part calls softmax_t
        "library_softmax": 0,
    }
    report = (tmp_path / "course" / "report.txt").read_text(encoding="utf-8")
    assert {s: r.score for s, r in results.items()} == expected, report
    problems = {s: " | ".join(r.problems) for s, r in results.items()}
    assert results["honest"].problems == [], report
    assert "the notebook's functions called softmax" in problems["library_softmax"], report
    assert "NaN" in problems["no_max_shift"], report
