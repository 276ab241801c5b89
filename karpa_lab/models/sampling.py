r"""Drawing the next token from a model's logits: temperature, top-k and top-p (nucleus) sampling.

Every model in the course that writes text (the char-LSTM, the GPT) and the char-RNN's temperature
widget use these two functions, so a knob means the same thing everywhere. For logits ``z`` (..., V):

    p_i = exp(z_i / tau) / sum_{j in K} exp(z_j / tau)   for i in K, 0 elsewhere

``K`` is every token, cut to the ``top_k`` largest logits when asked, then to the smallest set of the
most likely tokens whose probabilities add up to at least ``top_p`` (Holtzman et al. 2019, "nucleus").
``tau = 1`` is the model's own distribution; ``tau > 1`` flattens it towards uniform over ``K``;
``tau -> 0`` puts all the mass on the arg-max. Below :data:`GREEDY_BELOW` the division ``z / tau``
would overflow to infinity (and the softmax to NaN), so there the arg-max is returned directly:
greedy decoding, the limit the formula tends to.
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

GREEDY_BELOW = 1e-6  # temperatures below this (0 included) decode greedily: the arg-max


def check_sampling(temperature: float, top_k: int | None = None, top_p: float | None = None) -> None:
    """Raise a ``ValueError`` naming the value and what is allowed, for each knob out of range."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) or not math.isfinite(temperature) \
            or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 for greedy decoding), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise ValueError(f"top_k must be an integer >= 1, or None to keep every token, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1], or None to keep every token, got {top_p!r}")


def next_token_probs(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    r"""The sampling distribution over the vocabulary: logits (..., V) -> probabilities (..., V), float32.

    Temperatures below :data:`GREEDY_BELOW` give the one-hot of the arg-max (greedy decoding).
    """
    check_sampling(temperature, top_k, top_p)
    logits = logits.float()
    vocab = logits.shape[-1]
    if temperature < GREEDY_BELOW:
        return F.one_hot(logits.argmax(dim=-1), vocab).float()
    logits = logits / temperature
    if top_k is not None and top_k < vocab:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1:
        # Keep a token while the mass of the more likely tokens before it is still short of top_p.
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        before = sorted_probs.cumsum(dim=-1) - sorted_probs
        keep = torch.zeros_like(probs, dtype=torch.bool).scatter(-1, order, before < top_p)
        probs = probs.masked_fill(~keep, 0.0)
        probs = probs / probs.sum(dim=-1, keepdim=True)
    return probs


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token id per row from :func:`next_token_probs`: logits (B, V) -> ids (B,).

    Greedy temperatures (below :data:`GREEDY_BELOW`) return the arg-max and draw no random number.
    A ``generator`` on another device than ``logits`` (a CPU seed for a GPU model) draws on its own
    device, so the same seed gives the same text on either.
    """
    if logits.dim() != 2:
        raise ValueError(f"sample_next: logits must be (batch, vocab), got shape {tuple(logits.shape)}")
    check_sampling(temperature, top_k, top_p)
    if temperature < GREEDY_BELOW:
        return logits.argmax(dim=-1)
    probs = next_token_probs(logits, temperature, top_k, top_p)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def check_token_ids(idx: torch.Tensor, vocab_size: int, who: str) -> None:
    """Raise a ``ValueError`` naming ``vocab_size`` when an id of ``idx`` lies outside [0, vocab_size).

    Reading the ids' range waits for the device, so callers on a GPU check once (a prompt), not per step.
    """
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= vocab_size):
        raise ValueError(f"{who}: token ids must lie in [0, {vocab_size}) (the vocabulary size is {vocab_size}), "
                         f"got min {int(idx.min())}, max {int(idx.max())}")
