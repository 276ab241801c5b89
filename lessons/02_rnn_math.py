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
# # 02 · The math of recurrent networks
#
# **The question.** A recurrent neural network (循环神经网络, RNN) reads a sequence one step at a time
# and carries what it has seen in a hidden state (隐藏状态). How does a gradient get from a loss at the
# end of a sequence back to an input fifty steps earlier, and why does it usually arrive either as
# almost nothing or as an overflow?
#
# By the end you can: write an RNN in a few lines that gives exactly `nn.RNN`'s numbers, derive
# backpropagation through time (随时间反向传播, BPTT) and check it against autograd, predict from one
# number (the spectral radius of the recurrent matrix) whether gradients vanish or explode, and rescue a
# run that diverges by clipping its gradient.

# %%
import math

import matplotlib.pyplot as plt
import torch
from IPython.display import display
from torch import nn

from karpa_lab import NonFiniteLossError, by_scale, fit, seed_everything
from karpa_lab.data import next_value_batches, seasonal_series
from karpa_lab.models.rnn import RNN, NextValue, bptt
from karpa_lab.widgets.rnn_gradients import draw_profiles, gradient_profile, radius_widget

seed_everything(0)

# %% [markdown]
# ## 1. The equations, with shapes
#
# For a batch of $B$ sequences of length $T$ with $D$ features per step, $H$ hidden units and $O$ outputs:
#
# $$h_t = \tanh\big(x_t W_{xh}^\top + h_{t-1} W_{hh}^\top + b\big), \qquad y_t = h_t W_{hy}^\top + c,
#   \qquad t = 1, \dots, T$$
#
# | symbol | shape | what it is | name in `nn.RNN` |
# |---|---|---|---|
# | $x_t$ | (B, D) | input at step $t$ | `input[t]` |
# | $h_{t-1}, h_t$ | (B, H) | hidden state before and after step $t$; $h_0$ is zeros unless given | `h_0`, `output[t]` |
# | $W_{xh}$ | (H, D) | input-to-hidden weights | `weight_ih_l0` |
# | $W_{hh}$ | (H, H) | hidden-to-hidden (recurrent) weights | `weight_hh_l0` |
# | $b$ | (H,) | bias | `bias_ih_l0 + bias_hh_l0` (two vectors, only their sum matters) |
# | $W_{hy}$ | (O, H) | read-out weights | an `nn.Linear(H, O)` on top |
# | $c$ | (O,) | read-out bias | that `nn.Linear`'s bias |
# | $y_t$ | (B, O) | output at step $t$ | |
#
# (Papers often write $W_{xh} x_t$ for a single column vector $x_t$; with a batch of row vectors the same
# map is $x_t W_{xh}^\top$.) The same weights are used at every step (parameter sharing, 参数共享): an
# RNN is one small network applied $T$ times, each time to the new input and its own previous state.

# %% [markdown]
# ## 2. From scratch, and checked against `nn.RNN`
#
# The whole forward pass is a loop over time:

# %%
def rnn_forward(x, h0, W_xh, W_hh, b):
    """x (T, B, D), h0 (B, H) -> the hidden states h_1..h_T stacked, (T, B, H)."""
    h, hs = h0, []
    for x_t in x:
        h = torch.tanh(x_t @ W_xh.T + h @ W_hh.T + b)
        hs.append(h)
    return torch.stack(hs)


T, B, D, H = 7, 3, 4, 5
ref = nn.RNN(D, H).double()  # float64, so that differences are rounding only
x = torch.randn(T, B, D, dtype=torch.float64)
h0 = torch.randn(B, H, dtype=torch.float64)

ours = rnn_forward(x, h0, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0 + ref.bias_hh_l0)
theirs, h_n = ref(x, h0.unsqueeze(0))  # nn.RNN wants h0 as (num_layers, B, H)
print(f"output {tuple(ours.shape)}; largest difference from nn.RNN {(ours - theirs).abs().max():.1e}")
torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
torch.testing.assert_close(ours[-1], h_n[0], rtol=0, atol=1e-12)

# %% [markdown]
# The same loop, as an `nn.Module` with `nn.RNN`'s parameter names, shape checks and a `from_torch` copy,
# is `karpa_lab.models.rnn.RNN` (in **`karpa_lab/models/rnn.py`**). Its errors say which shape was
# expected and which one came:

# %%
scratch = RNN.from_torch(ref)
out, h_last = scratch(x, h0.unsqueeze(0))
torch.testing.assert_close(out, theirs, rtol=0, atol=1e-12)
torch.testing.assert_close(h_last, h_n, rtol=0, atol=1e-12)
try:
    scratch(x[0])  # one step, without the time axis
except ValueError as err:
    print(err)

# %% [markdown]
# ## 3. Backpropagation through time
#
# Take a loss on every output, $\mathcal{L} = \sum_{t=1}^{T} \ell_t$ with
# $\ell_t = \tfrac12 \lVert y_t - y^*_t \rVert^2$ summed over the batch, for targets $y^*_t$ (B, O). Unrolled over time the RNN is a deep feed-forward network
# with the same weights in every layer, and BPTT is backpropagation (lesson 01) on that unrolled graph.
#
# **Direct gradients.** The loss reads $h_t$ through $y_t$ only at step $t$:
#
# $$g_t = \frac{\partial \ell_t}{\partial h_t} = (y_t - y^*_t)\, W_{hy} \quad (B, H), \qquad
#   \frac{\partial \mathcal{L}}{\partial W_{hy}} = \sum_t (y_t - y^*_t)^\top h_t \quad (O, H), \qquad
#   \frac{\partial \mathcal{L}}{\partial c} = \sum_{t,\,\text{batch}} (y_t - y^*_t) \quad (O,)$$
#
# **Total gradients.** But $h_t$ also feeds $h_{t+1}$, which feeds the rest of the sequence. With
# $a_t = x_t W_{xh}^\top + h_{t-1} W_{hh}^\top + b$ the pre-activation (B, H) and $h_t = \tanh a_t$,
# the total gradient $\delta_t = \partial \mathcal{L} / \partial h_t$ (B, H) obeys, from $t = T$ down to 1,
#
# $$\delta_T = g_T, \qquad \delta_t = g_t + \underbrace{\big(\delta_{t+1} \odot (1 - h_{t+1}^2)\big)}_{
#   \partial\mathcal{L}/\partial a_{t+1}} W_{hh}, $$
#
# since $\partial a_{t+1} / \partial h_t = W_{hh}$ and $\tanh' = 1 - \tanh^2$ ($\odot$: elementwise). Each
# weight is used at every step, so its gradient is a sum over steps (the $+=$ of lesson 01):
#
# $$\frac{\partial \mathcal{L}}{\partial a_t} = \delta_t \odot (1 - h_t^2), \qquad
#   \frac{\partial \mathcal{L}}{\partial W_{hh}} = \sum_t \Big(\frac{\partial \mathcal{L}}{\partial a_t}\Big)^{\!\top} h_{t-1}
#   \ (H, H), \qquad
#   \frac{\partial \mathcal{L}}{\partial W_{xh}} = \sum_t \Big(\frac{\partial \mathcal{L}}{\partial a_t}\Big)^{\!\top} x_t
#   \ (H, D), \qquad
#   \frac{\partial \mathcal{L}}{\partial b} = \sum_{t,\,\text{batch}} \frac{\partial \mathcal{L}}{\partial a_t}\ (H,).$$
#
# In code, one backward loop:

# %%
def bptt_by_hand(x, h0, hs, g, W_hh):
    """hs (T, B, H) from rnn_forward, g (T, B, H) direct gradients -> dW_xh, dW_hh, db, every delta_t."""
    delta = torch.zeros_like(hs)
    da = torch.zeros_like(hs)
    from_later = torch.zeros_like(h0)  # (dL/da_{t+1}) W_hh, zero after the last step
    for t in reversed(range(len(hs))):
        delta[t] = g[t] + from_later
        da[t] = delta[t] * (1 - hs[t] ** 2)
        from_later = da[t] @ W_hh
    h_prev = torch.cat([h0[None], hs[:-1]])  # h_0 .. h_{T-1}
    dW_xh = torch.einsum("tbh,tbd->hd", da, x)
    dW_hh = torch.einsum("tbh,tbk->hk", da, h_prev)
    return dW_xh, dW_hh, da.sum(dim=(0, 1)), delta


O = 2
readout = nn.Linear(H, O).double()
targets = torch.randn(T, B, O, dtype=torch.float64)

