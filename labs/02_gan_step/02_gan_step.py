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
# # Lab 02 · One GAN training step, with the hinge loss
#
# You will write the two hinge losses of a generative adversarial network (生成对抗网络), the losses of the
# geometric GAN (Lim & Ye 2017) that SN-GAN, SAGAN and BigGAN train with, then the training step that
# alternates between the two players, and train a small GAN on eight Gaussians arranged in a ring. Then you
# write a measure of how evenly a generator covers the modes: the KL divergence of its distribution over the
# modes from the data's. Your losses are graded against their definitions on logits you do not see (values
# and gradients), your step against the course's reference step, and your measure on sample sets you do
# not see.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `discriminator_loss`, `generator_loss` (hinge) | 2 + 2 |
# | 2 | `train_step`: one update of D, then one of G | 3 |
# | 3 | `mode_kl`: how evenly the samples cover the modes | 3 |
# | 4 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# The test cell under your code checks it and says what is wrong. The grader runs those tests and hidden
# ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename the
# functions, and do not use `karpa_lab.models.gan`'s losses or `GANUpdate`, PyTorch's hinge losses, nor the
# course's own mode measures (`karpa_lab.metrics`, `RING.modes_covered`, `RING.assign`, `RING.quality`) in
# your code. Before you hand it in: *Kernel → Restart Kernel and Run All Cells*. The whole notebook runs in
# well under a minute on a laptop CPU.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import warnings

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from karpa_lab import fit, seed_everything
from karpa_lab.data.synthetic import GaussianMixture2D
from karpa_lab.grading import check_gan_losses, check_gan_step, check_no_calls
from karpa_lab.metrics import mode_coverage
from karpa_lab.models.gan import gan_optimizers, mlp_gan_2d

seed_everything(0)
RING = GaussianMixture2D.ring(std=0.1)  # Part 3's data: eight Gaussians on a circle
FORBIDDEN = ("GANUpdate", "binary_cross_entropy", "binary_cross_entropy_with_logits", "BCEWithLogitsLoss", "karpa_lab",
             "hinge_embedding_loss", "HingeEmbeddingLoss", "margin_ranking_loss", "MarginRankingLoss",
             "mode_coverage", "modes_covered", "assign", "quality")
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


# %% [markdown]
# ## Part 1 · The hinge losses, on logits
#
# The discriminator outputs a logit $l$ per sample (B,): a score, high for what it takes as real. The hinge
# loss trains it like a support-vector machine with a margin of 1: with logits $l_r$ (B_r,) on real data and
# $l_f$ (B_f,) on fakes $G(z)$,
#
# $$L_D = \operatorname{mean}\, \max(0,\ 1 - l_r) + \operatorname{mean}\, \max(0,\ 1 + l_f).$$
#
# A real sample costs nothing once $l_r \ge 1$, a fake once $l_f \le -1$: only the samples inside the margin
# (间隔) move D. The generator's loss is
#
# $$L_G = -\operatorname{mean}\, l_f ,$$
#
# so G pushes D's scores on its fakes up, at the same rate however bad they are: per sample its gradient is
# $-1/B_f$, never small. (The cross-entropy losses of the original GAN read $D = \sigma(l)$ as a probability;
# the hinge losses use the logit as it is.) Both losses are scalars; $\max(0, \cdot)$ is `torch.relu`.
#
# **Task 1.** Write `discriminator_loss(real_logits, fake_logits)` and `generator_loss(fake_logits)`, with
# tensor operations (you may not use `F.hinge_embedding_loss` or `F.margin_ranking_loss`: the point is to
# see what they compute).

# %% nbgrader={"grade": false, "grade_id": "losses", "locked": false, "schema_version": 3, "solution": true, "task": false}
def discriminator_loss(real_logits, fake_logits):
    """The hinge L_D = mean max(0, 1 - l_real) + mean max(0, 1 + l_fake) for logits (B_real,) and (B_fake,)."""
    ### BEGIN SOLUTION
    return torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
    ### END SOLUTION


