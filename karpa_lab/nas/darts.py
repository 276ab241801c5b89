r"""One-shot, differentiable architecture search in the style of DARTS (Liu, Simonyan & Yang, 2019).

A cell is a small DAG over feature vectors: node 0 is the stem's output (B, C); intermediate node
j = 1..N sums one operation per earlier node, and the cell's output concatenates the intermediate nodes
(B, N C) for the linear head. (DARTS's cells work on convolutional feature maps; on a laptop CPU the
same algorithm on vectors runs thirty times faster, and nothing in it depends on what an operation is.)
Instead of choosing each edge's operation, DARTS mixes all candidates o in O with softmax weights of
architecture parameters alpha_{ij} (|O|,):

    xbar_{ij}(x) = sum_o  softmax(alpha_{ij})_o  o(x)         x (B, C) -> (B, C)
    x_j          = sum_{i<j} xbar_{ij}(x_i)

so one supernet contains every cell of the space, and the choice becomes continuous. The weights w and
the architecture alpha are fitted on two halves of the training split, a bilevel problem

    min_alpha  L_A(w*(alpha), alpha)    s.t.  w*(alpha) = argmin_w  L_W(w, alpha)

solved by alternating one gradient step on alpha (on a batch of half A) and one on w (half W). The
first-order approximation takes d L_A / d alpha at the current w, ignoring how w*(alpha) moves
(second-order DARTS adds a finite-difference Hessian-vector term for that). The validation split stays
untouched for comparing the derived cell with others, and the test split for the very end.

Deriving the discrete cell: on each edge keep the strongest operation other than "none"; for each node
keep the ``k`` incoming edges (2 in DARTS) whose strongest operation weighs most. Retrain it from scratch.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab.data.digits import DigitsSplits
from karpa_lab.nas.space import IMAGE_SIZE, N_CLASSES

OPS = ("none", "skip", "linear", "linear_relu", "linear_tanh")


class Zero(nn.Module):
    """The "none" operation: the edge carries nothing (its weight lets DARTS switch an edge off)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


def make_op(name: str, width: int) -> nn.Module:
    """One candidate operation, (B, C) -> (B, C): nothing, the identity, or a linear layer C -> C
    followed by no activation, a ReLU or a tanh."""
    layers = {"none": Zero, "skip": nn.Identity,
              "linear": lambda: nn.Linear(width, width),
              "linear_relu": lambda: nn.Sequential(nn.Linear(width, width), nn.ReLU()),
              "linear_tanh": lambda: nn.Sequential(nn.Linear(width, width), nn.Tanh())}
    if name not in layers:
        raise ValueError(f"unknown operation {name!r}; choose from {tuple(layers)}")
    return layers[name]()


def edges_of(nodes: int) -> list[tuple[int, int]]:
    """The edges (i, j), i < j, of a cell with ``nodes`` intermediate nodes, in the order alpha stores them."""
    if nodes < 1:
        raise ValueError(f"a cell needs at least one intermediate node, got {nodes}")
    return [(i, j) for j in range(1, nodes + 1) for i in range(j)]


class MixedOp(nn.Module):
    """Every candidate operation on one edge, mixed: sum_o w_o o(x) for weights w (|O|,) summing to 1."""

    def __init__(self, width: int, ops: Sequence[str] = OPS):
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, width) for name in ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if weights.shape != (len(self.ops),):
            raise ValueError(f"MixedOp needs one weight per operation, shape ({len(self.ops)},); "
                             f"got {tuple(weights.shape)}")
        return sum(w * op(x) for w, op in zip(weights, self.ops))


class _Net(nn.Module):
    """Stem and head around a cell: pixels x (B, 64) -> stem ReLU(linear) (B, C) -> cell, whose
    intermediate nodes are concatenated (B, N C) -> linear head -> logits (B, 10)."""

    def __init__(self, width: int, nodes: int):
        super().__init__()
        self.width, self.nodes = width, nodes
        self.stem = nn.Sequential(nn.Linear(IMAGE_SIZE * IMAGE_SIZE, width), nn.ReLU())
        self.head = nn.Linear(nodes * width, N_CLASSES)

    def _check(self, x: torch.Tensor) -> torch.Tensor:
        pixels = IMAGE_SIZE * IMAGE_SIZE
        if x.dim() == 4 and x.shape[1:].numel() == pixels:
            x = x.flatten(1)
        if x.dim() != 2 or x.shape[1] != pixels:
            raise ValueError(f"expects digits (batch, 1, 8, 8) or (batch, {pixels}), got {tuple(x.shape)}")
        return x

    def _finish(self, states: list[torch.Tensor]) -> torch.Tensor:
        return self.head(torch.cat(states[1:], dim=1))


