"""karpa-lab: the helper package of the course.

One small API that every lesson uses (in the spirit of d2l's): pick a device, train with ``fit``, read
offline data, reuse the reference models the lessons build. Every module is short and meant to be read.

    from karpa_lab import get_device, seed_everything, by_scale, fit, accuracy
"""

from karpa_lab.device import autocast_dtype, by_scale, describe, get_device, scale, seed_everything
from karpa_lab.train import (
    CheckpointError,
    History,
    NonFiniteLossError,
    accuracy,
    evaluate,
    fit,
    load_checkpoint,
    warmup_cosine,
)

__all__ = [
    "CheckpointError",
    "History",
    "NonFiniteLossError",
    "accuracy",
    "autocast_dtype",
    "by_scale",
    "describe",
    "evaluate",
    "fit",
    "get_device",
    "load_checkpoint",
    "scale",
    "seed_everything",
    "warmup_cosine",
]
