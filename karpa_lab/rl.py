"""Reinforcement learning: returns, the policy-gradient loss, a pixel game, replay and DQN (lesson 14).

- :func:`discounted_returns`, :func:`standardise`, :func:`policy_gradient_loss`: REINFORCE (Williams
  1992), whose loss has the gradient  -E[ sum_t grad log pi(a_t | s_t) (G_t - b(s_t)) ].
- :class:`CatchPixels`: a paddle-and-ball game drawn in Atari Pong's colours, a Gymnasium ``Env`` that
  returns RGB frames; :func:`prepro` and :class:`PixelDifference`: the preprocessing of Karpathy's
  "Pong from Pixels" (crop, downsample, erase the background, the difference of two frames).
- :func:`play_episodes`: several environments stepped in lock-step, one batched call of the policy a step.
- :class:`ReplayBuffer`, :func:`linear_schedule`, :class:`DQN`: deep Q-learning (Mnih et al. 2015).

Why ``karpa_lab.fit`` still trains all of it. A supervised step reads a batch of fixed data; an RL step
first *collects* its batch with the current policy, then learns from it. ``fit`` takes a zero-argument
callable as its data, so the collector is the data (it plays with the very model ``fit`` is training) and
the learning is a ``step_fn``: ``fit(policy, EpisodeCollector(envs, policy), step_fn=reinforce_step(0.99))``.
``fit`` then gives RL what it gives every lesson: the optimizer, gradient clipping, the NaN check, the
history and the progress line. Everything runs on the CPU: the networks are tiny and an environment steps
one state at a time, so a GPU would mostly wait for transfers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from karpa_lab.train import fit

__all__ = ["DQN", "CatchPixels", "EpisodeCollector", "Episodes", "PixelDifference", "PolicyNet", "ReplayBuffer",
           "discounted_returns", "evaluate_policy", "linear_schedule", "play_episodes", "policy_actions",
           "policy_gradient_loss", "prepro", "reinforce_step", "standardise", "train_until"]


# ------------------------------------------------------------------------------ returns and the loss
def discounted_returns(rewards: torch.Tensor, dones: torch.Tensor, gamma: float) -> torch.Tensor:
    """Returns-to-go, computed backwards in time:  G_t = r_t + gamma (1 - d_t) G_{t+1}.

    ``rewards`` and ``dones`` are (T,) or (T, N), time first; ``d_t = 1`` where step t ends an episode, so
    no return flows back across an episode boundary (episodes may lie end to end in one tensor). The
    step after the last one contributes nothing (G_T = 0). Returns a float32 tensor of ``rewards``'s shape.
    """
    if rewards.shape != dones.shape:
        raise ValueError(f"rewards {tuple(rewards.shape)} and dones {tuple(dones.shape)} must have the same shape")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"the discount gamma must be in [0, 1], got {gamma}")
    r = rewards.detach().double().cpu().numpy()
    keep = 1.0 - dones.detach().double().cpu().numpy()
    out = np.empty_like(r)
    running = np.zeros_like(r[0]) if r.ndim > 1 else 0.0
    for t in range(len(r) - 1, -1, -1):
        running = r[t] + gamma * keep[t] * running
        out[t] = running
    return torch.from_numpy(out).float()


def standardise(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / (std + eps): returns on one scale whatever the game's rewards (a constant baseline too)."""
    if x.numel() < 2:
        raise ValueError(f"standardising needs at least two values, got {x.numel()}")
    return (x - x.mean()) / (x.std() + eps)


