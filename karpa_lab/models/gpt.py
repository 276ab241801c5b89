r"""A small GPT (a decoder-only Transformer), in the style of nanoGPT's ``model.py``.

For token ids idx (B, T), with d = n_embd, h = n_head, V = vocab_size:

    x_0 = W_e[idx] + W_p[0..T-1]                         (B, T, d)   token + learned position
    x   = x + Attn(LN_1(x))     for each of n_layer blocks (pre-norm: the residual path stays clean)
    x   = x + MLP(LN_2(x))          MLP(u) = W_2 GELU(W_1 u), W_1 (4d, d), W_2 (d, 4d)
    logits = LN_f(x) W_e^T                               (B, T, V)   the output layer *is* W_e (tied)

Attention is causal (token t sees tokens <= t), so one forward pass trains T next-token predictions
at once. The fused kernel ``F.scaled_dot_product_attention`` does the attention; ``flash=False`` (or
asking for the weights) runs the from-scratch :func:`karpa_lab.models.attention.scaled_dot_product_attention`
instead, which gives the same numbers and the weights for the attention maps.

Why weight tying: the input embedding and the output layer both map between tokens and the
d-dimensional space; sharing them saves V*d parameters and helps small models. Why the scaled init:
every block adds its output to the residual stream, so the variance grows with depth; the output
projections of each block start with std 0.02 / sqrt(2 n_layer) (GPT-2) to keep it near constant.

Generation keeps a KV cache (KV 缓存): the keys and values of the tokens already seen do not change,
so each new token needs one query against the cached keys instead of re-running the whole context.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab.models.attention import causal_mask, merge_heads, scaled_dot_product_attention, split_heads
from karpa_lab.models.sampling import check_sampling, check_token_ids, sample_next


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 64  # the longest context (number of learned positions)
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 96
    dropout: float = 0.0
    bias: bool = True  # biases in the Linear and LayerNorm layers
    flash: bool = True  # F.scaled_dot_product_attention; False: the from-scratch attention


class KVCache:
    """Keys and values of the tokens seen so far: ``keys[l]``, ``values[l]`` (B, n_head, T_seen, head_dim)."""

    def __init__(self):
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []

    def __len__(self) -> int:
        """Number of cached positions."""
        return self.keys[0].shape[2] if self.keys else 0

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this layer's new k, v (B, h, T_new, d_h); return all of them (B, h, T_seen + T_new, d_h)."""
        if layer == len(self.keys):
            self.keys.append(k)
            self.values.append(v)
        else:
            self.keys[layer] = torch.cat([self.keys[layer], k], dim=2)
            self.values[layer] = torch.cat([self.values[layer], v], dim=2)
        return self.keys[layer], self.values[layer]


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        if config.n_embd % config.n_head:
            raise ValueError(f"n_embd={config.n_embd} is not divisible by n_head={config.n_head}")
        self.layer, self.n_head, self.flash, self.dropout = layer, config.n_head, config.flash, config.dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, need_weights: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, d) -> (B, T, d), and the weights (B, h, T, S) when asked (S = cached + T keys)."""
        B, T, C = x.shape
        q, k, v = (split_heads(t, self.n_head) for t in self.c_attn(x).split(C, dim=2))  # (B, h, T, d_h)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)  # (B, h, S, d_h)
        S = k.shape[2]
        p = self.dropout if self.training else 0.0
        if need_weights or not self.flash:
            y, weights = scaled_dot_product_attention(q, k, v, causal=True, dropout_p=p)
        else:
            # is_causal aligns its triangle top-left, right only when T == S; one new query needs no mask.
            mask = None if T == S or T == 1 else causal_mask(T, S, device=x.device)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=T == S and T > 1)
            weights = None
        return self.resid_dropout(self.c_proj(merge_heads(y))), weights


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-norm Transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``."""

    def __init__(self, config: GPTConfig, layer: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None, need_weights: bool = False):
        a, weights = self.attn(self.ln_1(x), cache, need_weights)
        x = x + a
        return x + self.mlp(self.ln_2(x)), weights


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.n_layer)])
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: one (V, d) matrix in and out
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # the two residual-stream writers of each block
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; the tied matrix is counted once, the position table left out by default."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        cache: KVCache | None = None,
        need_weights: bool = False,
    ):
        """Token ids ``idx`` (B, T) -> ``(logits (B, T, V), loss or None)``.

        ``targets`` (B, T): the next tokens, for the mean cross-entropy ``loss``. ``cache``: a
        :class:`KVCache` to read and extend (positions continue after the cached ones).
        ``need_weights=True`` adds a third item, the attention weights of every layer
        (n_layer, B, n_head, T, S), computed with the from-scratch attention.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must be (batch, time) token ids, got shape {tuple(idx.shape)}")
        # On a GPU the range check would stall the pipeline at every step; there nn.Embedding's own check fires.
        if idx.device.type == "cpu":
            check_token_ids(idx, self.config.vocab_size, "GPT")
        B, T = idx.shape
        start = len(cache) if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"{start} cached + {T} new positions exceed block_size={self.config.block_size}; "
                             "crop the context to the last block_size tokens")
        if targets is not None and targets.shape != idx.shape:
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
        pos = torch.arange(start, start + T, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))  # (B, T, d)
        weights = []
        for block in self.blocks:
            x, w = block(x, cache, need_weights)
            weights.append(w)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))
        if need_weights:
            return logits, loss, torch.stack(weights)
        return logits, loss

    def flops_per_token(self, context: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), as in nanoGPT / the PaLM paper's appendix:

        6 N (every weight: a multiply-add forward, two backward) + 12 n_layer d T (the attention
        scores and the weighted sum, T = ``context``, default ``block_size``).
        """
        c = self.config
        T = c.block_size if context is None else context
        return 6 * self.num_params() + 12 * c.n_layer * c.n_embd * T

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Extend ``idx`` (B, T0) by ``max_new_tokens`` sampled tokens; returns (B, T0 + max_new_tokens).

        Each step draws from the last logits with :func:`karpa_lab.models.sampling.sample_next`
        (``temperature`` 0: greedy arg-max; ``top_k``, ``top_p``: keep only the most likely tokens).
        With ``use_cache`` the prompt is run once and every later step runs only the new token against
        the cached keys and values; the result is the same (asserted in the tests) for the same
        ``generator`` seed. Past ``block_size`` tokens the context is cropped to the last
        ``block_size``; the learned positions of all the cached tokens then shift by one, so the cache
        cannot be reused and is rebuilt from the cropped context each step (exactly what the uncached
        path computes, at its cost).
        """
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        check_sampling(temperature, top_k, top_p)
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(f"generate: idx must be (batch, time) token ids with time >= 1, got {tuple(idx.shape)}")
        check_token_ids(idx, self.config.vocab_size, "generate")
        was_training = self.training
        self.eval()
        bs = self.config.block_size
        cache = None
        for _ in range(max_new_tokens):
            if not use_cache:
                logits, _ = self(idx[:, -bs:])
            elif cache is not None and len(cache) < bs:
                logits, _ = self(idx[:, -1:], cache=cache)
            else:
                cache = KVCache()
                logits, _ = self(idx[:, -bs:], cache=cache)
            nxt = sample_next(logits[:, -1, :], temperature, top_k, top_p, generator)
            idx = torch.cat([idx, nxt[:, None]], dim=1)
        self.train(was_training)
        return idx
