# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-all
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 14 · Reinforcement learning: worked solutions
#
# One section per exercise of [lesson 14](../14_reinforcement.ipynb), in its order and with its wording.
# Each answer gives the reasoning first, then runs it and asserts what the reasoning predicted.

# %%
import gymnasium as gym
import numpy as np
import torch
from torch import nn

from karpa_lab import fit, seed_everything
from karpa_lab.rl import (
    CatchPixels,
    EpisodeCollector,
    PixelDifference,
    PolicyNet,
    discounted_returns,
    evaluate_policy,
    prepro,
    reinforce_step,
)

seed_everything(0)
torch.set_num_threads(1)

# %% [markdown]
# ## 1. Predict, then run
#
# *An episode of 200 rewards of 1: what is $G_0$ for $\gamma = 0.9$, $0.99$ and $1$? What "horizon" does
# $\gamma$ set? Check with `discounted_returns`.*
#
# $G_0 = \sum_{k=0}^{199} \gamma^k = (1 - \gamma^{200}) / (1 - \gamma)$: for $\gamma = 0.9$ that is
# $10 (1 - 0.9^{200}) \approx 10$; for $0.99$, $100 (1 - 0.99^{200}) \approx 100 (1 - 0.134) = 86.6$; for
# $\gamma = 1$ the plain sum, 200. A reward $k$ steps ahead is weighted $\gamma^k$, and $\sum_k \gamma^k =
# 1/(1-\gamma)$: the discount sets an effective horizon of about $1/(1-\gamma)$ steps (10 and 100 here).
# With $\gamma = 0.9$, at its start, an episode of 50 steps is worth within 1% of one of 200
# ($10 \cdot 0.9^{50} \approx 0.05$ apart): a CartPole agent could hardly tell them apart.

# %%
ones, end = torch.ones(200), torch.zeros(200)
end[-1] = 1
for gamma in (0.9, 0.99, 1.0):
    g0 = float(discounted_returns(ones, end, gamma)[0])
    formula = 200.0 if gamma == 1 else (1 - gamma**200) / (1 - gamma)
    print(f"gamma {gamma}: G_0 = {g0:.3f}, formula {formula:.3f}, horizon 1/(1-gamma) = "
          f"{'inf' if gamma == 1 else f'{1 / (1 - gamma):.0f}'}")
    assert abs(g0 - formula) < 1e-4 * formula
g50 = discounted_returns(torch.ones(50), torch.eye(50)[-1], 0.9)[0]
print(f"gamma 0.9: G_0 of a 50-step episode {float(g50):.3f} vs a 200-step one "
      f"{float(discounted_returns(ones, end, 0.9)[0]):.3f}")
assert abs(float(g50) - float(discounted_returns(ones, end, 0.9)[0])) < 0.01 * float(g50)  # within 1%

# %% [markdown]
# ## 2. A baseline that cheats
#
# *On the bandit of section 2, subtract a baseline that depends on the action taken, $b = \mu_a$. Is the
# estimate still unbiased? Measure it in error bars, and explain with the derivation of the baseline's
# zero expectation.*
#
# The baseline's term vanished because $\sum_a \pi_\theta(a)\,\nabla \log \pi_\theta(a)\, b =
# b\,\nabla \sum_a \pi_\theta(a) = 0$: $b$ came out of the sum over actions. With $b = \mu_a$ it cannot:
# $\mathbb{E}[\nabla \log \pi(a)\,\mu_a] = \nabla J \ne 0$ is subtracted, and what is left, $(e_a -
# \pi)(r - \mu_a)$, is the score times pure noise: its expectation is **zero**, not the gradient. The
# estimate is biased all the way to 0, and more pulls only shrink the error bar around the wrong value.