def policy_gradient_loss(log_probs: torch.Tensor, returns: torch.Tensor,
                         baseline: torch.Tensor | None = None) -> torch.Tensor:
    """The REINFORCE surrogate loss  L(theta) = -(1/T) sum_t log pi_theta(a_t | s_t) (G_t - b_t).

    ``log_probs`` (T,) carries the gradient; ``returns`` G (T,) and ``baseline`` b (T,) are constants (they are
    detached: the return is a sampled number, not a function of theta). Its gradient is minus the
    score-function estimate of grad J. Subtracting b (any function of the state, not of the action) leaves
    that estimate unbiased and, for a good b, lowers its variance.
    """
    if log_probs.shape != returns.shape or (baseline is not None and baseline.shape != returns.shape):
        raise ValueError(
            f"log_probs {tuple(log_probs.shape)}, returns {tuple(returns.shape)} and baseline "
            f"{None if baseline is None else tuple(baseline.shape)} must have one shape (one value per step)"
        )
    advantage = returns if baseline is None else returns - baseline
    return -(log_probs * advantage.detach()).mean()


# --------------------------------------------------------------------------------- the pixel game
class CatchPixels(gym.Env):
    """Catch the ball: a paddle-and-ball game drawn in Pong's colours, small enough to learn in seconds.

    A ball starts in the top row of a ``size`` x ``size`` board at a random column and falls one row a step,
    moving one column left or right and bouncing off the side walls. The paddle (``paddle`` cells wide) in
    the bottom row moves one column left (action 0) or right (action 1) every step: two actions, like
    Pong's UP and DOWN. When the ball reaches the bottom row (after ``size - 1`` steps) the episode ends
    with reward +1 if the paddle is under it, else -1.

    Observation: an RGB frame, uint8 (4 + 2 size, 2 size, 3): a 4-pixel wall on top, then each cell as 2x2
    pixels, background (144, 72, 17), paddle (92, 186, 92) and ball (236, 236, 236) as in Atari Pong.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    BACKGROUND, PADDLE, BALL, WALL, TOP = (144, 72, 17), (92, 186, 92), (236, 236, 236), (236, 236, 236), 4

    def __init__(self, size: int = 10, paddle: int = 3, render_mode: str | None = None):
        if size < 4 or paddle < 1 or paddle % 2 == 0 or paddle >= size:
            raise ValueError(f"need size >= 4 and an odd paddle width below it, got size={size}, paddle={paddle}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.size, self.half, self.render_mode = size, paddle // 2, render_mode
        self.observation_space = spaces.Box(0, 255, (self.TOP + 2 * size, 2 * size, 3), np.uint8)
        self.action_space = spaces.Discrete(2)
        self.ball, self.vx, self.paddle, self._empty = (0, 0), 1, self.half, None

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.ball = (0, int(self.np_random.integers(self.size)))
        self.vx = int(self.np_random.choice([-1, 1]))
        self.paddle = int(self.np_random.integers(self.half, self.size - self.half))
        return self._frame(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"CatchPixels takes action 0 (left) or 1 (right), got {action!r}")
        self.paddle = min(max(self.paddle + (1 if int(action) == 1 else -1), self.half), self.size - 1 - self.half)
        row, col = self.ball
        if not 0 <= col + self.vx < self.size:
            self.vx = -self.vx
        self.ball = (row + 1, col + self.vx)
        terminated = self.ball[0] == self.size - 1
        reward = (1.0 if abs(self.ball[1] - self.paddle) <= self.half else -1.0) if terminated else 0.0
        return self._frame(), reward, terminated, False, {}

    def render(self) -> np.ndarray:
        return self._frame()

    def _frame(self) -> np.ndarray:
        if self._empty is None:  # the wall and the background, drawn once
            self._empty = np.empty(self.observation_space.shape, np.uint8)
            self._empty[:] = self.BACKGROUND
            self._empty[: self.TOP] = self.WALL
        frame = self._empty.copy()
        top = self.TOP + 2 * (self.size - 1)
        frame[top: top + 2, 2 * (self.paddle - self.half): 2 * (self.paddle + self.half + 1)] = self.PADDLE
        row, col = self.TOP + 2 * self.ball[0], 2 * self.ball[1]
        frame[row: row + 2, col: col + 2] = self.BALL
        return frame


def prepro(frame: np.ndarray, top: int = 35, bottom: int | None = 195,
           background: tuple[int, ...] = (144, 109)) -> np.ndarray:
    """Karpathy's ``prepro``: crop rows [top, bottom), keep every second pixel of the red channel, set the
    background values to 0 and everything else to 1. Defaults are Atari Pong's (210x160x3 -> 80x80).

    frame (H, W, 3) uint8 -> a flat float32 vector of ceil((bottom - top) / 2) * ceil(W / 2) zeros and ones.
    """
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"prepro needs an RGB frame (H, W, 3), got shape {frame.shape}")
    image = frame[top:bottom:2, ::2, 0]
    keep = np.ones(image.shape, bool)
    for value in background:
        keep &= image != value
    return keep.astype(np.float32).ravel()


class PixelDifference(gym.Wrapper):
    """Observe ``prepro(frame_t) - prepro(frame_{t-1})`` (zeros after a reset): what moved, and which way.

    One frame shows where the ball is; the difference of two also shows where it goes (+1 where it arrived,
    -1 where it left), which a policy that sees one observation at a time needs.
    """

    def __init__(self, env: gym.Env, **prepro_args):
        super().__init__(env)
        self.prepro_args = prepro_args
        size = prepro(env.observation_space.sample(), **prepro_args).size
        self.observation_space = spaces.Box(-1.0, 1.0, (size,), np.float32)
        self.previous = np.zeros(size, np.float32)

    def reset(self, **kwargs):
        frame, info = self.env.reset(**kwargs)
        self.previous = prepro(frame, **self.prepro_args)
        return np.zeros_like(self.previous), info

    def step(self, action):
        frame, reward, terminated, truncated, info = self.env.step(action)
        current = prepro(frame, **self.prepro_args)
        difference, self.previous = current - self.previous, current
        return difference, reward, terminated, truncated, info


# ------------------------------------------------------------------------------------ playing
@dataclass
class Episodes:
    """Whole episodes laid end to end, time first: T steps in all."""

    observations: torch.Tensor  # (T, *obs_shape) float32, the state each action was taken in
    actions: torch.Tensor  # (T,) int64
    rewards: torch.Tensor  # (T,) float32
    dones: torch.Tensor  # (T,) float32, 1 at the last step of each episode
    returns: list[float]  # the undiscounted total reward of each episode


def play_episodes(envs: list[gym.Env], act: Callable[[torch.Tensor], torch.Tensor],
                  seed: int | None = None) -> Episodes:
    """Play one episode in each of ``envs``, all in lock-step: one batched call of ``act`` per time step.

    ``act(observations)`` takes (n, *obs_shape) float32 for the n episodes still running and returns n
    actions. With ``seed``, env i is reset with ``seed + i`` (a fixed, reproducible set of episodes).
    A NaN observation, or actions of the wrong number, stop with an error that says which.
    """
    obs = [env.reset(seed=None if seed is None else seed + i)[0] for i, env in enumerate(envs)]
    running = list(range(len(envs)))
    steps: list[list[tuple[np.ndarray, int, float]]] = [[] for _ in envs]
    while running:
        batch = torch.as_tensor(np.stack([obs[i] for i in running]), dtype=torch.float32)
        if not torch.isfinite(batch).all():
            raise FloatingPointError(f"an environment returned a NaN or infinite observation: {batch.tolist()}")
        actions = act(batch).tolist()
        if len(actions) != len(running):
            raise ValueError(f"act returned {len(actions)} actions for {len(running)} observations")
        still = []
        for i, row, action in zip(running, batch.numpy(), actions):
            obs[i], reward, terminated, truncated, _ = envs[i].step(action)
            steps[i].append((row, action, float(reward)))
            if not (terminated or truncated):
                still.append(i)
        running = still
    flat = [s for episode in steps for s in episode]
    dones = [float(t == len(episode) - 1) for episode in steps for t in range(len(episode))]
    return Episodes(torch.as_tensor(np.stack([s[0] for s in flat])), torch.tensor([s[1] for s in flat]),
                    torch.tensor([s[2] for s in flat]), torch.tensor(dones),
                    [sum(s[2] for s in episode) for episode in steps])


def policy_actions(model: nn.Module, greedy: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    """``act`` for :func:`play_episodes` from a model that maps observations to one score per action:
    sample a ~ softmax(logits) (a policy), or take the arg-max (``greedy``: a policy's mode, or DQN's Q)."""

    @torch.no_grad()
    def act(obs: torch.Tensor) -> torch.Tensor:
        device = next(model.parameters()).device
        scores = model(obs.to(device)).float().cpu()
        if not torch.isfinite(scores).all():
            raise FloatingPointError("the policy output NaN or infinite scores: lower the learning rate or clip "
                                     "the gradients")
        if greedy:
            return scores.argmax(-1)
        return torch.multinomial(torch.softmax(scores, -1), 1).squeeze(-1)

    return act


def evaluate_policy(make_env: Callable[[], gym.Env], model: nn.Module, episodes: int = 20,
                    seed: int = 10_000, greedy: bool = True) -> list[float]:
    """The returns of ``episodes`` held-out episodes (env i seeded ``seed + i``), all played at once."""
    envs = [make_env() for _ in range(episodes)]
    return play_episodes(envs, policy_actions(model, greedy), seed=seed).returns


# ------------------------------------------------------------------------------------- REINFORCE
class PolicyNet(nn.Module):
    """A policy pi(a | s) = softmax(MLP(s)) and, with ``baseline=True``, a value network V(s) beside it.

    ``forward`` gives the logits (B, n_actions); ``value(s)`` gives V (B,). Two separate networks, so the
    value's regression loss cannot disturb the policy's features (and Adam's step does not see its scale).
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: int = 64, baseline: bool = True):
        super().__init__()
        mlp = lambda out: nn.Sequential(nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, out))
        self.policy = mlp(n_actions)
        self.critic = mlp(1) if baseline else None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.policy(obs)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        if self.critic is None:
            raise ValueError("this PolicyNet was built with baseline=False: it has no value network")
        return self.critic(obs).squeeze(-1)


