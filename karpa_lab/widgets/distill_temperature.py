r"""Move the temperature, watch one example's soft targets and the distillation gradient they give.

The logic is :func:`temperature_response` (logits and T in, arrays and a readout out) and
:func:`draw_temperature` (a matplotlib figure); :func:`temperature_widget` only wires a slider to them.

    r = temperature_response(teacher_logits, student_logits, T=4.0)   # both (N,)
    r["p"]      # (N,) softmax(v / T), the teacher's soft targets
    r["grad"]   # (N,) d(T^2 H(p, q)) / dz = T (q - p), the soft term's gradient for this example
"""

from __future__ import annotations

import numpy as np
import torch

from karpa_lab.models.distill import soft_target_gradient, softmax_t
from karpa_lab.widgets import serialized, show_figure

T_RANGE = (0.5, 20.0)


def temperature_response(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> dict:
    r"""Soft targets and the KD gradient of one example at temperature $T$ (clipped to ``T_RANGE``).

    Returns numpy arrays ``p`` = softmax(v/T), ``p1`` = softmax(v) (T = 1, for comparison),
    ``q`` = softmax(z/T), ``grad`` = $T (q - p)$ (with the $T^2$ factor) and ``grad_unscaled`` =
    $(q - p) / T$ (without it), all (N,); the ``entropy`` of ``p`` in nats, ``T`` and ``readout`` (HTML).
    """
    v = torch.as_tensor(teacher_logits, dtype=torch.float64).flatten()
    z = torch.as_tensor(student_logits, dtype=torch.float64).flatten()
    if v.shape != z.shape or v.numel() < 2:
        raise ValueError(f"teacher and student logits must be two vectors of one length >= 2 (one example), "
                         f"got {tuple(teacher_logits.shape)} and {tuple(student_logits.shape)}")
    T = float(min(max(float(temperature), T_RANGE[0]), T_RANGE[1]))
    p, q = softmax_t(v, T), softmax_t(z, T)
    grad = soft_target_gradient(z[None], v[None], T)[0]
    unscaled = soft_target_gradient(z[None], v[None], T, scaled=False)[0]
    entropy = float(-(p * p.clamp_min(1e-300).log()).sum())
    top = int(p.argmax())
    second = int(p.clone().index_fill_(0, torch.tensor([top]), -1).argmax())
    readout = (f"T = {T:.2f}: the teacher's top class {top} gets p = {float(p[top]):.3f}, the runner-up {second} "
               f"p = {float(p[second]):.3f}; entropy {entropy:.3f} nats (uniform: {np.log(len(p)):.3f}); "
               f"|gradient| with T<sup>2</sup> {float(grad.norm()):.4f}, without {float(unscaled.norm()):.5f}")
    return {"p": p.numpy(), "p1": softmax_t(v, 1.0).numpy(), "q": q.numpy(), "grad": grad.numpy(),
            "grad_unscaled": unscaled.numpy(), "entropy": entropy, "T": T, "readout": readout}


def draw_temperature(response: dict, fig=None):
    """Left: the soft targets at T (bars) against T = 1 (dots) and the student's q at T. Right: the gradient."""
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(9, 3))
    fig.clear()
    left, right = fig.subplots(1, 2)
    classes = np.arange(len(response["p"]))
    left.bar(classes - 0.2, response["p"], width=0.4, label=f"teacher p, T = {response['T']:.1f}")
    left.bar(classes + 0.2, response["q"], width=0.4, label="student q, same T", alpha=0.7)
    left.plot(classes, response["p1"], "k.", label="teacher, T = 1")
    left.set_yscale("log")
    left.set_ylim(1e-6, 1.5)
    left.set_xticks(classes)
    left.set_xlabel("class")
    left.legend(fontsize=7, loc="lower right")
    right.bar(classes, response["grad"], color="C3")
    right.axhline(0, color="k", lw=0.5)
    right.set_xticks(classes)
    right.set_xlabel("class")
    right.set_title("gradient T (q - p) on the student's logits", fontsize=9)
    fig.tight_layout()
    return fig


def temperature_widget(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 4.0):
    """A slider for T; the soft targets, the student's distribution and the KD gradient follow it."""
    import ipywidgets as w
    from matplotlib.figure import Figure

    slider = w.FloatSlider(value=temperature, min=T_RANGE[0], max=T_RANGE[1], step=0.5, description="T",
                           continuous_update=False)
    text, out = w.HTML(), w.Output()
    fig = Figure(figsize=(9, 3))

    @serialized
    def redraw(_=None) -> None:
        response = temperature_response(teacher_logits, student_logits, slider.value)
        text.value = response["readout"]
        draw_temperature(response, fig)
        show_figure(out, fig)

    slider.observe(redraw, names="value")
    redraw()
    return w.VBox([slider, text, out])
