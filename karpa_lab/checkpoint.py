"""Checkpoints that ``fit`` writes and resumes from: atomic, self-verifying, and explicit about mismatches.

A checkpoint file is ``torch.save({"format", "sha256", "payload"})``: the payload is the serialized state
(step, weights, optimizer, history, random-number generators, data position) and ``sha256`` its digest,
so a flipped byte anywhere in the weights is caught on loading instead of resuming silently with damaged
numbers. The file is written to a temporary name and renamed over the old one, so an interrupted write
never leaves half a checkpoint. Loading checks that the checkpoint belongs to this run: the model's class
and parameter names and shapes, the optimizer's class and parameter groups.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

CHECKPOINT_FORMAT = "karpa_lab.checkpoint/2"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, is damaged, or was written for another model or optimizer."""


# ------------------------------------------------------------------------------------ random state
def rng_snapshot() -> tuple[Any, Any, Any]:
    """The three generators' states as they are (cheap: no conversion), for :func:`rng_state` later."""
    return torch.get_rng_state(), np.random.get_state(), random.getstate()


def rng_state(snapshot: tuple[Any, Any, Any] | None = None) -> dict[str, Any]:
    """torch's, NumPy's and Python's generator states (now, or of a :func:`rng_snapshot`) as tensors
    and lists, which ``torch.load(weights_only=True)`` can read back."""
    torch_state, (kind, keys, pos, has_gauss, cached), (version, internal, gauss) = snapshot or rng_snapshot()
    return {
        "torch": torch_state,
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": [version, list(internal), gauss],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Put the three generators back where :func:`rng_state` found them."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


# ------------------------------------------------------------------------------------ identity
def class_name(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def optimizer_layout(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """What an optimizer state can only be loaded into: its class and the size of each parameter group."""
    return {"class": class_name(optimizer), "groups": [len(g["params"]) for g in optimizer.param_groups]}


# ------------------------------------------------------------------------------------ write / read
def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` with its SHA-256 digest, atomically: to a temporary file beside ``path``, then
    renamed over it. A crash or Ctrl-C during the write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save({"format": CHECKPOINT_FORMAT, "sha256": hashlib.sha256(payload).hexdigest(),
                        "payload": payload}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _read_verified(path: Path) -> dict[str, Any]:
    """The state inside a checkpoint file, after checking its format tag and its digest."""
    unreadable = (f"{path} cannot be read as a checkpoint ({{}}). It is probably truncated or corrupt (a copy "
                  "that did not finish?). Use an older checkpoint or start without resume_from; fit writes "
                  "checkpoints atomically, so its own files are never half-written.")
    try:
        outer = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(unreadable.format(f"{type(exc).__name__}: {str(exc)[:200]}")) from exc
    if not isinstance(outer, dict) or outer.get("format") != CHECKPOINT_FORMAT:
        found = outer.get("format") if isinstance(outer, dict) else None
        raise CheckpointError(f"{path} is a PyTorch file but not a karpa_lab checkpoint of this version (format "
                              f"{found!r}, expected {CHECKPOINT_FORMAT!r}); start without resume_from")
    payload = outer.get("payload")
    digest = hashlib.sha256(payload).hexdigest() if isinstance(payload, bytes) else None
    if digest != outer.get("sha256"):
        raise CheckpointError(
            f"{path} is damaged: its content's SHA-256 digest is {digest}, but fit recorded {outer.get('sha256')} "
            "when it wrote the file, so some bytes changed since (disk error, an incomplete copy, an edit). "
            "Use an older checkpoint or start without resume_from."
        )
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(unreadable.format(f"{type(exc).__name__}: {str(exc)[:200]}")) from exc


def load_checkpoint(path: str | Path, model: nn.Module | None = None) -> dict[str, Any]:
    """Read a checkpoint written by ``fit`` (verifying its digest) and, if ``model`` is given, load its
    weights into it.

    Raises :class:`CheckpointError` with what is wrong and what to do: a missing, truncated, damaged or
    foreign file, or weights for a different model (its class, or the missing, unexpected and
    mis-shaped parameters, are named).
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}; check the path (fit writes it where `checkpoint=` says)")
    state = _read_verified(path)
    if model is not None:
        if state.get("model_class") not in (None, class_name(model)):
            raise CheckpointError(f"{path} holds a {state['model_class']}, not a {class_name(model)}: build the "
                                  "model it was written for, or start a fresh run")
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


def load_optimizer(path: Path, optimizer: torch.optim.Optimizer, state: dict[str, Any] | None,
                   layout: dict[str, Any] | None) -> None:
    """Load an optimizer's saved state after checking it was saved from the same kind of optimizer."""
    if state is None:
        raise CheckpointError(f"{path} holds no optimizer state (it was written by a run with an update_fn?)")
    own = optimizer_layout(optimizer)
    if layout is not None and layout["class"] != own["class"]:
        raise CheckpointError(f"{path} was written with the optimizer {layout['class']}, this run uses "
                              f"{own['class']}: resume with the same optimizer, or keep only the weights with "
                              "load_checkpoint(path, model) and start a new run")
    if layout is not None and layout["groups"] != own["groups"]:
        raise CheckpointError(f"{path} has parameter groups of sizes {layout['groups']}, this run's optimizer has "
                              f"{own['groups']}: build the optimizer with the same groups, or start a new run")
    try:
        optimizer.load_state_dict(state)
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: the optimizer state does not fit this optimizer ({exc})") from exc
