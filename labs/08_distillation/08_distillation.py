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
# # Lab 08 · The distillation loss
#
# Knowledge distillation trains a small student on a large teacher's softened predictions (Hinton,
# Vinyals & Dean, 2015). You will write the softmax with a temperature, the soft-target cross-entropy and
# the full distillation loss with its $T^2$ factor, with nothing but tensor operations. Your code is graded
# against reference values on logits, temperatures and weights you do not see, and on its gradient.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `softmax_t`: the softmax at temperature T | 2 |
# | 2 | `soft_cross_entropy`: the soft-target term | 2 |
# | 3 | `distillation_loss`: both terms, the $T^2$ factor, and its gradient | 3 + 1 |
# | 4 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# Each test cell below your code checks it and says what is wrong. The teacher's grader runs those tests
# and hidden ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename
# the functions, and do not use `torch.softmax`, `F.softmax`, `F.log_softmax`, `F.cross_entropy`,
# `F.kl_div`, `F.nll_loss` or `karpa_lab.models.distill` inside your functions (the grader sees such calls
# however they are made); `torch.exp`, `torch.log`, `torch.logsumexp` and the like are fine. Before you hand
# it in: *Kernel → Restart Kernel and Run All Cells*; the notebook runs in a few seconds.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import warnings

import torch
import torch.nn.functional as F

torch.manual_seed(0)
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


