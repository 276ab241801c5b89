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
# # Lab 03 · Causal multi-head self-attention with linear biases (ALiBi)
#
# You will write scaled dot-product attention whose scores take an additive bias, the linear biases of ALiBi
# ("Attention with Linear Biases", Press, Smith & Lewis 2022) that tell each head how far back a key is, and
# multi-head self-attention on top of them: the layer of a GPT that needs no position embeddings, causal and
# with a padding mask for batches of sequences of different lengths. Your values are graded against PyTorch's
# `F.scaled_dot_product_attention` and `nn.MultiheadAttention` (with the biases as their float mask) on shapes
# and masks you do not see, your causal layer also on what it does: changing a later token must not move an
# earlier output, and changing a pad must not move any.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `attention`: scaled dot-product attention with a bias and a mask | 3 + 1 |
# | 2 | `alibi_bias`: the causal linear biases of every head | 2 |
# | 3 | `alibi_self_attention`: heads, projections, biases | 3 |
# | 4 | the same layer, causal and with a padding mask | 2 + 2 |
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
    check_alibi_self_attention,
    check_attention,
    check_causal,
    check_close,
    check_no_calls,
    check_padding,
)

torch.manual_seed(0)
FORBIDDEN = ("scaled_dot_product_attention", "MultiheadAttention", "multi_head_attention_forward", "karpa_lab")
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


# %% [markdown]
# ## Part 1 · Scaled dot-product attention with a bias
#
# Queries $Q$ (…, L, $d_k$) ask, keys $K$ (…, S, $d_k$) answer, values $V$ (…, S, $d_v$) are what is
# read; "…" is any number of batch axes (batch, heads). A float bias $b$ (…, L, S) is added to the scaled
# scores, and a boolean mask $M$ (…, L, S), **True where query $i$ may attend to key $j$** (the convention of
# `F.scaled_dot_product_attention`), blocks the rest:
#
# $$\text{scores} = \frac{Q K^\top}{\sqrt{d_k}} + b \quad (\dots, L, S), \qquad
#   \text{scores}_{ij} = -\infty \text{ where } M_{ij} \text{ is False},$$
#
# $$A = \operatorname{softmax}(\text{scores}) \text{ over the keys (the last axis)} \quad (\dots, L, S), \qquad
#   \text{out} = A V \quad (\dots, L, d_v).$$
#
# Each row of the attention weights (注意力权重) $A$ sums to 1: query $i$ reads a weighted average of the
# values. A bias of $\log 3$ on a key makes it three times as likely as it was; a bias of $-\infty$ blocks it
# like the mask does.
#
# **Task 1.** Write `attention(q, k, v, bias=None, mask=None)` returning `(out, weights)`. The bias and the
# mask may each be `None`, or broadcast against the scores (for example (h, L, S) for one bias per head, or
# (B, 1, 1, S) to hide padding keys of each sequence). Every row of the tests' masks keeps at least one key.

# %% nbgrader={"grade": false, "grade_id": "attention", "locked": false, "schema_version": 3, "solution": true, "task": false}
def attention(q, k, v, bias=None, mask=None):
    """softmax(q k^T / sqrt(d_k) + bias, masked) v for q (..., L, d_k), k (..., S, d_k), v (..., S, d_v) -> (out, weights)."""
    ### BEGIN SOLUTION
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return weights @ v, weights
    ### END SOLUTION


# %% [markdown]
# Try it: one query, three keys; the bias favours the second key, the mask hides the last.

# %%
q = torch.tensor([[1.0, 0.0]])
k = torch.tensor([[1.0, 0.0], [0.0, 1.0], [5.0, 0.0]])
v = torch.tensor([[1.0], [2.0], [3.0]])
out, weights = attention(q, k, v, bias=torch.tensor([[0.0, 1.0, 0.0]]), mask=torch.tensor([[True, True, False]]))
print("weights", weights, "out", out)

