r"""Pick a point of a DQN's training and the cart's state: its Q-values and greedy policy over the pole.

The logic is :func:`q_map` (a network, the agent's snapshots, a checkpoint and the cart's position and
velocity in; the Q-values on a grid of pole angles and angular velocities, the greedy action and a readout
out) and :func:`draw_q_map` (a matplotlib figure); :func:`q_map_widget` only wires sliders to them.

    agent = DQN(q_net, env, snapshot_every=250)      # keeps Q's weights every 250 updates
    m = q_map(q_net, agent.snapshots, updates=1000, cart_position=0.0, cart_velocity=0.0)
    m["q"]            # (V, A, 2): Q(s, left), Q(s, right) at s = (x, v, angles[j], velocities[i])
    m["push_right"]   # (V, A) bool: the greedy action argmax_a Q(s, a) is "push right"
    m["toward"]       # the share of clearly falling states where the greedy action pushes toward the fall

A pole falls to the side it leans and turns to; the cart must move under it, so a good controller pushes
toward that side. "Clearly falling" means that the angle 0.1 s ahead, angle + 0.1 angular velocity, lies
beyond 0.05 rad on one side (:func:`toward_fall`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from karpa_lab.widgets import serialized, show_figure

ANGLES = torch.linspace(-0.2, 0.2, 41)  # rad; CartPole ends an episode beyond 0.21
VELOCITIES = torch.linspace(-1.5, 1.5, 41)  # rad/s
POSITION_RANGE = (-2.4, 2.4)  # CartPole ends an episode beyond 2.4
VELOCITY_RANGE = (-2.0, 2.0)
LOOKAHEAD_S, FALLING_RAD = 0.1, 0.05


def state_grid(cart_position: float = 0.0, cart_velocity: float = 0.0, angles: torch.Tensor = ANGLES,
               velocities: torch.Tensor = VELOCITIES) -> torch.Tensor:
    """CartPole states (V, A, 4): the cart fixed at (position, velocity), the pole at (angles[j], velocities[i])."""
    grid = torch.zeros(len(velocities), len(angles), 4)
    grid[..., 0], grid[..., 1] = float(cart_position), float(cart_velocity)
    grid[..., 2], grid[..., 3] = angles[None, :], velocities[:, None]
    return grid


def toward_fall(push_right: torch.Tensor, grid: torch.Tensor) -> float:
    """The share of the clearly falling states of ``grid`` (V, A, 4) where ``push_right`` (V, A) pushes toward
    the fall: right where angle + 0.1 s x angular velocity > 0.05 rad, left where it is below -0.05 rad.
    0.5 is chance; states in between (the pole nearly balanced) are not counted."""
    ahead = grid[..., 2] + LOOKAHEAD_S * grid[..., 3]
    falling_right, clear = ahead > FALLING_RAD, ahead.abs() > FALLING_RAD
    return float((push_right.bool() == falling_right)[clear].float().mean())


def q_map(q_net: nn.Module, snapshots: dict[int, dict[str, torch.Tensor]], updates: int,
          cart_position: float = 0.0, cart_velocity: float = 0.0) -> dict:
    """Q of the snapshot taken after ``updates`` updates, on the grid of pole angles x angular velocities.

    ``q_net`` gives the architecture (it is copied, never changed); ``snapshots`` is ``DQN.snapshots``. The
    cart's position and velocity are clipped to ``POSITION_RANGE`` and ``VELOCITY_RANGE``. Returns numpy
    arrays ``q`` (V, A, 2), ``preference`` Q(right) - Q(left) (V, A), ``value`` max_a Q (V, A),
    ``push_right`` (V, A) bool, ``angles`` (A,), ``velocities`` (V,); the share ``toward`` of clearly falling
    states pushed toward the fall; ``updates``, ``cart_position``, ``cart_velocity`` and ``readout`` (HTML).
    """
    if not snapshots:
        raise ValueError("no snapshots: build the agent with DQN(..., snapshot_every=250) and train it with "
                         "train_until, which keeps Q's weights every 250 updates in agent.snapshots")
    if updates not in snapshots:
        raise ValueError(f"no snapshot after {updates} updates; the agent kept {sorted(snapshots)}")
    x = min(max(float(cart_position), POSITION_RANGE[0]), POSITION_RANGE[1])
    v = min(max(float(cart_velocity), VELOCITY_RANGE[0]), VELOCITY_RANGE[1])
    net = copy.deepcopy(q_net).cpu()
    net.load_state_dict(snapshots[updates])
    grid = state_grid(x, v)
    with torch.no_grad():
        q = net(grid).float()
    if q.shape != (*grid.shape[:2], 2):
        raise ValueError(f"the Q-network must map CartPole's 4 numbers to 2 Q-values, it gave shape {tuple(q.shape)}")
    push_right = q[..., 1] > q[..., 0]
    toward, value = toward_fall(push_right, grid), q.max(-1).values
    readout = (f"<b>after {updates} updates</b>, cart at x = {x:.2f} moving at {v:.2f}: the greedy policy pushes "
               f"right in {float(push_right.float().mean()):.0%} of the grid, toward the fall in {toward:.0%} of "
               f"the clearly falling states (50% is chance); max<sub>a</sub> Q from {float(value.min()):.2f} "
               f"to {float(value.max()):.2f}")
    return {"q": q.numpy(), "preference": (q[..., 1] - q[..., 0]).numpy(), "value": value.numpy(),
            "push_right": push_right.numpy(), "angles": ANGLES.numpy(), "velocities": VELOCITIES.numpy(),
            "toward": toward, "updates": updates, "cart_position": x, "cart_velocity": v, "readout": readout}


def draw_q_map(view: dict, fig=None):
    """Left: max_a Q(s, a). Right: Q(right) - Q(left), its zero line (where the greedy action flips) and the
    band outside which the pole clearly falls (dashed)."""
    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(9, 3.4))
    fig.clear()
    left, right = fig.subplots(1, 2)
    angles, velocities = view["angles"], view["velocities"]
    extent = (angles[0], angles[-1], velocities[0], velocities[-1])
    im = left.imshow(view["value"], origin="lower", extent=extent, aspect="auto", cmap="viridis")
    fig.colorbar(im, ax=left)
    left.set_title(f"max_a Q(s, a), after {view['updates']} updates", fontsize=9)
    pref = view["preference"]
    limit = max(float(np.abs(pref).max()), 1e-6)
    im = right.imshow(pref, origin="lower", extent=extent, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
    fig.colorbar(im, ax=right)
    if pref.min() < 0 < pref.max():
        right.contour(angles, velocities, pref, levels=[0.0], colors="k", linewidths=1)
    for side in (-1, 1):  # angle + 0.1 s x angular velocity = +-0.05 rad
        right.plot((side * FALLING_RAD - LOOKAHEAD_S * velocities), velocities, "k--", lw=0.7)
    right.set_xlim(angles[0], angles[-1])
    right.set_title("Q(right) - Q(left): red pushes right", fontsize=9)
    for ax in (left, right):
        ax.set_xlabel("pole angle (rad)")
        ax.set_ylabel("angular velocity (rad/s)")
    fig.tight_layout()
    return fig


def q_map_widget(q_net: nn.Module, snapshots: dict[int, dict[str, torch.Tensor]], updates: int | None = None):
    """A slider over the agent's snapshots and two for the cart's position and velocity; the maps follow them."""
    import ipywidgets as w
    from matplotlib.figure import Figure

    start = max(snapshots, default=0) if updates is None else updates
    q_map(q_net, snapshots, start)  # no snapshots or an unknown checkpoint: the error says so, before any control
    checkpoint = w.SelectionSlider(options=sorted(snapshots), value=start,
                                   description="updates", continuous_update=False)
    position = w.FloatSlider(value=0.0, min=POSITION_RANGE[0], max=POSITION_RANGE[1], step=0.2,
                             description="cart x", continuous_update=False)
    velocity = w.FloatSlider(value=0.0, min=VELOCITY_RANGE[0], max=VELOCITY_RANGE[1], step=0.2,
                             description="cart v", continuous_update=False)
    text, out = w.HTML(), w.Output()
    fig = Figure(figsize=(9, 3.4))

    @serialized
    def redraw(_=None) -> None:
        view = q_map(q_net, snapshots, checkpoint.value, position.value, velocity.value)
        text.value = view["readout"]
        draw_q_map(view, fig)
        show_figure(out, fig)

    for control in (checkpoint, position, velocity):
        control.observe(redraw, names="value")
    redraw()
    return w.VBox([w.HBox([checkpoint, position, velocity]), text, out])