def generator_loss(fake_logits):
    """The hinge GAN's L_G = -mean l_fake for logits (B,): a scalar."""
    ### BEGIN SOLUTION
    return -fake_logits.mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_discriminator_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# L_D against its definition, values and gradients, inside the margin and far beyond it.
check_no_calls(discriminator_loss, FORBIDDEN, "write it with torch.relu")
check_gan_losses(discriminator_loss, None)
# A discriminator that is sure and right pays nothing at all; sure and wrong pays 31 per term.
sure = torch.tensor([30.0, 30.0])
assert discriminator_loss(sure, -sure) == 0 and discriminator_loss(-sure, sure) == 62
# Past the margin a sample no longer moves D: here the second real and the first fake.
real, fake = torch.tensor([0.5, 3.0], requires_grad=True), torch.tensor([-3.0, -0.5], requires_grad=True)
discriminator_loss(real, fake).backward()
print(f"dL_D/dl_real = {(real.grad + 0.0).tolist()}, dL_D/dl_fake = {(fake.grad + 0.0).tolist()}")
assert real.grad.tolist() == [-0.5, 0.0] and fake.grad.tolist() == [0.0, 0.5], "-1/B inside the margin, 0 beyond"
### BEGIN HIDDEN TESTS
for seed in (1, 2):
    check_gan_losses(discriminator_loss, None, batch=1, seed=seed)
l_r, l_f = 3 * torch.randn(5), 3 * torch.randn(3)  # batches of different sizes, float32
want = F.margin_ranking_loss(l_r, torch.ones(5), torch.ones(5)) + F.margin_ranking_loss(-torch.ones(3), l_f, torch.ones(3))
assert torch.allclose(discriminator_loss(l_r, l_f), want, atol=1e-6), "float32, two batch sizes"
assert discriminator_loss(torch.zeros(4), torch.zeros(4)) == 2, "logits of 0: both terms are 1"
l_r = torch.tensor([0.2, 5.0, -2.0], dtype=torch.float64)
l_f = torch.tensor([4.0, -7.0], dtype=torch.float64)
assert torch.isclose(discriminator_loss(l_r, l_f), torch.tensor((0.8 + 0 + 3) / 3 + (5 + 0) / 2, dtype=torch.float64))
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_generator_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# L_G against its definition, values and gradients; its gradient is the same whether D rejects the fakes
# (l_f very negative) or accepts them.
check_no_calls(generator_loss, FORBIDDEN, "write it with tensor operations")
check_gan_losses(None, generator_loss)
for logit in (-20.0, 20.0):
    fakes = torch.tensor([logit, logit], requires_grad=True)
    loss = generator_loss(fakes)
    loss.backward()
    print(f"L_G = {loss.item():.3f} where every fake scores {logit}; dL_G/dl = {fakes.grad.tolist()}")
    assert loss.item() == -logit and fakes.grad.tolist() == [-0.5, -0.5], "L_G = -mean(l_f), gradient -1/B"
### BEGIN HIDDEN TESTS
check_gan_losses(None, generator_loss, batch=1, seed=3)
l_f = torch.randn(6, dtype=torch.float64)
assert torch.allclose(generator_loss(l_f), F.hinge_embedding_loss(-l_f, torch.ones_like(l_f))), "float64"
assert generator_loss(torch.tensor([-1000.0, 3000.0])) == -1000, "no margin and no relu for G"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · One training step
#
# A step of GAN training plays the two moves in turn, on a batch of real samples `real` (B, 2):
#
# 1. **Discriminator.** Draw noise `z = gan.noise(B, noise)` (B, k) and make fakes `gan.generator(z)`
#    without tracking gradients into G (inside `torch.no_grad()`, or `.detach()` them). Compute $L_D$ on
#    `gan.discriminator(real)` and `gan.discriminator(fakes)`, then `opt_d.zero_grad()`, `backward()`,
#    `opt_d.step()`.
# 2. **Generator.** Draw **fresh** noise `gan.noise(B, noise)`, compute $L_G$ on the discriminator's logits
#    of the new fakes (this time the gradient must flow through D into G), then `opt_g.zero_grad()`,
#    `backward()`, `opt_g.step()`. Only G's weights change here.
#
# Draw the noise exactly twice, in that order, with `gan.noise(B, noise)`: then your step can be compared
# number for number with the reference.
#
# **Task 2.** Write `train_step(gan, real, opt_d, opt_g, noise)` returning `{"loss": L_D, "g_loss": L_G}`
# (the two losses of this step, as floats or scalar tensors), with your hinge losses.

