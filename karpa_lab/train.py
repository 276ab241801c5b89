"""The one training loop of the course: ``fit``.

Every lesson trains through ``fit`` so that the loop is written once, tested once and measured once
(``benchmarks/fit_overhead.py``). One step is the textbook five lines,

    loss = loss_fn(model(x), y)          # under autocast where the device supports it
    optimizer.zero_grad(); loss.backward()
    clip_grad_norm_(params, clip_grad)   # also measures the gradient norm
    optimizer.step()                     # with the learning rate from the schedule

and around it ``fit`` does what a careful engineer adds and a learner should not have to retype: the
device, mixed precision, a learning-rate schedule, evaluation, a progress bar and a live loss plot,
atomic checkpoints with exact resume, a clear error when the loss becomes NaN (leaving the last good
weights), a Ctrl-C that returns what was trained so far, and DDP when launched with ``torchrun``.

Data is either a re-iterable of batches (a ``DataLoader``, cycled epoch after epoch) or a zero-argument
callable that returns a batch (``lambda: corpus.random_batch("train", 32, 64)``). A batch is ``(x, y)``
for the default ``loss_fn(model(x), y)``, or anything your ``step_fn(model, batch)`` understands.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab.device import autocast_dtype, get_device

CHECKPOINT_FORMAT = "karpa_lab.checkpoint/1"


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient) became NaN or infinite. ``.history`` holds everything up to that step."""

    def __init__(self, message: str, history: History):
        super().__init__(message)
        self.history = history


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or was written for another model."""


# --------------------------------------------------------------------------------------------- history
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


# ------------------------------------------------------------------------------------- helpers
def warmup_cosine(warmup: int, total: int, min_ratio: float = 0.1) -> Callable[[int], float]:
    """A learning-rate multiplier: linear warm-up over ``warmup`` steps, then a cosine decay to
    ``min_ratio`` of the peak at step ``total``. Pass it to ``fit(schedule=...)``.

    m(s) = (s + 1) / warmup                                  for s < warmup
    m(s) = min_ratio + (1 - min_ratio) * (1 + cos(pi * p)) / 2,  p = (s - warmup) / (total - warmup)
    """
    if warmup < 0 or total <= 0 or not 0 <= min_ratio <= 1:
        raise ValueError(f"need warmup >= 0, total > 0, 0 <= min_ratio <= 1; got {warmup}, {total}, {min_ratio}")

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return multiplier


def accuracy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Share of rows whose arg-max class equals the integer target (a metric for ``fit(metrics=...)``)."""
    return (output.argmax(dim=-1) == target).float().mean()


