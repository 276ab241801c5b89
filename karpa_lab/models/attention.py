r"""Attention from scratch: scaled dot-product attention, masks, multi-head attention, positions.

Scaled dot-product attention (注意力机制, Vaswani et al. 2017) for queries Q (..., L, d_k), keys
K (..., S, d_k) and values V (..., S, d_v):

    scores  = Q K^T / sqrt(d_k)                 (..., L, S)   one score per (query, key) pair
    A       = softmax(scores + M, dim=-1)       (..., L, S)   each row sums to 1 over the keys
    out     = A V                               (..., L, d_v) a weighted average of the values

Why sqrt(d_k): if the entries of q and k are independent with mean 0 and variance 1, then
q . k = sum_i q_i k_i has variance d_k. Without the scaling the scores grow like sqrt(d_k), the
softmax saturates to one-hot rows, and its gradient vanishes; dividing by sqrt(d_k) keeps the
variance at 1 whatever the head size.

Masks, one convention throughout this module (the one of ``F.scaled_dot_product_attention``): a
boolean mask is True where a query **may** attend to a key; a float mask is added to the scores
(0 to keep, -inf to block). ``nn.MultiheadAttention`` uses the opposite boolean convention (True =
blocked), so its ``attn_mask`` is ``~mask`` and its ``key_padding_mask`` is ``~keep``.

Fully masked rows (a query that may attend to nothing, e.g. a padding query whose keys are all
padding) give **zero** weights and a **zero** output, never NaN: softmax over an all -inf row is
0/0, which we define as 0. ``F.scaled_dot_product_attention`` (PyTorch >= 2.5) does the same;
``nn.MultiheadAttention`` returns NaN for such rows, so comparisons with it skip them.

Multi-head attention (多头注意力) with h heads of size d_h = d_model / h, for x (B, T, d_model):

    Q = x W_q^T + b_q  (B, T, d_model)  -> split heads -> (B, h, T, d_h)    same for K and V
    O_head = attention(Q, K, V)          (B, h, T, d_h)  every head attends on its own
    O = merge heads (O_head) W_o^T + b_o (B, T, d_model)

Attention has no notion of order: permuting the tokens permutes the outputs the same way
(permutation equivariance). Positional encodings (位置编码) break that symmetry: fixed sinusoids
or a learned table, added to the token embeddings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ------------------------------------------------------------------------------------------ masks
def causal_mask(n_queries: int, n_keys: int | None = None, device: torch.device | str | None = None) -> torch.Tensor:
    """Boolean (L, S) mask, True where query i may attend to key j: ``j <= i + (S - L)``.

    The L queries are taken to be the *last* L of the S positions (the KV-cache case: S - L keys
    were seen before). With L == S this is the lower triangle, the same as ``is_causal=True`` in
    ``F.scaled_dot_product_attention`` (which aligns the triangle to the top-left when L != S).
    """
    n_keys = n_queries if n_keys is None else n_keys
    if n_keys < n_queries:
        raise ValueError(f"a causal mask needs at least as many keys as queries, got L={n_queries}, S={n_keys}")
    return torch.ones(n_queries, n_keys, dtype=torch.bool, device=device).tril(diagonal=n_keys - n_queries)


def padding_mask(lengths: torch.Tensor | list[int], max_len: int | None = None) -> torch.Tensor:
    """Boolean (B, 1, 1, S) mask, True at the real tokens of each sequence (positions < its length).

    It broadcasts against scores (B, h, L, S): every query of sequence b ignores b's padding keys.
    """
    lengths = torch.as_tensor(lengths)
    max_len = int(lengths.max()) if max_len is None else max_len
    keep = torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]
    return keep[:, None, None, :]


# ------------------------------------------------------------------------------ the attention op
def _check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() < 2 or k.dim() != q.dim() or v.dim() != q.dim():
        raise ValueError(
            f"q, k, v must have the same number (>= 2) of dims, (..., L, d_k), (..., S, d_k), (..., S, d_v); "
            f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries and keys need the same size d_k: q {tuple(q.shape)} has {q.shape[-1]}, "
                         f"k {tuple(k.shape)} has {k.shape[-1]}")
    if k.shape[:-1] != v.shape[:-1]:
        raise ValueError(f"keys and values need the same leading shape (..., S): k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if q.shape[:-2] != k.shape[:-2]:
        raise ValueError(f"q and k need the same batch dims: q {tuple(q.shape)}, k {tuple(k.shape)}")


def scaled_dot_product_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""``softmax(q k^T * scale + mask) v`` from scratch. Returns ``(out, weights)``.

    Args:
        q: queries (..., L, d_k); k: keys (..., S, d_k); v: values (..., S, d_v).
        mask: boolean (True = may attend) or float (added to the scores), broadcastable to (..., L, S).
        causal: also block keys after the query, aligned as in :func:`causal_mask` (queries = last L).
        scale: default ``1 / sqrt(d_k)``; pass ``1.0`` to see what happens without it.
        dropout_p: dropout on the attention weights (training only; 0 by default).

    Returns:
        out (..., L, d_v) and the attention weights (..., L, S), rows summing to 1 (0 for a row
        that may attend to nothing; its output is 0 too).
    """
    _check_qkv(q, k, v)
    L, S = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., L, S)
    if mask is not None:
        try:
            torch.broadcast_shapes(mask.shape, scores.shape)
        except RuntimeError:
            raise ValueError(f"mask {tuple(mask.shape)} does not broadcast to the scores (..., L={L}, S={S}) "
                             f"{tuple(scores.shape)}") from None
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, float("-inf"))
        else:
            scores = scores + mask
    if causal:  # never empties a row on its own: query i keeps key i + (S - L)
        scores = scores.masked_fill(~causal_mask(L, S, device=q.device), float("-inf"))
    if mask is None:
        weights = torch.softmax(scores, dim=-1)
    else:
        dead = torch.isneginf(scores).all(dim=-1, keepdim=True)  # rows with nothing to attend to
        weights = torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)
    if dropout_p > 0.0:
        weights = F.dropout(weights, p=dropout_p)
    return weights @ v, weights


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    r"""Entropy of each attention row, ``H = -sum_j a_j log a_j`` in nats (with 0 log 0 = 0), shape (..., L).

    ``log S`` for uniform attention over S keys, 0 for a one-hot (saturated) row.
    """
    return -(weights * torch.log(weights.clamp_min(1e-30))).sum(dim=-1)


