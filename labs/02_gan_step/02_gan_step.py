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
# # Lab 02 · One GAN training step
#
# You will write the two losses of a generative adversarial network (生成对抗网络) from the
# discriminator's logits, then the training step that alternates between the two players, and train a
# small GAN on eight Gaussians arranged in a ring: a good step finds (nearly) all eight modes, a broken one
# collapses onto a few or none. Then you write the measure that tells the two apart: how many modes a set
# of samples covers. Your losses are graded against their definitions on logits you do not see, your step
# against the course's reference step, and your mode count on sample sets you do not see.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `discriminator_loss`, `generator_loss` (non-saturating) | 2 + 2 |
# | 2 | `train_step`: one update of D, then one of G | 3 |
# | 3 | `modes_covered`: count the modes a generator covers | 3 |
# | 4 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# The test cell under your code checks it and says what is wrong. The grader runs those tests and hidden
# ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename the
# functions, and do not use `karpa_lab.models.gan`'s losses or `GANUpdate`, nor the course's own mode counts
# (`karpa_lab.metrics`, `RING.modes_covered`) in your code. Before you hand
# it in: *Kernel → Restart Kernel and Run All Cells*. The whole notebook runs in well under a minute on a
# laptop CPU.

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
             "mode_coverage", "modes_covered", "assign")
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


# %% [markdown]
# ## Part 1 · The losses, on logits
#
# The discriminator outputs a logit $l$ per sample (B,), and $D = \sigma(l)$ is its probability that the
# sample is real. With logits $l_r$ (B,) on real data and $l_f$ (B,) on fakes $G(z)$:
#
# $$L_D = -\mathbb{E}[\log D(x)] - \mathbb{E}[\log(1 - D(G(z)))]
#       = -\operatorname{mean}\log\sigma(l_r) - \operatorname{mean}\log\sigma(-l_f),$$
#
# using $1 - \sigma(l) = \sigma(-l)$. The generator's non-saturating loss (非饱和损失) is
#
# $$L_G = -\mathbb{E}[\log D(G(z))] = -\operatorname{mean}\log\sigma(l_f).$$
#
# (The minimax game's own generator loss, $\mathbb{E}[\log(1 - D(G(z)))]$, saturates: when D rejects the
# fakes confidently its gradient vanishes, which is exactly when G needs one.) Both losses are scalars.
#
# **Task 1.** Write `discriminator_loss(real_logits, fake_logits)` and `generator_loss(fake_logits)`.
# They must stay finite and exact for logits like ±200: $\log\sigma(-200)$ is $-200$, but
# `torch.log(torch.sigmoid(-200.))` is $\log 0 = -\infty$. Use `F.logsigmoid`. (You may not use
# `F.binary_cross_entropy_with_logits`: the point is to see what it computes.)

# %% nbgrader={"grade": false, "grade_id": "losses", "locked": false, "schema_version": 3, "solution": true, "task": false}
def discriminator_loss(real_logits, fake_logits):
    """L_D = -mean log σ(l_real) - mean log(1 - σ(l_fake)) for logits (B_real,) and (B_fake,): a scalar."""
    ### BEGIN SOLUTION
    return -F.logsigmoid(real_logits).mean() - F.logsigmoid(-fake_logits).mean()
    ### END SOLUTION


def generator_loss(fake_logits):
    """The non-saturating L_G = -mean log σ(l_fake) for logits (B,): a scalar."""
    ### BEGIN SOLUTION
    return -F.logsigmoid(fake_logits).mean()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_discriminator_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# L_D against its definition, on random and on extreme logits.
check_no_calls(discriminator_loss, FORBIDDEN, "write it with F.logsigmoid")
check_gan_losses(discriminator_loss, None)
# A discriminator that is sure and right pays almost nothing; sure and wrong pays a lot.
sure = torch.tensor([30.0, 30.0])
assert discriminator_loss(sure, -sure) < 1e-10 and discriminator_loss(-sure, sure) > 59
### BEGIN HIDDEN TESTS
for seed in (1, 2):
    check_gan_losses(discriminator_loss, None, batch=1, seed=seed)
