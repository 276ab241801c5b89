"""The package learners install does not carry the labs' solutions: the course's nearest function fails each lab.

Each lab asks for a published variant of what its lesson builds (an LSTM with a projection, ...), so the course's
own function, wrapped to the lab's signature, must fail the lab's graded tests, hidden parts included. The
tests are run here as the grader runs them, on the lab's solution with the course's function put in place of
the student's; the worked solution itself passing the same run is the control.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from karpa_lab.autograde.grade import _definitions

LABS = Path(__file__).resolve().parents[1] / "labs"


def lab_namespace(lab: str) -> tuple[dict, dict[str, str]]:
    """The lab's setup, helpers and worked solutions run in a fresh namespace, and its test cells by grade id."""
    nb = json.loads((LABS / lab / f"{lab}.ipynb").read_text(encoding="utf-8"))
    ns: dict = {"__name__": "__lab__"}
    tests = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("grade"):
            tests[meta["grade_id"]] = source
        else:
            exec(compile(source if meta else _definitions(source), lab, "exec"), ns)
    return ns, tests


def failing_tests(lab: str, replace: Callable[[dict], dict]) -> set[str]:
    """The grade ids of the tests that fail once ``replace(namespace)`` has been put in the student's place (the
    tests run in order in one namespace, as under the grader: a later test may use a helper an earlier defined)."""
    ns, tests = lab_namespace(lab)
    ns.update(replace(ns))
    failed = set()
    for gid, source in tests.items():
        try:
            exec(compile(source, gid, "exec"), ns)
        except Exception:  # noqa: BLE001 (any error fails a test, as under the grader)
            failed.add(gid)
    return failed


def course_lstm_cell(ns: dict) -> dict:
    """Lab 01 with the course's cell, karpa_lab.models.lstm.lstm_step, which has no projection."""
    from karpa_lab.models.lstm import lstm_step

    step = lstm_step  # a closure variable: the checks that read a function's names do not see it

    def lstm_cell(x, h, c, weight_ih, weight_hh, weight_hr, bias_ih=None, bias_hh=None):
        return step(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh)[:2]

    return {"lstm_cell": lstm_cell}


def course_gan(ns: dict) -> dict:
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


def course_attention(ns: dict) -> dict:
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
        mha = layer(x.shape[-1], n_heads).to(x.dtype)
        with torch.no_grad():
            for proj, w, b in zip((mha.q_proj, mha.k_proj, mha.v_proj), w_in.chunk(3), b_in.chunk(3)):
                proj.weight.copy_(w)
                proj.bias.copy_(b)
            mha.out_proj.weight.copy_(w_out)
            mha.out_proj.bias.copy_(b_out)
        mask = causal(x.shape[1]) if padding_mask is None else causal(x.shape[1]) & padding_mask[:, None, None, :]
        return mha(x, mask=mask)[0]

    return {"attention": attention, "alibi_bias": alibi_bias, "alibi_self_attention": alibi_self_attention}


CASES = {
    "01_lstm_cell": (course_lstm_cell, {"test_cell_shapes", "test_cell_values", "test_cell_gradients",
                                        "test_sequence_values", "test_sequence_chunks"}),
    "02_gan_step": (course_gan, {"test_discriminator_loss", "test_generator_loss", "test_train_step", "test_mode_kl"}),
    "03_self_attention": (course_attention, {"test_attention_values", "test_attention_weights", "test_alibi_bias",
                                             "test_self_attention_values", "test_causality", "test_padding"}),
}


@pytest.mark.parametrize("lab", sorted(CASES))
def test_the_worked_solution_passes_every_test(lab):
    assert failing_tests(lab, lambda ns: {}) == set()


@pytest.mark.parametrize("lab", sorted(CASES))
def test_the_course_function_fails_the_lab(lab):
    replace, expected = CASES[lab]
    assert failing_tests(lab, replace) == expected
