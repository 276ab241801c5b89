"""karpa_lab.rl: returns by hand, the pixel game through gymnasium's own checker, REINFORCE against the exact
gradient of a bandit, the replay buffer, and DQN's pieces."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from torch import nn

from karpa_lab.rl import (
    DQN,
    CatchPixels,
    EpisodeCollector,
    PixelDifference,
    PolicyNet,
    ReplayBuffer,
    discounted_returns,
    evaluate_policy,
    linear_schedule,
    play_episodes,
    policy_actions,
    policy_gradient_loss,
    prepro,
    reinforce_step,
    standardise,
    train_until,
)


def test_discounted_returns_by_hand_and_reset_at_episode_ends():
    rewards = torch.tensor([1.0, 0.0, 2.0, 5.0, 1.0])
    dones = torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0])  # two episodes: steps 0-2 and 3-4
    gamma = 0.5
    by_hand = [1 + 0.5 * (0 + 0.5 * 2), 0 + 0.5 * 2, 2, 5 + 0.5 * 1, 1]
    assert torch.allclose(discounted_returns(rewards, dones, gamma), torch.tensor(by_hand))
    no_reset = discounted_returns(rewards, torch.zeros(5), gamma)  # the bug the dones prevent
    assert not torch.allclose(no_reset, torch.tensor(by_hand))
    columns = discounted_returns(torch.stack([rewards, rewards], 1), torch.stack([dones, dones], 1), gamma)
    assert torch.allclose(columns[:, 1], torch.tensor(by_hand))


def test_discounted_returns_rejects_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        discounted_returns(torch.zeros(3), torch.zeros(4), 0.9)
    with pytest.raises(ValueError, match="gamma"):
        discounted_returns(torch.zeros(3), torch.zeros(3), 1.5)


def test_reinforce_gradient_matches_the_exact_gradient_of_a_bandit():
    torch.manual_seed(0)
    means = torch.tensor([1.0, 2.0, 0.5])
    theta = torch.tensor([0.3, -0.2, 0.1], requires_grad=True)
    exact = torch.autograd.grad((torch.softmax(theta, 0) * means).sum(), theta)[0]
    n = 20_000
    actions = torch.multinomial(torch.softmax(theta.detach(), 0), n, replacement=True)
    rewards = means[actions] + torch.randn(n)
    log_probs = torch.log_softmax(theta, 0)[actions]
    estimate = -torch.autograd.grad(policy_gradient_loss(log_probs, rewards), theta)[0]
    per_sample = (torch.eye(3)[actions] - torch.softmax(theta.detach(), 0)) * rewards[:, None]
    assert torch.allclose(per_sample.mean(0), estimate, atol=1e-5)  # the closed form of the score function
    error_bar = per_sample.std(0) / n**0.5
    assert ((estimate - exact).abs() < 4 * error_bar).all()
    baseline = torch.full((n,), float(means.mean()))
    with_baseline = (torch.eye(3)[actions] - torch.softmax(theta.detach(), 0)) * (rewards - baseline)[:, None]
    assert with_baseline.var(0).sum() < per_sample.var(0).sum()


def test_policy_gradient_loss_detaches_the_return_and_checks_shapes():
    log_probs = torch.zeros(4, requires_grad=True)
    returns = torch.arange(4.0, requires_grad=True)
    policy_gradient_loss(log_probs, returns, torch.ones(4)).backward()
    assert returns.grad is None and torch.allclose(log_probs.grad, -(torch.arange(4.0) - 1) / 4)
    with pytest.raises(ValueError, match="one shape"):
        policy_gradient_loss(torch.zeros(4), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="two values"):
        standardise(torch.ones(1))


def test_catch_pixels_passes_gymnasiums_checker_and_rejects_bad_actions():
    env = CatchPixels(8)
    check_env(env, skip_render_check=False)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action 0"):
        env.step(2)
    with pytest.raises(ValueError, match="odd paddle"):
        CatchPixels(8, paddle=2)


def test_catch_pixels_rules_and_prepro():
    env = CatchPixels(8)
    frame, _ = env.reset(seed=3)
    image = prepro(frame, top=4, bottom=None).reshape(8, 8)
    assert image.sum() == 1 + 3 and image[0].sum() == 1 and image[7].sum() == 3  # ball on top, paddle below
    steps, done, reward = 0, False, 0.0
    while not done:
        _, reward, done, _, _ = env.step(int(env.ball[1] + env.vx > env.paddle))  # follow the ball
        steps += 1
    assert steps == 7 and reward in (1.0, -1.0)
    pong_like = np.zeros((210, 160, 3), np.uint8)
    pong_like[:] = (144, 72, 17)
    pong_like[101, 80] = (236, 236, 236)
    assert prepro(pong_like).shape == (6400,) and prepro(pong_like).sum() == 1


def test_a_following_policy_beats_a_random_one_on_held_out_episodes():
    make = lambda: PixelDifference(CatchPixels(8), top=4, bottom=None)
    random_policy = nn.Linear(64, 2)
    nn.init.zeros_(random_policy.weight)
    returns = evaluate_policy(make, random_policy, episodes=200, greedy=False)
    assert 0.15 < np.mean([r > 0 for r in returns]) < 0.6


def test_play_episodes_reports_nan_observations_and_nan_policies():
    class NaNEnv(gym.Env):
        observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return np.array([np.nan, 0.0], np.float32), {}

    with pytest.raises(FloatingPointError, match="observation"):
        play_episodes([NaNEnv()], lambda obs: torch.zeros(len(obs), dtype=torch.long))
    broken = nn.Linear(4, 2)
    with torch.no_grad():
        broken.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="policy output NaN"):
        policy_actions(broken)(torch.zeros(3, 4))


def test_play_episodes_lays_episodes_end_to_end():
    envs = [gym.make("CartPole-v1", max_episode_steps=30) for _ in range(3)]
    episodes = play_episodes(envs, lambda obs: torch.ones(len(obs), dtype=torch.long), seed=0)
    lengths = [int(r) for r in episodes.returns]
    assert episodes.dones.sum() == 3 and len(episodes.actions) == sum(lengths)
    assert episodes.observations.shape == (sum(lengths), 4)
    assert torch.equal(play_episodes(envs, lambda obs: torch.ones(len(obs), dtype=torch.long), seed=0).observations,
                       episodes.observations)


def test_reinforce_step_through_fit_improves_cartpole():
    from karpa_lab import fit

    torch.manual_seed(0)
    model = PolicyNet(4, 2, hidden=32)
    collector = EpisodeCollector([gym.make("CartPole-v1", max_episode_steps=200) for _ in range(8)], model)
    fit(model, collector, steps=15, step_fn=reinforce_step(0.99), lr=2e-2, device="cpu", verbose=False)
    first, last = np.mean(collector.returns[:16]), np.mean(collector.returns[-16:])
    assert last > first + 20, (first, last)


def test_replay_buffer_ring_and_sampling():
    buffer = ReplayBuffer(3, (2,), seed=0)
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(1)
    for i in range(5):
        buffer.push(np.full(2, i), i % 2, float(i), np.full(2, i + 1), i == 4)
    assert len(buffer) == 3 and sorted(buffer.rewards.tolist()) == [2.0, 3.0, 4.0]  # the oldest two dropped
    batch = buffer.sample(50)
    assert batch["obs"].shape == (50, 2) and set(batch["rewards"].tolist()) <= {2.0, 3.0, 4.0}
    assert torch.equal(batch["next_obs"], batch["obs"] + 1)
    assert torch.equal(batch["terminated"], (batch["rewards"] == 4).float())


def test_dqn_target_is_bellman_and_time_limits_bootstrap():
    torch.manual_seed(0)
    q = nn.Linear(4, 2)
    agent = DQN(q, gym.make("CartPole-v1"), learning_starts=10, gamma=0.9, target_every=100)
    batch = agent.collect()
    loss = agent.step(q, batch)
    with torch.no_grad():
        y = batch["rewards"] + 0.9 * (1 - batch["terminated"]) * q(batch["next_obs"]).max(-1).values
        q_sa = q(batch["obs"]).gather(1, batch["actions"][:, None]).squeeze(1)
    assert torch.allclose(loss, torch.nn.functional.huber_loss(q_sa, y))
    assert agent.t == 11 and len(agent.buffer) == 11
    eps = linear_schedule(1.0, 0.1, 10)
    assert eps(0) == 1.0 and abs(eps(5) - 0.55) < 1e-12 and eps(100) == pytest.approx(0.1)


def test_dqn_snapshots_are_the_weights_after_that_many_updates():
    make = lambda: gym.make("CartPole-v1", max_episode_steps=200)

    def agent_trained(max_updates: int, **options) -> DQN:
        torch.manual_seed(0)
        q = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
        agent = DQN(q, make(), learning_starts=100, seed=0, **options)
        train_until(agent, make, goal=1e9, max_updates=max_updates, eval_every=100, episodes=2)
        return agent

    torch.manual_seed(0)
    fresh = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2)).state_dict()
    agent = agent_trained(300, snapshot_every=100)
    assert sorted(agent.snapshots) == [0, 100, 200, 300] and agent.updates == 300
    same = lambda a, b: all(torch.equal(a[k], b[k]) for k in a)
    assert same(agent.snapshots[0], fresh)  # after 0 updates: the untrained weights
    assert same(agent.snapshots[300], agent.q_net.state_dict())  # the weights train_until stopped with
    assert not same(agent.snapshots[0], agent.snapshots[300])  # copies, not views of the training weights
    assert same(agent.snapshots[200], agent_trained(200).q_net.state_dict())  # a run stopped at 200 updates
    assert agent_trained(200).snapshots == {}
    with pytest.raises(ValueError, match="snapshot_every"):
        DQN(nn.Linear(4, 2), make(), snapshot_every=0)
