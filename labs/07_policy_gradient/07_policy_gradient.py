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
# # Lab 07 · Policy gradients with generalised advantage estimation
#
# An actor-critic method learns a policy (the actor) and a value function $V(s)$ (the critic) side by side:
# the critic's values tell the actor how much better than expected each action turned out. Generalised
# advantage estimation, GAE($\lambda$) (Schulman, Moritz, Levine, Jordan & Abbeel 2016, "High-dimensional
# continuous control using generalized advantage estimation"), blends the one-step temporal-difference error
# with the full return-to-go through one knob $\lambda$. You will write GAE($\lambda$) over a batch of episodes
# and the actor-critic loss on its advantages, with nothing but tensor operations. Your code is graded on exact
# values for fixed trajectories, on the gradients, and by a short training run that must beat a random
# policy and teach the critic what each state is worth.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `gae`: advantages GAE($\lambda$), reset at episode ends | 2 + 1 |
# | 2 | `actor_critic_loss`: the policy-gradient loss on the advantages, and the critic's | 2 + 1 |
# | 3 | nothing new: your functions train a policy and its critic | 2 |
# | 4 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# Each test cell below your code checks it and says what is wrong. The teacher's grader runs those tests
# and hidden ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename
# the functions, and do not use `karpa_lab.rl` inside your functions (the grader sees such calls however
# they are made). Before you hand it in: *Kernel → Restart Kernel and Run All Cells*; the notebook runs in a
# few seconds.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import warnings

import torch

torch.manual_seed(0)
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


def close(name: str, got, want: torch.Tensor, atol: float = 1e-10) -> None:
    """Raise unless got is a tensor of want's shape within atol of it; say where it is off."""
    assert isinstance(got, torch.Tensor), f"{name} should be a torch.Tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"{name} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    err = (got.double() - want.double()).abs()
    if err.numel() and float(err.max()) > atol:
        where = int(err.flatten().argmax())
        raise AssertionError(f"{name} is off by {float(err.max()):.3g} at index {where}: yours "
                             f"{got.flatten()[where].item():.6g}, expected {want.flatten()[where].item():.6g}")


def chain_episodes(logits: torch.Tensor, episodes: int, gen: torch.Generator, length: int = 5, limit: int = 12):
    """Play a corridor: positions 0..length-1, start in the middle, action 0 steps left and 1 right; reaching
    the right end pays 1 and ends the episode, the left end or `limit` steps end it with 0. The policy is a
    table of logits (length, 2). Returns the flat batch: positions, actions, rewards, dones, and the share of
    episodes that reached the right end."""
    positions, actions, rewards, dones, wins = [], [], [], [], 0
    for _ in range(episodes):
        pos = length // 2
        for step in range(limit):
            action = int(torch.multinomial(torch.softmax(logits[pos].detach(), 0), 1, generator=gen))
            positions.append(pos)
            actions.append(action)
            pos += 1 if action == 1 else -1
            won, over = pos == length - 1, pos == 0 or step == limit - 1
            rewards.append(1.0 if won else 0.0)
            dones.append(won or over)
            if won or over:
                wins += won
                break
    as_tensor = torch.tensor
    return (as_tensor(positions), as_tensor(actions), as_tensor(rewards, dtype=torch.float64),
            as_tensor(dones), wins / episodes)


# %% [markdown]
# ## Part 1 · Generalised advantage estimation
#
# A batch of episodes is stored as one flat sequence of steps $t = 0 \dots N-1$: the reward $r_t$, the
# critic's value $V_t = V(s_t)$ of the state the step started from, and a flag $d_t$ that is True where an
# episode ends (its last step); the batch ends with an episode's end. An episode's end is terminal: nothing
# follows it, so its next state is worth 0. The one-step temporal-difference (TD) error says how much better
# step $t$ went than the critic expected,
#
# $$\delta_t = r_t + \gamma\, (1 - d_t)\, V_{t+1} - V_t \qquad (V_N = 0),$$
#
# and GAE($\lambda$) sums the TD errors of the rest of the episode, discounted by $\gamma\lambda$, computed from
# the end backwards:
#
# $$A_t = \delta_t + \gamma \lambda\, (1 - d_t)\, A_{t+1} = \sum_{l \ge 0} (\gamma\lambda)^l\, \delta_{t+l}
#   \ \ (\text{up to the episode's end}), \qquad A_N = 0.$$
#
# The factors $(1 - d_t)$ reset both sums at an episode's end: the next episode's values and rewards do not
# belong to this one. Two ends of the knob: $\lambda = 0$ gives the TD error $\delta_t$ itself; $\lambda = 1$
# gives $G_t - V_t$, the discounted return-to-go minus the critic's value (REINFORCE with a baseline), because
# the values in between cancel.
#
# **Task 1.** Write `gae(rewards, values, dones, gamma, lam)`: rewards (N,) and values (N,) float, dones (N,)
# bool, returning the advantages A (N,) with the rewards' dtype.