l_r, l_f = torch.randn(5), torch.randn(3)  # batches of different sizes, float32
want = F.binary_cross_entropy_with_logits(l_r, torch.ones(5)) + F.binary_cross_entropy_with_logits(l_f, torch.zeros(3))
assert torch.allclose(discriminator_loss(l_r, l_f), want, atol=1e-6), "float32, two batch sizes"
assert torch.isclose(discriminator_loss(torch.zeros(4), torch.zeros(4)), torch.tensor(2 * 0.6931471805599453)), "D = 1/2"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_generator_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# L_G against its definition, on random and on extreme logits; large when D rejects the fakes (l_f very
# negative), with a gradient that does not vanish.
check_no_calls(generator_loss, FORBIDDEN, "write it with F.logsigmoid")
check_gan_losses(None, generator_loss)
rejected = torch.tensor([-20.0, -20.0], requires_grad=True)
loss = generator_loss(rejected)
loss.backward()
print(f"L_G = {loss.item():.3f} where D rejects the fakes; dL_G/dl = {rejected.grad.tolist()}")
assert abs(loss.item() - 20.0) < 1e-6, "-log σ(-20) = 20 (to 2e-9)"
assert torch.allclose(rejected.grad, torch.tensor([-0.5, -0.5]), atol=1e-6), "the gradient -σ(-l)/B must not vanish"
### BEGIN HIDDEN TESTS
check_gan_losses(None, generator_loss, batch=1, seed=3)
l_f = torch.randn(6, dtype=torch.float64)
assert torch.allclose(generator_loss(l_f), F.binary_cross_entropy_with_logits(l_f, torch.ones_like(l_f))), "float64"
assert torch.isfinite(generator_loss(torch.tensor([-1000.0, 1000.0]))), "finite at ±1000"
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
# (the two losses of this step, as floats or scalar tensors).

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
# Your step against the reference, three steps in a row on two identical GANs.
check_no_calls(train_step, FORBIDDEN, "use your own losses and the two optimizers")
check_gan_step(train_step)
### BEGIN HIDDEN TESTS
check_gan_step(train_step, steps=5, batch=1, seed=7)
check_gan_step(train_step, steps=2, batch=64, seed=8)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · Counting the modes
#
# Eight Gaussians on a circle (std 0.1, radius 2), and a GAN of two small MLPs (2-64-64-2 and 2-64-64-1).
# A generator that collapses (模式崩溃) puts all its samples on a few of the modes; one that has not learned
# yet puts them between the modes. A loss curve shows neither, so GANs on such data are judged by the modes
# their samples cover. A mode counts as **covered** when at least 1 % of the samples lie within three
# standard deviations of its centre (20 of 2000 samples, within a distance of 0.3). A sample far from every
# centre covers nothing, however close it is to one centre compared with the others.
#
# **Task 3.** Write `modes_covered(samples, centers, std)` returning the number of covered modes (an
# `int`), for samples (N, 2) and centres (K, 2). `torch.cdist` gives every sample's distance to every centre.

# %% nbgrader={"grade": false, "grade_id": "modes_covered", "locked": false, "schema_version": 3, "solution": true, "task": false}
def modes_covered(samples, centers, std):
    """How many of the K centres (K, 2) have at least 1 % of the samples (N, 2) within 3 std of them."""
    ### BEGIN SOLUTION
    near = torch.cdist(samples.double(), centers.double()) <= 3 * std   # (N, K)
    min_count = max(1, round(0.01 * samples.shape[0]))
    return int((near.sum(dim=0) >= min_count).sum())
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_modes", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Sample sets whose coverage is known: the ring itself, a collapse onto 3 modes, samples between the modes,
# and a mode that gets just under 1 % of the samples.
check_no_calls(modes_covered, FORBIDDEN, "count the samples near each centre yourself")
gen = torch.Generator().manual_seed(3)
centers, std = RING.centers, RING.std
between = torch.arange(2000) % 8 * (math.pi / 4) + math.pi / 8          # angles halfway between two modes
cases = {
    "2000 samples of the ring": (RING.sample(2000, generator=gen), 8),
    "a collapse onto modes 0, 3 and 5": (centers[torch.tensor([0, 3, 5]).repeat(700)] + std * torch.randn(2100, 2, generator=gen), 3),
    "2000 samples between the modes": (2 * torch.stack([between.cos(), between.sin()], 1) + 0.05 * torch.randn(2000, 2, generator=gen), 0),
    "1981 samples on mode 0, 19 (< 1 %) on mode 1": (centers[torch.tensor([0] * 1981 + [1] * 19)] + std * torch.randn(2000, 2, generator=gen), 1),
}
for what, (samples, want) in cases.items():
    got = modes_covered(samples, centers, std)
    assert isinstance(got, int), f"modes_covered should return an int, got {type(got).__name__}"
    assert got == want, (f"{what}: {got} modes covered, expected {want}" + (
        ": a sample counts only within 3 std of a centre, not for its nearest centre" if got > want else ""))
    print(f"✓ {what}: {got} modes")