class SuperNet(_Net):
    """The one-shot model: a cell whose every edge is a :class:`MixedOp`, with architecture parameters
    ``alpha`` of shape (edges, ops) kept apart from the weights (:meth:`weight_parameters`)."""

    def __init__(self, width: int = 32, nodes: int = 3, ops: Sequence[str] = OPS):
        super().__init__(width, nodes)
        self.op_names = tuple(ops)
        self.edges = edges_of(nodes)
        self.mixed = nn.ModuleList(MixedOp(width, ops) for _ in self.edges)
        self.alpha = nn.Parameter(1e-3 * torch.randn(len(self.edges), len(ops)))

    def weight_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "alpha"]

    def arch_weights(self) -> torch.Tensor:
        """softmax(alpha) per edge, shape (edges, ops): how much each operation counts on each edge."""
        return self.alpha.softmax(dim=-1)

    @contextmanager
    def fixed_to(self, genotype: Genotype, saturation: float = 1e4) -> Iterator[SuperNet]:
        """The supernet computing exactly ``genotype``'s cell with the shared weights: alpha saturated on each
        kept edge's operation and on "none" for every other edge (softmax weights 1 and 0 to float precision).
        alpha is put back on exit. Scoring cells this way is the one-shot accuracy of lesson 11."""
        if "none" not in self.op_names:
            raise ValueError(f"fixed_to needs a 'none' operation to drop edges; this supernet has {self.op_names}")
        alpha = torch.full_like(self.alpha, -saturation)
        alpha[:, self.op_names.index("none")] = saturation
        for i, j, op in genotype.edges:
            if (i, j) not in self.edges or op not in self.op_names:
                raise ValueError(f"edge {i}->{j}: {op} is not in this supernet ({len(self.edges)} edges, "
                                 f"operations {self.op_names})")
            e = self.edges.index((i, j))
            alpha[e] = -saturation
            alpha[e, self.op_names.index(op)] = saturation
        saved = self.alpha.detach().clone()
        with torch.no_grad():
            self.alpha.copy_(alpha)
        try:
            yield self
        finally:
            with torch.no_grad():
                self.alpha.copy_(saved)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [self.stem(self._check(x))]
        weights = self.arch_weights()
        e = 0
        for j in range(1, self.nodes + 1):
            states.append(sum(self.mixed[e + i](states[i], weights[e + i]) for i in range(j)))
            e += j
        return self._finish(states)


@dataclass(frozen=True)
class Genotype:
    """A discrete cell: ``(input node i, node j, operation)`` for each kept edge."""

    edges: tuple[tuple[int, int, str], ...]
    nodes: int

    def __str__(self) -> str:
        return ", ".join(f"{i}->{j}: {op}" for i, j, op in self.edges)


def derive(weights: torch.Tensor | np.ndarray, nodes: int, ops: Sequence[str] = OPS, k: int = 2) -> Genotype:
    """The discrete cell of DARTS from the mixing weights (edges, ops): per edge the strongest op other
    than "none"; per node the ``k`` incoming edges (fewer if it has fewer) with the strongest such op."""
    w = np.asarray(weights.detach() if isinstance(weights, torch.Tensor) else weights, dtype=float)
    edges = edges_of(nodes)
    if w.shape != (len(edges), len(ops)):
        raise ValueError(f"weights must be (edges={len(edges)}, ops={len(ops)}) for {nodes} nodes, got {w.shape}")
    usable = [o for o, name in enumerate(ops) if name != "none"]
    kept = []
    for j in range(1, nodes + 1):
        incoming = [(e, i) for e, (i, jj) in enumerate(edges) if jj == j]
        best = sorted(incoming, key=lambda ei: -w[ei[0], usable].max())[:min(k, j)]
        for e, i in sorted(best, key=lambda ei: ei[1]):
            kept.append((i, j, ops[usable[int(np.argmax(w[e, usable]))]]))
    return Genotype(tuple(kept), nodes)


