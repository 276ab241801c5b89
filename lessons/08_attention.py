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
# # 08 · Attention from scratch
#
# **The question.** An RNN reads a sequence one step at a time and must squeeze everything it has seen
# into one state vector (lessons 02–04). Attention (注意力机制) lets every position *look up* any other
# position directly, in one step, with weights it computes from the content. How does that work, why is
# there a $\sqrt{d_k}$ in the formula, and how does a model know *where* a token is if attention ignores
# order?
#
# By the end you will have written scaled dot-product attention, masks and multi-head attention in a few
# lines of tensors, checked them against PyTorch to $10^{-12}$, measured why $\sqrt{d_k}$ is needed,
# trained a one-layer attention model that needs positions to solve its task, read its attention maps,
# and timed the from-scratch version against PyTorch's fused kernel.

# %%
import math
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab import accuracy, by_scale, fit, get_device, seed_everything, warmup_cosine
from karpa_lab.models.attention import (
    LearnedPositions,
    MultiHeadAttention,
    SinusoidalPositions,
    attention_entropy,
    causal_mask,
    merge_heads,
    padding_mask,
    scaled_dot_product_attention,
    sinusoidal_positions,
    split_heads,
)
from karpa_lab.widgets.attention import attention_figure, attention_widget, select

device = get_device()  # only the training of section 7 uses it; the rest runs on the CPU
seed_everything(0)

# %% [markdown]
# ## 1. The math
#
# A query (查询) asks, keys (键) answer, values (值) are what gets returned. For a batch of $B$ sequences
# with $L$ queries, $S$ keys and values:
#
# $$
# \underbrace{Q}_{B \times L \times d_k},\quad \underbrace{K}_{B \times S \times d_k},\quad
# \underbrace{V}_{B \times S \times d_v}, \qquad
# \underbrace{A}_{B \times L \times S} = \operatorname{softmax}_{\text{row}}\!\Big(\frac{Q K^\top}{\sqrt{d_k}} + M\Big),
# \qquad \underbrace{O}_{B \times L \times d_v} = A\,V .
# $$
#
# Row $i$ of $A$ is a probability distribution over the $S$ keys: query $i$ returns the average of the
# values, weighted by how well its query matches each key. The mask (掩码) $M$ ($L \times S$, or
# broadcastable to $B \times L \times S$) holds $0$ where a query may look and $-\infty$ where it may
# not: a **causal mask** (因果掩码) blocks the future ($M_{ij} = -\infty$ for $j > i$), a **padding mask**
# (填充掩码) blocks the padding at the end of shorter sequences.
#
# **Why $\sqrt{d_k}$.** If the entries of a query $q$ and a key $k$ are independent with mean 0 and
# variance 1, then $q \cdot k = \sum_{i=1}^{d_k} q_i k_i$ has mean 0 and variance $d_k$. The scores grow like
# $\sqrt{d_k}$; a softmax of large scores is nearly one-hot, and its gradient
# $\partial a_i / \partial s_j = a_i(\delta_{ij} - a_j)$ is then nearly zero everywhere: the layer stops
# learning. Dividing by $\sqrt{d_k}$ brings the variance of the scores back to 1 for every head size.
# (Some write-ups divide by $d_k$ or by $\sqrt{d_{\text{model}}}$; both are wrong for this argument.)
#
# **Multi-head attention** (多头注意力) runs $h$ attentions side by side on $d_h = d_{\text{model}}/h$ features
# each, so that different heads can look for different things:
#
# $$
# \underbrace{X}_{B \times T \times d_{\text{model}}} \xrightarrow{W_q, W_k, W_v}
# \underbrace{Q, K, V}_{B \times T \times d_{\text{model}}} \xrightarrow{\text{split}}
# \underbrace{Q_h, K_h, V_h}_{B \times h \times T \times d_h} \xrightarrow{\text{attention}}
# \underbrace{O_h}_{B \times h \times T \times d_h} \xrightarrow{\text{merge}}
# \underbrace{O}_{B \times T \times d_{\text{model}}} \xrightarrow{W_o} \text{output}.
# $$

# %% [markdown]
# ## 2. From scratch
#
# Four lines. `q @ k.transpose(-2, -1)` is $QK^\top$ for every batch element at once (the `@` works on the
# last two axes and broadcasts the rest); masked entries get $-\infty$, which the softmax turns into 0.