# ------------------------------------------------------------------------------ multi-head attention
def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(B, T, d_model) -> (B, n_heads, T, d_model / n_heads): each head gets its own slice of the features."""
    B, T, D = x.shape
    if D % n_heads:
        raise ValueError(f"d_model={D} is not divisible by n_heads={n_heads}")
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, n_heads, T, d_head) -> (B, T, n_heads * d_head): the inverse of :func:`split_heads`."""
    B, H, T, Dh = x.shape
    return x.transpose(1, 2).reshape(B, T, H * Dh)


class MultiHeadAttention(nn.Module):
    """Multi-head attention with the projections, head split and merge written out.

    Same parameters as ``nn.MultiheadAttention(d_model, n_heads, batch_first=True)`` (kept as four
    ``nn.Linear``); :meth:`from_torch` and :meth:`to_torch` copy them across.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads = d_model, n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor | None = None,
        value: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query`` (B, L, d_model), ``key``/``value`` (B, S, d_model) (default: self-attention on ``query``).

        ``mask``: boolean, True = may attend, broadcastable to (B, n_heads, L, S); e.g. a
        :func:`padding_mask` (B, 1, 1, S) or a (L, S) pattern. Returns the output (B, L, d_model) and
        the weights of every head (B, n_heads, L, S).
        """
        key = query if key is None else key
        value = key if value is None else value
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.dim() != 3 or t.shape[-1] != self.d_model:
                raise ValueError(f"{name} must be (batch, length, d_model={self.d_model}), got {tuple(t.shape)}")
        if key.shape[:2] != value.shape[:2] or key.shape[0] != query.shape[0]:
            raise ValueError(f"query (B, L, D), key and value (B, S, D) disagree: query {tuple(query.shape)}, "
                             f"key {tuple(key.shape)}, value {tuple(value.shape)}")
        q = split_heads(self.q_proj(query), self.n_heads)  # (B, h, L, d_h)
        k = split_heads(self.k_proj(key), self.n_heads)  # (B, h, S, d_h)
        v = split_heads(self.v_proj(value), self.n_heads)  # (B, h, S, d_h)
        out, weights = scaled_dot_product_attention(q, k, v, mask=mask, causal=causal)
        return self.out_proj(merge_heads(out)), weights

    @classmethod
    def from_packed(cls, n_heads: int, in_proj_weight: torch.Tensor, in_proj_bias: torch.Tensor | None,
                    out_proj_weight: torch.Tensor, out_proj_bias: torch.Tensor | None) -> MultiHeadAttention:
        """A layer holding weights in ``nn.MultiheadAttention``'s packed layout: ``in_proj_weight`` (3D, D)
        stacks W_q, W_k, W_v (and ``in_proj_bias`` (3D,) their biases); ``out_proj_*`` is W_o, b_o."""
        d_model = out_proj_weight.shape[0]
        if in_proj_weight.shape != (3 * d_model, d_model) or out_proj_weight.shape != (d_model, d_model):
            raise ValueError(f"in_proj_weight must be (3D, D) and out_proj_weight (D, D); got "
                             f"{tuple(in_proj_weight.shape)} and {tuple(out_proj_weight.shape)}")
        mine = cls(d_model, n_heads, bias=in_proj_bias is not None).to(in_proj_weight.device, in_proj_weight.dtype)
        with torch.no_grad():
            for proj, w in zip((mine.q_proj, mine.k_proj, mine.v_proj), in_proj_weight.chunk(3)):
                proj.weight.copy_(w)
            mine.out_proj.weight.copy_(out_proj_weight)
            if in_proj_bias is not None:
                for proj, b in zip((mine.q_proj, mine.k_proj, mine.v_proj), in_proj_bias.chunk(3)):
                    proj.bias.copy_(b)
                mine.out_proj.bias.copy_(out_proj_bias)
        return mine

    @classmethod
    def from_torch(cls, ref: nn.MultiheadAttention) -> MultiHeadAttention:
        """A copy of ``ref``'s weights (it must have equal q/k/v sizes, i.e. no ``kdim``/``vdim``)."""
        if not ref._qkv_same_embed_dim or ref.bias_k is not None:
            raise ValueError("only nn.MultiheadAttention without kdim/vdim/add_bias_kv can be copied")
        return cls.from_packed(ref.num_heads, ref.in_proj_weight, ref.in_proj_bias, ref.out_proj.weight,
                               ref.out_proj.bias)

    def to_torch(self) -> nn.MultiheadAttention:
        """An ``nn.MultiheadAttention(batch_first=True)`` with these weights."""
        bias = self.q_proj.bias is not None
        w = self.q_proj.weight
        ref = nn.MultiheadAttention(self.d_model, self.n_heads, bias=bias, batch_first=True,
                                    device=w.device, dtype=w.dtype)
        with torch.no_grad():
            ref.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
            ref.out_proj.weight.copy_(self.out_proj.weight)
            if bias:
                ref.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
                ref.out_proj.bias.copy_(self.out_proj.bias)
        return ref


