r"""Looking inside a char-RNN: samples at a temperature, cells coloured over text, gate saturation.

Pure functions (tested headless in ``tests/test_widgets_char_rnn.py``):

- :func:`sample_text`: a continuation of a prompt at a temperature and top-k, as a string.
- :func:`tokenize_share`: the share of non-blank lines of a text that Python's ``tokenize`` accepts.
- :func:`char_features`: per character, what a reader of Python tracks (inside a string or a comment,
  indentation, column, bracket depth), as the state *after* reading that character.
- :func:`lstm_trace`: every gate and the cell state of a trained :class:`CharLSTM` over a passage.
- :func:`find_cells`: cells ranked by the Pearson correlation of their activation with a feature.
- :func:`activation_html`: the passage as HTML, each character's background coloured by one value.
- :func:`gate_saturation` and :func:`plot_gate_saturation`: how often each gate is below 0.1 or above 0.9.

Widgets (``ipywidgets`` is imported inside the builders):

- :func:`temperature_widget`: ``VBox[HBox[FloatSlider "temperature", IntSlider "top-k" (0 = all)],
  HTML.karpa-charrnn-readout, HTML.karpa-charrnn-sample]``. The readout reads
  ``temperature 0.80 | top-k all | 412 chars, 14 lines | 86% of lines tokenize``; the sample is a
  ``<pre class="karpa-charrnn-text">``. Every move re-samples with the same seed, so the only thing
  that changes is the knob.
- :func:`cell_widget`: ``VBox[Dropdown "cell" (the ranked cells first, then all), HTML.karpa-charrnn-readout,
  HTML.karpa-charrnn-cell]``. The readout reads ``cell 17 | r with in_string +0.83, indent -0.05, ...``;
  the passage is a ``<pre class="karpa-charrnn-text">`` of ``<span>`` per character (red: positive,
  blue: negative, white: 0).
"""

from __future__ import annotations

import html
import io
import math
import tokenize

import numpy as np
import torch

from karpa_lab.data.text import TextCorpus
from karpa_lab.models.char_lstm import CharLSTM, generate
from karpa_lab.models.lstm import lstm_gates_from_torch
from karpa_lab.widgets import serialized

FEATURES = ("in_string", "in_comment", "indent", "column", "bracket_depth")
READOUT_CLASS = "karpa-charrnn-readout"
SAMPLE_CLASS = "karpa-charrnn-sample"
CELL_CLASS = "karpa-charrnn-cell"
TEXT_CLASS = "karpa-charrnn-text"


# ------------------------------------------------------------------------------------------ sampling
def sample_text(
    model: CharLSTM, corpus: TextCorpus, prompt: str, n: int, temperature: float = 1.0,
    top_k: int | None = None, seed: int = 0,
) -> str:
    """``n`` characters sampled after ``prompt`` at ``temperature`` (0 = greedy) and ``top_k`` (None = all)."""
    g = torch.Generator().manual_seed(seed)
    return corpus.decode(generate(model, corpus.encode(prompt), n, temperature, top_k, generator=g))


def line_tokenizes(line: str) -> bool:
    """True when Python's ``tokenize`` reads ``line`` alone without an error or an ``ERRORTOKEN``.

    A line fails on an unclosed bracket or string, a stray ``$ ? `` or backslash continuation: what a
    line of real code rarely has and a line of random characters usually does.
    """
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(line + "\n").readline))
    except (tokenize.TokenError, SyntaxError):
        return False
    return all(t.type != tokenize.ERRORTOKEN for t in tokens)


def tokenize_share(text: str) -> tuple[float, int]:
    """(share of non-blank lines that :func:`line_tokenizes`, number of non-blank lines).

    A partial last line (no newline after it) is left out. ``(nan, 0)`` when there is no line.
    """
    lines = [ln for ln in text.split("\n")[:-1] if ln.strip()]
    if not lines:
        return float("nan"), 0
    return sum(map(line_tokenizes, lines)) / len(lines), len(lines)