with torch.no_grad():  # the hand-derived way: forward, then the equations above
    hs = rnn_forward(x, h0, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0 + ref.bias_hh_l0)
    err = readout(hs) - targets  # y_t - y*_t, (T, B, O)
    g = err @ readout.weight  # (T, B, H)
    dW_xh, dW_hh, db, delta = bptt_by_hand(x, h0, hs, g, ref.weight_hh_l0)
    dW_hy = torch.einsum("tbo,tbh->oh", err, hs)

# autograd's way, 1: the same loss through nn.RNN itself, an independent implementation
ref.zero_grad()
readout.zero_grad()
out, _ = ref(x, h0.unsqueeze(0))
loss = 0.5 * ((readout(out) - targets) ** 2).sum()
loss.backward()

# autograd's way, 2: the total dL/dh_t lives inside nn.RNN's graph, so replay the steps with our loop
# (equal to nn.RNN, checked above) and ask autograd for the gradient at each intermediate h_t
h = h0.clone().requires_grad_()
h_steps = []
for x_t in x:
    h = torch.tanh(x_t @ ref.weight_ih_l0.T + h @ ref.weight_hh_l0.T + ref.bias_ih_l0 + ref.bias_hh_l0)
    h_steps.append(h)
replay_loss = 0.5 * ((readout(torch.stack(h_steps)) - targets) ** 2).sum()
delta_autograd = torch.stack(torch.autograd.grad(replay_loss, h_steps))

checks = {
    "dL/dW_xh": (dW_xh, ref.weight_ih_l0.grad),
    "dL/dW_hh": (dW_hh, ref.weight_hh_l0.grad),
    "dL/db (= dL/db_ih = dL/db_hh)": (db, ref.bias_ih_l0.grad),
    "dL/dW_hy": (dW_hy, readout.weight.grad),
    "dL/dh_t, every t": (delta, delta_autograd),
}
for name, (mine, auto) in checks.items():
    print(f"{name:<30} {tuple(mine.shape)!s:<10} largest difference {(mine - auto).abs().max():.1e}")
    torch.testing.assert_close(mine, auto, rtol=1e-10, atol=1e-12)
torch.testing.assert_close(db, ref.bias_hh_l0.grad, rtol=1e-10, atol=1e-12)

# %% [markdown]
# Every hand-derived gradient equals autograd's to float64 rounding (asserted: relative 1e-10). The same
# backward loop is `karpa_lab.models.rnn.bptt(rnn, x, grad_outputs)`, which takes the direct gradients
# $g_t$ and returns the parameter gradients and every $\delta_t$:

# %%
grads = bptt(ref, x, g, h0.unsqueeze(0))
torch.testing.assert_close(grads.weight_hh, dW_hh, rtol=1e-12, atol=1e-14)
torch.testing.assert_close(grads.h, delta, rtol=1e-12, atol=1e-14)

# %% [markdown]
# ## 4. Vanishing and exploding gradients
#
# Unroll the recursion for $\delta_t$ with a loss on the last step only ($g_t = 0$ for $t < T$):
#
# $$\delta_{T-k} = \delta_T\, J_T J_{T-1} \cdots J_{T-k+1}, \qquad
#   J_t = \frac{\partial h_t}{\partial h_{t-1}} = \mathrm{diag}(1 - h_t^2)\, W_{hh} \quad (H, H)$$
#
# (acting on row vectors from the right). The gradient that reaches $k$ steps back has been multiplied by
# $k$ Jacobians (雅可比矩阵). Each $\mathrm{diag}(1 - h_t^2)$ has entries in $(0, 1]$ and can only
# shrink it; $W_{hh}$ is the same matrix every time. Two numbers of $W_{hh}$ matter. The **bound**
# (Pascanu, Mikolov & Bengio 2013) uses the largest singular value (奇异值) $\sigma_{\max}(W_{hh}) =
# \lVert W_{hh} \rVert_2$: since $\lVert \mathrm{diag}(1-h_t^2) \rVert_2 \le 1$,
#
# $$\lVert \delta_{T-k} \rVert \le \sigma_{\max}(W_{hh})^k\, \lVert \delta_T \rVert,$$
#
# so $\sigma_{\max} < 1$ is *sufficient* for vanishing (and $\sigma_{\max} > 1$ is *necessary* for
# exploding). The **long-run rate** is the spectral radius (谱半径) $\rho = \max_i |\lambda_i(W_{hh})|$,
# the largest absolute eigenvalue: $\lVert W_{hh}^k \rVert^{1/k} \to \rho$ as $k \to \infty$ (Gelfand's
# formula), and $\rho \le \sigma_{\max}$. For a random Gaussian matrix the two rates are close enough
# that $\rho^k$ predicts the slope, and so, when the tanh is not saturated and $k$ is large,
#
# $$\lVert \delta_{T-k} \rVert \approx C\,\rho^k : \quad \rho < 1 \Rightarrow
#   \text{vanishing gradient (梯度消失)}, \qquad \rho > 1 \Rightarrow \text{exploding gradient (梯度爆炸)}.$$
#
# We measure it: a random $W_{hh}$ (64 x 64) rescaled to spectral radius $\rho$, a loss $\langle v, h_T
# \rangle$ with a random unit vector $v$ (so $\lVert\delta_T\rVert = 1$), and `bptt` for every
# $\delta_{T-k}$. First at rest (inputs zero, so $h_t = 0$ and $\tanh' = 1$: only $W_{hh}$ acts), then
# with inputs large enough to saturate the tanh.

