"""fit under torchrun: two CPU processes with gloo train and end with identical weights, in plain mode and
with a GAN's update_fn, and exit cleanly."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("mode", ["plain", "gan"])
def test_torchrun_two_processes_end_with_identical_weights(tmp_path, mode):
    script = Path(__file__).with_name("ddp_train_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KARPA_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={free_port()}", str(script), str(tmp_path), mode]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["steps"] == r1["steps"] == 3 * 8  # 256 samples / 2 ranks / batch 16 = 8 steps per epoch
    assert r0["ddp_alive"] == r1["ddp_alive"] == 0  # the wrapper was freed before the process exits
    for k in r0["state"]:
        assert torch.equal(r0["state"][k], r1["state"][k]), k
    if mode == "plain":
        assert r0["loss"] < 1.0
    else:  # both networks moved away from their (rank 0) initial weights, identically on both ranks
        assert r0["loss"] != r1["loss"]  # each rank saw its own shard: the same weights come from synced grads
