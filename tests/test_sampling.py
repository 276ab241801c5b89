"""The one sampler: temperature, top-k and top-p reshape the distribution; bad knobs and ids are refused."""

from __future__ import annotations

import pytest
import torch

from karpa_lab.models.sampling import GREEDY_BELOW, check_token_ids, next_token_probs, sample_next


def entropy(p: torch.Tensor) -> float:
    return float(-(p * p.clamp_min(1e-30).log()).sum())


def test_temperature_reshapes_the_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    p1 = next_token_probs(logits, 1.0)
    torch.testing.assert_close(p1, torch.softmax(logits, -1))
    assert entropy(next_token_probs(logits, 0.5)) < entropy(p1) < entropy(next_token_probs(logits, 2.0))
    torch.testing.assert_close(next_token_probs(logits, 1e6), torch.full((1, 4), 0.25), atol=1e-5, rtol=0)


@pytest.mark.parametrize("temperature", [0, 0.0, 1e-45, 1e-40, 1e-12, GREEDY_BELOW / 2])
def test_extreme_temperatures_are_greedy_not_nan(temperature):
    logits = torch.tensor([[2.0, 7.0, 0.0, -1.0], [50.0, -3.0, 49.0, 0.0]])
    probs = next_token_probs(logits, temperature)
    assert torch.equal(probs, torch.nn.functional.one_hot(logits.argmax(-1), 4).float())
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, temperature, generator=g), torch.tensor([1, 0]))
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(0).get_state())  # greedy draws nothing


def test_just_above_the_greedy_threshold_is_finite():
    logits = torch.tensor([[80.0, 79.0, -80.0]])
    probs = next_token_probs(logits, GREEDY_BELOW)
    assert torch.isfinite(probs).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(1))


def test_top_k_restricts_the_support():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 30, generator=g)
    top3 = logits.topk(3, dim=-1).indices
    probs = next_token_probs(logits, 1.5, top_k=3)
    assert ((probs > 0).sum(-1) == 3).all()
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))
    draws = torch.stack([sample_next(logits, 1.5, 3, generator=g) for _ in range(200)], 1)  # (5, 200)
    assert all(set(draws[r].tolist()) <= set(top3[r].tolist()) for r in range(5))
    assert all(len(set(draws[r].tolist())) == 3 for r in range(5))  # and every one of the k is reachable
    torch.testing.assert_close(next_token_probs(logits, 1.0, top_k=30), next_token_probs(logits, 1.0))
    assert torch.equal(sample_next(logits, 1.0, top_k=1, generator=g), logits.argmax(-1))


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    # 0.5 < 0.6, 0.5 + 0.3 >= 0.6: the nucleus is the first two, renormalised
    torch.testing.assert_close(next_token_probs(logits, 1.0, top_p=0.6), torch.tensor([[0.625, 0.375, 0.0, 0.0]]))
    torch.testing.assert_close(next_token_probs(logits, 1.0, top_p=0.5), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(next_token_probs(logits, 1.0, top_p=1.0), probs)
    torch.testing.assert_close(next_token_probs(logits, 1.0, top_p=0.01), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    shuffled = logits[:, [2, 0, 3, 1]]  # the nucleus follows the probabilities, not the positions
    torch.testing.assert_close(next_token_probs(shuffled, 1.0, top_p=0.6), torch.tensor([[0.0, 0.625, 0.0, 0.375]]))
    g = torch.Generator().manual_seed(0)
    draws = torch.stack([sample_next(logits.repeat(4, 1), 1.0, top_p=0.6, generator=g) for _ in range(100)])
    assert set(draws.flatten().tolist()) == {0, 1}


@pytest.mark.parametrize("knobs,message", [
    (dict(temperature=-1), r"temperature must be a finite number >= 0.*got -1"),
    (dict(temperature=float("nan")), r"temperature .* got nan"),
    (dict(temperature=float("inf")), r"temperature .* got inf"),
    (dict(temperature="hot"), r"temperature .* got 'hot'"),
    (dict(top_k=0), r"top_k must be an integer >= 1, or None to keep every token, got 0"),
    (dict(top_k=-3), r"top_k .* got -3"),
    (dict(top_k=2.5), r"top_k .* got 2.5"),
    (dict(top_p=0.0), r"top_p must be a number in \(0, 1\], or None to keep every token, got 0.0"),
    (dict(top_p=1.5), r"top_p .* got 1.5"),
    (dict(top_p=float("nan")), r"top_p .* got nan"),
])
def test_bad_knobs_are_refused_with_the_value_and_what_is_allowed(knobs, message):
    logits = torch.zeros(2, 5)
    with pytest.raises(ValueError, match=message):
        next_token_probs(logits, **knobs)
    with pytest.raises(ValueError, match=message):
        sample_next(logits, **knobs)


def test_sample_next_needs_batch_by_vocab():
    with pytest.raises(ValueError, match=r"\(batch, vocab\), got shape \(5,\)"):
        sample_next(torch.zeros(5))


def test_ids_outside_the_vocabulary_name_its_size():
    check_token_ids(torch.tensor([[0, 9]]), 10, "model")
    for bad in ([[0, 10]], [[-1, 3]]):
        with pytest.raises(ValueError, match=r"model: token ids must lie in \[0, 10\) \(the vocabulary size is 10\)"):
            check_token_ids(torch.tensor(bad), 10, "model")
