"""The committed tabular benchmark: complete, consistent with the space, and regenerable."""

from __future__ import annotations

import random

import numpy as np
import pytest

from karpa_lab.nas.protocol import Budget, train_candidate
from karpa_lab.nas.searchers import random_search
from karpa_lab.nas.space import Genome, Space, count_flops, count_params
from karpa_lab.nas.tabular import BENCH_BUDGET, BENCH_SPACE, DEFAULT_PATH, TabularBenchmark, generate, repeat_search


@pytest.fixture(scope="module")
def bench() -> TabularBenchmark:
    return TabularBenchmark.load()


def test_the_table_covers_the_space(bench):
    assert DEFAULT_PATH.stat().st_size < 80_000
    assert set(bench.keys) == {g.key for g in BENCH_SPACE.all_genomes()} and len(bench) == 310
    assert bench.space == BENCH_SPACE and bench.budget == BENCH_BUDGET and bench.seeds == (0, 1)
    for key, e in bench.entries.items():
        g = Genome.parse(key)
        assert (e.params, e.flops) == (count_params(g), count_flops(g))
        assert e.val_curves.shape == (2, len(BENCH_BUDGET.checkpoints)) and e.test.shape == (2,)
        assert np.all((e.val_curves > 0) & (e.val_curves <= 1)) and np.all((e.test > 0) & (e.test <= 1))
    assert bench.mean_val.max() > 0.95 and bench.mean_val.min() < 0.9  # trained, and not all alike


def test_a_row_can_be_regenerated(bench):
    g = Genome.mlp(32, 32, activation="tanh")
    _, curve = train_candidate(g, BENCH_BUDGET, seed=0, device="cpu")
    stored = bench.entry(g).val_curves[0]
    # one thread made the table; other thread counts may flip a few of the 360 validation digits
    assert np.abs(np.array([acc for _, acc in curve]) - stored).max() <= 0.02


def test_query_draws_one_of_the_seeds(bench):
    e = bench.entry("64-64:relu")
    rng = random.Random(0)
    draws = {bench.query("64-64:relu", rng) for _ in range(50)}
    assert draws == set(e.val.tolist())
    with pytest.raises(KeyError, match="not in the table"):
        bench.entry("48:relu")


def test_rank_and_regret(bench):
    ranked = bench.rank_by_val()
    means = [bench.entry(k).val.mean() for k in ranked]
    assert means == sorted(means, reverse=True) and len(ranked) == len(bench)
    r = repeat_search(bench, random_search, budget=20, repeats=8, seed=0)
    assert r.best_val.shape == (8, 20) and np.all(r.test_regret >= -1e-12) and all(c in bench for c in r.chosen)
    assert r.test_regret.min() >= 0 and bench.best_test == bench.mean_test.max()


def test_generate_a_tiny_table(tmp_path):
    space = Space(depths=(1,), widths=(8, 16), activations=("relu",))
    table = generate(space, Budget(steps=6, batch_size=8, rungs=(3,)), seeds=(0, 1), log=None)
    bench = TabularBenchmark(table)
    assert bench.keys == ["8:relu", "16:relu"] and bench.entry("8:relu").val_curves.shape == (2, 2)
    with pytest.raises(ValueError, match="regenerate"):
        TabularBenchmark({**table, "format": "other"})