# %% nbgrader={"grade": true, "grade_id": "test_attention_values", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Your attention against the reference, with and without a bias and a mask; it names the usual mistake you made.
check_no_calls(attention, FORBIDDEN, "write softmax(q k^T / sqrt(d_k) + bias) v yourself")
check_attention(attention)
### BEGIN HIDDEN TESTS
for seed, (batch, L, S, d_k, d_v) in enumerate([((), 1, 1, 1, 1), ((1,), 1, 7, 4, 2), ((2, 4), 5, 3, 8, 8),
                                                 ((3,), 6, 6, 2, 5)]):
    check_attention(attention, batch=batch, L=L, S=S, d_k=d_k, d_v=d_v, seed=300 + seed)
# against PyTorch itself, float32: a bias per head (h, L, S) and a padding mask (B, 1, 1, S) broadcast together
torch.manual_seed(3)
q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 4, 7, 8), torch.randn(2, 4, 7, 3)
per_head = torch.randn(4, 5, 7)
keep = (torch.arange(7)[None, :] < torch.tensor([[7], [4]]))[:, None, None, :]
got, _ = attention(q, k, v, per_head, keep)
want = F.scaled_dot_product_attention(q, k, v, attn_mask=per_head.masked_fill(~keep, float("-inf")))
assert torch.allclose(got, want, atol=1e-5), "a bias per head and a padding mask"
got, _ = attention(q, k, v, mask=keep)
assert torch.allclose(got, F.scaled_dot_product_attention(q, k, v, attn_mask=keep), atol=1e-5), "mask alone"
got, _ = attention(q, k, v)
assert torch.allclose(got, F.scaled_dot_product_attention(q, k, v), atol=1e-5), "float32, no bias, no mask"
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_attention_weights", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# The weights: every row sums to 1 over the keys, a blocked key gets exactly 0, and a bias of log 3 on a key
# makes it three times as likely.
torch.manual_seed(1)
mask = torch.rand(3, 4, 6) < 0.5
mask[..., 0] = True
_, weights = attention(torch.randn(3, 4, 2), torch.randn(3, 6, 2), torch.randn(3, 6, 5), torch.randn(3, 4, 6), mask)
check_close("sum of each row of weights", weights.sum(-1), torch.ones(3, 4), dims="(batch, L)")
assert torch.all(weights[~mask] == 0), "a blocked key must get weight exactly 0 (a score of -inf before the softmax)"
_, tilted = attention(torch.zeros(1, 2), torch.zeros(2, 2), torch.zeros(2, 1), torch.tensor([[0.0, math.log(3)]]))
check_close("weights with a bias of log 3 on the second key", tilted, torch.tensor([[0.25, 0.75]]), dims="(L, S)")
print("✓ blocked keys get weight 0, the bias tilts the weights")
### BEGIN HIDDEN TESTS
_, weights = attention(torch.randn(2, 1, 9, 4), torch.randn(2, 1, 9, 4), torch.randn(2, 1, 9, 4),
                       torch.randn(9, 9), torch.ones(9, 9, dtype=torch.bool).tril())
assert torch.allclose(weights.sum(-1), torch.ones(2, 1, 9)) and torch.all(weights.triu(1) == 0), "causal weights"
assert torch.all(weights >= 0), "weights are probabilities"
q, k, v, b = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 2), torch.randn(2, 3, 5)
shifted = attention(q, k, v, b + 7.0)[1]
assert torch.allclose(shifted, attention(q, k, v, b)[1], atol=1e-6), "a constant added to a row changes nothing"
blocked = attention(q, k, v, torch.zeros(3, 5).index_fill(1, torch.tensor([2]), float("-inf")))[1]
assert torch.all(blocked[..., 2] == 0), "a bias of -inf blocks a key"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · The linear biases of ALiBi
#
# A language model predicts token $t + 1$ from tokens $0..t$, so position $i$ must not see positions
# $j > i$: the causal mask (因果掩码). ALiBi also tells each head how far back a key is, with no position
# embedding at all: head $h$ of $H$ adds to the score of query $i$ on key $j$ a penalty that grows linearly
# with the distance, with its own slope $m_h$,
#
# $$b_h[i, j] = -m_h\,(i - j) \text{ for } j \le i, \qquad b_h[i, j] = -\infty \text{ for } j > i, \qquad
#   m_h = 2^{-8h/H}, \quad h = 1, \dots, H .$$
#
# The slopes form a geometric sequence: for 8 heads $\tfrac12, \tfrac14, \dots, \tfrac1{256}$. A head with a
# steep slope attends to the last few tokens, one with a gentle slope reads far back. (The paper gives this
# rule for $H$ a power of 2; here it is used for every $H$.) The $-\infty$ above the diagonal is the causal
# mask, so one float tensor carries both.
#
# **Task 2.** Write `alibi_bias(n_heads, T, dtype=torch.float32)` returning the biases of every head, a
# tensor (n_heads, T, T) of `dtype`; row `h - 1` is head $h$'s $b_h$.

