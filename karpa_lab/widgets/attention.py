"""Attention heatmaps: which keys does a query look at, in a chosen layer and head?

Pure functions first (tested headless):

- :func:`as_stack`: attention weights in any usual layout -> a NumPy array (layers, heads, L, S);
- :func:`select`: one (layer, head, query) choice, clipped into range -> the (L, S) map, the query's
  row, its entropy, and a note saying what was clipped;
- :func:`top_attended`: the k keys with the largest weight in a row, with their tokens;
- :func:`attention_figure`: a matplotlib ``Figure``: the heatmap of the head (query row outlined) and
  a bar chart of the query's row over the key tokens;
- :func:`readout_html`: the text readout.

Then :func:`attention_widget`, which only wires controls to them. Its structure (stable for browser
tests)::

    VBox(class "karpa-attn")
    |-- HBox: Dropdown "layer", Dropdown "head", IntSlider "query"
    |-- Output (the figure as a PNG, redrawn in place by ``show_figure``)
    `-- HTML (class "karpa-attn-readout"), whose markup is
          <div class="karpa-attn-readout">
            <span class="karpa-attn-where">layer 0, head 1, query 12 'x'</span>
            <span class="karpa-attn-entropy">entropy 1.234 nats (max 2.565)</span>
            <span class="karpa-attn-note">...</span>            (only when an input was clipped)
            <ol class="karpa-attn-top">
              <li class="karpa-attn-item" data-pos="11" data-token="(" data-weight="0.4321">...</li> ...
            </ol>
          </div>
"""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from karpa_lab.widgets import serialized, show_figure

VISIBLE = {"\n": "⏎", " ": "␣", "\t": "⇥"}


def token_labels(tokens: str | list[str]) -> list[str]:
    """Printable labels for tokens: a newline shows as ⏎, a space as ␣."""
    return [VISIBLE.get(t, t) for t in tokens]


def as_stack(weights: Any) -> np.ndarray:
    """Attention weights as a float NumPy array (layers, heads, L, S).

    Accepts a tensor or array of shape (L, S), (heads, L, S), (layers, heads, L, S), or
    (layers, 1, heads, L, S) (a batch of one, as :meth:`karpa_lab.models.gpt.GPT.forward` returns).
    """
    if hasattr(weights, "detach"):
        weights = weights.detach().float().cpu().numpy()
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 5:
        if w.shape[1] != 1:
            raise ValueError(f"(layers, batch, heads, L, S) weights need batch 1, got shape {w.shape}; "
                             "pick one sequence")
        w = w[:, 0]
    if w.ndim == 2:
        w = w[None, None]
    elif w.ndim == 3:
        w = w[None]
    if w.ndim != 4:
        raise ValueError(f"attention weights must be (L, S), (heads, L, S), (layers, heads, L, S) or "
                         f"(layers, 1, heads, L, S); got shape {w.shape}")
    return w


def _clip(name: str, value: int, n: int, notes: list[str]) -> int:
    clipped = min(max(int(value), 0), n - 1)
    if clipped != value:
        notes.append(f"{name} {value} is out of range 0..{n - 1}; showing {clipped}")
    return clipped


def select(weights: Any, layer: int = 0, head: int = 0, query: int = -1) -> dict[str, Any]:
    """One head's map and one query's row. Out-of-range choices are clipped and reported in ``"note"``.

    ``query=-1`` means the last query. Returns a dict with ``layer``, ``head``, ``query`` (as used),
    ``matrix`` (L, S), ``row`` (S,), ``entropy`` of the row in nats, ``max_entropy`` = log(number of
    keys the row may attend to, i.e. with weight > 0), and ``note`` ("" when nothing was clipped).
    """
    w = as_stack(weights)
    n_layers, n_heads, n_queries, _ = w.shape
    notes: list[str] = []
    layer = _clip("layer", layer, n_layers, notes)
    head = _clip("head", head, n_heads, notes)
    query = n_queries - 1 if query == -1 else _clip("query", query, n_queries, notes)
    matrix = w[layer, head]
    row = matrix[query]
    nz = row[row > 0]
    return {
        "layer": layer, "head": head, "query": query, "matrix": matrix, "row": row,
        "entropy": float(-(nz * np.log(nz)).sum()), "max_entropy": math.log(max(len(nz), 1)),
        "note": "; ".join(notes),
    }


def top_attended(row: np.ndarray, tokens: str | list[str] | None = None, k: int = 5) -> list[tuple[int, str, float]]:
    """The ``k`` keys with the largest weights in ``row`` (S,): ``[(position, token, weight), ...]``, largest first."""
    row = np.asarray(row, dtype=np.float64)
    order = np.argsort(-row, kind="stable")[: max(0, k)]
    return [(int(j), tokens[j] if tokens is not None else str(j), float(row[j])) for j in order]


