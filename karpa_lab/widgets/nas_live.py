"""A live view of an architecture search: best-so-far curves and the candidate being evaluated.

The logic is pure: :func:`summarize` turns the searches' scores into numbers, :func:`text_line` into a
line of text, :func:`draw_search` onto a matplotlib figure. :class:`SearchMonitor` only wires them to
the notebook: in JupyterLab an HTML readout and one figure updated in place; in a terminal or under
nbval (``KARPA_HEADLESS=1``) a text line every few evaluations.

    monitor = SearchMonitor(budget=24)
    random_search(space, protocol.score, 24, rng, callback=monitor)   # called after every evaluation
    monitor.close()
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from karpa_lab.nas.searchers import SearchTrace
from karpa_lab.nas.space import count_params
from karpa_lab.notebook import is_interactive
from karpa_lab.widgets import show_figure


def summarize(curves: dict[str, Sequence[float]], current: str = "") -> dict:
    """Numbers of the live view: evaluations and best score per search, the overall best, the candidate."""
    evaluated = {name: len(scores) for name, scores in curves.items()}
    best = {name: (float(max(scores)) if len(scores) else float("nan")) for name, scores in curves.items()}
    finite = [b for b in best.values() if np.isfinite(b)]
    return {"evaluated": evaluated, "best": best, "overall_best": max(finite) if finite else float("nan"),
            "total": sum(evaluated.values()), "current": current}


def text_line(name: str, scores: Sequence[float], budget: int | None, current: str) -> str:
    """A line of text: ``random  12/24 | last 0.9611 | best 0.9667 | now 64-32:relu (6,570 params)``."""
    n = len(scores)
    of = f"/{budget}" if budget else ""
    last = f"{scores[-1]:.4f}" if n else "-"
    best = f"{max(scores):.4f}" if n else "-"
    return f"{name:<10} {n:>3}{of} | last {last} | best {best} | now {current}"


def draw_search(fig, curves: dict[str, Sequence[float]], budget: int | None = None, current: str = "",
                ylabel: str = "validation accuracy") -> None:
    """Draw each search's scores (dots) and best-so-far curve (line) on ``fig`` (cleared first)."""
    fig.clear()
    ax = fig.add_subplot(1, 1, 1)
    for i, (name, scores) in enumerate(curves.items()):
        if not len(scores):
            continue
        t = np.arange(1, len(scores) + 1)
        color = f"C{i}"
        ax.scatter(t, scores, s=12, alpha=0.4, color=color)
        ax.plot(t, np.maximum.accumulate(np.asarray(scores, dtype=float)), color=color, lw=2,
                label=f"{name}: best {max(scores):.4f}")
    if budget:
        ax.set_xlim(0.5, budget + 0.5)
    ax.set(xlabel="evaluations", ylabel=ylabel, title=f"now: {current}" if current else "search")
    if any(len(s) for s in curves.values()):
        ax.legend(loc="lower right", fontsize=8)
        lows = [np.percentile(s, 10) for s in curves.values() if len(s)]
        highs = [max(s) for s in curves.values() if len(s)]
        ax.set_ylim(min(lows) - 0.01, max(highs) + 0.01)
    fig.tight_layout()


class SearchMonitor:
    """Callback for the searchers (``callback=monitor``) or, by :meth:`update`, for any search loop."""

    def __init__(self, budget: int | None = None, every: int | None = None, interactive: bool | None = None,
                 min_seconds: float = 0.3):
        self.budget = budget
        self.every = every or max(1, (budget or 10) // 6)
        self.interactive = is_interactive() if interactive is None else interactive
        self.min_seconds = min_seconds
        self.curves: dict[str, list[float]] = {}
        self.currents: dict[str, str] = {}
        self.current = ""
        self._shown = False
        self._last = 0.0

    def __call__(self, trace: SearchTrace) -> None:
        genome = trace.genomes[-1]
        self.update(trace.name, trace.scores, f"{genome.key} ({count_params(genome):,} params)")

    def update(self, name: str, scores: Sequence[float], current: str = "") -> None:
        """Record search ``name``'s scores so far and the current candidate; redraw or print."""
        new = len(scores) != len(self.curves.get(name, ()))
        self.curves[name] = list(scores)
        self.currents[name] = self.current = current
        if not self.interactive:
            n = len(scores)
            if new and n and (n % self.every == 0 or n == self.budget):
                print(text_line(name, scores, self.budget, current), flush=True)
        elif time.perf_counter() - self._last > self.min_seconds:
            self._draw()

    def _draw(self) -> None:
        from IPython.display import display
        from matplotlib.figure import Figure

        if not self._shown:
            import ipywidgets as w

            self.fig = Figure(figsize=(7, 3.2))
            self.html, self.out = w.HTML(), w.Output()
            display(w.VBox([self.html, self.out]))
            self._shown = True
        s = summarize(self.curves, self.current)
        parts = [f"<b>{k}</b>: {s['evaluated'][k]} evaluated, best {s['best'][k]:.4f}, "
                 f"now <code>{self.currents[k]}</code>" for k in self.curves]
        self.html.value = "<br>".join(parts)
        draw_search(self.fig, self.curves, self.budget, self.current)
        show_figure(self.out, self.fig)
        self._last = time.perf_counter()

    def close(self) -> dict:
        """Final redraw (notebook) or summary lines (text); returns :func:`summarize`'s numbers."""
        if self.interactive and self.curves:
            self._draw()
        elif not self.interactive:
            for name, scores in self.curves.items():
                if scores and len(scores) % self.every and len(scores) != self.budget:
                    print(text_line(name, scores, self.budget, self.currents[name]), flush=True)
        return summarize(self.curves, self.current)
