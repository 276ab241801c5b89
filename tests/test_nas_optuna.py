"""The Optuna side: the define-by-run space, table objectives with pruning, two workers on one SQLite study."""

from __future__ import annotations

import random

import optuna
import pytest
import torch

from karpa_lab.data.digits import DigitsSplits
from karpa_lab.nas.optuna_search import (
    run_worker,
    storage,
    suggest_genome,
    tabular_objective,
    tabular_two_objectives,
    worker_seed,
)
from karpa_lab.nas.pareto import pareto_front
from karpa_lab.nas.protocol import Budget
from karpa_lab.nas.space import Genome, Space, count_params
from karpa_lab.nas.tabular import TabularBenchmark

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def bench() -> TabularBenchmark:
    return TabularBenchmark.load()


def test_suggest_genome_is_conditional():
    space = Space()
    trial = optuna.trial.FixedTrial({"depth": 2, "width_0": 64, "width_1": 64, "activation": "tanh",
                                     "skip_0": True, "skip_1": False})
    assert suggest_genome(trial, space) == Genome.mlp(64, 64, activation="tanh", skips=[True, False])
    # widths 32 -> 64: no skip can be asked for, so none is needed
    trial = optuna.trial.FixedTrial({"depth": 2, "width_0": 32, "width_1": 64, "activation": "relu"})
    assert suggest_genome(trial, space) == Genome.mlp(32, 64)


def test_suggest_genome_puts_convolutions_first():
    space = Space(widths=(8, 16), kernels=(0, 3))
    trial = optuna.trial.FixedTrial({"depth": 2, "width_0": 16, "width_1": 8, "kernel_0": 0, "kernel_1": 3,
                                     "activation": "relu", "skip_0": False})
    assert suggest_genome(trial, space).key == "c8k3-16:relu"


def test_every_suggestion_is_in_the_table(bench):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(tabular_objective(bench, random.Random(0)), n_trials=60)
    assert all(t.user_attrs["genome"] in bench for t in study.trials)
    assert study.best_value == max(t.value for t in study.trials)


def test_median_pruner_stops_trials_early(bench):
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=1),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=5))
    study.optimize(tabular_objective(bench, random.Random(1)), n_trials=40)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned and all(t.user_attrs["steps"] < bench.budget.steps for t in pruned)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(t.user_attrs["steps"] == bench.budget.steps for t in complete)


def test_two_objectives_return_accuracy_and_size(bench):
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.NSGAIISampler(seed=0))
    study.optimize(tabular_two_objectives(bench, random.Random(0)), n_trials=30)
    for t in study.trials:
        assert t.values[1] == count_params(Genome.parse(t.user_attrs["genome"]))
    values = [t.values for t in study.trials]
    front = set(pareto_front([v[1] for v in values], [v[0] for v in values]).tolist())
    assert {t.number for t in study.best_trials} == front


def test_two_workers_share_one_sqlite_study(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(60, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (60,), generator=g)
    data = DigitsSplits(x[:40], y[:40], x[40:50], y[40:50], x[50:], y[50:])
    url = f"sqlite:///{tmp_path / 'study.db'}"
    optuna.create_study(storage=storage(url), study_name="nas", direction="maximize")
    budget = Budget(steps=4, batch_size=8, rungs=(2,))
    space = Space(depths=(1,), widths=(8, 16))
    run_worker(url, "nas", "A", 3, data, space, budget)
    run_worker(url, "nas", "B", 5, data, space, budget)  # stops once the study holds 5 trials
    trials = optuna.load_study(study_name="nas", storage=url).trials
    assert [t.user_attrs["worker"] for t in trials] == ["A"] * 3 + ["B"] * 2
    assert worker_seed("A") != worker_seed("B")
