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
# # Lab 08 · Decoupled knowledge distillation
#
# Knowledge distillation trains a small student on a large teacher's softened predictions (Hinton, Vinyals &
# Dean 2015). Zhao, Cui, Song, Qiu & Liang (2022, "Decoupled knowledge distillation") split its loss in two:
# how sure the teacher is of the true class (target-class KD, TCKD) and how it spreads the rest of its
# probability over the wrong classes (non-target-class KD, NCKD: the "dark knowledge"). Classic KD weighs the
# second part by how unsure the teacher is, so a confident teacher hardly teaches it at all; DKD gives each part
# its own weight. You will write both parts and the DKD loss with nothing but tensor operations. Your code is
# graded against reference values on logits, labels, temperatures and weights you do not see, and on its
# gradient.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `tckd`: target-class KD, target against the rest | 2 |
# | 2 | `nckd`: non-target-class KD, over the wrong classes | 2 |
# | 3 | `dkd_loss`: both parts, weighted, and its gradient | 3 + 1 |
# | 4 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# Each test cell below your code checks it and says what is wrong. The teacher's grader runs those tests
# and hidden ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename
# the functions, and do not use `torch.softmax`, `F.softmax`, `F.log_softmax`, `F.cross_entropy`,
# `F.kl_div`, `F.nll_loss` or `karpa_lab.models.distill` inside your functions (the grader sees such calls
# however they are made); `torch.exp`, `torch.log`, `torch.logsumexp`, masks and indexing are fine. Before you
# hand it in: *Kernel → Restart Kernel and Run All Cells*; the notebook runs in a few seconds.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import warnings

import torch
import torch.nn.functional as F

torch.manual_seed(0)
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


