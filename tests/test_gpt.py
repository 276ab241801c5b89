"""The small GPT: shapes, weight tying, initial loss, fused == plain attention, KV cache == no cache."""

from __future__ import annotations

import math

import pytest
import torch

from karpa_lab.models.gpt import GPT, GPTConfig, KVCache

V = 37


def make(seed=0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(vocab_size=V, block_size=16, n_layer=2, n_head=4, n_embd=32)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg))


@pytest.mark.parametrize("B,T", [(1, 1), (1, 16), (3, 5)])
def test_shapes(B, T):
    model = make()
    idx = torch.randint(V, (B, T))
    logits, loss = model(idx)
    assert logits.shape == (B, T, V) and loss is None
    logits, loss = model(idx, torch.randint(V, (B, T)))
    assert loss.shape == () and torch.isfinite(loss)


def test_weight_tying_one_matrix_in_and_out():
    model = make()
    assert model.lm_head.weight is model.wte.weight
    n_unique = sum(p.numel() for p in model.parameters())  # parameters() lists the tied matrix once
    assert model.num_params(non_embedding=False) == n_unique
    assert model.num_params() == n_unique - 16 * 32
    idx = torch.randint(V, (2, 8))
    model(idx, idx)[1].backward()
    unused = sorted(set(range(V)) - set(idx.flatten().tolist()))
    assert model.wte.weight.grad[unused].abs().sum() > 0  # tokens never seen get gradient through the output layer


@pytest.mark.parametrize("seed", range(3))
def test_loss_at_init_is_about_log_vocab(seed):
    model = make(seed, n_embd=64, n_layer=3)
    g = torch.Generator().manual_seed(seed)
    idx, targets = torch.randint(V, (8, 16), generator=g), torch.randint(V, (8, 16), generator=g)
    _, loss = model(idx, targets)
    assert abs(loss.item() - math.log(V)) < 0.15


def test_scaled_init_of_residual_projections():
    model = make(n_layer=6, n_embd=64)
    std = torch.cat([b.attn.c_proj.weight.flatten() for b in model.blocks]).std().item()
    assert abs(std - 0.02 / math.sqrt(12)) < 0.001
    assert abs(model.blocks[0].mlp.c_fc.weight.std().item() - 0.02) < 0.002


def test_fused_attention_equals_plain_forward_and_backward():
    fused, plain = make(flash=True), make(flash=False)
    plain.load_state_dict(fused.state_dict())
    idx, targets = torch.randint(V, (3, 16)), torch.randint(V, (3, 16))
    lf, loss_f = fused(idx, targets)
    lp, loss_p = plain(idx, targets)
    torch.testing.assert_close(lf, lp, atol=1e-5, rtol=1e-5)
    loss_f.backward()
    loss_p.backward()
    for (name, pf), (_, pp) in zip(fused.named_parameters(), plain.named_parameters()):
        torch.testing.assert_close(pf.grad, pp.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_attention_weights_when_asked():
    model = make()
    idx = torch.randint(V, (2, 9))
    logits, _, weights = model(idx, need_weights=True)
    assert weights.shape == (2, 2, 4, 9, 9)  # (n_layer, B, n_head, T, T)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 2, 4, 9))
    assert torch.all(weights.triu(diagonal=1) == 0)  # causal
    torch.testing.assert_close(logits, model(idx)[0], atol=1e-5, rtol=1e-5)


def test_kv_cache_forward_in_pieces_equals_full_forward():
    model = make().eval()
    idx = torch.randint(V, (2, 12))
    full, _ = model(idx)
    cache = KVCache()
    parts = [model(idx[:, :5], cache=cache)[0], model(idx[:, 5:6], cache=cache)[0], model(idx[:, 6:], cache=cache)[0]]
    assert len(cache) == 12 and cache.keys[1].shape == (2, 4, 12, 8)
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=1e-5)
    _, _, w = model(idx[:, :1], cache=KVCache(), need_weights=True)
    assert w.shape == (2, 2, 4, 1, 1)


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.8, 5), (0.0, None)])
@pytest.mark.parametrize("new", [10, 30])  # 30 runs past block_size=16: the cache is rebuilt each step
def test_generate_cached_equals_uncached(temperature, top_k, new):
    model = make(3)
    prompt = torch.randint(V, (2, 3))
    outs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(11)
        outs.append(model.generate(prompt, new, temperature=temperature, top_k=top_k, use_cache=use_cache, generator=g))
    assert outs[0].shape == (2, 3 + new)
    assert torch.equal(outs[0][:, :3], prompt)
    assert torch.equal(outs[0], outs[1])
    assert model.training  # generate restores the mode


def test_top_k_one_is_greedy():
    model = make(4)
    prompt = torch.randint(V, (1, 2))
    g = torch.Generator().manual_seed(0)
    greedy = model.generate(prompt, 8, temperature=0)
    torch.testing.assert_close(model.generate(prompt, 8, top_k=1, generator=g), greedy)


def test_generate_refuses_bad_knobs_and_ids_outside_the_vocabulary():
    model = make()
    prompt = torch.zeros(1, 2, dtype=torch.long)
    for bad in (dict(temperature=-1.0), dict(temperature=float("nan")), dict(top_k=0), dict(top_p=1.5)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            model.generate(prompt, 3, **bad)
    for ids in ([[1, V]], [[-1, 2]]):
        with pytest.raises(ValueError, match=rf"\[0, {V}\) \(the vocabulary size is {V}\)"):
            model.generate(torch.tensor(ids), 3)
    with pytest.raises(ValueError, match=f"vocabulary size is {V}"):
        model(torch.tensor([[V]]))


@pytest.mark.parametrize("temperature", [1e-45, 1e-30, 0])
def test_extreme_temperatures_decode_greedily(temperature):
    model = make(4)
    prompt = torch.randint(V, (2, 2))
    g = torch.Generator().manual_seed(0)
    greedy = model.generate(prompt, 8, temperature=0)
    assert torch.equal(model.generate(prompt, 8, temperature=temperature, generator=g), greedy)


def test_top_p_sampling_is_seeded_and_cache_independent():
    model = make(5)
    prompt = torch.randint(V, (2, 3))
    outs = [model.generate(prompt, 12, top_p=0.8, use_cache=c, generator=torch.Generator().manual_seed(2))
            for c in (True, False)]
    assert torch.equal(outs[0], outs[1])


def test_errors_name_the_shapes():
    model = make()
    with pytest.raises(ValueError, match=r"\(batch, time\).*\(16,\)"):
        model(torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="exceed block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"targets must have the shape of idx \(1, 4\), got \(1, 3\)"):
        model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="not divisible"):
        make(n_embd=30, n_head=4)


def test_flops_per_token_formula():
    model = make()
    assert model.flops_per_token() == 6 * model.num_params() + 12 * 2 * 32 * 16
    assert model.flops_per_token(context=4) == 6 * model.num_params() + 12 * 2 * 32 * 4


def test_learns_a_repeating_sequence():
    model = make(0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    seq = torch.arange(17) % 5  # 0 1 2 3 4 0 1 ...
    x, y = seq[None, :16], seq[None, 1:]
    for _ in range(60):
        loss = model(x, y)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1
    assert model.generate(x[:, :3], 6, temperature=0)[0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]
