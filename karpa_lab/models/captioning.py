r"""Image captioning: a CNN encoder, an LSTM decoder (with or without attention), and three ways to decode.

**Encoder.** A small CNN turns an image (B, 3, S, S) into a grid of features F (B, P, C), one C-vector per
cell of a G x G grid (P = G^2, G = S / 4), each knowing where it is (a learned position vector is added).

**Show and Tell** (Vinyals et al. 2015; Karpathy's NeuralTalk): the image sets the LSTM's initial state,

    v = flatten(F) W_v^T                 (B, E)    the whole grid, so where things are is kept
    h_0 = tanh(v W_h^T),  c_0 = v W_c^T  (B, H)
    x_t = E[y_{t-1}]                     (B, D)    the previous word's embedding, y_0 = <bos>
    h_t, c_t = LSTM(x_t, h_{t-1}, c_{t-1})
    z_t = h_t W_o^T + b_o                (B, V)    logits of word t

**Show, Attend and Tell** (Xu et al. 2015), with lesson 08's scaled dot-product attention: at every
word the decoder looks at the grid again,

    q_t = h_{t-1} W_q^T  (B, A),  K = F W_k^T  (B, P, A)
    alpha_t = softmax(q_t K^T / sqrt(A))  (B, P)   where it looks, summing to 1 over the cells
    ctx_t = alpha_t F                     (B, C)   what it sees there
    h_t, c_t = LSTM([E[y_{t-1}]; ctx_t], h_{t-1}, c_{t-1});   z_t = [h_t; ctx_t] W_o^T + b_o

**Teacher forcing** (教师强制): in training the input at step t is the *true* word y_{t-1}, not the model's
own guess, and the loss is the mean cross-entropy of the true next words, padding left out:

    L = -1/N sum_{b,t: y_{b,t} != <pad>} log softmax(z_{b,t})[y_{b,t}]    N = the number of real tokens

**Decoding.** Every decoder exposes ``start(images) -> state`` and ``step(words, state) -> (logits,
state, attention)``; :func:`sample_captions` draws words with the course's sampler (temperature 0 is
greedy decoding), :func:`beam_search` keeps the ``beam`` best prefixes by their summed log-probability,
:func:`exhaustive_search` scores every sequence (for checking beam search on a tiny vocabulary).
The log-probabilities of words come from :func:`word_logprobs`: ``<pad>`` and ``<bos>`` are never emitted.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab.data.scenes import BOS, EOS, PAD
from karpa_lab.models.attention import scaled_dot_product_attention
from karpa_lab.models.lstm import LSTMCell
from karpa_lab.models.sampling import sample_next

State = tuple[torch.Tensor, ...]


class SceneEncoder(nn.Module):
    """(conv 3x3 -> batch norm -> ReLU -> max-pool 2) twice, conv 3x3 -> batch norm -> ReLU, plus a learned
    position vector per cell: (B, 3, S, S) -> features (B, P, C), P = (S/4)^2. Batch normalisation (批归一化)
    makes this small CNN learn the shapes much faster than without it."""

    def __init__(self, size: int = 24, channels: int = 32):
        super().__init__()
        if size % 4:
            raise ValueError(f"SceneEncoder: the image size must be a multiple of 4, got {size}")
        self.size, self.channels, self.grid = size, channels, size // 4
        block = lambda c_in, c_out: [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
        self.cnn = nn.Sequential(*block(3, channels // 4), nn.MaxPool2d(2), *block(channels // 4, channels // 2),
                                 nn.MaxPool2d(2), *block(channels // 2, channels))
        self.position = nn.Parameter(0.1 * torch.randn(self.grid**2, channels))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1:] != (3, self.size, self.size):
            raise ValueError(f"SceneEncoder: images must be (batch, 3, {self.size}, {self.size}), "
                             f"got {tuple(images.shape)}")
        return self.cnn(images).flatten(2).transpose(1, 2) + self.position  # (B, P, C)


class CaptionDecoder(nn.Module):
    """What both captioners share: the encoder, the word embedding, teacher-forced ``forward``."""

    def __init__(self, vocab_size: int, size: int, channels: int, embed: int, hidden: int):
        super().__init__()
        if vocab_size < 4:
            raise ValueError(f"a captioner needs vocab_size >= 4 (<pad>, <bos>, <eos> and a word), got {vocab_size}")
        self.vocab_size, self.hidden = vocab_size, hidden
        self.encoder = SceneEncoder(size, channels)
        self.embedding = nn.Embedding(vocab_size, embed)

    def forward(self, images: torch.Tensor, words: torch.Tensor, return_attention: bool = False):
        """Teacher forcing: ``words`` (B, T) are the inputs y_0..y_{T-1} (``<bos>`` first) -> logits (B, T, V),
        and the attention maps (B, T, P) when asked (None for a decoder without attention)."""
        if words.dim() != 2 or words.dtype != torch.long or words.shape[0] != images.shape[0]:
            raise ValueError(f"{type(self).__name__}: words must be int64 ids (batch={images.shape[0]}, time), "
                             f"got shape {tuple(words.shape)} and dtype {words.dtype}")
        if words.numel() and (int(words.min()) < 0 or int(words.max()) >= self.vocab_size):
            raise ValueError(f"{type(self).__name__}: word ids must lie in [0, {self.vocab_size})")
        state, logits, maps = self.start(images), [], []
        for t in range(words.shape[1]):
            out, state, alpha = self.step(words[:, t], state)
            logits.append(out)
            maps.append(alpha)
        logits = torch.stack(logits, dim=1)
        if not return_attention:
            return logits
        return logits, (torch.stack(maps, dim=1) if maps and maps[0] is not None else None)


class ShowAndTell(CaptionDecoder):
    """The image as the LSTM's initial state (h_0, c_0); no look at the image after that."""

    def __init__(self, vocab_size: int, size: int = 24, channels: int = 32, embed: int = 32, hidden: int = 96):
        super().__init__(vocab_size, size, channels, embed, hidden)
        self.image = nn.Linear(channels * self.encoder.grid**2, hidden)
        self.init_h, self.init_c = nn.Linear(hidden, hidden), nn.Linear(hidden, hidden)
        self.cell = LSTMCell(embed, hidden)
        self.head = nn.Linear(hidden, vocab_size)

    def start(self, images: torch.Tensor) -> State:
        v = self.image(self.encoder(images).flatten(1))
        return torch.tanh(self.init_h(v)), self.init_c(v)

    def step(self, words: torch.Tensor, state: State) -> tuple[torch.Tensor, State, None]:
        h, c = self.cell(self.embedding(words), state)
        return self.head(h), (h, c), None


