"""Search strategies from scratch: random search and regularized (aging) evolution.

Both maximize a ``score(genome) -> float`` (a validation accuracy) under the same budget of
evaluations, and both return a :class:`SearchTrace`, whose best-so-far curve

    b_t = max_{s <= t} score(g_s)                  t = 1 .. budget

is what search papers plot. Regularized evolution (Real et al. 2019, "Regularized Evolution for Image
Classifier Architecture Search", Algorithm 1) keeps a population as a queue:

    population <- P random genomes (evaluated)
    repeat until the budget is spent:
        sample <- S members drawn at random (with replacement)
        parent <- the best of the sample              (tournament selection)
        child  <- mutate(parent); evaluate it
        append child; remove the OLDEST member        (aging, not the worst)

Aging means an architecture survives only by having good children, not by one lucky evaluation: a
regularizer against the noise of a single training run.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from karpa_lab.nas.space import Genome, Space

Score = Callable[[Genome], float]


@dataclass
class SearchTrace:
    """Every genome a search evaluated, in order, with its score."""

    name: str
    genomes: list[Genome] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.scores)

    def add(self, genome: Genome, score: float) -> None:
        self.genomes.append(genome)
        self.scores.append(float(score))

    def best_so_far(self) -> np.ndarray:
        """b_t = max of the first t scores, shape (len,)."""
        return np.maximum.accumulate(np.asarray(self.scores, dtype=float)) if self.scores else np.zeros(0)

    def best(self) -> tuple[Genome, float]:
        """The genome with the highest score (the first one on ties) and that score."""
        if not self.scores:
            raise ValueError(f"search {self.name!r} has evaluated nothing yet")
        i = int(np.argmax(self.scores))
        return self.genomes[i], self.scores[i]


def _evaluate(trace: SearchTrace, genome: Genome, score: Score, callback) -> float:
    value = score(genome)
    trace.add(genome, value)
    if callback is not None:
        callback(trace)
    return value


def random_search(space: Space, score: Score, budget: int, rng: random.Random,
                  callback: Callable[[SearchTrace], None] | None = None, name: str = "random") -> SearchTrace:
    """Evaluate ``budget`` genomes drawn independently with ``space.sample``; ``callback(trace)`` after each."""
    if budget < 1:
        raise ValueError(f"budget must be at least 1 evaluation, got {budget}")
    trace = SearchTrace(name)
    for _ in range(budget):
        _evaluate(trace, space.sample(rng), score, callback)
    return trace


def regularized_evolution(space: Space, score: Score, budget: int, rng: random.Random,
                          population_size: int = 20, sample_size: int = 5,
                          callback: Callable[[SearchTrace], None] | None = None,
                          name: str = "evolution") -> SearchTrace:
    """Regularized (aging) evolution with tournament size ``sample_size`` over a population of
    ``population_size``; ``budget`` counts every evaluation, the random initial population included."""
    if budget < 1:
        raise ValueError(f"budget must be at least 1 evaluation, got {budget}")
    if not 1 <= sample_size <= population_size:
        raise ValueError(f"need 1 <= sample_size <= population_size, got S={sample_size}, P={population_size}")
    trace = SearchTrace(name)
    population: deque[tuple[Genome, float]] = deque()
    while len(population) < population_size and len(trace) < budget:
        genome = space.sample(rng)
        population.append((genome, _evaluate(trace, genome, score, callback)))
    while len(trace) < budget:
        sample = [population[rng.randrange(len(population))] for _ in range(sample_size)]
        parent = max(sample, key=lambda member: member[1])[0]
        child = space.mutate(parent, rng)
        population.append((child, _evaluate(trace, child, score, callback)))
        population.popleft()
    return trace
