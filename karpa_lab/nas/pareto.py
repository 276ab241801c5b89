r"""The Pareto front of accuracy against cost (parameters or FLOPs).

Candidate a dominates b when it is no worse on both objectives and strictly better on one:

    a > b  <=>  cost_a <= cost_b  and  acc_a >= acc_b  and  (cost_a < cost_b or acc_a > acc_b)

The Pareto front is the set of candidates no other candidate dominates: for each budget of parameters,
the most accurate network that fits. Sorting by cost (then by accuracy, best first) and sweeping once
finds it in O(N log N): a point is on the front when it beats every cheaper point's accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def dominates(cost_a: float, acc_a: float, cost_b: float, acc_b: float) -> bool:
    """Whether (cost_a, acc_a) dominates (cost_b, acc_b): lower-or-equal cost, higher-or-equal accuracy, not equal."""
    return cost_a <= cost_b and acc_a >= acc_b and (cost_a < cost_b or acc_a > acc_b)


def pareto_front(costs: Sequence[float], accs: Sequence[float]) -> np.ndarray:
    """Indices of the non-dominated points, ordered by increasing cost. Equal points are all kept."""
    costs, accs = np.asarray(costs, dtype=float), np.asarray(accs, dtype=float)
    if costs.shape != accs.shape or costs.ndim != 1:
        raise ValueError(f"costs and accs must be 1-D of the same length, got {costs.shape} and {accs.shape}")
    order = np.lexsort((-accs, costs))  # by cost, then best accuracy first
    front: list[int] = []
    best = -np.inf
    for i in order:
        last = front[-1] if front else None
        if accs[i] > best or (last is not None and accs[i] == accs[last] and costs[i] == costs[last]):
            front.append(int(i))
            best = max(best, accs[i])
    return np.array(front, dtype=int)


def at_least_as_good(cost: float, acc: float, costs: Sequence[float], accs: Sequence[float]) -> np.ndarray:
    """Indices of points with no more cost and no less accuracy than (cost, acc): the candidates that
    match or beat a baseline on both objectives."""
    costs, accs = np.asarray(costs, dtype=float), np.asarray(accs, dtype=float)
    return np.flatnonzero((costs <= cost) & (accs >= acc))


def draw_front(ax, costs: Sequence[float], accs: Sequence[float], label: str = "candidates",
               color: str = "C0", log_cost: bool = True) -> np.ndarray:
    """Scatter all points and draw their Pareto front as a staircase on a matplotlib ``ax``; return the front."""
    costs, accs = np.asarray(costs, dtype=float), np.asarray(accs, dtype=float)
    front = pareto_front(costs, accs)
    ax.scatter(costs, accs, s=10, alpha=0.35, color=color, label=label)
    ax.step(costs[front], accs[front], where="post", color=color, lw=1.5, label=f"Pareto front ({label})")
    ax.scatter(costs[front], accs[front], s=22, color=color, edgecolor="k", lw=0.5, zorder=3)
    if log_cost:
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    return front
