"""Walk through a generator's latent space: digits that morph from one into another.

Pure functions first (tested headless):

- :func:`interpolate_latents`: points between two latent vectors z0, z1 (k,), linear or spherical;
- :func:`interpolation_images`: the generator's images along that path, (n, 1, s, s);
- :func:`interpolation_frame`: one point of the path at 0 <= t <= 1 (clipped), its image, and what the
  digits classifier (:mod:`karpa_lab.metrics`) reads in it;
- :func:`interpolation_figure`: a matplotlib ``Figure``: the strip of images, the one at t enlarged.

Then :func:`latent_widget`, which only wires a slider to them. Structure (stable for browser tests)::

    VBox(class "karpa-latent")
    |-- FloatSlider "t" (0 .. 1)
    |-- Output (the figure as a PNG, redrawn in place by ``show_figure``)
    `-- HTML (class "karpa-latent-readout"), whose markup is
          <div class="karpa-latent-readout">
            <span class="karpa-latent-t" data-t="0.40">t = 0.40</span>
            <span class="karpa-latent-class" data-class="3" data-confidence="0.9312">classifier: 3 (p = 0.931)</span>
            <span class="karpa-latent-note">...</span>      (only when t was clipped)
          </div>
"""

from __future__ import annotations

import html
from typing import Any

import torch
from torch import nn

from karpa_lab.metrics import classify
from karpa_lab.widgets import serialized, show_figure

MODES = ("linear", "slerp")


def interpolate_latents(z0: torch.Tensor, z1: torch.Tensor, ts: torch.Tensor | list[float],
                        mode: str = "slerp") -> torch.Tensor:
    """Latent points (n, k) between ``z0`` and ``z1`` (k,) at the fractions ``ts`` (n,), which must be finite.

    ``"linear"``: (1 - t) z0 + t z1. Its midpoints are shorter than typical z ~ N(0, I) in many
    dimensions (|z| concentrates near sqrt(k)), so they are less typical inputs for the generator.
    ``"slerp"`` (spherical, White 2016): sin((1 - t) w) / sin w * z0 + sin(t w) / sin w * z1 with w the
    angle between z0 and z1, which keeps the norm close to the ends'. Where w is undefined or sin w is 0
    the formula divides by zero, so: a zero vector at either end, or parallel ends, give the straight
    line; opposite ends (w = pi) are joined by half a great circle through the direction of the fewest
    z0 coordinates, its radius going linearly from |z0| to |z1| (in one dimension, where there is no
    such circle, the straight line).
    """
    if z0.dim() != 1 or z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must be vectors (k,) of the same size, got {tuple(z0.shape)} and "
                         f"{tuple(z1.shape)}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    t = torch.as_tensor(ts, dtype=z0.dtype).reshape(-1, 1)
    if not torch.isfinite(t).all():
        raise ValueError(f"ts must be finite fractions (0 = z0, 1 = z1), got {t.flatten().tolist()}")
    if mode == "linear":
        return (1 - t) * z0 + t * z1
    n0, n1 = z0.norm(), z1.norm()
    if float(n0) == 0 or float(n1) == 0:  # no direction to turn from or to
        return (1 - t) * z0 + t * z1
    d0, d1 = z0 / n0, z1 / n1
    # The angle from the chord and its complement: exact near 0 and pi, where arccos of the cosine is not.
    omega = 2 * torch.atan2((d0 - d1).norm(), (d0 + d1).norm())
    if float(omega.sin()) >= 1e-6:
        return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / omega.sin()
    if float(omega) < 1 or len(z0) == 1:  # parallel: the straight line is the arc
        return (1 - t) * z0 + t * z1
    return _half_circle(z0, n0, n1, t)


