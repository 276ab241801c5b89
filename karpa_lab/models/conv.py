r"""Convolution from scratch: as loops (to read), as im2col + one matrix product (to run), its backward
pass, max-pooling, the receptive field, and a shape trace that finds the layer a model breaks at.

A 2-D convolution (PyTorch's, which is a cross-correlation) of x (B, C_in, H, W) with a weight
(C_out, C_in / groups, kH, kW) and a bias (C_out,):

    y[b, o, i, j] = bias[o] + sum_{c, u, v} w[o, c, u, v] * x[b, c0(o) + c, s_h i + d_h u - p_h, s_w j + d_w v - p_w]

with stride s, dilation d, zero padding p, and c0(o) the first input channel of output o's group. The output is
(B, C_out, H_out, W_out), H_out = floor((H + 2 p_h - d_h (kH - 1) - 1) / s_h) + 1, same for W.

Backward, for an upstream gradient G = dL/dy (B, C_out, H_out, W_out):

    dL/dw[o, c, u, v] = sum_{b, i, j} G[b, o, i, j] * x[b, c, s_h i + d_h u - p_h, s_w j + d_w v - p_w]
    dL/dx             = G spread back through the same windows: a transposed convolution of G with w
    dL/dbias[o]       = sum_{b, i, j} G[b, o, i, j]

In im2col form, X_cols (B, C_in kH kW, L) with L = H_out W_out, the forward is Y = W_mat @ X_cols, so
dW_mat = sum_b G_mat @ X_cols^T and dX_cols = W_mat^T @ G_mat, folded back into the image (``F.fold``
adds the overlapping windows, which is exactly the sum over the windows a pixel belongs to).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return pair


@dataclass(frozen=True)
class ConvGeometry:
    """Stride, padding and dilation per axis, checked once; ``out_size`` is the formula of the docstring."""

    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    @classmethod
    def of(cls, stride=1, padding=0, dilation=1) -> ConvGeometry:
        geometry = cls(_pair(stride, "stride"), _pair(padding, "padding"), _pair(dilation, "dilation"))
        if min(geometry.stride + geometry.dilation) < 1 or min(geometry.padding) < 0:
            raise ValueError(f"need stride >= 1, dilation >= 1 and padding >= 0, got {geometry}")
        return geometry

    def out_size(self, size: tuple[int, int], kernel: tuple[int, int]) -> tuple[int, int]:
        out = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                    for n, k, s, p, d in zip(size, kernel, self.stride, self.padding, self.dilation))
        if min(out) < 1:
            raise ValueError(f"input {size} is too small for kernel {kernel} with {self}: output would be {out}")
        return out


def _check(x: torch.Tensor, weight: torch.Tensor, groups: int) -> None:
    if x.dim() != 4 or weight.dim() != 4:
        raise ValueError(f"conv2d needs x (B, C_in, H, W) and weight (C_out, C_in/groups, kH, kW), got x "
                         f"{tuple(x.shape)} and weight {tuple(weight.shape)}")
    if x.shape[1] % groups or weight.shape[0] % groups or x.shape[1] // groups != weight.shape[1]:
        raise ValueError(f"with groups={groups}, x's {x.shape[1]} channels and weight's {weight.shape[0]} outputs "
                         f"must both divide by groups, and weight.shape[1] must be C_in/groups = "
                         f"{x.shape[1] // groups}; got weight {tuple(weight.shape)}")


def conv2d_loops(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
                 dilation=1, groups: int = 1) -> torch.Tensor:
    """The definition, one output pixel at a time (slow: to read, and to check the fast version against)."""
    _check(x, weight, groups)
    geo = ConvGeometry.of(stride, padding, dilation)
    (sh, sw), (ph, pw), (dh, dw) = geo.stride, geo.padding, geo.dilation
    c_out, c_per_group, kh, kw = weight.shape
    h_out, w_out = geo.out_size(tuple(x.shape[2:]), (kh, kw))
    xp = F.pad(x, (pw, pw, ph, ph))
    out = x.new_zeros(x.shape[0], c_out, h_out, w_out)
    outs_per_group = c_out // groups
    for o in range(c_out):
        first = (o // outs_per_group) * c_per_group  # the input channels of this output's group
        for i in range(h_out):
            for j in range(w_out):
                window = xp[:, first:first + c_per_group, i * sh:i * sh + dh * (kh - 1) + 1:dh,
                            j * sw:j * sw + dw * (kw - 1) + 1:dw]
                out[:, o, i, j] = (window * weight[o]).sum(dim=(1, 2, 3))
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def conv2d_im2col(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
                  dilation=1, groups: int = 1) -> torch.Tensor:
    """The same numbers from one ``unfold`` (im2col) and one batched matrix product per group."""
    _check(x, weight, groups)
    geo = ConvGeometry.of(stride, padding, dilation)
    b, c_out, (kh, kw) = x.shape[0], weight.shape[0], weight.shape[2:]
    h_out, w_out = geo.out_size(tuple(x.shape[2:]), (kh, kw))
    cols = F.unfold(x, (kh, kw), dilation=geo.dilation, padding=geo.padding, stride=geo.stride)  # (B, C_in kH kW, L)
    cols = cols.view(b, groups, -1, h_out * w_out)  # the unfolded rows are channel-major: groups split cleanly
    w_mat = weight.view(groups, c_out // groups, -1)  # (groups, C_out/groups, C_in/groups kH kW)
    out = torch.einsum("gok,bgkl->bgol", w_mat, cols).reshape(b, c_out, h_out, w_out)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def conv2d_backward(x: torch.Tensor, weight: torch.Tensor, grad_out: torch.Tensor, stride=1, padding=0,
                    dilation=1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dL/dx, dL/dweight, dL/dbias) of ``conv2d_im2col`` (groups=1) by the im2col formulas of the docstring."""
    _check(x, weight, 1)
    geo = ConvGeometry.of(stride, padding, dilation)
    b, c_out, (kh, kw) = x.shape[0], weight.shape[0], weight.shape[2:]
    cols = F.unfold(x, (kh, kw), dilation=geo.dilation, padding=geo.padding, stride=geo.stride)
    g = grad_out.reshape(b, c_out, -1)  # (B, C_out, L)
    grad_weight = torch.einsum("bol,bkl->ok", g, cols).view_as(weight)
    grad_cols = torch.einsum("ok,bol->bkl", weight.view(c_out, -1), g)
    grad_x = F.fold(grad_cols, tuple(x.shape[2:]), (kh, kw), dilation=geo.dilation, padding=geo.padding,
                    stride=geo.stride)
    return grad_x, grad_weight, g.sum(dim=(0, 2))


