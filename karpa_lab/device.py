"""Where the course runs: the device, its mixed-precision dtype, seeds, and the size knob.

Every lesson starts with

    device = get_device()        # CUDA > MPS > CPU, or what KARPA_DEVICE says
    seed_everything(0)           # same numbers on every CPU run
    steps = by_scale(small=600, full=20_000)   # KARPA_SCALE picks one

so that one notebook runs in about a minute on a laptop CPU and grows on a GPU.
"""

from __future__ import annotations

import os
import random
from typing import TypeVar

import numpy as np
import torch

SCALES = ("small", "full")
T = TypeVar("T")


class DeviceError(RuntimeError):
    """A device was asked for that this machine cannot give."""


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()


def get_device(name: str | None = None) -> torch.device:
    """Pick the device to train on: CUDA, then Apple MPS, then CPU.

    ``name`` (or the environment variable ``KARPA_DEVICE``) overrides the choice: ``"cpu"``,
    ``"cuda"``, ``"cuda:1"`` or ``"mps"``. Asking for a device this machine does not have is an
    error that says what it does have, rather than a crash deep inside the first ``.to(device)``.
    """
    wanted = name if name is not None else os.environ.get("KARPA_DEVICE", "").strip()
    if not wanted:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(wanted)
    except RuntimeError as exc:
        raise DeviceError(
            f"KARPA_DEVICE={wanted!r} is not a device name. Use 'cpu', 'cuda', 'cuda:N' or 'mps', "
            "or unset KARPA_DEVICE to let karpa_lab choose."
        ) from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"KARPA_DEVICE={wanted!r} asks for CUDA, but this PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}, built with CUDA: {torch.version.cuda}). "
                "Unset KARPA_DEVICE (or set it to 'cpu') to run on the CPU."
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"KARPA_DEVICE={wanted!r} asks for GPU {device.index}, but only "
                f"{torch.cuda.device_count()} GPU(s) are visible (cuda:0 .. cuda:{torch.cuda.device_count() - 1})."
            )
    elif device.type == "mps":
        if not _mps_available():
            raise DeviceError(
                f"KARPA_DEVICE={wanted!r} asks for Apple's MPS, which this machine does not offer "
                "(it needs an Apple-silicon Mac and a PyTorch built with MPS). Use 'cpu'."
            )
    elif device.type != "cpu":
        raise DeviceError(f"KARPA_DEVICE={wanted!r}: karpa_lab supports 'cpu', 'cuda[:N]' and 'mps'.")
    return device


def autocast_dtype(device: torch.device | str, cpu_bf16: bool = False) -> torch.dtype | None:
    """The mixed-precision dtype to train in on ``device``, or ``None`` for plain float32.

    - CUDA with bf16 support (Ampere and newer): ``torch.bfloat16`` (same exponent range as float32,
      so no loss scaling is needed).
    - Older CUDA GPUs and MPS: ``torch.float16``; ``fit`` pairs it with a ``GradScaler`` so that small
      gradients do not underflow to zero.
    - CPU: ``None`` (float32), unless ``cpu_bf16=True``: bf16 on a CPU saves memory but is rarely faster.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.bfloat16 if cpu_bf16 else None


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy and PyTorch (all devices) so that CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def scale() -> str:
    """The course-wide size knob, from ``KARPA_SCALE``: ``"small"`` (default, ~1 min on a CPU) or ``"full"``."""
    value = os.environ.get("KARPA_SCALE", "small").strip().lower() or "small"
    if value not in SCALES:
        raise ValueError(
            f"KARPA_SCALE={value!r} is not a scale. Use 'small' (the default: every lesson in about a "
            "minute on a laptop CPU) or 'full' (bigger models and longer runs, for a GPU)."
        )
    return value


def by_scale(small: T, full: T) -> T:
    """Return ``small`` or ``full`` according to :func:`scale`: ``steps = by_scale(600, 20_000)``."""
    return full if scale() == "full" else small


def describe(device: torch.device | None = None) -> str:
    """One line on the device in use: what it is and why it was chosen."""
    device = device or get_device()
    why = "set by KARPA_DEVICE" if os.environ.get("KARPA_DEVICE") else "picked automatically (CUDA > MPS > CPU)"
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        what = "Apple GPU (Metal Performance Shaders)"
    else:
        what = f"CPU, {torch.get_num_threads()} PyTorch threads"
    amp = autocast_dtype(device)
    return f"{device} ({what}), {why}; mixed precision: {amp if amp else 'off (float32)'}; scale: {scale()}"
