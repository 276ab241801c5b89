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
# # Lab 01 · An LSTM cell with a projection, from scratch
#
# You will write the forward pass of an LSTM cell with a projection layer, the LSTMP of Sak, Senior & Beaufays
# (2014), with nothing but tensor operations, run it over a sequence, and then set its gates by hand so that it
# remembers. Your code is graded against PyTorch's own `nn.LSTM(..., proj_size=P)` on inputs you do not see,
# so it must be right for every shape, not just the examples here.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `lstm_cell`: one step | 1 + 3 + 1 |
# | 2 | `lstm_sequence`: the cell over time | 3 + 1 |
# | 3 | `remember_bias`: gates that keep a memory | 2 |
# | 4 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# Each test cell below your code checks it and says what is wrong: which tensor, which shape, which gate,
# how far off. The teacher's grader runs those tests and some hidden ones. Do not edit or delete the test
# cells (the grader puts the originals back), do not rename the functions, and do not use `nn.LSTMCell`,
# `nn.LSTM` or `karpa_lab.models.lstm` inside your functions (the tests check). Before you hand it in:
# *Kernel → Restart Kernel and Run All Cells*, and every test cell should run without an error. The whole
# notebook runs in a few seconds; a cell that runs for more than two minutes is stopped by the grader.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import warnings

import torch
from torch import nn

from karpa_lab.grading import check_close, check_lstm_cell, check_lstm_sequence, check_tensor

torch.manual_seed(0)
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


# %% [markdown]
# ## Part 1 · One step of the cell
#
# An LSTM cell reads an input $x_t$ (B, D) and its previous state, the hidden state $h_{t-1}$ and the cell
# state (细胞状态) $c_{t-1}$ (B, H), where B is the batch size, D the input size and H the hidden size. A
# large speech model needs a large H for its memory, but then the recurrent weights, $4H \times H$, dominate
# its size and its time. The LSTM with a projection keeps a cell of size H and feeds back only a projection of
# its output, of size $P < H$: $h_t$ is (B, P). PyTorch keeps the weights of the four gates stacked in one
# matrix, in the order **[i, f, g, o]**: $W_{ih}$ (4H, D), $W_{hh}$ (4H, P), $b_{ih}$ and $b_{hh}$ (4H,); and
# the projection $W_{hr}$ (P, H).
#
# $$a_t = x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh} \qquad (B, 4H),
#   \text{ split along dim 1 into } a_i, a_f, a_g, a_o \text{ each } (B, H)$$
#
# $$i_t = \sigma(a_i),\quad f_t = \sigma(a_f),\quad g_t = \tanh(a_g),\quad o_t = \sigma(a_o) \qquad \text{each } (B, H)$$
#
# $$c_t = f_t \odot c_{t-1} + i_t \odot g_t \quad (B, H), \qquad
#   h_t = \big(o_t \odot \tanh(c_t)\big)\, W_{hr}^\top \quad (B, P)$$
#
# The input gate (输入门) $i$ decides how much of the candidate $g$ to write, the forget gate (遗忘门) $f$
# how much of the old cell to keep, the output gate (输出门) $o$ how much of the cell to show; the
# projection (投影) $W_{hr}$ maps what is shown, (B, H), to the recurrent state, (B, P). $\sigma$ is the
# logistic sigmoid and $\odot$ the element-wise product. The recurrent weights shrink from $4H \cdot H$ to
# $4H \cdot P + P \cdot H$.
#
# **Task 1.** Write `lstm_cell(x, h, c, weight_ih, weight_hh, weight_hr, bias_ih, bias_hh)` returning the
# pair `(h_next, c_next)`, (B, P) and (B, H). The biases may be `None` (a cell built with `bias=False`): then
# leave them out. Do not change `x`, `h` or `c` in place (no `c *= ...`): return new tensors.

