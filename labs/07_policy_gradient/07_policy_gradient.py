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
# # Lab 07 · Policy gradients: returns-to-go, a baseline, the REINFORCE loss
#
# REINFORCE learns a policy from its own episodes: it raises the log-probability of each action taken in
# proportion to what followed it. You will write the discounted returns-to-go of a batch of episodes and
# the REINFORCE loss with a baseline, with nothing but tensor operations. Your code is graded on exact
# values for fixed trajectories and by a short training run that must beat a random policy.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `returns_to_go`: discounted returns, reset at episode ends | 2 + 1 |
# | 2 | `reinforce_loss`: the policy-gradient loss with a baseline | 2 + 1 |
# | 3 | nothing new: your functions train a policy | 2 |
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
# ## Part 1 · Returns-to-go
#
# A batch of episodes is stored as one flat sequence of steps $t = 0 \dots N-1$: the reward $r_t$ and a flag
# $d_t$ that is True where an episode ends (its last step). The discounted return-to-go of step $t$ is what
# the rest of its own episode earns:
#
# $$G_t = r_t + \gamma\, (1 - d_t)\, G_{t+1}, \qquad G_{N-1} = r_{N-1},$$
#
# computed from the end backwards. The factor $(1 - d_t)$ resets the sum at an episode's end: the next
# episode's rewards do not belong to this one.
#
# **Task 1.** Write `returns_to_go(rewards, dones, gamma)`: rewards (N,) float, dones (N,) bool, returning
# G (N,) with the rewards' dtype.

# %% nbgrader={"grade": false, "grade_id": "returns_to_go", "locked": false, "schema_version": 3, "solution": true, "task": false}
def returns_to_go(rewards, dones, gamma):
    """G_t = r_t + gamma (1 - d_t) G_{t+1}, from the last step backwards: (N,)."""
    ### BEGIN SOLUTION
    returns = torch.zeros_like(rewards)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        running = rewards[t] + gamma * running * (0.0 if dones[t] else 1.0)
        returns[t] = running
    return returns
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_returns_values", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# One episode of four steps.
rewards = torch.tensor([1.0, 0.0, 2.0, 3.0], dtype=torch.float64)
dones = torch.tensor([False, False, False, True])
close("returns_to_go, gamma 0.5", returns_to_go(rewards, dones, 0.5),
      torch.tensor([1 + 0.5 * (0 + 0.5 * (2 + 0.5 * 3)), 0 + 0.5 * (2 + 0.5 * 3), 2 + 0.5 * 3, 3.0],
                   dtype=torch.float64))
close("returns_to_go, gamma 1", returns_to_go(rewards, dones, 1.0), torch.tensor([6.0, 5.0, 5.0, 3.0],
                                                                                dtype=torch.float64))
print("✓ returns_to_go on one episode")
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(1)
rewards = torch.randn(9, generator=gen, dtype=torch.float64)
dones = torch.zeros(9, dtype=torch.bool)
dones[-1] = True
want = torch.stack([sum(0.9 ** (k - t) * rewards[k] for k in range(t, 9)) for t in range(9)])
close("hidden: nine steps, gamma 0.9", returns_to_go(rewards, dones, 0.9), want)
close("hidden: gamma 0", returns_to_go(rewards, dones, 0.0), rewards)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_returns_reset", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Two episodes back to back: the first one's returns must not see the second one's rewards.
rewards = torch.tensor([0.0, 1.0, 5.0, 5.0], dtype=torch.float64)
dones = torch.tensor([False, True, False, True])
close("returns_to_go over two episodes", returns_to_go(rewards, dones, 0.9),
      torch.tensor([0.9, 1.0, 5 + 0.9 * 5, 5.0], dtype=torch.float64))
print("✓ the return resets at an episode's end")
### BEGIN HIDDEN TESTS
rewards = torch.ones(6, dtype=torch.float64)
dones = torch.tensor([True, False, True, True, False, True])
close("hidden: episodes of 1, 2, 1 and 2 steps", returns_to_go(rewards, dones, 0.5),
      torch.tensor([1.0, 1.5, 1.0, 1.0, 1.5, 1.0], dtype=torch.float64))
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · The REINFORCE loss with a baseline
#
# For the log-probabilities $\log \pi_\theta(a_t \mid s_t)$ of the actions taken (N,), their returns $G_t$
# and a baseline $b_t$ (N,), the policy gradient is $\nabla_\theta J \approx \frac{1}{N} \sum_t (G_t - b_t)
# \nabla_\theta \log \pi_\theta(a_t \mid s_t)$, the gradient of minus the loss
#
# $$\mathcal{L}(\theta) = -\frac{1}{N} \sum_t \big(G_t - b_t\big)\, \log \pi_\theta(a_t \mid s_t).$$
#
# The advantage $G_t - b_t$ is a weight, not something to differentiate: detach it. The baseline lowers the
# variance of the estimate and leaves its expectation unchanged, because it multiplies the log-probability
# *before* the average (subtracting it from the loss afterwards would change nothing but the value).
#
# **Task 2.** Write `reinforce_loss(logp, returns, baseline)` returning a scalar tensor.