# %% nbgrader={"grade": false, "grade_id": "gae", "locked": false, "schema_version": 3, "solution": true, "task": false}
def gae(rewards, values, dones, gamma, lam):
    """A_t = delta_t + gamma lam (1 - d_t) A_{t+1}, delta_t = r_t + gamma (1 - d_t) V_{t+1} - V_t: (N,)."""
    ### BEGIN SOLUTION
    advantages = torch.zeros_like(rewards)
    running, next_value = 0.0, 0.0
    for t in range(len(rewards) - 1, -1, -1):
        keep = 0.0 if dones[t] else 1.0
        delta = rewards[t] + gamma * keep * next_value - values[t]
        running = delta + gamma * lam * keep * running
        advantages[t] = running
        next_value = values[t]
    return advantages
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_gae_values", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# One episode of four steps: the TD errors by hand, then their discounted sums.
rewards = torch.tensor([1.0, 0.0, 2.0, 3.0], dtype=torch.float64)
values = torch.tensor([0.5, 1.0, 1.5, 2.0], dtype=torch.float64)
dones = torch.tensor([False, False, False, True])
delta = torch.tensor([1 + 0.9 * 1.0 - 0.5, 0 + 0.9 * 1.5 - 1.0, 2 + 0.9 * 2.0 - 1.5, 3 - 2.0], dtype=torch.float64)
c = 0.9 * 0.5
close("gae, gamma 0.9, lambda 0.5", gae(rewards, values, dones, 0.9, 0.5),
      torch.stack([delta[t:] @ c ** torch.arange(4 - t, dtype=torch.float64) for t in range(4)]))
close("gae, lambda 0 (the TD errors)", gae(rewards, values, dones, 0.9, 0.0), delta)
print("✓ gae on one episode")
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(1)
rewards, values = torch.randn(9, generator=gen, dtype=torch.float64), torch.randn(9, generator=gen, dtype=torch.float64)
dones = torch.zeros(9, dtype=torch.bool)
dones[-1] = True
returns = torch.stack([sum(0.9 ** (k - t) * rewards[k] for k in range(t, 9)) for t in range(9)])
close("hidden: lambda 1 is the return-to-go minus the value", gae(rewards, values, dones, 0.9, 1.0), returns - values)
deltas = rewards + 0.9 * torch.cat([values[1:], torch.zeros(1, dtype=torch.float64)]) - values
close("hidden: lambda 0 is the TD error", gae(rewards, values, dones, 0.9, 0.0), deltas)
close("hidden: gamma 0.8, lambda 0.7", gae(rewards, values, dones, 0.8, 0.7),
      torch.stack([sum(0.56 ** (k - t) * (rewards[k] + 0.8 * (values[k + 1] if k < 8 else 0.0) - values[k])
                       for k in range(t, 9)) for t in range(9)]))
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_gae_reset", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Two episodes back to back: the first one must not see the second one's values or rewards.
rewards = torch.tensor([0.0, 1.0, 5.0, 5.0], dtype=torch.float64)
values = torch.tensor([0.5, 0.8, 4.0, 3.0], dtype=torch.float64)
dones = torch.tensor([False, True, False, True])
delta = torch.tensor([0 + 0.9 * 0.8 - 0.5, 1 - 0.8, 5 + 0.9 * 3.0 - 4.0, 5 - 3.0], dtype=torch.float64)
close("gae over two episodes, lambda 0.5", gae(rewards, values, dones, 0.9, 0.5),
      torch.stack([delta[0] + 0.45 * delta[1], delta[1], delta[2] + 0.45 * delta[3], delta[3]]))
print("✓ the advantage resets at an episode's end")
### BEGIN HIDDEN TESTS
rewards = torch.ones(6, dtype=torch.float64)
values = torch.tensor([0.2, 0.4, 0.6, 0.8, 1.0, 1.2], dtype=torch.float64)
dones = torch.tensor([True, False, True, True, False, True])
close("hidden: episodes of 1, 2, 1 and 2 steps", gae(rewards, values, dones, 0.5, 0.8),
      torch.tensor([0.8, 1 + 0.5 * 0.6 - 0.4 + 0.4 * (1 - 0.6), 0.4, 0.2, 1 + 0.5 * 1.2 - 1.0 + 0.4 * (1 - 1.2),
                    -0.2], dtype=torch.float64))
