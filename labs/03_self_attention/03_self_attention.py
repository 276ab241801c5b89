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
# # Lab 03 · Causal multi-head self-attention
#
# You will write scaled dot-product attention with a mask, the causal mask of a language model, and
# multi-head self-attention on top of them: the layer at the heart of every GPT, causal and with a padding
# mask for batches of sequences of different lengths. Your values are graded against PyTorch's
# `F.scaled_dot_product_attention` and `nn.MultiheadAttention` on shapes and masks you do not see, your
# causal layer on what it does: changing a later token must not move an earlier output, and changing a pad
# must not move any.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `attention`: scaled dot-product attention with a mask | 3 + 1 |
# | 2 | `causal_mask` | 1 |
# | 3 | `self_attention`: heads, projections, a mask | 3 |
# | 4 | `causal_self_attention`: causal, with a padding mask | 2 + 2 |
# | 5 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# The test cell under your code checks it and says what is wrong: which shape, which of the usual mistakes
# your numbers match, how far off. The grader runs those tests and hidden ones. Do not edit or delete the
# test cells (the grader puts the originals back), do not rename the functions, and do not call
# `F.scaled_dot_product_attention`, `nn.MultiheadAttention` or `karpa_lab.models.attention` in your code.
# Before you hand it in: *Kernel → Restart Kernel and Run All Cells*. It runs in a few seconds.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab.grading import (
    check_attention,
    check_causal,
    check_close,
    check_no_calls,
    check_padding,
    check_self_attention,
)

torch.manual_seed(0)
FORBIDDEN = ("scaled_dot_product_attention", "MultiheadAttention", "multi_head_attention_forward", "karpa_lab")
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


# %% [markdown]
# ## Part 1 · Scaled dot-product attention
#
# Queries $Q$ (…, L, $d_k$) ask, keys $K$ (…, S, $d_k$) answer, values $V$ (…, S, $d_v$) are what is
# read; "…" is any number of batch axes (batch, heads). With a boolean mask $M$ (…, L, S), **True where
# query $i$ may attend to key $j$** (the convention of `F.scaled_dot_product_attention`):
#
# $$\text{scores} = \frac{Q K^\top}{\sqrt{d_k}} \quad (\dots, L, S), \qquad
#   \text{scores}_{ij} = -\infty \text{ where } M_{ij} \text{ is False},$$
#
# $$A = \operatorname{softmax}(\text{scores}) \text{ over the keys (the last axis)} \quad (\dots, L, S), \qquad
#   \text{out} = A V \quad (\dots, L, d_v).$$
#
# Each row of the attention weights (注意力权重) $A$ sums to 1: query $i$ reads a weighted average of
# the values.
#
# **Task 1.** Write `attention(q, k, v, mask=None)` returning `(out, weights)`. The mask may be `None`,
# or broadcast against the scores (for example (B, 1, 1, S) to hide padding keys of each sequence).
# Every row of the tests' masks keeps at least one key.

