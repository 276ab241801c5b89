"""The one training loop of the course: ``fit``.

Every lesson trains through ``fit`` so that the loop is written once, tested once and measured once
(``benchmarks/fit_overhead.py``). One step is the textbook five lines (:meth:`_Run.plain_step`),

    loss = loss_fn(model(x), y)          # under autocast where the device supports it
    optimizer.zero_grad(); loss.backward()
    clip_grad_norm_(params, clip_grad)   # also measures the gradient norm
    optimizer.step()                     # with the learning rate from the schedule

and around it ``fit`` does what a careful engineer adds and a learner should not have to retype: the
device, mixed precision, a learning-rate schedule, evaluation, a progress bar and a live loss plot
(``karpa_lab.reporting``), self-verifying checkpoints with exact resume (``karpa_lab.checkpoint``), a
clear error when the loss becomes NaN (leaving the last good weights), a Ctrl-C that returns what was
trained so far, and several processes under ``torchrun`` (``karpa_lab.distributed``).

With ``update_fn`` the caller writes the step (a GAN's D and G updates, DARTS's alpha and weight
updates) and ``fit`` still gives every optimizer it steps the schedule, the clipping, the gradient norm
in the history and, under ``torchrun``, gradients averaged over the processes (:class:`_OptimizerSteps`).

Data is either a re-iterable of batches (a ``DataLoader``, cycled epoch after epoch) or a zero-argument
callable that returns a batch (``lambda: corpus.random_batch("train", 32, 64)``). A batch is ``(x, y)``
for the default ``loss_fn(model(x), y)``, or anything your ``step_fn(model, batch)`` understands.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab import distributed
from karpa_lab.checkpoint import (
    CheckpointError,
    class_name,
    load_checkpoint,
    load_optimizer,
    optimizer_layout,
    rng_snapshot,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from karpa_lab.device import autocast_dtype, get_device
from karpa_lab.history import History
from karpa_lab.reporting import Reporter

__all__ = ["CheckpointError", "History", "NonFiniteLossError", "accuracy", "default_loss", "evaluate", "fit",
           "grad_norms", "load_checkpoint", "save_checkpoint", "to_device", "warmup_cosine"]


class NonFiniteLossError(FloatingPointError):
    """The loss (or the gradient) became NaN or infinite. ``.history`` holds everything up to that step."""

    def __init__(self, message: str, history: History):
        super().__init__(message)
        self.history = history


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
        """Where the data stands: epoch, batches used in it, the RNG states its shuffle started from (and
        the state of a callable that has a ``state_dict``, such as one drawing from its own generator)."""
        own = self.data.state_dict() if self.from_callable and hasattr(self.data, "state_dict") else None
        return {"epoch": self.epoch, "index": self.index, "epoch_rng": self.epoch_rng, "callable": own}

    def restore(self, state: dict[str, Any]) -> None:
        """Replay the epoch's shuffle from its saved RNG states and skip the batches already used."""
        if self.from_callable:
            if state.get("callable") is not None and hasattr(self.data, "load_state_dict"):
                self.data.load_state_dict(state["callable"])
            return
        if state["epoch_rng"] is None:
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


# ------------------------------------------------------------------------------------- the step
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
            values, n = _run_step(model, batch, loss_fn, step_fn, metrics), _batch_size(batch, step_fn)
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


def _run_step(model, batch, loss_fn, step_fn, metrics) -> dict[str, torch.Tensor]:
    """Loss and metrics for one batch: ``step_fn(model, batch)`` or ``loss_fn(model(x), y)``."""
    if step_fn is not None:
        out = step_fn(model, batch)
        values = dict(out) if isinstance(out, dict) else {"loss": out}
        if "loss" not in values:
            raise ValueError(f"step_fn returned a dict without a 'loss' entry (keys: {sorted(values)})")
        return values
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
    return values


def _batch_size(batch: Any, step_fn) -> int:
    """How many examples a batch holds (the weight of its values in :func:`evaluate`'s average): the
    targets' first axis for an ``(x, y)`` batch, else the first axis of the batch (or of its first part)."""
    if step_fn is None and isinstance(batch, (list, tuple)) and len(batch) == 2:
        first = batch[1]
    else:
        first = batch[0] if isinstance(batch, (list, tuple)) else batch
    return first.shape[0] if isinstance(first, torch.Tensor) and first.dim() > 0 else 1


