r"""Scenes drawn by code, with captions from a grammar: data for image captioning whose answers are known.

Each scene is a small RGB canvas with two shapes on a black background, side by side or one above the
other, and one caption that says what is there:

    "a red circle left of a blue square"      the first object named is the one on the left
    "a green triangle above a yellow circle"  the first object named is the one on top

so a caption is right or wrong exactly, attribute by attribute (:data:`ATTRIBUTES`: the two colours, the
two shapes and the relation). The vocabulary is :data:`WORDS`, 14 tokens with ``<pad>``, ``<bos>``
(begin) and ``<eos>`` (end); a caption is ``<bos> a red circle left of a blue square <eos>``, padded
with ``<pad>`` to the longest caption.

:func:`caption_splits` draws train, validation and test scenes, and a ``novel`` split of scenes that
contain a colour-shape pair never seen in training (:data:`HELD_OUT`): a model that composes colour and
shape captions it; one that memorised whole objects does not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, TensorDataset

COLOURS = ("red", "green", "blue", "yellow")
SHAPES = ("circle", "square", "triangle")
RELATIONS = ("left of", "above")
PAD, BOS, EOS = 0, 1, 2
WORDS = ("<pad>", "<bos>", "<eos>", "a", *COLOURS, *SHAPES, "left", "of", "above")
ATTRIBUTES = ("colour 1", "shape 1", "relation", "colour 2", "shape 2")
HELD_OUT = (("red", "square"), ("blue", "triangle"))  # never drawn in the train and validation scenes
RGB = torch.tensor([[0.95, 0.15, 0.1], [0.1, 0.85, 0.2], [0.2, 0.35, 1.0], [0.95, 0.9, 0.1]])
_INDEX = {w: i for i, w in enumerate(WORDS)}
_GRAMMAR = re.compile(rf"a ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)}) ({'|'.join(RELATIONS)}) "
                      rf"a ({'|'.join(COLOURS)}) ({'|'.join(SHAPES)})")
HALF = 4  # every shape spans 2 * HALF + 1 = 9 pixels
MAX_TOKENS = 11  # <bos> a red circle left of a blue square <eos>


def caption_of(attributes: Sequence[int]) -> str:
    """The caption of a scene from its five attribute ids (colour, shape, relation, colour, shape)."""
    c1, s1, rel, c2, s2 = (int(a) for a in attributes)
    return f"a {COLOURS[c1]} {SHAPES[s1]} {RELATIONS[rel]} a {COLOURS[c2]} {SHAPES[s2]}"


def parse_caption(caption: str) -> tuple[int, int, int, int, int] | None:
    """The five attribute ids a caption states, or ``None`` when it is not a sentence of the grammar."""
    match = _GRAMMAR.fullmatch(caption.strip())
    if match is None:
        return None
    c1, s1, rel, c2, s2 = match.groups()
    return COLOURS.index(c1), SHAPES.index(s1), RELATIONS.index(rel), COLOURS.index(c2), SHAPES.index(s2)


def encode(caption: str, length: int = MAX_TOKENS) -> torch.Tensor:
    """Words -> ids (length,) int64: ``<bos>``, the words, ``<eos>``, then ``<pad>`` up to ``length``."""
    unknown = [w for w in caption.split() if w not in _INDEX or _INDEX[w] <= EOS]
    if unknown:
        raise ValueError(f"encode: {unknown} are not caption words; the vocabulary is {WORDS[EOS + 1:]}")
    ids = [BOS, *(_INDEX[w] for w in caption.split()), EOS]
    if len(ids) > length:
        raise ValueError(f"encode: the caption needs {len(ids)} tokens with <bos> and <eos>, more than length={length}")
    return torch.tensor(ids + [PAD] * (length - len(ids)))


def decode(ids: Sequence[int] | torch.Tensor) -> str:
    """Ids -> the words, without ``<bos>`` and ``<pad>``, up to the first ``<eos>``."""
    words = []
    for i in (ids.tolist() if isinstance(ids, torch.Tensor) else ids):
        if i == EOS:
            break
        if not 0 <= i < len(WORDS):
            raise ValueError(f"decode: token id {i} is outside the vocabulary [0, {len(WORDS)})")
        if i not in (PAD, BOS):
            words.append(WORDS[i])
    return " ".join(words)


@dataclass
class CaptionScenes:
    """A set of scenes. ``images`` (N, 3, S, S) in [0, 1]; ``tokens`` (N, MAX_TOKENS) int64 captions;
    ``attributes`` (N, 5) ids as in :data:`ATTRIBUTES`; ``boxes`` (N, 2, 4) each object's pixel box
    (top, left, bottom, right), bottom and right exclusive, the first object named first."""

    images: torch.Tensor
    tokens: torch.Tensor
    attributes: torch.Tensor
    boxes: torch.Tensor

    def __len__(self) -> int:
        return len(self.images)

    def captions(self) -> list[str]:
        """The reference caption of every scene, as text."""
        return [caption_of(a) for a in self.attributes]

    def loader(self, batch_size: int = 64, shuffle: bool = True, seed: int = 0) -> DataLoader:
        """Batches of ``(images, tokens)``, reshuffled every epoch from ``seed``."""
        return DataLoader(TensorDataset(self.images, self.tokens), batch_size=batch_size, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(seed))


def _layout(n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Relation (n,), half-sizes (n, 2) and centres (n, 2, 2) as (y, x): object 0 left of / above object 1."""
    relation = torch.randint(0, 2, (n,), generator=g)
    half = torch.full((n, 2), HALF)
    lo, hi, spread = 4, size - 4, size // 2 - 8  # centres stay 4 pixels from the border; objects never touch
    along_0 = lo + torch.randint(0, spread, (n,), generator=g)  # the first object in the first half
    along_1 = size - 1 - lo - torch.randint(0, spread, (n,), generator=g)
    across = lo + (torch.rand(n, 2, generator=g) * (hi - lo)).long()
    across[:, 1] = (across[:, 0] + torch.randint(-2, 3, (n,), generator=g)).clamp(lo, hi - 1)  # roughly aligned
    horizontal = relation == 0  # "left of": same row, x increases; "above": same column, y increases
    y = torch.where(horizontal[:, None], across, torch.stack([along_0, along_1], 1))
    x = torch.where(horizontal[:, None], torch.stack([along_0, along_1], 1), across)
    return relation, half, torch.stack([y, x], dim=2)