class EpisodeCollector:
    """``fit``'s data for on-policy learning: each call plays one episode per environment with the current
    policy (sampling its actions) and returns them as :class:`Episodes`. It keeps every episode's return
    and the number of environment steps taken when it ended (``returns``, ``env_steps``)."""

    def __init__(self, envs: list[gym.Env], model: nn.Module, seed: int | None = 0):
        self.envs, self.act = envs, policy_actions(model)
        self.seed, self.calls = seed, 0
        self.returns: list[float] = []
        self.env_steps: list[int] = []

    def __call__(self) -> Episodes:
        seed = None if self.seed is None else self.seed + self.calls * len(self.envs)
        episodes = play_episodes(self.envs, self.act, seed=seed)
        self.calls += 1
        total = self.env_steps[-1] if self.env_steps else 0
        self.env_steps.extend([total + len(episodes.actions)] * len(episodes.returns))
        self.returns.extend(episodes.returns)
        return episodes


def reinforce_step(gamma: float) -> Callable[[nn.Module, Episodes], dict[str, torch.Tensor]]:
    """``fit``'s step_fn for REINFORCE: the policy-gradient loss on standardised returns-to-go.

    With a model that has a value network (:class:`PolicyNet` with ``baseline=True``) the weights are the
    standardised advantages G_t - V(s_t), and V is regressed on G (mean squared error) in the same step.
    """

    def step(model: nn.Module, episodes: Episodes) -> dict[str, torch.Tensor]:
        returns = discounted_returns(episodes.rewards, episodes.dones, gamma)
        log_probs = F.log_softmax(model(episodes.observations), -1)
        taken = log_probs.gather(1, episodes.actions[:, None]).squeeze(1)
        mean_return = torch.tensor(sum(episodes.returns) / len(episodes.returns))
        if getattr(model, "critic", None) is None:
            return {"loss": policy_gradient_loss(taken, standardise(returns)), "return": mean_return}
        values = model.value(episodes.observations)
        advantage = standardise(returns - values.detach())
        value_loss = F.mse_loss(values, returns)
        return {"loss": policy_gradient_loss(taken, advantage) + value_loss, "value_loss": value_loss,
                "return": mean_return}

    return step


