"""The NAS search space: genomes, validation, the built networks, parameter and FLOP counts, sampling, mutation."""

from __future__ import annotations

import random

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from karpa_lab.nas.space import (
    MUTATIONS,
    Genome,
    Space,
    build_model,
    count_flops,
    count_params,
    layer_shapes,
    skip_allowed,
)

CONV_SPACE = Space(depths=(1, 2, 3, 4), widths=(8, 16, 32), kernels=(0, 3, 5), activations=("relu", "tanh", "gelu"))


def some_genomes(n: int = 40, seed: int = 0) -> list[Genome]:
    rng = random.Random(seed)
    fixed = [Genome.mlp(64, 64), Genome.mlp(64, activation="tanh", skips=[True]),
             Genome.parse("c8k3-c8k5+-16-16+:gelu"), Genome.parse("c16k1:relu"), Genome.parse("c8k7-c8k7+:tanh")]
    return fixed + [CONV_SPACE.sample(rng) for _ in range(n)]


def test_key_round_trip():
    for g in some_genomes():
        assert Genome.parse(g.key) == g
    assert Genome.parse("c16k3-c16k3+-64:relu") == Genome((16, 16, 64), (3, 3, 0), (False, True, False), "relu")


@pytest.mark.parametrize("args, message", [
    (((), (), ()), "at least one hidden layer"),
    (((64, 64), (0,), (False, False)), "one entry per layer"),
    (((64,), (0,), (False,), "swish"), "unknown activation"),
    (((0,), (0,), (False,)), "positive integer"),
    (((16,), (4,), (False,)), "even"),
    (((16,), (9,), (False,)), "larger than the 8x8 image"),
    (((16, 16), (0, 3), (False, False)), "convolutions must come first"),
    (((32, 64), (0, 0), (False, True)), r"input \(32,\) and output \(64,\)"),
    (((16,), (3,), (True,)), r"input \(1, 8, 8\) and output \(16, 8, 8\)"),
    (((16, 16), (3, 0), (False, True)), "skip connection"),
    (((16,), (0,), (1,)), "True or False"),
])
def test_invalid_genomes_say_what_is_wrong(args, message):
    with pytest.raises(ValueError, match=message):
        Genome(*args)


def test_bad_keys():
    for key in ("64-64", "", ":relu", "64-x:relu", "c16:relu"):
        with pytest.raises(ValueError):
            Genome.parse(key)


def test_skip_rule():
    g = Genome.mlp(64, 32, 32)
    assert [skip_allowed(g, i) for i in range(3)] == [True, False, True]  # 64 pixels in -> 64 units out
    g = Genome.parse("c8k3-c8k3-8:relu")
    assert [skip_allowed(g, i) for i in range(3)] == [False, True, False]  # 8*4*4 features -> 8 units
    assert layer_shapes(g)[2] == ((128,), (8,))


def test_params_match_the_built_model():
    for g in some_genomes() + Space().all_genomes()[::7]:
        model = build_model(g)
        assert count_params(g) == sum(p.numel() for p in model.parameters()), g.key


def test_flops_match_torch_flop_counter():
    for g in some_genomes(20, seed=1):
        model = build_model(g)
        x = torch.rand(3, 1, 8, 8)
        with FlopCounterMode(display=False) as counter:
            model(x)
        assert count_flops(g) * 3 == counter.get_total_flops(), g.key


def test_forward_shapes_and_input_check():
    for g in some_genomes(10, seed=2):
        model = build_model(g)
        assert model(torch.rand(1, 1, 8, 8)).shape == (1, 10)
        assert model(torch.rand(5, 64)).shape == (5, 10)
        with pytest.raises(ValueError, match=r"expects digits of shape \(batch, 1, 8, 8\).*got \(2, 3, 8, 8\)"):
            model(torch.rand(2, 3, 8, 8))


def test_skip_is_a_residual():
    g = Genome.mlp(64, 64, skips=[False, True])
    model = build_model(g)
    x = torch.rand(4, 64)
    h1 = model.act(model.layers[0](x))
    expected = model.head(model.act(model.layers[1](h1)) + h1)
    torch.testing.assert_close(model(x), expected)


def test_benchmark_space_has_310_distinct_genomes():
    genomes = Space().all_genomes()
    assert len(genomes) == 310
    assert len({g.key for g in genomes}) == 310
    assert all(Space().contains(g) for g in genomes)


def test_all_genomes_of_a_conv_space_are_valid_and_distinct():
    space = Space(depths=(1, 2), widths=(8, 16), kernels=(0, 3), activations=("relu",))
    genomes = space.all_genomes()
    assert len({g.key for g in genomes}) == len(genomes)
    # depth 1: 2 dense (one 64-wide? no: 8, 16) + 2 conv; depth 2 layouts: dense-dense, conv-dense, conv-conv
    assert {g.kernels for g in genomes} == {(0,), (3,), (0, 0), (3, 0), (3, 3)}


def test_sample_stays_in_the_space():
    rng = random.Random(0)
    samples = [CONV_SPACE.sample(rng) for _ in range(300)]
    assert all(CONV_SPACE.contains(g) for g in samples)
    # every choice of the space shows up
    assert {g.depth for g in samples} == set(CONV_SPACE.depths)
    assert {w for g in samples for w in g.widths} == set(CONV_SPACE.widths)
    assert {k for g in samples for k in g.kernels} == set(CONV_SPACE.kernels)
    assert {g.activation for g in samples} == set(CONV_SPACE.activations)
    assert {s for g in samples for s in g.skips} == {False, True}


def edit_distance_is_one(parent: Genome, child: Genome) -> bool:
    """One width/kernel/activation/skip changed, or one layer inserted or removed (skips may be repaired)."""
    if child.activation != parent.activation:
        return (child.widths, child.kernels) == (parent.widths, parent.kernels)
    if child.depth == parent.depth:
        diffs = sum(a != b for a, b in zip(zip(parent.widths, parent.kernels), zip(child.widths, child.kernels)))
        return diffs == 1 or (diffs == 0 and sum(a != b for a, b in zip(parent.skips, child.skips)) == 1)
    longer, shorter = (child, parent) if child.depth > parent.depth else (parent, child)
    if longer.depth != shorter.depth + 1:
        return False
    layers = list(zip(longer.widths, longer.kernels))
    return any(layers[:i] + layers[i + 1:] == list(zip(shorter.widths, shorter.kernels)) for i in range(len(layers)))


@pytest.mark.parametrize("space", [Space(), CONV_SPACE], ids=["mlp", "conv"])
def test_mutation_is_one_valid_edit(space):
    rng = random.Random(1)
    used = set()
    for _ in range(400):
        parent = space.sample(rng)
        for op in space.mutations(parent):
            child = space.mutate(parent, rng, op)
            used.add(op)
            assert child != parent and space.contains(child), (op, parent.key, child.key)
            assert edit_distance_is_one(parent, child), (op, parent.key, child.key)
    assert used == set(MUTATIONS) - ({"kernel"} if space.kernels == (0,) else set())


def test_mutation_refuses_what_cannot_apply():
    space = Space()
    with pytest.raises(ValueError, match="remove_layer"):
        space.mutate(Genome.mlp(16), random.Random(0), "remove_layer")
    with pytest.raises(ValueError, match="no mutation"):
        Space(depths=(1,), widths=(16,), activations=("relu",), skips=False).mutate(Genome.mlp(16), random.Random(0))
