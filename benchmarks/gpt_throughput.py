"""How fast does the small GPT train here, and what share of the machine's matmul peak is that?

Model FLOPs utilisation (MFU, as in nanoGPT's ``estimate_mfu`` and the PaLM paper):

    MFU = (training FLOPs per token) x (tokens per second) / (peak FLOP/s of this device)

with FLOPs per token = 6 N + 12 n_layer d T (:meth:`karpa_lab.models.gpt.GPT.flops_per_token`). The
peak is not a datasheet number: this script measures it in the same run, as the best float32 GFLOP/s
of large square matmuls (2 n^3 FLOPs each) on the same threads. The training step is ``fit``'s (AdamW,
gradient clipping, as in lesson 09), on random windows of the Python corpus; the first steps are warm-up.

On a CPU both the peak and the training step are timed in process CPU time, so that a machine shared
with other work does not deflate the figure (on one thread and an idle machine this equals wall time).
With several threads CPU time is their sum, and on a busy machine it also counts the threads that spin
while they wait for each other: use ``--wall`` there, on an otherwise idle machine. On a GPU both use the
wall clock.

    python benchmarks/gpt_throughput.py                   # this machine's default threads
    OMP_NUM_THREADS=1 python benchmarks/gpt_throughput.py # one core, as the notebooks run
    python benchmarks/gpt_throughput.py --threads 2 --wall   # several threads: wall clock, idle machine

On a GPU the same script times bf16 autocast steps against a bf16 matmul peak.
"""

from __future__ import annotations

import argparse
import time

import torch

from karpa_lab import fit, get_device, seed_everything
from karpa_lab.data import TextCorpus
from karpa_lab.models.gpt import GPT, GPTConfig


def clock_for(device: torch.device, wall: bool = False):
    """CPU: process CPU time (or the wall clock); GPU: wall time after waiting for the queued kernels."""
    if device.type == "cpu":
        return time.perf_counter if wall else time.process_time

    def wall() -> float:
        torch.cuda.synchronize(device)
        return time.perf_counter()

    return wall


def matmul_peak(device: torch.device, wall: bool, sizes=(512, 1024, 2048), repeats: int = 5) -> tuple[float, int]:
    """Best FLOP/s over square matmuls of the given sizes (float32 on a CPU, bf16 on a GPU), and its size."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    clock = clock_for(device, wall)
    best, best_n = 0.0, 0
    for n in sizes:
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        a @ b  # warm-up
        for _ in range(repeats):
            start = clock()
            a @ b
            rate = 2 * n**3 / max(clock() - start, 1e-9)
            if rate > best:
                best, best_n = rate, n
    return best, best_n


def training_rate(config: GPTConfig, corpus: TextCorpus, batch: int, steps: int, device: torch.device,
                  wall: bool) -> float:
    """Training steps per second of ``fit``, timed from the start of step 2 to the start of the last step."""
    seed_everything(0)
    model = GPT(config)
    clock, starts = clock_for(device, wall), []

    def timed_step(m, b):
        if m.training:
            starts.append(clock())
        return m(*b)[1]

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), weight_decay=0.01)
    fit(model, corpus.batch_fn("train", batch, config.block_size), steps=steps, optimizer=optimizer,
        step_fn=timed_step, clip_grad=1.0, device=device, verbose=False)
    return (len(starts) - 3) / (starts[-1] - starts[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: as set)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per configuration")
    parser.add_argument("--wall", action="store_true", help="on a CPU, time with the wall clock, not CPU time")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device()
    corpus = TextCorpus.python_stdlib(max_chars=300_000)
    V = corpus.vocab_size
    peak, peak_n = matmul_peak(device, args.wall)
    where = f"{torch.get_num_threads()} threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
    timing = "CPU time" if device.type == "cpu" and not args.wall else "wall time"
    print(f"device: {device} ({where}); measured matmul peak {peak / 1e9:.1f} GFLOP/s (n={peak_n}), {timing}")
    runs = [  # (label, config, batch)
        ("lesson 09: 3x96, ctx 64, sdpa", GPTConfig(V, 64, 3, 4, 96), 32),
        ("lesson 09: 3x96, ctx 64, plain", GPTConfig(V, 64, 3, 4, 96, flash=False), 32),
        ("3x96, ctx 256, sdpa", GPTConfig(V, 256, 3, 4, 96), 8),
        ("6x192, ctx 128, sdpa", GPTConfig(V, 128, 6, 6, 192), 16),
    ]
    header = f"{'model':<34}{'params':>9}{'batch':>7}{'ms/step':>9}{'tokens/s':>10}{'GFLOP/s':>9}{'MFU':>7}"
    print(header)
    print("-" * len(header))
    for label, config, batch in runs:
        rate = training_rate(config, corpus, batch, args.steps, device, args.wall)
        tokens = rate * batch * config.block_size
        flops = GPT(config).flops_per_token() * tokens
        n = GPT(config).num_params()
        print(f"{label:<34}{n / 1e6:>8.2f}M{batch:>7}{1000 / rate:>9.1f}{tokens:>10.0f}{flops / 1e9:>9.2f}"
              f"{flops / peak:>7.1%}")


if __name__ == "__main__":
    main()
