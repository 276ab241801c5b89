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
# # 02 · The math of recurrent networks: worked solutions
#
# One section per exercise of [lesson 02](../02_rnn_math.ipynb), in its order and with its wording. Each
# answer gives the reasoning first, then runs it and asserts what the reasoning predicted.

# %%
import math

import torch
from torch import nn

from karpa_lab import NonFiniteLossError, fit, seed_everything
from karpa_lab.data import next_value_batches, seasonal_series
from karpa_lab.models.rnn import RNN, NextValue, bptt, recurrent_weight
from karpa_lab.widgets.rnn_gradients import gradient_profile

seed_everything(0)
torch.set_num_threads(1)

# %% [markdown]
# ## 1. Predict, then run
#
# *In the widget, set $\rho = 1.0$ and $T = 200$. Is the ratio 1? Now build an orthogonal $W_{hh}$
# (`torch.linalg.qr(torch.randn(64, 64))[0]`, all eigenvalues on the unit circle and all singular values
# 1) and compute $\lVert \delta_{T-k}\rVert$ with `bptt`: why is it exactly 1 at rest, and not for the
# Gaussian matrix of the same spectral radius?*
#
# **Not 1.** At rest ($x = 0$, so $h_t = 0$ and $\tanh' = 1$) the gradient $k$ steps back is $\delta_T
# W_{hh}^k$. The spectral radius fixes only the long-run *rate*, $\lVert W^k \rVert^{1/k} \to \rho = 1$;
# the norm itself is $C_k \rho^k$ with a $C_k$ that depends on how $W$ mixes directions. A Gaussian matrix
# is not normal: its largest singular value is above 1, so one step can stretch $\delta$ and another
# shrink it, and after 200 steps the ratio is some constant away from 1. **An orthogonal $Q$** preserves
# the length of every vector, $\lVert v Q\rVert^2 = v Q Q^\top v^\top = \lVert v \rVert^2$, so each
# step preserves $\lVert\delta\rVert$ exactly and the ratio is 1 at every lag, up to float64 rounding.

# %%
widget = gradient_profile(1.0, 200)
sigma_gauss = torch.linalg.matrix_norm(recurrent_weight(64, 1.0), ord=2).item()
T = 200
q = torch.linalg.qr(torch.randn(64, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64))[0]
orth = RNN(8, 64, bias=False).double()
with torch.no_grad():
    orth.weight_hh_l0.copy_(q)