# %% nbgrader={"grade": false, "grade_id": "alibi_bias", "locked": false, "schema_version": 3, "solution": true, "task": false}
def alibi_bias(n_heads, T, dtype=torch.float32):
    """ALiBi's causal biases (n_heads, T, T): -m_h (i - j) for j <= i, -inf for j > i, m_h = 2^(-8h/H)."""
    ### BEGIN SOLUTION
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_heads + 1, dtype=torch.float64) / n_heads)     # (H,)
    pos = torch.arange(T, dtype=torch.float64)
    offset = pos[None, :] - pos[:, None]                # (T, T): j - i, at most 0 for the keys query i may see
    bias = slopes[:, None, None] * offset               # (H, T, T): -m_h (i - j)
    return bias.masked_fill(offset > 0, float("-inf")).to(dtype)
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_alibi_bias", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
b = alibi_bias(2, 3)
print(b)
assert isinstance(b, torch.Tensor) and b.dtype == torch.float32, f"alibi_bias must return a float32 tensor, got {b!r}"
inf = float("-inf")
expected = torch.tensor([[[0.0, inf, inf], [-1 / 16, 0.0, inf], [-2 / 16, -1 / 16, 0.0]],
                         [[0.0, inf, inf], [-1 / 256, 0.0, inf], [-2 / 256, -1 / 256, 0.0]]])
assert b.shape == (2, 3, 3), f"alibi_bias(2, 3) should have shape (2, 3, 3) = (n_heads, T, T), got {tuple(b.shape)}"
assert torch.equal(b, expected), f"alibi_bias(2, 3) should be (slopes 1/16 and 1/256)\n{expected}\ngot\n{b}"
slopes = -alibi_bias(8, 2, dtype=torch.float64)[:, 1, 0]
check_close("the slopes of 8 heads, -alibi_bias(8, 2)[:, 1, 0]", slopes, 2.0 ** -torch.arange(1.0, 9.0, dtype=torch.float64),
            atol=0.0, dims="(n_heads,)")