# %%
def attention(q, k, v, mask=None):
    """softmax(q k^T / sqrt(d_k) + mask) v; mask: True where a query may attend."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, L, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (B, L, S), rows sum to 1
    return weights @ v, weights  # (B, L, d_v)


q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)  # B=2, L=3, S=5, d_k=4, d_v=6
out, w = attention(q, k, v)
print("out", tuple(out.shape), "weights", tuple(w.shape))
print("row sums:", w.sum(-1))
assert out.shape == (2, 3, 6) and torch.allclose(w.sum(-1), torch.ones(2, 3))

# %% [markdown]
# ## 3. Check it against PyTorch
#
# `torch.nn.functional.scaled_dot_product_attention` (SDPA) is PyTorch's version, and its boolean mask has
# our convention (True = may attend). We compare in float64, where two correct implementations agree to
# round-off, without a mask, with a causal mask and with a padding mask. The course's module
# `karpa_lab.models.attention` holds the same function, grown by the shape checks and one case the
# four lines above get wrong.

# %%
q, k, v = (torch.randn(2, 4, 7, 8, dtype=torch.float64) for _ in range(3))  # (B, heads, T, d)
keep = padding_mask([7, 4])  # (B, 1, 1, S): sequence 1 has 3 padding positions at the end
cases = {
    "no mask": (attention(q, k, v)[0], F.scaled_dot_product_attention(q, k, v)),
    "causal": (attention(q, k, v, causal_mask(7))[0], F.scaled_dot_product_attention(q, k, v, is_causal=True)),
    "padding": (attention(q, k, v, keep)[0], F.scaled_dot_product_attention(q, k, v, attn_mask=keep)),
    "module, causal": (scaled_dot_product_attention(q, k, v, causal=True)[0],
                       F.scaled_dot_product_attention(q, k, v, is_causal=True)),
}
for name, (mine, ref) in cases.items():
    err = (mine - ref).abs().max().item()
    print(f"{name:<15} max |difference| = {err:.1e}")
    assert err < 1e-12

# %% [markdown]
# **A query that may look at nothing.** Combine a padding mask with a causal one and the first query of
# a sequence that *starts* with padding has no allowed key: its scores are all $-\infty$, and
# $\operatorname{softmax}$ of that is $0/0$ = NaN, which then spreads through every later layer and the
# loss. The convention of this course (and of SDPA since PyTorch 2.5): such a row gets **zero** weights
# and a **zero** output. `nn.MultiheadAttention` returns NaN there.

# %%
keep = torch.ones(4, 4, dtype=torch.bool)
keep[0] = False  # query 0 may attend to nothing
q, k, v = (torch.randn(1, 4, 8, dtype=torch.float64) for _ in range(3))
print("four lines:      ", attention(q, k, v, keep)[0][0, 0, :3])
print("karpa_lab module:", scaled_dot_product_attention(q, k, v, mask=keep)[0][0, 0, :3])
print("SDPA:            ", F.scaled_dot_product_attention(q, k, v, attn_mask=keep)[0, 0, :3])
assert torch.isnan(attention(q, k, v, keep)[0][0, 0]).all()
mine = scaled_dot_product_attention(q, k, v, mask=keep)[0]
assert torch.all(mine[0, 0] == 0) and torch.allclose(mine, F.scaled_dot_product_attention(q, k, v, attn_mask=keep))

# %% [markdown]
# ## 4. Why $\sqrt{d_k}$: measured
#
# Random unit-variance queries and keys, $S = 64$ keys, head sizes $d_k$ from 4 to 1024. The entropy of
# an attention row, $H = -\sum_j a_j \log a_j$, is $\log 64 = 4.16$ nats for uniform attention and 0 for a
# one-hot row. With the scaling the entropy stays put whatever $d_k$; without it the softmax saturates.

# %%
S, n_queries = 64, 256
d_ks = [4, 16, 64, 256, 1024]
entropy = {"scaled by 1/sqrt(d_k)": [], "not scaled": []}
top_weight = {"scaled by 1/sqrt(d_k)": [], "not scaled": []}
g = torch.Generator().manual_seed(0)
for d_k in d_ks:
    q, k = torch.randn(n_queries, d_k, generator=g), torch.randn(S, d_k, generator=g)
    v = torch.zeros(S, 1)
    for name, scale in (("scaled by 1/sqrt(d_k)", None), ("not scaled", 1.0)):
        _, w = scaled_dot_product_attention(q, k, v, scale=scale)
        entropy[name].append(attention_entropy(w).mean().item())
        top_weight[name].append(w.max(-1).values.mean().item())
print(f"{'d_k':>6}" + "".join(f"{n:>24}" for n in entropy) + f"{'top weight, not scaled':>26}")
for i, d_k in enumerate(d_ks):
    print(f"{d_k:>6}" + "".join(f"{entropy[n][i]:>24.3f}" for n in entropy) + f"{top_weight['not scaled'][i]:>26.3f}")

fig, ax = plt.subplots(figsize=(6, 3.2))
for name, values in entropy.items():
    ax.plot(d_ks, values, "o-", label=name)
ax.axhline(math.log(S), color="gray", ls=":", label="uniform (log 64)")
ax.set(xscale="log", xlabel="head size d_k", ylabel="entropy of a row (nats)", title="softmax saturation")
ax.legend(fontsize=8)
plt.show()

scaled, raw = entropy["scaled by 1/sqrt(d_k)"], entropy["not scaled"]
assert max(scaled) - min(scaled) < 0.15 and min(scaled) > 3.4  # flat, near log 64 - 1/2
assert all(a > b for a, b in zip(raw, raw[1:]))  # falls with every d_k
assert raw[-1] < 0.3 and top_weight["not scaled"][-1] > 0.9  # nearly one-hot at d_k = 1024

# %% [markdown]
# Read the table: scaled, the entropy stays put for every $d_k$ (asserted: spread < 0.15, all > 3.4; for
# Gaussian scores of variance 1 and many keys the entropy is about $\log 64 - \tfrac12 = 3.66$);
# unscaled it falls towards 0 as $d_k$ grows, and the largest weight of a row towards 1 (asserted at
# $d_k = 1024$: < 0.3 nats, top weight > 0.9). A one-hot softmax passes almost no gradient: that is
# the failure the $\sqrt{d_k}$ prevents.

# %% [markdown]
# The entropy says the rows saturate; the gradient is what suffers. The Jacobian (雅可比矩阵) of a softmax
# row $a = \operatorname{softmax}(s)$ (S,) with respect to its scores is
#
# $$J = \frac{\partial a}{\partial s} = \operatorname{diag}(a) - a\,a^\top \quad (S, S),$$
#
# and every gradient that reaches the queries and keys passes through it. Its Frobenius norm
# $\|J\|_F$ is largest for spread-out rows and 0 for an exactly one-hot row ($a = e_i$ gives
# $\operatorname{diag}(e_i) - e_i e_i^\top = 0$). The same queries and keys as above, $\|J\|_F$ averaged over
# the 256 queries, with and without the scaling, for head sizes up to 16384:

# %%
def softmax_jacobian_norm(weights):
    """weights (N, S), rows summing to 1 -> mean over rows of ||diag(a) - a a^T||_F."""
    jac = torch.diag_embed(weights) - weights[:, :, None] * weights[:, None, :]   # (N, S, S)
    return jac.flatten(1).norm(dim=1).mean().item()


jac_d_ks = d_ks + [4096, 16384]
jac_norm = {"scaled by 1/sqrt(d_k)": [], "not scaled": []}
g = torch.Generator().manual_seed(0)  # the same draws as the entropy table, then two larger heads
for d_k in jac_d_ks:
    q, k = torch.randn(n_queries, d_k, generator=g), torch.randn(S, d_k, generator=g)
    for name, scale in (("scaled by 1/sqrt(d_k)", None), ("not scaled", 1.0)):
        _, w = scaled_dot_product_attention(q, k, torch.zeros(S, 1), scale=scale)
        jac_norm[name].append(softmax_jacobian_norm(w))
print(f"{'d_k':>6}" + "".join(f"{'||J||_F, ' + n:>32}" for n in jac_norm))
for i, d_k in enumerate(jac_d_ks):
    print(f"{d_k:>6}" + "".join(f"{jac_norm[n][i]:>32.4f}" for n in jac_norm))
scaled_jac, raw_jac = jac_norm["scaled by 1/sqrt(d_k)"], jac_norm["not scaled"]
print(f"largest d_k: not scaled / scaled = {raw_jac[-1] / scaled_jac[-1]:.3f}; "
      f"scaled, largest relative change from d_k = 4: {max(abs(j / scaled_jac[0] - 1) for j in scaled_jac):.3f}")

fig, ax = plt.subplots(figsize=(6, 3.2))
for name, values in jac_norm.items():
    ax.plot(jac_d_ks, values, "o-", label=name)
ax.set(xscale="log", yscale="log", xlabel="head size d_k", ylabel=r"mean $\|J\|_F$",
       title="the softmax Jacobian: what the gradient passes through")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Scaled, the Jacobian's norm does not depend on $d_k$; unscaled, it shrinks with every step up from
# $d_k = 16$, and at the largest head it is a small fraction of the scaled one (both printed): the
# gradient through a saturated softmax vanishes. (At $d_k = 4$ and 16 the unscaled scores, of standard
# deviation 2 and 4, give a *larger* Jacobian than the scaled ones: the scaling does not maximise the
# gradient, it makes it independent of the head size.) Asserted: the scaled norm stays within 5 % of its
# value at $d_k = 4$; the unscaled one falls at every step from $d_k = 16$ on and ends below 0.2 of the
# scaled one.

# %%
assert max(abs(j / scaled_jac[0] - 1) for j in scaled_jac) < 0.05, scaled_jac
assert all(a > b for a, b in zip(raw_jac[1:], raw_jac[2:])), raw_jac
assert raw_jac[-1] < 0.2 * scaled_jac[-1], (raw_jac, scaled_jac)

# %% [markdown]
# ## 5. Multi-head attention, written out
#
# The head split is a `view` and a `transpose`: head $j$ owns features $j\,d_h \ldots (j+1)\,d_h - 1$ of
# the projected vectors. Merging undoes it.

# %%
x = torch.randn(2, 5, 12)  # (B, T, d_model)
heads = split_heads(x, n_heads=3)  # (B, h, T, d_h) = (2, 3, 5, 4)
print("split:", tuple(x.shape), "->", tuple(heads.shape), " merge:", tuple(merge_heads(heads).shape))
assert torch.equal(heads[:, 1], x[..., 4:8]) and torch.equal(merge_heads(heads), x)

# %% [markdown]
# `MultiHeadAttention` in `karpa_lab.models.attention` is four `nn.Linear` layers around the split,
# the attention and the merge. It has the same parameters as `nn.MultiheadAttention` (which stores
# $W_q, W_k, W_v$ stacked in one `in_proj_weight`), so we can copy PyTorch's weights in and compare,
# with a padding mask and a causal mask at once. Mind the convention: `nn.MultiheadAttention`'s boolean
# masks are True where attention is **blocked**, so they are the negation of ours.

# %%
torch.manual_seed(0)
ref = nn.MultiheadAttention(embed_dim=16, num_heads=4, batch_first=True, dtype=torch.float64)
mha = MultiHeadAttention.from_torch(ref)
x = torch.randn(3, 6, 16, dtype=torch.float64)
lengths = torch.tensor([6, 4, 2])
keep = padding_mask(lengths) & causal_mask(6)  # (B, 1, 1, S) & (L, S) -> (B, 1, L, S)
out, w = mha(x, mask=keep)
ref_out, ref_w = ref(x, x, x, key_padding_mask=~padding_mask(lengths)[:, 0, 0], attn_mask=~causal_mask(6),
                     average_attn_weights=False)
err_out, err_w = (out - ref_out).abs().max().item(), (w - ref_w).abs().max().item()
print(f"output max |diff| {err_out:.1e}, weights max |diff| {err_w:.1e}, weights {tuple(w.shape)}")
assert err_out < 1e-12 and err_w < 1e-12

# %% [markdown]
# ## 6. Where is each token? Positions
#
# Attention compares contents; nothing in $\operatorname{softmax}(QK^\top/\sqrt{d_k})V$ depends on the
# order of the rows. Permute the input tokens and the outputs come out permuted the same way: attention
# is **permutation-equivariant**. A sentence and its shuffle look alike to it.

# %%
perm = torch.randperm(6)
out, _ = mha(x)
out_shuffled, _ = mha(x[:, perm])
gap = (out_shuffled - out[:, perm]).abs().max().item()
print(f"attention(shuffled x) vs shuffled attention(x): max |diff| = {gap:.1e}")
assert gap < 1e-12

# %% [markdown]
# The fix is to add a position vector to each token's embedding, a positional encoding (位置编码).
# The original Transformer uses fixed sinusoids of geometrically spaced frequencies,
#
# $$ \underbrace{PE}_{T \times d}[p, 2i] = \sin\!\big(p / 10000^{2i/d}\big), \qquad
# PE[p, 2i+1] = \cos\!\big(p / 10000^{2i/d}\big), $$
#
# so that each pair of features is a clock hand turning at its own speed, and $PE[p+k]$ is a fixed
# rotation of $PE[p]$ for every offset $k$. GPT instead *learns* a table of $T \times d$ position vectors
# (`LearnedPositions`, an `nn.Embedding`). Either way the symmetry is gone:

# %%
pos = SinusoidalPositions(16, max_len=64).double()
out, _ = mha(pos(x))
out_shuffled, _ = mha(pos(x[:, perm]))
gap_pos = (out_shuffled - out[:, perm]).abs().max().item()
print(f"with positions: max |diff| = {gap_pos:.2f}")
assert gap_pos > 1e-2

pe = sinusoidal_positions(64, 32)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3))
ax1.imshow(pe.T, aspect="auto", cmap="RdBu")
ax1.set(xlabel="position p", ylabel="feature", title="sinusoidal encodings PE[p]")
ax2.imshow(pe @ pe.T, cmap="viridis")
ax2.set(xlabel="position", ylabel="position", title="PE[p] . PE[p']: nearby positions look alike")
plt.show()

# %% [markdown]
# ## 7. Train it: a task that needs positions
#
# Reverse a sequence: the input is 16 random symbols out of 8, the target at position $t$ is the input at
# position $15 - t$. One self-attention layer can do it (query $t$ must look at key $15 - t$), but only if
# it knows the positions: without them every occurrence of the same symbol gets the same output, and the
# best it can do is guess a common symbol. We train three copies with `fit`: no positions, sinusoidal,
# learned.

# %%
N_SYMBOLS, LENGTH = 8, 16


def reverse_task(n, generator=None):
    """x (n, 16) random symbols; y = x reversed along time."""
    x = torch.randint(N_SYMBOLS, (n, LENGTH), generator=generator)
    return x, x.flip(1)


class Reverser(nn.Module):
    """Embedding (+ positions) -> one multi-head self-attention layer -> a linear read-out per position."""

    def __init__(self, positions: str, d_model: int = 32, n_heads: int = 2):
        super().__init__()
        self.embed = nn.Embedding(N_SYMBOLS, d_model)
        self.pos = {"none": nn.Identity(), "sinusoidal": SinusoidalPositions(d_model, LENGTH),
                    "learned": LearnedPositions(d_model, LENGTH)}[positions]
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.head = nn.Linear(d_model, N_SYMBOLS)

    def forward(self, x):  # (B, T) -> (B, T, N_SYMBOLS)
        out, self.weights = self.attn(self.pos(self.embed(x)))  # keep the weights for the maps
        return self.head(out)


steps = by_scale(small=250, full=1000)
val = [reverse_task(512, torch.Generator().manual_seed(1))]
models, histories = {}, {}
for positions in ("none", "sinusoidal", "learned"):
    seed_everything(0)
    models[positions] = Reverser(positions)
    histories[positions] = fit(models[positions], lambda: reverse_task(64), steps=steps, lr=1e-2,
                               schedule=warmup_cosine(steps // 10, steps), val_data=val,
                               eval_every=steps // 5, metrics={"accuracy": accuracy}, progress=False, log_every=steps,
                               device=device)

fig, ax = plt.subplots(figsize=(6, 3.2))
for positions, h in histories.items():
    ax.plot(h.val_steps, h.metric("accuracy"), "o-", ms=3, label=f"positions: {positions}")
ax.axhline(1 / N_SYMBOLS, color="gray", ls=":", label="chance")
ax.set(xlabel="step", ylabel="validation accuracy", title="reversing 16 symbols with one attention layer")
ax.legend(fontsize=8)
plt.show()
final = {p: h.metric("accuracy")[-1] for p, h in histories.items()}
print({p: round(a, 3) for p, a in final.items()})
assert final["none"] < 0.4
assert final["sinusoidal"] > 0.95 and final["learned"] > 0.95

# %% [markdown]
# The printed accuracies: without positions the layer can only guess a symbol that is common in the
# sequence (asserted < 0.4); with sinusoidal or learned positions it reverses the sequence (asserted
# > 0.95). The position-free model is the negative control of the same check.
#
# What did the trained layer learn? Query $t$ should look at key $15 - t$: the anti-diagonal. We
# measure, for each head, how often a query's largest weight falls on its mirror position, and the
# average weight it puts there.

# %%
model = models["sinusoidal"]
x_val, _ = val[0]
with torch.no_grad():
    model(x_val.to(device))
all_weights = model.weights.cpu()  # (B, heads, T, T)
weights = all_weights[0]  # (heads, T, T) for the first validation sequence
mirror_key = torch.arange(LENGTH).flip(0)  # query t -> key 15 - t
hits = (all_weights.argmax(-1) == mirror_key).float().mean(dim=(0, 2))  # (B, heads, T) -> (heads,)
mirror = all_weights.flip(-1).diagonal(dim1=-2, dim2=-1).mean(dim=(0, 2))  # weight on the mirror key
print("share of queries whose top key is the mirror, per head:", [round(h, 3) for h in hits.tolist()])
print("mean weight on the mirror key, per head:              ", [round(m, 3) for m in mirror.tolist()])
best = int(hits.argmax())
assert hits[best] > 0.9

sel = select(weights, layer=0, head=best, query=3)
print(f"head {best}, query 3 looks most at key {int(sel['row'].argmax())} (the mirror of 3 is 12)")
assert int(sel["row"].argmax()) == LENGTH - 1 - 3
tokens = [str(s) for s in x_val[0].tolist()]
attention_figure(weights, tokens, layer=0, head=best, query=3)

# %% [markdown]
# The lines above print, per head, the share of queries whose largest weight falls on the mirror position
# (asserted: best head > 90 %) and the mean weight there; the rest goes to the neighbours, which sinusoidal encodings make look alike (the right panel of
# section 6).

# %% [markdown]
# ## 8. Play: the attention maps
#
# Pick a head and a query position; the heatmap shows the whole head (rows: queries, columns: keys,
# your query outlined in red), the bars show what your query attends to, and the readout lists the
# top keys with their weights and the entropy of the row. Try the other head, and the model trained
# without positions: run `models["none"](x_val.to(device))`, then
# `attention_widget(models["none"].weights[0], tokens)`.

# %%
attention_widget(weights, tokens)

# %% [markdown]
# ## 9. Speed: from scratch against the fused kernel
#
# Our attention builds the whole $L \times S$ score matrix in memory, then the softmax, then the product
# with $V$: three passes over $B\,h\,T^2$ numbers. PyTorch's SDPA picks a fused kernel instead; on a CPU
# it is a FlashAttention-style loop over blocks of keys that never stores the full matrix and skips the
# blocks a causal mask hides. Forward pass, batch 8, 4 heads, $d_h = 64$, causal, best of 5 runs (3 at 1024)
# (wall-clock, so a busy machine shows as noise).

# %%
def best_time(fn, *args, repeats=3, **kwargs):
    """The fastest of ``repeats`` runs of fn(*args, **kwargs), in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return min(times)


