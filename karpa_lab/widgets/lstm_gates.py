r"""The LSTM's gates on sliders: one step of a one-unit cell, and its memory over a short sequence.

The toy cell is :class:`karpa_lab.models.lstm.LSTMCell` with one input and one unit (so every symbol
is a number, not a vector) and fixed weights, each gate's pre-activation being

    a_k = s * (WX[k] * x_t + WH[k] * h_{t-1}) + b_k        k in (i, f, g, o),  s = weight_scale

    WX = {i: 1.5, f: -1.0, g: 2.0, o: 0.5}    a large positive input opens the input gate, closes the
                                               forget gate (new content replaces old) and makes the
                                               candidate positive; a negative one does the opposite
    WH = {i: 0.5, f: 0.5, g: 0.0, o: 1.0}     the gates look at h_{t-1}; the candidate does not, so with
                                               x_t = 0 and b_g = 0 nothing is written: c_t = f_t c_{t-1}

and then the LSTM as everywhere in the course: i, f, o = sigmoid(a), g = tanh(a_g),
c_t = f c_{t-1} + i g, h_t = o tanh(c_t). The biases b_k are what the sliders move.

Pure functions (tested headless in tests/test_widgets_lstm.py):

- :func:`gate_state`: one step -> ``{"i", "f", "g", "o", "kept", "written", "c_t", "h_t", ...}``;
- :func:`gate_sequence`: a pulse ``x_0 = pulse`` then zeros for ``steps`` steps -> each gate, ``c`` and
  ``h`` over time and the memory kept, ``ratio = c_{T-1} / c_0`` (the product of the forget gates);
- :func:`gate_figure`, :func:`sequence_figure`: matplotlib figures of the two;
- :func:`gate_readout_html`, :func:`memory_readout_html`: the widgets' text readouts.

Out-of-range inputs are clipped into the ranges below with a note in ``"message"`` (shown in red in
the readout); a value that is not a finite number is refused with a ``ValueError``.

Widget structure (stable, for the browser tests). :func:`gate_widget` (defaults shown)::

    VBox (class "karpa-lstm-gates")
    |-- HBox: FloatSlider "x_t" [-3, 3], "h_prev" [-1, 1], "c_prev" [-5, 5]      (the step's inputs)
    |-- HBox: FloatSlider "bias i", "bias f", "bias g", "bias o", each [-6, 6]  (the biases b_k)
    |   (all sliders: step 0.1, continuous_update=False)
    |-- Output: the bar figure of gate_figure, a PNG, redrawn in place with clear_output(wait=True)
    `-- HTML (class "karpa-lstm-gate-readout"), value = gate_readout_html(gate_state(...)):
          <div class="karpa-lstm-readout" data-i="0.8176" data-f="0.2689" data-g="0.9640" data-o="0.6225"
               data-c_t="1.0571" data-h_t="0.4884">i=0.818 f=0.269 g=0.964 o=0.622 | c_t = f*c_prev + i*g
               = 0.269*1.000 + 0.818*0.964 = 1.057 | h_t = o*tanh(c_t) = 0.488</div>
          (plus <br><span class="karpa-lstm-note">...</span> before </div> when an input was clipped)

:func:`memory_widget` (defaults shown)::

    VBox (class "karpa-lstm-memory")
    |-- HBox: FloatSlider "forget bias" [-6, 6] step 0.25, IntSlider "steps" [2, 100]
    |-- Output: the gates and the states over time (sequence_figure), a PNG
    `-- HTML (class "karpa-lstm-memory-readout"), value = memory_readout_html(gate_sequence(...)):
          <div class="karpa-lstm-readout" data-ratio="0.000149" data-mean_f="0.7381" data-c0="0.9519"
               data-cT="0.0001418">forget bias 1.00, 30 steps: mean f=0.738, c_0=0.952, c_T=0.000142,
               c_T/c_0=0.000149 (lost)</div>
          (the verdict: kept when c_T/c_0 >= 0.5, lost below 0.05, fading in between)
"""

from __future__ import annotations

import html
import math

import numpy as np
import torch

from karpa_lab.models.lstm import LSTM_GATES, LSTMCell, lstm_sequence
from karpa_lab.widgets import serialized, show_figure