class ShowAttendTell(CaptionDecoder):
    """Attention over the feature grid at every word; (h_0, c_0) from the mean of the grid."""

    def __init__(self, vocab_size: int, size: int = 24, channels: int = 32, embed: int = 32, hidden: int = 96,
                 attention: int = 32):
        super().__init__(vocab_size, size, channels, embed, hidden)
        self.init_h, self.init_c = nn.Linear(channels, hidden), nn.Linear(channels, hidden)
        self.query, self.key = nn.Linear(hidden, attention, bias=False), nn.Linear(channels, attention, bias=False)
        self.cell = LSTMCell(embed + channels, hidden)
        self.head = nn.Linear(hidden + channels, vocab_size)

    def start(self, images: torch.Tensor) -> State:
        feats = self.encoder(images)
        mean = feats.mean(dim=1)
        return torch.tanh(self.init_h(mean)), self.init_c(mean), feats, self.key(feats)

    def step(self, words: torch.Tensor, state: State) -> tuple[torch.Tensor, State, torch.Tensor]:
        h, c, feats, keys = state
        ctx, alpha = scaled_dot_product_attention(self.query(h)[:, None], keys, feats)  # (B, 1, C), (B, 1, P)
        ctx, alpha = ctx[:, 0], alpha[:, 0]
        h, c = self.cell(torch.cat([self.embedding(words), ctx], dim=1), (h, c))
        return self.head(torch.cat([h, ctx], dim=1)), (h, c, feats, keys), alpha


# ------------------------------------------------------------------------------------------ the loss
def caption_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the real tokens: logits (B, T, V), targets (B, T) -> scalar, ``<pad>`` skipped.

    From scratch: log-softmax, pick the target's entry, average where the target is not padding. Equal to
    ``F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=PAD)``."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"caption_loss: need logits (batch, time, vocab) and targets (batch, time), "
                         f"got {tuple(logits.shape)} and {tuple(targets.shape)}")
    real = targets != PAD
    if not bool(real.any()):
        raise ValueError("caption_loss: every target is <pad>; there is nothing to learn from")
    picked = logits.float().log_softmax(dim=-1).gather(-1, targets[..., None])[..., 0]  # (B, T)
    return -(picked * real).sum() / real.sum()