speed = {}
for T in (128, 512, 1024):
    qkv = [torch.randn(8, 4, T, 64) for _ in range(3)]
    F.scaled_dot_product_attention(*qkv, is_causal=True)  # warm-up
    repeats = 5 if T <= 512 else 3
    speed[T] = (best_time(scaled_dot_product_attention, *qkv, causal=True, repeats=repeats),
                best_time(F.scaled_dot_product_attention, *qkv, is_causal=True, repeats=repeats))
    del qkv
print(f"threads: {torch.get_num_threads()}")
print(f"{'T':>6}{'from scratch (ms)':>20}{'SDPA (ms)':>12}{'speed-up':>10}")
for T, (mine, fused) in speed.items():
    print(f"{T:>6}{1000 * mine:>20.1f}{1000 * fused:>12.1f}{mine / fused:>9.1f}x")
assert speed[1024][0] / speed[1024][1] > 2.0

# %% [markdown]
# The table above is this run's: the number of threads first, then the two times and the speed-up for
# each length. Timings move with the machine's load and its thread count, the smallest case most (a few
# milliseconds), so only the large case is asserted (> 2x at $T = 1024$). The from-scratch version also needs $B\,h\,T^2$ floats for the weights (128 MB at $T = 1024$),
# which is what runs out first at long contexts.
#
# **On a GPU** the gap is larger and has a different cause. A GPU computes far faster than it reads
# its own memory, so writing the $T \times T$ matrix to memory and reading it back three times dominates.
# SDPA dispatches to FlashAttention or to a memory-efficient kernel: both keep a block of
# queries in fast on-chip memory, stream the keys and values through it, and keep a running softmax
# (the maximum and the normaliser so far), so memory grows like $T$ instead of $T^2$ and the matrix is
# never written out. In bf16 on a recent GPU that is typically several times faster than the plain
# version already at $T$ of a few hundred. You can choose or forbid a kernel with
# `torch.nn.attention.sdpa_kernel(...)`. Not measured in this notebook: it runs on the CPU.