WX = {"i": 1.5, "f": -1.0, "g": 2.0, "o": 0.5}
WH = {"i": 0.5, "f": 0.5, "g": 0.0, "o": 1.0}

X_RANGE = (-3.0, 3.0)
H_RANGE = (-1.0, 1.0)  # h = o * tanh(c) can never leave (-1, 1)
C_RANGE = (-5.0, 5.0)
BIAS_RANGE = (-6.0, 6.0)
SCALE_RANGE = (0.0, 3.0)
STEPS_RANGE = (2, 100)
PULSE_RANGE = (-3.0, 3.0)

GATE_NAMES = {"i": "input gate", "f": "forget gate", "g": "cell candidate", "o": "output gate"}


def _clip(name: str, value: float, bounds: tuple[float, float], notes: list[str]) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value}")
    low, high = bounds
    if value < low or value > high:
        clipped = min(max(value, low), high)
        notes.append(f"{name}={value:g} is outside [{low:g}, {high:g}]; clipped to {clipped:g}")
        return clipped
    return value


def toy_cell(biases: dict[str, float], weight_scale: float = 1.0) -> LSTMCell:
    """The one-unit ``LSTMCell`` (float64) with the fixed weights ``WX``, ``WH`` times ``weight_scale``
    and ``bias_ih = (b_i, b_f, b_g, b_o)``, ``bias_hh = 0`` (PyTorch's gate order)."""
    cell = LSTMCell(1, 1).double()
    with torch.no_grad():
        cell.weight_ih.copy_(weight_scale * torch.tensor([[WX[k]] for k in LSTM_GATES], dtype=torch.float64))
        cell.weight_hh.copy_(weight_scale * torch.tensor([[WH[k]] for k in LSTM_GATES], dtype=torch.float64))
        cell.bias_ih.copy_(torch.tensor([biases[k] for k in LSTM_GATES], dtype=torch.float64))
        cell.bias_hh.zero_()
    return cell


def gate_state(
    x: float = 1.0, h_prev: float = 0.0, c_prev: float = 1.0,
    bias_i: float = 0.0, bias_f: float = 0.0, bias_g: float = 0.0, bias_o: float = 0.0,
    weight_scale: float = 1.0,
) -> dict:
    r"""One step of the toy cell (weights in the module docstring) from ``(x_t, h_{t-1}, c_{t-1})``.

    Returns floats: the gates ``i, f, o`` in (0, 1) and ``g`` in (-1, 1); their pre-activations
    ``a_i, a_f, a_g, a_o``; the two terms of the cell update ``kept = f c_{t-1}`` and
    ``written = i g``; ``c_t = kept + written`` and ``h_t = o tanh(c_t)``; the inputs as used
    (``x, h_prev, c_prev, bias_i, ..., weight_scale``, after clipping); and ``message`` (empty, or what
    was clipped). Ranges: x in [-3, 3], h_prev in [-1, 1], c_prev in [-5, 5], biases in [-6, 6],
    weight_scale in [0, 3]. Not a finite number: ``ValueError``.
    """
    notes: list[str] = []
    x = _clip("x_t", x, X_RANGE, notes)
    h_prev = _clip("h_prev", h_prev, H_RANGE, notes)
    c_prev = _clip("c_prev", c_prev, C_RANGE, notes)
    biases = {k: _clip(f"bias_{k}", b, BIAS_RANGE, notes)
              for k, b in zip(LSTM_GATES, (bias_i, bias_f, bias_g, bias_o))}
    weight_scale = _clip("weight_scale", weight_scale, SCALE_RANGE, notes)

    cell = toy_cell(biases, weight_scale)
    as_tensor = lambda v: torch.tensor([[v]], dtype=torch.float64)
    with torch.no_grad():
        (h_t, c_t), gates = cell(as_tensor(x), (as_tensor(h_prev), as_tensor(c_prev)), return_gates=True)
    out = {k: float(gates[k]) for k in LSTM_GATES}
    for k in LSTM_GATES:
        out[f"a_{k}"] = weight_scale * (WX[k] * x + WH[k] * h_prev) + biases[k]
    out.update(
        kept=out["f"] * c_prev, written=out["i"] * out["g"], c_t=float(c_t), h_t=float(h_t),
        x=x, h_prev=h_prev, c_prev=c_prev, weight_scale=weight_scale, message="; ".join(notes),
        **{f"bias_{k}": b for k, b in biases.items()},
    )
    return out