# ------------------------------------------------------------------------------------- interrupts
class _DeferSigint:
    """Hold a Ctrl-C until the current step ends, so the weights are never half-updated.

    A second Ctrl-C interrupts at once, as a user pressing it twice expects, except inside a
    :meth:`critical` section (an optimizer step, a checkpoint write), which always runs to its end.
    """

    def __init__(self):
        self.requested = False
        self.previous = None
        self.depth = 0

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested and self.depth == 0:
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def critical(self):
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        return False


# ------------------------------------------------------------------------------------- update_fn mode
class _OptimizerSteps:
    """While an ``update_fn`` runs, give each optimizer step of ``model``'s parameters what fit's own
    step has: the learning rate of the schedule, gradients averaged across ``torchrun`` processes,
    clipping to ``clip_grad`` (or only the norm measured), and no Ctrl-C half-way through the step.

    It works through PyTorch's global optimizer step hooks, active only inside :meth:`active`.
    Optimizers of other parameters are left alone.
    """

    def __init__(self, model: nn.Module, schedule, clip_grad: float | None, sigint: _DeferSigint):
        self.ids = {id(p) for p in model.parameters()}
        self.schedule, self.clip_grad, self.sigint = schedule, clip_grad, sigint
        self.averaging = distributed.world()[1] > 1
        self.step, self.stepped, self.norms, self.lr = 0, 0, [], float("nan")
        self._ours: dict[int, bool] = {}
        self._section = None

    def begin(self, step: int) -> None:
        self.step, self.stepped, self.norms, self.lr = step, 0, [], float("nan")

    def _before(self, optimizer, args, kwargs) -> None:
        if not self._ours.setdefault(id(optimizer), any(id(p) in self.ids for g in optimizer.param_groups
                                                          for p in g["params"])):
            return
        self._section = self.sigint.critical()
        self._section.__enter__()
        params = [p for g in optimizer.param_groups for p in g["params"]]
        if self.schedule is not None:
            _set_lr(optimizer, self.schedule(self.step))
        if self.stepped == 0:
            self.lr = optimizer.param_groups[0]["lr"]
        if self.averaging:
            distributed.average_gradients(params)
        if self.clip_grad is not None:
            self.norms.append(torch.nn.utils.clip_grad_norm_(params, self.clip_grad))
        else:
            self.norms.extend(grad_norms(params))

    def _after(self, optimizer, args, kwargs) -> None:
        if self._ours.get(id(optimizer)) and self._section is not None:
            self.stepped += 1
            self._section.__exit__(None, None, None)
            self._section = None

    @contextmanager
    def active(self):
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        handles = [register_optimizer_step_pre_hook(self._before), register_optimizer_step_post_hook(self._after)]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()


def _set_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"] * multiplier