# %% nbgrader={"grade": false, "grade_id": "lstm_cell", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lstm_cell(x, h, c, weight_ih, weight_hh, weight_hr, bias_ih=None, bias_hh=None):
    """One LSTMP step: x (B, D), h (B, P), c (B, H), weights in nn.LSTM's layout -> (h_next (B, P), c_next (B, H))."""
    ### BEGIN SOLUTION
    a = x @ weight_ih.T + h @ weight_hh.T
    if bias_ih is not None:
        a = a + bias_ih + bias_hh
    a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
    c_next = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
    shown = torch.sigmoid(a_o) * torch.tanh(c_next)             # (B, H)
    return shown @ weight_hr.T, c_next                          # (B, P), (B, H)
    ### END SOLUTION


# %% [markdown]
# Try it on a small example (change the sizes and see what the shapes do; PyTorch asks for $P < H$):

# %%
example = nn.LSTM(input_size=3, hidden_size=4, proj_size=2)
weights = (example.weight_ih_l0, example.weight_hh_l0, example.weight_hr_l0, example.bias_ih_l0, example.bias_hh_l0)
x, h, c = torch.randn(5, 3), torch.zeros(5, 2), torch.zeros(5, 4)
h1, c1 = lstm_cell(x, h, c, *weights)
print("h_next", tuple(h1.shape), "c_next", tuple(c1.shape))
print("recurrent weights with the projection:", 4 * 4 * 2 + 2 * 4, "without:", 4 * 4 * 4)

# %% [markdown]
# The tests of Task 1: the shapes (1 point), the values against `nn.LSTM(..., proj_size=P)` gate by gate
# (3 points), and the gradients, since a cell is only useful if you can train it (1 point).

# %% nbgrader={"grade": true, "grade_id": "test_cell_shapes", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Batch of one, input size 2, hidden size 3, projection 2: h_next must be (1, 2) and c_next (1, 3).
ref = nn.LSTM(2, 3, proj_size=2)
out = lstm_cell(torch.randn(1, 2), torch.randn(1, 2), torch.randn(1, 3),
                ref.weight_ih_l0, ref.weight_hh_l0, ref.weight_hr_l0, ref.bias_ih_l0, ref.bias_hh_l0)
assert isinstance(out, tuple) and len(out) == 2, "lstm_cell must return the pair (h_next, c_next)"
check_tensor("h_next", out[0], (1, 2), dims="(batch, proj_size)")
check_tensor("c_next", out[1], (1, 3), dims="(batch, hidden_size)")
print("✓ shapes")
### BEGIN HIDDEN TESTS
for B, D, H, P in [(5, 1, 2, 1), (2, 4, 7, 3), (3, 7, 4, 1), (1, 2, 6, 5)]:
    ref = nn.LSTM(D, H, proj_size=P)
    out = lstm_cell(torch.randn(B, D), torch.randn(B, P), torch.randn(B, H), ref.weight_ih_l0, ref.weight_hh_l0,
                    ref.weight_hr_l0, ref.bias_ih_l0, ref.bias_hh_l0)
    assert tuple(out[0].shape) == (B, P) and tuple(out[1].shape) == (B, H), (B, D, H, P)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_cell_values", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Your lstm_cell against nn.LSTM with proj_size in float64; on a mismatch it tests the gates one at a time.
check_lstm_cell(lstm_cell)
### BEGIN HIDDEN TESTS
for seed, (B, D, H, P) in enumerate([(1, 1, 2, 1), (4, 7, 3, 2), (2, 3, 9, 4), (6, 2, 5, 1)]):
    check_lstm_cell(lstm_cell, input_size=D, hidden_size=H, proj_size=P, batch=B, seed=100 + seed)
# float32 and a cell without biases, against one step of nn.LSTM
torch.manual_seed(7)
ref = nn.LSTM(6, 5, proj_size=3, bias=False)
x, h, c = torch.randn(3, 6), torch.randn(3, 3), torch.randn(3, 5)
with torch.no_grad():
    got = lstm_cell(x, h, c, ref.weight_ih_l0, ref.weight_hh_l0, ref.weight_hr_l0, None, None)
    want = [s[0] for s in ref(x[None], (h[None], c[None]))[1]]
assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want)), "float32 cell without biases"
# large pre-activations saturate the gates: the result must stay finite and exact
ref = nn.LSTM(4, 3, proj_size=2).double()
x = 50 * torch.randn(2, 4, dtype=torch.float64)
h, c = torch.randn(2, 2, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
with torch.no_grad():
    got = lstm_cell(x, h, c, ref.weight_ih_l0, ref.weight_hh_l0, ref.weight_hr_l0, ref.bias_ih_l0, ref.bias_hh_l0)
    want = [s[0] for s in ref(x[None], (h[None], c[None]))[1]]
assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(got, want)), "saturated gates"
# with P = H and the identity as projection it is the cell without one: torch.lstm_cell
plain = nn.LSTMCell(4, 3).double()
x, h, c = torch.randn(2, 4, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
with torch.no_grad():
    got = lstm_cell(x, h, c, plain.weight_ih, plain.weight_hh, torch.eye(3, dtype=torch.float64), plain.bias_ih, plain.bias_hh)
    want = torch.lstm_cell(x, (h, c), plain.weight_ih, plain.weight_hh, plain.bias_ih, plain.bias_hh)
assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(got, want)), "identity projection: the plain cell"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_cell_gradients", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Backpropagating through your cell gives nn.LSTM's gradients, for the inputs and for the weights.
def cell_gradients(step, B, D, H, P, seed):
    torch.manual_seed(seed)
    ref = nn.LSTM(D, H, proj_size=P).double()
    x, h, c = (torch.randn(B, n, dtype=torch.float64, requires_grad=True) for n in (D, P, H))
    h1, c1 = step(x, h, c, ref)
    (h1.sin().sum() + c1.cos().sum()).backward()
    return [t.grad for t in (x, h, c, ref.weight_ih_l0, ref.weight_hh_l0, ref.weight_hr_l0, ref.bias_ih_l0)]


def yours(x, h, c, r):
    return lstm_cell(x, h, c, r.weight_ih_l0, r.weight_hh_l0, r.weight_hr_l0, r.bias_ih_l0, r.bias_hh_l0)


def torchs(x, h, c, r):
    _, (h1, c1) = r(x[None], (h[None], c[None]))
    return h1[0], c1[0]


for name, a, b in zip(("dx", "dh", "dc", "dW_ih", "dW_hh", "dW_hr", "db_ih"), cell_gradients(yours, 3, 4, 5, 2, 0),
                      cell_gradients(torchs, 3, 4, 5, 2, 0)):
    check_close(name, a, b, atol=1e-8)
### BEGIN HIDDEN TESTS
mine, theirs = cell_gradients(yours, 1, 6, 5, 3, 3), cell_gradients(torchs, 1, 6, 5, 3, 3)
assert all(torch.allclose(a, b, atol=1e-8) for a, b in zip(mine, theirs)), "gradients, batch of one"
mine, theirs = cell_gradients(yours, 4, 2, 7, 1, 4), cell_gradients(torchs, 4, 2, 7, 1, 4)
assert all(torch.allclose(a, b, atol=1e-8) for a, b in zip(mine, theirs)), "gradients, projection to one unit"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · The cell over a sequence
#
# An LSTM layer applies the same cell at every time step, feeding each step's $(h_t, c_t)$ into the next:
# for $x$ (T, B, D), time first as in `nn.LSTM`, and a start state $(h_0, c_0)$ (zeros when none is given),
#
# $$(h_t, c_t) = \text{cell}(x_t, h_{t-1}, c_{t-1}), \quad t = 1..T; \qquad
#   \text{outputs} = [h_1, \dots, h_T] \quad (T, B, P).$$
#
# **Task 2.** Write `lstm_sequence(x, state, weight_ih, weight_hh, weight_hr, bias_ih, bias_hh)` returning
# `(outputs, (h_T, c_T))`, using your `lstm_cell`. `state` is `None` or a pair `(h_0, c_0)`, (B, P) and
# (B, H): the two parts of the state no longer have the same size. New tensors must have the input's dtype
# (use `x.new_zeros(...)`).

