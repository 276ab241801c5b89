"""Lesson 04's looking-inside tools: tokenize share, character features, cell search, HTML colouring, widgets."""

from __future__ import annotations

import html
import math
import re

import numpy as np
import pytest
import torch

from karpa_lab.data.text import TextCorpus
from karpa_lab.models.char_lstm import CharLSTM
from karpa_lab.widgets.char_rnn import (
    CELL_CLASS,
    READOUT_CLASS,
    SAMPLE_CLASS,
    TEXT_CLASS,
    activation_html,
    cell_readout,
    cell_widget,
    cells_table_html,
    char_features,
    correlations,
    find_cells,
    gate_saturation,
    line_tokenizes,
    lstm_trace,
    plot_gate_saturation,
    sample_readout,
    sample_text,
    temperature_widget,
    tokenize_share,
)

CODE = 'def f(x):\n    s = "a(b" + \'c\'  # (not a bracket\n    return g(x, [1,\n             2])\n'


@pytest.fixture(scope="module")
def corpus() -> TextCorpus:
    return TextCorpus.from_text(CODE * 40 + '"""doc"""\n' * 20, val_fraction=0.2)


@pytest.fixture(scope="module")
def model(corpus) -> CharLSTM:
    torch.manual_seed(0)
    return CharLSTM(corpus.vocab_size, hidden_size=12, embed_dim=6)


@pytest.mark.parametrize("line,ok", [
    ("def f(x):", True), ("    return x  # done", True), ("Return the value of x.", True),
    ("foo(a,", False), ("x = 'abc", False), ("a = $b", False), ("x ? y", False), ("x = 1 \\", False),
])
def test_line_tokenizes(line, ok):
    assert line_tokenizes(line) is ok


def test_tokenize_share_counts_non_blank_complete_lines():
    assert tokenize_share("x = 1\n\n   \nfoo(\ny\npartial(") == (2 / 3, 3)
    share, n = tokenize_share("no newline at all")
    assert n == 0 and math.isnan(share)


def test_char_features_on_a_hand_checked_snippet():
    f = char_features(CODE)
    at = lambda needle, k=0: [m.start() for m in re.finditer(re.escape(needle), CODE)][k]
    assert all(len(v) == len(CODE) for v in f.values())
    q1 = at('"a(b"')
    assert f["in_string"][q1] == 1 and f["in_string"][q1 + 3] == 1 and f["in_string"][q1 + 4] == 0  # "..."
    assert f["bracket_depth"][q1 + 2] == 0  # "(" inside a string is not a bracket
    assert f["in_string"][at("'c'") + 1] == 1 and f["in_string"][at("'c'") + 2] == 0
    hash_ = at("#")
    assert f["in_comment"][hash_] == 1 and f["in_comment"][at("(not") ] == 1
    assert f["bracket_depth"][at("(not")] == 0  # nor inside a comment
    assert f["in_comment"][at("\n    return")] == 0  # a comment ends at the newline
    assert f["indent"][at("return")] == 4 and f["indent"][at("def")] == 0
    assert f["column"][at("def")] == 1 and f["column"][at("return")] == 5 and f["column"][at("\n")] == 0
    assert f["bracket_depth"][at("[1,")] == 2 and f["bracket_depth"][at("2])") + 1] == 1
    assert f["bracket_depth"][at("2])") + 2] == 0
    assert f["indent"][at("2])")] == 13  # a continuation line's leading spaces


def test_char_features_triple_quotes_and_escapes():
    text = 'a = """x\n"y"\n""" + "q\\"r" + b\n'
    f = char_features(text)
    opening, closing = text.index('"""'), text.index('"""', 5)
    assert f["in_string"][opening : opening + 3].tolist() == [1, 1, 1]
    assert f["in_string"][opening + 3 : closing].all()  # the newline and the inner quotes stay inside
    assert f["in_string"][closing : closing + 3].tolist() == [0, 0, 0]
    escaped = text.index('\\"')
    assert f["in_string"][escaped + 1] == 1 and f["in_string"][text.index('r"') + 1] == 0
    assert f["in_string"][text.index("b")] == 0
    unclosed = char_features('x = "open\ny')["in_string"]
    assert unclosed[6] == 1 and unclosed[-1] == 0  # a one-line string ends at the newline


