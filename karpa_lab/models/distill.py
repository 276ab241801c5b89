r"""Knowledge distillation (Hinton, Vinyals & Dean 2015): a student learns from a teacher's softened outputs.

Shapes: student logits $z$ (B, N), teacher logits $v$ (B, N), labels $y$ (B,), temperature $T > 0$.

    p = softmax_t(v, T)                          # (B, N) the teacher's soft targets
    loss = distillation_loss(z, v, y, T, alpha)  # alpha * T^2 * H(p, q_T) + (1 - alpha) * CE(z, y)
    fit(student, loader_of_x_y_v, step_fn=distillation_step(T, alpha), ...)

The soft term's gradient is $\partial (T^2 H) / \partial z_i = T (q_i - p_i) / B$ (:func:`soft_target_gradient`):
without the $T^2$ it would shrink like $1/T^2$ as $T$ grows, and for large $T$ it tends to
$(z_i - v_i) / (N B)$ for zero-mean logits, the gradient of matching the logits by squared error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["distillation_loss", "distillation_step", "soft_target_cross_entropy", "soft_target_gradient",
           "softmax_t"]


def _check(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> None:
    if student.dim() != 2 or student.shape != teacher.shape:
        raise ValueError(f"student and teacher logits must both be (batch, classes) and of one shape, got "
                         f"{tuple(student.shape)} and {tuple(teacher.shape)}")
    if not float(temperature) > 0:
        raise ValueError(f"the temperature must be positive, got {temperature}; T = 1 is the ordinary softmax")


def softmax_t(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""Softmax with temperature over the last axis: $p_i = \exp(v_i / T) / \sum_j \exp(v_j / T)$.

    $T = 1$ is the ordinary softmax; a larger $T$ flattens the distribution towards uniform, and
    $T \to 0$ puts all the mass on the arg-max.
    """
    if not float(temperature) > 0:
        raise ValueError(f"the temperature must be positive, got {temperature}; T = 1 is the ordinary softmax")
    return torch.softmax(logits / temperature, dim=-1)


def soft_target_cross_entropy(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    r"""$H(p, q) = -\frac{1}{B}\sum_b \sum_i p_{b,i} \log q_{b,i}$ with $p = $ softmax$(v/T)$,
    $q = $ softmax$(z/T)$; a scalar. The teacher is detached: only the student learns.

    It differs from $\mathrm{KL}(p \,\|\, q)$ by the teacher's entropy, a constant in $z$, so both have
    the same gradient.
    """
    _check(student, teacher, temperature)
    p = softmax_t(teacher.detach().float(), temperature)
    return -(p * torch.log_softmax(student.float() / temperature, dim=-1)).sum(-1).mean()


def soft_target_gradient(student: torch.Tensor, teacher: torch.Tensor, temperature: float,
                         scaled: bool = True) -> torch.Tensor:
    r"""The gradient of the soft term with respect to the student's logits, (B, N), in closed form:

    $\partial H / \partial z_i = (q_i - p_i) / (T B)$, and with the $T^2$ factor (``scaled``)
    $\partial (T^2 H) / \partial z_i = T (q_i - p_i) / B$.
    """
    _check(student, teacher, temperature)
    q, p = softmax_t(student, temperature), softmax_t(teacher, temperature)
    factor = temperature if scaled else 1.0 / temperature
    return factor * (q - p) / student.shape[0]


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, labels: torch.Tensor | None,
                      temperature: float, alpha: float = 0.9) -> torch.Tensor:
    r"""$\mathcal{L} = \alpha\, T^2 H(p_T, q_T) + (1 - \alpha)\, \mathrm{CE}(z, y)$, a scalar.

    The $T^2$ keeps the soft term's gradient the same size whatever $T$ is, so ``alpha`` means the same
    at every temperature. ``labels=None`` (or ``alpha=1``) trains on the soft targets alone.
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha weighs the soft term against the labels and must be in [0, 1], got {alpha}")
    if labels is None and alpha != 1:
        raise ValueError(f"without labels only the soft term can be used: pass alpha=1, got alpha={alpha}")
    loss = alpha * temperature**2 * soft_target_cross_entropy(student, teacher, temperature)
    if labels is not None and alpha < 1:
        if labels.shape != student.shape[:1]:
            raise ValueError(f"labels must be (batch,) = {tuple(student.shape[:1])}, got {tuple(labels.shape)}")
        loss = loss + (1 - alpha) * F.cross_entropy(student.float(), labels)
    return loss


def distillation_step(temperature: float, alpha: float = 0.9) -> Callable[[nn.Module, tuple], dict]:
    """A ``step_fn`` for :func:`karpa_lab.fit` whose batches are ``(x, labels, teacher_logits)``.

    It returns ``{"loss": distillation_loss(...)}``; precompute the teacher's logits once (the teacher
    is fixed) and put them in the dataset beside the labels.
    """
    def step(model: nn.Module, batch: tuple) -> dict:
        if not (isinstance(batch, (list, tuple)) and len(batch) == 3):
            raise ValueError("distillation_step needs batches (x, labels, teacher_logits), e.g. from "
                             "TensorDataset(x, y, teacher(x).detach())")
        x, y, v = batch
        return {"loss": distillation_loss(model(x), v, y, temperature, alpha)}

    return step