print("✓ alibi_bias(2, 3) and the slopes of 8 heads")
### BEGIN HIDDEN TESTS
def paper_bias(H, T, dtype=torch.float32):
    m = torch.tensor([2.0 ** (-8 * h / H) for h in range(1, H + 1)], dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    return torch.where(j <= i, -m[:, None, None] * (i - j), torch.tensor(float("-inf"))).to(dtype)


for H, T in [(1, 1), (3, 7), (12, 5), (16, 9)]:
    got, want = alibi_bias(H, T, dtype=torch.float64), paper_bias(H, T, dtype=torch.float64)
    seen = torch.isfinite(want)
    assert got.dtype == torch.float64 and got.shape == (H, T, T), (H, T)
    assert torch.equal(torch.isinf(got), ~seen) and torch.allclose(got[seen], want[seen], atol=1e-12, rtol=0), (H, T)
assert torch.equal(alibi_bias(3, 4), paper_bias(3, 4)), "float32 by default"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · Multi-head self-attention with ALiBi
#
# For a sequence x (B, T, D) with $h$ heads of size $d_h = D / h$, using the weights of
# `nn.MultiheadAttention`: `in_proj_weight` (3D, D) stacks $W_q, W_k, W_v$ and `in_proj_bias` (3D,)
# their biases; `out_proj_weight` (D, D) and `out_proj_bias` (D,) mix the heads back:
#
# $$[Q, K, V] = x W_{in}^\top + b_{in} \quad (B, T, 3D), \text{ split into three (B, T, D)},$$
#
# each split into heads: (B, T, D) → (B, T, h, $d_h$) → (B, h, T, $d_h$). Every head attends on its own,
# head $h$ with its row of `alibi_bias(h, T)` added to its scores (the (h, T, T) biases broadcast over the
# batch), giving (B, h, T, $d_h$); the heads are merged back to (B, T, D) and projected:
# $\text{out} = O W_{out}^\top + b_{out}$ (B, T, D). That is multi-head attention (多头注意力), here
# causal, and aware of distance without any position embedding.
#
# **Task 3.** Write `alibi_self_attention(x, n_heads, in_proj_weight, in_proj_bias, out_proj_weight,
# out_proj_bias, padding_mask=None)` returning (B, T, D), with your `attention` and `alibi_bias` (of
# `x.dtype`). Leave `padding_mask` for Part 4 (the tests of this part pass `None`).

# %% nbgrader={"grade": false, "grade_id": "alibi_self_attention", "locked": false, "schema_version": 3, "solution": true, "task": false}
def alibi_self_attention(x, n_heads, in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, padding_mask=None):
    """Causal multi-head self-attention of x (B, T, D) with ALiBi's biases, hiding the pads -> (B, T, D)."""
    ### BEGIN SOLUTION
    B, T, D = x.shape
    d_h = D // n_heads
    q, k, v = (x @ in_proj_weight.T + in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.view(B, T, n_heads, d_h).transpose(1, 2) for t in (q, k, v))
    mask = None if padding_mask is None else padding_mask[:, None, None, :]    # (B, 1, 1, T): no query sees a pad
    out, _ = attention(q, k, v, alibi_bias(n_heads, T, dtype=x.dtype), mask)
    out = out.transpose(1, 2).reshape(B, T, D)
    return out @ out_proj_weight.T + out_proj_bias
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_self_attention_values", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Your layer against nn.MultiheadAttention with your biases as its float attn_mask; it names the usual mistake.
check_no_calls(alibi_self_attention, FORBIDDEN, "build it from your attention and alibi_bias")
check_alibi_self_attention(alibi_self_attention, alibi_bias)
### BEGIN HIDDEN TESTS
def paper_bias(H, T, dtype=torch.float32):
    m = torch.tensor([2.0 ** (-8 * h / H) for h in range(1, H + 1)], dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    return torch.where(j <= i, -m[:, None, None] * (i - j), torch.tensor(float("-inf"))).to(dtype)


for seed, (B, T, D, h) in enumerate([(1, 1, 4, 1), (3, 7, 12, 4), (2, 9, 8, 8), (1, 4, 6, 3)]):
    check_alibi_self_attention(alibi_self_attention, paper_bias, batch=B, T=T, d_model=D, n_heads=h, seed=400 + seed)
torch.manual_seed(4)
mha = nn.MultiheadAttention(16, 4, batch_first=True)
x = torch.randn(2, 10, 16)
weights = (mha.in_proj_weight.detach(), mha.in_proj_bias.detach(), mha.out_proj.weight.detach(), mha.out_proj.bias.detach())
with torch.no_grad():
    want = mha(x, x, x, attn_mask=paper_bias(4, 10).repeat(2, 1, 1), need_weights=False)[0]
assert torch.allclose(alibi_self_attention(x, 4, *weights), want, atol=1e-5), "float32"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 4 · Causal, and padded
#
# A batch holds sequences of different lengths, made equal by **padding** (填充): here the pads come first
# (left padding, as when a batch of prompts is continued), and `padding_mask` (B, T) is True at real tokens,
# False at pads. No query may attend to a pad; with left padding the pads come before the real tokens, so the
# causal biases alone do not hide them. Then every real token gets the output it gets in its sequence without
# the pads: ALiBi's biases depend only on the distance $i - j$, not on where the sequence starts. (A pad's own
# output is never used: every key it could see is hidden, and it comes out as NaN.)
#
# **Task 4.** Make `alibi_self_attention` take `padding_mask` into account, if it does not yet: a key is
# visible where the mask is True (the causal part is already in the biases).

# %% [markdown]
# Try it: two sequences, the second with two pads; its real tokens get what they get alone.

# %%
mha = nn.MultiheadAttention(4, 2, batch_first=True)
weights = (mha.in_proj_weight.detach(), mha.in_proj_bias.detach(), mha.out_proj.weight.detach(),
           mha.out_proj.bias.detach())
x = torch.randn(2, 5, 4)
padding = torch.tensor([[True] * 5, [False, False, True, True, True]])
out = alibi_self_attention(x, 2, *weights, padding_mask=padding)
print("padded batch, sequence 1:", out[1, 2:].detach())
print("sequence 1 alone:        ", alibi_self_attention(x[1:, 2:], 2, *weights)[0].detach())

# %% nbgrader={"grade": true, "grade_id": "test_causality", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Changing the future must not change the past, padded or not; changing the past must change the present.
check_causal(alibi_self_attention)
### BEGIN HIDDEN TESTS
check_causal(alibi_self_attention, batch=1, T=11, d_model=6, n_heads=3, seed=9)
check_causal(alibi_self_attention, batch=3, T=2, d_model=2, n_heads=1, seed=10)
check_causal(alibi_self_attention, batch=4, T=8, d_model=8, n_heads=2, seed=11)
def paper_bias(H, T, dtype=torch.float32):
    m = torch.tensor([2.0 ** (-8 * h / H) for h in range(1, H + 1)], dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    return torch.where(j <= i, -m[:, None, None] * (i - j), torch.tensor(float("-inf"))).to(dtype)


check_alibi_self_attention(alibi_self_attention, paper_bias, batch=2, T=11, d_model=8, n_heads=4, seed=14)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_padding", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
# Changing a pad must not move a real token's output; each real token gets its output without the pads.
check_padding(alibi_self_attention)
### BEGIN HIDDEN TESTS
check_padding(alibi_self_attention, batch=5, T=9, d_model=6, n_heads=3, seed=12)
check_padding(alibi_self_attention, batch=2, T=2, d_model=2, n_heads=1, seed=13)
def paper_bias(H, T, dtype=torch.float32):
    m = torch.tensor([2.0 ** (-8 * h / H) for h in range(1, H + 1)], dtype=torch.float64)
    i, j = torch.meshgrid(torch.arange(T), torch.arange(T), indexing="ij")
    return torch.where(j <= i, -m[:, None, None] * (i - j), torch.tensor(float("-inf"))).to(dtype)


torch.manual_seed(15)
mha = nn.MultiheadAttention(6, 2, batch_first=True).double()
x = torch.randn(3, 7, 6, dtype=torch.float64)
pads = torch.arange(7)[None, :] >= torch.tensor([[0], [3], [6]])
weights = (mha.in_proj_weight.detach(), mha.in_proj_bias.detach(), mha.out_proj.weight.detach(), mha.out_proj.bias.detach())
with torch.no_grad():
    got = alibi_self_attention(x, 2, *weights, pads)
    want = mha(x, x, x, attn_mask=paper_bias(2, 7, torch.float64).repeat(3, 1, 1), key_padding_mask=~pads,
               need_weights=False)[0]
assert torch.allclose(got[pads], want[pads], atol=1e-9), "padded values against key_padding_mask"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 5 · How far a head reads (written answer, 2 points)
#
# In one head with slope $m$, take a query and two keys with equal scores $q \cdot k / \sqrt{d_k}$, one at
# distance 0 and one at distance $d$. How much less weight does the far key get? At what distance is that
# a factor $e$, for $m = 1/2$ and for $m = 1/256$? The ALiBi paper trains on sequences of 1024 tokens and
# runs on longer ones; why can this layer do that, where a model with learned absolute position embeddings
# cannot? Two to five sentences.

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_alibi", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). The two scores differ by the
# bias alone, $-m d$, so after the softmax the far key's weight is $e^{-m d}$ times the near one's: a factor
# $e$ at $d = 1/m$, 2 tokens for $m = 1/2$ and 256 tokens for $m = 1/256$. So the steep heads read the last
# few tokens and the gentle ones far back, a spread of ranges fixed in advance. The bias is a function of the
# distance $i - j$ only, defined for every distance, so a longer input asks nothing the model has not seen
# (each head still fades with distance in the same way), while learned absolute embeddings have no vector
# for position 1025 and sinusoidal ones give inputs never seen in training. Two points: the factor $e^{-md}$
# and the two distances (1), the relative, defined-for-every-length bias against absolute embeddings (1).
