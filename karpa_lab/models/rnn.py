r"""The vanilla RNN from scratch, in ``nn.RNN``'s weight layout, with backpropagation through time by hand.

For inputs x_t (B, D), t = 1..T, and a hidden state h_t (B, H) starting from h_0 (zeros by default):

    a_t = x_t W_xh^T + h_{t-1} W_hh^T + b        (B, H)   pre-activation
    h_t = tanh(a_t)                               (B, H)

with W_xh (H, D) = ``weight_ih_l0``, W_hh (H, H) = ``weight_hh_l0`` and b = ``bias_ih_l0 + bias_hh_l0``
(PyTorch keeps two bias vectors; only their sum matters). A read-out y_t = h_t W_hy^T + c is an
``nn.Linear`` on top and is not part of ``nn.RNN``.

Backpropagation through time (BPTT, 随时间反向传播). Let g_t = dL/dh_t (B, H) be the gradient that
reaches h_t directly from the loss (through y_t), and delta_t the *total* gradient dL/dh_t, through
every later step as well. Since h_{t+1} = tanh(x_{t+1} W_xh^T + h_t W_hh^T + b):

    delta_T = g_T
    delta_t = g_t + (delta_{t+1} * (1 - h_{t+1}^2)) W_hh              t = T-1, ..., 1
    dL/da_t = delta_t * (1 - h_t^2)                                      (B, H), * elementwise
    dL/dW_hh = sum_t (dL/da_t)^T h_{t-1}      (H, H)
    dL/dW_xh = sum_t (dL/da_t)^T x_t          (H, D)
    dL/db    = sum_t sum_batch dL/da_t        (H,)
    dL/dh_0  = (dL/da_1) W_hh                 (B, H)

Unrolled, the gradient that h_T sends back k steps is a product of k Jacobians,

    dh_T/dh_{T-k} = prod_{j=0}^{k-1} diag(1 - h_{T-j}^2) W_hh,

so its size behaves like rho(W_hh)^k, the spectral radius (谱半径) of W_hh to the k-th power, while the
tanh derivatives (at most 1) only shrink it further: gradients vanish (梯度消失) for rho < 1 and can
explode (梯度爆炸) for rho > 1. :func:`gradient_norms_by_lag` measures exactly that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def rnn_step(
    x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None, bias_hh: torch.Tensor | None = None,
) -> torch.Tensor:
    """One step ``h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)``: x (B, D), h (B, H) -> (B, H)."""
    a = x @ weight_ih.T + h @ weight_hh.T
    if bias_ih is not None:
        a = a + bias_ih + bias_hh
    return torch.tanh(a)


class RNN(nn.Module):
    """A from-scratch single-layer tanh ``nn.RNN``: the same parameter names, shapes, inputs and outputs.

    ``forward(x, h0)`` takes x (T, B, D) (or (B, T, D) when ``batch_first``) and an optional h0
    (1, B, H), and returns ``output`` (T, B, H) holding h_1..h_T and ``h_n`` (1, B, H), as ``nn.RNN`` does.
    """

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, batch_first: bool = False):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.bias, self.batch_first = bias, batch_first
        self.weight_ih_l0 = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh_l0 = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_ih_l0 = nn.Parameter(torch.empty(hidden_size)) if bias else None
        self.bias_hh_l0 = nn.Parameter(torch.empty(hidden_size)) if bias else None
        bound = 1 / math.sqrt(hidden_size)  # PyTorch's initialisation: uniform in [-1/sqrt(H), 1/sqrt(H)]
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = check_input(self, x)
        batch = x.shape[1]
        if h0 is None:
            h = x.new_zeros(batch, self.hidden_size)
        else:
            if h0.shape != (1, batch, self.hidden_size):
                raise ValueError(
                    f"RNN: h0 must be (num_layers=1, batch={batch}, hidden_size={self.hidden_size}), "
                    f"got {tuple(h0.shape)}"
                )
            h = h0[0]
        outputs = []
        for x_t in x:
            h = rnn_step(x_t, h, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
            outputs.append(h)
        output = torch.stack(outputs)
        return (output.transpose(0, 1) if self.batch_first else output), h.unsqueeze(0)

    @classmethod
    def from_torch(cls, ref: nn.RNN) -> RNN:
        """A copy of a single-layer, uni-directional tanh ``nn.RNN`` with the same weights."""
        if ref.num_layers != 1 or ref.bidirectional or ref.nonlinearity != "tanh":
            raise ValueError(
                "RNN.from_torch copies a single-layer, uni-directional tanh nn.RNN; got num_layers="
                f"{ref.num_layers}, bidirectional={ref.bidirectional}, nonlinearity={ref.nonlinearity!r}"
            )
        rnn = cls(ref.input_size, ref.hidden_size, bias=ref.bias, batch_first=ref.batch_first)
        rnn = rnn.to(ref.weight_ih_l0)
        with torch.no_grad():
            for name, p in rnn.named_parameters():
                p.copy_(getattr(ref, name))
        return rnn


class NextValue(nn.Module):
    """The next value of a series from a window of it: the from-scratch :class:`RNN` over the window
    x (T, B, 1), then a linear read-out of its last hidden state -> (B, 1)."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.rnn = RNN(1, hidden)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h_last = self.rnn(x)
        return self.head(h_last[0])