# %%
steps = 50
profiles = [gradient_profile(radius, steps) for radius in (0.8, 1.0, 1.2)]
saturated = gradient_profile(1.2, steps, input_scale=1.0)
draw_profiles([*profiles, saturated])
plt.show()
for p in [*profiles, saturated]:
    print(f"rho = {p['radius']:.1f}, input scale {p['input_scale']:.1f}: "
          f"||dL/dh_1|| / ||dL/dh_T|| = {p['ratio']:.3g}   (rho^(T-1) = {p['reference'][-1]:.3g})")

# %% [markdown]
# The printed ratios $\lVert\delta_1\rVert / \lVert\delta_T\rVert$ ($T = 50$) sit next to $\rho^{T-1}$;
# the dashed lines $\rho^k$ predict the slopes (the constant $C$ in front comes from how the random
# $W_{hh}$ mixes directions). Asserted: below 1e-3 for 0.8, between 1e-2 and 1e2 for 1.0, above 1e2 for
# 1.2, and a slope within 5 % of $\rho$ per step over the second half of the lags. With saturating
# inputs even $\rho = 1.2$ vanishes (asserted below 1e-3): tanh RNNs mostly suffer from
# vanishing gradients, and an explosion needs weights large enough to beat the saturation, which is just
# what a too-large learning-rate step can produce (section 5).

# %%
vanish, keep, explode = (p["ratio"] for p in profiles)
assert vanish < 1e-3, vanish
assert 1e-2 < keep < 1e2, keep
assert explode > 1e2, explode
assert saturated["ratio"] < 1e-3, saturated["ratio"]
for p in profiles:  # the slope over the second half of the lags is rho per step, within 5 %
    half = steps // 2
    per_step = (p["norm"][-1] / p["norm"][half]) ** (1 / (steps - 1 - half))
    assert abs(per_step - p["radius"]) < 0.05 * p["radius"], (p["radius"], per_step)

# %% [markdown]
# **The spectral radius is not the whole story.** Gelfand's formula is about the *long run*. A
# non-normal (非正规矩阵) $W_{hh}$, one whose eigenvectors are far from orthogonal, can have $\rho < 1$ and
# still make the gradient *grow* for many steps before the decay wins, because $\sigma_{\max} > 1$.
# The smallest example is a chain: $W_{hh} = \rho I + \beta N$ with $N$ the shift matrix (ones just
# above the diagonal). Every eigenvalue is $\rho$, yet $W_{hh}^k$ contains terms $\binom{k}{j}\rho^{k-j}
# \beta^j$ that grow polynomially first. We run the same `bptt` at rest on such a matrix, $H = 4$, $\rho = 0.8$, $\beta = 1$.

# %%
H_chain, rho_chain, beta = 4, 0.8, 1.0
chain = RNN(1, H_chain).double()
with torch.no_grad():
    chain.weight_hh_l0.copy_(rho_chain * torch.eye(H_chain, dtype=torch.float64)
                             + beta * torch.diag(torch.ones(H_chain - 1, dtype=torch.float64), 1))
    chain.weight_ih_l0.zero_()
    chain.bias_ih_l0.zero_()
    chain.bias_hh_l0.zero_()