close("hidden: lambda 1 over several episodes", gae(rewards, values, dones, 0.5, 1.0),
      torch.tensor([1.0, 1.5, 1.0, 1.0, 1.5, 1.0], dtype=torch.float64) - values)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · The actor-critic loss
#
# For the log-probabilities $\log \pi_\theta(a_t \mid s_t)$ of the actions taken (N,), the critic's values
# $V_t$ (N,) (which carry the critic's gradient) and the advantages $A_t$ (N,), the actor learns from the
# policy gradient $\nabla_\theta J \approx \frac{1}{N} \sum_t A_t \nabla_\theta \log \pi_\theta(a_t \mid s_t)$,
# and the critic regresses its values on the targets $R_t = A_t + V_t$ (the $\lambda$-return: at
# $\lambda = 1$, the return-to-go). Both in one loss, with a weight $c$ for the critic:
#
# $$\mathcal{L} = -\frac{1}{N} \sum_t A_t \log \pi_\theta(a_t \mid s_t)
#   + c\, \frac{1}{N} \sum_t \big(V_t - R_t\big)^2, \qquad R_t = A_t + V_t.$$
#
# The advantage and the target are numbers the critic's values have already produced, not something to
# differentiate through: detach both (otherwise $V_t - R_t = -A_t$ has no gradient in $V$ at all, and the
# actor's term would push the critic around). The critic's gradient is then $2c\,(V_t - R_t)/N$ on each
# value, and the actor's flows only through the log-probabilities.
#
# **Task 2.** Write `actor_critic_loss(logp, values, advantages, value_coef)` returning a scalar tensor.

# %% nbgrader={"grade": false, "grade_id": "actor_critic_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def actor_critic_loss(logp, values, advantages, value_coef):
    """-mean(A log pi(a|s)) + c mean((V - (A + V))^2), the advantage and the target detached: a scalar."""
    ### BEGIN SOLUTION
    advantages = advantages.detach()
    targets = (advantages + values).detach()
    return -(advantages * logp).mean() + value_coef * (values - targets).pow(2).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_loss_values", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def reference_loss(logp, values, advantages, value_coef):
    targets = (advantages + values).detach()
    return -(advantages.detach() * logp).mean() + value_coef * ((values - targets) ** 2).mean()


logp = torch.log(torch.tensor([0.5, 0.25, 0.8], dtype=torch.float64))
values = torch.tensor([0.2, -1.0, 0.5], dtype=torch.float64)
advantages = torch.tensor([1.0, 2.0, -0.5], dtype=torch.float64)
close("actor_critic_loss, c = 0.5", actor_critic_loss(logp, values, advantages, 0.5),
      reference_loss(logp, values, advantages, 0.5))
close("actor_critic_loss, c = 0 (the actor alone)", actor_critic_loss(logp, values, advantages, 0.0),
      -(advantages * logp).mean())
print("✓ actor_critic_loss")
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(2)
logp = -torch.rand(50, generator=gen, dtype=torch.float64) * 3
values, advantages = torch.randn(50, generator=gen, dtype=torch.float64), torch.randn(50, generator=gen, dtype=torch.float64)
for c in (0.25, 2.0):
    close(f"hidden: 50 steps, c = {c}", actor_critic_loss(logp, values, advantages, c),
          reference_loss(logp, values, advantages, c))
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_loss_gradient", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The gradients flow into the policy's logits only through the log-probabilities, and into the critic's
# values only through the value term; here the advantages are computed from the critic, with its gradient.
def gradients(loss_fn, seed, value_coef=0.5):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    critic = torch.randn(6, generator=gen, dtype=torch.float64, requires_grad=True)
    actions = torch.randint(0, 3, (6,), generator=gen)
    returns = torch.randn(6, generator=gen, dtype=torch.float64)
    logp = torch.log_softmax(logits, dim=1)[torch.arange(6), actions]
    loss_fn(logp, critic * 1.0, returns - critic, value_coef).backward()
    no_gradient = torch.zeros(6, dtype=torch.float64)  # what a loss without the critic's term gives the values
    return logits.grad, no_gradient if critic.grad is None else critic.grad


for name, mine, want in zip(("d loss / d logits", "d loss / d values"), gradients(actor_critic_loss, 3),
                            gradients(reference_loss, 3)):
    close(name, mine, want)
print("✓ the gradients with respect to the policy's logits and the critic's values")
### BEGIN HIDDEN TESTS
for name, mine, want in zip(("logits", "values"), gradients(actor_critic_loss, 30, 2.0), gradients(reference_loss, 30, 2.0)):
    close(f"hidden gradient, {name}", mine, want)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · Your functions train a policy and its critic (2 points)
