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
# # Lab 01 · An LSTM cell from scratch
#
# You will write the forward pass of an LSTM cell with nothing but tensor operations, run it over a
# sequence, and then set its gates by hand so that it remembers. Your code is graded against PyTorch's own
# `nn.LSTMCell` and `nn.LSTM` on inputs you do not see, so it must be right for every shape, not just the
# examples here.
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
# An LSTM cell reads an input $x_t$ (B, D) and its previous state, the hidden state $h_{t-1}$ (B, H)
# and the cell state (细胞状态) $c_{t-1}$ (B, H), where B is the batch size, D the input size and H the
# hidden size. PyTorch keeps the weights of the four gates stacked in one matrix, in the order
# **[i, f, g, o]**: $W_{ih}$ (4H, D), $W_{hh}$ (4H, H), $b_{ih}$ and $b_{hh}$ (4H,).
#
# $$a_t = x_t W_{ih}^\top + b_{ih} + h_{t-1} W_{hh}^\top + b_{hh} \qquad (B, 4H),
#   \text{ split along dim 1 into } a_i, a_f, a_g, a_o \text{ each } (B, H)$$
#
# $$i_t = \sigma(a_i),\quad f_t = \sigma(a_f),\quad g_t = \tanh(a_g),\quad o_t = \sigma(a_o) \qquad \text{each } (B, H)$$
#
# $$c_t = f_t \odot c_{t-1} + i_t \odot g_t, \qquad h_t = o_t \odot \tanh(c_t) \qquad \text{each } (B, H)$$
#
# The input gate (输入门) $i$ decides how much of the candidate $g$ to write, the forget gate (遗忘门) $f$
# how much of the old cell to keep, the output gate (输出门) $o$ how much of the cell to show. $\sigma$ is the
# logistic sigmoid and $\odot$ the element-wise product.
#
# **Task 1.** Write `lstm_cell(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh)` returning the pair
# `(h_next, c_next)`. The biases may be `None` (a cell built with `bias=False`): then leave them out.
# Do not change `x`, `h` or `c` in place (no `c *= ...`): return new tensors.

# %% nbgrader={"grade": false, "grade_id": "lstm_cell", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lstm_cell(x, h, c, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """One LSTM step: x (B, D), h and c (B, H), weights in nn.LSTMCell's layout -> (h_next, c_next) each (B, H)."""
    ### BEGIN SOLUTION
    a = x @ weight_ih.T + h @ weight_hh.T
    if bias_ih is not None:
        a = a + bias_ih + bias_hh
    a_i, a_f, a_g, a_o = a.chunk(4, dim=1)
    c_next = torch.sigmoid(a_f) * c + torch.sigmoid(a_i) * torch.tanh(a_g)
    h_next = torch.sigmoid(a_o) * torch.tanh(c_next)
    return h_next, c_next
    ### END SOLUTION


# %% [markdown]
# Try it on a small example (change the sizes and see what the shapes do):

# %%
example = nn.LSTMCell(input_size=3, hidden_size=2)
x, h, c = torch.randn(4, 3), torch.zeros(4, 2), torch.zeros(4, 2)
h1, c1 = lstm_cell(x, h, c, example.weight_ih, example.weight_hh, example.bias_ih, example.bias_hh)
print("h_next", tuple(h1.shape), "c_next", tuple(c1.shape))

# %% [markdown]
# The tests of Task 1: the shapes (1 point), the values against `nn.LSTMCell` gate by gate (3 points),
# and the gradients, since a cell is only useful if you can train it (1 point).