# ---------------------------------------------------------------------------- positional encodings
def sinusoidal_positions(n_positions: int, d_model: int) -> torch.Tensor:
    r"""The fixed encodings of Vaswani et al., shape (n_positions, d_model):

    PE[p, 2i] = sin(p / 10000^{2i / d_model}),   PE[p, 2i + 1] = cos(p / 10000^{2i / d_model}).

    Each pair of features is a clock of its own frequency, so PE[p + k] is a rotation of PE[p]
    (a linear function of it) for any fixed offset k.
    """
    if n_positions < 1 or d_model < 2 or d_model % 2:
        raise ValueError(f"need n_positions >= 1 and an even d_model >= 2, got {n_positions}, {d_model}")
    pos = torch.arange(n_positions, dtype=torch.float32)[:, None]  # (P, 1)
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (D/2,)
    pe = torch.zeros(n_positions, d_model)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq)
    return pe


def _check_positions(x: torch.Tensor, d_model: int, max_len: int) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ValueError(f"expected x of shape (batch, length, d_model={d_model}), got {tuple(x.shape)}")
    if x.shape[1] > max_len:
        raise ValueError(f"sequence length {x.shape[1]} exceeds the {max_len} positions this encoding has")


class SinusoidalPositions(nn.Module):
    """Adds :func:`sinusoidal_positions` to x (B, T, d_model); no parameters."""

    def __init__(self, d_model: int, max_len: int = 1024):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", sinusoidal_positions(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_positions(x, self.d_model, self.max_len)
        return x + self.pe[: x.shape[1]].to(x.dtype)


class LearnedPositions(nn.Module):
    """Adds a learned vector per position (an ``nn.Embedding(max_len, d_model)``, as in GPT) to x (B, T, d_model)."""

    def __init__(self, d_model: int, max_len: int):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_positions(x, self.d_model, self.max_len)
        return x + self.table(torch.arange(x.shape[1], device=x.device))
