"""A tabular NAS benchmark built offline: every MLP of a small space, trained with two seeds.

NAS-Bench-101 and NAS-Bench-201 made search research cheap by training every architecture of a space
once and storing the results: a searcher then "evaluates" an architecture by a table lookup, and can be
compared with another over hundreds of repeats in seconds. Their tables are gigabytes and need a
download; this one is generated here, from the digits, in a few minutes:

    python -m karpa_lab.nas.tabular            # rewrites karpa_lab/nas/nas_bench_digits.json

Each of the 310 genomes of :data:`BENCH_SPACE` is trained with :func:`~karpa_lab.nas.protocol.train_candidate`
under :data:`BENCH_BUDGET` for seeds 0 and 1 (one thread, so the numbers repeat on a CPU); the table keeps
its parameters, FLOPs, the validation learning curve at each checkpoint and the test accuracy per seed.

A query draws one of the seeds at random, as a fresh training run would: the searcher sees the noise of
training, not the mean over seeds, and the lesson can measure how much that noise misleads it.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from karpa_lab.nas.protocol import Budget, digits, split_accuracy, train_candidate
from karpa_lab.nas.searchers import SearchTrace
from karpa_lab.nas.space import Genome, Space, count_flops, count_params

FORMAT = "karpa_lab.nas_bench/1"
DEFAULT_PATH = Path(__file__).with_name("nas_bench_digits.json")
BENCH_SPACE = Space(depths=(1, 2, 3), widths=(16, 32, 64, 128), kernels=(0,), activations=("relu", "tanh"))
BENCH_BUDGET = Budget(steps=240, batch_size=64, lr=3e-3, rungs=(30, 60, 120))
BENCH_SEEDS = (0, 1)


@dataclass(frozen=True)
class Entry:
    """One architecture of the table: costs, validation curves (seeds, checkpoints) and test accuracy per seed."""

    key: str
    params: int
    flops: int
    val_curves: np.ndarray
    test: np.ndarray

    @property
    def val(self) -> np.ndarray:
        """Final validation accuracy per seed, shape (seeds,)."""
        return self.val_curves[:, -1]


class TabularBenchmark:
    """Look-ups into a generated table. ``bench.query(genome, rng)`` is the search's "train and validate"."""

    def __init__(self, table: dict):
        if table.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} table (format: {table.get('format')!r}); regenerate it with "
                             "`python -m karpa_lab.nas.tabular`")
        self.table = table
        s = table["space"]
        self.space = Space(tuple(s["depths"]), tuple(s["widths"]), tuple(s["kernels"]), tuple(s["activations"]),
                           s["skips"])
        b = table["budget"]
        self.budget = Budget(b["steps"], b["batch_size"], b["lr"], tuple(b["rungs"]))
        self.seeds = tuple(table["seeds"])
        self.entries = {
            key: Entry(key, row["params"], row["flops"], np.asarray(row["val"], dtype=float),
                       np.asarray(row["test"], dtype=float))
            for key, row in table["archs"].items()
        }
        self.keys = list(self.entries)
        self.params = np.array([e.params for e in self.entries.values()])
        self.flops = np.array([e.flops for e in self.entries.values()])
        self.mean_val = np.array([e.val.mean() for e in self.entries.values()])
        self.mean_test = np.array([e.test.mean() for e in self.entries.values()])

    @classmethod
    def load(cls, path: str | Path = DEFAULT_PATH) -> TabularBenchmark:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no benchmark table at {path}; generate it with `python -m karpa_lab.nas.tabular`")
        return cls(json.loads(path.read_text()))

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, genome: Genome | str) -> bool:
        return _key(genome) in self.entries

    def entry(self, genome: Genome | str) -> Entry:
        key = _key(genome)
        if key not in self.entries:
            raise KeyError(f"{key} is not in the table (a space of {len(self)} genomes: {self.space})")
        return self.entries[key]

    def query(self, genome: Genome | str, rng: random.Random) -> float:
        """Validation accuracy of one training run: one of the stored seeds, drawn with ``rng``."""
        return float(self.entry(genome).val[rng.randrange(len(self.seeds))])

    def scorer(self, rng: random.Random) -> Callable[[Genome], float]:
        """``score(genome)`` for a searcher: :meth:`query` with this ``rng``."""
        return lambda genome: self.query(genome, rng)

    def rank_by_val(self) -> list[str]:
        """Keys from best to worst mean validation accuracy (ties broken by fewer parameters)."""
        order = np.lexsort((self.params, -self.mean_val))
        return [self.keys[i] for i in order]

    @property
    def best_test(self) -> float:
        """The best mean test accuracy in the table: the reference of the test regret."""
        return float(self.mean_test.max())