# %% nbgrader={"grade": false, "grade_id": "lstm_sequence", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lstm_sequence(x, state, weight_ih, weight_hh, weight_hr, bias_ih=None, bias_hh=None):
    """Run lstm_cell over x (T, B, D) from state (h_0, c_0) or zeros -> outputs (T, B, P), (h_T, c_T)."""
    ### BEGIN SOLUTION
    if state is None:
        P, H = weight_hr.shape
        state = (x.new_zeros(x.shape[1], P), x.new_zeros(x.shape[1], H))
    h, c = state
    outputs = []
    for x_t in x:
        h, c = lstm_cell(x_t, h, c, weight_ih, weight_hh, weight_hr, bias_ih, bias_hh)
        outputs.append(h)
    return torch.stack(outputs), (h, c)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_sequence_values", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Your lstm_sequence against nn.LSTM, from zeros and from a given state; it says where in time it goes wrong.
check_lstm_sequence(lstm_sequence)
### BEGIN HIDDEN TESTS
for seed, (T, B, D, H, P) in enumerate([(1, 1, 1, 2, 1), (1, 3, 2, 4, 3), (20, 2, 5, 3, 2), (7, 1, 4, 6, 1)]):
    check_lstm_sequence(lstm_sequence, input_size=D, hidden_size=H, proj_size=P, batch=B, steps=T, seed=200 + seed)
torch.manual_seed(11)
ref = nn.LSTM(3, 4, proj_size=3)
x = torch.randn(9, 2, 3)
with torch.no_grad():
    out, (h_T, c_T) = lstm_sequence(x, None, ref.weight_ih_l0, ref.weight_hh_l0, ref.weight_hr_l0, ref.bias_ih_l0,
                                    ref.bias_hh_l0)
    want, (want_h, want_c) = ref(x)
assert torch.allclose(out, want, atol=1e-5) and torch.allclose(c_T, want_c[0], atol=1e-5), "float32 sequence"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_sequence_chunks", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Carrying the state: running 4 steps and then 6 more from the state you returned is the same as 10 steps.
torch.manual_seed(1)
ref = nn.LSTM(3, 5, proj_size=2).double()
weights = (ref.weight_ih_l0, ref.weight_hh_l0, ref.weight_hr_l0, ref.bias_ih_l0, ref.bias_hh_l0)
x = torch.randn(10, 2, 3, dtype=torch.float64)
with torch.no_grad():
    whole, (h_all, c_all) = lstm_sequence(x, None, *weights)
    first, state = lstm_sequence(x[:4], None, *weights)
    second, (h_two, c_two) = lstm_sequence(x[4:], state, *weights)
check_close("outputs of the two chunks", torch.cat([first, second]), whole, dims="(time, batch, proj_size)")
check_close("c_T after the two chunks", c_two, c_all, dims="(batch, hidden_size)")
### BEGIN HIDDEN TESTS
with torch.no_grad():
    from_zeros, _ = lstm_sequence(x, (torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 5, dtype=torch.float64)),
                                  *weights)
    parts = [lstm_sequence(x[:1], None, *weights)]
    parts.append(lstm_sequence(x[1:], parts[0][1], *weights))
assert torch.allclose(from_zeros, whole, atol=1e-12), "state=None must mean zeros"
assert torch.allclose(torch.cat([parts[0][0], parts[1][0]]), whole, atol=1e-10), "chunks of 1 and 9 steps"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · Gates that remember
#
# Take a cell whose gates have zero weights, so that only the biases set $i$, $f$ and $o$: every step then
# has the same gates, whatever the input. The candidate $g$ still reads the input (its weights are not
# zero), so the cell is offered something new to write at every step. Choose the bias so that the cell
# state survives 100 steps: $c_{100}$ within 1 % of $c_0$, for any $c_0$.
#
# **Task 3.** Write `remember_bias(hidden_size)` returning a tensor of shape (4H,) in the order
# [i, f, g, o]. The test puts it in `bias_ih` of an `nn.LSTM` with a projection whose weights are zero except
# the candidate's rows of `weight_ih`, with `bias_hh = 0`. Think first: after T steps with constant gates,
# what is $c_T$ in terms of $c_0$, $f$, $i$ and the $g_t$?

