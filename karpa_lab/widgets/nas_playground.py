"""A playground for searchers on the tabular benchmark: random search against regularized evolution.

:func:`compare` runs both many times on the table (a look-up per evaluation, so hundreds of repeats take
seconds) and returns the numbers; :func:`draw_compare` plots the mean best-so-far curves with their
95 % bands and the test regret of what each search returned. :func:`search_playground` wires sliders
(population size P, tournament size S, budget, repeats) to them.
"""

from __future__ import annotations

import numpy as np

from karpa_lab.nas.searchers import random_search, regularized_evolution
from karpa_lab.nas.tabular import TabularBenchmark, repeat_search
from karpa_lab.widgets import serialized, show_figure

LIMITS = {"population_size": (2, 100), "sample_size": (1, 100), "budget": (5, 300), "repeats": (5, 500)}


def clip_settings(population_size: int, sample_size: int, budget: int, repeats: int) -> tuple[dict, list[str]]:
    """Clip each setting to :data:`LIMITS` and S to at most P; return the settings and what was changed."""
    asked = {"population_size": population_size, "sample_size": sample_size, "budget": budget, "repeats": repeats}
    settings, notes = {}, []
    for name, value in asked.items():
        lo, hi = LIMITS[name]
        settings[name] = int(min(max(int(value), lo), hi))
        if settings[name] != value:
            notes.append(f"{name} {value} clipped to {settings[name]} (range {lo}..{hi})")
    if settings["sample_size"] > settings["population_size"]:
        notes.append(f"tournament size S={settings['sample_size']} cannot exceed the population "
                     f"P={settings['population_size']}: S set to P")
        settings["sample_size"] = settings["population_size"]
    return settings, notes


def compare(bench: TabularBenchmark, population_size: int = 10, sample_size: int = 3, budget: int = 50,
            repeats: int = 100, seed: int = 0) -> dict:
    """Random search and regularized evolution, ``repeats`` runs each on the table. Returns the
    :class:`Repeats` of both and the numbers: mean (and standard error of the) final best validation
    accuracy as the search saw it, the returned genome's mean validation (both seeds) and test accuracy,
    rate of returning a top-3 genome (by mean validation), mean test regret."""
    s, notes = clip_settings(population_size, sample_size, budget, repeats)
    runs = {
        "random": repeat_search(bench, random_search, s["budget"], s["repeats"], seed=seed, name="random"),
        "evolution": repeat_search(bench, regularized_evolution, s["budget"], s["repeats"], seed=seed,
                                   name="evolution", population_size=s["population_size"],
                                   sample_size=s["sample_size"]),
    }
    numbers = {"settings": s, "notes": notes}
    for name, r in runs.items():
        end = r.best_val[:, -1]
        numbers[name] = {"final_best_val": float(end.mean()), "sem": float(end.std(ddof=1) / np.sqrt(len(end))),
                         "returned_mean_val": float(np.mean([bench.entry(k).val.mean() for k in r.chosen])),
                         "returned_test": float(np.mean([bench.entry(k).test.mean() for k in r.chosen])),
                         "top3_rate": r.top_k_rate(bench, 3), "test_regret": float(r.test_regret.mean()),
                         "test_regret_sem": float(r.test_regret.std(ddof=1) / np.sqrt(len(end)))}
    numbers["evolution_minus_random"] = numbers["evolution"]["final_best_val"] - numbers["random"]["final_best_val"]
    return {"runs": runs, "numbers": numbers}


def draw_compare(fig, result: dict, bench: TabularBenchmark) -> None:
    """Left: mean best-so-far validation accuracy with a 95 % band per searcher, and the best mean
    validation accuracy in the table; right: histograms of the test regret of the returned genomes."""
    fig.clear()
    ax, ax_r = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2, 1]})
    for i, (name, r) in enumerate(result["runs"].items()):
        mean = r.best_val.mean(0)
        band = 1.96 * r.best_val.std(0, ddof=1) / np.sqrt(len(r.best_val))
        t = np.arange(1, len(mean) + 1)
        ax.plot(t, mean, color=f"C{i}", label=f"{name}: {mean[-1]:.4f}")
        ax.fill_between(t, mean - band, mean + band, color=f"C{i}", alpha=0.2)
        ax_r.hist(r.test_regret * 100, bins=15, alpha=0.5, color=f"C{i}",
                  label=f"{name}: mean {r.test_regret.mean() * 100:.2f}")
    ax.axhline(bench.mean_val.max(), color="k", ls=":", lw=1, label="best mean val in the table")
    s = result["numbers"]["settings"]
    ax.set(xlabel="evaluations", ylabel="best-so-far validation accuracy",
           title=f"mean of {s['repeats']} runs (P={s['population_size']}, S={s['sample_size']})")
    ax.legend(fontsize=8, loc="lower right")
    ax_r.set(xlabel="test regret (points of accuracy)", ylabel="runs", title="what the search returned")
    ax_r.legend(fontsize=8)
    fig.tight_layout()


def readout(numbers: dict) -> str:
    """The key numbers as HTML (read by the browser test as well as by a person)."""
    rows = "".join(
        f"<tr><td>{name}</td><td>{n['final_best_val']:.4f} &plusmn; {n['sem']:.4f}</td>"
        f"<td>{n['top3_rate']:.0%}</td><td>{n['test_regret'] * 100:.2f}</td></tr>"
        for name, n in ((k, numbers[k]) for k in ("random", "evolution"))
    )
    notes = "".join(f"<br><i>{note}</i>" for note in numbers["notes"])
    return ("<table><tr><th>search</th><th>final best val (mean &plusmn; s.e.)</th><th>top-3 returned</th>"
            f"<th>test regret (points)</th></tr>{rows}</table>"
            f"evolution - random: {numbers['evolution_minus_random'] * 100:+.2f} points{notes}")


def search_playground(bench: TabularBenchmark):
    """Sliders for P, S, budget and repeats; the figure and the readout update on release."""
    import ipywidgets as w
    from matplotlib.figure import Figure

    sliders = {
        "population_size": w.IntSlider(10, *LIMITS["population_size"], description="population P"),
        "sample_size": w.IntSlider(3, *LIMITS["sample_size"], description="tournament S"),
        "budget": w.IntSlider(50, *LIMITS["budget"], step=5, description="budget"),
        "repeats": w.IntSlider(100, *LIMITS["repeats"], step=5, description="repeats"),
    }
    for s in sliders.values():
        s.continuous_update = False
    html, out, fig = w.HTML(), w.Output(), Figure(figsize=(10, 3.4))

    @serialized
    def redraw(_=None) -> None:
        result = compare(bench, **{k: s.value for k, s in sliders.items()})
        html.value = readout(result["numbers"])
        draw_compare(fig, result, bench)
        show_figure(out, fig)

    for s in sliders.values():
        s.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox(list(sliders.values())[:2]), w.HBox(list(sliders.values())[2:]), html, out])
