"""The package a student installs does not carry the labs' answers: its nearest functions fail the graded tests.

Each lab asks for a published variant of what ``karpa_lab`` implements for its lesson: lab 01 an LSTM with a
projection (``karpa_lab.models.lstm`` has the plain cell), lab 02 the hinge GAN and the KL of the modes from uniform
(``karpa_lab.models.gan`` has the cross-entropy losses, ``karpa_lab.metrics`` a mode count), lab 03 attention with
linear biases (``karpa_lab.models.attention`` has a mask only), lab 05 a circularly
padded convolution (``karpa_lab.models.conv`` pads with zeros), lab 04 local search with first improvement over an
exact neighbourhood (``karpa_lab.nas`` has a random one-edit mutation and regularized evolution), lab 06 beam search
with GNMT's length penalty
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

import contextlib
import io
import math
from collections.abc import Callable
from pathlib import Path

import jupytext
import pytest

from karpa_lab.autograde.grade import _definitions

LABS = Path(__file__).resolve().parents[1] / "labs"


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


def _course_lstmp() -> dict:
    """Lab 01 with the course's cell, karpa_lab.models.lstm.lstm_step, which has no projection."""
    from karpa_lab.models.lstm import lstm_step

    step = lstm_step  # a closure variable: the checks that read a function's names do not see it

    def lstm_cell(x, h, c, weight_ih, weight_hh, weight_hr, bias_ih=None, bias_hh=None):
        return step(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh)[:2]

    return {"lstm_cell": lstm_cell}


def _course_gan() -> dict:
    """Lab 02 with the course's losses and GAN step (cross-entropy, karpa_lab.models.gan) and a KL read off the
    course's mode count (karpa_lab.metrics.mode_coverage): log(K / modes), which an even spread over them gives."""
    from karpa_lab.data.synthetic import GaussianMixture2D
    from karpa_lab.metrics import mode_coverage
    from karpa_lab.models import gan as course

    d_loss, g_loss, update, coverage = course.discriminator_loss, course.generator_loss, course.GANUpdate, mode_coverage

    def train_step(gan, real, opt_d, opt_g, noise):
        return update(opt_d, opt_g, noise=noise)(gan, real)

    def mode_kl(samples, centers, std):
        modes = coverage(GaussianMixture2D(centers, std), samples, min_share=1e-9)["modes"]
        if not modes:
            raise ValueError("no sample near a mode")
        return math.log(len(centers) / modes)

    return {"discriminator_loss": lambda real, fake: d_loss(real, fake), "generator_loss": lambda f: g_loss(f),
            "train_step": train_step, "mode_kl": mode_kl}


def _course_attention() -> dict:
    """Lab 03 with the course's attention, causal mask and multi-head layer (karpa_lab.models.attention): a mask
    but no linear biases."""
    import torch

    from karpa_lab.models import attention as course

    sdpa, causal, layer = course.scaled_dot_product_attention, course.causal_mask, course.MultiHeadAttention

    def attention(q, k, v, bias=None, mask=None):
        return sdpa(q, k, v, mask)

    def alibi_bias(n_heads, T, dtype=torch.float32):
        blocked = torch.zeros(n_heads, T, T, dtype=dtype).masked_fill(~causal(T), float("-inf"))
        return blocked

    def alibi_self_attention(x, n_heads, w_in, b_in, w_out, b_out, padding_mask=None):
        mha = layer.from_packed(n_heads, w_in, b_in, w_out, b_out).to(x.dtype)
        mask = causal(x.shape[1]) if padding_mask is None else causal(x.shape[1]) & padding_mask[:, None, None, :]
        return mha(x, mask=mask)[0]

    return {"attention": attention, "alibi_bias": alibi_bias, "alibi_self_attention": alibi_self_attention}


# ---------------------------------------------------------------------------------------------- lab 04
def _course_search() -> dict:
    """Lab 04 with the course's search moves: the neighbourhood read off Space.mutate (2,000 draws, each child
    once), a move that evaluates one mutated child (a step of regularized evolution), and the course's
    regularized_evolution as the search."""
    import random

    from karpa_lab.nas.searchers import regularized_evolution
    from karpa_lab.nas.space import Space

    rng, evolution, mutate = random.Random(0), regularized_evolution, Space.mutate  # closures: no name check sees

    def neighbours(genome, space):
        return list(dict.fromkeys(mutate(space, genome, rng) for _ in range(2000)))

    def improve(genome, genome_score, space, score, rng, budget):
        if budget < 1:
            return [], None
        child = mutate(space, genome, rng)
        value = score(child)
        return [(child, value)], (child, value) if value > genome_score else None

    def local_search(space, score, budget, rng):
        return evolution(space, score, budget, rng, population_size=10, sample_size=3)

    return {"neighbours": neighbours, "improve": improve, "local_search": local_search}


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
    "01_lstm_cell": (_course_lstmp(),
                     {"test_cell_shapes": "= (batch, proj_size)", "test_cell_values": "before the projection",
                      "test_cell_gradients": "dx is off by", "test_sequence_values": "lstm_sequence raised",
                      "test_sequence_chunks": "cannot be multiplied"}),
    "02_gan_step": (_course_gan(),
                    {"test_discriminator_loss": "that is the cross-entropy loss",
                     "test_generator_loss": "that is the non-saturating cross-entropy loss",
                     "test_train_step": "the discriminator's weights differ from the reference",
                     "test_mode_kl": "expected 0.75"}),
    "03_self_attention": (_course_attention(),
                          {"test_attention_values": "does not match scaled dot-product attention with a float bias",
                           "test_attention_weights": "weights with a bias of log 3",
                           "test_alibi_bias": "should be (slopes 1/16 and 1/256)",
                           "test_self_attention_values": "does not match nn.MultiheadAttention",
                           "test_causality": "does not match nn.MultiheadAttention",
                           "test_padding": "padded values against key_padding_mask"}),
    "04_nas_evolution": (_course_search(),
                         {"test_neighbours": "missing ['32-16:relu']",
                          "test_improve_rules": "a local optimum is declared (better = None) only when every neighbour",
                          "test_improve_order": "shuffle the neighbours",
                          "test_search_budget": "is not a neighbour of the current genome",
                          "test_beats_random": "is not a neighbour of the current genome"}),
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
