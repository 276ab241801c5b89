r"""The search space: small MLP / convolutional networks for the 8x8 digits, described by a genome.

A genome lists the hidden layers in order. Layer ``i`` has a width ``w_i`` (units of a dense layer, or
channels of a convolution), a kernel ``k_i`` (0 for a dense layer, an odd ``k`` for a ``k x k``
convolution with 'same' padding), and a skip bit (a residual connection around the layer). One
activation is shared by all layers. The network for input images x (B, 1, 8, 8) is

    h_0 = x                                          (B, 1, 8, 8)
    h_i = act(layer_i(h_{i-1})) [+ h_{i-1} if skip_i]  conv: (B, w_i, 8, 8); dense: (B, w_i)
    logits = head(h_L)                               (B, 10)

Convolutions come first; before the first dense layer (or the head) the image is average-pooled 2x2 to
4x4 and flattened, so a conv stage of C channels hands C * 16 features on. Parameters and FLOPs per
image (a multiply-add counted as 2 FLOPs, as ``torch.utils.flop_counter`` does; biases, activations
and pooling not counted):

    dense d_in -> d_out:         params d_in d_out + d_out        FLOPs 2 d_in d_out
    conv C_in -> C_out, k x k:   params k^2 C_in C_out + C_out    FLOPs 2 k^2 C_in C_out H W   (H = W = 8)

A short string names a genome: ``"c16k3-c16k3+-64:relu"`` is two 3x3 convolutions of 16 channels
(the second with a skip connection), then a dense layer of 64 units, all with ReLU.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import torch
from torch import nn

IMAGE_SIZE = 8
IN_CHANNELS = 1
N_CLASSES = 10
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


@dataclass(frozen=True)
class Genome:
    """An architecture: hidden-layer ``widths``, ``kernels`` (0 = dense, odd k = k x k conv), ``skips``
    (residual around each layer) and one ``activation``. Built with :func:`build_model`."""

    widths: tuple[int, ...]
    kernels: tuple[int, ...]
    skips: tuple[bool, ...]
    activation: str = "relu"

    def __post_init__(self):
        for name in ("widths", "kernels", "skips"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        validate(self)

    @classmethod
    def mlp(cls, *widths: int, activation: str = "relu", skips: Sequence[bool] | None = None) -> Genome:
        """A plain MLP: ``Genome.mlp(64, 64)`` is 64 -> 64 -> 64 -> 10 (pixels, two hidden layers, classes)."""
        return cls(widths, (0,) * len(widths), tuple(skips) if skips is not None else (False,) * len(widths),
                   activation)

    @property
    def depth(self) -> int:
        return len(self.widths)

    @property
    def key(self) -> str:
        """The genome as a short string, e.g. ``"c16k3-64+:relu"``; :meth:`parse` reads it back."""
        layers = [(f"c{w}k{k}" if k else str(w)) + ("+" if s else "")
                  for w, k, s in zip(self.widths, self.kernels, self.skips)]
        return "-".join(layers) + ":" + self.activation

    @classmethod
    def parse(cls, key: str) -> Genome:
        """The genome named by ``key`` (the format of :attr:`key`)."""
        layers, sep, activation = key.partition(":")
        if not sep or not layers:
            raise ValueError(f"a genome key looks like 'c16k3-64+:relu' (layers, ':', activation); got {key!r}")
        widths, kernels, skips = [], [], []
        for part in layers.split("-"):
            skip = part.endswith("+")
            body = part.rstrip("+")
            try:
                if body.startswith("c"):
                    w, k = body[1:].split("k")
                    widths.append(int(w))
                    kernels.append(int(k))
                else:
                    widths.append(int(body))
                    kernels.append(0)
            except ValueError:
                raise ValueError(
                    f"cannot read layer {part!r} of genome key {key!r}: use '64', '64+' or 'c16k3'"
                ) from None
            skips.append(skip)
        return cls(tuple(widths), tuple(kernels), tuple(skips), activation)

    def __str__(self) -> str:
        return self.key


def layer_shapes(genome: Genome) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(input shape, output shape) of each hidden layer for one image, e.g. ((1, 8, 8), (16, 8, 8)).

    The flatten (and 2x2 pool after convolutions) in front of the first dense layer is part of that layer's input.
    """
    shapes = []
    shape: tuple[int, ...] = (IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    for w, k in zip(genome.widths, genome.kernels):
        if k:
            out: tuple[int, ...] = (w, IMAGE_SIZE, IMAGE_SIZE)
        else:
            if len(shape) == 3:
                shape = (_flat_features(shape),)
            out = (w,)
        shapes.append((shape, out))
        shape = out
    return shapes


def _flat_features(shape: tuple[int, ...]) -> int:
    """Features after flattening: the raw 64 pixels, or C * 4 * 4 after the 2x2 pool of a conv stage."""
    c = shape[0]
    return IMAGE_SIZE * IMAGE_SIZE if c == IN_CHANNELS else c * (IMAGE_SIZE // 2) ** 2


def validate(genome: Genome) -> None:
    """Raise ``ValueError`` saying what is wrong when ``genome`` does not describe a network we can build."""
    n = len(genome.widths)
    if n == 0:
        raise ValueError("a genome needs at least one hidden layer (depth >= 1); widths=() has none")
    if len(genome.kernels) != n or len(genome.skips) != n:
        raise ValueError(
            f"widths, kernels and skips need one entry per layer: got {n} widths, {len(genome.kernels)} kernels "
            f"and {len(genome.skips)} skips"
        )
    if genome.activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {genome.activation!r}; choose one of {sorted(ACTIVATIONS)}")
    seen_dense = False
    for i, (w, k, s) in enumerate(zip(genome.widths, genome.kernels, genome.skips)):
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise ValueError(f"layer {i}: width must be a positive integer, got {w!r}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"layer {i}: kernel must be 0 (dense) or an odd integer, got {k!r}")
        if k:
            if k % 2 == 0:
                raise ValueError(f"layer {i}: kernel {k} is even; 'same' padding needs an odd kernel (1, 3, 5, 7)")
            if k > IMAGE_SIZE:
                raise ValueError(f"layer {i}: kernel {k} is larger than the {IMAGE_SIZE}x{IMAGE_SIZE} image")
            if seen_dense:
                raise ValueError(
                    f"layer {i}: a {k}x{k} convolution after a dense layer; convolutions must come first "
                    "(the first dense layer flattens the image)"
                )
        else:
            seen_dense = True
        if not isinstance(s, bool):
            raise ValueError(f"layer {i}: skip must be True or False, got {s!r}")
    for i, ((shape_in, shape_out), s) in enumerate(zip(layer_shapes(genome), genome.skips)):
        if s and shape_in != shape_out:
            raise ValueError(
                f"layer {i} has a skip connection, but its input {shape_in} and output {shape_out} differ in "
                "shape; a residual x + f(x) needs equal shapes (same width, and conv after conv)"
            )


def skip_allowed(genome: Genome, i: int) -> bool:
    """Whether layer ``i`` of ``genome`` may carry a skip connection (its input and output shapes match)."""
    shape_in, shape_out = layer_shapes(genome)[i]
    return shape_in == shape_out


class GenomeNet(nn.Module):
    """The network a :class:`Genome` describes. Takes digits (B, 1, 8, 8) or flattened (B, 64)."""

    def __init__(self, genome: Genome):
        super().__init__()
        self.genome = genome
        self.layers = nn.ModuleList()
        for (shape_in, _), w, k in zip(layer_shapes(genome), genome.widths, genome.kernels):
            self.layers.append(nn.Conv2d(shape_in[0], w, k, padding=k // 2) if k else nn.Linear(shape_in[0], w))
        self.act = ACTIVATIONS[genome.activation]()
        last = layer_shapes(genome)[-1][1]
        self.head = nn.Linear(_flat_features(last) if len(last) == 3 else last[0], N_CLASSES)

    @staticmethod
    def _flatten(h: torch.Tensor) -> torch.Tensor:
        if h.shape[1] != IN_CHANNELS:
            h = nn.functional.avg_pool2d(h, 2)
        return h.flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pixels = IMAGE_SIZE * IMAGE_SIZE
        if x.dim() == 2 and x.shape[1] == pixels:
            x = x.view(-1, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
        if x.dim() != 4 or x.shape[1:] != (IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"{self.genome.key} expects digits of shape (batch, {IN_CHANNELS}, {IMAGE_SIZE}, {IMAGE_SIZE}) "
                f"or (batch, {pixels}), got {tuple(x.shape)}"
            )
        h = x
        for layer, k, skip in zip(self.layers, self.genome.kernels, self.genome.skips):
            if not k and h.dim() == 4:
                h = self._flatten(h)
            out = self.act(layer(h))
            h = out + h if skip else out
        if h.dim() == 4:
            h = self._flatten(h)
        return self.head(h)


def build_model(genome: Genome | str) -> GenomeNet:
    """The ``nn.Module`` of a genome (or of its key string)."""
    return GenomeNet(Genome.parse(genome) if isinstance(genome, str) else genome)


def count_params(genome: Genome) -> int:
    """Trainable parameters, from the formulas in the module docstring (equal to the built model's)."""
    total = 0
    for (shape_in, _), w, k in zip(layer_shapes(genome), genome.widths, genome.kernels):
        total += (k * k * shape_in[0] * w if k else shape_in[0] * w) + w
    last = layer_shapes(genome)[-1][1]
    features = _flat_features(last) if len(last) == 3 else last[0]
    return total + features * N_CLASSES + N_CLASSES


def count_flops(genome: Genome) -> int:
    """FLOPs of one forward pass for one image (2 per multiply-add; the head included)."""
    total = 0
    for (shape_in, _), w, k in zip(layer_shapes(genome), genome.widths, genome.kernels):
        total += 2 * k * k * shape_in[0] * w * IMAGE_SIZE * IMAGE_SIZE if k else 2 * shape_in[0] * w
    last = layer_shapes(genome)[-1][1]
    features = _flat_features(last) if len(last) == 3 else last[0]
    return total + 2 * features * N_CLASSES


# ---------------------------------------------------------------------------------- the space
MUTATIONS = ("width", "kernel", "activation", "skip", "add_layer", "remove_layer")


@dataclass(frozen=True)
class Space:
    """Which genomes a search may propose: the choices for depth, width, kernel and activation.

    Skip bits are free wherever :func:`skip_allowed`. ``kernels=(0,)`` is an MLP-only space.
    """

    depths: tuple[int, ...] = (1, 2, 3)
    widths: tuple[int, ...] = (16, 32, 64, 128)
    kernels: tuple[int, ...] = (0,)
    activations: tuple[str, ...] = ("relu", "tanh")
    skips: bool = True

    def __post_init__(self):
        if not self.depths or min(self.depths) < 1:
            raise ValueError(f"depths must be positive, got {self.depths}")
        if not self.kernels or not self.widths or not self.activations:
            raise ValueError("kernels, widths and activations each need at least one choice")
        for k in self.kernels:
            validate(Genome((8,), (k,), (False,)))
        for a in self.activations:
            if a not in ACTIVATIONS:
                raise ValueError(f"unknown activation {a!r}; choose from {sorted(ACTIVATIONS)}")

    @property
    def conv_kernels(self) -> tuple[int, ...]:
        return tuple(k for k in self.kernels if k)

    def contains(self, genome: Genome) -> bool:
        """Whether every choice of ``genome`` is one this space offers."""
        return (genome.depth in self.depths and all(w in self.widths for w in genome.widths)
                and all(k in self.kernels for k in genome.kernels) and genome.activation in self.activations
                and (self.skips or not any(genome.skips)))

    def _layouts(self, depth: int) -> Iterator[tuple[int, ...]]:
        """Kernel sequences of a given depth with the convolutions first."""
        convs = self.conv_kernels
        for n_conv in range(depth + 1):
            if n_conv and not convs:
                continue
            if n_conv < depth and 0 not in self.kernels:
                continue
            for ks in itertools.product(convs, repeat=n_conv):
                yield ks + (0,) * (depth - n_conv)

    def all_genomes(self) -> list[Genome]:
        """Every genome of the space (for small spaces: the tabular benchmark trains them all)."""
        out = []
        for depth in self.depths:
            for kernels in self._layouts(depth):
                for widths in itertools.product(self.widths, repeat=depth):
                    base = Genome(widths, kernels, (False,) * depth, self.activations[0])
                    free = [i for i in range(depth) if self.skips and skip_allowed(base, i)]
                    for bits in itertools.product((False, True), repeat=len(free)):
                        skips = [False] * depth
                        for i, b in zip(free, bits):
                            skips[i] = b
                        for act in self.activations:
                            out.append(Genome(widths, kernels, tuple(skips), act))
        return out

    def sample(self, rng: random.Random) -> Genome:
        """A random genome: depth, then how many layers are convolutions, then each choice uniformly."""
        depth = rng.choice(self.depths)
        kernels = rng.choice(list(self._layouts(depth)))
        widths = tuple(rng.choice(self.widths) for _ in range(depth))
        genome = Genome(widths, kernels, (False,) * depth, rng.choice(self.activations))
        skips = tuple(self.skips and skip_allowed(genome, i) and rng.random() < 0.5 for i in range(depth))
        return replace(genome, skips=skips)

    def _repair(self, widths, kernels, skips, activation) -> Genome:
        """Build a genome, dropping skip bits that the new shapes no longer allow."""
        plain = Genome(tuple(widths), tuple(kernels), (False,) * len(widths), activation)
        return replace(plain, skips=tuple(bool(s) and skip_allowed(plain, i) for i, s in enumerate(skips)))

    def mutations(self, genome: Genome) -> list[str]:
        """The mutation operators that can change ``genome`` within this space."""
        ops = []
        if len(self.widths) > 1:
            ops.append("width")
        if any(self._kernel_choices(genome, i) for i in range(genome.depth)):
            ops.append("kernel")
        if len(self.activations) > 1:
            ops.append("activation")
        if self.skips and any(skip_allowed(genome, i) for i in range(genome.depth)):
            ops.append("skip")
        if genome.depth < max(self.depths) and genome.depth + 1 in self.depths:
            ops.append("add_layer")
        if genome.depth > min(self.depths) and genome.depth - 1 in self.depths:
            ops.append("remove_layer")
        return ops

    def _kernel_choices(self, genome: Genome, i: int) -> list[int]:
        """Other kernels layer ``i`` may take while keeping the convolutions first."""
        ks = genome.kernels
        conv_before = all(k for k in ks[:i])
        dense_after = all(k == 0 for k in ks[i + 1:])
        return [k for k in self.kernels if k != ks[i] and (k == 0 and dense_after or k and conv_before)]

    def mutate(self, genome: Genome, rng: random.Random, op: str | None = None) -> Genome:
        """A child that differs from ``genome`` by one edit (Real et al. 2019 mutate one choice at a time).

        ``op`` is one of :data:`MUTATIONS` (default: a random applicable one): change one layer's width or
        kernel, the activation, flip one skip bit, insert a copy of a layer with a new width, remove a layer.
        """
        ops = self.mutations(genome)
        if not ops:
            raise ValueError(f"no mutation can change {genome.key} within this space")
        op = op or rng.choice(ops)
        if op not in ops:
            raise ValueError(f"mutation {op!r} cannot change {genome.key} here; applicable: {ops}")
        w, k, s, a = list(genome.widths), list(genome.kernels), list(genome.skips), genome.activation
        if op == "width":
            i = rng.randrange(genome.depth)
            w[i] = rng.choice([x for x in self.widths if x != w[i]])
        elif op == "kernel":
            i = rng.choice([i for i in range(genome.depth) if self._kernel_choices(genome, i)])
            k[i] = rng.choice(self._kernel_choices(genome, i))
        elif op == "activation":
            a = rng.choice([x for x in self.activations if x != a])
        elif op == "skip":
            i = rng.choice([i for i in range(genome.depth) if skip_allowed(genome, i)])
            s[i] = not s[i]
        elif op == "add_layer":
            i = rng.randrange(genome.depth)
            w.insert(i + 1, rng.choice(self.widths))
            k.insert(i + 1, k[i])
            s.insert(i + 1, False)
        else:
            i = rng.randrange(genome.depth)
            del w[i], k[i], s[i]
        return self._repair(w, k, s, a)