# %% nbgrader={"grade": false, "grade_id": "remember_bias", "locked": false, "schema_version": 3, "solution": true, "task": false}
def remember_bias(hidden_size):
    """A bias (4H,) in the order [i, f, g, o] with which a zero-weight LSTM keeps its cell state."""
    ### BEGIN SOLUTION
    bias = torch.zeros(4 * hidden_size)
    bias[:hidden_size] = -20.0                   # input gate shut: i = σ(-20) ≈ 2e-9, nothing is written
    bias[hidden_size:2 * hidden_size] = 20.0     # forget gate open: f = σ(20) ≈ 1 - 2e-9, everything is kept
    return bias
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_remember", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def memory_after(bias, H, T, scale, seed):
    """c_0 and c_T of an nn.LSTM (projection to 2) with bias_ih = bias and zero weights but the candidate's,
    T steps on random inputs."""
    torch.manual_seed(seed)
    lstm = nn.LSTM(3, H, proj_size=2).double()
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
        lstm.weight_ih_l0[2 * H:3 * H] = 2 * torch.randn(H, 3, dtype=torch.float64)  # g = tanh(W_g x_t) is not 0
        lstm.bias_ih_l0.copy_(torch.as_tensor(bias, dtype=torch.float64))
        c0 = scale * torch.randn(1, 2, H, dtype=torch.float64)
        _, (_, c_T) = lstm(torch.randn(T, 2, 3, dtype=torch.float64), (torch.zeros(1, 2, 2, dtype=torch.float64), c0))
    return c0[0], c_T[0]


b = remember_bias(4)
check_tensor("remember_bias(4)", torch.as_tensor(b), (16,), dims="(4 * hidden_size,) in the order [i, f, g, o]")
c0, c100 = memory_after(b, H=4, T=100, scale=1.0, seed=0)
check_close("c after 100 steps", c100, c0, atol=0.0, rtol=0.01, dims="(batch, hidden_size)")
### BEGIN HIDDEN TESTS
c0, c200 = memory_after(remember_bias(7), H=7, T=200, scale=3.0, seed=5)
assert torch.allclose(c200, c0, rtol=0.02, atol=0.0), "7 units, 200 steps, large cell values"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 · Why it works (written answer, 2 points)
#
# In a few sentences: in the cell of Part 3, what is $\partial c_T / \partial c_0$, and why does this let
# an LSTM learn dependencies over long time lags where a vanilla RNN
# ($h_t = \tanh(x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b)$) usually fails? Does the projection change that
# path? What would happen to the memory, and to that gradient, if the forget gate were stuck at $f = 0.9$?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_gradient_path", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). With zero gate weights the gates are constants, so $c_t = f \odot c_{t-1} + i \odot g_t$ and
# $\partial c_T / \partial c_0 = \mathrm{diag}(f)^T$: with $f \approx 1$ (and $i \approx 0$) it is about
# the identity, so both the memory and the gradient pass 100 steps unchanged. The cell state is an
# additive path with a gate in $[0, 1]$ the network learns to hold near 1; in a vanilla RNN the gradient
# is a product of $T$ Jacobians $\mathrm{diag}(1 - h_t^2) W_{hh}$, which shrinks (or grows) geometrically
# with the lag. The projection acts on $h_t$ only, what the gates read, not on the cell's own path $c_{t-1}
# \to c_t$, so the path is the same with or without it. With $f = 0.9$: $0.9^{100} \approx 2.7 \times
# 10^{-5}$, the memory fades within about $1 / (1 - f) = 10$ steps and the gradient vanishes the same way.
# Two points: the product of forget gates and the projection left out of it (1), the contrast with the
# repeated Jacobian and the $f = 0.9$ decay (1).