# %%
means = torch.tensor([1.0, 2.0, 0.5])
theta = torch.tensor([0.3, -0.2, 0.1], requires_grad=True)
exact = torch.autograd.grad((torch.softmax(theta, 0) * means).sum(), theta)[0]
probs = torch.softmax(theta.detach(), 0)
N = 20_000
generator = torch.Generator().manual_seed(0)
actions = torch.multinomial(probs, N, replacement=True, generator=generator)
rewards = means[actions] + torch.randn(N, generator=generator)
score = torch.eye(3)[actions] - probs
J = float((probs * means).sum())
for name, weight in (("constant b = J", rewards - J), ("cheating b = mu_a", rewards - means[actions])):
    samples = score * weight[:, None]
    z = (samples.mean(0) - exact) / (samples.std(0) / N**0.5)
    print(f"{name:>18}: estimate {samples.mean(0).numpy().round(4)}, exact {exact.numpy().round(4)}, "
          f"in error bars {z.numpy().round(1)}")
    if name.startswith("constant"):
        assert (z.abs() < 4).all()
    else:
        assert (z.abs() > 10).any() and samples.mean(0).abs().max() < 4 * (samples.std(0) / N**0.5).max()

# %% [markdown]
# ## 3. No value network
#
# *Train CartPole with `PolicyNet(4, 2, baseline=False)` (standardised returns only: a constant baseline
# per batch) for the same budget. Predict first: faster, slower, or the same?*
#
# Standardising subtracts the batch mean of all returns-to-go: one number for every step, already a
# baseline. A learned $V(s)$ can do better, since $G_t$ of CartPole depends on how well balanced the state
# is; but it starts from nothing and has only 30 updates to learn, while the batch mean is right from the
# first batch. Both are unbiased. So the prediction: at this budget, about the same, with the seed
# deciding which is ahead; a value network pays off on longer runs and harder tasks, where returns vary
# far more from state to state. Two seeds each, the area under the learning curve (the mean return over
# all 480 training episodes) and the last 32 episodes:

# %%
make_cartpole = lambda: gym.make("CartPole-v1", max_episode_steps=200)
results = {}
for name, baseline in (("value network", True), ("standardised returns only", False)):
    for seed in (0, 1):
        seed_everything(seed)
        model = PolicyNet(4, 2, hidden=64, baseline=baseline)
        collector = EpisodeCollector([make_cartpole() for _ in range(16)], model, seed=seed)
        fit(model, collector, steps=30, step_fn=reinforce_step(0.99), lr=2e-2, device="cpu", verbose=False)
        returns = np.array(collector.returns)
        results[name, seed] = (returns[-32:].mean(), returns.mean())
        print(f"{name:>26}, seed {seed}: last 32 episodes {returns[-32:].mean():6.1f}, mean over all "
              f"{len(returns)} episodes {returns.mean():6.1f}")
gaps = [results["value network", s][1] - results["standardised returns only", s][1] for s in (0, 1)]
print(f"value network minus standardised returns, mean over all episodes: {gaps[0]:+.1f} and {gaps[1]:+.1f}")
assert all(last > 100 for last, _ in results.values()), "with either baseline REINFORCE learns CartPole"
assert max(abs(g) for g in gaps) < 40, "at this budget the two baselines are close"

# %% [markdown]
# ## 4. One frame is not enough?
#
# *Train the pixel game on `prepro(frame)` alone instead of the difference of two frames (write a small
# `gym.ObservationWrapper`). Which information is lost, and which is gained (the paddle when it did not
# move)? Compare the held-out win rates.*
#
# One frame shows where the ball and the paddle are, but not which way the ball moves: two balls in the
# same cell, one going left and one right, land in different columns. The difference shows the direction
# (+1 where the ball arrived, -1 where it left) but hides whatever did not move, here the paddle when it
# is stuck against a wall. Does the direction matter in *this* game? The paddle moves one column a step,
# as fast as the ball moves sideways, so a policy that only steps toward the ball's current column, which
# one frame is enough for, should catch most balls. The rule written by hand measures that ceiling:

# %%
follow_wins = []
for i in range(500):
    game = CatchPixels(8)
    game.reset(seed=10_000 + i)
    done = False
    while not done:
        _, reward, done, _, _ = game.step(int(game.ball[1] > game.paddle))  # step toward the ball
    follow_wins.append(reward > 0)
