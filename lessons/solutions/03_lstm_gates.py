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
# # 03 · LSTM gates: worked solutions
#
# One section per exercise of [lesson 03](../03_lstm_gates.ipynb), in its order and with its wording.
# Each answer gives the reasoning first, then runs it and asserts what the reasoning predicted. The
# trainings are the lesson's section 7: the same task, sizes, steps, learning rate and seeds, with only
# the recurrent layer or its initialisation changed.

# %%
import math

import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab import accuracy, by_scale, evaluate, fit, seed_everything
from karpa_lab.data import recall_task, recall_vocab_size
from karpa_lab.models.lstm import LSTMCell, chrono_init_, lstm_gates_from_torch, lstm_step
from karpa_lab.widgets.lstm_gates import gate_sequence

seed_everything(0)
torch.set_num_threads(1)

# %% [markdown]
# ## 1. Predict, then slide
#
# *With 30 steps, which forget bias keeps exactly half the memory ($c_T / c_0 = 0.5$)? Solve
# $\sigma(b_f)^{29} \approx 0.5$ on paper (ignore the small $u_f h$ term), then check with the memory
# widget. What about 100 steps?*
#
# $\sigma(b_f) = 0.5^{1/29} = e^{-\ln 2 / 29} \approx 0.97638$, and inverting the sigmoid, $b_f =
# \ln\frac{\sigma}{1 - \sigma} = \ln\frac{0.97638}{0.02362} \approx 3.72$. For 100 steps, $\sigma(b_f) =
# 0.5^{1/99} \approx 0.99302$ and $b_f \approx \ln(0.99302 / 0.00698) \approx 4.96$. (A rule of thumb:
# for $f$ near 1, $1 - f \approx \ln 2 / n$, so $b_f \approx \ln(n / \ln 2)$: each tenfold in memory costs
# only $\ln 10 \approx 2.3$ of bias.) The widget's cell also has the term $u_f h_{t-1}$ in $a_f$, with
# $u_f = 0.5$ and $h_{t-1} = o \tanh(c_{t-1}) > 0$ after a positive pulse: it opens the forget gate a
# little more than $b_f$ alone, so at the paper's bias the widget should keep a little *more* than half,
# and the exact bias (found by bisection on the widget's own function) should lie a little *below* the
# paper's.

# %%
def paper_bias(steps):
    f = 0.5 ** (1 / (steps - 1))
    return math.log(f / (1 - f))


def widget_bias(steps, low=0.0, high=10.0):
    """The forget bias at which the widget's cell keeps c_T / c_0 = 0.5, by bisection."""
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if gate_sequence(mid, steps)["ratio"] < 0.5 else (low, mid)
    return (low + high) / 2


for steps in (30, 100):
    b = paper_bias(steps)
    print(f"{steps} steps: on paper b_f = {b:.3f}, the widget keeps c_T/c_0 = {gate_sequence(b, steps)['ratio']:.3f} "
          f"there; exactly 0.5 at b_f = {widget_bias(steps):.3f}")
    assert 0.5 < gate_sequence(b, steps)["ratio"] < 0.65
    assert b - 0.4 < widget_bias(steps) < b
assert abs(paper_bias(30) - 3.72) < 0.01 and abs(paper_bias(100) - 4.96) < 0.01

# %% [markdown]
# ## 2. Take away the initialisation
#
# *Train the LSTM of section 7 again without `chrono_init_` (PyTorch's default biases, $f \approx 0.5$),
# then with only $b_f = 1$ (the advice of Jozefowicz et al. 2015, and Keras's `unit_forget_bias`). Which
# ones solve the task in the same number of steps? Where do the forget gates of the units start, and where
# do they end (section 8's table)?*
#
# **Prediction: only chrono.** The gradient that tells the cell to keep the symbol must cross the 100
# distractors, and it crosses them multiplied by the forget gates (section 1): about $\sigma(b_f)^{100}$.
# With the default biases that is $0.5^{100} \approx 10^{-30}$; with $b_f = 1$, $\sigma(1)^{100} =
# 0.731^{100} \approx 2 \cdot 10^{-14}$: still nothing. $b_f = 1$ is good advice for dependencies of a few
# steps (a memory of $1 + e \approx 3.7$ steps instead of 2), not for 100. Chrono starts units with
# memories up to 100 steps ($f$ up to $0.99$), so the gradient arrives from the first step. The forget
# gates: default and $b_f = 1$ start at about 0.5 and 0.73 and, with no signal from across the lag to
# follow, stay well below 1 (the run shows them drifting further down); chrono's start high ($\tau$
# uniform in $[2, 100]$ puts most units above $f = 0.9$), and its best unit ends near 1.