def gate_sequence(
    forget_bias: float = 3.0, steps: int = 30, pulse: float = 2.0,
    bias_i: float = 0.0, bias_g: float = 0.0, bias_o: float = 0.0, weight_scale: float = 1.0,
) -> dict:
    r"""The toy cell over ``steps`` steps of input ``x = (pulse, 0, 0, ..., 0)``, from ``h = c = 0``.

    At t = 0 the pulse writes ``c_0 = i_0 g_0`` into the cell; afterwards ``x_t = 0`` and (with
    ``bias_g = 0``) ``g_t = 0``, so nothing is written and ``c_t = f_t c_{t-1}``: what is left at the
    end is ``c_{T-1} = c_0 \prod_{t=1}^{T-1} f_t``, and f is about sigmoid(forget_bias).

    Returns NumPy arrays (steps,): ``t, x, i, f, g, o, c, h``; floats ``c0``, ``cT``, ``ratio``
    (``cT / c0``, NaN when nothing was written: ``|c0| < 1e-9``), ``mean_f`` (mean forget gate over
    t >= 1) and ``half_life`` (steps for the memory to halve at that mean forget gate; inf when f
    rounds to 1); the inputs as used and ``message``. Ranges as in :func:`gate_state`; ``steps`` in
    [2, 100], ``pulse`` in [-3, 3].
    """
    notes: list[str] = []
    forget_bias = _clip("forget_bias", forget_bias, BIAS_RANGE, notes)
    steps_f = _clip("steps", steps, STEPS_RANGE, notes)
    steps = int(round(steps_f))
    pulse = _clip("pulse", pulse, PULSE_RANGE, notes)
    biases = {"i": _clip("bias_i", bias_i, BIAS_RANGE, notes), "f": forget_bias,
              "g": _clip("bias_g", bias_g, BIAS_RANGE, notes), "o": _clip("bias_o", bias_o, BIAS_RANGE, notes)}
    weight_scale = _clip("weight_scale", weight_scale, SCALE_RANGE, notes)

    x = torch.zeros(steps, 1, 1, dtype=torch.float64)
    x[0] = pulse
    with torch.no_grad():
        outputs, _, record = lstm_sequence(toy_cell(biases, weight_scale), x)
    arrays = {k: v[:, 0, 0].numpy() for k, v in record.items()}
    c0, cT = float(arrays["c"][0]), float(arrays["c"][-1])
    mean_f = float(arrays["f"][1:].mean())
    return {
        "t": np.arange(steps), "x": x[:, 0, 0].numpy(), **arrays, "h": outputs[:, 0, 0].numpy(),
        "c0": c0, "cT": cT, "ratio": cT / c0 if abs(c0) >= 1e-9 else float("nan"), "mean_f": mean_f,
        "half_life": math.log(0.5) / math.log(mean_f) if mean_f < 1.0 else float("inf"),
        "forget_bias": forget_bias, "steps": steps, "pulse": pulse, "weight_scale": weight_scale,
        "bias_i": biases["i"], "bias_g": biases["g"], "bias_o": biases["o"], "message": "; ".join(notes),
    }


def memory_verdict(ratio: float) -> str:
    """``"kept"`` (c_T/c_0 >= 0.5), ``"lost"`` (< 0.05), ``"fading"`` in between, ``"nothing written"`` (NaN)."""
    if not math.isfinite(ratio):
        return "nothing written"
    return "kept" if ratio >= 0.5 else "lost" if ratio < 0.05 else "fading"