def random_logits(batch: int, classes: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    """Logits (batch, classes) in float64, reproducible."""
    return scale * torch.randn(batch, classes, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def close(name: str, got, want: torch.Tensor, atol: float = 1e-9) -> None:
    """Raise unless got is a tensor of want's shape within atol of it; say how far off."""
    assert isinstance(got, torch.Tensor), f"{name} should be a torch.Tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"{name} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    assert not torch.isnan(got).any(), f"{name} has NaN: an overflow (exp of a large logit?)"
    err = float((got - want).abs().max()) if got.numel() else 0.0
    assert err <= atol, f"{name} is off by {err:.3g} (tolerance {atol:g})"


# %% [markdown]
# ## Part 1 · The softmax at temperature T
#
# For logits $z$ (B, K), one row per example and one column per class, the softmax at temperature $T > 0$ is
#
# $$q_{b,i} = \frac{\exp(z_{b,i} / T)}{\sum_j \exp(z_{b,j} / T)} \qquad (B, K).$$
#
# $T = 1$ is the ordinary softmax; a larger $T$ flattens the distribution, so the small probabilities the
# teacher gives to wrong classes (its "dark knowledge") become visible. Subtract each row's maximum before
# the exponential: it changes nothing in exact arithmetic and keeps `exp` from overflowing for large logits.
#
# **Task 1.** Write `softmax_t(logits, T)` over the last axis.

# %% nbgrader={"grade": false, "grade_id": "softmax_t", "locked": false, "schema_version": 3, "solution": true, "task": false}
def softmax_t(logits, T):
    """softmax(logits / T) over the last axis, computed stably."""
    ### BEGIN SOLUTION
    z = logits / T
    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_softmax", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
z = random_logits(4, 5, seed=0)
for T in (1.0, 2.0, 10.0):
    close(f"softmax_t(z, {T})", softmax_t(z, T), torch.softmax(z / T, dim=-1))
close("softmax_t of logits near 1000", softmax_t(z + 1000.0, 1.0), torch.softmax(z, dim=-1))
print("✓ softmax_t: T = 1, 2, 10, and large logits")
### BEGIN HIDDEN TESTS
for seed, (b, k, T) in enumerate([(1, 2, 0.5), (7, 10, 4.0), (3, 3, 100.0), (2, 6, 0.05)]):
    z = random_logits(b, k, seed=10 + seed, scale=20.0)
    close(f"hidden {seed}", softmax_t(z, T), torch.softmax(z / T, dim=-1))
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · The soft-target cross-entropy
#
# With the teacher's logits $v$ and the student's $z$, both softened at the same $T$: $p = $ softmax$(v/T)$
# and $q = $ softmax$(z/T)$. The soft term is the cross-entropy of $q$ against $p$, averaged over the batch:
#
# $$H(p, q) = -\frac{1}{B} \sum_{b} \sum_{i} p_{b,i} \log q_{b,i}.$$
#
# Compute $\log q$ as $z/T - \log\sum_j \exp(z_j/T)$ (`torch.logsumexp`), not as the log of a softmax
# that may have rounded to 0. The teacher only gives targets: detach its logits.
#
# **Task 2.** Write `soft_cross_entropy(student_logits, teacher_logits, T)` returning a scalar tensor.

# %% nbgrader={"grade": false, "grade_id": "soft_cross_entropy", "locked": false, "schema_version": 3, "solution": true, "task": false}
def soft_cross_entropy(student_logits, teacher_logits, T):
    """H(softmax(teacher/T), softmax(student/T)), averaged over the batch: a scalar."""
    ### BEGIN SOLUTION
    p = softmax_t(teacher_logits.detach(), T)
    z = student_logits / T
    log_q = z - torch.logsumexp(z, dim=-1, keepdim=True)
    return -(p * log_q).sum(dim=-1).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_soft_ce", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def soft_reference(z, v, T):
    return F.cross_entropy(z / T, torch.softmax(v / T, dim=-1))


z, v = random_logits(6, 4, seed=1), random_logits(6, 4, seed=2)
for T in (1.0, 3.0):
    close(f"soft_cross_entropy at T = {T}", soft_cross_entropy(z, v, T), soft_reference(z, v, T))
print("✓ soft_cross_entropy at T = 1 and 3")
### BEGIN HIDDEN TESTS
for seed, (b, k, T) in enumerate([(1, 10, 20.0), (9, 3, 0.7), (4, 7, 5.0)]):
    z, v = random_logits(b, k, seed=30 + seed, scale=30.0), random_logits(b, k, seed=40 + seed, scale=30.0)
    close(f"hidden {seed}", soft_cross_entropy(z, v, T), soft_reference(z, v, T))
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · The distillation loss
#
# The student learns from both the soft targets and the true labels $y$ (B,), with a weight $\alpha \in [0, 1]$:
#
# $$\mathcal{L} = \alpha\, T^2\, H(p_T, q_T) + (1 - \alpha)\, \mathrm{CE}(z, y), \qquad
#   \mathrm{CE}(z, y) = -\frac{1}{B} \sum_b \log \mathrm{softmax}(z)_{b, y_b} \quad (T = 1 \text{ here}).$$
#
# The gradient of the soft term with respect to $z$ is $(q_T - p_T) / (T B)$, so it shrinks like $1/T$ from
# the division and again like $1/T$ as $q_T - p_T$ flattens: the $T^2$ gives it back its size, and $\alpha$
# means the same thing at every temperature.
#
# **Task 3.** Write `distillation_loss(student_logits, teacher_logits, labels, T, alpha)` returning a scalar
# tensor, using your functions above. It must be differentiable in `student_logits` (no `.item()`, no
# `detach` of the student).

# %% nbgrader={"grade": false, "grade_id": "distillation_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def distillation_loss(student_logits, teacher_logits, labels, T, alpha):
    """alpha T^2 H(p_T, q_T) + (1 - alpha) CE(student_logits, labels): a scalar."""
    ### BEGIN SOLUTION
    log_q1 = student_logits - torch.logsumexp(student_logits, dim=-1, keepdim=True)
    hard = -log_q1.gather(1, labels.view(-1, 1)).mean()
    return alpha * T**2 * soft_cross_entropy(student_logits, teacher_logits, T) + (1 - alpha) * hard
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_kd_loss", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def kd_reference(z, v, y, T, alpha):
    return alpha * T**2 * soft_reference(z, v, T) + (1 - alpha) * F.cross_entropy(z, y)


z, v = random_logits(8, 5, seed=3), random_logits(8, 5, seed=4)
y = torch.randint(0, 5, (8,), generator=torch.Generator().manual_seed(5))
for T, alpha in [(1.0, 0.5), (4.0, 0.9), (2.0, 0.0), (3.0, 1.0)]:
    close(f"distillation_loss at T = {T}, alpha = {alpha}", distillation_loss(z, v, y, T, alpha),
          kd_reference(z, v, y, T, alpha))
print("✓ distillation_loss at four (T, alpha)")
### BEGIN HIDDEN TESTS
for seed, (b, k, T, alpha) in enumerate([(5, 10, 8.0, 0.7), (1, 3, 20.0, 0.95), (12, 4, 0.5, 0.3)]):
    z, v = random_logits(b, k, seed=50 + seed), random_logits(b, k, seed=60 + seed)
    y = torch.randint(0, k, (b,), generator=torch.Generator().manual_seed(70 + seed))
    close(f"hidden {seed}", distillation_loss(z, v, y, T, alpha), kd_reference(z, v, y, T, alpha))
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_kd_gradient", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The gradient with respect to the student's logits, through your function, equals the reference's.
def student_gradient(loss_fn, T, alpha, seed):
    z = random_logits(6, 4, seed=seed).requires_grad_()
    v = random_logits(6, 4, seed=seed + 1)
    y = torch.randint(0, 4, (6,), generator=torch.Generator().manual_seed(seed + 2))
    loss_fn(z, v, y, T, alpha).backward()
    return z.grad


for T in (2.0, 10.0):
    close(f"d loss / d student_logits at T = {T}", student_gradient(distillation_loss, T, 0.8, 7),
          student_gradient(kd_reference, T, 0.8, 7), atol=1e-9)
print("✓ the gradient with respect to the student's logits, T = 2 and 10")
### BEGIN HIDDEN TESTS
close("hidden gradient", student_gradient(distillation_loss, 50.0, 1.0, 90),
      student_gradient(kd_reference, 50.0, 1.0, 90), atol=1e-9)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 · Why $T^2$ (written answer, 2 points)
#
# In a few sentences: for large $T$, expand $q_T - p_T$ to first order in $1/T$ to show that the soft term's
# gradient without the $T^2$ factor falls like $1/T^2$. What does that do to the balance between the soft and
# the hard term if you change $T$ but not $\alpha$? And what does the soft term's gradient become, with the
# $T^2$, as $T \to \infty$ (assume the logits of each row sum to zero)?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_t_squared", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). The gradient of $H(p_T, q_T)$ in
# $z_i$ is $(q_i - p_i)/(TB)$. For large $T$, $\exp(z_i/T) \approx 1 + z_i/T$, so $q_i \approx (1 + z_i/T)/(K +
# \sum_j z_j/T)$ and $q_i - p_i \approx (z_i - v_i)/(KT)$ when the logits of a row sum to zero: the gradient is
# about $(z_i - v_i)/(K T^2 B)$, falling like $1/T^2$. Without the factor, raising $T$ would silently shrink
# the soft term until the hard labels dominate, so $\alpha$ would mean something different at every $T$;
# with the $T^2$ the gradient tends to $(z_i - v_i)/(KB)$: distillation becomes matching the logits (the
# gradient of $\frac{1}{2KB}\|z - v\|^2$). One point for the $1/T^2$ expansion and the balance, one for the
# logit-matching limit.