# %% [markdown]
# ## Exercises
# 1. **Predict, then run.** In section 4, divide the scores by $d_k$ instead of $\sqrt{d_k}$
#    (`scale=1 / d_k`). What happens to the entropy as $d_k$ grows, and why is that just as bad for
#    learning as saturation?
# 2. **A mask of your own.** Write a *local* (sliding-window) mask where query $i$ sees keys
#    $i-3 \ldots i$ only, check it against `F.scaled_dot_product_attention` with the same boolean
#    `attn_mask`, and draw it with `attention_figure`.
# 3. **Positions and length.** Train the `learned` and `sinusoidal` reversers on `LENGTH = 16`, then
#    build a version of the task of length 12 and evaluate both. Which one copes, and why does a learned
#    table not help at positions it never saw?
# 4. **One head or two.** Train `Reverser("sinusoidal", n_heads=1)` and `n_heads=4`. Does the number of
#    heads change how many steps it takes to reach 100 %? Look at each head's map with the widget.
# 5. **Implement the variant.** Write cross-attention for the reverser: the queries are learned vectors,
#    one per output position (an `nn.Parameter` of shape (16, d_model)), the keys and values come from
#    the input. Does it still need positional encodings on the input?
#
# Worked solutions, each one run and checked: [solutions/08_attention.ipynb](solutions/08_attention.ipynb).
#
# ## Summary
# - Attention is $\operatorname{softmax}(QK^\top/\sqrt{d_k} + M)V$: a content-based weighted average, one
#   row of weights per query; masks are $-\infty$ scores; a row with nothing to attend to gives zeros.
# - The $\sqrt{d_k}$ keeps the scores at unit variance; without it the softmax saturates and the norm of
#   its Jacobian $\operatorname{diag}(a) - aa^\top$, through which every gradient passes, shrinks towards 0
#   as $d_k$ grows, while with it the norm does not change (measured).
# - Multi-head attention is a reshape around the same operation; ours equals PyTorch's to $10^{-12}$.
# - Attention alone ignores order; positional encodings (sinusoidal or learned) give it back, and a task
#   that needs order is unsolvable without them (the accuracies of section 7).
# - The fused kernel is several times faster even on a CPU, and never stores the $T \times T$ matrix.
#
# **Next:** lesson 09 stacks causal self-attention into a small GPT, trains it on Python source, and
# races it against lesson 04's char-LSTM.
#
# | English | 中文 | one line |
# |---|---|---|
# | attention | 注意力机制 | a weighted average of values, weighted by how well a query matches each key |
# | query | 查询 | what a position is looking for |
# | key | 键 | what a position offers to be matched on |
# | value | 值 | what a position hands over when it is attended to |
# | scaled dot-product attention | 缩放点积注意力 | softmax of query-key dot products divided by the square root of d_k |
# | Jacobian | 雅可比矩阵 | the matrix of partial derivatives of one vector with respect to another |
# | mask | 掩码 | which keys each query may attend to |
# | causal mask | 因果掩码 | a mask that lets each position attend only to itself and earlier positions |
# | multi-head attention | 多头注意力 | several attentions on slices of the features, side by side |
# | self-attention | 自注意力 | attention whose queries, keys and values come from the same sequence |
# | positional encoding | 位置编码 | a vector added to each token that says where it is |
