r"""A slider over the content weight alpha of style transfer: the Gram-based result beside the pixel blend.

The results are computed beforehand (optimising an image takes seconds, too slow for a slider); the logic is
:func:`style_view` (an alpha in, the nearest precomputed pair and a readout out) and :func:`draw_style`
(a matplotlib figure); :func:`style_widget` only wires a slider to them.

    view = style_view(results, 0.9)
    view["gram"], view["blend"]   # (H, W): argmin of alpha L_content + (1 - alpha) L_tex, and alpha p + (1 - alpha) t
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from karpa_lab.widgets import serialized, show_figure


def style_results(alphas: Sequence[float], gram: torch.Tensor, blend: torch.Tensor, content: Sequence[float],
                  style: Sequence[float]) -> dict:
    """Bundle the precomputed results: ``gram`` and ``blend`` (A, 1, H, W), one image and two losses per alpha."""
    if not (len(alphas) == len(gram) == len(blend) == len(content) == len(style)) or len(alphas) == 0:
        raise ValueError(f"need one Gram result, one blend and two losses per alpha; got {len(alphas)} alphas, "
                         f"{len(gram)} and {len(blend)} images, {len(content)} and {len(style)} losses")
    return {"alphas": [float(a) for a in alphas], "gram": gram[:, 0].cpu().numpy(), "blend": blend[:, 0].cpu().numpy(),
            "content": [float(c) for c in content], "style": [float(s) for s in style]}


def style_view(results: dict, alpha: float) -> dict:
    """The precomputed pair whose alpha is nearest to ``alpha``, with a readout of its two losses (HTML)."""
    i = int(np.argmin([abs(a - alpha) for a in results["alphas"]]))
    a = results["alphas"][i]
    readout = (f"<b>alpha = {a:g}</b> (content weight; style weight {1 - a:.3g}): Gram result's content loss "
               f"{results['content'][i]:.3f}, style loss {results['style'][i]:.3f}; the blend is "
               f"{a:g} x photo + {1 - a:.3g} x texture")
    return {"alpha": a, "gram": results["gram"][i], "blend": results["blend"][i], "readout": readout}


def draw_style(view: dict, fig=None):
    """Gram-based style transfer | the pixel blend, side by side, in grey."""
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(6, 3.2))
    fig.clear()
    axes = fig.subplots(1, 2)
    for ax, key, title in zip(axes, ("gram", "blend"), ("content + Gram style loss", "pixel blend")):
        ax.imshow(view[key], cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"{title}, alpha {view['alpha']:g}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def style_widget(results: dict):
    """A slider over the precomputed alphas; the two pictures and the readout follow it."""
    import ipywidgets as w
    from matplotlib.figure import Figure

    slider = w.SelectionSlider(options=results["alphas"], value=results["alphas"][len(results["alphas"]) // 2],
                               description="alpha", continuous_update=False)
    text, out = w.HTML(), w.Output()
    fig = Figure(figsize=(6, 3.2))

    @serialized
    def redraw(_=None) -> None:
        view = style_view(results, slider.value)
        text.value = view["readout"]
        draw_style(view, fig)
        show_figure(out, fig)

    slider.observe(redraw, names="value")
    redraw()
    return w.VBox([slider, text, out])
