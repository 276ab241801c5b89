"""The evaluation protocol: fixed budget, seeds, validation for the search, test once, caching."""

from __future__ import annotations

import pytest
import torch

from karpa_lab.data.digits import DigitsSplits
from karpa_lab.nas.protocol import Budget, Protocol, split_accuracy, train_candidate
from karpa_lab.nas.space import Genome, build_model

TINY = Budget(steps=12, batch_size=16, lr=3e-3, rungs=(4, 8))


@pytest.fixture(scope="module")
def data() -> DigitsSplits:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(120, 1, 8, 8, generator=g)
    y = (x.flatten(1)[:, :10].argmax(1))  # a learnable rule: the brightest of the first ten pixels
    return DigitsSplits(x[:80], y[:80], x[80:100], y[80:100], x[100:], y[100:])


def test_budget_checks():
    assert TINY.checkpoints == (4, 8, 12)
    for bad in [dict(steps=0), dict(rungs=(8, 4)), dict(rungs=(12,)), dict(lr=0)]:
        with pytest.raises(ValueError):
            Budget(**{**dict(steps=12, rungs=(4,)), **bad})


def test_same_seed_same_model_other_seed_other_model(data):
    g = Genome.mlp(16, 16)
    m1, c1 = train_candidate(g, TINY, seed=0, data=data, device="cpu")
    m2, c2 = train_candidate(g, TINY, seed=0, data=data, device="cpu")
    m3, _ = train_candidate(g, TINY, seed=1, data=data, device="cpu")
    assert c1 == c2 and [s for s, _ in c1] == [4, 8, 12]
    for a, b in zip(m1.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for a, b in zip(m1.parameters(), m3.parameters()))
    assert c1[-1][1] == split_accuracy(m1, data, "val")


def test_training_improves_on_the_untrained_model(data):
    g = Genome.mlp(32)
    torch.manual_seed(0)
    before = split_accuracy(build_model(g), data, "train")
    model, _ = train_candidate(g, Budget(steps=150, batch_size=32, lr=1e-2, rungs=()), seed=0, data=data, device="cpu")
    assert split_accuracy(model, data, "train") > before + 0.2


def test_on_rung_can_stop_training(data):
    seen = []

    def stop_at_8(step, acc):
        seen.append(step)
        if step == 8:
            raise RuntimeError("pruned")

    with pytest.raises(RuntimeError, match="pruned"):
        train_candidate(Genome.mlp(16), TINY, 0, data, on_rung=stop_at_8, device="cpu")
    assert seen == [4, 8]


def test_protocol_caches_and_reads_test_once(data):
    p = Protocol(TINY, seeds=(0, 1), data=data, device="cpu")
    g, h = Genome.mlp(16), Genome.mlp(32, activation="tanh")
    r = p.evaluate(g)
    assert p.n_trained == 2 and len(r.val_accs) == 2 and r.val_acc == pytest.approx(sum(r.val_accs) / 2)
    assert p.score(g) == r.val_acc and p.n_trained == 2 and p.n_cache_hits == 1
    assert r.params == sum(x.numel() for x in build_model(g).parameters())
    with pytest.raises(ValueError, match="evaluate these genomes"):
        p.final_test([h])
    p.score(h)
    test = p.final_test([g, h])
    assert set(test) == {g.key, h.key} and all(0 <= v <= 1 for v in test.values())
    with pytest.raises(RuntimeError, match="already read"):
        p.final_test([g])
