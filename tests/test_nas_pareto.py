"""The Pareto front of (cost, accuracy) against the brute-force definition of dominance."""

from __future__ import annotations

import numpy as np
import pytest

from karpa_lab.nas.pareto import at_least_as_good, dominates, pareto_front


def brute_force_front(costs, accs) -> set[int]:
    n = len(costs)
    return {i for i in range(n) if not any(dominates(costs[j], accs[j], costs[i], accs[i]) for j in range(n))}


def test_dominance():
    assert dominates(1, 0.9, 2, 0.9) and dominates(1, 0.9, 1, 0.8) and dominates(1, 0.9, 2, 0.8)
    assert not dominates(1, 0.9, 1, 0.9)  # equal points do not dominate each other
    assert not dominates(1, 0.8, 2, 0.9)  # a trade-off


@pytest.mark.parametrize("seed", range(20))
def test_front_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    costs = rng.integers(0, 12, n).astype(float)  # few distinct values: many ties
    accs = rng.integers(0, 8, n) / 8
    front = pareto_front(costs, accs)
    assert set(front.tolist()) == brute_force_front(costs, accs)
    assert np.all(np.diff(costs[front]) >= 0)  # ordered by cost
    assert np.all(np.diff(accs[front]) >= 0)  # ... and so accuracy increases along it


def test_at_least_as_good():
    costs, accs = [10, 5, 20, 5], [0.9, 0.95, 0.99, 0.85]
    assert at_least_as_good(10, 0.9, costs, accs).tolist() == [0, 1]


def test_shape_errors():
    with pytest.raises(ValueError, match="same length"):
        pareto_front([1, 2], [0.5])