def default_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for integer targets (classes on the last axis of ``output``), else mean squared error.

    Shapes are checked, since a silent broadcast ((B, 1) against (B,)) is the classic regression bug.
    """
    if not target.is_floating_point():
        if output.shape[:-1] != target.shape:
            raise ValueError(
                f"cross-entropy needs output (..., classes) to match target (...): got output "
                f"{tuple(output.shape)} and target {tuple(target.shape)}"
            )
        if output.dim() != 2:  # (B, T, classes) -> (B*T, classes); a 2-D output needs no view node
            output, target = output.reshape(-1, output.shape[-1]), target.reshape(-1)
        return F.cross_entropy(_fp32(output), target)
    if output.shape != target.shape:
        raise ValueError(
            f"mean squared error needs output and target of the same shape, got {tuple(output.shape)} "
            f"and {tuple(target.shape)} (broadcasting them would compute the wrong loss)"
        )
    return F.mse_loss(_fp32(output), _fp32(target))


def _fp32(t: torch.Tensor) -> torch.Tensor:
    """``t.float()`` without a dispatch when it already is (a few microseconds a call on a CPU step)."""
    return t if t.dtype == torch.float32 else t.float()


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside a batch (tensors, tuples, lists, dicts) to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch if batch.device == device else batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)([to_device(b, device) for b in batch])
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


def is_distributed() -> bool:
    """True when started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that logs, plots and writes checkpoints."""
    return int(os.environ.get("RANK", "0")) == 0


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def is_interactive() -> bool:
    """A notebook with a person in front of it (not nbval, not ``KARPA_HEADLESS=1``)."""
    return _in_notebook() and os.environ.get("KARPA_HEADLESS", "0") != "1"


# --------------------------------------------------------------------------------------------- data
class _Batches:
    """Endless batches from a callable or from a re-iterable cycled by epochs, with resumable position."""

    def __init__(self, data: Any):
        self.data = data
        self.from_callable = callable(data) and not isinstance(data, Iterable)
        if not self.from_callable and not isinstance(data, Iterable):
            raise TypeError(
                f"data must be a DataLoader (or any re-iterable of batches) or a zero-argument callable "
                f"returning a batch; got {type(data).__name__}"
            )
        self.epoch, self.index, self.epoch_rng = 0, 0, None
        self._it = None

    def _start_epoch(self) -> None:
        sampler = getattr(self.data, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.epoch)
        gen = getattr(self.data, "generator", None)
        self.epoch_rng = (torch.get_rng_state(), gen.get_state() if gen is not None else None)
        self._it = iter(self.data)
        self.index = 0

    def next(self) -> Any:
        if self.from_callable:
            return self.data()
        if self._it is None:
            self._start_epoch()
        try:
            batch = next(self._it)
        except StopIteration:
            if self.index == 0:
                raise ValueError("data yielded no batches: it is empty or a one-shot iterator already used") from None
            self.epoch += 1
            self._start_epoch()
            batch = next(self._it)
        self.index += 1
        return batch

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "index": self.index, "epoch_rng": self.epoch_rng}

    def restore(self, state: dict[str, Any]) -> None:
        """Replay the epoch's shuffle from its saved RNG states and skip the batches already used."""
        if self.from_callable or state["epoch_rng"] is None:
            return
        self.epoch = state["epoch"]
        global_rng, gen_rng = state["epoch_rng"]
        now = torch.get_rng_state()
        torch.set_rng_state(global_rng)
        gen = getattr(self.data, "generator", None)
        if gen is not None and gen_rng is not None:
            gen.set_state(gen_rng)
        self._start_epoch()
        for _ in range(state["index"]):
            next(self._it)
        self.index = state["index"]
        torch.set_rng_state(now)


def _distributed_loader(loader: Any, rank: int, world: int) -> Any:
    """The same DataLoader, but each rank reads its own shard through a ``DistributedSampler``."""
    from torch.utils.data import DataLoader, RandomSampler
    from torch.utils.data.distributed import DistributedSampler

    if not isinstance(loader, DataLoader):
        return loader
    sampler = DistributedSampler(
        loader.dataset, num_replicas=world, rank=rank, shuffle=isinstance(loader.sampler, RandomSampler)
    )
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, drop_last=loader.drop_last, pin_memory=loader.pin_memory,
    )