def random_genotype(rng: random.Random, nodes: int = 3, ops: Sequence[str] = OPS, k: int = 2) -> Genotype:
    """A cell of the same shape as :func:`derive` gives (``k`` inputs per node), edges and ops drawn at random."""
    usable = [name for name in ops if name != "none"]
    kept = []
    for j in range(1, nodes + 1):
        for i in sorted(rng.sample(range(j), min(k, j))):
            kept.append((i, j, rng.choice(usable)))
    return Genotype(tuple(kept), nodes)


class CellNet(_Net):
    """The network of a discrete :class:`Genotype`, trained from scratch."""

    def __init__(self, genotype: Genotype, width: int = 32):
        super().__init__(width, genotype.nodes)
        self.genotype = genotype
        for j in range(1, genotype.nodes + 1):
            if not any(jj == j for _, jj, _ in genotype.edges):
                raise ValueError(f"node {j} of the cell has no input edge: {genotype}")
        self.ops = nn.ModuleList(make_op(op, width) for _, _, op in genotype.edges)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [self.stem(self._check(x))]
        for j in range(1, self.nodes + 1):
            states.append(sum(op(states[i]) for op, (i, jj, _) in zip(self.ops, self.genotype.edges) if jj == j))
        return self._finish(states)


# --------------------------------------------------------------------------------- the search
def search_batches(data: DigitsSplits, batch_size: int = 64, seed: int = 0) -> Callable[[], tuple]:
    """Batches for the bilevel search: ``((x_W, y_W), (x_A, y_A))`` from two fixed halves of the
    training split, half W for the weights and half A for alpha (DARTS splits its training set alike)."""
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(data.y_train), generator=gen)
    half_w, half_a = perm[: len(perm) // 2], perm[len(perm) // 2:]

    def draw(half: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = half[torch.randint(len(half), (batch_size,), generator=gen)]
        return data.x_train[idx], data.y_train[idx]

    return lambda: (draw(half_w), draw(half_a))


class DartsSearch:
    """First-order DARTS updates for ``fit(supernet, batches, steps=..., update_fn=search.update)``.

    Each step: one Adam step on alpha with the loss of a batch of half A, then one Adam step on the
    weights with the loss of a batch of half W. ``history`` keeps softmax(alpha) every ``record_every`` steps.
    """

    def __init__(self, supernet: SuperNet, w_lr: float = 3e-3, alpha_lr: float = 3e-3, clip_grad: float = 5.0,
                 record_every: int = 10):
        self.net = supernet
        self.w_opt = torch.optim.Adam(supernet.weight_parameters(), lr=w_lr)
        self.alpha_opt = torch.optim.Adam([supernet.alpha], lr=alpha_lr, betas=(0.5, 0.999))
        self.clip_grad, self.record_every = clip_grad, record_every
        self.steps = 0
        self.history: list[tuple[int, np.ndarray]] = [(0, supernet.arch_weights().detach().cpu().numpy())]

    def state_dict(self) -> dict[str, Any]:
        """Both optimizers, the step count and the recorded alphas: what ``fit(checkpoint=...)`` saves."""
        return {"w_opt": self.w_opt.state_dict(), "alpha_opt": self.alpha_opt.state_dict(), "steps": self.steps,
                "history": [(s, torch.from_numpy(a)) for s, a in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.w_opt.load_state_dict(state["w_opt"])
        self.alpha_opt.load_state_dict(state["alpha_opt"])
        self.steps = state["steps"]
        self.history = [(s, a.numpy()) for s, a in state["history"]]

    def update(self, model: nn.Module, batch) -> dict[str, torch.Tensor]:
        (x_w, y_w), (x_a, y_a) = batch
        # alpha step, first order: d L_A(w, alpha) / d alpha at the current weights w
        self.alpha_opt.zero_grad(set_to_none=True)
        loss_a = F.cross_entropy(model(x_a), y_a)
        loss_a.backward()
        self.alpha_opt.step()
        # weight step (zero_grad also drops what the alpha step's backward left in the weights)
        self.w_opt.zero_grad(set_to_none=True)
        loss_w = F.cross_entropy(model(x_w), y_w)
        loss_w.backward()
        nn.utils.clip_grad_norm_(self.net.weight_parameters(), self.clip_grad)
        self.w_opt.step()
        self.steps += 1
        if self.steps % self.record_every == 0:
            self.history.append((self.steps, self.net.arch_weights().detach().cpu().numpy()))
        return {"loss": loss_w.detach(), "alpha_loss": loss_a.detach()}
