"""How much does ``karpa_lab.fit`` cost over a hand-written PyTorch loop?

Same model, same data, same number of steps, run by (a) the bare hand-written DataLoader loop, (b) ``fit``
with its history, NaN checks and gradient norms (``verbose=False``: the loop's cost, not its printing),
and (c) PyTorch Lightning when it is installed (``pip install -e .[lightning]``). Two workloads: a tiny
MLP on the digits (sub-millisecond steps, where a loop's own cost shows) and a char-LSTM on Python source
(tens of milliseconds a step).
Runs go in rounds, each runner once per round. A shared machine speeds up and slows down over seconds, so
the ratio is taken within each round (runs seconds apart) and the table gives the median of those ratios.
It also gives the ratio of the fastest runs: other work on the machine can only add time to a run, so each
runner's minimum over the rounds is its cost with the least interference (the estimator ``timeit`` advises).

    python benchmarks/fit_overhead.py            # or: make bench
Targets: fit <= 1.10x the hand loop on the tiny MLP, <= 1.02x on the LSTM.
"""

from __future__ import annotations

import argparse
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
    d = load_digits_splits(flatten=True)
    digits = TensorDataset(d.x_train, d.y_train)
    yield ("tiny MLP 64-128-10, batch 64", lambda: nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)),
           lambda: DataLoader(digits, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)), 400)
    corpus = TextCorpus.python_stdlib(max_chars=300_000)
    n = (len(corpus.train) - 1) // 65
    windows = corpus.train[: n * 65 + 1]
    text = TensorDataset(windows[:-1].view(n, 65)[:, :64], windows[:-1].view(n, 65)[:, 1:])
    yield (f"char-LSTM 1x224, vocab {corpus.vocab_size}, batch 32x64",
           lambda: CharLSTM(corpus.vocab_size),
           lambda: DataLoader(text, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)), 40)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    if args.repeats < 2:
        parser.error("--repeats must be at least 2: the table gives the quartiles of the per-round ratios")
    runners = {"hand-written loop": hand_loop, "karpa_lab.fit": with_fit}
    try:
        import lightning  # noqa: F401

        runners["Lightning (bare)"] = with_lightning
    except ImportError:
        print("(Lightning not installed: pip install -e '.[lightning]' to compare with it)")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    names = list(runners)
    for name, make_model, make_loader, steps in workloads():
        times: dict[str, list[float]] = {k: [] for k in runners}
        for r in range(args.repeats):
            # One round runs each runner once, back to back, starting with a different one each round.
            for runner_name in names[r % len(names):] + names[: r % len(names)]:
                seed_everything(0)
                times[runner_name].append(runners[runner_name](make_model(), make_loader(), steps))
        print(f"\n{name}: {steps} steps, {args.repeats} rounds")
        print(f"  {'':<20} {'ms/step':>8}   ratio to the hand loop in the same round: median (quartiles)"
              "   fastest / fastest")
        hand = times["hand-written loop"]
        for runner_name, values in times.items():
            ratios = [t / h for t, h in zip(values, hand)]
            q1, _, q3 = statistics.quantiles(ratios)
            print(f"  {runner_name:<20} {1e3 * statistics.median(values):8.3f}   "
                  f"{statistics.median(ratios):5.3f}x ({q1:.3f}-{q3:.3f}){'':>41}{min(values) / min(hand):5.3f}x")


if __name__ == "__main__":
    main()
