"""The package a student installs does not carry the labs' answers: its nearest functions fail the graded tests.

Each lab asks for a published variant of what ``karpa_lab`` implements for its lesson: lab 05 a circularly
padded convolution (``karpa_lab.models.conv`` pads with zeros), lab 06 beam search with GNMT's length penalty
(``karpa_lab.models.captioning`` ranks by log-probability), lab 07 GAE(lambda) and an actor-critic loss
(``karpa_lab.rl`` has returns-to-go and REINFORCE), lab 08 decoupled distillation (``karpa_lab.models.distill``
has classic KD), lab 09 guided Gram matrices (``karpa_lab.models.texture`` has the whole image's). Here every
graded test cell of the lab runs, its hidden part included, in one namespace built from the lab's notebook: with
the lab's own solution (the control: every test passes) and with the student's functions replaced by the
package's nearest ones, which must fail each test named, on their values (a message of the lab's checks, not a
refusal by name). The grader refuses a call to those functions besides (grade.py's FORBIDDEN); this is about a
student who reads the installed source and copies it.
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


# ---------------------------------------------------------------------------------------------- lab 06
class _TableDecoder:
    """The lab's table model (T, V, V) behind the course's decoder interface (start, step, teacher-forced call):
    the lab's token 0 (EOS) is the course's <eos>, its token a >= 1 the course's word a + 2."""

    def __init__(self, logp):
        import torch

        from karpa_lab.models.captioning import BOS, EOS, PAD

        self.logp, self.torch, self.special = logp, torch, (PAD, BOS, EOS)
        self.vocab_size = logp.shape[1] + 2

    def _logits(self, t, words):
        pad, bos, eos = self.special
        last = self.torch.where((words == bos) | (words == eos), 0, words - 2)  # the lab's token before step t
        table = self.logp[t.clamp(max=len(self.logp) - 1), last]  # (N, V)
        return self.torch.cat([self.torch.zeros_like(table[:, :2]), table], dim=1)  # <pad>, <bos> masked later

    def start(self, images):
        return (self.torch.zeros(len(images), dtype=self.torch.long),)

    def step(self, words, state):
        (t,) = state
        return self._logits(t, words), (t + 1,), None

    def __call__(self, images, inputs):
        steps = self.torch.arange(inputs.shape[1]).expand(len(inputs), -1)
        return self.torch.stack([self._logits(steps[:, i], inputs[:, i]) for i in range(inputs.shape[1])], 1)


def _course_ids(tokens):
    from karpa_lab.models.captioning import EOS

    return [EOS if tok == 0 else tok + 2 for tok in tokens]


def _course_sequence_score(logp, tokens, alpha):
    import torch

    from karpa_lab.models.captioning import sequence_logprob

    image = torch.zeros(1, 3, 1, 1)
    return float(sequence_logprob(_TableDecoder(logp), image, torch.tensor([_course_ids(tokens)]))[0])


def _course_beam_search(logp, beam, alpha):
    import torch

    from karpa_lab.models.captioning import EOS, PAD, beam_search

    words, score = beam_search(_TableDecoder(logp), torch.zeros(1, 3, 1, 1), beam, len(logp))
    tokens = [0 if w == EOS else w - 2 for w in words[0].tolist() if w != PAD]
    return [(tokens, float(score[0]))]


# ---------------------------------------------------------------------------------------------- lab 07
def _course_advantages(rewards, values, dones, gamma, lam):
    """The course's REINFORCE advantage: the returns-to-go minus the baseline (it has no lambda)."""
    from karpa_lab.rl import discounted_returns

    return discounted_returns(rewards, dones, gamma).to(rewards.dtype) - values


def _course_loss(logp, values, advantages, value_coef):
    from karpa_lab.rl import policy_gradient_loss

    return policy_gradient_loss(logp, advantages)


# ---------------------------------------------------------------------------------------------- lab 08
def _course_soft_term(student_logits, teacher_logits, labels, T):
    """The course's distillation term, T^2 H(p_T, q_T) over all the classes: classic KD."""
    from karpa_lab.models.distill import soft_target_cross_entropy

    return T**2 * soft_target_cross_entropy(student_logits, teacher_logits, T).to(student_logits.dtype)


def _course_distillation(student_logits, teacher_logits, labels, T, alpha, beta):
    from karpa_lab.models.distill import distillation_loss

    return distillation_loss(student_logits, teacher_logits, None, T, 1.0).to(student_logits.dtype)


# ---------------------------------------------------------------------------------------------- lab 09
def _course_gram(features, masks):
    """The course's Gram matrix of the whole image: it has no masks."""
    from karpa_lab.models.texture import gram_matrix

    return gram_matrix(features)


def _course_style(features_x, features_t, masks_x, masks_t):
    from karpa_lab.models.texture import gram_matrix, texture_loss

    return texture_loss([gram_matrix(f) for f in features_x], [gram_matrix(f) for f in features_t])


CASES = {
    "05_conv_layer": ({"circular_conv2d": _course_conv, "circular_conv2d_backward": _course_conv_backward},
                      {"test_forward_shift": "zeros in the padding break it at the border",
                       "test_forward_values": "does not match F.conv2d with circular padding",
                       "test_grad_input": "grad_x does not match autograd",
                       "test_grad_params": "grad_weight does not match autograd"}),
    "06_beam_search": ({"sequence_score": _course_sequence_score, "beam_search": _course_beam_search},
                       {"test_score": "sequence_score(logp, [2, 0], alpha=1.0)",
                        "test_beam_one": "the score of [3, 1, 2, 2, 3] is",
                        "test_beam_reference": "beam 2 should return the 2 best finished sequences, got 1",
                        "test_beam_exhaustive": "1 sequences returned"}),
    "07_policy_gradient": ({"gae": _course_advantages, "actor_critic_loss": _course_loss},
                           {"test_gae_values": "gae, gamma 0.9, lambda 0.5 is off by",
                            "test_gae_reset": "gae over two episodes, lambda 0.5 is off by",
                            "test_loss_values": "actor_critic_loss, c = 0.5 is off by",
                            "test_loss_gradient": "d loss / d values is off by",
                            "test_training": "the critic should have learned"}),
    "08_distillation": ({"tckd": _course_soft_term, "nckd": _course_soft_term, "dkd_loss": _course_distillation},
                        {"test_tckd": "tckd at T = 1.0 is off by", "test_nckd": "nckd at T = 1.0 is off by",
                         "test_dkd_loss": "dkd_loss at T = 1.0, alpha = 1.0, beta = 1.0 is off by",
                         "test_dkd_gradient": "d loss / d student_logits at T = 2.0 is off by"}),
    "09_gram_style": ({"guided_gram": _course_gram, "style_loss": _course_style},
                      {"test_gram_shape": "the guided Gram matrix is (B, R, C, C)",
                       "test_gram_values": "guided_gram, two regions has shape",
                       "test_gram_gradient": "d/dF of sum(W * G) is off by",
                       "test_style_loss": "style_loss, two layers, two regions is off by",
                       "test_style_shift": "style loss of the texture rolled under masks that stay put"}),
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