# %% nbgrader={"grade": false, "grade_id": "train_step", "locked": false, "schema_version": 3, "solution": true, "task": false}
def train_step(gan, real, opt_d, opt_g, noise):
    """One D update then one G update on real (B, 2); returns {"loss": L_D, "g_loss": L_G}."""
    ### BEGIN SOLUTION
    B = real.shape[0]
    with torch.no_grad():
        fakes = gan.generator(gan.noise(B, noise))
    d_loss = discriminator_loss(gan.discriminator(real), gan.discriminator(fakes))
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()

    g_loss = generator_loss(gan.discriminator(gan.generator(gan.noise(B, noise))))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return {"loss": d_loss.item(), "g_loss": g_loss.item()}
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_train_step", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Your step against the reference hinge step, three steps in a row on two identical GANs.
check_no_calls(train_step, FORBIDDEN, "use your own losses and the two optimizers")
check_gan_step(train_step)
### BEGIN HIDDEN TESTS
check_gan_step(train_step, steps=5, batch=1, seed=7)
check_gan_step(train_step, steps=2, batch=64, seed=8)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · How evenly are the modes covered?
#
# Eight Gaussians on a circle (std 0.1, radius 2), and a GAN of two small MLPs (2-64-64-2 and 2-64-64-1).
# A generator that collapses (模式崩溃) puts all its samples on a few of the modes; one that reaches every
# mode may still put most of its samples on one. Counting the modes a generator reaches tells the first
# apart, not the second. So next to the count, papers on mode collapse (VEEGAN, Srivastava et al. 2017;
# PacGAN, Lin et al. 2018) report the KL divergence of the generated distribution over the modes from the
# data's:
#
# - each sample within three standard deviations of a centre (a distance of 0.3 here) counts for that
#   centre (the nearest, if it is within reach of two); a sample far from every centre counts for none and
#   is left out;
# - with $n_k$ samples counted for mode $k$, $q_k = n_k / \sum_j n_j$ (K,) is the generated distribution
#   over the modes; the data's is uniform, $u_k = 1/K$;
#
# $$\mathrm{KL}(q \,\|\, u) = \sum_{k=1}^{K} q_k \log \frac{q_k}{1/K} = \sum_k q_k \log (K q_k), \qquad 0 \log 0 = 0 .$$
#
# It is 0 when every mode gets the same share and $\log K$ when all the samples sit on one mode; an even
# collapse onto $m$ of the modes gives $\log(K / m)$. The natural log (nats).
#
# **Task 3.** Write `mode_kl(samples, centers, std)` returning $\mathrm{KL}(q \,\|\, u)$ as a Python `float`,
# for samples (N, 2) and centres (K, 2); `torch.cdist` gives every sample's distance to every centre. When no
# sample is near any centre, $q$ is undefined: raise a `ValueError` that says so.

# %% nbgrader={"grade": false, "grade_id": "mode_kl", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mode_kl(samples, centers, std):
    """KL(q || uniform) of the distribution q over the K centres (K, 2) of the samples (N, 2) within 3 std."""
    ### BEGIN SOLUTION
    dist, nearest = torch.cdist(samples.double(), centers.double()).min(dim=1)      # (N,), (N,)
    counts = torch.bincount(nearest[dist <= 3 * std], minlength=len(centers)).double()   # (K,)
    if counts.sum() == 0:
        raise ValueError(f"no sample lies within 3 std ({3 * std:g}) of any of the {len(centers)} centres: "
                         "the distribution over the modes is undefined")
    q = counts / counts.sum()
    q = q[q > 0]                                                                     # 0 log 0 = 0
    return float((q * torch.log(len(centers) * q)).sum())
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_mode_kl", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Sample sets whose distribution over the modes is known: even, a collapse onto 3 modes, every mode reached but
# one favoured, samples between the modes, none near a mode.
check_no_calls(mode_kl, FORBIDDEN, "count the samples near each centre yourself")
gen = torch.Generator().manual_seed(3)
centers, std = RING.centers, RING.std


