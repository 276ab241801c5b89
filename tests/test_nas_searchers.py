"""Random search and regularized evolution on synthetic scores (no training: fast and exact)."""

from __future__ import annotations

import random
from collections import deque

import numpy as np
import pytest

from karpa_lab.nas.searchers import SearchTrace, random_search, regularized_evolution
from karpa_lab.nas.space import Genome, Space, count_params

SPACE = Space(depths=(1, 2, 3, 4), widths=(8, 16, 32, 64, 128), activations=("relu", "tanh", "gelu"))


def target_score(genome: Genome) -> float:
    """Higher the closer the genome's size is to 5,000 parameters, with a bonus for gelu: one optimum region."""
    return -abs(np.log(count_params(genome) / 5000)) + 0.2 * (genome.activation == "gelu")


def test_trace_best_so_far():
    trace = SearchTrace("t")
    for s, g in zip([0.3, 0.1, 0.5, 0.4], SPACE.all_genomes()):
        trace.add(g, s)
    assert trace.best_so_far().tolist() == [0.3, 0.3, 0.5, 0.5]
    assert trace.best()[1] == 0.5 and trace.best()[0] == trace.genomes[2]
    with pytest.raises(ValueError, match="nothing"):
        SearchTrace("empty").best()


def test_random_search_uses_the_budget_and_calls_back():
    calls = []
    trace = random_search(SPACE, target_score, 17, random.Random(0), callback=lambda t: calls.append(len(t)))
    assert len(trace) == 17 and calls == list(range(1, 18))
    assert trace.scores == [target_score(g) for g in trace.genomes]


def reference_evolution(space, score, budget, rng, P, S):
    """Algorithm 1 of Real et al. (2019), written independently of the module, for the same RNG calls."""
    population, history = deque(), []
    while len(population) < P and len(history) < budget:
        g = space.sample(rng)
        population.append((g, score(g)))
        history.append(population[-1])
    while len(history) < budget:
        sample = [population[rng.randrange(len(population))] for _ in range(S)]
        parent = max(sample, key=lambda m: m[1])[0]
        child = space.mutate(parent, rng)
        population.append((child, score(child)))
        history.append(population[-1])
        population.popleft()
    return history


def test_evolution_follows_algorithm_1():
    trace = regularized_evolution(SPACE, target_score, 60, random.Random(3), population_size=10, sample_size=3)
    ref = reference_evolution(SPACE, target_score, 60, random.Random(3), 10, 3)
    assert [g.key for g in trace.genomes] == [g.key for g, _ in ref]
    assert trace.scores == [s for _, s in ref]


def test_evolution_beats_random_on_a_smooth_score():
    ends = {"random": [], "evolution": []}
    for seed in range(12):
        ends["random"].append(random_search(SPACE, target_score, 80, random.Random(seed)).best_so_far()[-1])
        ends["evolution"].append(regularized_evolution(SPACE, target_score, 80, random.Random(seed),
                                                       population_size=16, sample_size=4).best_so_far()[-1])
    assert np.mean(ends["evolution"]) > np.mean(ends["random"])


def test_budget_smaller_than_population_is_random_sampling():
    a = regularized_evolution(SPACE, target_score, 5, random.Random(7), population_size=20)
    b = random_search(SPACE, target_score, 5, random.Random(7))
    assert [g.key for g in a.genomes] == [g.key for g in b.genomes]


def test_bad_settings():
    with pytest.raises(ValueError, match="sample_size"):
        regularized_evolution(SPACE, target_score, 10, random.Random(0), population_size=3, sample_size=4)
    with pytest.raises(ValueError, match="budget"):
        random_search(SPACE, target_score, 0, random.Random(0))