print(f"'step toward the ball' by hand: win rate {np.mean(follow_wins):.3f} on the 500 held-out episodes")
assert np.mean(follow_wins) > 0.9

# %% [markdown]
# So the prediction: with one frame the policy learns about as well as with the difference; the direction
# would matter in a game whose ball outruns the paddle (as in Pong, where the ball also comes and goes),
# and there the difference frame (or a stack of frames, as in DQN's Atari agents) is needed.

# %%
class OneFrame(gym.ObservationWrapper):
    def __init__(self, env):
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0.0, 1.0, (64,), np.float32)

    def observation(self, frame):
        return prepro(frame, top=4, bottom=None)


makers = {"difference of two frames": lambda: PixelDifference(CatchPixels(8), top=4, bottom=None),
          "one frame": lambda: OneFrame(CatchPixels(8))}
uniform = nn.Linear(64, 2)
nn.init.zeros_(uniform.weight)
nn.init.zeros_(uniform.bias)
rates = {"random policy": np.mean([g > 0 for g in evaluate_policy(makers["one frame"], uniform, 500, greedy=False)])}
for name, make in makers.items():
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    collector = EpisodeCollector([make() for _ in range(32)], policy, seed=0)
    fit(policy, collector, steps=150, step_fn=reinforce_step(0.99), lr=5e-3, device="cpu", verbose=False)
    rates[name] = np.mean([g > 0 for g in evaluate_policy(make, policy, 500, greedy=False)])
for name, rate in rates.items():
    print(f"{name:>25}: held-out win rate {rate:.3f}")
assert min(rates["one frame"], rates["difference of two frames"]) > rates["random policy"] + 0.3
assert abs(rates["one frame"] - rates["difference of two frames"]) < 0.1, "in this game one frame is enough"

# %% [markdown]
# ## 5. Terminated or truncated
#
# *In DQN, store the time limit as the end of the episode (`terminated or truncated`). What is the
# target of the 200th step then? A balanced pole looks the same at step 10 and at step 199: to what value
# does the TD target drive $Q$ of such a state, with and without the mistake? (Iterate the target on one
# state, $\gamma = 0.99$, one transition in 200 marked as the end.)*
#
# At the 200th step the target becomes $y = r = 1$ instead of $1 + \gamma \max_{a'} Q(s', a')$. The state
# does not contain the clock: a well-balanced pole at step 199 looks like one at step 10. So the network
# sees the same state with two kinds of target, and regresses on their average. Take the simplest case,
# one balanced state, reward 1 every step, and one transition in 200 marked as the end. The TD target's
# fixed point is
#
# $$Q = 1 + \gamma\,(1 - p)\,Q \;\Rightarrow\; Q = \frac{1}{1 - \gamma (1 - p)},$$
#
# with $p = 0$ (correct: bootstrap through the time limit) $Q = 1/(1-\gamma) = 100$ for $\gamma = 0.99$;
# with $p = 1/200$ (the mistake) $Q = 1/(1 - 0.99 \cdot 0.995) \approx 66.9$. The network believes that a
# balanced pole is worth a third less, everywhere, because it cannot tell when the limit comes. Iterating
# the DQN target on that one state (a batch in which 1 of 200 transitions carries the flag) shows it:

# %%
gamma, p = 0.99, 1 / 200
flags = torch.zeros(200)
flags[-1] = 1.0
values = {}
for name, terminated in (("bootstrap through the limit", torch.zeros(200)), ("limit stored as terminal", flags)):
    q = torch.tensor(0.0)
    for _ in range(5000):
        q = (1.0 + gamma * (1.0 - terminated) * q).mean()  # the mean TD target over the batch
    values[name] = float(q)
    print(f"{name:>28}: fixed point of Q {float(q):.2f}")
assert abs(values["bootstrap through the limit"] - 1 / (1 - gamma)) < 0.01
assert abs(values["limit stored as terminal"] - 1 / (1 - gamma * (1 - p))) < 0.01
print(f"formula: {1 / (1 - gamma):.2f} and {1 / (1 - gamma * (1 - p)):.2f}")
