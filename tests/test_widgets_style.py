"""The style-weight widget's pure functions: the nearest precomputed alpha, its pictures and its readout."""

from __future__ import annotations

import pytest
import torch

from karpa_lab.widgets.style_weight import draw_style, style_results, style_view, style_widget


def results() -> dict:
    gram, blend = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    return style_results([0.5, 0.9, 0.99], gram, blend, [0.9, 0.5, 0.1], [0.01, 1.0, 20.0])


def test_the_view_is_the_nearest_alpha():
    r = results()
    view = style_view(r, 0.93)
    assert view["alpha"] == 0.9 and (view["gram"] == r["gram"][1]).all() and (view["blend"] == r["blend"][1]).all()
    assert "content loss 0.500" in view["readout"] and "style loss 1.000" in view["readout"]
    assert style_view(r, 0.0)["alpha"] == 0.5 and style_view(r, 1.0)["alpha"] == 0.99
    assert len(draw_style(view).axes) == 2


def test_results_must_line_up():
    with pytest.raises(ValueError, match="one Gram result, one blend and two losses per alpha"):
        style_results([0.5, 0.9], torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8), [1, 2, 3], [1, 2, 3])


def test_the_widget_builds_and_follows_its_slider():
    box = style_widget(results())
    slider, text = box.children[0], box.children[1]
    slider.value = 0.99
    assert "alpha = 0.99" in text.value
