"""Distillation: the KD loss equals PyTorch's own formulations, forward and gradient, and the T^2 algebra holds."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from karpa_lab import fit
from karpa_lab.models.distill import (
    distillation_loss,
    distillation_step,
    soft_target_cross_entropy,
    soft_target_gradient,
    softmax_t,
)


def logits(seed: int = 0, batch: int = 7, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    z = (3 * torch.randn(batch, classes, generator=g, dtype=torch.float64)).requires_grad_()
    v = 3 * torch.randn(batch, classes, generator=g, dtype=torch.float64)
    y = torch.randint(0, classes, (batch,), generator=g)
    return z, v, y


def reference(z, v, y, T, alpha):
    """Hinton's loss written with PyTorch's soft-target cross-entropy."""
    soft = F.cross_entropy(z / T, F.softmax(v / T, dim=-1))
    return alpha * T**2 * soft + (1 - alpha) * F.cross_entropy(z, y)


@pytest.mark.parametrize("T", [0.5, 1.0, 4.0, 20.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_loss_and_gradient_equal_pytorchs_cross_entropy_with_soft_targets(T, alpha):
    z, v, y = logits()
    ours = distillation_loss(z, v, y, T, alpha)
    ref = reference(z, v, y, T, alpha)
    torch.testing.assert_close(ours, ref.float(), rtol=1e-6, atol=1e-6)  # the loss is computed in float32
    (g_ours,) = torch.autograd.grad(ours, z)
    (g_ref,) = torch.autograd.grad(ref, z)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("T", [1.0, 3.0, 10.0])
def test_the_soft_term_is_kl_plus_the_teachers_entropy_and_has_its_gradient(T):
    z, v, _ = logits(1)
    p = F.softmax(v / T, dim=-1)
    kl = F.kl_div(F.log_softmax(z / T, dim=-1), p, reduction="batchmean")
    entropy = -(p * p.log()).sum(-1).mean()
    ce = soft_target_cross_entropy(z, v, T)
    torch.testing.assert_close(ce.double(), kl + entropy, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(ce, z)[0], torch.autograd.grad(kl, z)[0], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("T", [0.7, 2.0, 8.0])
def test_closed_form_gradient_matches_autograd_with_and_without_T_squared(T):
    z, v, _ = logits(2)
    soft = F.cross_entropy(z / T, F.softmax(v / T, dim=-1))
    (g,) = torch.autograd.grad(soft, z)
    torch.testing.assert_close(soft_target_gradient(z.detach(), v, T, scaled=False), g, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(soft_target_gradient(z.detach(), v, T), T**2 * g, rtol=1e-10, atol=1e-12)


def test_without_T_squared_the_gradient_falls_like_one_over_T_squared_and_with_it_tends_to_logit_matching():
    z, v, _ = logits(3)
    z, v = z.detach() - z.detach().mean(-1, keepdim=True), v - v.mean(-1, keepdim=True)  # zero-mean logits
    n, b = z.shape[1], z.shape[0]
    big = [soft_target_gradient(z, v, T, scaled=False).norm() for T in (100.0, 1000.0)]
    assert float(big[0] / big[1]) == pytest.approx(100.0, rel=0.02)  # 10x the temperature, 1/100 the gradient
    matching = (z - v) / (n * b)  # gradient of sum (z - v)^2 / (2 N B)
    far = soft_target_gradient(z, v, 1000.0)
    assert float((far - matching).norm() / matching.norm()) < 1e-2
    near = soft_target_gradient(z, v, 1.0)
    assert float((near - matching).norm() / matching.norm()) > 0.3  # at T = 1 it is not logit matching


def test_softmax_t_limits():
    v = torch.tensor([[2.0, 1.0, -1.0]])
    torch.testing.assert_close(softmax_t(v, 1.0), torch.softmax(v, -1))
    assert float(softmax_t(v, 0.01)[0, 0]) > 0.999
    assert float((softmax_t(v, 1e4) - 1 / 3).abs().max()) < 1e-3


def test_bad_input_is_refused_with_a_reason():
    z, v, y = logits()
    with pytest.raises(ValueError, match="temperature must be positive"):
        softmax_t(v, 0.0)
    with pytest.raises(ValueError, match="one shape"):
        soft_target_cross_entropy(z, v[:, :5], 2.0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(z, v, y, 2.0, alpha=1.5)
    with pytest.raises(ValueError, match="without labels"):
        distillation_loss(z, v, None, 2.0, alpha=0.5)
    with pytest.raises(ValueError, match=r"labels must be \(batch,\)"):
        distillation_loss(z, v, y[:3], 2.0, alpha=0.5)
    with pytest.raises(ValueError, match="batches \\(x, labels, teacher_logits\\)"):
        distillation_step(2.0)(nn.Linear(10, 10), (z, y))


def test_distillation_step_trains_a_student_to_its_teacher_through_fit():
    torch.manual_seed(0)
    x = torch.randn(256, 5)
    teacher = nn.Linear(5, 4)
    with torch.no_grad():
        v = 3 * teacher(x)
    y = v.argmax(1)
    student = nn.Linear(5, 4)
    data = DataLoader(TensorDataset(x, y, v), batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    loss_now = lambda: float(distillation_loss(student(x).detach(), v, None, 2.0, alpha=1.0))
    before = loss_now()
    history = fit(student, data, epochs=40, lr=3e-2, step_fn=distillation_step(2.0, alpha=1.0), device="cpu",
                  verbose=False)
    after = loss_now()
    floor = float(distillation_loss(v, v, None, 2.0, alpha=1.0))  # the teacher's own entropy, times T^2
    assert len(history) == 160
    assert after - floor < 0.1 * (before - floor)
    assert float((student(x).argmax(1) == y).float().mean()) > 0.95