def _key(genome: Genome | str) -> str:
    return genome if isinstance(genome, str) else genome.key


# ------------------------------------------------------------------------------ many repeats
@dataclass
class Repeats:
    """A searcher run ``R`` times on the table with budget ``T``."""

    name: str
    best_val: np.ndarray       # (R, T) best-so-far validation accuracy (as the searcher saw it)
    chosen: list[str]          # (R,) the genome each run returns: its best observed validation score
    test_regret: np.ndarray    # (R,) best mean test in the table minus the chosen genome's mean test

    def top_k_rate(self, bench: TabularBenchmark, k: int = 3) -> float:
        """Share of runs whose chosen genome is among the ``k`` best by mean validation accuracy."""
        top = set(bench.rank_by_val()[:k])
        return float(np.mean([c in top for c in self.chosen]))


def repeat_search(bench: TabularBenchmark, search: Callable[..., SearchTrace], budget: int, repeats: int,
                  seed: int = 0, **kwargs) -> Repeats:
    """Run ``search(space, score, budget, rng, **kwargs)`` ``repeats`` times on the table; run ``r`` uses
    ``random.Random(seed + r)`` for both its proposals and the seed draws of the table."""
    curves, chosen, regret = [], [], []
    for r in range(repeats):
        rng = random.Random(seed + r)
        trace = search(bench.space, bench.scorer(rng), budget, rng, **kwargs)
        curves.append(trace.best_so_far())
        best = trace.best()[0].key
        chosen.append(best)
        regret.append(bench.best_test - bench.entry(best).test.mean())
    name = kwargs.get("name") or getattr(search, "__name__", "search")
    return Repeats(name, np.array(curves), chosen, np.array(regret))


# ------------------------------------------------------------------------------ generation
def generate(space: Space = BENCH_SPACE, budget: Budget = BENCH_BUDGET, seeds: Sequence[int] = BENCH_SEEDS,
             log: Callable[[str], None] | None = print) -> dict:
    """Train every genome of ``space`` for each seed under ``budget``; return the table (a JSON-able dict)."""
    data = digits()
    genomes = space.all_genomes()
    start, cpu_start = time.perf_counter(), time.process_time()
    archs = {}
    for i, genome in enumerate(genomes):
        vals, tests = [], []
        for seed in seeds:
            model, curve = train_candidate(genome, budget, seed, data, device="cpu")
            vals.append([round(acc, 4) for _, acc in curve])
            tests.append(round(split_accuracy(model, data, "test"), 4))
        archs[genome.key] = {"params": count_params(genome), "flops": count_flops(genome), "val": vals, "test": tests}
        if log is not None and (i + 1) % 10 == 0:
            log(f"{i + 1}/{len(genomes)} trained ({time.perf_counter() - start:.0f} s), last {genome.key}: "
                f"val {vals[0][-1]:.4f}/{vals[-1][-1]:.4f}")
    return {
        "format": FORMAT,
        "about": "every genome of the space trained from scratch on the digits (60/20/20 split) for each seed; "
                 "val: validation accuracy at each checkpoint (rungs, then the end); test: final test accuracy",
        "space": {"depths": list(space.depths), "widths": list(space.widths), "kernels": list(space.kernels),
                  "activations": list(space.activations), "skips": space.skips},
        "budget": {"steps": budget.steps, "batch_size": budget.batch_size, "lr": budget.lr,
                   "rungs": list(budget.rungs), "checkpoints": list(budget.checkpoints)},
        "seeds": list(seeds),
        "generated": {"wall_seconds": round(time.perf_counter() - start, 1),
                      "cpu_seconds": round(time.process_time() - cpu_start, 1),
                      "torch": torch.__version__, "threads": torch.get_num_threads()},
        "archs": archs,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Regenerate the tabular NAS benchmark of the digits.")
    parser.add_argument("--out", type=Path, default=DEFAULT_PATH, help=f"where to write it (default {DEFAULT_PATH})")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the table's numbers depend (slightly) on the thread count: fix it
    table = generate()
    args.out.write_text(json.dumps(table, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}: {len(table['archs'])} architectures x {len(table['seeds'])} seeds, "
          f"{args.out.stat().st_size / 1000:.0f} kB, generated in {table['generated']['cpu_seconds']:.0f} s of CPU "
          f"({table['generated']['wall_seconds']:.0f} s wall)")


if __name__ == "__main__":
    main()
