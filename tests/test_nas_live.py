"""The live view of a search and the searchers' playground: pure functions over a grid of inputs."""

from __future__ import annotations

import random

import numpy as np
import pytest
from matplotlib.figure import Figure

from karpa_lab.nas.searchers import random_search
from karpa_lab.nas.space import Space
from karpa_lab.nas.tabular import TabularBenchmark
from karpa_lab.widgets.nas_live import SearchMonitor, draw_search, summarize, text_line
from karpa_lab.widgets.nas_playground import (
    LIMITS,
    clip_settings,
    compare,
    draw_compare,
    readout,
    search_playground,
)


@pytest.fixture(scope="module")
def bench() -> TabularBenchmark:
    return TabularBenchmark.load()


@pytest.mark.parametrize("curves", [{}, {"random": []}, {"random": [0.5]}, {"random": [0.5, 0.7, 0.6], "evo": [0.9]}])
def test_summarize_and_draw(curves):
    s = summarize(curves, "64:relu")
    assert s["total"] == sum(len(v) for v in curves.values()) and s["current"] == "64:relu"
    finite = [max(v) for v in curves.values() if v]
    assert (s["overall_best"] == max(finite)) if finite else np.isnan(s["overall_best"])
    fig = Figure()
    draw_search(fig, curves, budget=10, current="64:relu")
    ax = fig.axes[0]
    assert len(ax.lines) == len(finite)  # one best-so-far line per search that has scores
    for line, scores in zip(ax.lines, [v for v in curves.values() if v]):
        assert list(line.get_ydata()) == list(np.maximum.accumulate(scores))


def test_text_line():
    line = text_line("random", [0.75, 0.5], 24, "64:relu")
    assert line == "random       2/24 | last 0.5000 | best 0.7500 | now 64:relu"
    assert "last - | best -" in text_line("evo", [], None, "")


def test_monitor_prints_every_k_evaluations(capsys):
    monitor = SearchMonitor(budget=12, every=4, interactive=False)
    trace = random_search(Space(), lambda g: g.depth / 10, 12, random.Random(0), callback=monitor)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[-1].startswith("random      12/12")
    numbers = monitor.close()
    assert numbers["best"]["random"] == max(trace.scores) and capsys.readouterr().out == ""


def test_monitor_update_for_other_loops(capsys):
    monitor = SearchMonitor(budget=None, every=2, interactive=False)
    monitor.update("worker A", [0.5], "x")
    monitor.update("worker A", [0.5], "x")  # nothing new: no line
    monitor.update("worker A", [0.5, 0.6], "y")
    assert capsys.readouterr().out.count("worker A") == 1
    monitor.update("worker A", [0.5, 0.6, 0.4], "w")
    monitor.update("worker B", [0.7], "z")
    monitor.close()  # the last state of each search that was not printed yet, with its own candidate
    out = capsys.readouterr().out
    assert "worker A     3 | last 0.4000 | best 0.6000 | now w" in out
    assert "worker B     1 | last 0.7000 | best 0.7000 | now z" in out


@pytest.mark.parametrize("p, s, budget, repeats",
                         [(20, 5, 50, 100), (1, 0, 2, 1), (3, 50, 1000, 10**6), (100, 100, 300, 5)])
def test_clip_settings(p, s, budget, repeats):
    settings, notes = clip_settings(p, s, budget, repeats)
    for name, value in settings.items():
        assert LIMITS[name][0] <= value <= LIMITS[name][1]
    assert settings["sample_size"] <= settings["population_size"]
    assert bool(notes) == ((p, s, budget, repeats) != tuple(settings.values()))


def test_compare_on_the_table(bench):
    result = compare(bench, population_size=10, sample_size=3, budget=30, repeats=12)
    n = result["numbers"]
    for name in ("random", "evolution"):
        r = result["runs"][name]
        assert r.best_val.shape == (12, 30) and np.all(np.diff(r.best_val, axis=1) >= 0)
        assert n[name]["final_best_val"] == pytest.approx(r.best_val[:, -1].mean())
        assert 0 <= n[name]["top3_rate"] <= 1 and np.all(r.test_regret >= 0)
    fig = Figure()
    draw_compare(fig, result, bench)
    assert len(fig.axes) == 2
    html = readout(n)
    assert f"{n['random']['final_best_val']:.4f}" in html and f"{n['evolution']['final_best_val']:.4f}" in html
    again = compare(bench, population_size=10, sample_size=3, budget=30, repeats=12)
    assert again["numbers"] == n  # seeded: the same numbers every time


def test_playground_widget_wires_sliders_to_the_readout(bench):
    box = search_playground(bench)
    population, tournament, budget, repeats = [s for row in box.children[:2] for s in row.children]
    html = box.children[2]
    assert (population.value, tournament.value) == (10, 3) and "final best val" in html.value
    repeats.value = 10
    expected = readout(compare(bench, 10, 3, 50, 10)["numbers"])
    assert html.value == expected
    tournament.value = 50  # larger than the population: refused with a message
    assert "cannot exceed the population" in html.value


def test_monitor_in_a_notebook_updates_one_readout_and_one_figure(capsys):
    monitor = SearchMonitor(budget=4, interactive=True, min_seconds=0.0)
    monitor.update("random", [0.5], "16:relu")
    html, fig = monitor.html, monitor.fig
    monitor.update("random", [0.5, 0.8], "32:relu")
    monitor.update("evolution", [0.6], "64:tanh")
    assert monitor.html is html and monitor.fig is fig  # updated in place, not rebuilt
    assert "<b>random</b>: 2 evaluated, best 0.8000, now <code>32:relu</code>" in html.value
    assert "<b>evolution</b>: 1 evaluated, best 0.6000" in html.value
    assert len(fig.axes[0].lines) == 2
    assert monitor.close()["overall_best"] == 0.8
