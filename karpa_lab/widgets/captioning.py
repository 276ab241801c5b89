r"""A scene, its captions by greedy and by beam search, and where the decoder looked for each word.

The logic is :func:`caption_view` (a model, scenes, an index and a beam width in; captions, scores, maps
and a readout out) and :func:`draw_caption_view` (a matplotlib figure); :func:`caption_widget` only wires
two sliders to them.

    v = caption_view(model, splits["test"], index=3, beam=3)
    v["beam"], v["beam_logprob"], v["maps"]   # caption, its log-probability, (words, G, G) attention
"""

from __future__ import annotations

import torch

from karpa_lab.data.scenes import BOS, EOS, CaptionScenes, caption_of, decode
from karpa_lab.models.captioning import CaptionDecoder, beam_search, sample_captions
from karpa_lab.widgets import serialized, show_figure

BEAM_RANGE = (1, 8)


@torch.no_grad()
def caption_view(model: CaptionDecoder, scenes: CaptionScenes, index: int = 0, beam: int = 3) -> dict:
    """Greedy and beam-search captions of scene ``index``, and the attention map of every word of the beam
    caption (``maps`` (words, G, G), or None for a decoder without attention). ``beam`` is clipped to
    [1, 8]; an index outside the scenes is refused."""
    if not 0 <= index < len(scenes):
        raise ValueError(f"index must be in [0, {len(scenes)}) for these {len(scenes)} scenes, got {index}")
    beam = int(min(max(int(beam), BEAM_RANGE[0]), BEAM_RANGE[1]))
    model.eval()
    image = scenes.images[index:index + 1]
    greedy, greedy_logp, _ = sample_captions(model, image, temperature=0.0)
    best, best_logp = beam_search(model, image, beam=beam)
    words = best[0].tolist()
    length = words.index(EOS) + 1 if EOS in words else len(words)
    inputs = torch.tensor([[BOS] + words[:length - 1]])  # <bos>, then the caption: teacher-forced replay
    _, maps = model(image, inputs, return_attention=True)
    grid = model.encoder.grid
    maps = None if maps is None else maps[0].view(length, grid, grid).numpy()
    reference = caption_of(scenes.attributes[index])
    beam_text, greedy_text = decode(best[0]), decode(greedy[0])
    readout = (f"reference: <b>{reference}</b><br>greedy: {greedy_text} (log-prob {float(greedy_logp):.2f})<br>"
               f"beam {beam}: {beam_text} (log-prob {float(best_logp):.2f})"
               f"{' ✓' if beam_text == reference else ' ✗'}")
    return {"image": image[0].permute(1, 2, 0).numpy(), "reference": reference, "greedy": greedy_text,
            "greedy_logprob": float(greedy_logp), "beam": beam_text, "beam_logprob": float(best_logp),
            "beam_width": beam, "words": beam_text.split() + ["<eos>"], "maps": maps, "readout": readout}


def draw_caption_view(view: dict, fig=None):
    """The scene, then one panel per word of the beam caption with its attention map over the scene."""
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(12, 2.2))
    fig.clear()
    panels = 1 + (len(view["words"]) if view["maps"] is not None else 0)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    axes[0].imshow(view["image"])
    axes[0].set_title(f"scene, beam {view['beam_width']}", fontsize=9)
    size = view["image"].shape[0]
    for ax, word, amap in zip(axes[1:], view["words"], view["maps"] if view["maps"] is not None else []):
        ax.imshow(view["image"] * 0.5)
        ax.imshow(amap, cmap="magma", alpha=0.6, extent=(-0.5, size - 0.5, size - 0.5, -0.5), vmin=0)
        ax.set_title(word, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def caption_widget(model: CaptionDecoder, scenes: CaptionScenes, index: int = 0, beam: int = 3):
    """Sliders for the scene and the beam width; the captions, their log-probabilities and the maps follow."""
    import ipywidgets as w
    from matplotlib.figure import Figure

    scene = w.IntSlider(value=index, min=0, max=len(scenes) - 1, description="scene", continuous_update=False)
    width = w.IntSlider(value=beam, min=BEAM_RANGE[0], max=BEAM_RANGE[1], description="beam", continuous_update=False)
    text, out = w.HTML(), w.Output()
    fig = Figure(figsize=(12, 2.2))

    @serialized
    def redraw(_=None) -> None:
        view = caption_view(model, scenes, scene.value, width.value)
        text.value = view["readout"]
        draw_caption_view(view, fig)
        show_figure(out, fig)

    for control in (scene, width):
        control.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([scene, width]), text, out])