# ----------------------------------------------------------------------------------- checkpoints
def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` atomically: to a temporary file beside ``path``, then rename over it.

    A crash or Ctrl-C during the write leaves the previous checkpoint intact, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | Path, model: nn.Module | None = None) -> dict[str, Any]:
    """Read a checkpoint written by ``fit`` and, if ``model`` is given, load its weights into it.

    Raises :class:`CheckpointError` with what is wrong and what to do: a missing, truncated or corrupt
    file, a file that is not a karpa_lab checkpoint, or weights for a different model (the missing,
    unexpected and mis-shaped parameters are named).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; check the path (fit writes it where `checkpoint=` says)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path} cannot be read as a checkpoint ({type(exc).__name__}: {str(exc)[:200]}). It is probably "
            "truncated or corrupt (a copy that did not finish?). Use an older checkpoint or start without "
            "resume_from; fit writes checkpoints atomically, so its own files are never half-written."
        ) from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a karpa_lab checkpoint (no '{CHECKPOINT_FORMAT}' tag)")
    if model is not None:
        _load_weights(model, state["model"], path)
    return state


def _load_weights(model: nn.Module, weights: dict[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in weights and weights[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if shapes:
            parts.append("different shapes: " + "; ".join(shapes[:5]))
        raise CheckpointError(
            f"{path} was written for a different model ({', '.join(parts)}). Build the model with the same "
            "configuration as when the checkpoint was saved, or start a fresh run."
        )
    model.load_state_dict(weights)


# ------------------------------------------------------------------------------------- reporting
class _Reporter:
    """Progress bar, live plot (notebook) or text lines (terminal, nbval), on the main process only."""

    def __init__(self, total: int, start: int, progress: bool, live_plot: bool | None, log_every: int | None):
        self.enabled = is_main_process()
        interactive = is_interactive()
        self.live = self.enabled and (interactive if live_plot is None else live_plot)
        self.text = self.enabled and not interactive
        self.log_every = log_every or max(1, total // 10)
        self.bar = None
        if self.enabled and progress:
            if interactive:
                from tqdm.auto import tqdm
                self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
            elif not _in_notebook() and os.isatty(2):
                from tqdm import tqdm
                self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)
        self.fig = self.handle = None
        self.last_draw, self.last_logged = 0.0, -1

    def step(self, step: int, total: int, history: History) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(1)
            if step % 25 == 0 and history.train_loss:
                self.bar.set_postfix(loss=f"{history.train_loss[-1]:.4g}", refresh=False)
        due = (step + 1) % self.log_every == 0 or step + 1 == total
        fresh = history.steps and history.steps[-1] != self.last_logged  # values arrive at each sync
        if self.text and self.bar is None and due and fresh:
            self.last_logged = history.steps[-1]
            lr = history.lr[-1]  # nan with an update_fn: its optimizers are its own, fit does not know the rate
            lr_part = f"lr {lr:.2e} | " if math.isfinite(lr) else ""
            print(f"step {history.steps[-1] + 1:>6}/{total} | loss {history.train_loss[-1]:.4f} | "
                  f"{lr_part}{history.steps_per_sec:7.1f} steps/s", flush=True)
        if self.live and time.perf_counter() - self.last_draw > 1.0:
            self.draw(history)

    def evaluated(self, step: int, values: dict[str, float]) -> None:
        if self.enabled and (self.text or self.bar is None):
            print(f"  eval at step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)

    def draw(self, history: History) -> None:
        """Render the figure to PNG and show it in one display slot, replaced at every update.

        A PNG (not the Figure object) so that it shows in any front end, whether or not pyplot's inline
        backend was loaded; not a pyplot figure, so the notebook does not also show it a second time.
        """
        from IPython.display import Image, display
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        from karpa_lab.widgets import figure_png

        if self.fig is None:
            self.fig = Figure(figsize=(11, 3.2))
            FigureCanvasAgg(self.fig)
        history.draw(self.fig)
        image = Image(data=figure_png(self.fig), format="png")
        if self.handle is None:
            self.handle = display(image, display_id=True)
        else:
            self.handle.update(image)
        self.last_draw = time.perf_counter()

    def close(self, history: History) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.live and history.train_loss:
            self.draw(history)


class _DeferSigint:
    """Hold a Ctrl-C until the current step ends, so the weights are never half-updated.

    A second Ctrl-C interrupts at once, as a user pressing it twice expects.
    """

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGINT)

            def handler(signum, frame):
                if self.requested:
                    raise KeyboardInterrupt
                self.requested = True

            signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


# --------------------------------------------------------------------------------------------- fit
def evaluate(
    model: nn.Module,
    data: Any,
    loss_fn: Callable | None = None,
    step_fn: Callable | None = None,
    metrics: dict[str, Callable] | None = None,
    max_batches: int | None = None,
    device: torch.device | None = None,
) -> dict[str, float]:
    """Average loss (and metrics) over ``data`` with gradients off and the model in eval mode.

    A DataLoader is read whole unless ``max_batches`` says otherwise; a callable gives ``max_batches``
    (default 20) fresh batches. The average is weighted by batch size.
    """
    device = device or next(model.parameters()).device
    batches = _Batches(data)
    if batches.from_callable and max_batches is None:
        max_batches = 20
    sums: dict[str, float] = {}
    count = 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        source = (batches.next() for _ in range(max_batches)) if batches.from_callable else iter(data)
        for i, batch in enumerate(source):
            if max_batches is not None and i >= max_batches:
                break
            batch = to_device(batch, device)
            values, n = _run_step(model, batch, loss_fn, step_fn, metrics)
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
            count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("validation data yielded no batches")
    return {k: v / count for k, v in sums.items()}


def _to_floats(values: list[torch.Tensor], at_once: bool) -> list[float]:
    """Python floats of 0-dim tensors. ``at_once`` (on a GPU): one read of them stacked, since every read
    waits for the GPU to finish its queue; else (on a CPU) a cheap read each, and no stacking op."""
    if at_once and len(values) > 1:
        return torch.stack(values).float().tolist()  # stack promotes mixed dtypes (bf16 loss, fp32 norms)
    return [float(v) for v in values]


def grad_norms(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    """The norm ||grad_p||_2 of each parameter's gradient (parameters without one are left out), from one
    fused ``_foreach_norm`` call and without a device sync.

    The global gradient norm, the one ``clip_grad_norm_`` clips, is sqrt(sum_p ||grad_p||^2):
    ``math.hypot(*map(float, grad_norms(params)))``. ``fit`` keeps the per-parameter norms until it reads
    the loss, and sums them in Python then. Summing them as tensors (``stack``, ``vector_norm``) costs two
    more tensor operations a step: about 60 us of a 1.4 ms step of the tiny MLP in
    ``benchmarks/fit_overhead.py`` on a 2-core CPU.
    """
    grads = [p.grad for p in params if p.grad is not None]
    return list(torch._foreach_norm(grads)) if grads else []


def _run_step(model, batch, loss_fn, step_fn, metrics) -> tuple[dict[str, torch.Tensor], int]:
    """Loss and metrics for one batch: ``step_fn(model, batch)`` or ``loss_fn(model(x), y)``."""
    if step_fn is not None:
        out = step_fn(model, batch)
        values = dict(out) if isinstance(out, dict) else {"loss": out}
        if "loss" not in values:
            raise ValueError(f"step_fn returned a dict without a 'loss' entry (keys: {sorted(values)})")
        first = batch[0] if isinstance(batch, (list, tuple)) else batch
        n = first.shape[0] if isinstance(first, torch.Tensor) and first.dim() > 0 else 1
        return values, n
    if not (isinstance(batch, (list, tuple)) and len(batch) == 2):
        raise ValueError(
            "without a step_fn a batch must be (inputs, targets); this one is "
            f"{type(batch).__name__}{'' if not isinstance(batch, (list, tuple)) else f' of length {len(batch)}'}. "
            "Pass step_fn=lambda model, batch: loss for other batch layouts."
        )
    x, y = batch
    output = model(x)
    values = {"loss": (loss_fn or default_loss)(output, y)}
    for name, fn in (metrics or {}).items():
        values[name] = fn(output, y)
    return values, y.shape[0] if y.dim() > 0 else 1


def fit(
    model: nn.Module,
    data: Any,
    *,
    steps: int | None = None,
    epochs: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    step_fn: Callable[[nn.Module, Any], Any] | None = None,
    update_fn: Callable[[nn.Module, Any], dict[str, Any]] | None = None,
    val_data: Any = None,
    eval_every: int | None = None,
    eval_batches: int | None = None,
    metrics: dict[str, Callable] | None = None,
    schedule: Callable[[int], float] | None = None,
    clip_grad: float | None = None,
    device: torch.device | str | None = None,
    amp: bool = True,
    sync_every: int | None = None,
    progress: bool = True,
    live_plot: bool | None = None,
    log_every: int | None = None,
    checkpoint: str | Path | None = None,
    save_every: int | None = None,
    resume_from: str | Path | None = None,
) -> History:
    """Train ``model`` in place on ``data`` and return its :class:`History`.

    Args:
        model: any ``nn.Module``; moved to ``device`` (default :func:`karpa_lab.get_device`).
        data: a re-iterable of batches (DataLoader; cycled) or a zero-argument callable returning one.
        steps / epochs: how long; give one (epochs need a data source with a length).
        optimizer: default ``AdamW(model.parameters(), lr=lr)``.
        loss_fn: ``loss_fn(model(x), y)``; default cross-entropy for integer targets, else MSE.
        step_fn: ``step_fn(model, batch)`` returning the loss, or a dict with ``"loss"`` and other
            values to record (for batches that are not ``(x, y)``, or models with state between steps).
        update_fn: ``update_fn(model, batch)`` that does its own backward passes and optimizer steps
            (a GAN's alternating D and G updates) and returns a dict of values; its ``"loss"`` entry, or
            its first entry, is the one logged as the training loss.
        val_data, eval_every, eval_batches, metrics: validation every ``eval_every`` steps (default ten
            times a run) with ``metrics`` such as ``{"accuracy": karpa_lab.accuracy}``.
        schedule: learning-rate multiplier ``step -> float``, e.g. :func:`warmup_cosine`.
        clip_grad: clip the global gradient norm to this value (``None``: measure only).
        amp: autocast to bf16/fp16 where the device supports it (never on a CPU); fp16 gets a GradScaler.
        sync_every: read the loss from the device every N steps (1 on CPU; 16 on CUDA, where a read
            stalls the GPU pipeline). NaNs are detected at these reads.
        progress, live_plot, log_every: a progress bar and an in-place loss plot in a notebook; plain
            text lines every ``log_every`` steps in a terminal or under nbval (``KARPA_HEADLESS=1``).
        checkpoint, save_every, resume_from: write an atomic checkpoint to ``checkpoint`` every
            ``save_every`` steps, at the end and on Ctrl-C; ``resume_from`` continues a run exactly.

    Ctrl-C stops after the current step and returns the History so far (``history.interrupted`` is
    True; the model keeps its weights). A NaN or infinite loss raises :class:`NonFiniteLossError`
    naming the step and the last finite loss, with the model left at its last good weights.
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps= or epochs=")
    if step_fn is not None and update_fn is not None:
        raise ValueError("give step_fn (fit does backward and the optimizer step) or update_fn (you do), not both")
    device = torch.device(device) if device is not None else get_device()

    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    net = model.to(device)
    if world > 1:
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
            model.to(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        data = _distributed_loader(data, rank, world)
        if update_fn is None:
            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        torch.manual_seed(torch.initial_seed() + rank)  # different random batches on each rank

    if epochs is not None:
        if not hasattr(data, "__len__"):
            raise ValueError("epochs= needs data with a length (a DataLoader); use steps= with a callable")
        steps = epochs * len(data)
    assert steps is not None
    if steps <= 0:
        raise ValueError(f"steps must be positive, got {steps}")

    if update_fn is None and optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    if optimizer is not None:
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
    amp_dtype = autocast_dtype(device) if amp else None
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 and update_fn is None else None
    sync_every = sync_every or (16 if device.type == "cuda" else 1)
    eval_every = eval_every or max(1, steps // 10)

    history, start = History(), 0
    batches = _Batches(data)
    if resume_from is not None:
        state = load_checkpoint(resume_from, model)
        if optimizer is not None and state.get("optimizer") is not None:
            optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        history = History.from_state_dict(state["history"])
        history.interrupted = False
        start = state["step"]
        batches.restore(state["data"])
        _set_rng_state(state["rng"])
        if start >= steps and is_main_process():
            print(f"checkpoint {resume_from} is already at step {start} >= steps={steps}: nothing to do")

    def write_checkpoint(step: int) -> None:
        if checkpoint is None or not is_main_process():
            return
        save_checkpoint(checkpoint, {
            "step": step, "model": model.state_dict(),
            "optimizer": optimizer.state_dict() if optimizer is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "history": history.state_dict(), "rng": _rng_state(), "data": batches.state(),
        })

    params = [p for p in model.parameters() if p.requires_grad]
    reporter = _Reporter(steps, start, progress, live_plot, log_every)
    # (step, loss, per-parameter gradient norms, other values, learning rate, time), read at the next flush
    pending: list[tuple[int, torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor], float, float]] = []
    last_good = {"step": start - 1, "loss": history.train_loss[-1] if history.train_loss else float("nan")}
    snapshot, snapshot_step = None, start
    t0 = time.perf_counter() - (history.time[-1] if history.time else 0.0)
    read_at_once = device.type != "cpu"

    def good_copy() -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    def flush(step_now: int) -> None:
        """Read pending values from the device; on a NaN, restore the last good weights and raise."""
        nonlocal snapshot, snapshot_step
        if not pending:
            return
        losses = _to_floats([p[1] for p in pending], read_at_once)
        all_norms = iter(_to_floats([n for p in pending for n in p[2]], read_at_once))
        for (step, _, norms, extra, lr_now, t), loss in zip(pending, losses):
            norm = math.hypot(*itertools.islice(all_norms, len(norms)))
            bad_norm = scaler is None and not math.isfinite(norm)
            if not math.isfinite(loss) or bad_norm:
                pending.clear()
                if snapshot is not None:
                    model.load_state_dict(snapshot)
                    kept = (f"The model was restored to its weights at the start of step {snapshot_step}, the "
                            f"last check (sync_every={sync_every}); later updates were dropped.")
                else:
                    kept = f"The model keeps its last good weights: the update of step {step} was not applied."
                what = f"loss became {loss}" if not math.isfinite(loss) else f"gradient norm became {norm}"
                raise NonFiniteLossError(
                    f"{what} at step {step} (last finite loss {last_good['loss']:.4g} at step {last_good['step']}). "
                    f"{kept} The history of {len(history)} finite steps is in this error's .history. Usual causes: a "
                    "learning rate too high (try 3-10x lower), no gradient clipping (clip_grad=1.0), log(0) "
                    "or division by zero in a hand-written loss, or NaN in the input (torch.isfinite(x).all()).",
                    history,
                )
            history.steps.append(step)
            history.train_loss.append(loss)
            history.grad_norm.append(norm)
            history.lr.append(lr_now)
            history.time.append(t)
            for k, v in extra.items():
                history.extra.setdefault(k, []).append(float(v))
            last_good.update(step=step, loss=loss)
        pending.clear()
        if sync_every > 1 or update_fn is not None:
            snapshot, snapshot_step = good_copy(), step_now

    if sync_every > 1 or update_fn is not None:
        snapshot = good_copy()
    net.train()
    step = start
    # Entering a disabled torch.autocast still costs ~10 us a step, which shows on sub-millisecond steps.
    autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype is not None else nullcontext
    with _DeferSigint() as sigint:
        try:
            for step in range(start, steps):
                batch = to_device(batches.next(), device)
                lr_now = float("nan")
                if update_fn is not None:
                    out = update_fn(model, batch)
                    values = {k: (v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v)))
                              for k, v in out.items()}
                    key = "loss" if "loss" in values else next(iter(values))
                    loss, norms = values.pop(key), []
                else:
                    if schedule is not None:
                        mult = schedule(step)
                        for group in optimizer.param_groups:
                            group["lr"] = group["initial_lr"] * mult
                    lr_now = optimizer.param_groups[0]["lr"]
                    with autocast():
                        values, _ = _run_step(net, batch, loss_fn, step_fn, metrics if step_fn else None)
                    loss = values.pop("loss")
                    optimizer.zero_grad(set_to_none=True)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                        scaler.unscale_(optimizer)
                    else:
                        loss.backward()
                    if clip_grad is not None:
                        norms = [torch.nn.utils.clip_grad_norm_(params, clip_grad)]
                    else:
                        norms = grad_norms(params)
                    loss = loss.detach()
                    values = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in values.items()}
                pending.append((step, loss, norms, values, lr_now, time.perf_counter() - t0))
                if len(pending) >= sync_every or step + 1 == steps:
                    flush(step)  # before the optimizer step: a NaN step is never applied
                if update_fn is None:
                    if scaler is not None:
                        scaler.step(optimizer)
                        scaler.update()
                    else:
                        optimizer.step()
                reporter.step(step, steps, history)
                if val_data is not None and ((step + 1) % eval_every == 0 or step + 1 == steps):
                    flush(step)
                    values = evaluate(net, val_data, loss_fn, step_fn, metrics, eval_batches, device)
                    history.val_steps.append(step + 1)
                    history.val.append(values)
                    reporter.evaluated(step + 1, values)
                if save_every and (step + 1) % save_every == 0 and step + 1 < steps:
                    flush(step)
                    write_checkpoint(step + 1)
                if sigint.requested:
                    raise KeyboardInterrupt
            else:
                step = steps
            flush(step)
            write_checkpoint(steps)
        except KeyboardInterrupt:
            flush(step)
            done = len(history)
            history.interrupted = True
            write_checkpoint(history.steps[-1] + 1 if history.steps else start)
            if is_main_process():
                where = f" and to {checkpoint} (resume with resume_from=)" if checkpoint else ""
                print(f"\nInterrupted after {done} steps: the model keeps what it learned{where}; "
                      "the History so far is returned.", flush=True)
        finally:
            reporter.close(history)
    return history