def around(modes, n):
    """n samples on each of the listed modes, all within 3 std of their centre."""
    picked = centers[torch.tensor(modes).repeat_interleave(n)]
    return picked + 0.5 * std * torch.randn(len(picked), 2, generator=gen)


between = torch.arange(2000) % 8 * (math.pi / 4) + math.pi / 8          # angles halfway between two modes
between = 2 * torch.stack([between.cos(), between.sin()], 1) + 0.05 * torch.randn(2000, 2, generator=gen)
cases = {
    "250 samples on each of the 8 modes": (around(range(8), 250), 0.0),
    "a collapse onto modes 0, 3 and 5": (around([0, 3, 5], 700), math.log(8 / 3)),
    "all 8 modes, but 1300 of 2000 samples on mode 0": (torch.cat([around([0], 1300), around(range(1, 8), 100)]),
                                                         0.65 * math.log(8 * 0.65) + 7 * 0.05 * math.log(8 * 0.05)),
    "the even ring plus 2000 samples between the modes": (torch.cat([around(range(8), 250), between]), 0.0),
}
for what, (samples, want) in cases.items():
    got = mode_kl(samples, centers, std)
    assert isinstance(got, float), f"mode_kl should return a float (float(...)), got {type(got).__name__}"
    hint = ""
    if abs(got * math.log(2) - want) < 1e-6 and want:
        hint = ": that is in bits (log base 2), use the natural log"
    elif want == 0 and got > 0 and "between" in what:
        hint = ": a sample counts only within 3 std of a centre, not for its nearest centre"
    assert abs(got - want) < 1e-6, f"{what}: KL = {got:.6f}, expected {want:.6f}{hint}"
    print(f"✓ {what}: KL = {got:.4f}")
try:
    mode_kl(3 * centers, centers, std)
except ValueError as err:
    print(f"✓ no sample near a mode: ValueError({err})")
else:
    raise AssertionError("no sample lies near a centre, so q is undefined: mode_kl should raise a ValueError")
### BEGIN HIDDEN TESTS
from torch.distributions import Categorical, kl_divergence


def reference_kl(x, mix):
    dist, nearest = torch.cdist(x.double(), mix.centers.double()).min(dim=1)
    counts = torch.bincount(nearest[dist <= 3 * mix.std], minlength=mix.n_modes).double()
    uniform = torch.full((mix.n_modes,), 1.0 / mix.n_modes, dtype=torch.float64)
    return float(kl_divergence(Categorical(probs=counts / counts.sum()), Categorical(probs=uniform)))