# ------------------------------------------------------------------------------------------ features
def char_features(text: str) -> dict[str, np.ndarray]:
    """What a reader of Python tracks, per character: each array (len(text),), float.

    Values are the state *after* reading the character (what a left-to-right model can know):
    ``in_string`` 1 inside '...', "...", '''...''' or \"\"\"...\"\"\" (the opening quote is in, the
    closing one out; backslash escapes skip a character; a one-line string ends at a newline),
    ``in_comment`` 1 from ``#`` to the end of the line, ``indent`` the leading spaces of the current line
    seen so far, ``column`` characters since the last newline, ``bracket_depth`` open ``([{`` minus
    closed, outside strings and comments (never below 0).
    """
    n = len(text)
    out = {k: np.zeros(n) for k in FEATURES}
    quote: str | None = None
    comment = escaped = False
    indent = column = depth = 0
    at_line_start = True
    i = 0
    while i < n:
        ch = text[i]
        step = 1
        if ch == "\n":
            comment = False
            if quote in ("'", '"'):
                quote = None
            column, indent, at_line_start, escaped = 0, 0, True, False
        else:
            column += 1
            if at_line_start and ch == " ":
                indent += 1
            else:
                at_line_start = False
            if quote is not None:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif text.startswith(quote, i):
                    step = len(quote)
                    quote = None
            elif comment:
                pass
            elif ch == "#":
                comment = True
            elif ch in "'\"":
                quote = ch * 3 if text.startswith(ch * 3, i) else ch
                step = len(quote)
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth = max(0, depth - 1)
        for j in range(i, min(i + step, n)):
            if j > i:
                column += 1
            out["in_string"][j] = quote is not None
            out["in_comment"][j] = comment
            out["indent"][j] = indent
            out["column"][j] = column
            out["bracket_depth"][j] = depth
        i += step
    return out


# ------------------------------------------------------------------------------------- activations
def lstm_trace(
    model: CharLSTM, ids: torch.Tensor, warmup_ids: torch.Tensor | None = None, layer: int = -1
) -> dict[str, np.ndarray]:
    """Gates and states of one layer of ``model`` over the passage ``ids`` (T,), each (T, H).

    Returns ``{"i", "f", "g", "o", "c", "h"}`` (see :func:`karpa_lab.models.lstm.lstm_gates_from_torch`).
    ``warmup_ids`` (the text before the passage) is read first, so the passage starts from the state a
    reader would have there, not from zeros.
    """
    if ids.dim() != 1 or len(ids) == 0:
        raise ValueError(f"lstm_trace: ids must be a non-empty 1-D tensor of character ids, got {tuple(ids.shape)}")
    layer = layer % model.num_layers
    device = next(model.parameters()).device
    with torch.no_grad():
        state = None
        if warmup_ids is not None and len(warmup_ids):
            _, state = model(warmup_ids[None].to(device))
        x = model.embed(ids[None].to(device))
        trace = lstm_gates_from_torch(model.lstm, x, layer=layer, state=state)
    return {k: v[:, 0].float().cpu().numpy() for k, v in trace.items()}


