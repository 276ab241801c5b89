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
# collapses onto a few or none. Your losses are graded against their definitions on logits you do not
# see, your step against the course's reference step, and your GAN on the modes it covers.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `discriminator_loss`, `generator_loss` (non-saturating) | 2 + 2 |
# | 2 | `train_step`: one update of D, then one of G | 3 |
# | 3 | train it: the modes of the ring it covers | 3 |
# | 4 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# The test cell under your code checks it and says what is wrong. The grader runs those tests and hidden
# ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename the
# functions, and do not use `karpa_lab.models.gan`'s losses or `GANUpdate` in your code. Before you hand
# it in: *Kernel → Restart Kernel and Run All Cells*. The whole notebook runs in well under a minute on a
# laptop CPU.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
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
FORBIDDEN = ("GANUpdate", "binary_cross_entropy", "binary_cross_entropy_with_logits", "BCEWithLogitsLoss", "karpa_lab")
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
# Both losses against their definitions, on random and on extreme logits (this cell grades L_D).
check_no_calls(discriminator_loss, FORBIDDEN, "write it with F.logsigmoid")
check_gan_losses(discriminator_loss, generator_loss)
# A discriminator that is sure and right pays almost nothing; sure and wrong pays a lot.
sure = torch.tensor([30.0, 30.0])
assert discriminator_loss(sure, -sure) < 1e-10 and discriminator_loss(-sure, sure) > 59
### BEGIN HIDDEN TESTS
for seed in (1, 2):
    check_gan_losses(discriminator_loss, generator_loss, batch=1, seed=seed)
l_r, l_f = torch.randn(5), torch.randn(3)  # batches of different sizes, float32
want = F.binary_cross_entropy_with_logits(l_r, torch.ones(5)) + F.binary_cross_entropy_with_logits(l_f, torch.zeros(3))
assert torch.allclose(discriminator_loss(l_r, l_f), want, atol=1e-6), "float32, two batch sizes"
assert torch.isclose(discriminator_loss(torch.zeros(4), torch.zeros(4)), torch.tensor(2 * 0.6931471805599453)), "D = 1/2"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_generator_loss", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# The non-saturating loss: large when D rejects the fakes (l_f very negative), with a gradient that does not vanish.
check_no_calls(generator_loss, FORBIDDEN, "write it with F.logsigmoid")
rejected = torch.tensor([-20.0, -20.0], requires_grad=True)
loss = generator_loss(rejected)
loss.backward()
print(f"L_G = {loss.item():.3f} where D rejects the fakes; dL_G/dl = {rejected.grad.tolist()}")
assert abs(loss.item() - 20.0) < 1e-6, "-log σ(-20) = 20 (to 2e-9)"
assert torch.allclose(rejected.grad, torch.tensor([-0.5, -0.5]), atol=1e-6), "the gradient -σ(-l)/B must not vanish"
### BEGIN HIDDEN TESTS
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
# ## Part 3 · Train it on the ring
#
# Eight Gaussians on a circle, and a GAN of two small MLPs (2-64-64-2 and 2-64-64-1). The cell below
# trains it with the course's `fit`, calling your `train_step` once per step. A mode counts as covered
# when at least 1 % of 2000 generated samples fall within three standard deviations of its centre.

# %% nbgrader={"grade": false, "grade_id": "train_on_ring", "locked": true, "schema_version": 3, "solution": false, "task": false} tags=["sandbox"]
def train_on_ring(seed, steps=400, lr=2e-3):
    """Train a fresh 2D GAN with your train_step on the ring; return its generator's weights (a state_dict)."""
    seed_everything(seed)
    gan = mlp_gan_2d(hidden=64)
    opt_d, opt_g = gan_optimizers(gan, lr, lr)
    noise, data = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)
    fit(gan, lambda: RING.sample(128, generator=data), steps=steps, device="cpu", progress=False,
        live_plot=False, log_every=steps, update_fn=lambda g, real: train_step(g, real, opt_d, opt_g, noise))
    return gan.generator.state_dict()


# %%
def generated(weights, seed):
    """2000 samples of a generator with these weights."""
    gan = mlp_gan_2d(hidden=64)
    gan.generator.load_state_dict(weights)
    return gan.sample(2000, generator=torch.Generator().manual_seed(seed + 2))


# %% nbgrader={"grade": true, "grade_id": "test_modes", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# 400 steps from seed 0: your GAN covers at least 6 of the 8 modes (the reference: 8 at seeds 0 and 1, 1 or 2 threads).
samples = generated(train_on_ring(seed=0), seed=0)
coverage = mode_coverage(RING, samples)
print(f"modes covered: {coverage['modes']} of {coverage['of']}; samples near a mode: {coverage['quality']:.0%}")
assert coverage["modes"] >= 6, "too few modes covered after 400 steps: check the losses and the step above first"
### BEGIN HIDDEN TESTS
samples_1 = generated(train_on_ring(seed=1), seed=1)
assert mode_coverage(RING, samples_1)["modes"] >= 6, "seed 1"
### END HIDDEN TESTS

# %% [markdown]
# What your generator learned, against the data (run the test cell above first). Try
# `generated(train_on_ring(0, steps=1500), seed=0)`, or the saturating loss, and look again.

# %%
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