# %%
LAG, HIDDEN, STEPS, BATCH, LR = 100, 16, 500, 128, 1e-2
N_SYMBOLS, VOCAB = 4, recall_vocab_size()
x_val, y_val = recall_task(2000, LAG, generator=torch.Generator().manual_seed(1234))


class Recall(nn.Module):
    """The lesson's model: one-hot tokens -> a recurrent layer -> a linear read-out of the last step."""

    def __init__(self, rnn: nn.Module):
        super().__init__()
        self.rnn, self.head = rnn, nn.Linear(rnn.hidden_size, N_SYMBOLS)

    def forward(self, tokens):
        return self.head(self.rnn(F.one_hot(tokens, VOCAB).float())[0][:, -1])


def train(make_rnn, seed=0, steps=STEPS):
    """Section 7's training of ``Recall(make_rnn())``: returns the model and its held-out accuracy."""
    seed_everything(seed)
    model = Recall(make_rnn())
    data = torch.Generator().manual_seed(seed)
    fit(model, lambda: recall_task(BATCH, LAG, generator=data), steps=steps, lr=LR, clip_grad=1.0,
        device="cpu", verbose=False)
    return model, evaluate(model, [(x_val, y_val)], metrics={"accuracy": accuracy})["accuracy"]


def lstm(init):
    def make():
        rnn = nn.LSTM(VOCAB, HIDDEN, batch_first=True)
        with torch.no_grad():
            if init == "chrono":
                chrono_init_(rnn, t_max=LAG)
            elif init == "b_f = 1":
                rnn.bias_ih_l0[HIDDEN:2 * HIDDEN] = 1.0
                rnn.bias_hh_l0[HIDDEN:2 * HIDDEN] = 0.0
        return rnn
    return make


def forget_gates(rnn):
    """Mean forget gate of each unit over the lag, on 300 held-out sequences: (H,)."""
    with torch.no_grad():
        trace = lstm_gates_from_torch(rnn, F.one_hot(x_val[:300], VOCAB).float())
    return trace["f"][1:LAG + 1].mean((0, 1))


acc, start_f, end_f = {}, {}, {}
for init in ("default", "b_f = 1", "chrono"):
    seed_everything(0)
    start_f[init] = forget_gates(lstm(init)())
    model, acc[init] = train(lstm(init))
    end_f[init] = forget_gates(model.rnn)
    print(f"{init:>8}: held-out accuracy {acc[init]:.3f}; forget gates over the lag, mean over units "
          f"{start_f[init].mean():.3f} -> {end_f[init].mean():.3f}, range at the start "
          f"[{start_f[init].min():.3f}, {start_f[init].max():.3f}], at the end [{end_f[init].min():.3f}, {end_f[init].max():.3f}]")
assert acc["chrono"] >= 0.9 and acc["default"] < 0.5 and acc["b_f = 1"] < 0.5, acc
assert end_f["chrono"].max() > 0.98 and max(end_f["default"].max(), end_f["b_f = 1"].max()) < end_f["chrono"].max()

# %% [markdown]
# ## 3. Give the RNN a better chance
#
# *Try `HIDDEN = 32`, four times the steps, or $W_{hh}$ initialised to the identity (the IRNN of Le et al.
# 2015). With Adam, a 32-unit RNN sometimes gets part of the way on this task (two or three symbols of
# four); explain with section 1 why the LSTM still learns it faster and more reliably.*
#
# An RNN's gradient crosses each step through $\mathrm{diag}(1 - h_t^2)\,W_{hh}$: to carry it 100 steps,
# $W_{hh}$ must sit at the edge where the product neither vanishes nor explodes, and training must find
# and keep that edge while it also learns what to store, with every change to $W_{hh}$ changing both
# the memory and the computation. A wider layer has more directions in which some signal survives; the
# identity starts the memory at the edge (with ReLU, the Jacobian is $\mathrm{diag}(\mathbb{1}[h > 0])\,I$:
# a unit that stays on passes the gradient unchanged), but nothing holds it there, and the inputs that
# flow in at every step push the state around. The LSTM's cell is an *additive* path, $\partial c_t /
# \partial c_{t-1} = \mathrm{diag}(f_t)$, whose length of memory is set by one bias per unit, apart from
# what is written. **Prediction:** the IRNN below (32 ReLU units started at the identity, two of the
# three suggestions at once), trained with the same 500 steps, stays well short of the chrono LSTM's
# accuracy of section 2. `KARPA_SCALE=full` adds the 32-unit tanh RNN and the 16-unit RNN with four
# times the steps, with the same prediction (at the default scale they would take this notebook past
# its time budget).

# %%
def rnn_32():
    return nn.RNN(VOCAB, 32, batch_first=True)


