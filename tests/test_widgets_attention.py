"""The attention-heatmap widget: pure functions over a grid of inputs, and the ipywidgets wiring."""

from __future__ import annotations

import math
import re

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from karpa_lab.widgets.attention import (  # noqa: E402
    as_stack,
    attention_figure,
    attention_widget,
    readout_html,
    select,
    token_labels,
    top_attended,
)


def stack(n_layers=2, n_heads=3, T=6, seed=0) -> np.ndarray:
    """Causal softmax rows with a known argmax: query q of head h puts most weight on key (q - h) mod (q + 1)."""
    rng = np.random.default_rng(seed)
    w = np.zeros((n_layers, n_heads, T, T))
    for layer in range(n_layers):
        for h in range(n_heads):
            for q in range(T):
                row = rng.random(q + 1)
                row[(q - h) % (q + 1)] += 10
                w[layer, h, q, : q + 1] = row / row.sum()
    return w


def test_as_stack_layouts():
    w = stack()
    assert as_stack(w).shape == (2, 3, 6, 6)
    assert as_stack(torch.tensor(w[0])).shape == (1, 3, 6, 6)
    assert as_stack(w[0, 0]).shape == (1, 1, 6, 6)
    assert as_stack(torch.tensor(w)[:, None]).shape == (2, 3, 6, 6)  # (layers, batch 1, heads, L, S)
    with pytest.raises(ValueError, match="batch 1"):
        as_stack(np.zeros((2, 2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"got shape \(4,\)"):
        as_stack(np.zeros(4))


@pytest.mark.parametrize("layer", [0, 1])
@pytest.mark.parametrize("head", [0, 1, 2])
@pytest.mark.parametrize("query", [0, 3, 5])
def test_select_grid(layer, head, query):
    w = stack()
    sel = select(w, layer, head, query)
    assert (sel["layer"], sel["head"], sel["query"], sel["note"]) == (layer, head, query, "")
    np.testing.assert_array_equal(sel["row"], w[layer, head, query])
    assert int(np.argmax(sel["row"])) == (query - head) % (query + 1)
    assert sel["max_entropy"] == pytest.approx(math.log(query + 1))  # a causal row has query + 1 keys
    assert 0 <= sel["entropy"] <= sel["max_entropy"] + 1e-12
    top = top_attended(sel["row"], "abcdef", k=2)
    assert top[0][0] == (query - head) % (query + 1) and top[0][1] == "abcdef"[top[0][0]]
    assert len(top) == min(2, 6) and top[0][2] >= top[1][2]


def test_select_clips_out_of_range_and_says_so():
    sel = select(stack(), layer=5, head=-2, query=99)
    assert (sel["layer"], sel["head"], sel["query"]) == (1, 0, 5)
    assert "layer 5 is out of range 0..1" in sel["note"] and "query 99" in sel["note"]
    assert select(stack(), query=-1)["query"] == 5  # -1: the last query


def test_entropy_of_uniform_and_one_hot_rows():
    uniform = np.full((4, 4), 0.25)
    assert select(uniform, query=2)["entropy"] == pytest.approx(math.log(4))
    assert select(np.eye(4), query=2)["entropy"] == pytest.approx(0.0)


def test_readout_html_has_stable_classes_and_numbers():
    w = stack()
    text = "ab\n d("
    html = readout_html(select(w, 1, 2, 4), text, k=3)
    for cls in ("karpa-attn-readout", "karpa-attn-where", "karpa-attn-entropy", "karpa-attn-top", "karpa-attn-item"):
        assert f'class="{cls}"' in html
    weights = [float(x) for x in re.findall(r'data-weight="([0-9.]+)"', html)]
    assert len(weights) == 3 and weights == sorted(weights, reverse=True)
    assert weights[0] == pytest.approx(w[1, 2, 4].max(), abs=1e-4)
    assert "karpa-attn-note" not in html
    assert "karpa-attn-note" in readout_html(select(w, 9, 0, 0), text)


def test_token_labels_make_whitespace_visible():
    assert token_labels("a \nb") == ["a", "␣", "⏎", "b"]


@pytest.mark.parametrize("layer,head,query", [(0, 0, 0), (1, 2, 5), (3, 7, -1)])
def test_attention_figure(layer, head, query):
    fig = attention_figure(stack(), "abcdef", layer, head, query)
    ax_map, ax_row = fig.axes[:2]
    q = select(stack(), layer, head, query)["query"]
    np.testing.assert_allclose(ax_map.images[0].get_array(), select(stack(), layer, head, query)["matrix"])
    heights = [p.get_height() for p in ax_row.patches]
    np.testing.assert_allclose(heights, select(stack(), layer, head, query)["row"])
    assert f"query {q}" in ax_row.get_title()
    again = attention_figure(stack(), None, 0, 0, 0, fig=fig)  # redraws on the same figure
    assert again is fig and len(fig.axes) == 2


def test_widget_wiring_updates_readout():
    pytest.importorskip("ipywidgets")
    box = attention_widget(stack(), "abcdef", k=2)
    controls, out, readout = box.children
    layer, head, query = controls.children
    assert "karpa-attn" in box._dom_classes and "karpa-attn-readout" in readout._dom_classes
    assert (layer.options, head.options, query.max) == ((0, 1), (0, 1, 2), 5)
    assert "query 5" in readout.value
    layer.value, head.value, query.value = 1, 2, 3
    assert "layer 1, head 2, query 3" in readout.value
    top = re.search(r'data-pos="(\d+)"', readout.value).group(1)
    assert int(top) == (3 - 2) % 4
    start = attention_widget(stack(), "abcdef", layer=1, head=9, query=2)  # head clipped to 2
    assert [c.value for c in start.children[0].children] == [1, 2, 2]
    assert "layer 1, head 2, query 2" in start.children[2].value