# ------------------------------------------------------------------------------------------- DQN
def linear_schedule(start: float, end: float, duration: int) -> Callable[[int], float]:
    """eps(t) = start + (end - start) min(1, t / duration): exploration that fades, then stays at ``end``."""
    if duration <= 0:
        raise ValueError(f"the schedule's duration must be positive, got {duration}")
    return lambda t: start + (end - start) * min(1.0, t / duration)


class ReplayBuffer:
    """The last ``capacity`` transitions (s, a, r, s', terminated) in a ring; ``sample`` draws a batch
    uniformly at random (with replacement), which breaks up the correlation of consecutive steps."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], seed: int = 0):
        if capacity < 1:
            raise ValueError(f"a replay buffer needs a capacity of at least 1, got {capacity}")
        self.capacity, self.size, self.next = capacity, 0, 0
        self.obs = np.zeros((capacity, *obs_shape), np.float32)
        self.next_obs = np.zeros((capacity, *obs_shape), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def push(self, obs, action: int, reward: float, next_obs, terminated: bool) -> None:
        i = self.next
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.next_obs[i], self.terminated[i] = next_obs, float(terminated)
        self.next, self.size = (i + 1) % self.capacity, min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        if self.size == 0:
            raise ValueError("the replay buffer is empty: push transitions before sampling")
        idx = self.rng.integers(0, self.size, batch_size)
        return {name: torch.from_numpy(getattr(self, name)[idx])
                for name in ("obs", "actions", "rewards", "next_obs", "terminated")}


class DQN:
    """Deep Q-learning (Mnih et al. 2015) as ``fit``'s data (:meth:`collect`) and step_fn (:meth:`step`).

    ``collect`` takes ``train_every`` epsilon-greedy steps in ``env`` (a random action with probability
    eps(t), else argmax_a Q(s, a)), stores them in the replay buffer, and returns a sampled batch; the first
    call first fills ``learning_starts`` random steps. ``step`` is the temporal-difference loss

        y = r + gamma (1 - terminated) max_a' Q_target(s', a'),   loss = Huber(Q(s, a) - y)

    with Q_target a copy of Q refreshed every ``target_every`` updates (``target_every=1``: no target
    network). eps(t) defaults to ``linear_schedule(1.0, 0.05, 2000)``. An episode cut by a time limit is
    not terminated: its last target still bootstraps. ``buffer_size=batch_size`` learns from the latest
    steps only (no replay).

    With ``snapshot_every=k`` the agent keeps copies of Q's weights after 0, k, 2k, ... updates in
    ``snapshots`` ({updates: state_dict}); :func:`train_until` adds the weights it stops with. Load one into
    a network of the same shape to see what the agent believed at that point of its training.
    """

    def __init__(self, q_net: nn.Module, env: gym.Env, *, gamma: float = 0.99, buffer_size: int = 10_000,
                 batch_size: int = 64, learning_starts: int = 500, train_every: int = 1, target_every: int = 250,
                 epsilon: Callable[[int], float] | None = None, snapshot_every: int | None = None, seed: int = 0):
        if snapshot_every is not None and snapshot_every < 1:
            raise ValueError(f"snapshot_every must be a positive number of updates (or None), got {snapshot_every}")
        self.q_net, self.env, self.gamma, self.batch_size = q_net, env, gamma, batch_size
        self.snapshot_every = snapshot_every
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.learning_starts, self.train_every, self.target_every, self.epsilon = (
            learning_starts, train_every, target_every, epsilon or linear_schedule(1.0, 0.05, 2000))
        self.target = _frozen_copy(q_net)
        self.buffer = ReplayBuffer(buffer_size, env.observation_space.shape, seed)
        self.rng = np.random.default_rng(seed)
        self.obs, _ = env.reset(seed=seed)
        env.action_space.seed(seed)
        self.t, self.updates, self.episode_return = 0, 0, 0.0
        self.returns: list[float] = []
        self.env_steps: list[int] = []

    def act(self, obs: np.ndarray) -> int:
        if self.rng.random() < self.epsilon(self.t):
            return int(self.env.action_space.sample())
        return int(policy_actions(self.q_net, greedy=True)(torch.as_tensor(obs, dtype=torch.float32)[None])[0])

    def env_step(self, random: bool = False) -> None:
        action = int(self.env.action_space.sample()) if random else self.act(self.obs)
        next_obs, reward, terminated, truncated, _ = self.env.step(action)
        self.buffer.push(self.obs, action, reward, next_obs, terminated)
        self.t, self.episode_return = self.t + 1, self.episode_return + float(reward)
        self.obs = next_obs
        if terminated or truncated:
            self.returns.append(self.episode_return)
            self.env_steps.append(self.t)
            self.obs, self.episode_return = self.env.reset()[0], 0.0

    def collect(self) -> dict[str, torch.Tensor]:
        while self.t < self.learning_starts:
            self.env_step(random=True)
        for _ in range(self.train_every):
            self.env_step()
        return self.buffer.sample(self.batch_size)

    def keep_snapshot(self) -> None:
        """Store a copy of Q's weights now, under the number of updates made so far."""
        self.snapshots[self.updates] = {k: v.detach().clone() for k, v in self.q_net.state_dict().items()}

    def step(self, q_net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.snapshot_every is not None and self.updates % self.snapshot_every == 0:
            self.keep_snapshot()
        if self.updates % self.target_every == 0:
            self.target.load_state_dict(q_net.state_dict())
        self.updates += 1
        with torch.no_grad():
            best_next = self.target(batch["next_obs"]).max(-1).values
            y = batch["rewards"] + self.gamma * (1.0 - batch["terminated"]) * best_next
        q = q_net(batch["obs"]).gather(1, batch["actions"][:, None]).squeeze(1)
        return F.smooth_l1_loss(q, y)


def _frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` without gradients: the target network."""
    target = copy.deepcopy(model)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


def train_until(agent: DQN, make_env: Callable[[], gym.Env], goal: float, max_updates: int, *, eval_every: int = 250,
                episodes: int = 20, lr: float = 5e-4, seed: int = 10_000) -> list[tuple[int, float]]:
    """Train ``agent.q_net`` with ``fit`` in rounds of ``eval_every`` updates, each round

        fit(q_net, agent.collect, steps=eval_every, step_fn=agent.step, optimizer=adam, clip_grad=10)

    followed by a greedy evaluation on ``episodes`` held-out episodes (seeds ``seed``, ``seed + 1``, ...);
    stop after the first round whose mean return reaches ``goal``, or after ``max_updates``. One Adam
    optimizer carries over the rounds. Returns [(environment steps so far, mean greedy return)] per round.
    An agent built with ``snapshot_every`` also keeps the weights it stops with in ``agent.snapshots``.
    """
    if max_updates < eval_every:
        raise ValueError(f"max_updates ({max_updates}) must be at least eval_every ({eval_every})")
    optimizer = torch.optim.Adam(agent.q_net.parameters(), lr=lr)
    evaluations: list[tuple[int, float]] = []
    for _ in range(max_updates // eval_every):
        fit(agent.q_net, agent.collect, steps=eval_every, step_fn=agent.step, optimizer=optimizer, clip_grad=10.0,
            device="cpu", verbose=False)
        evaluations.append((agent.t, float(np.mean(evaluate_policy(make_env, agent.q_net, episodes, seed)))))
        if evaluations[-1][1] >= goal:
            break
    if agent.snapshot_every is not None:
        agent.keep_snapshot()
    return evaluations