def irnn_32():
    rnn = nn.RNN(VOCAB, 32, nonlinearity="relu", batch_first=True)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(torch.eye(32))
        rnn.bias_hh_l0.zero_()
        rnn.bias_ih_l0.zero_()
    return rnn


variants = [("IRNN, 32 ReLU units", irnn_32, STEPS)] + by_scale(small=[], full=[
    ("RNN, 32 tanh units", rnn_32, STEPS),
    ("RNN, 16 tanh units, 4x the steps", lambda: nn.RNN(VOCAB, HIDDEN, batch_first=True), 4 * STEPS)])
rnn_acc = {name: train(make, steps=steps)[1] for name, make, steps in variants}
for name, a in rnn_acc.items():
    print(f"{name}: held-out accuracy {a:.3f} (chance 0.25; the chrono LSTM with 16 units: {acc['chrono']:.3f})")
assert all(a < acc["chrono"] - 0.2 for a in rnn_acc.values()), rnn_acc

# %% [markdown]
# ## 4. The GRU
#
# *Put `nn.GRU` in `Recall` and train it as in section 7. Which gate plays the role of the forget gate,
# and what initialisation of its bias corresponds to chrono?*
#
# In $h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}$ the **update gate** $z_t$ is the forget gate: at $x =
# 0$, $h$ fixed, $\partial h_t/\partial h_{t-1}$ has $z_t$ on its diagonal, and $1 - z_t$ plays the input
# gate. A memory of $\tau$ steps needs $z = 1 - 1/\tau$, i.e. $b_z = \ln(\tau - 1)$: chrono for the GRU
# draws $\tau$ in $[2, \text{lag}]$ and sets the $z$ block of the bias (the middle third of `bias_ih` in
# PyTorch's order r, z, n) to $\ln(\tau - 1)$, with the $z$ block of `bias_hh` zero. There is no separate
# input-gate bias to set to $-b_z$: the GRU ties writing to forgetting. **Prediction**, from section 2's
# reasoning: the GRU with default biases ($z \approx 0.5$) does not solve the task in 500 steps; with the
# chrono bias it does.

# %%
def gru(chrono):
    def make():
        rnn = nn.GRU(VOCAB, HIDDEN, batch_first=True)
        if chrono:
            with torch.no_grad():
                tau = torch.empty(HIDDEN).uniform_(2, LAG)
                rnn.bias_ih_l0[HIDDEN:2 * HIDDEN] = (tau - 1).log()
                rnn.bias_hh_l0[HIDDEN:2 * HIDDEN] = 0.0
        return rnn
    return make


gru_acc = {name: train(gru(chrono))[1] for name, chrono in (("default", False), ("chrono", True))}
print(f"GRU, held-out accuracy: default biases {gru_acc['default']:.3f}, chrono update-gate bias {gru_acc['chrono']:.3f}")
assert gru_acc["chrono"] >= 0.9 and gru_acc["default"] < 0.5, gru_acc

# %% [markdown]
# ## 5. A peephole LSTM
#
# *Gers & Schmidhuber (2000) let the gates see the cell: $f_t = \sigma(a_f + p_f \odot c_{t-1})$, likewise
# for $i$, and $o$ reading $c_t$. Add peephole vectors $p_i, p_f, p_o$ (H,) to `lstm_cell`, check that with
# $p = 0$ it still equals `nn.LSTMCell` to 1e-6, and count the new parameters.*
#
# The input and forget gates read the old cell $c_{t-1}$, the output gate the new one $c_t$ (so $o$ is
# computed after $c_t$). The peepholes are diagonal, one weight per unit and gate: $3H$ new parameters,
# against $4H(D + H + 2)$ for the LSTM itself (for section 7's layer, $H = 16$, both are printed below). With
# $p = 0$ every added term is zero and the cell is the plain one; with $p \ne 0$ it must differ.

# %%
def peephole_lstm_cell(x, h, c, W_ih, W_hh, b_ih, b_hh, p_i, p_f, p_o):
    """The lesson's lstm_cell with peepholes p_i, p_f, p_o (H,): x (B, D), h and c (B, H) -> h_t, c_t."""
    a_i, a_f, a_g, a_o = (x @ W_ih.T + b_ih + h @ W_hh.T + b_hh).chunk(4, dim=1)
    i, f, g = torch.sigmoid(a_i + p_i * c), torch.sigmoid(a_f + p_f * c), torch.tanh(a_g)
    c = f * c + i * g
    return torch.sigmoid(a_o + p_o * c) * torch.tanh(c), c


