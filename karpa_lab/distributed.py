"""Several processes, one model: what ``fit`` does when ``torchrun`` starts it (``WORLD_SIZE`` > 1).

Plain mode wraps the model in ``DistributedDataParallel``, which averages the gradients across the
processes during ``backward``. An ``update_fn`` (a GAN's two optimizers, DARTS's bilevel steps) calls its
sub-networks and optimizers itself, so there is no one forward pass for DDP to wrap; there
:class:`OptimizerSteps` averages each optimizer's gradients across the processes just before it steps,
which is the same arithmetic. Each process reads its own shard of a ``DataLoader``
(``DistributedSampler``); rank 0 logs and writes checkpoints.

Teardown matters: DDP's reducer holds the process group and sits in a reference cycle, so without
help it lives until the interpreter shuts down, and the process group's worker threads are then joined
while Python is half gone (a crash, ``terminate called without an active exception``). ``fit`` drops
its DDP wrapper and collects it before returning, and destroys at exit a process group it started.
"""

from __future__ import annotations

import atexit
import gc
import os
from typing import Any

import torch
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world size) as ``torchrun`` sets them; (0, 1) for a single process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that logs, plots and writes checkpoints."""
    return world()[0] == 0


def _destroy_at_exit() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def init(device: torch.device) -> torch.device:
    """Start the process group (NCCL on CUDA, else gloo) unless the caller did; the device of this rank.

    A process group started here is destroyed at exit (while Python is still whole), so a script that
    forgets ``dist.destroy_process_group()`` still exits cleanly.
    """
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(_destroy_at_exit)
    return device


def replicate(model: nn.Module, device: torch.device, wrap: bool) -> nn.Module:
    """Every rank starts from rank 0's weights, then draws its own random numbers (dropout, noise).

    ``wrap``: return ``DistributedDataParallel(model)``, which broadcasts the weights and averages the
    gradients in ``backward``; else broadcast them here and return ``model`` (for an ``update_fn``,
    whose optimizers get averaged gradients from ``fit``).
    """
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(torch.initial_seed() + world()[0])
    if wrap:
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    broadcast_state(model)
    return model


def release(net: nn.Module) -> None:
    """Free a DDP wrapper now, not at interpreter shutdown (see the module's docstring)."""
    del net
    gc.collect()


def broadcast_state(model: nn.Module, buffers_only: bool = False) -> None:
    """Copy rank 0's parameters and buffers (or its buffers only: BatchNorm statistics) to every rank."""
    import torch.distributed as dist

    tensors = list(model.buffers()) if buffers_only else [*model.parameters(), *model.buffers()]
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src=0)


def shard(loader: Any, rank: int, world_size: int) -> Any:
    """The same DataLoader, but each rank reads its own shard through a ``DistributedSampler``."""
    from torch.utils.data import DataLoader, RandomSampler
    from torch.utils.data.distributed import DistributedSampler

    if not isinstance(loader, DataLoader):
        return loader
    sampler = DistributedSampler(
        loader.dataset, num_replicas=world_size, rank=rank, shuffle=isinstance(loader.sampler, RandomSampler)
    )
    return DataLoader(
        loader.dataset, batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
        collate_fn=loader.collate_fn, drop_last=loader.drop_last, pin_memory=loader.pin_memory,
    )


def average_gradients(params: list[torch.Tensor]) -> None:
    """All-reduce the gradients of ``params`` to their mean over the ranks, in one flat buffer."""
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()