def _draw(colours: torch.Tensor, shapes: torch.Tensor, half: torch.Tensor, centres: torch.Tensor, size: int,
          g: torch.Generator, noise: float) -> torch.Tensor:
    """Render (n, 3, size, size): circle dy^2 + dx^2 <= (r - 1/2)^2; square max(|dy|, |dx|) <= r - 1;
    triangle (apex up) -r <= dy <= r and |dx| <= (dy + r) / 2."""
    grid = torch.arange(size, dtype=torch.float32)
    images = torch.zeros(len(colours), 3, size, size)
    for k in range(2):
        dy = grid[None, :, None] - centres[:, k, 0, None, None].float()
        dx = grid[None, None, :] - centres[:, k, 1, None, None].float()
        r = half[:, k, None, None].float()
        masks = torch.stack([dy**2 + dx**2 <= (r - 0.5)**2,
                             torch.maximum(dy.abs(), dx.abs()) <= r - 1,
                             (dy.abs() <= r) & (dx.abs() <= (dy + r) / 2 + 0.25)], dim=1)
        mask = masks[torch.arange(len(shapes)), shapes[:, k]]  # (n, size, size)
        shade = RGB[colours[:, k]] * (0.8 + 0.2 * torch.rand(len(colours), 1, generator=g))
        images += mask[:, None].float() * shade[:, :, None, None]
    return (images + noise * torch.randn(images.shape, generator=g)).clamp(0, 1)