def correlations(acts: np.ndarray, feature: np.ndarray) -> np.ndarray:
    r"""Pearson correlation of each column of ``acts`` (T, H) with ``feature`` (T,): (H,) in [-1, 1].

    r_j = sum_t (a_tj - mean_j)(f_t - mean_f) / sqrt(sum_t (a_tj - mean_j)^2 sum_t (f_t - mean_f)^2);
    a constant column or feature has r = 0 (nothing to explain).
    """
    acts = np.asarray(acts, dtype=np.float64)
    feature = np.asarray(feature, dtype=np.float64)
    if acts.ndim != 2 or feature.shape != (acts.shape[0],):
        raise ValueError(f"correlations: need acts (T, H) and feature (T,), got {acts.shape} and {feature.shape}")
    a = acts - acts.mean(axis=0)
    f = feature - feature.mean()
    denom = np.sqrt((a**2).sum(axis=0) * (f**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * f[:, None]).sum(axis=0) / denom
    return np.where(denom > 1e-12, r, 0.0)


def find_cells(acts: np.ndarray, features: dict[str, np.ndarray], per_feature: int = 3) -> list[dict]:
    """The cells that best track each feature, ranked by |r| over all features.

    Returns rows ``{"feature", "cell", "r"}``: the ``per_feature`` cells with the largest |r| for each
    feature, all sorted by |r|, largest first.
    """
    rows = []
    for name, values in features.items():
        r = correlations(acts, values)
        for cell in np.argsort(-np.abs(r))[:per_feature]:
            rows.append({"feature": name, "cell": int(cell), "r": float(r[cell])})
    return sorted(rows, key=lambda row: -abs(row["r"]))


def cells_table_html(rows: list[dict]) -> str:
    """The rows of :func:`find_cells` as an HTML table."""
    body = "".join(
        f"<tr><td>{i + 1}</td><td>{html.escape(row['feature'])}</td><td>{row['cell']}</td><td>{row['r']:+.3f}</td></tr>"
        for i, row in enumerate(rows)
    )
    return (f'<table class="karpa-charrnn-table"><tr><th>rank</th><th>feature</th><th>cell</th><th>r</th></tr>'
            f"{body}</table>")


def _colour(v: float) -> str:
    """Red for positive, blue for negative, white for 0, in proportion to |v| (v in [-1, 1])."""
    v = 0.0 if math.isnan(v) else max(-1.0, min(1.0, v))
    fade = round(255 * (1 - abs(v)))
    return f"rgb(255,{fade},{fade})" if v >= 0 else f"rgb({fade},{fade},255)"


def activation_html(text: str, values: np.ndarray, vmax: float = 1.0) -> str:
    """``text`` as ``<pre class="karpa-charrnn-text">`` with one ``<span>`` per character whose background
    shows ``values`` (len(text),) scaled by ``vmax``: red positive, blue negative, white 0 (char-rnn's style).

    A newline keeps its colour on a visible ``⏎`` so that what a cell does at line ends can be seen.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(text),):
        raise ValueError(f"activation_html: need one value per character, {len(text)}, got shape {values.shape}")
    if vmax <= 0:
        raise ValueError(f"vmax must be positive, got {vmax}")
    spans = []
    for ch, v in zip(text, values / vmax):
        shown = "⏎\n" if ch == "\n" else html.escape(ch)
        spans.append(f'<span style="background:{_colour(float(v))}" title="{v * vmax:+.2f}">{shown}</span>')
    return (f'<pre class="{TEXT_CLASS}" style="font-family:monospace;font-size:12px;line-height:1.35;'
            f'white-space:pre">{"".join(spans)}</pre>')


def gate_saturation(gates: dict[str, np.ndarray], low: float = 0.1, high: float = 0.9) -> dict[str, np.ndarray]:
    """For each gate in ``i``, ``f``, ``o`` of ``gates`` (T, H each): (2, H), the fraction of time steps
    with the gate below ``low`` (left-saturated: closed) and above ``high`` (right-saturated: open)."""
    out = {}
    for k in ("i", "f", "o"):
        g = np.asarray(gates[k])
        if g.ndim != 2:
            raise ValueError(f"gate {k!r} must be (T, H), got {g.shape}")
        out[k] = np.stack([(g < low).mean(axis=0), (g > high).mean(axis=0)])
    return out


def plot_gate_saturation(
    saturation: dict[str, np.ndarray], reference: dict[str, np.ndarray] | None = None,
    labels: tuple[str, str] = ("trained", "untrained"),
):
    """Karpathy et al.'s picture: one point per cell at (fraction closed, fraction open), one panel per gate.

    ``reference`` (e.g. the same network before training) is drawn in grey underneath. Returns a Figure.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10.5, 3.5))
    axes = fig.subplots(1, len(saturation))
    names = {"i": "input gate", "f": "forget gate", "o": "output gate"}
    for ax, (k, (left, right)) in zip(axes, saturation.items()):
        if reference is not None:
            ax.scatter(*reference[k], s=10, alpha=0.5, color="0.6", label=labels[1])
        ax.scatter(left, right, s=10, alpha=0.6, color="C0", label=labels[0])
        ax.plot([0, 1], [1, 0], color="gray", lw=0.8)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), xlabel="fraction of time < 0.1", title=names.get(k, k),
               aspect="equal")
    axes[0].set_ylabel("fraction of time > 0.9")
    axes[0].legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ widgets
