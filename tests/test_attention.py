"""From-scratch attention against PyTorch: F.scaled_dot_product_attention and nn.MultiheadAttention."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

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

TOL64 = dict(atol=1e-10, rtol=1e-10)
TOL32 = dict(atol=1e-5, rtol=1e-5)


def random_qkv(g, batch, L, S, d_k, d_v, dtype=torch.float64):
    q = torch.randn(*batch, L, d_k, generator=g, dtype=dtype)
    k = torch.randn(*batch, S, d_k, generator=g, dtype=dtype)
    v = torch.randn(*batch, S, d_v, generator=g, dtype=dtype)
    return q, k, v


def random_shape(g):
    r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))
    batch = [r(1, 3) for _ in range(r(0, 2))]
    return batch, r(1, 9), r(1, 9), r(1, 16), r(1, 16)


@pytest.mark.parametrize("seed", range(8))
def test_matches_sdpa_without_and_with_masks(seed):
    g = torch.Generator().manual_seed(seed)
    batch, L, S, d_k, d_v = random_shape(g)
    q, k, v = random_qkv(g, batch, L, S, d_k, d_v)
    out, w = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **TOL64)
    torch.testing.assert_close(w.sum(-1), torch.ones(*batch, L, dtype=q.dtype), **TOL64)

    keep = torch.rand(*batch, L, S, generator=g) < 0.6  # some rows end up fully masked
    out, w = scaled_dot_product_attention(q, k, v, mask=keep)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=keep), **TOL64)
    assert torch.all(w[~keep] == 0)

    additive = torch.randn(L, S, generator=g, dtype=q.dtype)  # a float mask is added to the scores
    out, _ = scaled_dot_product_attention(q, k, v, mask=additive)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=additive), **TOL64)

    out, _ = scaled_dot_product_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.3), **TOL64)


@pytest.mark.parametrize("seed", range(4))
def test_causal_matches_sdpa(seed):
    g = torch.Generator().manual_seed(100 + seed)
    batch, T, _, d_k, d_v = random_shape(g)
    q, k, v = random_qkv(g, batch, T, T, d_k, d_v)
    out, w = scaled_dot_product_attention(q, k, v, causal=True)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), **TOL64)
    assert torch.all(w.triu(diagonal=1) == 0)
    # L < S (a KV cache): the queries are the last L positions; SDPA's is_causal would align top-left,
    # so compare with SDPA given the explicit lower-right mask.
    q2 = q[..., -2:, :] if T >= 2 else q
    out, _ = scaled_dot_product_attention(q2, k, v, causal=True)
    ref = F.scaled_dot_product_attention(q2, k, v, attn_mask=causal_mask(q2.shape[-2], T))
    torch.testing.assert_close(out, ref, **TOL64)
    last_rows = scaled_dot_product_attention(q, k, v, causal=True)[0][..., -q2.shape[-2] :, :]
    torch.testing.assert_close(out, last_rows, **TOL64)


@pytest.mark.parametrize("L,S", [(1, 1), (1, 5), (5, 1)])
def test_batch_one_and_length_one(L, S):
    g = torch.Generator().manual_seed(7)
    q, k, v = random_qkv(g, [1, 1], L, S, 4, 3, dtype=torch.float32)
    out, w = scaled_dot_product_attention(q, k, v)
    assert out.shape == (1, 1, L, 3) and w.shape == (1, 1, L, S)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **TOL32)
    if S == 1:  # one key: every query copies its value
        torch.testing.assert_close(out, v.expand(1, 1, L, 3), **TOL32)


def test_fully_masked_rows_are_zero_not_nan_with_finite_gradients():
    g = torch.Generator().manual_seed(3)
    q, k, v = random_qkv(g, [2, 3], 4, 5, 8, 6)
    q.requires_grad_(True)
    keep = torch.ones(4, 5, dtype=torch.bool)
    keep[1] = False  # query 1 may attend to nothing
    out, w = scaled_dot_product_attention(q, k, v, mask=keep)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    assert torch.all(out[..., 1, :] == 0) and torch.all(w[..., 1, :] == 0)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=keep), **TOL64)
    blocked = torch.zeros(4, 5, dtype=q.dtype)
    blocked[1] = float("-inf")  # the same through a float mask
    torch.testing.assert_close(scaled_dot_product_attention(q, k, v, mask=blocked)[0], out, **TOL64)
    out.sum().backward()
    assert torch.isfinite(q.grad).all()
    assert torch.all(q.grad[..., 1, :] == 0)


def test_shape_errors_name_the_shapes():
    q, k, v = torch.randn(2, 3, 8), torch.randn(2, 5, 7), torch.randn(2, 5, 4)
    with pytest.raises(ValueError, match=r"q \(2, 3, 8\).*k \(2, 5, 7\)"):
        scaled_dot_product_attention(q, k, v)
    with pytest.raises(ValueError, match=r"keys and values"):
        scaled_dot_product_attention(q, torch.randn(2, 5, 8), torch.randn(2, 6, 4))
    with pytest.raises(ValueError, match=r"mask \(4, 5\).*\(2, 3, 5\)"):
        scaled_dot_product_attention(q, torch.randn(2, 5, 8), v, mask=torch.ones(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="same number"):
        scaled_dot_product_attention(torch.randn(3), torch.randn(3), torch.randn(3))
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"d_model=8\), got \(2, 3, 6\)"):
        mha(torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(10, 4)
    with pytest.raises(ValueError, match="at least as many keys"):
        causal_mask(5, 3)


def test_split_and_merge_heads_are_inverse():
    x = torch.randn(2, 5, 12)
    h = split_heads(x, 3)
    assert h.shape == (2, 3, 5, 4)
    torch.testing.assert_close(h[:, 1], x[..., 4:8])  # head 1 owns features 4..7
    torch.testing.assert_close(merge_heads(h), x)


def mha_masks(g, B, L, S, with_masks):
    """Our masks (True = may attend) and nn.MultiheadAttention's (True = blocked)."""
    if not with_masks:
        return None, {}
    lengths = torch.randint(1, S + 1, (B,), generator=g)
    keep_keys = padding_mask(lengths, S)  # (B, 1, 1, S)
    pattern = torch.rand(L, S, generator=g) < 0.7
    pattern[:, 0] = True  # key 0 is never padding: every row keeps at least one key
    return keep_keys & pattern, {"key_padding_mask": ~keep_keys[:, 0, 0, :], "attn_mask": ~pattern}


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_masks", [False, True])
def test_multihead_matches_nn_multiheadattention(seed, with_masks):
    g = torch.Generator().manual_seed(seed)
    r = lambda lo, hi: int(torch.randint(lo, hi + 1, (1,), generator=g))
    h = r(1, 4)
    d, B, L, S = h * r(1, 5), r(1, 3), r(1, 7), r(1, 7)
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(d, h, batch_first=True, dtype=torch.float64)
    mine = MultiHeadAttention.from_torch(ref)
    query = torch.randn(B, L, d, generator=g, dtype=torch.float64)
    memory = torch.randn(B, S, d, generator=g, dtype=torch.float64)
    mask, ref_masks = mha_masks(g, B, L, S, with_masks)
    out, w = mine(query, memory, memory, mask=mask)
    ref_out, ref_w = ref(query, memory, memory, average_attn_weights=False, **ref_masks)
    torch.testing.assert_close(out, ref_out, **TOL64)
    torch.testing.assert_close(w, ref_w, **TOL64)