def readout_html(sel: dict[str, Any], tokens: str | list[str] | None = None, k: int = 5) -> str:
    """The HTML readout of :func:`select`'s result (markup in the module docstring)."""
    q = sel["query"]
    qtok = f" {html.escape(repr(tokens[q]))}" if tokens is not None else ""
    items = "".join(
        f'<li class="karpa-attn-item" data-pos="{j}" data-token="{html.escape(t, quote=True)}" '
        f'data-weight="{w:.4f}">pos {j} {html.escape(repr(t))}: {w:.3f}</li>'
        for j, t, w in top_attended(sel["row"], tokens, k)
    )
    note = f'<span class="karpa-attn-note">{html.escape(sel["note"])}</span><br>' if sel["note"] else ""
    return (
        '<div class="karpa-attn-readout">'
        f'<span class="karpa-attn-where">layer {sel["layer"]}, head {sel["head"]}, query {q}{qtok}</span><br>'
        f'<span class="karpa-attn-entropy">entropy {sel["entropy"]:.3f} nats (max {sel["max_entropy"]:.3f})</span><br>'
        f'{note}<ol class="karpa-attn-top">{items}</ol></div>'
    )


def attention_figure(weights: Any, tokens: str | list[str] | None = None, layer: int = 0, head: int = 0,
                     query: int = -1, fig=None):
    """Heatmap of one head (rows = queries, columns = keys; the chosen query outlined) and a bar chart of
    that query's row over the keys. Draws on ``fig`` (cleared) or a new ``matplotlib.figure.Figure``."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    sel = select(weights, layer, head, query)
    matrix, row, q = sel["matrix"], sel["row"], sel["query"]
    n_q, n_k = matrix.shape
    fig = fig if fig is not None else Figure(figsize=(11, 3.6), layout="constrained")
    fig.clear()
    ax_map, ax_row = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 2]})
    positive = matrix[matrix > 0]
    # colour scale: the 99th percentile, so that the first causal rows (weight 1 on one key) do not dim the rest
    vmax = float(np.quantile(positive, 0.99)) if positive.size else 1.0
    ax_map.imshow(matrix, cmap="viridis", vmin=0, vmax=vmax, aspect="auto")
    ax_map.add_patch(Rectangle((-0.5, q - 0.5), n_k, 1, fill=False, edgecolor="red", lw=1.5))
    ax_map.set(xlabel="key position", ylabel="query position", title=f"layer {sel['layer']}, head {sel['head']}")
    ax_row.bar(np.arange(n_k), row, color="C0")
    ax_row.set(xlim=(-0.5, n_k - 0.5), ylim=(0, min(1.0, max(0.1, 1.1 * float(row.max())))), ylabel="weight",
               title=f"what query {q} attends to (entropy {sel['entropy']:.2f} nats)")
    if tokens is not None:
        labels = token_labels(tokens[:n_k])
        step = max(1, n_k // 64)
        ax_row.set_xticks(np.arange(0, n_k, step), labels[::step], fontsize=7, family="monospace")
        if q % step == 0 and q < n_k:
            ax_row.get_xticklabels()[q // step].set_color("red")  # the query's own token
    return fig


def attention_widget(weights: Any, tokens: str | list[str] | None = None, k: int = 5,
                     layer: int = 0, head: int = 0, query: int = -1):
    """Dropdowns for layer and head, a slider for the query position (starting at ``layer``, ``head``,
    ``query``, clipped into range); the figure and the readout follow (structure in the module
    docstring). ``tokens``: the sequence (queries and keys of self-attention). Returns the ``ipywidgets.VBox``."""
    import ipywidgets as W
    from matplotlib.figure import Figure

    w = as_stack(weights)
    start = select(w, layer, head, query)
    n_layers, n_heads, n_queries, _ = w.shape
    layer = W.Dropdown(options=list(range(n_layers)), value=start["layer"], description="layer")
    head = W.Dropdown(options=list(range(n_heads)), value=start["head"], description="head")
    query = W.IntSlider(value=start["query"], min=0, max=n_queries - 1, description="query",
                        continuous_update=False)
    out = W.Output()
    readout = W.HTML()
    readout.add_class("karpa-attn-readout")
    fig = Figure(figsize=(11, 3.6), layout="constrained")

    @serialized
    def redraw(_=None) -> None:
        attention_figure(w, tokens, layer.value, head.value, query.value, fig=fig)
        readout.value = readout_html(select(w, layer.value, head.value, query.value), tokens, k)
        show_figure(out, fig)

    for control in (layer, head, query):
        control.observe(redraw, names="value")
    redraw()
    box = W.VBox([W.HBox([layer, head, query]), out, readout])
    box.add_class("karpa-attn")
    return box