def test_correlations_match_numpy_and_handle_constants():
    g = np.random.default_rng(0)
    acts, feat = g.normal(size=(200, 5)), g.normal(size=200)
    want = [np.corrcoef(acts[:, j], feat)[0, 1] for j in range(5)]
    np.testing.assert_allclose(correlations(acts, feat), want, atol=1e-12)
    acts[:, 2] = 3.0
    assert correlations(acts, feat)[2] == 0.0
    assert (correlations(acts, np.ones(200)) == 0).all()
    with pytest.raises(ValueError, match=r"\(T, H\).*\(T,\)"):
        correlations(acts, feat[:10])


def test_find_cells_recovers_a_planted_cell():
    f = char_features(CODE * 5)
    g = np.random.default_rng(1)
    acts = g.normal(size=(len(CODE) * 5, 16))
    acts[:, 11] = f["in_string"]  # cell 11 *is* the in-string feature
    acts[:, 4] = -f["column"] * 0.1 + 0.01 * g.normal(size=len(CODE) * 5)  # cell 4 counts columns, negatively
    rows = find_cells(acts, f, per_feature=2)
    assert rows[0] == {"feature": "in_string", "cell": 11, "r": pytest.approx(1.0)}
    column = next(r for r in rows if r["feature"] == "column")
    assert column["cell"] == 4 and column["r"] < -0.99
    assert len(rows) == 2 * len(f) and all(abs(a["r"]) >= abs(b["r"]) for a, b in zip(rows, rows[1:]))
    table = cells_table_html(rows)
    assert table.count("<tr>") == len(rows) + 1 and "in_string" in table


@pytest.mark.parametrize("value,colour", [
    (1.0, "rgb(255,0,0)"), (-1.0, "rgb(0,0,255)"), (0.0, "rgb(255,255,255)"), (0.5, "rgb(255,128,128)"),
    (7.0, "rgb(255,0,0)"), (np.nan, "rgb(255,255,255)"),
])
def test_activation_html_colours_each_character(value, colour):
    out = activation_html("a", np.array([value]))
    assert f"background:{colour}" in out


def test_activation_html_is_escaped_one_span_per_character():
    text = 'if a < b & "c":\n  x'
    values = np.linspace(-1, 1, len(text))
    out = activation_html(text, values)
    assert out.startswith(f'<pre class="{TEXT_CLASS}"') and out.endswith("</pre>")
    assert out.count("<span") == len(text)
    assert "&lt;" in out and "&amp;" in out and "&quot;" in out and "⏎\n" in out
    assert out == activation_html(text, values)  # pure: same input, same HTML
    backgrounds = lambda h: re.findall(r"background:([^\"]+)", h)
    assert backgrounds(activation_html(text, values * 2, vmax=2)) == backgrounds(out)  # vmax rescales the colour
    with pytest.raises(ValueError, match="one value per character"):
        activation_html(text, values[:-1])


def test_gate_saturation_fractions():
    gates = {"i": np.array([[0.05, 0.5], [0.95, 0.5], [0.5, 0.99], [0.01, 0.5]]),
             "f": np.full((4, 2), 0.95), "o": np.full((4, 2), 0.5)}
    sat = gate_saturation(gates)
    np.testing.assert_allclose(sat["i"], [[0.5, 0.0], [0.25, 0.25]])
    np.testing.assert_allclose(sat["f"], [[0, 0], [1, 1]])
    np.testing.assert_allclose(sat["o"], 0)
    fig = plot_gate_saturation(sat, reference=sat)
    assert len(fig.axes) == 3