def test_multihead_self_attention_causal_and_round_trip():
    torch.manual_seed(0)
    mine = MultiHeadAttention(16, 4).double()
    ref = mine.to_torch()
    assert isinstance(ref, nn.MultiheadAttention) and ref.batch_first
    x = torch.randn(3, 6, 16, dtype=torch.float64)
    out, _ = mine(x, causal=True)
    ref_out, _ = ref(x, x, x, attn_mask=~causal_mask(6), need_weights=False)
    torch.testing.assert_close(out, ref_out, **TOL64)
    back = MultiHeadAttention.from_torch(ref)
    for (n1, p1), (n2, p2) in zip(mine.named_parameters(), back.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_from_packed_refuses_weights_of_the_wrong_layout():
    w_in, b_in, w_out, b_out = torch.randn(24, 8), torch.randn(24), torch.randn(8, 8), torch.randn(8)
    MultiHeadAttention.from_packed(2, w_in, b_in, w_out, b_out)
    with pytest.raises(ValueError, match=r"in_proj_weight must be \(3D, D\).*\(8, 8\) and \(8, 8\)"):
        MultiHeadAttention.from_packed(2, w_out, b_in, w_out, b_out)  # W_q alone, not W_q, W_k, W_v stacked


def test_fully_masked_query_in_multihead_is_zero_where_torch_gives_nan():
    torch.manual_seed(1)
    ref = nn.MultiheadAttention(8, 2, batch_first=True, dtype=torch.float64)
    mine = MultiHeadAttention.from_torch(ref)
    x = torch.randn(1, 4, 8, dtype=torch.float64)
    keep = torch.ones(4, 4, dtype=torch.bool)
    keep[2] = False
    out, w = mine(x, mask=keep)
    ref_out, _ = ref(x, x, x, attn_mask=~keep)
    assert torch.isnan(ref_out[0, 2]).all()  # nn.MultiheadAttention: NaN for a query with no key
    assert torch.isfinite(out).all() and torch.all(w[0, :, 2] == 0)
    torch.testing.assert_close(out[0, 2], mine.out_proj.bias)  # zero attention output -> just the bias
    rows = [0, 1, 3]  # compare where torch is defined
    torch.testing.assert_close(out[0, rows], ref_out[0, rows], **TOL64)


def test_attention_without_positions_is_permutation_equivariant_and_positions_break_it():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 4).double()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    perm = torch.randperm(7)
    out, _ = mha(x)
    out_perm, _ = mha(x[:, perm])
    torch.testing.assert_close(out_perm, out[:, perm], **TOL64)
    pos = SinusoidalPositions(16, max_len=32).double()
    out, _ = mha(pos(x))
    out_perm, _ = mha(pos(x[:, perm]))
    assert (out_perm - out[:, perm]).abs().max() > 1e-3


