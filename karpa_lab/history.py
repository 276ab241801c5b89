"""What a training run leaves behind: the :class:`History` of every step, which plots itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    """What happened during training, step by step.

    ``train_loss[i]``, ``lr[i]``, ``grad_norm[i]`` and ``time[i]`` (seconds since the start) belong to
    step ``steps[i]``; ``extra`` holds any other values a ``step_fn`` returns (a GAN's two losses).
    ``val`` is one dict per evaluation (``"loss"`` and each metric) made at ``val_steps``.
    """

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    time: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)
    val_steps: list[int] = field(default_factory=list)
    val: list[dict[str, float]] = field(default_factory=list)
    interrupted: bool = False

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def val_loss(self) -> list[float]:
        return [v["loss"] for v in self.val]

    def metric(self, name: str) -> list[float]:
        """One validation metric over the evaluations, e.g. ``history.metric("accuracy")``."""
        return [v[name] for v in self.val]

    @property
    def steps_per_sec(self) -> float:
        """Average training speed; the first step (warm-up, allocation) is left out."""
        if len(self.time) < 3:
            return float("nan")
        return (len(self.time) - 2) / max(self.time[-1] - self.time[0], 1e-9)

    def smoothed_loss(self, beta: float = 0.9) -> list[float]:
        """Exponential moving average of the training loss, bias-corrected as in Adam."""
        out, avg = [], 0.0
        for i, value in enumerate(self.train_loss):
            avg = beta * avg + (1 - beta) * value
            out.append(avg / (1 - beta ** (i + 1)))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> History:
        return cls(**state)

    def draw(self, fig, log: bool = False) -> None:
        """Draw loss / learning rate / gradient norm panels onto a matplotlib ``fig`` (cleared first)."""
        fig.clear()
        ax_loss, ax_lr, ax_gn = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2, 1, 1]})
        if self.train_loss:
            ax_loss.plot(self.steps, self.train_loss, color="C0", alpha=0.25, lw=0.8, label="train (per step)")
            ax_loss.plot(self.steps, self.smoothed_loss(), color="C0", lw=1.5, label="train (smoothed)")
        if self.val:
            ax_loss.plot(self.val_steps, self.val_loss, "o-", color="C1", ms=3, label="validation")
        ax_loss.set(xlabel="step", ylabel="loss", title="loss")
        if log:
            ax_loss.set_yscale("log")
        ax_loss.legend(fontsize=8)
        ax_lr.plot(self.steps, self.lr, color="C2")
        ax_lr.set(xlabel="step", title="learning rate")
        ax_gn.plot(self.steps, self.grad_norm, color="C3", lw=0.8)
        ax_gn.set(xlabel="step", title="gradient norm")
        fig.tight_layout()

    def plot(self, log: bool = False):
        """A figure of the training and validation loss (``log=True`` for a log scale), the learning rate
        and the gradient norm. Returns the matplotlib ``Figure``."""
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(11, 3.2))
        self.draw(fig, log=log)
        return fig