grid = GaussianMixture2D.grid(side=3, spacing=1.0, std=0.05)
for seed, (n, modes) in enumerate([(500, [0, 4, 8]), (300, list(range(9))), (1000, [2]), (900, [1, 1, 1, 5, 7])]):
    g = torch.Generator().manual_seed(50 + seed)
    x = grid.centers[torch.tensor(modes).repeat(n // len(modes) + 1)[:n]] + grid.std * torch.randn(n, 2, generator=g)
    x = torch.cat([x, 4 * torch.rand(n // 4, 2, generator=g) - 2])  # a spray over the square
    assert abs(mode_kl(x, grid.centers, grid.std) - reference_kl(x, grid)) < 1e-9, f"grid, modes {modes}"
edge = torch.tensor([[2.0 + 0.299, 0.0]] * 30 + [[2.0 + 0.301, 0.0]] * 1970 + [[0.0, 2.0]] * 10)
assert abs(mode_kl(edge, centers, std) - (0.75 * math.log(8 * 0.75) + 0.25 * math.log(8 * 0.25))) < 1e-9, "3 std"
one = GaussianMixture2D(torch.zeros(1, 2), 1.0)
assert mode_kl(torch.randn(50, 2, dtype=torch.float64), one.centers, one.std) == 0.0, "one mode: q = u"
### END HIDDEN TESTS

# %% [markdown]
# Now train the GAN with your `train_step` and measure: 400 steps of the course's `fit`, calling your step
# once per step, then 2000 samples of the generator. The cell prints your KL and the course's count of the
# modes they reach, and plots them over the data. Try `train_on_ring(0, steps=1500)`, or change the margin,
# and look again.

# %% nbgrader={"grade": false, "grade_id": "train_on_ring", "locked": true, "schema_version": 3, "solution": false, "task": false}
def train_on_ring(seed, steps=400, lr=2e-3):
    """Train a fresh 2D GAN with your train_step on the ring; return its generator's weights (a state_dict)."""
    seed_everything(seed)
    gan = mlp_gan_2d(hidden=64)
    opt_d, opt_g = gan_optimizers(gan, lr, lr)
    noise, data = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    fit(gan, lambda: RING.sample(128, generator=data), steps=steps, device="cpu", progress=False,
        live_plot=False, log_every=steps, update_fn=lambda g, real: train_step(g, real, opt_d, opt_g, noise))
    return gan.generator.state_dict()


def generated(weights, seed):
    """2000 samples of a generator with these weights."""
    gan = mlp_gan_2d(hidden=64)
    gan.generator.load_state_dict(weights)
    return gan.sample(2000, generator=torch.Generator().manual_seed(seed + 2))


# %%
samples = generated(train_on_ring(seed=0), seed=0)
print(f"after 400 steps: KL from the even spread over the modes {mode_kl(samples, RING.centers, RING.std):.3f} "
      f"(log 8 = {math.log(8):.3f} for a collapse onto one mode); the course's count: "
      f"{mode_coverage(RING, samples)['modes']} of 8 modes")
real = RING.sample(2000, generator=torch.Generator().manual_seed(5))
plt.figure(figsize=(4, 4))
plt.scatter(*real.T, s=2, alpha=0.3, label="real")
plt.scatter(*samples.T, s=2, alpha=0.3, label="generated")
plt.axis("equal")
plt.legend()
plt.show()

# %% [markdown]
# ## Part 4 · What the margin does (written answer, 2 points)
#
# Compute, per sample, $\partial L_D / \partial l_r$ and $\partial L_D / \partial l_f$ for the hinge loss, and
# say which samples stop teaching the discriminator. Compare with the cross-entropy loss $-\log\sigma(l_r) -
# \log\sigma(-l_f)$, whose gradient on a real sample is $-\sigma(-l_r)$: does it ever stop? Then: the
# generator's hinge loss $-\operatorname{mean} l_f$ has the gradient $-1/B$ per fake whatever D says; when
# does that help G, and what keeps the discriminator's logits from growing without bound?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_margin", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). Per sample, $\partial L_D /
# \partial l_r = -1/B_r$ where $l_r < 1$ and 0 where $l_r > 1$; $\partial L_D / \partial l_f = +1/B_f$ where
# $l_f > -1$ and 0 where $l_f < -1$. So D learns only from the samples inside the margin, the ones it does not
# yet separate by 1 (the support vectors of an SVM); a sample it already classifies confidently costs nothing
# and pulls on nothing. The cross-entropy's gradient $-\sigma(-l_r)$ shrinks but never reaches 0: it keeps
# pushing correct logits further out. For G, the constant $-1/B$ means fakes that D rejects firmly still get a
# full gradient (unlike the saturating loss), and fakes D accepts keep being pushed too. The margin is what
# bounds D: once real logits pass +1 and fake ones -1 there is no more gradient to make them larger (with
# spectral normalisation, as in SN-GAN and BigGAN, bounding D's slope as well). Two points: the two
# gradients and the samples past the margin (1), the contrast with cross-entropy and G's constant gradient (1).