# %% nbgrader={"grade": false, "grade_id": "reinforce_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def reinforce_loss(logp, returns, baseline):
    """-mean((G - b) log pi(a|s)), the advantage detached: a scalar."""
    ### BEGIN SOLUTION
    advantage = (returns - baseline).detach()
    return -(advantage * logp).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_loss_values", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
logp = torch.log(torch.tensor([0.5, 0.25, 0.8], dtype=torch.float64))
returns = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)
baseline = torch.full((3,), 1.0, dtype=torch.float64)
close("reinforce_loss", reinforce_loss(logp, returns, baseline), -((returns - baseline) * logp).mean())
close("reinforce_loss without a baseline", reinforce_loss(logp, returns, torch.zeros(3, dtype=torch.float64)),
      -(returns * logp).mean())
print("✓ reinforce_loss")
### BEGIN HIDDEN TESTS
gen = torch.Generator().manual_seed(2)
logp = -torch.rand(50, generator=gen, dtype=torch.float64) * 3
returns, baseline = torch.randn(50, generator=gen, dtype=torch.float64), torch.randn(50, generator=gen, dtype=torch.float64)
close("hidden: 50 steps", reinforce_loss(logp, returns, baseline), -((returns - baseline) * logp).mean())
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_loss_gradient", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The gradient flows into the policy's logits, and only through the log-probabilities.
def logit_gradient(loss_fn, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    actions = torch.randint(0, 3, (6,), generator=gen)
    returns = torch.randn(6, generator=gen, dtype=torch.float64)
    logp = torch.log_softmax(logits, dim=1)[torch.arange(6), actions]
    loss_fn(logp, returns, returns.mean().expand(6)).backward()
    return logits.grad


def reference_loss(logp, returns, baseline):
    return -((returns - baseline).detach() * logp).mean()


close("d loss / d logits", logit_gradient(reinforce_loss, 3), logit_gradient(reference_loss, 3))
print("✓ the gradient with respect to the policy's logits")
### BEGIN HIDDEN TESTS
close("hidden gradient", logit_gradient(reinforce_loss, 30), logit_gradient(reference_loss, 30))
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · Your functions train a policy (2 points)
#
# The corridor of `chain_episodes`: five positions, start in the middle, the right end pays 1. A random
# policy reaches it about half the time. The test below trains a table of logits with your two functions
# (batches of 16 episodes, $\gamma = 0.95$, the batch's mean return as the baseline, plain gradient steps)
# and measures how often the trained policy wins, on 300 fresh episodes, against the random policy.

# %% nbgrader={"grade": true, "grade_id": "test_training", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def train_corridor(updates: int, seed: int, lr: float = 2.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.zeros(5, 2, dtype=torch.float64, requires_grad=True)
    for _ in range(updates):
        positions, actions, rewards, dones, _ = chain_episodes(logits, 16, gen)
        returns = returns_to_go(rewards, dones, 0.95)
        logp = torch.log_softmax(logits, dim=1)[positions, actions]
        loss = reinforce_loss(logp, returns, returns.mean().expand(len(returns)))
        (grad,) = torch.autograd.grad(loss, logits)
        with torch.no_grad():
            logits -= lr * grad
    return logits.detach()


random_wins = chain_episodes(torch.zeros(5, 2, dtype=torch.float64), 300, torch.Generator().manual_seed(99))[4]
trained_wins = chain_episodes(train_corridor(40, seed=0), 300, torch.Generator().manual_seed(99))[4]
print(f"wins over 300 episodes: random policy {random_wins:.3f}, trained {trained_wins:.3f}")
assert trained_wins > random_wins + 0.3, f"the trained policy wins {trained_wins:.3f}, random {random_wins:.3f}"
print("✓ the trained policy beats the random one")
### BEGIN HIDDEN TESTS
other = chain_episodes(train_corridor(40, seed=7), 300, torch.Generator().manual_seed(5))[4]
assert other > random_wins + 0.3, f"another seed: {other:.3f}"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 · Why the baseline is free (written answer, 2 points)
#
# In a few sentences: show that $\mathbb{E}_{a \sim \pi}[\, b \,\nabla_\theta \log \pi_\theta(a \mid s)] = 0$
# for a baseline $b$ that does not depend on the action, so subtracting it leaves the gradient unbiased.
# Why does it still help? And why would a baseline that depends on the action taken (say $b = G_t$ itself)
# break the estimate?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_baseline", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). $\mathbb{E}_a[b \nabla_\theta \log
# \pi(a|s)] = b \sum_a \pi(a|s) \nabla_\theta \log \pi(a|s) = b \sum_a \nabla_\theta \pi(a|s) = b \nabla_\theta
# \sum_a \pi(a|s) = b \nabla_\theta 1 = 0$, since $b$ can be taken out of the sum when it does not depend on
# $a$. It helps because the variance of $(G - b) \nabla \log \pi$ is smaller when $b$ is close to the
# expected return: the estimate no longer pushes every action up when all returns are positive, only the
# better-than-average ones. With $b = G_t$ (or any $b$ that depends on $a$) it cannot be taken out of the
# sum: the advantage is zero and nothing is learned, or in general the expectation changes and the
# estimate is biased. One point for the derivation, one for the variance and the action-dependent case.