w_chain = chain.weight_hh_l0.detach()
radius_chain = torch.linalg.eigvals(w_chain).abs().max().item()
sigma_chain = torch.linalg.matrix_norm(w_chain, ord=2).item()
x_rest = torch.zeros(steps, 1, 1, dtype=torch.float64)
g_last = torch.zeros(steps, 1, H_chain, dtype=torch.float64)
g_last[-1, 0, 0] = 1.0  # a loss on the first unit of h_T: ||dL/dh_T|| = 1
chain_norm = bptt(chain, x_rest, g_last).h[:, 0].norm(dim=-1).flip(0)  # (steps,): ||dL/dh_{T-k}||, k = 0..
peak_lag = int(chain_norm.argmax())
print(f"chain W_hh: spectral radius {radius_chain:.3f}, largest singular value {sigma_chain:.3f}")
print(f"||dL/dh_(T-k)||: peak {chain_norm.max():.3g} at k = {peak_lag}, {chain_norm[-1]:.3g} at k = {steps - 1}; "
      f"bound sigma_max^k at the peak: {sigma_chain ** peak_lag:.3g}")
fig, ax = plt.subplots(figsize=(6.5, 3.4))
lags = torch.arange(steps)
ax.semilogy(lags, chain_norm, label="chain $W_{hh}$, measured")
ax.semilogy(lags, rho_chain ** lags.double(), "--", label=r"$\rho^k$")
ax.semilogy(lags, sigma_chain ** lags.double(), ":", label=r"$\sigma_{\max}^k$ (the bound)")
ax.set(xlabel="lag k", ylabel=r"$\|\partial L/\partial h_{T-k}\|$", title=rf"$\rho = {rho_chain}$, non-normal")
ax.legend()
plt.show()

# %% [markdown]
# The gradient grows for many steps although every eigenvalue is $\rho < 1$ (the lines above print the
# peak and where it is), and it
# stays under the singular-value bound at every lag. Asserted: $\rho < 1 < \sigma_{\max}$, a peak above
# 10 away from $k = 0$, the bound at every lag, and the ratio at the last lag below the peak (the decay
# does come back). A check that looked at $\rho$ alone would call this matrix safe.

# %%
assert radius_chain < 1 < sigma_chain, (radius_chain, sigma_chain)
assert chain_norm.max() > 10 and peak_lag > 0, (chain_norm.max(), peak_lag)
assert torch.all(chain_norm <= sigma_chain ** lags.double() * (1 + 1e-9))
assert chain_norm[-1] < chain_norm.max()

# %% [markdown]
# **Play.** Drag the spectral radius, the sequence length $T$ and the input scale. The text under the
# sliders gives $\lVert\partial L/\partial h_1\rVert / \lVert\partial L/\partial h_T\rVert$: how much
# of the gradient of a loss at the last step reaches the first input. Where is the boundary between
# vanishing and exploding, and how does it move when the inputs grow?

# %%
display(radius_widget(radius=1.0, steps=50))

# %% [markdown]
# ## 5. Gradient clipping
#
# An exploding gradient does not announce itself: one step with a huge gradient makes a huge update,
# the weights land somewhere the loss is larger and the gradients larger still, and a few steps later
# the loss is `inf` or `NaN`. Gradient clipping (梯度裁剪) bounds the step: with all gradients stacked in
# one vector $g$,
#
# $$g \leftarrow g \cdot \min\!\Big(1, \frac{c}{\lVert g \rVert}\Big),$$
#
# the direction is kept and only the length is capped at $c$, so one update of plain SGD moves the
# weights by at most $\eta c$. `fit(..., clip_grad=c)` does this (with `torch.nn.utils.clip_grad_norm_`)
# and records $\lVert g \rVert$ before clipping in `history.grad_norm`.
#
# The task: read 32 steps of a seasonal series (normalised to mean 0 and variance 1) and predict the
# next value, with our from-scratch `RNN` (32 hidden units) and a linear read-out, trained by plain SGD
# with a learning rate that is too high, $\eta = 1$. Once without clipping, once with $c = 0.1$.

# %%
series = seasonal_series(4000, period=24, trend=0.0, noise=0.1)
series = (series - series.mean()) / series.std()
window, batch_size = 32, 32