g = torch.zeros(T, 1, 64, dtype=torch.float64)
g[-1, 0] = torch.randn(64, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
g[-1, 0] /= g[-1, 0].norm()
orth_norm = bptt(orth, torch.zeros(T, 1, 8, dtype=torch.float64), g).h[:, 0].norm(dim=1).flip(0)
eig = torch.linalg.eigvals(q).abs()
print(f"widget, rho = 1.0, T = 200: ratio {widget['ratio']:.3g}; the Gaussian W_hh's largest singular value "
      f"{sigma_gauss:.2f}")
print(f"orthogonal W_hh: |eigenvalues| in [{eig.min():.6f}, {eig.max():.6f}]; ||dL/dh_(T-k)|| over all lags in "
      f"[{orth_norm.min():.15f}, {orth_norm.max():.15f}]")
assert abs(math.log10(widget["ratio"])) > 0.1, "the Gaussian matrix's ratio is not 1"
assert sigma_gauss > 1.2
assert (orth_norm - 1).abs().max() < 1e-12

# %% [markdown]
# ## 2. ReLU instead of tanh
#
# *Redo the derivation of section 3 for $h_t = \mathrm{ReLU}(a_t)$: which factor replaces $1 - h_t^2$?
# Change `bptt_by_hand` accordingly and check it against `nn.RNN(D, H, nonlinearity="relu")` with
# autograd.*
#
# Only the local derivative of the nonlinearity changes: $\partial h_t / \partial a_t = \mathrm{diag}(
# \mathbb{1}[a_t > 0])$, and since $h_t = \max(a_t, 0)$, $a_t > 0$ exactly where $h_t > 0$. So
#
# $$\frac{\partial\mathcal{L}}{\partial a_t} = \delta_t \odot \mathbb{1}[h_t > 0], \qquad
#   \delta_t = g_t + \Big(\frac{\partial\mathcal{L}}{\partial a_{t+1}}\Big) W_{hh},$$
#
# and the weight gradients are the same sums as before. The Jacobian is now $\mathrm{diag}(\mathbb{1}[h_t
# > 0])\,W_{hh}$: a unit that is on passes the gradient through $W_{hh}$ unshrunk (tanh's factor was
# below 1), one that is off blocks it. A negative control: the same loop with tanh's factor $1 - h_t^2$
# must not match.

# %%
def relu_rnn_forward(x, h0, W_xh, W_hh, b):
    """The lesson's forward loop with ReLU: x (T, B, D), h0 (B, H) -> h_1..h_T (T, B, H)."""
    h, hs = h0, []
    for x_t in x:
        h = torch.relu(x_t @ W_xh.T + h @ W_hh.T + b)
        hs.append(h)
    return torch.stack(hs)


def bptt_by_hand(x, h0, hs, g, W_hh, local=lambda h: (h > 0).to(h.dtype)):
    """The lesson's backward loop, with the nonlinearity's derivative ``local(h_t)`` as an argument."""
    delta, da = torch.zeros_like(hs), torch.zeros_like(hs)
    from_later = torch.zeros_like(h0)
    for t in reversed(range(len(hs))):
        delta[t] = g[t] + from_later
        da[t] = delta[t] * local(hs[t])
        from_later = da[t] @ W_hh
    h_prev = torch.cat([h0[None], hs[:-1]])
    return torch.einsum("tbh,tbd->hd", da, x), torch.einsum("tbh,tbk->hk", da, h_prev), da.sum(dim=(0, 1))


T, B, D, H, O = 7, 3, 4, 5, 2
torch.manual_seed(0)
ref = nn.RNN(D, H, nonlinearity="relu").double()
readout = nn.Linear(H, O).double()
x, h0 = torch.randn(T, B, D, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
targets = torch.randn(T, B, O, dtype=torch.float64)
out, _ = ref(x, h0.unsqueeze(0))
(0.5 * ((readout(out) - targets) ** 2).sum()).backward()
with torch.no_grad():
    hs = relu_rnn_forward(x, h0, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0 + ref.bias_hh_l0)
    g = (readout(hs) - targets) @ readout.weight
    mine = bptt_by_hand(x, h0, hs, g, ref.weight_hh_l0)
    tanh_factor = bptt_by_hand(x, h0, hs, g, ref.weight_hh_l0, local=lambda h: 1 - h**2)
auto = (ref.weight_ih_l0.grad, ref.weight_hh_l0.grad, ref.bias_ih_l0.grad)
gaps = [(m - a).abs().max().item() for m, a in zip(mine, auto, strict=True)]
wrong = max((m - a).abs().max().item() for m, a in zip(tanh_factor, auto, strict=True))
print(f"forward vs nn.RNN(relu): {(hs - out).abs().max():.1e}; units off: {(hs == 0).float().mean():.2f}")
print(f"dW_xh, dW_hh, db by hand vs autograd: {', '.join(f'{v:.1e}' for v in gaps)}; with tanh's factor: {wrong:.2f}")
assert (hs - out).abs().max() < 1e-12 and max(gaps) < 1e-12
assert wrong > 0.1

# %% [markdown]
# ## 3. Truncated BPTT
#
# *Detach the hidden state every $K$ steps (`h = h.detach()`) in `rnn_forward` and compare
# $\partial\mathcal{L}/\partial W_{hh}$ with the full gradient for $K = 5, 10, 20$, once with $\rho(W_{hh})
# = 0.8$ and once with $1.2$. When is truncation a good approximation?*
#
# With a loss on every step, $\partial\mathcal{L}/\partial W_{hh}$ sums, for every loss $\ell_t$, its
# paths back to every earlier step; a path of length $k$ carries a factor of about $\rho^k$ (times tanh
# factors below 1). Detaching every $K$ steps cuts every path that crosses a block boundary, so what a
# loss keeps depends on where in its block it sits: the loss at position $j$ ($0 \le j < K$) keeps the
# paths up to $j$ steps long and loses $\sum_{k > j} \rho^k = \rho^{j+1}/(1-\rho)$ of $\sum_k \rho^k =
# 1/(1-\rho)$. Averaged over the $K$ positions, the share lost is
#
# $$\frac{1}{K}\sum_{j=0}^{K-1} \rho^{j+1} = \frac{\rho\,(1 - \rho^K)}{K\,(1-\rho)},$$
#
# about $\frac{\text{memory}}{K}$ with memory $\rho/(1-\rho) = 4$ steps at $\rho = 0.8$: **the error falls
# only like $1/K$** (0.54, 0.36, 0.20 for $K$ = 5, 10, 20 by this count, a little less in the run,
# where the tanh factors shorten the memory further), not like $\rho^K$: the first losses of every block
# lose their history whatever $K$ is. For $\rho = 1.2$ the long paths are the *large* ones, held back
# only by the saturation of the tanh: **the error should be larger at every $K$.** Truncation is a good
# approximation when the gradient vanishes over a few steps and $K$ is many times that memory (or when,
# as in truncated BPTT for language models, every loss is given a full window of history).

# %%
def rnn_forward_truncated(x, h0, W_xh, W_hh, K=None):
    """The lesson's forward loop (no bias), with the state detached every ``K`` steps (never if None)."""
    h, hs = h0, []
    for t, x_t in enumerate(x):
        if K is not None and t > 0 and t % K == 0:
            h = h.detach()
        h = torch.tanh(x_t @ W_xh.T + h @ W_hh.T)
        hs.append(h)
    return torch.stack(hs)


T, B, D, H = 80, 4, 8, 64
gen = torch.Generator().manual_seed(0)
x = 0.5 * torch.randn(T, B, D, generator=gen, dtype=torch.float64)
W_xh = torch.randn(H, D, generator=gen, dtype=torch.float64) / math.sqrt(D)
v = torch.randn(T, B, H, generator=gen, dtype=torch.float64)  # L = sum_t <v_t, h_t>, a loss on every step


def dW_hh(W_hh, K):
    """dL/dW_hh through the forward pass detached every ``K`` steps."""
    h0 = torch.zeros(B, H, dtype=torch.float64)
    return torch.autograd.grad((v * rnn_forward_truncated(x, h0, W_xh, W_hh, K)).sum(), W_hh)[0]


errors = {}
for rho in (0.8, 1.2):
    W_hh = recurrent_weight(H, rho).requires_grad_()
    full = dW_hh(W_hh, None)
    errors[rho] = [((dW_hh(W_hh, K) - full).norm() / full.norm()).item() for K in (5, 10, 20)]
    print(f"rho = {rho}: relative error of the truncated dL/dW_hh, K = 5, 10, 20: "
          + ", ".join(f"{e:.3f}" for e in errors[rho])
          + ("; the count above: " + ", ".join(f"{rho * (1 - rho**K) / (K * (1 - rho)):.2f}" for K in (5, 10, 20))
             if rho < 1 else ""))
for rho in (0.8, 1.2):
    assert errors[rho][0] > errors[rho][1] > errors[rho][2], "the error falls with K"
assert all(e12 > 1.4 * e08 for e08, e12 in zip(errors[0.8], errors[1.2], strict=True)), "and is larger for rho > 1"


# %% [markdown]
# ## 4. Clip by value
#
# *`torch.nn.utils.clip_grad_value_` clips every entry to $[-c, c]$ instead of scaling the whole vector.
# For $g = (3, 0.1)$ and $c = 1$, compute both results by hand. Which one keeps the direction of steepest
# descent?*
#
# **By norm:** $\lVert g\rVert = \sqrt{9 + 0.01} = \sqrt{9.01} \approx 3.0017 > 1$, so $g \cdot 1/3.0017
# = (0.99944, 0.03331)$: length 1, the same direction. **By value:** each entry to $[-1, 1]$: $(1, 0.1)$,
# length $\sqrt{1.01} \approx 1.005$. Its direction has changed: the small entry is now a tenth of the
# large one instead of a thirtieth, an angle of $\arctan(0.1) - \arctan(0.1/3) \approx 5.7° - 1.9° =
# 3.8°$ away from $-g$'s direction. Only clipping by norm keeps the direction of steepest descent; by
# value is a different, coordinate-wise step (much like what sign-based methods do in the limit).

# %%
def clipped(clip, g):
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    p.grad = g.clone()
    clip([p])
    return p.grad


g = torch.tensor([3.0, 0.1], dtype=torch.float64)
by_norm = clipped(lambda ps: torch.nn.utils.clip_grad_norm_(ps, 1.0), g)
by_value = clipped(lambda ps: torch.nn.utils.clip_grad_value_(ps, 1.0), g)


def angle(a, b):
    return math.degrees(math.acos(min(1.0, float(a @ b / (a.norm() * b.norm())))))


print(f"by norm:  {by_norm.tolist()}, length {by_norm.norm():.4f}, angle to g {angle(by_norm, g):.2f} degrees")
print(f"by value: {by_value.tolist()}, length {by_value.norm():.4f}, angle to g {angle(by_value, g):.2f} degrees")
torch.testing.assert_close(by_norm, g / math.sqrt(9.01), rtol=1e-5, atol=0)  # clip_grad_norm_ adds 1e-6 to the norm
assert by_value.tolist() == [1.0, 0.1]
assert angle(by_norm, g) < 1e-3 and abs(angle(by_value, g) - (math.degrees(math.atan(0.1) - math.atan(0.1 / 3)))) < 1e-6

# %% [markdown]
# ## 5. Find the edge
#
# *Lower the learning rate of the unclipped run until it survives all steps. How does its final loss
# compare with the clipped run at $\eta = 1$?*
#
# The lesson's section-5 task (rebuilt here: the same series, batches, model and seeds). Plain SGD
# diverges when a step is large enough to carry the weights where the gradient is larger still; with the
# gradient norms the lesson's unclipped run shows, that happens at $\eta = 1$ within a few steps. We halve
# $\eta$ until a run survives all 300 steps. **Prediction: about the same final loss, within 20 %.** The
# halving stops at the first rate that survives, within a factor 2 of the edge: the largest rate plain
# SGD can afford on this task. What limits both runs is then the same thing, the length of a step the
# loss surface tolerates. The clipped run takes steps of length exactly $\eta c = 0.1$ (every step is
# clipped, the lesson found); the unclipped run at the edge takes steps $\eta \lVert g\rVert$, which, at
# the largest rate that does not blow up, must be of that same order once the gradients have settled. So
# the two should take steps of about the same length and end at about the same loss: clipping's real
# gain is not a lower loss but not having to search for the edge (and surviving the rare large
# gradient, which the edge rate must be small enough for).

# %%
series = seasonal_series(4000, period=24, trend=0.0, noise=0.1)
series = (series - series.mean()) / series.std()
window, batch_size = 32, 32


def run(lr, clip_grad=None, steps=300):
    """The lesson's run: plain SGD at ``lr``; the History, or None when the loss became non-finite."""
    seed_everything(0)
    model = NextValue()
    try:
        return fit(model, next_value_batches(series, window, batch_size, torch.Generator().manual_seed(0)), steps=steps,
                   optimizer=torch.optim.SGD(model.parameters(), lr=lr), clip_grad=clip_grad, verbose=False)
    except NonFiniteLossError as err:
        print(f"  lr {lr:.4g}: diverged after {len(err.history)} steps")
        return None


clipped_run = run(1.0, clip_grad=0.1)
lr, survivor = 1.0, None
while survivor is None:
    lr /= 2
    survivor = run(lr)


def final(h):
    return sum(h.train_loss[-20:]) / 20


print(f"the edge: lr {lr:.4g} survives all {len(survivor)} steps; final loss (mean of the last 20 steps) "
      f"{final(survivor):.4f}, gradient norm up to {max(survivor.grad_norm):.3g}")
print(f"clipped at lr 1, c = 0.1: final loss {final(clipped_run):.4f}")
steps_taken = lr * torch.tensor(survivor.grad_norm[150:])
print(f"the survivor's step length lr * ||g|| over the second half: median {steps_taken.median():.3f}, "
      f"max {steps_taken.max():.3f}; the clipped run's: {0.1:.3f} (the norm is above c at "
      f"{sum(n > 0.1 for n in clipped_run.grad_norm)} of {len(clipped_run)} steps)")
assert len(survivor) == 300 and lr < 1.0
assert 0.8 < final(survivor) / final(clipped_run) < 1.25, "about the same loss"
assert 0.05 < steps_taken.median() < 0.2, "with steps of about the same length"