# ------------------------------------------------------------------------------------- arguments
def _positive_int(name: str, value: Any, hint: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ValueError(f"{name} must be a positive whole number, got {value!r}: {hint}")


def _check_arguments(steps, epochs, step_fn, update_fn, optimizer, loss_fn, lr, clip_grad, schedule,
                     checkpoint, save_every, eval_every, eval_batches, sync_every, log_every) -> None:
    """Refuse, with the reason and the fix, every argument that would train silently wrong."""
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps= or epochs=")
    _positive_int("steps", steps, "the number of optimizer steps to take (e.g. steps=500)")
    _positive_int("epochs", epochs, "the number of passes over the data (e.g. epochs=3)")
    for name, value in (("save_every", save_every), ("eval_every", eval_every), ("eval_batches", eval_batches),
                        ("sync_every", sync_every), ("log_every", log_every)):
        _positive_int(name, value, "a count of steps or batches; leave it out for the default")
    if step_fn is not None and update_fn is not None:
        raise ValueError("give step_fn (fit does backward and the optimizer step) or update_fn (you do), not both")
    if update_fn is not None and (optimizer is not None or loss_fn is not None):
        raise ValueError("with an update_fn, your function computes its losses and steps its own optimizers: "
                         "leave out optimizer= and loss_fn= (fit still applies schedule= and clip_grad= to them)")
    if clip_grad is not None and not (isinstance(clip_grad, (int, float)) and math.isfinite(clip_grad)
                                      and clip_grad > 0):
        raise ValueError(f"clip_grad must be a positive gradient norm such as 1.0 (or None to only measure the "
                         f"norm), got {clip_grad!r}: 0 would stop training and a negative value reverses the "
                         "gradient, so the loss climbs")
    if update_fn is None and optimizer is None and not (isinstance(lr, (int, float)) and math.isfinite(lr)
                                                        and lr > 0):
        raise ValueError(f"lr must be a positive learning rate such as 1e-3, got {lr!r}")
    if schedule is not None and not callable(schedule):
        raise TypeError(f"schedule must be a function step -> multiplier (e.g. warmup_cosine(100, 1000)), "
                        f"got {type(schedule).__name__}")
    if save_every is not None and checkpoint is None:
        raise ValueError("save_every= needs checkpoint= (the file to write), e.g. checkpoint='runs/model.ckpt'")
    if update_fn is not None and checkpoint is not None and not hasattr(update_fn, "state_dict"):
        raise ValueError("checkpoint= with an update_fn saves the update_fn's optimizers through its "
                         "state_dict() and load_state_dict() (GANUpdate and DartsSearch have both): give your "
                         "update_fn these two methods, or train without checkpoint=")


def _total_steps(steps: int | None, epochs: int | None, data: Any) -> int:
    if epochs is None:
        return steps
    if not hasattr(data, "__len__"):
        raise ValueError("epochs= needs data with a length (a DataLoader); use steps= with a callable")
    if len(data) == 0:
        raise ValueError("data has no batches (its length is 0): the dataset is empty, or smaller than one batch "
                         "with drop_last=True. Check the dataset, or lower batch_size")
    return epochs * len(data)


def _autocast_for(device: torch.device, amp: bool | None, update_fn) -> torch.dtype | None:
    """The autocast dtype, or None. float16 needs a GradScaler on each loss before its backward, which
    fit cannot apply inside an update_fn: there the default trains in float32, and amp=True is refused."""
    dtype = autocast_dtype(device) if amp is not False else None
    if dtype == torch.float16 and update_fn is not None:
        if amp:
            raise ValueError(f"amp=True with an update_fn on {device}: float16 autocast needs a GradScaler on "
                             "each loss before its backward, and your update_fn calls backward itself. Use "
                             "amp=None (float32 here) or a device with bfloat16, or drop update_fn")
        return None
    return dtype


# ------------------------------------------------------------------------------------- one run
class _Run:
    """One call of ``fit``: what it trains, where it stands, the values waiting to be read from the device."""

    def __init__(self, model: nn.Module, optimizer, update_fn, device: torch.device, steps: int, *, loss_fn,
                 step_fn, metrics, schedule, clip_grad, amp, sync_every, checkpoint, reporter, sigint):
        self.model, self.optimizer, self.update_fn, self.device, self.steps = model, optimizer, update_fn, device, steps
        self.loss_fn, self.step_fn, self.metrics = loss_fn, step_fn, metrics
        self.schedule, self.clip_grad, self.checkpoint = schedule, clip_grad, checkpoint
        self.reporter, self.sigint = reporter, sigint
        self.amp_dtype = _autocast_for(device, amp, update_fn)
        self.scaler = torch.amp.GradScaler(device.type) if self.amp_dtype == torch.float16 else None
        self.sync_every = sync_every or (16 if device.type == "cuda" else 1)
        self.read_at_once = device.type != "cpu"
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer_steps = _OptimizerSteps(model, schedule, clip_grad, sigint) if update_fn else None
        self.history, self.start, self.completed = History(), 0, 0
        # (step, loss, per-parameter gradient norms, other values, learning rate, time), read at the next flush
        self.pending: list[tuple[int, torch.Tensor, list[torch.Tensor], dict, float, float]] = []
        self.last_good: tuple[int, float] | None = None
        self.keep_snapshots = self.sync_every > 1 or update_fn is not None
        self.snapshot, self.snapshot_step = None, 0
        if optimizer is not None:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])

    def autocast(self):
        # Entering a disabled torch.autocast still costs ~10 us a step, which shows on sub-millisecond steps.
        return torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None else nullcontext()

    # ------------------------------------------------------------------------- the two kinds of step
    def plain_step(self, net: nn.Module, batch: Any, step: int) -> None:
        """The textbook step; the update is applied only after the NaN check of :meth:`record`."""
        if self.schedule is not None:
            _set_lr(self.optimizer, self.schedule(step))
        with self.autocast():
            values = _run_step(net, batch, self.loss_fn, self.step_fn, self.metrics if self.step_fn else None)
        loss = values.pop("loss")
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.clip_grad is not None:
            norms = [torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad)]
        else:
            norms = grad_norms(self.params)
        self.sigint.depth += 1  # a critical section (as sigint.critical(), without a generator on every step)
        try:
            self.record(step, loss.detach(), norms, values, self.optimizer.param_groups[0]["lr"])
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
        finally:
            self.sigint.depth -= 1

    def update_step(self, batch: Any, step: int) -> None:
        """``update_fn(model, batch)`` steps its own optimizers (each through :class:`_OptimizerSteps`)."""
        self.optimizer_steps.begin(step)
        with self.autocast():
            out = self.update_fn(self.model, batch)
        if not isinstance(out, dict) or not out:
            raise TypeError("update_fn must return a dict of values such as {'loss': loss}, got "
                            f"{type(out).__name__}")
        values = {k: v.detach() if isinstance(v, torch.Tensor) else torch.tensor(float(v)) for k, v in out.items()}
        loss = values.pop("loss" if "loss" in values else next(iter(values)))
        if distributed.world()[1] > 1 and any(True for _ in self.model.buffers()):
            distributed.broadcast_state(self.model, buffers_only=True)  # BatchNorm statistics, as DDP does
        with self.sigint.critical():
            self.record(step, loss, self.optimizer_steps.norms, values, self.optimizer_steps.lr)

    # ------------------------------------------------------------------------- values and NaN
    def record(self, step: int, loss, norms, values, lr: float) -> None:
        values = {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in values.items()}
        self.pending.append((step, loss, norms, values, lr, time.perf_counter() - self.t0))
        if len(self.pending) >= self.sync_every or step + 1 == self.steps:
            self.flush(step)  # before the optimizer step: a NaN step is never applied

    def flush(self, weights_at: int) -> None:
        """Read pending values from the device; on a NaN, restore the last good weights and raise.
        ``weights_at``: the step whose start the model's weights are at now (kept as the last good copy)."""
        if not self.pending:
            return
        pending, self.pending = self.pending, []
        # One read of loss, norms, loss, norms, ...: on a GPU one wait for the device, not one each for losses and norms
        read = _to_floats([v for p in pending for v in (p[1], *p[2])], self.read_at_once)
        h, at = self.history, 0
        for step, _, norms, extra, lr, t in pending:
            loss, norm = read[at], math.hypot(*read[at + 1:at + 1 + len(norms)])
            at += 1 + len(norms)
            if not math.isfinite(loss) or (self.scaler is None and not math.isfinite(norm)):
                self._fail(step, loss, norm)
            h.steps.append(step)
            h.train_loss.append(loss)
            h.grad_norm.append(norm)
            h.lr.append(lr)
            h.time.append(t)
            for k, v in extra.items():
                h.extra.setdefault(k, []).append(float(v))
            self.last_good = (step, loss)
        if self.keep_snapshots:
            self.snapshot, self.snapshot_step = _copy_state(self.model), weights_at

    def _fail(self, step: int, loss: float, norm: float) -> None:
        if self.snapshot is not None:
            self.model.load_state_dict(self.snapshot)
            kept = (f"The model was restored to its weights at the start of step {self.snapshot_step}, the last "
                    f"check (sync_every={self.sync_every}); later updates were dropped.")
        else:
            kept = f"The model keeps its last good weights: the update of step {step} was not applied."
        what = f"loss became {loss}" if not math.isfinite(loss) else f"gradient norm became {norm}"
        before = (f"last finite loss {self.last_good[1]:.4g} at step {self.last_good[0]}" if self.last_good
                  else "at the very first step, so no loss was ever finite: check the input and the initial weights")
        raise NonFiniteLossError(
            f"{what} at step {step} ({before}). {kept} The history of {len(self.history)} finite steps is in this "
            "error's .history. Usual causes: a learning rate too high (try 3-10x lower), no gradient clipping "
            "(clip_grad=1.0), log(0) or division by zero in a hand-written loss, or NaN in the input "
            "(torch.isfinite(x).all()).",
            self.history,
        )

    # ------------------------------------------------------------------------- checkpoints
    def resume(self, path: str | Path, batches: _Batches) -> None:
        """Continue from a checkpoint: weights, optimizer(s), history, data position, random generators."""
        state = load_checkpoint(path, self.model)
        if self.optimizer is not None:
            load_optimizer(Path(path), self.optimizer, state.get("optimizer"), state.get("optimizer_layout"))
        if self.scaler is not None and state.get("scaler") is not None:
            self.scaler.load_state_dict(state["scaler"])
        if self.update_fn is not None and hasattr(self.update_fn, "load_state_dict"):
            if state.get("update_fn") is None:
                raise CheckpointError(f"{path} holds no update_fn state: it was written by a run without update_fn")
            try:
                self.update_fn.load_state_dict(state["update_fn"])
            except (KeyError, ValueError, TypeError) as exc:
                raise CheckpointError(f"{path}: the saved update_fn state does not fit this update_fn ({exc})") from exc
        self.history = History.from_state_dict(state["history"])
        self.history.interrupted = False
        self.start = self.completed = state["step"]
        batches.restore(state["data"])
        set_rng_state(state["rng"])
        if self.start >= self.steps:
            self.reporter.say(f"checkpoint {path} is already at step {self.start} >= steps={self.steps}: nothing to do")

    def write_checkpoint(self, step: int, data_state: dict, rng: tuple | None = None) -> None:
        if self.checkpoint is None or not distributed.is_main_process():
            return
        with self.sigint.critical():
            save_checkpoint(self.checkpoint, {
                "step": step, "model": self.model.state_dict(), "model_class": class_name(self.model),
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                "optimizer_layout": optimizer_layout(self.optimizer) if self.optimizer is not None else None,
                "update_fn": self.update_fn.state_dict() if hasattr(self.update_fn, "state_dict") else None,
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "history": self.history.state_dict(), "rng": rng_state(rng), "data": data_state,
            })

    # ------------------------------------------------------------------------- the loop
    def train(self, net: nn.Module, batches: _Batches, val_data, eval_every: int, eval_batches, save_every) -> None:
        """Steps ``start .. steps-1``; on Ctrl-C, a checkpoint at the last whole step, exact to resume from."""
        self.t0 = time.perf_counter() - (self.history.time[-1] if self.history.time else 0.0)
        if self.keep_snapshots:
            self.snapshot, self.snapshot_step = _copy_state(self.model), self.start
        exact = self.checkpoint is not None  # the state before each step is kept only when it can be saved
        boundary, step = None, self.start
        net.train()
        try:
            for step in range(self.start, self.steps):
                boundary = (batches.state(), rng_snapshot()) if exact else None
                batch = to_device(batches.next(), self.device)
                if self.update_fn is None:
                    self.plain_step(net, batch, step)
                else:
                    self.update_step(batch, step)
                self.completed = step + 1
                self.reporter.step(step, self.steps, self.history)
                if val_data is not None and (self.completed % eval_every == 0 or self.completed == self.steps):
                    self.flush(self.completed)
                    values = evaluate(net, val_data, self.loss_fn, self.step_fn, self.metrics, eval_batches,
                                      self.device)
                    self.history.val_steps.append(self.completed)
                    self.history.val.append(values)
                    self.reporter.evaluated(self.completed, values)
                if save_every and self.completed % save_every == 0 and self.completed < self.steps:
                    self.flush(self.completed)
                    self.write_checkpoint(self.completed, batches.state())
                if self.sigint.requested:
                    raise KeyboardInterrupt
            self.flush(self.steps)
            self.write_checkpoint(self.steps, batches.state())
        except KeyboardInterrupt:
            self.interrupted(step, batches, boundary)

    def interrupted(self, step: int, batches: _Batches, boundary: tuple | None) -> None:
        """Keep every whole step; a step cut short is undone (its batch and random draws are given back)."""
        self.pending = [p for p in self.pending if p[0] < self.completed]  # a step cut short left no record
        self.flush(self.completed)
        self.history.interrupted = True
        half_applied = self.optimizer_steps is not None and self.completed == step and self.optimizer_steps.stepped
        where = ""
        if self.checkpoint is not None and half_applied:
            where = (f"; no checkpoint for it: step {step} was cut inside update_fn after an optimizer had "
                     "stepped, so the weights are half-updated (the checkpoint on disk is the last whole one)")
        elif self.checkpoint is not None:
            data_state, rng = (batches.state(), None) if self.completed > step else boundary
            self.write_checkpoint(self.completed, data_state, rng)
            where = f" and to {self.checkpoint} (resume with resume_from=)"
        self.reporter.say(f"\nInterrupted after {len(self.history)} steps: the model keeps what it learned{where}; "
                          "the History so far is returned.")


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------- fit
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
    amp: bool | None = None,
    sync_every: int | None = None,
    verbose: bool = True,
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
        data: a re-iterable of batches (DataLoader; cycled) or a zero-argument callable returning one
            (one with ``state_dict``/``load_state_dict`` has its own random state checkpointed too).
        steps / epochs: how long; give one (epochs need a data source with a length).
        optimizer: default ``AdamW(model.parameters(), lr=lr)``.
        loss_fn: ``loss_fn(model(x), y)``; default cross-entropy for integer targets, else MSE.
        step_fn: ``step_fn(model, batch)`` returning the loss, or a dict with ``"loss"`` and other
            values to record (for batches that are not ``(x, y)``, or models with state between steps).
        update_fn: ``update_fn(model, batch)`` that does its own backward passes and optimizer steps
            (a GAN's alternating D and G updates) and returns a dict of values; its ``"loss"`` entry, or
            its first entry, is the one logged as the training loss. Every optimizer it steps on the
            model's parameters gets ``schedule``, ``clip_grad`` and, under ``torchrun``, averaged gradients.
        val_data, eval_every, eval_batches, metrics: validation every ``eval_every`` steps (default ten
            times a run) with ``metrics`` such as ``{"accuracy": karpa_lab.accuracy}``.
        schedule: learning-rate multiplier ``step -> float``, e.g. :func:`warmup_cosine`.
        clip_grad: clip the global gradient norm to this positive value (``None``: measure only).
        amp: autocast to bf16/fp16 where the device supports it (never on a CPU); fp16 gets a GradScaler.
            ``None`` (default) does so where it is safe (not fp16 with an ``update_fn``); ``False`` never.
        sync_every: read the loss from the device every N steps (1 on CPU; 16 on CUDA, where a read
            stalls the GPU pipeline). NaNs are detected at these reads.
        verbose: ``False`` prints and draws nothing at all.
        progress, live_plot, log_every: a progress bar and an in-place loss plot in a notebook; plain
            text lines every ``log_every`` steps in a terminal or under nbval (``KARPA_HEADLESS=1``).
        checkpoint, save_every, resume_from: write a verified checkpoint to ``checkpoint`` every
            ``save_every`` steps, at the end and on Ctrl-C; ``resume_from`` continues a run exactly.

    Ctrl-C stops after the current step and returns the History so far (``history.interrupted`` is
    True; the model keeps its weights). A NaN or infinite loss raises :class:`NonFiniteLossError`
    naming the step and the last finite loss, with the model left at its last good weights.
    """
    _check_arguments(steps, epochs, step_fn, update_fn, optimizer, loss_fn, lr, clip_grad, schedule,
                     checkpoint, save_every, eval_every, eval_batches, sync_every, log_every)
    device = torch.device(device) if device is not None else get_device()
    rank, world_size = distributed.world()
    if world_size > 1:
        device = distributed.init(device)
        data = distributed.shard(data, rank, world_size)
    model.to(device)
    steps = _total_steps(steps, epochs, data)
    if update_fn is None and optimizer is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    batches = _Batches(data)
    with _DeferSigint() as sigint:
        reporter = Reporter(steps, progress, live_plot, log_every, verbose)
        run = _Run(model, optimizer, update_fn, device, steps, loss_fn=loss_fn, step_fn=step_fn, metrics=metrics,
                   schedule=schedule, clip_grad=clip_grad, amp=amp, sync_every=sync_every, checkpoint=checkpoint,
                   reporter=reporter, sigint=sigint)
        if resume_from is not None:
            run.resume(resume_from, batches)
        reporter.begin(run.start)
        net = distributed.replicate(model, device, wrap=update_fn is None) if world_size > 1 else model
        try:
            with run.optimizer_steps.active() if update_fn is not None else nullcontext():
                run.train(net, batches, val_data, eval_every or max(1, steps // 10), eval_batches, save_every)
        finally:
            reporter.close(run.history)
            if net is not model:
                distributed.release(net)
    return run.history