def teacher_forcing_step(model: CaptionDecoder, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The ``step_fn`` for :func:`karpa_lab.fit`: a batch of (images, tokens); inputs are tokens[:, :-1]
    (from ``<bos>``), targets tokens[:, 1:] (up to ``<eos>`` and padding)."""
    images, tokens = batch
    return caption_loss(model(images, tokens[:, :-1]), tokens[:, 1:])


# -------------------------------------------------------------------------------------------- decoding
def word_logprobs(logits: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of the next word, (B, V) -> (B, V): ``<pad>`` and ``<bos>`` get -inf (never emitted)."""
    masked = logits.float().clone()
    masked[:, [PAD, BOS]] = float("-inf")
    return masked.log_softmax(dim=-1)


def _check_decode(images: torch.Tensor, max_len: int) -> None:
    if images.dim() != 4:
        raise ValueError(f"decoding needs a batch of images (batch, 3, S, S), got shape {tuple(images.shape)}")
    if isinstance(max_len, bool) or not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be an integer >= 1 (the most words, <eos> included), got {max_len!r}")


@torch.no_grad()
def sample_captions(model: CaptionDecoder, images: torch.Tensor, max_len: int = 12, temperature: float = 0.0,
                    top_k: int | None = None, generator: torch.Generator | None = None):
    """Decode word by word with :func:`karpa_lab.models.sampling.sample_next`; ``temperature=0``: greedy.

    Returns the words (B, max_len) (``<eos>`` then ``<pad>`` once a caption ends), their summed
    log-probability under the model (B,) and the attention maps (B, steps, P), one per step taken, or None."""
    _check_decode(images, max_len)
    state = model.start(images)
    words = torch.full((len(images),), BOS, dtype=torch.long, device=images.device)
    done = torch.zeros(len(images), dtype=torch.bool, device=images.device)
    total = torch.zeros(len(images), device=images.device)
    out, maps = [], []
    for _ in range(max_len):
        logits, state, alpha = model.step(words, state)
        logp = word_logprobs(logits)
        words = sample_next(logp, temperature, top_k, generator=generator)
        total += torch.where(done, 0.0, logp.gather(1, words[:, None])[:, 0])
        words = words.masked_fill(done, PAD)
        done |= words == EOS
        out.append(words)
        maps.append(alpha)
        if bool(done.all()):
            break
    out = F.pad(torch.stack(out, dim=1), (0, max_len - len(out)), value=PAD)
    return out, total, (torch.stack(maps, dim=1) if maps[0] is not None else None)


@torch.no_grad()
def beam_search(model: CaptionDecoder, images: torch.Tensor, beam: int = 3, max_len: int = 12):
    """Keep the ``beam`` most likely prefixes of every image, scored by their summed log-probability.

    At each step every prefix is extended by every word (B, beam, V candidates) and the ``beam`` best are
    kept. A prefix that has emitted ``<eos>`` is finished: it stays in the beam with its score, extended
    only by ``<pad>`` at no cost, so it competes with the longer ones to the end. Returns the best
    sequence per image (B, max_len) and its log-probability (B,). ``beam=1`` is greedy decoding."""
    _check_decode(images, max_len)
    if isinstance(beam, bool) or not isinstance(beam, int) or beam < 1:
        raise ValueError(f"beam_search: beam must be an integer >= 1, got {beam!r}")
    B = len(images)
    state = tuple(s.repeat_interleave(beam, dim=0) for s in model.start(images))  # (B * beam, ...)
    scores = torch.full((B, beam), float("-inf"), device=images.device)
    scores[:, 0] = 0.0  # one live prefix at the start: <bos>
    seqs = torch.empty(B, beam, 0, dtype=torch.long, device=images.device)
    done = torch.zeros(B, beam, dtype=torch.bool, device=images.device)
    words = torch.full((B * beam,), BOS, dtype=torch.long, device=images.device)
    for _ in range(max_len):
        logits, state, _ = model.step(words, state)
        logp = word_logprobs(logits).view(B, beam, -1)
        pad_only = torch.full_like(logp, float("-inf"))
        pad_only[..., PAD] = 0.0
        logp = torch.where(done[..., None], pad_only, logp)
        V = logp.shape[-1]
        top = (scores[..., None] + logp).view(B, beam * V).topk(beam, dim=1)  # sorted, best first
        origin, words_kept = top.indices // V, top.indices % V  # (B, beam) each
        scores = top.values
        seqs = torch.cat([seqs.gather(1, origin[..., None].expand(-1, -1, seqs.shape[2])), words_kept[..., None]], 2)
        done = done.gather(1, origin) | (words_kept == EOS)
        rows = (origin + beam * torch.arange(B, device=images.device)[:, None]).flatten()
        state = tuple(s.index_select(0, rows) for s in state)
        words = words_kept.flatten()
        if bool(done.all()):
            break
    return F.pad(seqs[:, 0], (0, max_len - seqs.shape[2]), value=PAD), scores[:, 0]


@torch.no_grad()
def exhaustive_search(model: CaptionDecoder, image: torch.Tensor, max_len: int) -> tuple[torch.Tensor, float]:
    """The most likely sequence of at most ``max_len`` words for one image (1, 3, S, S), by scoring every
    sequence: (V - 2)^max_len of them, so only for a tiny vocabulary. Returns (max_len,) and its log-prob."""
    _check_decode(image, max_len)
    if len(image) != 1:
        raise ValueError(f"exhaustive_search scores the sequences of one image, got a batch of {len(image)}")
    emitted = [w for w in range(model.vocab_size) if w not in (PAD, BOS)]
    if len(emitted) ** max_len > 200_000:
        raise ValueError(f"exhaustive_search: {len(emitted)}^{max_len} sequences is too many; use a smaller vocabulary "
                         f"or max_len")
    best, best_score = None, float("-inf")
    for seq in itertools.product(emitted, repeat=max_len):
        end = seq.index(EOS) + 1 if EOS in seq else max_len
        if end < max_len and any(w != EOS for w in seq[end:]):  # count each ended sequence once
            continue
        score = sequence_logprob(model, image, torch.tensor([list(seq[:end])]))[0].item()
        if score > best_score:
            best, best_score = list(seq[:end]), score
    return torch.tensor(best + [PAD] * (max_len - len(best))), best_score


@torch.no_grad()
def sequence_logprob(model: CaptionDecoder, images: torch.Tensor, words: torch.Tensor) -> torch.Tensor:
    """Summed log-probability (B,) of the words (B, T) (no ``<bos>``; ``<pad>`` after ``<eos>`` not counted)."""
    inputs = torch.cat([torch.full_like(words[:, :1], BOS), words[:, :-1]], dim=1)
    logits = model(images, inputs)
    logp = torch.stack([word_logprobs(logits[:, t]) for t in range(words.shape[1])], dim=1)
    picked = logp.gather(2, words[..., None])[..., 0]
    ended = torch.cumsum((words == EOS).long(), dim=1) - (words == EOS).long()  # > 0 after the first <eos>
    return torch.where(ended > 0, 0.0, picked).sum(dim=1)


# --------------------------------------------------------------------------------------------- metrics
def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], max_n: int = 4) -> float:
    r"""Corpus BLEU (Papineni et al. 2002) in [0, 1], one reference per hypothesis, words split on spaces:

        p_n = sum clipped n-gram matches / sum hypothesis n-grams    (n = 1..max_n, over the whole corpus)
        BP  = min(1, exp(1 - r / c))       r, c: total reference and hypothesis lengths
        BLEU = BP * exp(mean_n log p_n)    (0 when some p_n is 0: no smoothing)

    A hypothesis n-gram counts at most as often as it occurs in its reference ("clipped")."""
    if len(hypotheses) != len(references) or not hypotheses:
        raise ValueError(f"corpus_bleu: need as many references as hypotheses (and at least one), "
                         f"got {len(hypotheses)} and {len(references)}")
    matches, totals, hyp_len, ref_len = [0] * max_n, [0] * max_n, 0, 0
    for hyp, ref in zip(hypotheses, references):
        h, r = hyp.split(), ref.split()
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, max_n + 1):
            h_grams = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            r_grams = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            matches[n - 1] += sum(min(count, r_grams[g]) for g, count in h_grams.items())
            totals[n - 1] += max(len(h) - n + 1, 0)
    if hyp_len == 0 or min(matches) == 0:
        return 0.0
    brevity = min(1.0, math.exp(1 - ref_len / hyp_len))
    return brevity * math.exp(sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n)
