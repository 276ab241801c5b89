"""Convolution from scratch equals PyTorch's, forward and backward; pooling, receptive field, shape trace."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab.models.conv import (
    conv2d_backward,
    conv2d_im2col,
    conv2d_loops,
    max_pool2d,
    max_pool2d_backward,
    receptive_field,
    shape_trace,
    small_cnn,
)

GRID = [dict(stride=s, padding=p, dilation=d, groups=g, kernel=k)
        for s, p, d, g, k in itertools.product([1, 2, (2, 1)], [0, 1, (2, 0)], [1, 2], [1, 2], [(3, 3), (2, 5)])]


def inputs(kernel, groups, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, 9, 11, generator=g, dtype=torch.float64)
    w = torch.randn(6, 4 // groups, *kernel, generator=g, dtype=torch.float64)
    b = torch.randn(6, generator=g, dtype=torch.float64)
    return x, w, b


@pytest.mark.parametrize("case", GRID, ids=lambda c: "-".join(f"{k}{v}" for k, v in c.items()))
def test_loops_and_im2col_equal_pytorch(case):
    x, w, b = inputs(case["kernel"], case["groups"])
    args = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
    ref = F.conv2d(x, w, b, **args)
    torch.testing.assert_close(conv2d_im2col(x, w, b, **args), ref, rtol=0, atol=1e-12)
    if case["kernel"] == (2, 5) and case["groups"] == 2:  # the loops are slow: every geometry once
        torch.testing.assert_close(conv2d_loops(x, w, b, **args), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in GRID if c["groups"] == 1], ids=str)
def test_backward_by_hand_equals_autograd(case):
    x, w, b = inputs(case["kernel"], 1, seed=1)
    x.requires_grad_(True)
    w.requires_grad_(True)
    b.requires_grad_(True)
    args = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"])
    y = F.conv2d(x, w, b, **args)
    grad_out = torch.randn_like(y)
    y.backward(grad_out)
    gx, gw, gb = conv2d_backward(x.detach(), w.detach(), grad_out, **args)
    for mine, ref in ((gx, x.grad), (gw, w.grad), (gb, b.grad)):
        torch.testing.assert_close(mine, ref, rtol=0, atol=1e-10)


def test_max_pool_and_its_gradient():
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64, requires_grad=True)
    values, where = max_pool2d(x.detach())
    torch.testing.assert_close(values, F.max_pool2d(x, 2), rtol=0, atol=0)
    g = torch.randn_like(values)
    F.max_pool2d(x, 2).backward(g)
    torch.testing.assert_close(max_pool2d_backward(g, where), x.grad, rtol=0, atol=0)


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match="groups=2"):
        conv2d_im2col(torch.zeros(1, 3, 5, 5), torch.zeros(4, 3, 3, 3), groups=2)
    with pytest.raises(ValueError, match="too small"):
        conv2d_im2col(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="stride >= 1"):
        conv2d_loops(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 3, 3), stride=0)


def test_receptive_field_of_a_known_stack():
    # conv3 s1, conv3 s1, pool2 s2, conv3 s1: 3, 5, 6, 10 (jump 1, 1, 2, 2)
    assert receptive_field([(3, 1), (3, 1), (2, 2), (3, 1)]) == [(3, 1), (5, 1), (6, 2), (10, 2)]


def test_shape_trace_names_the_layer_that_breaks():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8 * 7 * 7, 10))
    rows = shape_trace(model, torch.zeros(1, 3, 16, 16))
    assert rows[1] == ("1", "MaxPool2d", (1, 8, 8, 8)) and rows[-1][0] == "3" and "fails" in rows[-1][2]
    assert shape_trace(model, torch.zeros(1, 3, 14, 14))[-1] == ("3", "Linear", (1, 10))


def test_small_cnn_and_the_canvas_task():
    from karpa_lab.data import digits_on_canvas

    digits = torch.rand(5, 1, 8, 8)
    canvas = digits_on_canvas(digits, canvas=16, copies=3, seed=0)
    assert canvas.shape == (15, 1, 16, 16)
    # every copy holds its digit exactly once, somewhere, and nothing else
    for k in range(15):
        assert torch.isclose(canvas[k].sum(), digits[k % 5].sum())
    assert not torch.equal(canvas[0], canvas[5])  # the copies sit at different places
    with pytest.raises(ValueError, match=r"\(N, 1, 8, 8\)"):
        digits_on_canvas(torch.zeros(2, 8, 8))
    for pool in ("max", "avg"):
        assert small_cnn(pool=pool)(canvas).shape == (15, 10)
    with pytest.raises(ValueError, match="pool must be"):
        small_cnn(pool="median")