def batch_fn(generator):
    """Random windows of the series: x (window, B, 1) time first, y (B, 1) the value after each window."""
    return next_value_batches(series, window, batch_size, generator)


# The model, karpa_lab's NextValue: our RNN over the window, then a linear read-out of its last hidden state.
x_peek, y_peek = batch_fn(torch.Generator().manual_seed(0))()
print(f"a batch: x {tuple(x_peek.shape)} (window, batch, 1), y {tuple(y_peek.shape)}")


def run(clip_grad, steps):
    seed_everything(0)
    model = NextValue()
    sgd = torch.optim.SGD(model.parameters(), lr=1.0)
    data = batch_fn(torch.Generator().manual_seed(0))
    try:
        return fit(model, data, steps=steps, optimizer=sgd, clip_grad=clip_grad, progress=False,
                   log_every=steps // 5)
    except NonFiniteLossError as err:
        print("without clipping:", str(err).split(". ")[0])
        return err.history


train_steps = by_scale(small=300, full=2000)
unclipped = run(None, train_steps)
clipped = run(0.1, train_steps)

# %%
fig, (ax_loss, ax_norm) = plt.subplots(1, 2, figsize=(11, 3.4))
for hist, name, color in [(unclipped, "no clipping", "C3"), (clipped, "clip_grad = 0.1", "C0")]:
    ax_loss.semilogy(hist.steps, hist.train_loss, color=color, label=name)
    ax_norm.semilogy(hist.steps, hist.grad_norm, color=color, label=name)
ax_norm.axhline(0.1, color="C0", ls="--", lw=1)
ax_loss.set(xlabel="step", ylabel="training loss (MSE)", title="SGD, learning rate 1.0")
ax_norm.set(xlabel="step", ylabel="||g|| before clipping", title="gradient norm")
ax_loss.legend()
fig.tight_layout()
plt.show()
final_clipped = sum(clipped.train_loss[-20:]) / 20
print(f"no clipping: {len(unclipped)} finite steps, last finite loss {unclipped.train_loss[-1]:.3g}, "
      f"gradient norm up to {max(unclipped.grad_norm):.3g}")
print(f"clipped:     {len(clipped)} steps, loss {clipped.train_loss[0]:.3f} -> {final_clipped:.4f} "
      "(mean of the last 20 steps)")

# %% [markdown]
# Without clipping the gradient norm grows by many orders of magnitude within a few steps and `fit`
# stops with a `NonFiniteLossError` (the line above says at which step, and the last finite loss; the
# error's `.history` holds the steps so far). With clipping the same run trains. Here every step is
# clipped (the norm never falls below $c$, the dashed line), so SGD has become steps of fixed length
# $\eta c = 0.1$ along the gradient.
#
# What would a model that learned nothing useful score? Two **negative controls** (对照实验): the
# untrained network, and *persistence*, which predicts that the next value equals the last one (a
# model that only learned to copy its input). The clipped run must beat both (asserted: a loss below 0.08, about half way, on a log scale, between
# the clipped run and persistence), and the
# check "stopped early" must fail for the run that did not blow up.

# %%
def stopped_early(hist):
    return len(hist) < 30

eval_x = torch.cat([batch_fn(torch.Generator().manual_seed(s))()[0] for s in range(1, 9)], dim=1)
eval_y = torch.cat([batch_fn(torch.Generator().manual_seed(s))()[1] for s in range(1, 9)], dim=0)
persistence_mse = nn.functional.mse_loss(eval_x[-1], eval_y).item()
seed_everything(0)
with torch.no_grad():
    untrained_mse = nn.functional.mse_loss(NextValue()(eval_x), eval_y).item()
print(f"clipped run: {final_clipped:.4f} | persistence: {persistence_mse:.4f} | untrained: {untrained_mse:.4f}")
print(f"stopped early: unclipped {stopped_early(unclipped)} ({len(unclipped)} steps), "
      f"clipped {stopped_early(clipped)} ({len(clipped)} steps)")
assert stopped_early(unclipped) and not stopped_early(clipped)
assert math.isfinite(final_clipped) and final_clipped < 0.08, final_clipped
assert persistence_mse > 0.08 and untrained_mse > 0.08, (persistence_mse, untrained_mse)

# %% [markdown]
# Clipping treats the symptom (one step too large) and not the cause: the vanishing side is untouched,
# since no rescaling of a gradient brings back information that never arrived. That is what the next
# lesson's LSTM is for.
#
# ## Exercises
#
# 1. **Predict, then run.** In the widget, set $\rho = 1.0$ and $T = 200$. Is the ratio 1? Now build an
#    orthogonal $W_{hh}$ (`torch.linalg.qr(torch.randn(64, 64))[0]`, all eigenvalues on the unit circle
#    and all singular values 1) and compute $\lVert \delta_{T-k}\rVert$ with `bptt`: why is it exactly 1
#    at rest, and not for the Gaussian matrix of the same spectral radius?
# 2. **ReLU instead of tanh.** Redo the derivation of section 3 for $h_t = \mathrm{ReLU}(a_t)$: which
#    factor replaces $1 - h_t^2$? Change `bptt_by_hand` accordingly and check it against
#    `nn.RNN(D, H, nonlinearity="relu")` with autograd.
# 3. **Truncated BPTT.** Detach the hidden state every $K$ steps (`h = h.detach()`) in `rnn_forward` and
#    compare $\partial\mathcal{L}/\partial W_{hh}$ with the full gradient for $K = 5, 10, 20$, once with
#    $\rho(W_{hh}) = 0.8$ and once with $1.2$. When is truncation a good approximation?
# 4. **Clip by value.** `torch.nn.utils.clip_grad_value_` clips every entry to $[-c, c]$ instead of
#    scaling the whole vector. For $g = (3, 0.1)$ and $c = 1$, compute both results by hand. Which one
#    keeps the direction of steepest descent?
# 5. **Find the edge.** Lower the learning rate of the unclipped run until it survives all steps. How
#    does its final loss compare with the clipped run at $\eta = 1$?
#
# Worked solutions, each one run and checked: [solutions/02_rnn_math.ipynb](solutions/02_rnn_math.ipynb).
#
# ## Summary
#
# - An RNN applies $h_t = \tanh(x_t W_{xh}^\top + h_{t-1} W_{hh}^\top + b)$ with the same weights at every
#   step; our loop equals `nn.RNN` to 1e-12 and lives in `karpa_lab/models/rnn.py`.
# - BPTT is backpropagation on the unrolled graph: $\delta_t = g_t + (\delta_{t+1} \odot (1 - h_{t+1}^2))
#   W_{hh}$, and every weight gradient sums over time steps; it equals autograd's gradient.
# - The gradient $k$ steps back scales like $\rho(W_{hh})^k$, times tanh factors that only shrink it:
#   vanishing below 1, exploding above.
# - The bound on that scaling is the largest singular value: a non-normal $W_{hh}$ with $\rho < 1$ can
#   still make the gradient grow for many steps.
# - Clipping the gradient norm turns a run that overflows within a few steps into one that trains, and
#   beats the persistence baseline.
#
# **Next:** lesson 03 adds gates and an additive cell state, the LSTM, whose gradient can travel many
# steps without vanishing, and measures it on a task a vanilla RNN cannot learn.
#
# | English | 中文 | one line |
# |---|---|---|
# | recurrent neural network (RNN) | 循环神经网络 | one cell applied at every time step, carrying a hidden state |
# | hidden state | 隐藏状态 | the vector a recurrent network carries from one step to the next |
# | parameter sharing | 参数共享 | the same weights used at every time step (or position) |
# | backpropagation through time (BPTT) | 随时间反向传播 | backpropagation on the network unrolled over its time steps |
# | Jacobian | 雅可比矩阵 | the matrix of partial derivatives of one vector with respect to another |
# | spectral radius | 谱半径 | the largest absolute eigenvalue of a matrix: the long-run growth rate of its powers |
# | singular value | 奇异值 | the largest one, the operator norm, bounds how much one product can stretch a vector |
# | non-normal matrix | 非正规矩阵 | a matrix whose eigenvectors are not orthogonal; its powers can grow before they decay |
# | vanishing gradient | 梯度消失 | a gradient that shrinks geometrically as it travels back |
# | exploding gradient | 梯度爆炸 | a gradient that grows geometrically as it travels back |
# | gradient clipping | 梯度裁剪 | rescale the gradient so its norm is at most a threshold |
# | negative control | 对照实验 | the same check run on a model that cannot have learned; it must fail |