# %% nbgrader={"grade": false, "grade_id": "attention", "locked": false, "schema_version": 3, "solution": true, "task": false}
def attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d_k), masked) v for q (..., L, d_k), k (..., S, d_k), v (..., S, d_v) -> (out, weights)."""
    ### BEGIN SOLUTION
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
    ### END SOLUTION


# %% [markdown]
# Try it: one query, three keys; the mask hides the last key.

# %%
q = torch.tensor([[1.0, 0.0]])
k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 0.0]])
v = torch.tensor([[1.0], [2.0], [3.0]])
out, weights = attention(q, k, v, mask=torch.tensor([[True, True, False]]))
print("weights", weights, "out", out)

# %% nbgrader={"grade": true, "grade_id": "test_attention_values", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Your attention against the reference, without and with a mask; it names the usual mistake you made.
check_no_calls(attention, FORBIDDEN, "write softmax(q k^T / sqrt(d_k)) v yourself")
check_attention(attention)
### BEGIN HIDDEN TESTS
for seed, (batch, L, S, d_k, d_v) in enumerate([((), 1, 1, 1, 1), ((1,), 1, 7, 4, 2), ((2, 4), 5, 3, 8, 8),
                                                 ((3,), 6, 6, 2, 5)]):
    check_attention(attention, batch=batch, L=L, S=S, d_k=d_k, d_v=d_v, seed=300 + seed)
# against PyTorch itself, float32, a padding mask (B, 1, 1, S) broadcast over heads and queries
torch.manual_seed(3)
q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 3)
keep = (torch.arange(7)[None, :] < torch.tensor([[7], [4]]))[:, None, None, :]
got, _ = attention(q, k, v, keep)
assert torch.allclose(got, F.scaled_dot_product_attention(q, k, v, attn_mask=keep), atol=1e-5), "padding mask"
got, _ = attention(q, k, v)
assert torch.allclose(got, F.scaled_dot_product_attention(q, k, v), atol=1e-5), "float32, no mask"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_attention_weights", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The weights: every row sums to 1 over the keys, and a blocked key gets exactly 0.
torch.manual_seed(1)
mask = torch.rand(3, 4, 6) < 0.5
mask[..., 0] = True
_, weights = attention(torch.randn(3, 4, 2), torch.randn(3, 6, 2), torch.randn(3, 6, 5), mask)
check_close("sum of each row of weights", weights.sum(-1), torch.ones(3, 4), dims="(batch, L)")
assert torch.all(weights[~mask] == 0), "a blocked key must get weight exactly 0 (a score of -inf before the softmax)"
print("✓ blocked keys get weight 0")
### BEGIN HIDDEN TESTS
_, weights = attention(torch.randn(2, 1, 9, 4), torch.randn(2, 1, 9, 4), torch.randn(2, 1, 9, 4),
                       torch.ones(9, 9, dtype=torch.bool).tril())
assert torch.allclose(weights.sum(-1), torch.ones(2, 1, 9)) and torch.all(weights.triu(1) == 0), "causal weights"
assert torch.all(weights >= 0), "weights are probabilities"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · The causal mask
#
# A language model predicts token $t + 1$ from tokens $0..t$, so while training on a whole sequence at
# once, position $i$ must not see positions $j > i$. The causal mask (因果掩码) of T tokens is the (T, T)
# boolean matrix that is True where $j \le i$: the lower triangle, diagonal included.
#
# **Task 2.** Write `causal_mask(T)`.

# %% nbgrader={"grade": false, "grade_id": "causal_mask", "locked": false, "schema_version": 3, "solution": true, "task": false}
def causal_mask(T):
    """Boolean (T, T): True where query i may attend to key j, i.e. j <= i."""
    ### BEGIN SOLUTION
    return torch.ones(T, T, dtype=torch.bool).tril()
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_causal_mask", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
m = causal_mask(3)
print(m)
assert isinstance(m, torch.Tensor) and m.dtype == torch.bool, f"causal_mask must return a bool tensor, got {m!r}"
expected = torch.tensor([[True, False, False], [True, True, False], [True, True, True]])
assert m.shape == (3, 3) and torch.equal(m, expected), f"causal_mask(3) should be\n{expected}\ngot\n{m}"
print("✓ causal_mask(3)")
### BEGIN HIDDEN TESTS
for T in (1, 2, 7):
    assert torch.equal(causal_mask(T), torch.ones(T, T).tril().bool()), f"causal_mask({T})"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · Multi-head self-attention
#
# For a sequence x (B, T, D) with $h$ heads of size $d_h = D / h$, using the weights of
# `nn.MultiheadAttention`: `in_proj_weight` (3D, D) stacks $W_q, W_k, W_v$ and `in_proj_bias` (3D,)
# their biases; `out_proj_weight` (D, D) and `out_proj_bias` (D,) mix the heads back:
#
# $$[Q, K, V] = x W_{in}^\top + b_{in} \quad (B, T, 3D), \text{ split into three (B, T, D)},$$
#
# each split into heads: (B, T, D) → (B, T, h, $d_h$) → (B, h, T, $d_h$). Every head attends on its
# own with the mask, giving (B, h, T, $d_h$); the heads are merged back to (B, T, D) and projected:
# $\text{out} = O W_{out}^\top + b_{out}$ (B, T, D). That is multi-head attention (多头注意力).
#
# **Task 3.** Write `self_attention(x, n_heads, in_proj_weight, in_proj_bias, out_proj_weight,
# out_proj_bias, mask=None)` returning (B, T, D), with your `attention`. The boolean `mask` (True where
# query $i$ may attend to key $j$) is `None` or broadcasts against the scores (B, h, T, T): a (T, T)
# pattern, or (B, 1, 1, T) for one row of keys per sequence.

# %% nbgrader={"grade": false, "grade_id": "self_attention", "locked": false, "schema_version": 3, "solution": true, "task": false}
def self_attention(x, n_heads, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, mask=None):
    """Multi-head self-attention of x (B, T, D), each head attending where mask is True -> (B, T, D)."""
    ### BEGIN SOLUTION
    B, T, D = x.shape
    d_h = D // n_heads
    q, k, v = (x @ in_proj_weight.T + in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.view(B, T, n_heads, d_h).transpose(1, 2) for t in (q, k, v))
    out, _ = attention(q, k, v, mask)
    out = out.transpose(1, 2).reshape(B, T, D)
    return out @ out_proj_weight.T + out_proj_bias
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_self_attention_values", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Your layer against nn.MultiheadAttention, without a mask and with one; it names the usual mistake you made.
check_no_calls(self_attention, FORBIDDEN, "build it from your attention")
check_self_attention(self_attention)
### BEGIN HIDDEN TESTS
for seed, (B, T, D, h) in enumerate([(1, 1, 4, 1), (3, 7, 12, 4), (2, 9, 8, 8), (1, 4, 6, 3)]):
    check_self_attention(self_attention, batch=B, T=T, d_model=D, n_heads=h, seed=400 + seed)
torch.manual_seed(4)
mha = nn.MultiheadAttention(16, 4, batch_first=True)
x = torch.randn(2, 10, 16)
keep = torch.rand(2, 1, 1, 10) < 0.7
keep[..., 0] = True
weights = (mha.in_proj_weight, mha.in_proj_bias, mha.out_proj.weight, mha.out_proj.bias)
with torch.no_grad():
    want = mha(x, x, x, need_weights=False)[0]
    got = self_attention(x, 4, *weights)
    assert torch.allclose(got, want, atol=1e-5), "float32 against nn.MultiheadAttention"
    want = mha(x, x, x, key_padding_mask=~keep[:, 0, 0], need_weights=False)[0]
    got = self_attention(x, 4, *weights, keep)
assert torch.allclose(got, want, atol=1e-5), "a (B, 1, 1, T) mask of keys against key_padding_mask"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 · Causal, and padded
#
# A language model's layer is causal: position $t$ sees tokens $0..t$ only, so it may attend with
# `causal_mask(T)`. A batch holds sequences of different lengths, made equal by **padding** (填充): here
# the pads come first (left padding, as when a batch of prompts is continued), and `padding_mask` (B, T)
# is True at real tokens, False at pads. No query may attend to a pad; with left padding the pads come
# before the real tokens, so the causal mask alone does not hide them. Then every real token gets the output
# it gets in its sequence without the pads. (A pad's own output is never used: every key it could see is
# hidden, and it comes out as NaN.)
#
# **Task 4.** Write `causal_self_attention(x, n_heads, in_proj_weight, in_proj_bias, out_proj_weight,
# out_proj_bias, padding_mask=None)` returning (B, T, D), with your `self_attention` and `causal_mask`. Both
# masks hide keys: a key is visible where both are True.

# %% nbgrader={"grade": false, "grade_id": "causal_self_attention", "locked": false, "schema_version": 3, "solution": true, "task": false}
def causal_self_attention(x, n_heads, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, padding_mask=None):
    """Self-attention of x (B, T, D) where position t sees the real tokens among 0..t -> (B, T, D)."""
    ### BEGIN SOLUTION
    mask = causal_mask(x.shape[1])                      # (T, T)
    if padding_mask is not None:
        mask = mask & padding_mask[:, None, None, :]    # (B, 1, T, T): no query sees a pad
    return self_attention(x, n_heads, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, mask)
    ### END SOLUTION


# %% [markdown]
# Try it: two sequences, the second with two pads; its real tokens get what they get alone.

# %%
mha = nn.MultiheadAttention(4, 2, batch_first=True)
weights = (mha.in_proj_weight.detach(), mha.in_proj_bias.detach(), mha.out_proj.weight.detach(),
           mha.out_proj.bias.detach())
x = torch.randn(2, 5, 4)
padding = torch.tensor([[True] * 5, [False, False, True, True, True]])
out = causal_self_attention(x, 2, *weights, padding_mask=padding)
print("padded batch, sequence 1:", out[1, 2:].detach())
print("sequence 1 alone:        ", causal_self_attention(x[1:, 2:], 2, *weights)[0].detach())

# %% nbgrader={"grade": true, "grade_id": "test_causality", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Changing the future must not change the past, padded or not; changing the past must change the present.
check_no_calls(causal_self_attention, FORBIDDEN, "build it from your self_attention and causal_mask")
check_causal(causal_self_attention)
### BEGIN HIDDEN TESTS
check_causal(causal_self_attention, batch=1, T=11, d_model=6, n_heads=3, seed=9)
check_causal(causal_self_attention, batch=3, T=2, d_model=2, n_heads=1, seed=10)
check_causal(causal_self_attention, batch=4, T=8, d_model=8, n_heads=2, seed=11)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_padding", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Changing a pad must not move a real token's output; each real token gets its output without the pads.
check_padding(causal_self_attention)
### BEGIN HIDDEN TESTS
check_padding(causal_self_attention, batch=5, T=9, d_model=6, n_heads=3, seed=12)
check_padding(causal_self_attention, batch=2, T=2, d_model=2, n_heads=1, seed=13)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 5 · Why $\sqrt{d_k}$ (written answer, 2 points)
#
# If the entries of a query and a key are independent with mean 0 and variance 1, what are the mean and
# the variance of their dot product $q \cdot k$ for head size $d_k$? What happens to the softmax, and to its
# gradient, when $d_k = 512$ and the scores are not divided by $\sqrt{d_k}$? Two to five sentences.

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_scaling", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). $q \cdot k = \sum_{i=1}^{d_k}
# q_i k_i$ is a sum of $d_k$ independent terms of mean 0 and variance 1, so it has mean 0 and variance
# $d_k$ (standard deviation $\sqrt{d_k} \approx 22.6$ for $d_k = 512$). Scores that far apart make the
# softmax nearly one-hot: one weight close to 1, the rest close to 0, and the softmax's Jacobian
# $\mathrm{diag}(a) - a a^\top$ is then close to zero, so almost no gradient reaches the queries and keys
# and training stalls. Dividing by $\sqrt{d_k}$ brings the variance back to 1 for any head size. Two
# points: variance $d_k$ (1), saturated softmax with a vanishing gradient (1).