def check_input(rnn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` as (T, B, D) after checking its shape against ``rnn`` (an :class:`RNN` or ``nn.RNN``)."""
    layout = "(batch, time, input_size)" if rnn.batch_first else "(time, batch, input_size)"
    if x.dim() != 3 or x.shape[2] != rnn.input_size:
        hint = " (for one sequence, add a batch axis of 1)" if x.dim() == 2 else ""
        raise ValueError(
            f"RNN: input must be 3-D {layout} with input_size={rnn.input_size}, got {tuple(x.shape)}{hint}"
        )
    if 0 in x.shape[:2]:
        raise ValueError(f"RNN: input needs at least one time step and one sequence, got {tuple(x.shape)}")
    return x.transpose(0, 1) if rnn.batch_first else x


@dataclass
class BPTTGrads:
    """Gradients from :func:`bptt`, named after ``nn.RNN``'s parameters.

    ``bias`` is the gradient of ``bias_ih_l0`` and of ``bias_hh_l0`` alike (both enter as their sum).
    ``h`` (T, B, H) holds the total dL/dh_t for t = 1..T (time first), ``h0`` (B, H) dL/dh_0.
    """

    weight_ih: torch.Tensor
    weight_hh: torch.Tensor
    bias: torch.Tensor
    h: torch.Tensor
    h0: torch.Tensor


def bptt(
    rnn: nn.Module, x: torch.Tensor, grad_outputs: torch.Tensor, h0: torch.Tensor | None = None
) -> BPTTGrads:
    r"""Backpropagation through time by hand (the equations at the top of this module), without autograd.

    Args:
        rnn: an :class:`RNN` or a single-layer tanh ``nn.RNN`` (only its weights are read).
        x: inputs (T, B, D), or (B, T, D) when ``rnn.batch_first``.
        grad_outputs: g_t = dL/dh_t arriving directly from the loss, the shape of ``rnn(x)[0]``;
            zeros at the steps the loss does not read.
        h0: optional initial state (1, B, H).

    Returns the parameter gradients, every total dL/dh_t and dL/dh_0 (:class:`BPTTGrads`); they equal
    what ``loss.backward()`` computes when ``L = sum_t <g_t, h_t>``, or any loss with those dL/dh_t.
    """
    if getattr(rnn, "nonlinearity", "tanh") != "tanh" or getattr(rnn, "num_layers", 1) != 1:
        raise ValueError("bptt is derived for a single-layer tanh RNN")
    seq = check_input(rnn, x)
    with torch.no_grad():
        output, _ = rnn(x, h0)
    hs = output.transpose(0, 1) if rnn.batch_first else output  # (T, B, H): h_1..h_T
    g = grad_outputs.transpose(0, 1) if rnn.batch_first else grad_outputs
    if g.shape != hs.shape:
        raise ValueError(f"bptt: grad_outputs must have the output's shape {tuple(output.shape)}, "
                         f"got {tuple(grad_outputs.shape)}")
    w_hh = rnn.weight_hh_l0.detach()
    T, B, H = hs.shape
    h_start = h0[0] if h0 is not None else hs.new_zeros(B, H)
    h_prev = torch.cat([h_start.unsqueeze(0), hs[:-1]])  # h_0..h_{T-1}

    delta = torch.empty_like(hs)  # total dL/dh_t
    da = torch.empty_like(hs)  # dL/da_t
    carry = hs.new_zeros(B, H)  # what step t+1 sends back: dL/da_{t+1} W_hh
    for t in range(T - 1, -1, -1):
        delta[t] = g[t] + carry
        da[t] = delta[t] * (1 - hs[t] ** 2)
        carry = da[t] @ w_hh
    return BPTTGrads(
        weight_ih=torch.einsum("tbh,tbd->hd", da, seq.to(da)),
        weight_hh=torch.einsum("tbh,tbk->hk", da, h_prev),
        bias=da.sum(dim=(0, 1)),
        h=delta,
        h0=carry,
    )


def recurrent_weight(
    hidden_size: int, radius: float, seed: int = 0, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """A random W_hh (H, H) with spectral radius exactly ``radius``: Gaussian entries, then rescaled
    by ``radius / max |eigenvalue|``."""
    if radius < 0:
        raise ValueError(f"the spectral radius is a non-negative number, got {radius}")
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(hidden_size, hidden_size, generator=g, dtype=torch.float64) / math.sqrt(hidden_size)
    return (w * (radius / torch.linalg.eigvals(w).abs().max())).to(dtype)


def gradient_norms_by_lag(
    radius: float, steps: int = 50, hidden_size: int = 64, input_size: int = 8,
    input_scale: float = 0.0, seed: int = 0,
) -> torch.Tensor:
    r"""||dL/dh_{T-k}|| for lags k = 0..T-1, for a random tanh RNN whose W_hh has spectral radius ``radius``.

    The loss reads only the last state, L = <v, h_T> with a random unit vector v, so ||dL/dh_T|| = 1 and
    entry k is how much of that gradient is left k steps back (computed with :func:`bptt`). Inputs are
    Gaussian times ``input_scale``; at 0 the states stay at 0, where tanh' = 1, and the norm follows
    rho^k up to a constant; larger inputs saturate tanh and shrink every Jacobian further.
    Returns a float64 tensor of shape (steps,).
    """
    if steps < 1 or hidden_size < 1 or input_size < 1 or input_scale < 0:
        raise ValueError(f"need steps, hidden_size, input_size >= 1 and input_scale >= 0; got "
                         f"{steps}, {hidden_size}, {input_size}, {input_scale}")
    rnn = RNN(input_size, hidden_size, bias=False).double()
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(recurrent_weight(hidden_size, radius, seed))
        rnn.weight_ih_l0.copy_(torch.randn(hidden_size, input_size, generator=g, dtype=torch.float64)
                               / math.sqrt(input_size))
    x = input_scale * torch.randn(steps, 1, input_size, generator=g, dtype=torch.float64)
    v = torch.randn(hidden_size, generator=g, dtype=torch.float64)
    grad_outputs = torch.zeros(steps, 1, hidden_size, dtype=torch.float64)
    grad_outputs[-1, 0] = v / v.norm()
    delta = bptt(rnn, x, grad_outputs).h[:, 0]  # (T, H), time order h_1..h_T
    return delta.norm(dim=1).flip(0)