def make_scenes(n: int, size: int = 24, seed: int = 0, exclude: Sequence[tuple[str, str]] = (),
                require: Sequence[tuple[str, str]] = (), noise: float = 0.05) -> CaptionScenes:
    """Draw ``n`` scenes on a ``size`` x ``size`` canvas (``size`` >= 20).

    ``exclude``: (colour, shape) pairs that appear in none of the scenes; ``require``: pairs of which every
    scene shows at least one. Colours, shapes, sizes and places are drawn from ``seed``, uniformly."""
    if size < 20:
        raise ValueError(f"make_scenes: size must be >= 20 pixels so that two shapes fit side by side, got {size}")
    if n < 1:
        raise ValueError(f"make_scenes: n must be >= 1, got {n}")
    pair_id = lambda pairs: {COLOURS.index(c) * len(SHAPES) + SHAPES.index(s) for c, s in pairs}
    excluded, required = pair_id(exclude), pair_id(require)
    if excluded & required:
        raise ValueError(f"make_scenes: a pair cannot be both excluded and required: {exclude} and {require}")
    if len(excluded) == len(COLOURS) * len(SHAPES):
        raise ValueError("make_scenes: every colour-shape pair is excluded; no scene can be drawn")
    g = torch.Generator().manual_seed(seed)
    colours, shapes = torch.empty(0, 2, dtype=torch.long), torch.empty(0, 2, dtype=torch.long)
    while len(colours) < n:  # rejection sampling: draw 4n scenes, keep those that obey exclude and require
        c = torch.randint(0, len(COLOURS), (4 * n, 2), generator=g)
        s = torch.randint(0, len(SHAPES), (4 * n, 2), generator=g)
        ids = c * len(SHAPES) + s
        keep = ~torch.isin(ids, torch.tensor(sorted(excluded), dtype=torch.long)).any(1)
        if required:
            keep &= torch.isin(ids, torch.tensor(sorted(required), dtype=torch.long)).any(1)
        colours, shapes = torch.cat([colours, c[keep]]), torch.cat([shapes, s[keep]])
    colours, shapes = colours[:n], shapes[:n]
    relation, half, centres = _layout(n, size, g)
    images = _draw(colours, shapes, half, centres, size, g, noise)
    attributes = torch.stack([colours[:, 0], shapes[:, 0], relation, colours[:, 1], shapes[:, 1]], dim=1)
    boxes = torch.cat([centres - half[..., None], centres + half[..., None] + 1], dim=2)  # (n, 2, 4)
    tokens = torch.stack([encode(caption_of(a)) for a in attributes])
    return CaptionScenes(images, tokens, attributes, boxes)


def caption_splits(n_train: int = 4000, n_eval: int = 500, size: int = 24, seed: int = 0,
                   held_out: Sequence[tuple[str, str]] = HELD_OUT) -> dict[str, CaptionScenes]:
    """``train`` (n_train scenes), ``val`` and ``test`` (n_eval each) without the ``held_out`` pairs, and
    ``novel`` (n_eval scenes, each showing at least one held-out pair). Every split from its own seed,
    so no scene is shared."""
    return {"train": make_scenes(n_train, size, seed, exclude=held_out),
            "val": make_scenes(n_eval, size, seed + 1, exclude=held_out),
            "test": make_scenes(n_eval, size, seed + 2, exclude=held_out),
            "novel": make_scenes(n_eval, size, seed + 3, require=held_out)}


def score_captions(captions: Sequence[str], attributes: torch.Tensor) -> dict[str, float]:
    """How right the captions are: ``exact`` (all five attributes), each of :data:`ATTRIBUTES`, and
    ``grammatical`` (the share that parse). A caption that does not parse gets every attribute wrong."""
    if len(captions) != len(attributes):
        raise ValueError(f"score_captions: {len(captions)} captions for {len(attributes)} scenes")
    parsed = [parse_caption(c) for c in captions]
    right = torch.tensor([[p is not None and p[k] == int(a[k]) for k in range(len(ATTRIBUTES))]
                          for p, a in zip(parsed, attributes)], dtype=torch.float32)
    scores = {"exact": float(right.all(dim=1).float().mean())}
    scores.update({name: float(right[:, k].mean()) for k, name in enumerate(ATTRIBUTES)})
    scores["grammatical"] = sum(p is not None for p in parsed) / len(parsed)
    return scores
