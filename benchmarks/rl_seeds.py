"""Do lesson 14's three training claims hold beyond its committed seed?

For each seed, with the lesson's settings at ``KARPA_SCALE=small``:
- the pixel game: REINFORCE's win rate on 500 held-out episodes beats a random policy's by 0.3;
- CartPole: REINFORCE with a value baseline averages at least 195 over its last 32 episodes;
- CartPole: DQN's greedy mean over 20 held-out episodes reaches 195 within 4,000 updates (and the
  environment steps it took).

    python benchmarks/rl_seeds.py --seeds 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from karpa_lab import fit, seed_everything
from karpa_lab.rl import (
    DQN,
    CatchPixels,
    EpisodeCollector,
    PixelDifference,
    PolicyNet,
    evaluate_policy,
    reinforce_step,
    train_until,
)

make_cartpole = lambda: gym.make("CartPole-v1", max_episode_steps=200)
make_catch = lambda: PixelDifference(CatchPixels(8), top=4, bottom=None)


def win_rate(model: nn.Module) -> float:
    return float(np.mean([g > 0 for g in evaluate_policy(make_catch, model, 500, seed=10_000, greedy=False)]))


def pixel_game(seed: int) -> tuple[float, float]:
    uniform = nn.Linear(64, 2)
    nn.init.zeros_(uniform.weight)
    nn.init.zeros_(uniform.bias)
    seed_everything(seed)
    policy = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    collector = EpisodeCollector([make_catch() for _ in range(32)], policy, seed=seed * 100_000)
    fit(policy, collector, steps=150, step_fn=reinforce_step(0.99), lr=5e-3, device="cpu", verbose=False)
    return win_rate(policy), win_rate(uniform)


def reinforce_cartpole(seed: int) -> float:
    seed_everything(seed)
    policy = PolicyNet(4, 2, hidden=64)
    collector = EpisodeCollector([make_cartpole() for _ in range(16)], policy, seed=seed * 100_000)
    fit(policy, collector, steps=30, step_fn=reinforce_step(0.99), lr=2e-2, device="cpu", verbose=False)
    return float(np.mean(collector.returns[-32:]))


def dqn_cartpole(seed: int) -> tuple[float, int]:
    seed_everything(seed)
    q = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    agent = DQN(q, make_cartpole(), seed=seed)
    evaluations = train_until(agent, make_cartpole, 195, 4000)
    return evaluations[-1][1], evaluations[-1][0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    args = parser.parse_args()
    torch.set_num_threads(1)
    passed = {"pixel game": 0, "REINFORCE": 0, "DQN": 0}
    for seed in args.seeds:
        start = time.process_time()
        (trained, random), last32, (greedy, steps) = pixel_game(seed), reinforce_cartpole(seed), dqn_cartpole(seed)
        passed["pixel game"] += trained > random + 0.3
        passed["REINFORCE"] += last32 >= 195
        passed["DQN"] += greedy >= 195
        print(f"seed {seed}: pixel game win rate {trained:.3f} (random {random:.3f}); REINFORCE last 32 episodes "
              f"{last32:.1f}; DQN greedy {greedy:.1f} after {steps} environment steps; "
              f"{time.process_time() - start:.1f} s CPU", flush=True)
    print(f"claims that held, out of {len(args.seeds)} seeds: {passed}")


if __name__ == "__main__":
    main()