### BEGIN HIDDEN TESTS
grid = GaussianMixture2D.grid(side=3, spacing=1.0, std=0.05)
for seed, (n, modes) in enumerate([(500, [0, 4, 8]), (300, list(range(9))), (1000, [2])]):
    g = torch.Generator().manual_seed(50 + seed)
    x = grid.centers[torch.tensor(modes).repeat(n // len(modes) + 1)[:n]] + grid.std * torch.randn(n, 2, generator=g)
    x = torch.cat([x, 4 * torch.rand(n // 4, 2, generator=g) - 2])  # a spray over the square
    assert modes_covered(x, grid.centers, grid.std) == mode_coverage(grid, x)["modes"], f"grid, modes {modes}"
edge = torch.tensor([[2.0 + 0.29, 0.0]] * 20 + [[2.0 + 0.31, 0.0]] * 1980)  # 20 of 2000 just inside 3 std of mode 0
assert modes_covered(edge, centers, std) == 1, "exactly 1 % within 3 std covers the mode"
assert modes_covered(edge[1:], centers, std) == 0, "19 of 1999 is under 1 %"
### END HIDDEN TESTS

# %% [markdown]
# Now train the GAN with your `train_step` and count: 400 steps of the course's `fit`, calling your step
# once per step, then 2000 samples of the generator. The cell prints how many of the 8 modes they cover, by
# your count and by the course's, and plots them over the data. Try `train_on_ring(0, steps=1500)`, or the
# saturating loss, and look again.

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
print(f"your GAN covers {modes_covered(samples, RING.centers, RING.std)} of 8 modes after 400 steps "
      f"(the course's count: {mode_coverage(RING, samples)['modes']})")
real = RING.sample(2000, generator=torch.Generator().manual_seed(5))
plt.figure(figsize=(4, 4))
plt.scatter(*real.T, s=2, alpha=0.3, label="real")
plt.scatter(*samples.T, s=2, alpha=0.3, label="generated")
plt.axis("equal")
plt.legend()
plt.show()

# %% [markdown]
# ## Part 4 · Saturating or not (written answer, 2 points)
#
# Early in training the discriminator rejects the fakes easily: $l_f \ll 0$. Compute $\partial L_G /
# \partial l_f$ for the saturating loss $\mathbb{E}[\log(1 - \sigma(l_f))]$ and for the non-saturating
# loss $-\mathbb{E}[\log \sigma(l_f)]$, and say what each does to the generator's learning at that moment.
# Why do both losses still share the same fixed point?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_saturation", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). Per sample, $\frac{d}{dl}
# \log(1 - \sigma(l)) = -\sigma(l)$, which tends to 0 as $l \to -\infty$: the saturating loss gives G almost
# no gradient exactly when D rejects its samples, and learning stalls. $\frac{d}{dl}(-\log\sigma(l)) =
# -(1 - \sigma(l)) = -\sigma(-l)$, which tends to $-1$: the non-saturating loss pushes $l_f$ up hardest
# when the fakes are worst. Both ask G to make $D(G(z))$ large: for the optimal D they are both extremal
# when $p_g = p_{data}$ ($D = 1/2$ everywhere), so the game has the same equilibrium; only the gradient
# far from it differs. Two points: the two derivatives and their limits (1), the effect on G and the shared
# fixed point (1).
