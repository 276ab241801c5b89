"""The gradient-vs-lag widget's pure logic, headless, over a grid of slider values."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from karpa_lab.widgets.rnn_gradients import draw_profiles, gradient_profile, radius_widget, readout


@pytest.mark.parametrize("radius", [0.3, 0.6, 0.8, 0.9, 0.95])
@pytest.mark.parametrize("steps", [20, 50, 120])
def test_radius_below_one_decays(radius, steps):
    p = gradient_profile(radius, steps)
    assert p["norm"].shape == p["lag"].shape == p["reference"].shape == (steps,)
    assert p["norm"][0] == pytest.approx(1.0)
    assert p["ratio"] < 0.3
    assert p["ratio"] == p["norm"][-1]
    assert p["message"] == ""


@pytest.mark.parametrize("radius", [1.1, 1.2, 1.5, 2.0])
@pytest.mark.parametrize("steps", [30, 50, 120])
def test_radius_above_one_grows_at_rest(radius, steps):
    p = gradient_profile(radius, steps)
    assert p["ratio"] > 2
    # over the second half of the lags the norm grows like rho^k (up to W_hh's oscillating modes)
    half = steps // 2
    assert p["norm"][-1] / p["norm"][half] > 0.3 * radius ** (steps - 1 - half)
    assert np.all(np.isfinite(p["norm"]))


@pytest.mark.parametrize("input_scale", [0.0, 0.5, 1.0, 2.0])
def test_inputs_only_shrink_the_gradient(input_scale):
    """tanh' <= 1: driving the RNN into saturation can only make gradients smaller than rho^k predicts
    (up to W_hh's non-normal transient, hence the slack factor)."""
    p = gradient_profile(0.9, 40, input_scale=input_scale)
    assert np.all(p["norm"] <= 20 * p["reference"])
    if input_scale >= 1:
        assert p["ratio"] < 1e-3 * gradient_profile(0.9, 40)["ratio"]


@pytest.mark.parametrize("radius,steps,scale,clipped", [
    (5.0, 50, 0.0, "radius=5 is outside"),
    (0.0, 50, 0.0, "radius=0 is outside"),
    (1.0, 1000, 0.0, "steps=1000 is outside"),
    (1.0, 1, 0.0, "steps=1 is outside"),
    (1.0, 50, -1.0, "input_scale=-1 is outside"),
])
def test_out_of_range_values_are_clipped_with_a_message(radius, steps, scale, clipped):
    p = gradient_profile(radius, steps, input_scale=scale)
    assert clipped in p["message"]
    assert 0.1 <= p["radius"] <= 2.0 and 2 <= p["steps"] <= 200 and 0 <= p["input_scale"] <= 2
    assert p["norm"].shape == (p["steps"],)
    assert "clipped" in readout(p)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_numbers_are_refused(bad):
    with pytest.raises(ValueError, match="finite number"):
        gradient_profile(bad)


def test_readout_names_the_regime():
    assert "vanishing" in readout(gradient_profile(0.8, 50))
    assert "exploding" in readout(gradient_profile(1.2, 50))
    assert "||dL/dh_1|| / ||dL/dh_T||" in readout(gradient_profile(1.0, 50))


def test_figure_and_widget_build_headless():
    fig = draw_profiles([gradient_profile(r, 30) for r in (0.8, 1.0, 1.2)])
    assert len(fig.axes[0].lines) == 7  # three curves, three rho^k references, the line at 1
    box = radius_widget(radius=1.2, steps=30)
    slider, text = box.children[0].children[0], box.children[1]
    assert "exploding" in text.value
    slider.value = 0.7
    assert "vanishing" in text.value and "0.70" in text.value
