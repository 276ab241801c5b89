"""The DQN map widget's pure functions: the map is the snapshot's network on the grid, and a trained agent's
greedy policy pushes toward the fall where its untrained start does not."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from karpa_lab import seed_everything
from karpa_lab.rl import DQN, train_until
from karpa_lab.widgets.dqn_policy import (
    ANGLES,
    VELOCITIES,
    draw_q_map,
    q_map,
    q_map_widget,
    state_grid,
    toward_fall,
)


def small_net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))


def test_the_map_is_the_snapshot_evaluated_on_the_grid():
    q_net = small_net(0)
    snapshots = {0: q_net.state_dict(), 7: small_net(1).state_dict()}
    before = {k: v.clone() for k, v in q_net.state_dict().items()}
    view = q_map(q_net, snapshots, 7, cart_position=0.3, cart_velocity=-0.5)
    reference = small_net(1)
    for i, j in [(0, 0), (3, 17), (20, 20), (40, 5), (12, 40)]:
        state = torch.tensor([0.3, -0.5, float(ANGLES[j]), float(VELOCITIES[i])])
        with torch.no_grad():
            np.testing.assert_allclose(view["q"][i, j], reference(state).numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(view["push_right"], view["q"][..., 1] > view["q"][..., 0])
    np.testing.assert_allclose(view["preference"], view["q"][..., 1] - view["q"][..., 0])
    assert all(torch.equal(before[k], q_net.state_dict()[k]) for k in before)  # the network given is not changed
    assert not np.allclose(q_map(q_net, snapshots, 0, 0.3, -0.5)["q"], view["q"])  # another snapshot, another map


def test_the_grid_puts_the_cart_fixed_and_the_pole_on_the_axes():
    read = nn.Linear(4, 2, bias=False)  # Q(left) = one coordinate of the state, Q(right) = another
    with torch.no_grad():
        read.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]]))
    cart = q_map(read, {0: read.state_dict()}, 0, cart_position=1.0, cart_velocity=-9.0)["q"]
    assert (cart[..., 0] == 1.0).all() and (cart[..., 1] == -2.0).all()  # velocity clipped to its range
    with torch.no_grad():
        read.weight.copy_(torch.tensor([[0, 0, 1.0, 0], [0, 0, 0, 1.0]]))
    pole = q_map(read, {0: read.state_dict()}, 0)["q"]
    np.testing.assert_allclose(pole[..., 0], np.broadcast_to(ANGLES.numpy()[None, :], (41, 41)))
    np.testing.assert_allclose(pole[..., 1], np.broadcast_to(VELOCITIES.numpy()[:, None], (41, 41)))


def test_toward_fall_scores_a_controller_and_its_opposite():
    grid = state_grid()
    follows = grid[..., 2] + 0.1 * grid[..., 3] > 0  # push toward where the pole will be
    assert toward_fall(follows, grid) == 1.0 and toward_fall(~follows, grid) == 0.0
    assert toward_fall(torch.ones(41, 41, dtype=torch.bool), grid) == pytest.approx(0.5, abs=0.01)  # always right
    leans = grid[..., 2] > 0  # the angle alone, ignoring where the pole turns
    assert 0.6 < toward_fall(leans, grid) < 1.0


def test_a_trained_agent_pushes_toward_the_fall_and_its_untrained_start_does_not():
    make = lambda: gym.make("CartPole-v1", max_episode_steps=200)
    seed_everything(0)
    q_net = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    agent = DQN(q_net, make(), seed=0, snapshot_every=1000)
    evaluations = train_until(agent, make, 195, 4000)
    assert evaluations[-1][1] >= 195
    final, start = q_map(q_net, agent.snapshots, agent.updates), q_map(q_net, agent.snapshots, 0)
    assert final["toward"] > 0.7 and final["toward"] > start["toward"] + 0.2, (start["toward"], final["toward"])
    assert f"toward the fall in {final['toward']:.0%}" in final["readout"]


def test_bad_input_the_figure_and_the_widget():
    q_net = small_net(0)
    with pytest.raises(ValueError, match="snapshot_every"):
        q_map(q_net, {}, 0)
    with pytest.raises(ValueError, match=r"no snapshot after 5 updates; the agent kept \[0, 10\]"):
        q_map(q_net, {0: q_net.state_dict(), 10: q_net.state_dict()}, 5)
    with pytest.raises(ValueError, match="2 Q-values"):
        wide = nn.Linear(4, 3)
        q_map(wide, {0: wide.state_dict()}, 0)
    snapshots = {0: small_net(0).state_dict(), 10: small_net(1).state_dict()}
    assert len(draw_q_map(q_map(q_net, snapshots, 10)).axes) == 4  # two maps and their colour bars
    box = q_map_widget(q_net, snapshots)
    (checkpoint, position, _), text = box.children[0].children, box.children[1]
    assert checkpoint.value == 10 and text.value == q_map(q_net, snapshots, 10)["readout"]
    checkpoint.value, position.value = 0, 1.0
    assert text.value == q_map(q_net, snapshots, 0, cart_position=1.0)["readout"]
    with pytest.raises(ValueError, match="snapshot_every"):
        q_map_widget(q_net, {})
