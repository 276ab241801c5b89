r"""The gradient check: backprop against centred finite differences, at random coordinates.

For a loss :math:`\mathcal{L}(\theta)` and a coordinate :math:`k`, the centred difference

.. math:: g^{\text{num}}_k = \frac{\mathcal{L}(\theta + \epsilon e_k) - \mathcal{L}(\theta - \epsilon e_k)}{2\epsilon}

approximates :math:`\partial\mathcal{L}/\partial\theta_k` with an error of order :math:`\epsilon^2`
(truncation) plus about :math:`u\,\mathcal{L}/\epsilon` (the rounding :math:`u` of the loss), so in float64
:math:`\epsilon = 10^{-4}` is a good step and float32 is too coarse to check with. The check reports the
largest relative error :math:`|g^{\text{num}} - g^{\text{bp}}| / \max(|g^{\text{num}}|, |g^{\text{bp}}|)`
(CS231n's measure); a coordinate whose gradient is exactly 0 both ways counts as agreement. Lesson 01
builds it step by step and checks it against this one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def gradient_check(net: nn.Module, x: torch.Tensor, y: torch.Tensor, coords_per_tensor: int = 50,
                   eps: float = 1e-4, seed: int = 0,
                   loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy) -> float:
    """Largest relative error between backprop and centred differences of ``loss_fn(net(x), y)`` at
    ``coords_per_tensor`` random coordinates (drawn with ``seed``) of each parameter tensor of ``net``.

    Run it on a float64 copy of the model and data. The parameters are restored exactly after each probe.
    """
    if eps <= 0 or coords_per_tensor < 1:
        raise ValueError(f"gradient_check needs eps > 0 and coords_per_tensor >= 1, got {eps} and "
                         f"{coords_per_tensor}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x and y hold different numbers of examples: {tuple(x.shape)} and {tuple(y.shape)}")
    net.zero_grad()
    loss_fn(net(x), y).backward()
    rng, worst = torch.Generator().manual_seed(seed), 0.0
    with torch.no_grad():
        for p in net.parameters():
            if p.grad is None:
                continue
            flat, grad = p.view(-1), p.grad.view(-1)
            for k in torch.randint(flat.numel(), (coords_per_tensor,), generator=rng).tolist():
                saved = flat[k].item()
                flat[k] = saved + eps
                up = loss_fn(net(x), y).item()
                flat[k] = saved - eps
                down = loss_fn(net(x), y).item()
                flat[k] = saved
                numeric, analytic = (up - down) / (2 * eps), grad[k].item()
                scale = max(abs(numeric), abs(analytic))
                worst = max(worst, 0.0 if scale == 0 else abs(numeric - analytic) / scale)
    return worst
