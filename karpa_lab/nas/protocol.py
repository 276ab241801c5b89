r"""A fair evaluation protocol: every candidate gets the same data, the same budget and the same seeds.

Architecture search is a bilevel problem,

    a* = argmax_a  Acc_val(w*(a), a)      with  w*(a) = argmin_w L_train(w, a),

and we can only afford an estimate of the inner argmin: a fixed budget of ``steps`` AdamW steps on
batches of the training split, the same for every candidate. The search reads the validation split
only; the test split is read once, at the end, for the architectures the search settled on
(:meth:`Protocol.final_test` refuses a second call). Evaluations are cached by genome, so a searcher
that proposes an architecture twice pays once.

Training goes through ``karpa_lab.fit``; the run pauses at a few rungs (``Budget.rungs``) to measure the
validation accuracy, which gives the learning curve that pruners read (lesson 11).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from karpa_lab.data.digits import DigitsSplits, load_digits_splits
from karpa_lab.device import seed_everything
from karpa_lab.nas.space import Genome, GenomeNet, build_model, count_flops, count_params
from karpa_lab.train import accuracy, evaluate, fit


@dataclass(frozen=True)
class Budget:
    """The training budget of one candidate: ``steps`` of AdamW at ``lr`` on batches of ``batch_size``;
    the validation accuracy is also measured after each of ``rungs`` steps (the learning curve)."""

    steps: int = 240
    batch_size: int = 64
    lr: float = 3e-3
    rungs: tuple[int, ...] = (30, 60, 120)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"need steps, batch_size >= 1 and lr > 0; got {self.steps}, {self.batch_size}, {self.lr}")
        if list(self.rungs) != sorted(set(self.rungs)) or any(r < 1 or r >= self.steps for r in self.rungs):
            raise ValueError(f"rungs must increase strictly and lie in [1, steps={self.steps}); got {self.rungs}")

    @property
    def checkpoints(self) -> tuple[int, ...]:
        """The steps at which the validation accuracy is measured: the rungs and the end."""
        return (*self.rungs, self.steps)


@functools.lru_cache(maxsize=1)
def digits() -> DigitsSplits:
    """The digits splits (60/20/20, fixed), loaded once per process."""
    return load_digits_splits(size=8)


def split_accuracy(model: torch.nn.Module, data: DigitsSplits, split: str) -> float:
    """Accuracy of ``model`` on one split ("train", "val" or "test"), in eval mode without gradients."""
    x, y = data.split(split)
    device = next(model.parameters()).device
    return evaluate(model, [(x, y)], metrics={"accuracy": accuracy}, device=device)["accuracy"]


def train_model(
    model: torch.nn.Module,
    budget: Budget = Budget(),
    seed: int = 0,
    data: DigitsSplits | None = None,
    on_rung: Callable[[int, float], None] | None = None,
    device: torch.device | str | None = None,
) -> list[tuple[int, float]]:
    """Train ``model`` in place with ``karpa_lab.fit`` under ``budget``; return its learning curve
    ``[(steps done, validation accuracy), ...]`` at ``budget.checkpoints``.

    The seed fixes the order of the (with-replacement) training batches. Training runs in chunks between
    checkpoints with one optimizer (a constant learning rate, so the chunks are one run); after each,
    ``on_rung(step, val_acc)`` is called and may raise to stop early (a pruner).
    """
    data = data or digits()
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.lr)
    gen = torch.Generator().manual_seed(seed)
    x, y = data.x_train, data.y_train

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(y), (budget.batch_size,), generator=gen)
        return x[idx], y[idx]

    curve, done = [], 0
    for point in budget.checkpoints:
        # One line per chunk of every candidate would drown the search's own report: fit stays quiet.
        fit(model, batch, steps=point - done, optimizer=optimizer, device=device, verbose=False)
        done = point
        curve.append((point, split_accuracy(model, data, "val")))
        if on_rung is not None:
            on_rung(point, curve[-1][1])
    return curve


def train_candidate(
    genome: Genome,
    budget: Budget = Budget(),
    seed: int = 0,
    data: DigitsSplits | None = None,
    on_rung: Callable[[int, float], None] | None = None,
    device: torch.device | str | None = None,
) -> tuple[GenomeNet, list[tuple[int, float]]]:
    """Build ``genome`` with initial weights drawn after ``seed_everything(seed)`` and train it with
    :func:`train_model`; return the model and its learning curve."""
    seed_everything(seed)
    model = build_model(genome)
    return model, train_model(model, budget, seed, data, on_rung, device)


@dataclass
class Result:
    """One evaluated candidate: validation accuracy (mean over the protocol's seeds) and its costs."""

    genome: Genome
    val_acc: float
    val_accs: list[float]
    params: int
    flops: int
    curves: list[list[tuple[int, float]]] = field(repr=False)
    seconds: float = 0.0

    @property
    def key(self) -> str:
        return self.genome.key


class Protocol:
    """Evaluate candidates fairly: the same ``budget`` and ``seeds`` for all, validation for the search,
    test once at the end, results cached by genome.

        protocol = Protocol(Budget(steps=240), seeds=(0,))
        protocol.score(genome)          # validation accuracy: what a searcher maximizes
        protocol.final_test([best])     # test accuracy, once
    """

    def __init__(self, budget: Budget = Budget(), seeds: Sequence[int] = (0,), data: DigitsSplits | None = None,
                 device: torch.device | str | None = None):
        if not seeds:
            raise ValueError("give at least one seed")
        self.budget, self.seeds, self.device = budget, tuple(seeds), device
        self.data = data or digits()
        self.cache: dict[str, Result] = {}
        self.models: dict[str, list[GenomeNet]] = {}
        self.n_trained = 0
        self.n_cache_hits = 0
        self.tested: dict[str, float] | None = None

    def evaluate(self, genome: Genome) -> Result:
        """Train ``genome`` once per seed (or return the cached result) and measure it on validation."""
        if genome.key in self.cache:
            self.n_cache_hits += 1
            return self.cache[genome.key]
        start = time.perf_counter()
        models, curves = [], []
        for seed in self.seeds:
            model, curve = train_candidate(genome, self.budget, seed, self.data, device=self.device)
            models.append(model)
            curves.append(curve)
            self.n_trained += 1
        accs = [c[-1][1] for c in curves]
        result = Result(genome, sum(accs) / len(accs), accs, count_params(genome), count_flops(genome), curves,
                        time.perf_counter() - start)
        self.cache[genome.key], self.models[genome.key] = result, models
        return result

    def score(self, genome: Genome) -> float:
        """Validation accuracy of ``genome``: the function a searcher maximizes."""
        return self.evaluate(genome).val_acc

    def final_test(self, genomes: Sequence[Genome]) -> dict[str, float]:
        """Test accuracy (mean over seeds) of already evaluated ``genomes``. Allowed once per protocol:
        a test split read during the search is a second validation split, and its number is no longer
        an unbiased estimate."""
        if self.tested is not None:
            raise RuntimeError(
                f"the test split was already read (for {sorted(self.tested)}); reading it again to choose "
                "between architectures turns it into a validation split. Decide with validation accuracy."
            )
        missing = [g.key for g in genomes if g.key not in self.models]
        if missing:
            raise ValueError(f"evaluate these genomes on validation first: {missing}")
        self.tested = {
            g.key: sum(split_accuracy(m, self.data, "test") for m in self.models[g.key]) / len(self.seeds)
            for g in genomes
        }
        return dict(self.tested)