B, D, H = 3, 4, 5
ref = nn.LSTMCell(D, H).double()
x, h0, c0 = (torch.randn(B, n, dtype=torch.float64) for n in (D, H, H))
params = (ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
zero, some = torch.zeros(H, dtype=torch.float64), torch.randn(H, dtype=torch.float64)
with torch.no_grad():
    theirs = ref(x, (h0, c0))
    with_zero = peephole_lstm_cell(x, h0, c0, *params, zero, zero, zero)
    with_some = peephole_lstm_cell(x, h0, c0, *params, some, some, some)
gap = max((a - b).abs().max().item() for a, b in zip(with_zero, theirs, strict=True))
moved = max((a - b).abs().max().item() for a, b in zip(with_some, theirs, strict=True))
lstm_16 = sum(p.numel() for p in nn.LSTM(VOCAB, 16).parameters())
print(f"p = 0: largest difference from nn.LSTMCell {gap:.1e}; p random: {moved:.3f}")
print(f"new parameters: 3H = {3 * H} here; for section 7's layer (H = 16) 48 on top of {lstm_16}")
assert gap < 1e-6 and moved > 0.01
assert lstm_16 == 4 * 16 * (VOCAB + 16 + 2)

# %% [markdown]
# ## 6. Port a TensorFlow 1 cell
#
# *TF1's `LSTMCell` keeps one kernel (D + H, 4H) in the order i, j (the candidate), f, o, one bias (4H,),
# and adds `forget_bias = 1.0` to $a_f$. Write the function that turns it into `weight_ih`, `weight_hh`,
# `bias_ih`, `bias_hh` of an `nn.LSTMCell`, and test it with `lstm_cell` and a TF-style step you write
# from the description.*
#
# TF multiplies $[x_t, h_{t-1}]\,K$ with $K$ (D + H, 4H); PyTorch computes $x_t W_{ih}^\top + h_{t-1}
# W_{hh}^\top$. So $W_{ih} = K[{:}D]^\top$ and $W_{hh} = K[D{:}]^\top$, each with its four column blocks
# put in PyTorch's order: TF's (i, j, f, o) becomes (i, f, j, o). The constant `forget_bias` goes into
# the f block of the bias, and the second bias, which TF does not have, is zero. A negative control: the
# same port without the `forget_bias` (the "TF forget_bias lost" mistake of section 3) must fail.

# %%
def tf1_lstm_step(x, h, c, kernel, bias, forget_bias=1.0):
    """TF1's LSTMCell, from its description: x (B, D), h and c (B, H), kernel (D + H, 4H), bias (4H,)."""
    i, j, f, o = (torch.cat([x, h], dim=1) @ kernel + bias).chunk(4, dim=1)
    c = torch.sigmoid(f + forget_bias) * c + torch.sigmoid(i) * torch.tanh(j)
    return torch.sigmoid(o) * torch.tanh(c), c


def tf1_to_torch(kernel, bias, input_size, forget_bias=1.0):
    """TF1 (kernel (D + H, 4H) in i, j, f, o; bias (4H,)) -> weight_ih, weight_hh, bias_ih, bias_hh."""
    def reorder(t):  # blocks along the last axis: (i, j, f, o) -> (i, f, j, o)
        i, j, f, o = t.chunk(4, dim=-1)
        return torch.cat([i, f, j, o], dim=-1)

    w = reorder(kernel).T  # (4H, D + H)
    b = reorder(bias).clone()
    hidden = bias.numel() // 4
    b[hidden:2 * hidden] += forget_bias
    return w[:, :input_size].contiguous(), w[:, input_size:].contiguous(), b, torch.zeros_like(b)


kernel = torch.randn(D + H, 4 * H, dtype=torch.float64)
tf_bias = torch.randn(4 * H, dtype=torch.float64)
tf_out = tf1_lstm_step(x, h0, c0, kernel, tf_bias)
ported = tf1_to_torch(kernel, tf_bias, D)
torch_out = lstm_step(x, h0, c0, *ported)[:2]
cell = LSTMCell(D, H).double()
with torch.no_grad():
    for name, value in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), ported, strict=True):
        getattr(cell, name).copy_(value)
module_out = cell(x, (h0, c0))
lost = lstm_step(x, h0, c0, *tf1_to_torch(kernel, tf_bias, D, forget_bias=0.0))[:2]
gaps = [max((a - b).abs().max().item() for a, b in zip(out, tf_out, strict=True)) for out in (torch_out, module_out, lost)]
print(f"TF1 step vs the ported lstm_step {gaps[0]:.1e}, vs karpa_lab's LSTMCell {gaps[1]:.1e}; "
      f"ported without forget_bias: {gaps[2]:.3f}")
assert gaps[0] < 1e-12 and gaps[1] < 1e-12 and gaps[2] > 0.01