#
# The corridor of `chain_episodes`: five positions, start in the middle, the right end pays 1. A random
# policy reaches it about half the time. The test below trains a table of logits and a table of values
# with your two functions (batches of 16 episodes, $\gamma = 0.95$, $\lambda = 0.9$, $c = 0.5$, plain gradient
# steps) and measures how often the trained policy wins, on 300 fresh episodes, against the random policy;
# then it asks the critic what the positions next to the goal are worth to that policy.

# %% nbgrader={"grade": true, "grade_id": "test_training", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def train_corridor(updates: int, seed: int, lr: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.zeros(5, 2, dtype=torch.float64, requires_grad=True)
    critic = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    for _ in range(updates):
        positions, actions, rewards, dones, _ = chain_episodes(logits, 16, gen)
        values = critic[positions]
        advantages = gae(rewards, values.detach(), dones, 0.95, 0.9)
        logp = torch.log_softmax(logits, dim=1)[positions, actions]
        loss = actor_critic_loss(logp, values, advantages, 0.5)
        grads = torch.autograd.grad(loss, (logits, critic), allow_unused=True)  # None: a loss without the critic
        with torch.no_grad():
            logits -= lr * grads[0]
            critic -= 0.0 if grads[1] is None else lr * grads[1]
    return logits.detach(), critic.detach()


random_wins = chain_episodes(torch.zeros(5, 2, dtype=torch.float64), 300, torch.Generator().manual_seed(99))[4]
logits, critic = train_corridor(40, seed=0)
trained_wins = chain_episodes(logits, 300, torch.Generator().manual_seed(99))[4]
print(f"wins over 300 episodes: random policy {random_wins:.3f}, trained {trained_wins:.3f}")
print(f"the critic's values of positions 1, 2, 3: {critic[1]:.3f}, {critic[2]:.3f}, {critic[3]:.3f}")
assert trained_wins > random_wins + 0.3, f"the trained policy wins {trained_wins:.3f}, random {random_wins:.3f}"
assert critic[3] > 0.6 and critic[1] < critic[2] < critic[3], (
    "the critic should have learned that a trained policy next to the goal (position 3) earns most (close to 1), "
    f"and less the further away it starts; its values of positions 1, 2, 3 are {critic[1:4].tolist()}")
print("✓ the trained policy beats the random one, and its critic knows where the goal is")
### BEGIN HIDDEN TESTS
logits, critic = train_corridor(40, seed=7)
other = chain_episodes(logits, 300, torch.Generator().manual_seed(5))[4]
assert other > random_wins + 0.3, f"another seed: {other:.3f}"
assert critic[3] > 0.6 and critic[1] < critic[2] < critic[3], f"another seed: the critic's values {critic.tolist()}"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 · What the baseline and $\lambda$ do (written answer, 2 points)
#
# In a few sentences: show that $\mathbb{E}_{a \sim \pi}[\, b \,\nabla_\theta \log \pi_\theta(a \mid s)] = 0$
# for a baseline $b$ that does not depend on the action, so that subtracting $V(s_t)$ from the return (GAE at
# $\lambda = 1$) leaves the gradient unbiased. Then say what $\lambda$ trades: why is the TD error
# ($\lambda = 0$) lower in variance but biased when the critic is wrong, while $\lambda = 1$ is unbiased
# whatever the critic says?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_baseline", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). $\mathbb{E}_a[b \nabla_\theta \log
# \pi(a|s)] = b \sum_a \pi(a|s) \nabla_\theta \log \pi(a|s) = b \sum_a \nabla_\theta \pi(a|s) = b \nabla_\theta
# \sum_a \pi(a|s) = b \nabla_\theta 1 = 0$, since $b$ can be taken out of the sum when it does not depend on
# $a$; at $\lambda = 1$ the advantage is $G_t - V(s_t)$, a return minus such a baseline, so its expectation
# is the true policy gradient whatever $V$ is. At $\lambda = 0$ the advantage $r_t + \gamma V(s_{t+1}) -
# V(s_t)$ replaces all future rewards by the critic's guess $V(s_{t+1})$: only one step of randomness enters,
# so the variance is small, but if $V$ is wrong the guess is wrong and the gradient is biased. Intermediate
# $\lambda$ weighs the TD errors of later steps by $(\gamma\lambda)^l$: the further ahead, the more the real
# rewards replace the critic's guesses, trading bias for variance. One point for the derivation, one for the
# trade-off.