# ------------------------------------------------------------------------------------------ figures
def gate_figure(state: dict, fig=None):
    """Bars of one step: the gates i, f, g, o (left, on [-1, 1]) and the cell update c_{t-1},
    f c_{t-1} (kept), i g (written), c_t, h_t (right, on [-6, 6]). Draws on ``fig`` (cleared) or a new
    ``matplotlib.figure.Figure``; returns it."""
    from matplotlib.figure import Figure

    fig = fig if fig is not None else Figure(figsize=(10, 3.6))
    fig.clear()
    ax_g, ax_c = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 5]})
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.17, top=0.91, wspace=0.12)  # fixed: faster than a layout engine
    names = ["$i_t$\ninput", "$f_t$\nforget", "$g_t$\ncandidate", "$o_t$\noutput"]
    values = [state[k] for k in LSTM_GATES]
    bars = ax_g.bar(names, values, color=["C0", "C1", "C2", "C3"])
    ax_g.bar_label(bars, fmt="%.3f", padding=2, fontsize=9)
    ax_g.axhline(0, color="black", lw=0.8)
    ax_g.axhline(1, color="gray", lw=0.8, ls="--")
    ax_g.set(ylim=(-1.15, 1.2), title="gates: sigmoid in (0, 1); candidate: tanh in (-1, 1)")

    names = ["$c_{t-1}$", "$f_t c_{t-1}$\nkept", "$i_t g_t$\nwritten", "$c_t$", "$h_t$"]
    values = [state["c_prev"], state["kept"], state["written"], state["c_t"], state["h_t"]]
    bars = ax_c.bar(names, values, color=["0.6", "C1", "C0", "C4", "C5"])
    ax_c.bar_label(bars, fmt="%.3f", padding=2, fontsize=9)
    ax_c.axhline(0, color="black", lw=0.8)
    for edge in (-1, 1):
        ax_c.axhline(edge, color="C5", lw=0.6, ls=":")
    ax_c.set(ylim=(-6.5, 6.5), title=r"$c_t = f_t c_{t-1} + i_t g_t$,   $h_t = o_t \tanh(c_t)$ (dotted: $\pm 1$)")
    return fig


def sequence_figure(seq: dict, fig=None):
    """Two panels over time t: the gates (top) and the cell state c_t with h_t (bottom), for the
    output of :func:`gate_sequence`. Draws on ``fig`` (cleared) or a new ``Figure``; returns it."""
    from matplotlib.figure import Figure

    fig = fig if fig is not None else Figure(figsize=(10, 4.6))
    fig.clear()
    ax_g, ax_c = fig.subplots(2, 1, sharex=True)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.1, top=0.93, hspace=0.25)
    t = seq["t"]
    for k, color in zip(LSTM_GATES, ("C0", "C1", "C2", "C3")):
        ax_g.plot(t, seq[k], "o-", ms=3, lw=1.5 if k == "f" else 1, color=color, label=f"${k}_t$ {GATE_NAMES[k]}")
    ax_g.axhline(0, color="black", lw=0.6)
    ax_g.set(ylim=(-1.05, 1.05), ylabel="gate")
    ax_g.set_title(f"pulse x_0 = {seq['pulse']:g} at t = 0, then x_t = 0;   forget bias b_f = {seq['forget_bias']:.2f}")
    ax_g.legend(fontsize=8, ncol=4, loc="lower right")
    ax_c.plot(t, seq["c"], "o-", ms=3, color="C4", lw=2, label="$c_t$ cell state")
    ax_c.plot(t, seq["h"], "o-", ms=3, color="C5", lw=1, label="$h_t$ hidden state")
    ax_c.axhline(0, color="black", lw=0.6)
    top = max(1.0, float(np.abs(seq["c"]).max()) * 1.1)
    ax_c.set(ylim=(-top, top), xlabel="time step t", ylabel="state")
    ax_c.set_title(f"$c_T / c_0$ = {seq['ratio']:.3g} ({memory_verdict(seq['ratio'])})")
    ax_c.legend(fontsize=8, loc="upper right")
    return fig


# ------------------------------------------------------------------------------------------ readouts
def _note(message: str) -> str:
    return f'<br><span class="karpa-lstm-note" style="color:#b00">{html.escape(message)}</span>' if message else ""