def test_lstm_trace_matches_the_model(model, corpus):
    ids, warm = corpus.val[20:60], corpus.val[:20]
    trace = lstm_trace(model, ids, warmup_ids=warm)
    assert set(trace) == {"i", "f", "g", "o", "c", "h"} and all(v.shape == (40, 12) for v in trace.values())
    with torch.no_grad():
        _, state = model(warm[None])
        logits, _ = model(ids[None], state)
    np.testing.assert_allclose(model.head(torch.from_numpy(trace["h"])).detach().numpy(), logits[0].numpy(), atol=1e-5)
    cold = lstm_trace(model, ids)
    assert not np.allclose(cold["c"][:3], trace["c"][:3])  # the warm-up changed the starting state
    with pytest.raises(ValueError, match="1-D"):
        lstm_trace(model, ids[None])


def test_sample_text_is_deterministic(model, corpus):
    a = sample_text(model, corpus, "def ", 60, temperature=1.0, seed=3)
    assert len(a) == 60 and a == sample_text(model, corpus, "def ", 60, temperature=1.0, seed=3)
    assert sample_text(model, corpus, "def ", 60, temperature=0, seed=1) == sample_text(model, corpus, "def ", 60,
                                                                                        temperature=0, seed=2)
    k1 = sample_text(model, corpus, "def ", 30, temperature=1.5, top_k=1, seed=5)
    assert k1 == sample_text(model, corpus, "def ", 30, temperature=0)


def test_readouts():
    assert sample_readout("x = 1\nfoo(\n", 0.8, None) == (
        "temperature 0.80 | top-k all | 11 chars, 2 lines | 50% of lines tokenize")
    assert sample_readout("abc", 0.0, 5).endswith("n/a of lines tokenize") and "top-k 5" in sample_readout("a", 1, 5)
    acts = np.stack([np.arange(10.0), -np.arange(10.0)], 1)
    assert cell_readout(1, acts, {"column": np.arange(10.0)}) == "cell 1 | r with column -1.00"


@pytest.mark.parametrize("temperature,top_k", [(0.0, 0), (0.8, 0), (2.0, 3), (1.0, 1)])
def test_temperature_widget_redraws_from_the_pure_function(model, corpus, temperature, top_k):
    box = temperature_widget(model, corpus, prompt="def ", n=50, seed=0)
    sliders, readout, sample = box.children
    t_slider, k_slider = sliders.children
    assert READOUT_CLASS in readout._dom_classes and SAMPLE_CLASS in sample._dom_classes
    t_slider.value, k_slider.value = temperature, top_k
    k = top_k or None
    text = "def " + sample_text(model, corpus, "def ", 50, temperature, k, 0)
    assert readout.value == html.escape(sample_readout(text, temperature, k))
    assert sample.value == f'<pre class="{TEXT_CLASS}">{html.escape(text)}</pre>'
    t_slider.value = 5.0  # out of range: the slider clips to its maximum
    assert t_slider.value == 2.0


def test_cell_widget_recolours_for_the_picked_cell():
    text = CODE
    f = char_features(text)
    acts = np.stack([f["column"] / 10, f["in_string"] - 0.5, f["indent"] / 4], 1)
    ranked = find_cells(acts, f, per_feature=1)
    box = cell_widget(text, acts, f, ranked)
    picker, readout, coloured = box.children
    assert READOUT_CLASS in readout._dom_classes and CELL_CLASS in coloured._dom_classes
    assert picker.options[0][1] == ranked[0]["cell"] and picker.options[0][0].startswith(f"cell {ranked[0]['cell']} (")
    assert sorted(v for _, v in picker.options) == [0, 1, 2]
    for cell in (1, 2, 0):
        picker.value = cell
        assert readout.value == html.escape(cell_readout(cell, acts, f))
        assert coloured.value == activation_html(text, np.tanh(acts[:, cell]))
    with pytest.raises(ValueError, match="one row per character"):
        cell_widget(text[:-1], acts, f)
