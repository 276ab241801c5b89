"""The package's gradient check: it passes a right backward pass and catches wrong ones."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab.gradient_check import gradient_check


def _mlp_and_batch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    return net, torch.randn(12, 8, dtype=torch.float64), torch.randint(3, (12,))


class _ScaledBackward(nn.Module):
    """The forward of ``net``; its backward is ``factor`` times too large."""

    def __init__(self, net, factor):
        super().__init__()
        self.net, self.factor = net, factor

    def forward(self, x):
        z = self.net(x)
        return z + (self.factor - 1) * (z - z.detach())


def test_a_right_backward_passes_and_the_weights_come_back():
    net, x, y = _mlp_and_batch()
    before = [p.clone() for p in net.parameters()]
    assert gradient_check(net, x, y) < 1e-5  # measured 8e-7: the rounding of the smallest gradients
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_a_wrong_backward_fails_by_its_factor():
    net, x, y = _mlp_and_batch()
    error = gradient_check(_ScaledBackward(net, 12.0), x, y)
    assert error == pytest.approx(1 - 1 / 12, abs=1e-6)  # |g - 12 g| / |12 g|


def test_another_loss_and_a_too_coarse_dtype():
    net, x, y = _mlp_and_batch()
    target = F.one_hot(y, 3).double()
    assert gradient_check(net, x, target, loss_fn=F.mse_loss) < 1e-4  # measured 5.7e-6
    assert gradient_check(net.float(), x.float(), y, eps=1e-8) > 0.1  # float32 rounding swamps the quotient


def test_bad_arguments_say_what_is_wrong():
    net, x, y = _mlp_and_batch()
    with pytest.raises(ValueError, match="eps > 0"):
        gradient_check(net, x, y, eps=0)
    with pytest.raises(ValueError, match="different numbers of examples"):
        gradient_check(net, x, y[:5])