# %% nbgrader={"grade": true, "grade_id": "test_cell_shapes", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Batch of one, input size 2, hidden size 3: h_next and c_next must be (1, 3).
ref = nn.LSTMCell(2, 3)
out = lstm_cell(torch.randn(1, 2), torch.randn(1, 3), torch.randn(1, 3),
                ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
assert isinstance(out, tuple) and len(out) == 2, "lstm_cell must return the pair (h_next, c_next)"
check_tensor("h_next", out[0], (1, 3), dims="(batch, hidden_size)")
check_tensor("c_next", out[1], (1, 3), dims="(batch, hidden_size)")
print("✓ shapes")
### BEGIN HIDDEN TESTS
for B, D, H in [(5, 1, 1), (2, 4, 7), (3, 7, 4)]:
    ref = nn.LSTMCell(D, H)
    out = lstm_cell(torch.randn(B, D), torch.randn(B, H), torch.randn(B, H),
                    ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    assert tuple(out[0].shape) == (B, H) and tuple(out[1].shape) == (B, H), (B, D, H)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_cell_values", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Your lstm_cell against nn.LSTMCell in float64; on a mismatch it tests the gates one at a time.
check_lstm_cell(lstm_cell)
### BEGIN HIDDEN TESTS
for seed, (B, D, H) in enumerate([(1, 1, 1), (4, 7, 3), (2, 3, 9), (6, 2, 2)]):
    check_lstm_cell(lstm_cell, input_size=D, hidden_size=H, batch=B, seed=100 + seed)
# float32 and a cell without biases
torch.manual_seed(7)
ref = nn.LSTMCell(6, 5, bias=False)
x, h, c = torch.randn(3, 6), torch.randn(3, 5), torch.randn(3, 5)
with torch.no_grad():
    got = lstm_cell(x, h, c, ref.weight_ih, ref.weight_hh, None, None)
    want = ref(x, (h, c))
assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(got, want)), "float32 cell without biases"
# large pre-activations saturate the gates: the result must stay finite and exact
ref = nn.LSTMCell(4, 3).double()
x = 50 * torch.randn(2, 4, dtype=torch.float64)
h, c = torch.randn(2, 3, dtype=torch.float64), torch.randn(2, 3, dtype=torch.float64)
with torch.no_grad():
    got = lstm_cell(x, h, c, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    want = ref(x, (h, c))
assert all(torch.allclose(a, b, atol=1e-9) for a, b in zip(got, want)), "saturated gates"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_cell_gradients", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Backpropagating through your cell gives nn.LSTMCell's gradients, for the inputs and for the weights.
def cell_gradients(step, B, D, H, seed):
    torch.manual_seed(seed)
    ref = nn.LSTMCell(D, H).double()
    x, h, c = (torch.randn(B, n, dtype=torch.float64, requires_grad=True) for n in (D, H, H))
    h1, c1 = step(x, h, c, ref)
    (h1.sin().sum() + c1.cos().sum()).backward()
    return [t.grad for t in (x, h, c, ref.weight_ih, ref.weight_hh, ref.bias_ih)]


mine = cell_gradients(lambda x, h, c, r: lstm_cell(x, h, c, r.weight_ih, r.weight_hh, r.bias_ih, r.bias_hh), 3, 4, 2, 0)
torchs = cell_gradients(lambda x, h, c, r: r(x, (h, c)), 3, 4, 2, 0)
for name, a, b in zip(("dx", "dh", "dc", "dW_ih", "dW_hh", "db_ih"), mine, torchs):
    check_close(name, a, b, atol=1e-8)
### BEGIN HIDDEN TESTS
mine = cell_gradients(lambda x, h, c, r: lstm_cell(x, h, c, r.weight_ih, r.weight_hh, r.bias_ih, r.bias_hh), 1, 6, 5, 3)
torchs = cell_gradients(lambda x, h, c, r: r(x, (h, c)), 1, 6, 5, 3)
assert all(torch.allclose(a, b, atol=1e-8) for a, b in zip(mine, torchs)), "gradients, batch of one"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · The cell over a sequence
#
# An LSTM layer applies the same cell at every time step, feeding each step's $(h_t, c_t)$ into the next:
# for $x$ (T, B, D), time first as in `nn.LSTM`, and a start state $(h_0, c_0)$ (zeros when none is given),
#
# $$(h_t, c_t) = \text{cell}(x_t, h_{t-1}, c_{t-1}), \quad t = 1..T; \qquad
#   \text{outputs} = [h_1, \dots, h_T] \quad (T, B, H).$$
#
# **Task 2.** Write `lstm_sequence(x, state, weight_ih, weight_hh, bias_ih, bias_hh)` returning
# `(outputs, (h_T, c_T))`, using your `lstm_cell`. `state` is `None` or a pair `(h_0, c_0)` each (B, H).
# New tensors must have the input's dtype (use `x.new_zeros(...)`).

# %% nbgrader={"grade": false, "grade_id": "lstm_sequence", "locked": false, "schema_version": 3, "solution": true, "task": false}
def lstm_sequence(x, state, weight_ih, weight_hh, bias_ih=None, bias_hh=None):
    """Run lstm_cell over x (T, B, D) from state (h_0, c_0) or zeros -> outputs (T, B, H), (h_T, c_T)."""
    ### BEGIN SOLUTION
    if state is None:
        zeros = x.new_zeros(x.shape[1], weight_hh.shape[1])
        state = (zeros, zeros)
    h, c = state
    outputs = []
    for x_t in x:
        h, c = lstm_cell(x_t, h, c, weight_ih, weight_hh, bias_ih, bias_hh)
        outputs.append(h)
    return torch.stack(outputs), (h, c)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_sequence_values", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Your lstm_sequence against nn.LSTM, from zeros and from a given state; it says where in time it goes wrong.
check_lstm_sequence(lstm_sequence)
### BEGIN HIDDEN TESTS
for seed, (T, B, D, H) in enumerate([(1, 1, 1, 1), (1, 3, 2, 4), (20, 2, 5, 3), (7, 1, 4, 6)]):
    check_lstm_sequence(lstm_sequence, input_size=D, hidden_size=H, batch=B, steps=T, seed=200 + seed)
torch.manual_seed(11)
ref = nn.LSTM(3, 4)
x = torch.randn(9, 2, 3)
with torch.no_grad():
    out, (h_T, c_T) = lstm_sequence(x, None, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0)
    want, (want_h, want_c) = ref(x)
assert torch.allclose(out, want, atol=1e-5) and torch.allclose(c_T, want_c[0], atol=1e-5), "float32 sequence"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_sequence_chunks", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Carrying the state: running 4 steps and then 6 more from the state you returned is the same as 10 steps.
torch.manual_seed(1)
ref = nn.LSTM(3, 5).double()
weights = (ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_ih_l0, ref.bias_hh_l0)
x = torch.randn(10, 2, 3, dtype=torch.float64)
with torch.no_grad():
    whole, (h_all, c_all) = lstm_sequence(x, None, *weights)
    first, state = lstm_sequence(x[:4], None, *weights)
    second, (h_two, c_two) = lstm_sequence(x[4:], state, *weights)
check_close("outputs of the two chunks", torch.cat([first, second]), whole, dims="(time, batch, hidden_size)")
check_close("c_T after the two chunks", c_two, c_all, dims="(batch, hidden_size)")
### BEGIN HIDDEN TESTS
with torch.no_grad():
    zeros = torch.zeros(2, 5, dtype=torch.float64)
    from_zeros, _ = lstm_sequence(x, (zeros, zeros), *weights)
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
# [i, f, g, o]. The test puts it in `bias_ih` of an `nn.LSTM` whose weights are zero except the candidate's
# rows of `weight_ih`, with `bias_hh = 0`. Think first: after T steps with constant gates, what is $c_T$
# in terms of $c_0$, $f$, $i$ and the $g_t$?

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
    """c_0 and c_T of an nn.LSTM with bias_ih = bias and zero weights but the candidate's, T steps on random inputs."""
    torch.manual_seed(seed)
    lstm = nn.LSTM(3, H).double()
    with torch.no_grad():
        for p in lstm.parameters():
            p.zero_()
        lstm.weight_ih_l0[2 * H:3 * H] = 2 * torch.randn(H, 3, dtype=torch.float64)  # g = tanh(W_g x_t) is not 0
        lstm.bias_ih_l0.copy_(torch.as_tensor(bias, dtype=torch.float64))
        c0 = scale * torch.randn(1, 2, H, dtype=torch.float64)
        _, (_, c_T) = lstm(torch.randn(T, 2, 3, dtype=torch.float64), (torch.zeros_like(c0), c0))
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
# ($h_t = \tanh(x_t W_{ih}^\top + h_{t-1} W_{hh}^\top + b)$) usually fails? What would happen to the
# memory, and to that gradient, if the forget gate were stuck at $f = 0.9$?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_gradient_path", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). With zero gate weights the gates are constants, so $c_t = f \odot c_{t-1} + i \odot g_t$ and
# $\partial c_T / \partial c_0 = \mathrm{diag}(f)^T$: with $f \approx 1$ (and $i \approx 0$) it is about
# the identity, so both the memory and the gradient pass 100 steps unchanged. The cell state is an
# additive path with a gate in $[0, 1]$ the network learns to hold near 1; in a vanilla RNN the gradient
# is a product of $T$ Jacobians $\mathrm{diag}(1 - h_t^2) W_{hh}$, which shrinks (or grows) geometrically
# with the lag. With $f = 0.9$: $0.9^{100} \approx 2.7 \times 10^{-5}$, the memory fades within about
# $1 / (1 - f) = 10$ steps and the gradient vanishes the same way. Two points: the product of forget
# gates (1), the contrast with the repeated Jacobian and the $f = 0.9$ decay (1).