def _half_circle(z0: torch.Tensor, n0: torch.Tensor, n1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """From z0 to the opposite direction, radius |z0| -> |z1|, through a unit vector u perpendicular to z0."""
    d0 = z0 / n0
    u = torch.zeros_like(z0)
    u[d0.abs().argmin()] = 1.0
    u = u - torch.dot(u, d0) * d0  # Gram-Schmidt: the axis least aligned with z0, made perpendicular
    u = u / u.norm()
    radius = (1 - t) * n0 + t * n1
    return radius * (torch.cos(torch.pi * t) * d0 + torch.sin(torch.pi * t) * u)


@torch.no_grad()
def interpolation_images(generator: nn.Module, z0: torch.Tensor, z1: torch.Tensor, n: int = 9,
                         mode: str = "slerp") -> torch.Tensor:
    """Images (n, 1, s, s) that ``generator`` makes at n evenly spaced points from z0 to z1 (eval mode)."""
    if n < 2:
        raise ValueError(f"n must be >= 2 (both ends), got {n}")
    return _generate(generator, interpolate_latents(z0, z1, torch.linspace(0, 1, n), mode))


def _generate(generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    was_training = generator.training
    generator.eval()
    try:
        device = next(generator.parameters()).device
        x = generator(z.to(device)).float().cpu()
    finally:
        generator.train(was_training)
    side = int(round(x[0].numel() ** 0.5))
    return x.reshape(-1, 1, side, side)


@torch.no_grad()
def interpolation_frame(generator: nn.Module, z0: torch.Tensor, z1: torch.Tensor, t: float,
                        mode: str = "slerp") -> dict[str, Any]:
    """The image at fraction ``t`` (clipped to [0, 1]) and the classifier's reading of it.

    Returns ``t`` (as used), ``image`` (1, s, s), ``label`` and ``confidence`` (the classifier's top class
    and its probability) and ``note`` ("" unless t was clipped).
    """
    used = min(max(float(t), 0.0), 1.0)
    note = f"t = {t} is outside [0, 1]; showing t = {used:g}" if used != t else ""
    image = _generate(generator, interpolate_latents(z0, z1, [used], mode))
    probs = classify(image)[0]
    return {"t": used, "image": image[0], "label": int(probs.argmax()), "confidence": float(probs.max()),
            "note": note}


def readout_html(frame: dict[str, Any]) -> str:
    """The HTML readout of :func:`interpolation_frame`'s dict (markup in the module docstring)."""
    note = f'<br><span class="karpa-latent-note">{html.escape(frame["note"])}</span>' if frame["note"] else ""
    return (
        '<div class="karpa-latent-readout">'
        f'<span class="karpa-latent-t" data-t="{frame["t"]:.2f}">t = {frame["t"]:.2f}</span><br>'
        f'<span class="karpa-latent-class" data-class="{frame["label"]}" data-confidence="{frame["confidence"]:.4f}">'
        f'classifier: {frame["label"]} (p = {frame["confidence"]:.3f})</span>{note}</div>'
    )


def interpolation_figure(strip: torch.Tensor, frame: dict[str, Any], fig=None):
    """The strip of images (n, 1, s, s) along the path, and the frame at t enlarged beside it."""
    from matplotlib.figure import Figure

    n = strip.shape[0]
    fig = fig if fig is not None else Figure(figsize=(10, 2.2))
    fig.clear()
    axes = fig.subplots(1, n + 1, gridspec_kw={"width_ratios": [1] * n + [2]})
    for i, ax in enumerate(axes[:n]):
        ax.imshow(strip[i, 0].numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(f"{i / (n - 1):.2f}", fontsize=7)
        ax.axis("off")
    axes[-1].imshow(frame["image"][0].numpy(), cmap="gray_r", vmin=0, vmax=1)
    axes[-1].set_title(f"t = {frame['t']:.2f}: {frame['label']} ({frame['confidence']:.2f})", fontsize=8)
    axes[-1].axis("off")
    fig.tight_layout()
    return fig


def latent_widget(generator: nn.Module, z0: torch.Tensor, z1: torch.Tensor, n: int = 9, mode: str = "slerp"):
    """A slider for t in [0, 1] along the path from z0 to z1; the figure and the readout follow
    (structure in the module docstring). Returns the ``ipywidgets.VBox``."""
    import ipywidgets as W
    from matplotlib.figure import Figure

    strip = interpolation_images(generator, z0, z1, n, mode)
    slider = W.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="t", continuous_update=False)
    out = W.Output()
    readout = W.HTML()
    readout.add_class("karpa-latent-readout")
    fig = Figure(figsize=(10, 2.2))

    @serialized
    def redraw(_=None) -> None:
        frame = interpolation_frame(generator, z0, z1, slider.value, mode)
        interpolation_figure(strip, frame, fig=fig)
        readout.value = readout_html(frame)
        show_figure(out, fig)

    slider.observe(redraw, names="value")
    redraw()
    box = W.VBox([slider, out, readout])
    box.add_class("karpa-latent")
    return box
