"""How much does ``karpa_lab.fit`` cost over a hand-written PyTorch loop?

Same model, same data, same number of steps, run by (a) the bare hand-written DataLoader loop, (b) ``fit``
with its history, NaN checks and gradient norms (``verbose=False``: the loop's cost, not its printing),
and (c) PyTorch Lightning when it is installed (``pip install -e .[lightning]``). Two workloads: a tiny
MLP on the digits (sub-millisecond steps, where a loop's own cost shows) and a char-LSTM on Python source
(tens of milliseconds a step).

A shared machine speeds up and slows down over seconds, by more than the few per cent measured here. So
the runs are short and paired: a round runs each runner once, back to back (a fresh model and loader each,
the order rotated), and a ratio is taken within each round. The table gives the median of those ratios
with a 95% bootstrap interval over the rounds, and the ratio of the fastest runs (other work can only add
time to a run, so each runner's minimum is its cost with the least interference, the estimator ``timeit``
advises). A target counts as met when the whole interval is under it. The hand loop runs twice per round,
and its second row is the control: how far from 1.000x this machine puts the same code against itself.

    python benchmarks/fit_overhead.py            # or: make bench
    python benchmarks/fit_overhead.py --scale 4 --threads 1
Targets: fit <= 1.10x the hand loop on the tiny MLP, <= 1.02x on the LSTM.
"""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from karpa_lab import fit, seed_everything
from karpa_lab.data import TextCorpus, load_digits_splits


class CharLSTM(nn.Module):
    def __init__(self, vocab: int, hidden: int = 224):
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x):
        out, _ = self.lstm(self.embed(x))
        return self.head(out)


def workloads():
    """(name, model factory, loader factory, steps per run, rounds, target ratio) for each workload."""
    d = load_digits_splits(flatten=True)
    digits = TensorDataset(d.x_train, d.y_train)
    yield ("tiny MLP 64-128-10, batch 64", lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
           lambda: DataLoader(digits, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)),
           50, 150, 1.10)
    corpus = TextCorpus.python_stdlib(max_chars=300_000)
    n = (len(corpus.train) - 1) // 65
    windows = corpus.train[: n * 65 + 1]
    text = TensorDataset(windows[:-1].view(n, 65)[:, :64], windows[:-1].view(n, 65)[:, 1:])
    yield (f"char-LSTM 1x224, vocab {corpus.vocab_size}, batch 32x64",
           lambda: CharLSTM(corpus.vocab_size),
           lambda: DataLoader(text, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)),
           10, 40, 1.02)


def hand_loop(model, loader, steps: int) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    done, start = 0, time.perf_counter()
    while done < steps:
        for x, y in loader:
            out = model(x)
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return (time.perf_counter() - start) / steps


def with_fit(model, loader, steps: int) -> float:
    start = time.perf_counter()
    fit(model, loader, steps=steps, lr=1e-3, device="cpu", verbose=False)  # the loop's cost, not its log lines
    return (time.perf_counter() - start) / steps


def with_lightning(model, loader, steps: int) -> float:
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = model

        def training_step(self, batch, _):
            x, y = batch
            out = self.net(x)
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    trainer = L.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    start = time.perf_counter()
    trainer.fit(Module(), loader)
    return (time.perf_counter() - start) / steps


def median_interval(ratios: list[float], draws: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% bootstrap interval of the median: the 2.5th and 97.5th percentiles of the medians of
    ``draws`` resamples (with replacement) of the rounds."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def time_rounds(runners: dict, make_model, make_loader, steps: int, rounds: int) -> dict[str, list[float]]:
    """Seconds per step of each runner in each round; a round runs every runner once, back to back,
    starting with a different one each round."""
    names = list(runners)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            gc.collect()  # the last run's garbage is collected now, not inside the next runner's timing
            seed_everything(0)
            times[name].append(runners[name](make_model(), make_loader(), steps))
    return times


def report(times: dict[str, list[float]], target: float) -> None:
    print(f"  {'':<20} {'ms/step':>8}   ratio to the hand loop in the same round: median [95% interval]"
          "   fastest / fastest")
    hand = times["hand-written loop"]
    intervals = {}
    for name, values in times.items():
        ratios = [t / h for t, h in zip(values, hand)]
        low, high = intervals[name] = median_interval(ratios)
        print(f"  {name:<20} {1e3 * statistics.median(values):8.3f}   {statistics.median(ratios):5.3f}x "
              f"[{low:.3f}-{high:.3f}]{'':>35}{min(values) / min(hand):5.3f}x")
    high = intervals["karpa_lab.fit"][1]
    verdict = "met" if high <= target else "not shown: rerun with a larger --scale on an idle machine"
    print(f"  target fit <= {target:.2f}x: {verdict} (interval up to {high:.3f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply each workload's rounds (150 and 40) by this; 4 halves the interval's width")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    args = parser.parse_args()
    if args.scale <= 0:
        parser.error(f"--scale must be positive, got {args.scale}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # The hand loop twice: the second row is what the same code measures against itself here (a ratio
    # away from 1.000 is the machine's noise, not a loop's cost).
    runners = {"hand-written loop": hand_loop, "hand loop, again": hand_loop, "karpa_lab.fit": with_fit}
    try:
        import lightning  # noqa: F401

        runners["Lightning (bare)"] = with_lightning
    except ImportError:
        print("(Lightning not installed: pip install -e '.[lightning]' to compare with it)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, make_model, make_loader, steps, rounds, target in workloads():
        rounds = max(4, round(rounds * args.scale))
        times = time_rounds(runners, make_model, make_loader, steps, rounds)
        print(f"\n{name}: {rounds} rounds of {steps} steps")
        report(times, target)


if __name__ == "__main__":
    main()