def gate_readout_html(state: dict) -> str:
    """The gate widget's readout (markup in the module docstring)."""
    data = " ".join(f'data-{k}="{state[k]:.4f}"' for k in (*LSTM_GATES, "c_t", "h_t"))
    return (
        f'<div class="karpa-lstm-readout" {data}>'
        f"i={state['i']:.3f} f={state['f']:.3f} g={state['g']:.3f} o={state['o']:.3f} | "
        f"c_t = f*c_prev + i*g = {state['f']:.3f}*{state['c_prev']:.3f} + {state['i']:.3f}*{state['g']:.3f} "
        f"= {state['c_t']:.3f} | h_t = o*tanh(c_t) = {state['h_t']:.3f}"
        f"{_note(state['message'])}</div>"
    )


def memory_readout_html(seq: dict) -> str:
    """The memory widget's readout (markup in the module docstring)."""
    data = " ".join(f'data-{k}="{seq[k]:.4g}"' for k in ("ratio", "mean_f", "c0", "cT"))
    return (
        f'<div class="karpa-lstm-readout" {data}>'
        f"forget bias {seq['forget_bias']:.2f}, {seq['steps']} steps: mean f={seq['mean_f']:.3f}, "
        f"c_0={seq['c0']:.3f}, c_T={seq['cT']:.3g}, c_T/c_0={seq['ratio']:.3g} ({memory_verdict(seq['ratio'])})"
        f"{_note(seq['message'])}</div>"
    )


# ------------------------------------------------------------------------------------------ widgets
def gate_widget(x: float = 1.0, h_prev: float = 0.0, c_prev: float = 1.0, bias_i: float = 0.0,
                bias_f: float = 0.0, bias_g: float = 0.0, bias_o: float = 0.0):
    """Sliders for x_t, h_prev, c_prev and the four biases; the bars and the readout follow
    :func:`gate_state` (structure in the module docstring). Returns the ``ipywidgets.VBox``."""
    import ipywidgets as W
    from matplotlib.figure import Figure

    def slider(description: str, value: float, bounds: tuple[float, float]):
        return W.FloatSlider(value=value, min=bounds[0], max=bounds[1], step=0.1, description=description,
                             continuous_update=False, readout_format=".1f")

    inputs = {"x": slider("x_t", x, X_RANGE), "h_prev": slider("h_prev", h_prev, H_RANGE),
              "c_prev": slider("c_prev", c_prev, C_RANGE)}
    biases = {f"bias_{k}": slider(f"bias {k}", b, BIAS_RANGE)
              for k, b in zip(LSTM_GATES, (bias_i, bias_f, bias_g, bias_o))}
    out = W.Output()
    readout = W.HTML().add_class("karpa-lstm-gate-readout")
    fig = Figure(figsize=(10, 3.6))

    @serialized
    def redraw(_=None) -> None:
        state = gate_state(**{k: s.value for k, s in {**inputs, **biases}.items()})
        readout.value = gate_readout_html(state)
        show_figure(out, gate_figure(state, fig))

    for s in (*inputs.values(), *biases.values()):
        s.observe(redraw, names="value")
    redraw()
    box = W.VBox([W.HBox(list(inputs.values())), W.HBox(list(biases.values())), out, readout])
    return box.add_class("karpa-lstm-gates")


def memory_widget(forget_bias: float = 1.0, steps: int = 30):
    """A slider for the forget bias and one for the sequence length; the gates and the cell state over
    time, and the readout of c_T / c_0, follow :func:`gate_sequence` (structure in the module docstring).
    Returns the ``ipywidgets.VBox``."""
    import ipywidgets as W
    from matplotlib.figure import Figure

    bias = W.FloatSlider(value=forget_bias, min=BIAS_RANGE[0], max=BIAS_RANGE[1], step=0.25,
                         description="forget bias", continuous_update=False, readout_format=".2f")
    length = W.IntSlider(value=steps, min=STEPS_RANGE[0], max=STEPS_RANGE[1], description="steps",
                         continuous_update=False)
    out = W.Output()
    readout = W.HTML().add_class("karpa-lstm-memory-readout")
    fig = Figure(figsize=(10, 4.6))

    @serialized
    def redraw(_=None) -> None:
        seq = gate_sequence(bias.value, length.value)
        readout.value = memory_readout_html(seq)
        show_figure(out, sequence_figure(seq, fig))

    for s in (bias, length):
        s.observe(redraw, names="value")
    redraw()
    return W.VBox([W.HBox([bias, length]), out, readout]).add_class("karpa-lstm-memory")