def random_logits(batch: int, classes: int, seed: int, scale: float = 3.0) -> torch.Tensor:
    """Logits (batch, classes) in float64, reproducible."""
    return scale * torch.randn(batch, classes, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def random_labels(batch: int, classes: int, seed: int) -> torch.Tensor:
    return torch.randint(0, classes, (batch,), generator=torch.Generator().manual_seed(seed))


def close(name: str, got, want: torch.Tensor, atol: float = 1e-9) -> None:
    """Raise unless got is a tensor of want's shape within atol of it; say how far off."""
    assert isinstance(got, torch.Tensor), f"{name} should be a torch.Tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"{name} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    assert torch.isfinite(got).all(), f"{name} is {got}: an overflow, or the log of a probability that rounded to 0"
    err = float((got - want).abs().max()) if got.numel() else 0.0
    assert err <= atol, f"{name} is off by {err:.3g} (tolerance {atol:g})"


def binary_and_rest(logits: torch.Tensor, labels: torch.Tensor, T: float):
    """The reference's pieces, with PyTorch's softmax: b = (p_t, 1 - p_t) (B, 2) and p_hat (B, K - 1)."""
    p = torch.softmax(logits / T, dim=-1)
    target = F.one_hot(labels, logits.shape[-1]).bool()
    p_t = p[target]
    b = torch.stack([p_t, 1 - p_t], dim=-1)
    rest = torch.softmax((logits / T)[~target].view(len(logits), -1), dim=-1)
    return b, rest


def kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) of each row, summed over the last axis, averaged over the batch (PyTorch's kl_div)."""
    return F.kl_div(q.log(), p, reduction="batchmean")


# %% [markdown]
# ## The two parts of the distillation loss
#
# For the student's logits $z$ (B, K), the teacher's $v$ (B, K) (one row per example, one column per class),
# the labels $y$ (B,) and a temperature $T > 0$, the softened predictions are $q = \text{softmax}(z/T)$ and
# $p = \text{softmax}(v/T)$ (B, K). Write $t = y_b$ for the target class of row b. DKD reads each prediction as
# two distributions:
#
# - the **binary** one, target against the rest: $b^{\mathcal T} = (p_t,\ 1 - p_t)$ for the teacher and
#   $b^{\mathcal S} = (q_t,\ 1 - q_t)$ for the student, (B, 2);
# - the one **among the non-target classes**, renormalised to sum to 1: $\hat p_i = p_i / (1 - p_t)$ and
#   $\hat q_i = q_i / (1 - q_t)$ for $i \ne t$, (B, K - 1).
#
# With $\mathrm{KL}(a \,\|\, c) = \sum_i a_i (\log a_i - \log c_i)$, each averaged over the batch and times
# $T^2$ (which keeps the gradient's size the same at every temperature, as in classic KD):
#
# $$\mathrm{TCKD} = \frac{T^2}{B} \sum_b \mathrm{KL}\big(b^{\mathcal T}_b \,\|\, b^{\mathcal S}_b\big), \qquad
#   \mathrm{NCKD} = \frac{T^2}{B} \sum_b \mathrm{KL}\big(\hat p_b \,\|\, \hat q_b\big), \qquad
#   \mathrm{DKD} = \alpha\, \mathrm{TCKD} + \beta\, \mathrm{NCKD}.$$
#
# Compute every log-probability from logsumexps, never as the log of a probability that may have rounded to 0
# or 1: $\log p_t = v_t/T - \mathrm{LSE}(v/T)$, $\log(1 - p_t) = \mathrm{LSE}_{i \ne t}(v_i/T) -
# \mathrm{LSE}(v/T)$ and $\log \hat p_i = v_i/T - \mathrm{LSE}_{j \ne t}(v_j/T)$, where LSE is `torch.logsumexp`
# (the non-target classes of each row: mask the target out, e.g. with `F.one_hot(labels, K).bool()`). The
# teacher only gives targets: detach its logits.

# %% [markdown]
# ## Part 1 · Target-class KD
#
# **Task 1.** Write `tckd(student_logits, teacher_logits, labels, T)` returning the scalar TCKD.

# %% nbgrader={"grade": false, "grade_id": "tckd", "locked": false, "schema_version": 3, "solution": true, "task": false}
def tckd(student_logits, teacher_logits, labels, T):
    """T^2 * mean over the batch of KL((p_t, 1 - p_t) || (q_t, 1 - q_t)): a scalar."""
    ### BEGIN SOLUTION
    def log_binary(logits):
        z = logits / T
        target = F.one_hot(labels, z.shape[-1]).bool()
        everything = torch.logsumexp(z, dim=-1)
        rest = torch.logsumexp(z.masked_fill(target, float("-inf")), dim=-1)
        return torch.stack([z[target] - everything, rest - everything], dim=-1)  # (B, 2)

    log_t, log_s = log_binary(teacher_logits.detach()), log_binary(student_logits)
    return T**2 * (log_t.exp() * (log_t - log_s)).sum(dim=-1).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_tckd", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def tckd_reference(z, v, y, T):
    return T**2 * kl(binary_and_rest(v, y, T)[0], binary_and_rest(z, y, T)[0])


z, v, y = random_logits(6, 5, seed=0), random_logits(6, 5, seed=1), random_labels(6, 5, seed=2)
for T in (1.0, 4.0):
    close(f"tckd at T = {T}", tckd(z, v, y, T), tckd_reference(z, v, y, T))
close("tckd of logits near 1000", tckd(z + 1000.0, v - 1000.0, y, 2.0), tckd_reference(z, v, y, 2.0))
confident = v.clone()
confident[torch.arange(6), y] += 60.0  # a teacher sure of every target: p_t = 1 - 1e-26 or so
got = tckd(z, confident, y, 1.0)
assert torch.isfinite(got), (f"tckd with a confident teacher is {got}: log(1 - p_t) of a p_t that rounded to 1; "
                             "compute it as the logsumexp of the other classes minus the logsumexp of all")
print("✓ tckd: T = 1 and 4, large logits, a confident teacher")
### BEGIN HIDDEN TESTS
def stable_binary(logits, y, T):
    z = logits / T
    target = F.one_hot(y, z.shape[-1]).bool()
    lse = torch.logsumexp(z, -1)
    return torch.stack([z[target] - lse, torch.logsumexp(z[~target].view(len(z), -1), -1) - lse], -1)


def stable_tckd(z, v, y, T):
    a, c = stable_binary(v, y, T), stable_binary(z, y, T)
    return T**2 * F.kl_div(c, a, reduction="batchmean", log_target=True)


close("hidden: a confident teacher", got, stable_tckd(z, confident, y, 1.0))
for seed, (b, k, T) in enumerate([(1, 2, 0.5), (7, 10, 4.0), (3, 3, 100.0), (5, 6, 0.1)]):
    z, v, y = random_logits(b, k, 10 + seed, 20.0), random_logits(b, k, 20 + seed, 20.0), random_labels(b, k, 30 + seed)
    close(f"hidden {seed}", tckd(z, v, y, T), stable_tckd(z, v, y, T), atol=1e-9 * max(1.0, T**2))
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · Non-target-class KD
#
# **Task 2.** Write `nckd(student_logits, teacher_logits, labels, T)` returning the scalar NCKD: the KL
# divergence between the teacher's and the student's distributions over the $K - 1$ classes other than each
# row's target.

# %% nbgrader={"grade": false, "grade_id": "nckd", "locked": false, "schema_version": 3, "solution": true, "task": false}
def nckd(student_logits, teacher_logits, labels, T):
    """T^2 * mean over the batch of KL(p_hat || q_hat) over the non-target classes: a scalar."""
    ### BEGIN SOLUTION
    def log_rest(logits):
        z = (logits / T)[~F.one_hot(labels, logits.shape[-1]).bool()].view(len(logits), -1)  # (B, K - 1)
        return z - torch.logsumexp(z, dim=-1, keepdim=True)

    log_t, log_s = log_rest(teacher_logits.detach()), log_rest(student_logits)
    return T**2 * (log_t.exp() * (log_t - log_s)).sum(dim=-1).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_nckd", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def nckd_reference(z, v, y, T):
    return T**2 * kl(binary_and_rest(v, y, T)[1], binary_and_rest(z, y, T)[1])


z, v, y = random_logits(6, 5, seed=3), random_logits(6, 5, seed=4), random_labels(6, 5, seed=5)
for T in (1.0, 3.0):
    close(f"nckd at T = {T}", nckd(z, v, y, T), nckd_reference(z, v, y, T))
close("nckd of logits near 1000", nckd(z + 1000.0, v + 1000.0, y, 2.0), nckd_reference(z, v, y, 2.0))
# For one example the two parts add up to classic KD: KL(p || q) = TCKD + (1 - p_t) NCKD (all times T^2).
z1, v1, y1 = z[:1], v[:1], y[:1]
p_t = torch.softmax(v1 / 2.0, dim=-1)[0, y1[0]]
kd = 4.0 * kl(torch.softmax(v1 / 2.0, dim=-1), torch.softmax(z1 / 2.0, dim=-1))
close("TCKD + (1 - p_t) NCKD - KD for one example", tckd(z1, v1, y1, 2.0) + (1 - p_t) * nckd(z1, v1, y1, 2.0) - kd,
      torch.zeros((), dtype=torch.float64))
print("✓ nckd: T = 1 and 3, large logits, and TCKD + (1 - p_t) NCKD is classic KD")
### BEGIN HIDDEN TESTS
def stable_nckd(z, v, y, T):
    mask = ~F.one_hot(y, z.shape[-1]).bool()
    a = torch.log_softmax((v / T)[mask].view(len(v), -1), -1)
    c = torch.log_softmax((z / T)[mask].view(len(z), -1), -1)
    return T**2 * F.kl_div(c, a, reduction="batchmean", log_target=True)


for seed, (b, k, T) in enumerate([(1, 10, 20.0), (9, 3, 0.7), (4, 7, 5.0), (2, 2, 1.0)]):
    z, v, y = random_logits(b, k, 40 + seed, 30.0), random_logits(b, k, 50 + seed, 30.0), random_labels(b, k, 60 + seed)
    close(f"hidden {seed}", nckd(z, v, y, T), stable_nckd(z, v, y, T), atol=1e-9 * max(1.0, T**2))
z, v, y = random_logits(1, 6, 70), random_logits(1, 6, 71), random_labels(1, 6, 72)
p_t = torch.softmax(v / 5.0, dim=-1)[0, y[0]]
close("hidden: the decomposition at T = 5", tckd(z, v, y, 5.0) + (1 - p_t) * nckd(z, v, y, 5.0),
      25.0 * kl(torch.softmax(v / 5.0, dim=-1), torch.softmax(z / 5.0, dim=-1)))
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · The DKD loss
#
# $$\mathcal{L}_{\mathrm{DKD}} = \alpha\, \mathrm{TCKD} + \beta\, \mathrm{NCKD}.$$
#
# Classic KD is the special case $\alpha = 1$, $\beta = 1 - p_t$ (one example at a time). DKD fixes $\beta$
# instead, so the dark knowledge keeps its weight however sure the teacher is (the paper uses $\alpha = 1$ and
# $\beta$ from 1 to 8; in practice it is added to the usual cross-entropy on the labels).
#
# **Task 3.** Write `dkd_loss(student_logits, teacher_logits, labels, T, alpha, beta)` returning a scalar
# tensor, using your functions above. It must be differentiable in `student_logits` (no `.item()`, no
# `detach` of the student).

# %% nbgrader={"grade": false, "grade_id": "dkd_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def dkd_loss(student_logits, teacher_logits, labels, T, alpha, beta):
    """alpha TCKD + beta NCKD: a scalar."""
    ### BEGIN SOLUTION
    return (alpha * tckd(student_logits, teacher_logits, labels, T)
            + beta * nckd(student_logits, teacher_logits, labels, T))
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_dkd_loss", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def dkd_reference(z, v, y, T, alpha, beta):
    return alpha * tckd_reference(z, v, y, T) + beta * nckd_reference(z, v, y, T)


z, v, y = random_logits(8, 5, seed=6), random_logits(8, 5, seed=7), random_labels(8, 5, seed=8)
for T, alpha, beta in [(1.0, 1.0, 1.0), (4.0, 1.0, 8.0), (2.0, 0.0, 2.0), (3.0, 0.5, 0.0)]:
    close(f"dkd_loss at T = {T}, alpha = {alpha}, beta = {beta}", dkd_loss(z, v, y, T, alpha, beta),
          dkd_reference(z, v, y, T, alpha, beta))
print("✓ dkd_loss at four (T, alpha, beta)")
### BEGIN HIDDEN TESTS
for seed, (b, k, T, alpha, beta) in enumerate([(5, 10, 8.0, 1.0, 4.0), (1, 3, 20.0, 0.3, 2.0), (12, 4, 0.5, 2.0, 0.7)]):
    z, v, y = random_logits(b, k, 80 + seed), random_logits(b, k, 90 + seed), random_labels(b, k, 100 + seed)
    close(f"hidden {seed}", dkd_loss(z, v, y, T, alpha, beta), dkd_reference(z, v, y, T, alpha, beta),
          atol=1e-9 * max(1.0, T**2))
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_dkd_gradient", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The gradient with respect to the student's logits, through your function, equals the reference's.
def student_gradient(loss_fn, T, alpha, beta, seed):
    z = random_logits(6, 4, seed=seed).requires_grad_()
    v, y = random_logits(6, 4, seed=seed + 1), random_labels(6, 4, seed=seed + 2)
    loss_fn(z, v, y, T, alpha, beta).backward()
    return z.grad


for T in (2.0, 10.0):
    close(f"d loss / d student_logits at T = {T}", student_gradient(dkd_loss, T, 1.0, 8.0, 9),
          student_gradient(dkd_reference, T, 1.0, 8.0, 9))
print("✓ the gradient with respect to the student's logits, T = 2 and 10")
### BEGIN HIDDEN TESTS
close("hidden gradient", student_gradient(dkd_loss, 50.0, 0.5, 2.0, 110),
      student_gradient(dkd_reference, 50.0, 0.5, 2.0, 110))
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 · Why decouple (written answer, 2 points)
#
# In a few sentences: for one example, show that classic KD's $\mathrm{KL}(p \,\|\, q)$ splits into
# $\mathrm{KL}(b^{\mathcal T} \| b^{\mathcal S}) + (1 - p_t)\, \mathrm{KL}(\hat p \,\|\, \hat q)$ (write
# $p_i = (1 - p_t)\, \hat p_i$ for $i \ne t$). What does the factor $(1 - p_t)$ do to the dark knowledge when the
# teacher is confident about the target, which is when it knows the example best? What do DKD's separate
# weights change, and why keep the $T^2$ on both parts?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_decoupled", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). $\mathrm{KL}(p\|q) = p_t \log
# \frac{p_t}{q_t} + \sum_{i \ne t} p_i \log \frac{p_i}{q_i}$, and with $p_i = (1 - p_t)\hat p_i$, $q_i = (1 -
# q_t)\hat q_i$ the second sum is $(1 - p_t) \log \frac{1 - p_t}{1 - q_t} \sum_{i \ne t} \hat p_i + (1 - p_t)
# \sum_{i \ne t} \hat p_i \log \frac{\hat p_i}{\hat q_i}$; since the $\hat p_i$ sum to 1, the first term joins
# $p_t \log(p_t/q_t)$ to make $\mathrm{KL}(b^{\mathcal T} \| b^{\mathcal S})$, and the rest is
# $(1 - p_t)\,\mathrm{KL}(\hat p \| \hat q)$. When the teacher is confident, $p_t \to 1$ and the factor
# $1 - p_t \to 0$: how the teacher ranks the wrong classes (the dark knowledge) is multiplied by almost nothing
# exactly on the examples it understands best. DKD replaces the factor by a constant $\beta$, so the
# non-target part is learned at full strength on every example, and $\alpha$ sets the target part on its
# own. The $T^2$ keeps each part's gradient the same size at every temperature, so $\alpha$ and $\beta$ mean
# the same thing whatever $T$ is. One point for the decomposition, one for the suppression and the weights.
