"""The LSTM gate widgets' pure logic, headless, over a grid of slider values."""

from __future__ import annotations

import itertools
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from karpa_lab.widgets.lstm_gates import (
    BIAS_RANGE,
    WH,
    WX,
    gate_figure,
    gate_readout_html,
    gate_sequence,
    gate_state,
    gate_widget,
    memory_readout_html,
    memory_verdict,
    memory_widget,
    sequence_figure,
)

sigmoid = lambda a: 1 / (1 + math.exp(-a))
GRID = list(itertools.product([-3.0, -0.5, 0.0, 1.0, 3.0],    # x_t
                              [-1.0, 0.0, 0.6],               # h_prev
                              [-5.0, 0.0, 2.5],               # c_prev
                              [-6.0, 0.0, 6.0]))              # one bias value for all four gates


def test_gate_state_is_the_lstm_step_over_the_slider_grid():
    for x, h, c, b in GRID:
        s = gate_state(x, h, c, b, -b, b / 2, b, weight_scale=1.0)
        assert s["message"] == ""
        for k in "ifo":
            assert 0 < s[k] < 1
        assert -1 < s["g"] < 1
        biases = {"i": b, "f": -b, "g": b / 2, "o": b}
        for k in "ifgo":  # the documented weights, gate by gate
            a = WX[k] * x + WH[k] * h + biases[k]
            assert s[f"a_{k}"] == pytest.approx(a, abs=1e-12)
            assert s[k] == pytest.approx(math.tanh(a) if k == "g" else sigmoid(a), abs=1e-12)
        assert s["kept"] == pytest.approx(s["f"] * c, abs=1e-12)
        assert s["written"] == pytest.approx(s["i"] * s["g"], abs=1e-12)
        assert s["c_t"] == s["kept"] + s["written"]  # exactly: c_t = f * c_{t-1} + i * g
        assert s["h_t"] == pytest.approx(s["o"] * math.tanh(s["c_t"]), abs=1e-12)
        assert -1 < s["h_t"] < 1


@pytest.mark.parametrize("scale", [0.0, 0.5, 3.0])
def test_weight_scale_multiplies_the_weights_not_the_biases(scale):
    s = gate_state(x=2.0, h_prev=0.5, c_prev=1.0, bias_f=1.5, weight_scale=scale)
    assert s["a_f"] == pytest.approx(scale * (WX["f"] * 2.0 + WH["f"] * 0.5) + 1.5)
    if scale == 0:
        assert s["i"] == s["o"] == 0.5 and s["g"] == 0.0


def test_each_bias_moves_its_own_gate_only():
    base = gate_state(x=0.5, h_prev=0.2, c_prev=1.0)
    for k in "ifgo":
        moved = gate_state(x=0.5, h_prev=0.2, c_prev=1.0, **{f"bias_{k}": 3.0})
        assert moved[k] > base[k] + 0.2
        for other in set("ifgo") - {k}:
            assert moved[other] == base[other]


def test_forget_gate_shut_and_input_gate_open_replace_the_memory():
    s = gate_state(x=1.0, h_prev=0.0, c_prev=4.0, bias_i=6.0, bias_f=-6.0, bias_g=6.0)
    assert s["f"] < 0.01 and s["kept"] < 0.05
    assert s["c_t"] == pytest.approx(s["written"], abs=0.05) and s["c_t"] > 0.99


@pytest.mark.parametrize("kwargs,clipped", [
    ({"x": 10.0}, "x_t=10 is outside [-3, 3]; clipped to 3"),
    ({"h_prev": -1.5}, "h_prev=-1.5 is outside [-1, 1]; clipped to -1"),
    ({"c_prev": 7.0}, "c_prev=7 is outside [-5, 5]; clipped to 5"),
    ({"bias_f": -100.0}, "bias_f=-100 is outside [-6, 6]; clipped to -6"),
    ({"weight_scale": -1.0}, "weight_scale=-1 is outside [0, 3]; clipped to 0"),
])
def test_out_of_range_inputs_are_clipped_with_a_message(kwargs, clipped):
    s = gate_state(**kwargs)
    assert s["message"] == clipped
    (name, value), = kwargs.items()
    expected = gate_state(**{name: float(clipped.rsplit(" ", 1)[1])})
    for k in ("i", "f", "g", "o", "c_t", "h_t"):
        assert s[k] == expected[k]
    assert "clipped" in gate_readout_html(s) and 'class="karpa-lstm-note"' in gate_readout_html(s)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_are_refused(bad):
    with pytest.raises(ValueError, match="must be a finite number"):
        gate_state(x=bad)
    with pytest.raises(ValueError, match="must be a finite number"):
        gate_state(bias_o=bad)
    with pytest.raises(ValueError, match="must be a finite number"):
        gate_sequence(forget_bias=bad)


# --------------------------------------------------------------------------------- the sequence view
@pytest.mark.parametrize("steps", [2, 10, 30, 100])
def test_sequence_cell_decays_by_the_forget_gates(steps):
    for forget_bias in np.linspace(*BIAS_RANGE, 9):
        check_sequence(gate_sequence(forget_bias, steps), forget_bias, steps)