def test_sinusoidal_positions_values_and_rotation():
    pe = sinusoidal_positions(50, 8)
    p = torch.arange(50, dtype=torch.float32)
    torch.testing.assert_close(pe[:, 0], torch.sin(p))
    torch.testing.assert_close(pe[:, 1], torch.cos(p))
    torch.testing.assert_close(pe[:, 7], torch.cos(p / 10000 ** (6 / 8)))
    torch.testing.assert_close(pe[:, 0::2] ** 2 + pe[:, 1::2] ** 2, torch.ones(50, 4))
    # PE[p + k] = R_k PE[p] with one fixed rotation R_k per offset k: fit it on positions 0..39, test on the rest
    k = 3
    R = torch.linalg.lstsq(pe[:40].double(), pe[k : 40 + k].double()).solution
    torch.testing.assert_close((pe[40:47].double() @ R).float(), pe[40 + k : 47 + k], atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match="even d_model"):
        sinusoidal_positions(10, 7)


def test_positional_modules_shapes_and_errors():
    x = torch.zeros(2, 5, 8)
    torch.testing.assert_close(SinusoidalPositions(8, 16)(x)[0], sinusoidal_positions(5, 8))
    learned = LearnedPositions(8, max_len=5)
    torch.testing.assert_close(learned(x)[1], learned.table.weight)
    with pytest.raises(ValueError, match="exceeds the 4 positions"):
        LearnedPositions(8, max_len=4)(x)
    with pytest.raises(ValueError, match=r"d_model=6\), got \(2, 5, 8\)"):
        SinusoidalPositions(6)(x)


def test_masks_and_entropy():
    torch.testing.assert_close(causal_mask(4), torch.ones(4, 4).tril().bool())
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]
    keep = padding_mask([2, 3])
    assert keep.shape == (2, 1, 1, 3) and keep[0, 0, 0].tolist() == [True, True, False]
    uniform = torch.full((3, 6), 1 / 6)
    torch.testing.assert_close(attention_entropy(uniform), torch.full((3,), math.log(6)))
    torch.testing.assert_close(attention_entropy(torch.eye(4)), torch.zeros(4))
