"""The same architecture search with a real tool: Optuna (Akiba et al. 2019).

Optuna asks for a search space "define-by-run": the objective calls ``trial.suggest_*`` as it builds
the genome, so a skip bit is only asked for where the widths allow it (a conditional parameter).

- samplers: TPE (Bergstra et al. 2011) models p(choice | good trials) / p(choice | bad trials) and
  proposes where that ratio is high; NSGA-II (Deb et al. 2002) evolves a population for several
  objectives at once (accuracy up, parameters down) and keeps the non-dominated ones.
- pruners read the learning curve the objective reports (``trial.report(acc, step)``) and stop a trial
  whose curve is below the median of earlier trials at the same step (``MedianPruner``).
- storage: a study lives in a database (``sqlite:///study.db`` here; a PostgreSQL or MySQL URL across
  machines). Any number of worker processes load the same study and run ``study.optimize``: each
  trial is a row, so the workers share what every other worker has found.

Run as a worker (what :func:`run_workers` starts, once per process):

    python -m karpa_lab.nas.optuna_search --storage sqlite:///study.db --study nas --worker A \\
        --trials 12 --data digits.pt
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

try:
    import optuna
except ImportError as exc:  # an optional extra of the package
    raise ImportError("this module needs Optuna: pip install -e '.[nas]' (make lab and make test install it)") from exc
import torch

from karpa_lab.data.digits import DigitsSplits
from karpa_lab.nas.protocol import Budget, train_candidate
from karpa_lab.nas.space import Genome, Space, count_params, skip_allowed
from karpa_lab.nas.tabular import TabularBenchmark


def suggest_genome(trial: optuna.Trial, space: Space) -> Genome:
    """Build a genome of ``space`` from ``trial.suggest_*`` calls: depth, then per layer a width and a
    kernel (convolutions are moved in front), the activation, and a skip bit where it is allowed."""
    depth = trial.suggest_categorical("depth", list(space.depths))
    widths = [trial.suggest_categorical(f"width_{i}", list(space.widths)) for i in range(depth)]
    kernels = [trial.suggest_categorical(f"kernel_{i}", list(space.kernels)) if len(space.kernels) > 1
               else space.kernels[0] for i in range(depth)]
    order = sorted(range(depth), key=lambda i: kernels[i] == 0)  # stable: convolutions first
    widths, kernels = [widths[i] for i in order], [kernels[i] for i in order]
    activation = trial.suggest_categorical("activation", list(space.activations))
    plain = Genome(tuple(widths), tuple(kernels), (False,) * depth, activation)
    skips = tuple(space.skips and skip_allowed(plain, i) and trial.suggest_categorical(f"skip_{i}", [False, True])
                  for i in range(depth))
    genome = Genome(plain.widths, plain.kernels, skips, activation)
    trial.set_user_attr("genome", genome.key)
    return genome


def tabular_objective(bench: TabularBenchmark, rng: random.Random) -> Callable[[optuna.Trial], float]:
    """Validation accuracy from the table (one seed drawn per trial), its learning curve reported at the
    checkpoints so that a pruner can stop it; ``user_attrs["steps"]`` records the training steps spent."""

    def objective(trial: optuna.Trial) -> float:
        entry = bench.entry(suggest_genome(trial, bench.space))
        curve = entry.val_curves[rng.randrange(len(bench.seeds))]
        for step, acc in zip(bench.budget.checkpoints, curve):
            trial.set_user_attr("steps", step)
            trial.report(float(acc), step)
            if step < bench.budget.steps and trial.should_prune():
                raise optuna.TrialPruned()
        return float(curve[-1])

    return objective


def tabular_two_objectives(bench: TabularBenchmark, rng: random.Random) -> Callable[[optuna.Trial], tuple]:
    """(validation accuracy, parameters) from the table, for a study with directions (maximize, minimize)."""

    def objective(trial: optuna.Trial) -> tuple[float, int]:
        genome = suggest_genome(trial, bench.space)
        return bench.query(genome, rng), count_params(genome)

    return objective


def training_objective(space: Space, budget: Budget, data: DigitsSplits, worker: str,
                       seed: int = 0) -> Callable[[optuna.Trial], float]:
    """Train the trial's genome for real (``train_candidate``), reporting the validation accuracy at each
    rung so the study's pruner can stop it; the worker's name is stored with the trial."""

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr("worker", worker)
        genome = suggest_genome(trial, space)

        def on_rung(step: int, acc: float) -> None:
            trial.set_user_attr("steps", step)
            trial.report(acc, step)
            if step < budget.steps and trial.should_prune():
                raise optuna.TrialPruned()

        _, curve = train_candidate(genome, budget, seed, data, on_rung=on_rung, device="cpu")
        return curve[-1][1]

    return objective


def storage(url: str) -> optuna.storages.RDBStorage:
    """The study's database. SQLite gets a 30 s lock timeout, so two workers writing at once wait
    for each other instead of failing with "database is locked"."""
    kwargs = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)


def worker_seed(worker: str) -> int:
    """A sampler seed per worker name: two workers with one seed would propose the same genomes."""
    return zlib.crc32(worker.encode())


def run_worker(url: str, study_name: str, worker: str, total_trials: int, data: DigitsSplits,
               space: Space, budget: Budget) -> None:
    """Load the shared study and optimize until it holds ``total_trials`` trials (all workers counted)."""
    study = optuna.load_study(study_name=study_name, storage=storage(url),
                              sampler=optuna.samplers.TPESampler(seed=worker_seed(worker), n_startup_trials=4),
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=3))

    def log(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        pruned = trial.state == optuna.trial.TrialState.PRUNED
        value = f"pruned at step {trial.user_attrs.get('steps')}" if pruned else f"val {trial.value:.4f}"
        print(f"[worker {worker}] trial {trial.number:>2}: {trial.user_attrs.get('genome', '?'):<22} {value}",
              flush=True)

    study.optimize(training_objective(space, budget, data, worker), callbacks=[
        log, optuna.study.MaxTrialsCallback(total_trials, states=None)])


def run_workers(url: str, study_name: str, data_path: Path, n_workers: int = 2, total_trials: int = 12,
                steps: int = 120, log_dir: Path | None = None,
                on_poll: Callable[[list[optuna.trial.FrozenTrial]], None] | None = None,
                poll_seconds: float = 0.5) -> list[str]:
    """Start ``n_workers`` processes of this module on one study and wait for them; ``on_poll(trials)``
    is called with the study's trials while they run (a live view). Returns each worker's log."""
    log_dir = Path(log_dir or data_path.parent)
    names = [chr(ord("A") + i) for i in range(n_workers)]
    procs, logs = [], []
    for name in names:
        log = open(log_dir / f"worker_{name}.log", "w")
        cmd = [sys.executable, "-m", "karpa_lab.nas.optuna_search", "--storage", url, "--study", study_name,
               "--worker", name, "--trials", str(total_trials), "--data", str(data_path), "--steps", str(steps)]
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
        logs.append(log)
    study = optuna.load_study(study_name=study_name, storage=storage(url))
    try:
        while any(p.poll() is None for p in procs):
            if on_poll is not None:
                on_poll(study.get_trials(deepcopy=False))
            time.sleep(poll_seconds)
    finally:
        for p in procs:
            p.wait()
        for log in logs:
            log.close()
    if on_poll is not None:
        on_poll(study.get_trials(deepcopy=False))
    failed = [f"worker {n} exited with {p.returncode}" for n, p in zip(names, procs) if p.returncode != 0]
    texts = [(log_dir / f"worker_{n}.log").read_text() for n in names]
    if failed:
        raise RuntimeError("; ".join(failed) + "\n" + "\n".join(texts))
    return texts


def save_digits(data: DigitsSplits, path: Path) -> Path:
    """Write the splits as tensors for the workers (so each one skips loading scikit-learn)."""
    torch.save({k: getattr(data, k) for k in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}, path)
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="One Optuna worker of a shared architecture-search study.")
    parser.add_argument("--storage", required=True, help="database URL: sqlite:///study.db, postgresql://...")
    parser.add_argument("--study", required=True, help="the study's name (created beforehand)")
    parser.add_argument("--worker", required=True, help="this worker's name, stored with its trials")
    parser.add_argument("--trials", type=int, required=True, help="stop when the study holds this many trials")
    parser.add_argument("--data", type=Path, required=True, help="digits splits written by save_digits")
    parser.add_argument("--steps", type=int, default=120, help="training steps per candidate")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = DigitsSplits(**torch.load(args.data, weights_only=True))
    rungs = tuple(r for r in (args.steps // 4, args.steps // 2) if r >= 1)
    run_worker(args.storage, args.study, args.worker, args.trials, data,
               space=Space(), budget=Budget(steps=args.steps, rungs=tuple(sorted(set(rungs)))))


if __name__ == "__main__":
    main()