def max_pool2d(x: torch.Tensor, kernel: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping max-pooling (stride = kernel) and the index of each maximum inside its window.

    Its backward sends each upstream gradient to the one input that was the maximum, zero elsewhere:
    see :func:`max_pool2d_backward`."""
    b, c, h, w = x.shape
    if h % kernel or w % kernel:
        raise ValueError(f"max_pool2d: H and W ({h}, {w}) must be multiples of the kernel {kernel}")
    windows = x.view(b, c, h // kernel, kernel, w // kernel, kernel).permute(0, 1, 2, 4, 3, 5)
    values, where = windows.reshape(b, c, h // kernel, w // kernel, kernel * kernel).max(dim=-1)
    return values, where


def max_pool2d_backward(grad_out: torch.Tensor, where: torch.Tensor, kernel: int = 2) -> torch.Tensor:
    """dL/dx of :func:`max_pool2d`: the upstream gradient at each window's maximum, zero elsewhere."""
    b, c, ho, wo = grad_out.shape
    grad = grad_out.new_zeros(b, c, ho, wo, kernel * kernel).scatter_(-1, where.unsqueeze(-1), grad_out.unsqueeze(-1))
    return grad.view(b, c, ho, wo, kernel, kernel).permute(0, 1, 2, 4, 3, 5).reshape(b, c, ho * kernel, wo * kernel)


def small_cnn(width: int = 12, pool: str = "max", in_channels: int = 1, classes: int = 10) -> nn.Sequential:
    """conv 3x3 -> ReLU -> max-pool 2 -> conv 3x3 -> ReLU -> global pool -> linear: a few thousand weights.

    ``pool``: "max" (a stroke anywhere on the canvas counts fully) or "avg" (global average pooling)."""
    if pool not in ("max", "avg"):
        raise ValueError(f"pool must be 'max' or 'avg', got {pool!r}")
    global_pool = nn.AdaptiveMaxPool2d(1) if pool == "max" else nn.AdaptiveAvgPool2d(1)
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
                         global_pool, nn.Flatten(), nn.Linear(2 * width, classes))


def receptive_field(layers: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """(receptive field, jump) after each layer, for layers given as (kernel, stride) along one axis.

    r_0 = 1, j_0 = 1;  r_l = r_{l-1} + (k_l - 1) j_{l-1};  j_l = j_{l-1} s_l  (j: input pixels between
    neighbouring outputs). A pixel of the last map sees an r x r patch of the input."""
    field, jump, out = 1, 1, []
    for kernel, stride in layers:
        field, jump = field + (kernel - 1) * jump, jump * stride
        out.append((field, jump))
    return out


def shape_trace(model: nn.Module, x: torch.Tensor) -> list[tuple[str, str, tuple[int, ...] | str]]:
    """Run ``model(x)`` with a forward hook on every leaf module; (name, module, output shape) per layer.

    When a layer fails, the trace ends with that layer and the error instead of a shape: the layer a
    model breaks at, found without reading its code."""
    rows: list[tuple[str, str, tuple[int, ...] | str]] = []
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: rows.append(
        (name, type(mod).__name__, tuple(out.shape)))) for name, m in leaves]
    try:
        with torch.no_grad():
            model(x)
    except RuntimeError as exc:
        done = {r[0] for r in rows}
        failed = next(((n, m) for n, m in leaves if n not in done), ("?", model))
        rows.append((failed[0], type(failed[1]).__name__, f"fails: {str(exc).splitlines()[0]}"))
    finally:
        for h in hooks:
            h.remove()
    return rows