def sample_readout(text: str, temperature: float, top_k: int | None) -> str:
    """The key numbers of a sample: temperature, top-k, size and the share of lines that tokenize."""
    share, lines = tokenize_share(text)
    shown = "n/a" if lines == 0 else f"{100 * share:.0f}%"
    return (f"temperature {temperature:.2f} | top-k {'all' if top_k is None else top_k} | "
            f"{len(text)} chars, {lines} lines | {shown} of lines tokenize")


def temperature_widget(model: CharLSTM, corpus: TextCorpus, prompt: str = "def ", n: int = 400, seed: int = 0):
    """Sliders for temperature (0-2) and top-k (0 = all, up to the vocabulary) -> a fresh sample and its readout."""
    import ipywidgets as W

    temperature = W.FloatSlider(value=0.8, min=0.0, max=2.0, step=0.05, description="temperature",
                                continuous_update=False)
    top_k = W.IntSlider(value=0, min=0, max=corpus.vocab_size, description="top-k (0=all)", continuous_update=False)
    readout = W.HTML().add_class(READOUT_CLASS)
    sample = W.HTML().add_class(SAMPLE_CLASS)

    @serialized
    def redraw(_=None) -> None:
        k = top_k.value or None
        text = sample_text(model, corpus, prompt, n, temperature.value, k, seed)
        readout.value = html.escape(sample_readout(prompt + text, temperature.value, k))
        sample.value = f'<pre class="{TEXT_CLASS}">{html.escape(prompt + text)}</pre>'

    temperature.observe(redraw, names="value")
    top_k.observe(redraw, names="value")
    redraw()
    return W.VBox([W.HBox([temperature, top_k]), readout, sample])


def cell_readout(cell: int, acts: np.ndarray, features: dict[str, np.ndarray]) -> str:
    """``cell 17 | r with in_string +0.83, indent -0.05, ...`` for one cell of ``acts`` (T, H)."""
    parts = [f"{name} {correlations(acts[:, [cell]], values)[0]:+.2f}" for name, values in features.items()]
    return f"cell {cell} | r with " + ", ".join(parts)


def cell_widget(text: str, acts: np.ndarray, features: dict[str, np.ndarray], ranked: list[dict] | None = None):
    """A cell picker (the ranked cells first) -> the passage coloured by that cell's ``tanh`` activation."""
    import ipywidgets as W

    if acts.shape[0] != len(text):
        raise ValueError(f"cell_widget: acts must have one row per character ({len(text)}), got {acts.shape}")
    first = [row["cell"] for row in ranked or []]
    order = list(dict.fromkeys(first + list(range(acts.shape[1]))))
    labels = {row["cell"]: f"cell {row['cell']} ({row['feature']} r={row['r']:+.2f})" for row in reversed(ranked or [])}
    picker = W.Dropdown(options=[(labels.get(c, f"cell {c}"), c) for c in order], description="cell")
    readout = W.HTML().add_class(READOUT_CLASS)
    coloured = W.HTML().add_class(CELL_CLASS)

    @serialized
    def redraw(_=None) -> None:
        cell = picker.value
        readout.value = html.escape(cell_readout(cell, acts, features))
        coloured.value = activation_html(text, np.tanh(acts[:, cell]))

    picker.observe(redraw, names="value")
    redraw()
    return W.VBox([picker, readout, coloured])
