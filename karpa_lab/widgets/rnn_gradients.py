r"""Vanishing and exploding gradients, on a slider: ||dL/dh_t|| against the time lag for a chosen rho(W_hh).

The logic is :func:`gradient_profile` (numbers in, arrays and a readout out) and :func:`draw_profiles`
(a matplotlib figure); :func:`radius_widget` only wires ipywidgets sliders to them.

    profile = gradient_profile(radius=1.2, steps=50)
    profile["ratio"]      # ||dL/dh_1|| / ||dL/dh_T||: < 1 vanishing, > 1 exploding
"""

from __future__ import annotations

import numpy as np

from karpa_lab.models.rnn import gradient_norms_by_lag
from karpa_lab.widgets import serialized, show_figure

RADIUS_RANGE = (0.1, 2.0)
STEPS_RANGE = (2, 200)
INPUT_SCALE_RANGE = (0.0, 2.0)


def _clip(name: str, value: float, low: float, high: float, notes: list[str]) -> float:
    if not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    if value < low or value > high:
        clipped = min(max(value, low), high)
        notes.append(f"{name}={value:g} is outside [{low:g}, {high:g}]; clipped to {clipped:g}")
        return clipped
    return value


def gradient_profile(
    radius: float, steps: int = 50, input_scale: float = 0.0, hidden_size: int = 64, seed: int = 0
) -> dict:
    r"""How the gradient of a loss on h_T shrinks or grows as it travels back through time.

    Returns a dict with
        ``lag`` (steps,) int: k = 0..T-1;  ``norm`` (steps,): ||dL/dh_{T-k}|| with ||dL/dh_T|| = 1;
        ``reference`` (steps,): rho^k, the linear prediction;  ``ratio``: ||dL/dh_1|| / ||dL/dh_T||;
        ``radius``, ``steps``, ``input_scale``: the values used (after clipping);
        ``message``: empty, or what was clipped.
    ``radius`` is clipped to [0.1, 2], ``steps`` to [2, 200], ``input_scale`` to [0, 2]; a value that is
    not a finite number is refused (ValueError).
    """
    notes: list[str] = []
    radius = _clip("radius", float(radius), *RADIUS_RANGE, notes)
    steps = int(round(_clip("steps", float(steps), *STEPS_RANGE, notes)))
    input_scale = _clip("input_scale", float(input_scale), *INPUT_SCALE_RANGE, notes)
    norm = gradient_norms_by_lag(radius, steps=steps, hidden_size=hidden_size, input_scale=input_scale,
                                 seed=seed).numpy()
    lag = np.arange(steps)
    return {
        "lag": lag,
        "norm": norm,
        "reference": radius ** lag.astype(np.float64),
        "ratio": float(norm[-1]),
        "radius": radius,
        "steps": steps,
        "input_scale": input_scale,
        "message": "; ".join(notes),
    }


def draw_profiles(profiles: list[dict], ax=None):
    """Plot ||dL/dh_{T-k}|| against k for each profile on a log scale, with rho^k dashed.

    Draws on ``ax`` when given (a widget redraws in place), else on a new pyplot figure (shown by
    ``plt.show()`` in a notebook); returns the figure.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(6.5, 3.6))
    for i, p in enumerate(profiles):
        color = f"C{i % 10}"
        label = rf"$\rho$ = {p['radius']:.2f}"
        if p["input_scale"]:
            label += f", inputs x{p['input_scale']:g}"
        ax.semilogy(p["lag"], p["norm"], color=color, lw=2, label=label)
        ax.semilogy(p["lag"], p["reference"], color=color, lw=1, ls="--", alpha=0.6)
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set(xlabel="time lag k (steps back from T)", ylabel=r"$\|\partial L / \partial h_{T-k}\|$",
           title=r"gradient norm against time lag (dashed: $\rho^k$)")
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax.figure


def readout(profile: dict) -> str:
    """The key numbers as a line of HTML (what the widget shows under its figure)."""
    ratio = profile["ratio"]
    verdict = "vanishing" if ratio < 0.1 else "exploding" if ratio > 10 else "roughly preserved"
    html = (f"rho(W_hh) = <b>{profile['radius']:.2f}</b>, T = {profile['steps']}, input scale "
            f"{profile['input_scale']:.2f}: ||dL/dh_1|| / ||dL/dh_T|| = <b>{ratio:.3g}</b> ({verdict})")
    if profile["message"]:
        html += f"<br><span style='color:#b00'>{profile['message']}</span>"
    return html


def radius_widget(radius: float = 1.0, steps: int = 50, input_scale: float = 0.0):
    """Sliders for the spectral radius, the sequence length and the input scale; the figure and an
    ``ipywidgets.HTML`` readout of the ratio ||dL/dh_1|| / ||dL/dh_T|| update as they move."""
    import ipywidgets as w
    from matplotlib.figure import Figure

    radius_slider = w.FloatSlider(value=radius, min=RADIUS_RANGE[0], max=RADIUS_RANGE[1], step=0.01,
                                  description="rho(W_hh)", continuous_update=False)
    steps_slider = w.IntSlider(value=steps, min=STEPS_RANGE[0], max=STEPS_RANGE[1], description="T",
                               continuous_update=False)
    scale_slider = w.FloatSlider(value=input_scale, min=INPUT_SCALE_RANGE[0], max=INPUT_SCALE_RANGE[1],
                                 step=0.05, description="input scale", continuous_update=False)
    text = w.HTML()
    out = w.Output()
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.add_subplot()

    @serialized
    def redraw(_=None) -> None:
        profile = gradient_profile(radius_slider.value, steps_slider.value, scale_slider.value)
        text.value = readout(profile)
        ax.clear()
        draw_profiles([profile], ax=ax)
        show_figure(out, fig)

    for s in (radius_slider, steps_slider, scale_slider):
        s.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([radius_slider, steps_slider, scale_slider]), text, out])
