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
# # 06 · GAN math: worked solutions
#
# One section per exercise of [lesson 06](../06_gan_math.ipynb), in its order and with its wording. Each
# answer gives the reasoning first, then runs it and asserts what the reasoning predicted. The GAN runs use
# the lesson's playground (`new_playground`, `configure`, `readout`) trained with `fit`; to keep this
# notebook short, exercises 2, 3 and 5 train for fewer steps than the lesson (said where it matters).

# %%
import math
import time

import torch
import torch.nn.functional as F

from karpa_lab import fit, seed_everything
from karpa_lab.models.gan import GANUpdate
from karpa_lab.widgets.gan_playground import configure, new_playground, readout

seed_everything(0)
torch.set_num_threads(1)
start = time.process_time()


def train(pg, steps: int, chunk: int = 500) -> list[int]:
    """fit() the playground in chunks; the modes covered after each chunk."""
    trace = []
    for _ in range(steps // chunk):
        fit(pg.gan, pg.real_batch, steps=chunk, update_fn=pg.update, device="cpu", progress=False, log_every=chunk)
        trace.append(readout(pg)["modes"])
    return trace


@torch.no_grad()
def distance_to_modes(pg) -> float:
    """Mean distance from the 2000 fixed generated samples to their nearest mode centre."""
    fake = pg.gan.generator(pg.z_eval)
    return float(torch.cdist(fake, pg.mixture.centers).min(dim=1).values.mean())


# %% [markdown]
# ## 1. Predict, then run
#
# *In section 6, set both learning rates to $2 \cdot 10^{-4}$ from the start
# (`new_playground("ring", seed=SEED, lr_d=2e-4, lr_g=2e-4)`). How many modes after 2500 steps? Why does a
# lower learning rate help at the end but hurt at the start?*
#
# **Reasoning.** Adam moves every weight by about the learning rate per step, whatever the gradient's size.
# At the start the generator's samples sit in a small blob near the origin and must travel out to the circle
# of radius 2 and split into 8 groups: at $2 \cdot 10^{-4}$ each step covers a fifth of the ground a step at
# $10^{-3}$ covers. **Prediction: slower at the start** (after 500 steps the samples are farther from the
# modes than at the lesson's $10^{-3}$), and, with five times fewer effective moves, 2500 steps are about 500
# fast ones plus a calm finish, so some modes may be reached but the samples will not yet sit on them. At the
# end the situation is reversed: near the data the two players circle around the equilibrium (a game's
# gradient field rotates) by an amount that grows with the step size; a small step does not overshoot, so the
# samples approach the modes steadily, which is what the lesson's low-rate final phase used. Progress is
# measured as the mean distance of the 2000 fixed samples to their nearest mode.

# %%
fast = new_playground("ring", seed=0)  # the lesson's 1e-3, for the first 500 steps only
train(fast, 500)
slow = new_playground("ring", seed=0, lr_d=2e-4, lr_g=2e-4)
slow_trace, slow_dist = [], []
for _ in range(5):
    slow_trace += train(slow, 500)
    slow_dist.append(distance_to_modes(slow))
print(f"after 500 steps: mean distance to the nearest mode {distance_to_modes(fast):.2f} at lr 1e-3, "
      f"{slow_dist[0]:.2f} at lr 2e-4")
print(f"lr 2e-4 from the start: modes every 500 steps {slow_trace}")
print("mean distance of the samples to the nearest mode every 500 steps:", [round(d, 2) for d in slow_dist],
      f"(the ring's radius is 2, a mode's std {slow.mixture.std})")
print(f"after {slow.g_updates} steps: {readout(slow)['modes']} / 8 modes, "
      f"{100 * readout(slow)['quality']:.0f} % of the samples near a mode")
assert distance_to_modes(fast) < slow_dist[0], "the low rate is slower at the start"
assert all(a > b for a, b in zip(slow_dist, slow_dist[1:])), "and it approaches the modes without overshooting"

# %% [markdown]
# After 2500 steps at $2 \cdot 10^{-4}$ the printed count is the answer to the first question; the distance
# falls at every checkpoint (asserted) but is still many standard deviations of a mode, and the share of
# samples near a mode (printed) is what a longer run, or a faster start, would raise. The low rate costs time
# at the start (asserted: farther from the modes after 500 steps than at $10^{-3}$) and buys calm at the end.

# %% [markdown]
# ## 2. The grid
#
# *Train the same setup on `new_playground("grid")` (25 Gaussians of std 0.05 on a 5x5 grid). How many of the
# 25 modes are covered after 2500 steps? Which modes go missing first: the corners or the centre?*
#
# **Two arguments compete.** The generator is a smooth map of a 2D Gaussian whose samples start as a blob
# around the origin, which suggests that the centre is reached first and the corners, the farthest points,
# go missing. But the discriminator's first lesson is where the fakes *are*: it learns to call the centre
# "fake" before anything else, and the generator's samples are pushed away from it, outwards, towards the
# edge of the data. Which one wins is a question for the measurement. The lesson's schedule is shortened here
# to 1500 steps at $10^{-3}$ and 500 at $2 \cdot 10^{-4}$ (2000 in all); we count, per mode, how many of the
# 2000 fixed samples fall within 3 std of it (a mode is covered at 1 %, 20 samples).

# %%
grid = new_playground("grid", seed=0)
grid_trace = train(grid, 1500)
grid = configure(grid, lr_d=2e-4, lr_g=2e-4)
grid_trace += train(grid, 500)
with torch.no_grad():
    nearest = grid.mixture.assign(grid.gan.generator(grid.z_eval))
counts = torch.bincount(nearest[nearest >= 0], minlength=25).reshape(5, 5)
corner = counts[[0, 0, 4, 4], [0, 4, 0, 4]].float()
centre = counts[1:4, 1:4].flatten().float()
print(f"modes covered every 500 steps: {grid_trace}; after {grid.g_updates} steps {readout(grid)['modes']} / 25")
print("samples per mode (the grid as it lies):")
print(counts)
print(f"mean per corner mode {corner.mean():.1f}, per mode of the central 3x3 {centre.mean():.1f}; "
      f"corners covered {int((corner >= 20).sum())} / 4, central modes covered {int((centre >= 20).sum())} / 9")
assert corner.mean() > 2 * centre.mean()
assert (corner >= 20).float().mean() > (centre >= 20).float().mean()

# %% [markdown]
# The centre goes missing, not the corners: the printed grid has its samples on the outer ring of modes,
# and the corners are covered while the central 3x3 is mostly not (asserted: more than twice as many samples
# per corner mode as per central mode, and a larger share of the corners covered). The discriminator's
# argument wins: the region the fakes started in is the region the discriminator learned to reject first,
# and a short run has not brought them back. How many of the 25 are covered is printed above, after each
# 500 steps; a grid needs a much longer run than a ring.

# %% [markdown]
# ## 3. A stronger discriminator
#
# *In the playground, set* D steps *to 5. Does the generator learn faster or slower? Relate what you see to
# the JS curve of section 2.*
#
# **Reasoning.** Five discriminator updates per generator update bring $D$ closer to the optimal $D^*$ for
# the current generator. Section 2's curve is about that limit: against $D^*$ the generator minimises JS,
# which is flat at $\log 2$ while the samples and the data do not overlap, and with the minimax loss the
# gradient would vanish. Two things keep this from happening here. The discriminator is a small MLP trained
# for a few steps: it is a smooth slope, not the cliff of $D^*$. And the non-saturating loss gives each fake a
# gradient of size $1 - D$: the more confidently $D$ rejects it, the harder it is pushed, along the slope
# towards where $D$ says "real". **Prediction: per generator step, faster**, and each step costs about three
# times the CPU. Both runs below get 300 generator steps from the same start; progress is the mean distance of
# the samples to their nearest mode.

# %%
progress = {}
for d_steps in (1, 5):
    pg = new_playground("ring", seed=0, d_steps=d_steps)
    t0 = time.process_time()
    fit(pg.gan, pg.real_batch, steps=300, update_fn=pg.update, device="cpu", progress=False, log_every=300)
    progress[d_steps] = (distance_to_modes(pg), readout(pg)["d_fake"], time.process_time() - t0)
start_dist = distance_to_modes(new_playground("ring", seed=0))
print(f"untrained: mean distance to the nearest mode {start_dist:.2f}")
for d_steps, (dist, d_fake, cpu) in progress.items():
    print(f"D steps {d_steps}: after 300 G steps distance {dist:.2f}, mean D(G(z)) {d_fake:.3f}, {cpu:.1f} s CPU")
assert progress[5][0] < progress[1][0], "per generator step, the stronger discriminator helps"
assert progress[5][1] < progress[1][1], "it rejects the samples more confidently"
assert progress[5][2] > 2 * progress[1][2], "and each step costs more"

# %% [markdown]
# Per generator step the stronger discriminator is the better teacher (asserted: closer to the modes after
# 300 steps, with a lower $D(G(z))$: it is the more confident one); per CPU second it costs the printed
# multiple. The JS curve warns about the end of this road: a discriminator trained to optimality, with the
# minimax loss, would leave the generator on the flat part with nothing to follow. In the playground, with
# *D steps* at 5 for long runs, watch whether the arrows keep pointing at the modes.

# %% [markdown]
# ## 4. Derive it
#
# *Derive the value identity of section 4,
# $\mathbb E_{p_g}[-\log D^*] = \mathrm{KL}(p_g \| p_{\text{data}}) - 2\,\mathrm{JS} + \mathrm{KL}(p_{\text{data}} \| m) + \log 2$, then differentiate it with respect to
# $\theta$ and show that, with $D^*$ held fixed, everything but $\nabla_\theta[\mathrm{KL} - 2\,\mathrm{JS}]$
# cancels (Arjovsky & Bottou 2017, Theorem 2.5). Extend the numerical check to a change of the generator's
# width: $p_g = \mathcal N(0, s^2)$, differentiating in $s$.*
#
# **The value.** Write $p = p_{\text{data}}$, $q = p_g$, $m = (p + q)/2$, so $D^* = p/(p + q) = p/(2m)$:
#
# $$\mathbb E_q[-\log D^*] = \mathbb E_q\Big[\log \frac{2m}{p}\Big]
#   = \log 2 + \mathbb E_q\Big[\log \frac{q}{p}\Big] - \mathbb E_q\Big[\log \frac{q}{m}\Big]
#   = \log 2 + \mathrm{KL}(q \| p) - \mathrm{KL}(q \| m).$$
#
# Since $2\,\mathrm{JS} = \mathrm{KL}(p \| m) + \mathrm{KL}(q \| m)$, replace $-\mathrm{KL}(q \| m)$ by
# $\mathrm{KL}(p \| m) - 2\,\mathrm{JS}$ and the identity follows.
#
# **The gradient.** Let $q = q_\theta$. Differentiating the value with $D^*$ moving, the product rule gives two
# terms: $\nabla_\theta \mathbb E_{q_\theta}[-\log D^*_\theta] = \int \nabla q\, (-\log D^*)\,dx + \int q\,
# \nabla(-\log D^*)\,dx$. The first is the gradient with $D^*$ *held fixed*, the one a generator step uses;
# call it $g$. In the second, $-\log D^* = \log(p + q) - \log p$, so $\nabla(-\log D^*) = \nabla q / (p + q)$.
# On the right-hand side only $\mathrm{KL}(p\|m) = \int p \log(p/m)$ has a gradient beyond
# $\nabla[\mathrm{KL} - 2\,\mathrm{JS}]$: $-\int p\, \nabla m / m = -\int p\, \nabla q / (p + q)$. Hence
#
# $$g = \nabla[\mathrm{KL} - 2\,\mathrm{JS}] - \int \frac{p\,\nabla q}{p + q} - \int \frac{q\,\nabla q}{p + q}
#   = \nabla[\mathrm{KL} - 2\,\mathrm{JS}] - \int \nabla q\, dx = \nabla[\mathrm{KL} - 2\,\mathrm{JS}],$$
#
# because $\int q_\theta = 1$ for every $\theta$, so $\int \nabla q = \nabla \int q = 0$.
#
# **The check in $s$**, on the lesson's data mixture, by central differences, for four widths: the
# fixed-$D^*$ gradient must equal $\frac{d}{ds}(\mathrm{KL} - 2\,\mathrm{JS})$, and the full derivative of
# the value must differ from it (it carries the $\mathrm{KL}(p\|m)$ term). The proof used $\int q_\theta = 1$,
# so the grid must hold the whole density: the lesson's $[-12, 12]$ cuts off part of $\mathcal N(0, 4^2)$
# (printed), so the grid here is $[-25, 25]$ (wider would underflow the data density to 0).

# %%
x = torch.linspace(-25, 25, 10001, dtype=torch.float64)
dx = float(x[1] - x[0])
integrate = lambda f: float(torch.trapezoid(f, dx=dx))
normal = lambda mu, s: torch.exp(-0.5 * ((x - mu) / s) ** 2) / (s * math.sqrt(2 * math.pi))
kl = lambda a, b: integrate(a * torch.log(a / b))  # both densities are positive on this grid
p_data = 0.5 * normal(-2.0, 0.5) + 0.5 * normal(1.5, 0.8)


def kl_minus_2js(s: float) -> float:
    q = normal(0.0, s)
    m = (p_data + q) / 2
    return kl(q, p_data) - (kl(p_data, m) + kl(q, m))


def loss_at(s: float, d: torch.Tensor) -> float:
    """E_{N(0, s^2)}[-log d] for a discriminator d given on the grid."""
    return integrate(normal(0.0, s) * -torch.log(d))


lost = 1 - float(torch.trapezoid(normal(0.0, 4.0)[(x >= -12) & (x <= 12)], dx=dx))
print(f"mass of N(0, 4^2) outside [-12, 12]: {lost:.2e}; on [-25, 25] the densities integrate to "
      f"{integrate(normal(0.0, 4.0)):.10f} and {integrate(p_data):.10f}")
h = 1e-4
rows = []
for s0 in (0.8, 1.5, 2.5, 4.0):
    d_fixed = p_data / (p_data + normal(0.0, s0))  # D* at s0, then frozen
    fixed = (loss_at(s0 + h, d_fixed) - loss_at(s0 - h, d_fixed)) / (2 * h)
    divergence = (kl_minus_2js(s0 + h) - kl_minus_2js(s0 - h)) / (2 * h)
    moving = (loss_at(s0 + h, p_data / (p_data + normal(0.0, s0 + h)))
              - loss_at(s0 - h, p_data / (p_data + normal(0.0, s0 - h)))) / (2 * h)
    rows.append((fixed, divergence, moving))
    print(f"s = {s0}: d/ds loss at fixed D* {fixed:+.8f}, d/ds (KL - 2JS) {divergence:+.8f}, "
          f"d/ds loss with D* moving {moving:+.8f}")
assert all(abs(f - d) < 1e-6 for f, d, _ in rows)
assert max(abs(mv - f) for f, _, mv in rows) > 1e-3  # the cancellation is not trivial

# %% [markdown]
# ## 5. Implement a variant
#
# *The least-squares GAN (Mao et al. 2017) replaces the cross-entropies by
# $L_D = \tfrac12\mathbb E[(l_r - 1)^2] + \tfrac12\mathbb E[l_f^2]$ and $L_G = \tfrac12\mathbb E[(l_f - 1)^2]$ on
# the discriminator's raw output. Write a subclass of `GANUpdate` that uses them and count the ring's modes
# after 2500 steps.*
#
# `GANUpdate` takes its losses from its methods `d_loss` and `g_loss`; the subclass overrides them with the
# least-squares losses (and `d_readout`, since D's output is no longer a logit) and keeps everything else (the detached fakes, the frozen $D$ during the generator's step, the
# noise stream). Each loss is half of PyTorch's `F.mse_loss` against the targets 1 and 0, which is checked
# first. The least-squares loss does not saturate either: its gradient on a fake's output, $l_f - 1$, grows
# the further $D$ pushes the fake away. **Prediction:** on the ring it covers all 8 modes, like the
# non-saturating loss. The run uses the shortened schedule of exercise 2 (2000 steps).

# %%
def ls_discriminator_loss(real_out: torch.Tensor, fake_out: torch.Tensor) -> torch.Tensor:
    return 0.5 * (real_out - 1).pow(2).mean() + 0.5 * fake_out.pow(2).mean()


def ls_generator_loss(fake_out: torch.Tensor) -> torch.Tensor:
    return 0.5 * (fake_out - 1).pow(2).mean()


class LSGANUpdate(GANUpdate):
    """GANUpdate with the least-squares losses of Mao et al. (2017) on D's raw output."""

    def d_loss(self, real_out, fake_out):
        return ls_discriminator_loss(real_out, fake_out)

    def g_loss(self, fake_out):
        return ls_generator_loss(fake_out)

    def d_readout(self, out):
        return out  # D's raw score, aimed at 1 on real data and 0 on fakes: not a logit


a, b = torch.randn(64, dtype=torch.float64), torch.randn(64, dtype=torch.float64)
gap_d = abs(float(ls_discriminator_loss(a, b) - 0.5 * (F.mse_loss(a, torch.ones_like(a)) + F.mse_loss(b, torch.zeros_like(b)))))
gap_g = abs(float(ls_generator_loss(b) - 0.5 * F.mse_loss(b, torch.ones_like(b))))
print(f"against 0.5 * F.mse_loss: L_D {gap_d:.1e}, L_G {gap_g:.1e}")
assert gap_d < 1e-12 and gap_g < 1e-12

ls = new_playground("ring", seed=0)
ls.update = LSGANUpdate(ls.update.opt_d, ls.update.opt_g, noise=ls.rng)
ls_trace = train(ls, 1500)
ls = configure(ls, lr_d=2e-4, lr_g=2e-4)
ls_trace += train(ls, 500)
print(f"least-squares GAN: modes every 500 steps {ls_trace}; after {ls.g_updates} steps {readout(ls)['modes']} / 8, "
      f"{100 * readout(ls)['quality']:.0f} % of the samples near a mode")
assert type(ls.update) is LSGANUpdate
assert readout(ls)["modes"] == 8

# %%
print(f"CPU time of this notebook: {time.process_time() - start:.1f} s")