def check_sequence(seq: dict, forget_bias: float, steps: int) -> None:
    assert seq["message"] == ""
    for k in ("t", "x", "i", "f", "g", "o", "c", "h"):
        assert seq[k].shape == (steps,)
    assert seq["x"][0] == 2.0 and np.all(seq["x"][1:] == 0)
    assert np.all((seq["f"] > 0) & (seq["f"] < 1)) and np.all(np.abs(seq["g"]) < 1)
    assert np.all(seq["g"][1:] == 0)  # nothing written after the pulse ...
    np.testing.assert_allclose(seq["c"][1:], seq["f"][1:] * seq["c"][:-1], rtol=1e-12)  # ... so c_t = f_t c_{t-1}
    np.testing.assert_allclose(seq["h"], seq["o"] * np.tanh(seq["c"]), rtol=1e-12)
    assert seq["c0"] == pytest.approx(seq["i"][0] * seq["g"][0])
    assert seq["ratio"] == pytest.approx(np.prod(seq["f"][1:]), rel=1e-9)
    assert seq["ratio"] == pytest.approx(seq["cT"] / seq["c0"])
    assert seq["mean_f"] == pytest.approx(seq["f"][1:].mean())
    assert seq["mean_f"] >= sigmoid(forget_bias) - 1e-12  # h > 0 adds WH["f"] * h to a_f


def test_forget_bias_decides_whether_memory_is_kept():
    """High forget bias keeps the pulse for 30 steps, low loses it: the point of the widget."""
    ratios = [gate_sequence(b, 30)["ratio"] for b in np.linspace(-6, 6, 25)]
    assert np.all(np.diff(ratios) > 0)  # monotone in the bias
    assert gate_sequence(6.0, 30)["ratio"] > 0.9 and memory_verdict(gate_sequence(6.0, 30)["ratio"]) == "kept"
    assert gate_sequence(5.0, 30)["ratio"] > 0.8
    assert gate_sequence(1.0, 30)["ratio"] < 1e-3 and memory_verdict(gate_sequence(1.0, 30)["ratio"]) == "lost"
    assert gate_sequence(-6.0, 30)["ratio"] < 1e-30
    assert gate_sequence(0.0, 30)["half_life"] == pytest.approx(1.0, abs=0.05)  # f = 1/2: halves each step
    assert gate_sequence(6.0, 30)["half_life"] > 100


def test_longer_waits_lose_more():
    ratios = [gate_sequence(3.0, n)["ratio"] for n in (2, 10, 30, 100)]
    assert np.all(np.diff(ratios) < 0) and ratios[0] > 0.9 and ratios[-1] < 0.05


def test_nothing_written_gives_no_ratio():
    seq = gate_sequence(3.0, 10, pulse=0.0)  # g_0 = tanh(0) = 0: the cell stays empty
    assert seq["c0"] == 0 and math.isnan(seq["ratio"]) and memory_verdict(seq["ratio"]) == "nothing written"
    assert "nothing written" in memory_readout_html(seq)


def test_sequence_clips_steps_and_bias():
    seq = gate_sequence(forget_bias=9.0, steps=500)
    assert seq["steps"] == 100 and seq["forget_bias"] == 6.0 and seq["c"].shape == (100,)
    assert seq["message"] == ("forget_bias=9 is outside [-6, 6]; clipped to 6; "
                              "steps=500 is outside [2, 100]; clipped to 100")


# --------------------------------------------------------------------------------- readouts, figures
def test_gate_readout_carries_the_numbers():
    s = gate_state(x=1.0, h_prev=0.0, c_prev=1.0)
    text = gate_readout_html(s)
    assert text.startswith('<div class="karpa-lstm-readout" data-i=')
    for k in ("i", "f", "g", "o", "c_t", "h_t"):
        assert f'data-{k}="{s[k]:.4f}"' in text
    assert f"i={s['i']:.3f} f={s['f']:.3f}" in text and f"h_t = o*tanh(c_t) = {s['h_t']:.3f}" in text
    assert "karpa-lstm-note" not in text


def test_memory_readout_carries_the_numbers():
    seq = gate_sequence(6.0, 30)
    text = memory_readout_html(seq)
    assert f'data-ratio="{seq["ratio"]:.4g}"' in text and "(kept)" in text
    assert "forget bias 6.00, 30 steps" in text


def test_figures_draw_every_bar_and_line():
    fig = gate_figure(gate_state(x=2.0, c_prev=-3.0))
    ax_g, ax_c = fig.axes
    assert len(ax_g.patches) == 4 and len(ax_c.patches) == 5
    heights = [p.get_height() for p in ax_c.patches]
    s = gate_state(x=2.0, c_prev=-3.0)
    np.testing.assert_allclose(heights, [s["c_prev"], s["kept"], s["written"], s["c_t"], s["h_t"]])
    fig2 = sequence_figure(gate_sequence(2.0, 12), fig)  # redraws onto the same figure
    assert fig2 is fig and len(fig.axes) == 2
    assert len(fig.axes[0].lines) == 4 + 1 and len(fig.axes[1].lines) == 2 + 1


def test_widgets_wire_sliders_to_the_pure_functions():
    box = gate_widget()
    inputs, biases, _, readout = box.children
    assert [s.description for s in inputs.children] == ["x_t", "h_prev", "c_prev"]
    assert [s.description for s in biases.children] == ["bias i", "bias f", "bias g", "bias o"]
    assert "karpa-lstm-gate-readout" in readout._dom_classes
    assert readout.value == gate_readout_html(gate_state())
    biases.children[1].value = 4.0
    inputs.children[2].value = -2.0
    assert readout.value == gate_readout_html(gate_state(c_prev=-2.0, bias_f=4.0))

    box = memory_widget()
    (bias, steps), readout = box.children[0].children, box.children[2]
    assert (bias.description, steps.description) == ("forget bias", "steps")
    assert "karpa-lstm-memory-readout" in readout._dom_classes
    assert "(lost)" in readout.value
    bias.value = 6.0
    assert readout.value == memory_readout_html(gate_sequence(6.0, 30)) and "(kept)" in readout.value
    bias.value = 50.0  # the slider itself keeps values in range
    assert bias.value == BIAS_RANGE[1]
