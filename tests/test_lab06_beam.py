"""Lab 06 (beam search) graded end to end: each plausible wrong search loses the points of what it gets wrong."""

from __future__ import annotations

import pytest
from test_labs import LABS, grade_edits, points

pytest.importorskip("nbgrader")
pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning",
                                         "ignore::nbformat.warnings.MissingIDFieldWarning")]

LAB = "06_beam_search"
KEEP = "kept = sorted(candidates, key=lambda item: -item[1])[:beam]"

MISTAKES = {
    # candidates ranked by the last word's log-probability only, not by the whole sequence's
    "last_step_sort": ("beam_search", KEEP,
                       "kept = sorted(candidates, key=lambda item: -float(logp[t, item[0][-2] if len(item[0]) > 1 "
                       "else EOS, item[0][-1]]))[:beam]"),
    # no length bookkeeping: a sequence that emitted EOS stays live and keeps growing
    "no_finishing": ("beam_search", "finished += [c for c in kept if c[0][-1] == EOS]\n"
                     "        live = [c for c in kept if c[0][-1] != EOS]", "live = kept"),
    # the sequences that reach the last step are never counted as finished
    "drops_full_length": ("beam_search", "return sorted(finished + live,", "return sorted(finished,"),
    # probabilities added up instead of log-probabilities
    "sums_probabilities": ("sequence_logprob", "score += float(logp[t, last, token])",
                           "score += float(logp[t, last, token].exp())"),
}


def test_each_wrong_search_loses_its_points(tmp_path, sandbox):
    results = grade_edits(tmp_path, LAB, MISTAKES)
    pts = points(LABS / LAB / f"{LAB}.ipynb")
    full = sum(pts.values())
    expected = {
        "honest": full,
        # beam 1 ranks by the last word too (greedy); a beam as wide as the space keeps every candidate
        "last_step_sort": full - pts["test_beam_reference"],
        "no_finishing": full - pts["test_beam_one"] - pts["test_beam_reference"] - pts["test_beam_exhaustive"],
        "drops_full_length": full - pts["test_beam_one"] - pts["test_beam_reference"] - pts["test_beam_exhaustive"],
        "sums_probabilities": full - pts["test_logprob"],
    }
    report = (tmp_path / "course" / "report.txt").read_text(encoding="utf-8")
    assert {s: r.score for s, r in results.items()} == expected, report
    assert results["honest"].problems == [], report
