"""DARTS: the mixed operation, the supernet containing every cell, deriving, and the first-order update."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from karpa_lab.data.digits import DigitsSplits
from karpa_lab.nas.darts import (
    OPS,
    CellNet,
    DartsSearch,
    Genotype,
    MixedOp,
    SuperNet,
    derive,
    edges_of,
    make_op,
    random_genotype,
    search_batches,
)


def test_ops_against_torch_functional():
    torch.manual_seed(0)
    x = torch.randn(5, 6)
    for name, ref in [("linear", lambda op: F.linear(x, op.weight, op.bias)),
                      ("linear_relu", lambda op: F.relu(F.linear(x, op[0].weight, op[0].bias))),
                      ("linear_tanh", lambda op: torch.tanh(F.linear(x, op[0].weight, op[0].bias)))]:
        op = make_op(name, 6)
        torch.testing.assert_close(op(x), ref(op))
    assert torch.equal(make_op("skip", 6)(x), x) and torch.equal(make_op("none", 6)(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="unknown operation"):
        make_op("conv_3x3", 6)


def test_mixed_op_is_the_weighted_sum():
    torch.manual_seed(1)
    mixed = MixedOp(4)
    x = torch.randn(1, 4)
    w = torch.softmax(torch.randn(len(OPS)), 0)
    expected = sum(w[o] * mixed.ops[o](x) for o in range(len(OPS)))
    torch.testing.assert_close(mixed(x, w), expected)
    for o in range(len(OPS)):  # one-hot weights select one operation
        torch.testing.assert_close(mixed(x, F.one_hot(torch.tensor(o), len(OPS)).float()), mixed.ops[o](x))
    with pytest.raises(ValueError, match=r"one weight per operation, shape \(5,\); got \(3,\)"):
        mixed(x, torch.ones(3))


def test_edges():
    assert edges_of(3) == [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3)]
    with pytest.raises(ValueError):
        edges_of(0)


def test_supernet_shapes_and_parameter_groups():
    net = SuperNet(width=8, nodes=3)
    assert net(torch.rand(1, 1, 8, 8)).shape == (1, 10) and net(torch.rand(7, 64)).shape == (7, 10)
    assert net.alpha.shape == (6, len(OPS))
    ids = {id(p) for p in net.weight_parameters()}
    assert id(net.alpha) not in ids and len(ids) == len(list(net.parameters())) - 1
    with pytest.raises(ValueError, match=r"expects digits.*got \(2, 10\)"):
        net(torch.rand(2, 10))


def test_derive_keeps_the_strongest_non_none_edges():
    # 3 nodes, 6 edges; "none" is the largest everywhere but must never be chosen
    w = torch.full((6, len(OPS)), 0.01)
    w[:, 0] = 0.9
    w[0, 2] = 0.5                      # 0->1: linear
    w[1, 3], w[2, 4] = 0.3, 0.2        # 0->2: linear_relu, 1->2: linear_tanh
    w[3, 1], w[4, 2], w[5, 3] = 0.05, 0.4, 0.3  # node 3 keeps 1->3 and 2->3, drops 0->3
    g = derive(w, nodes=3)
    assert g.edges == ((0, 1, "linear"), (0, 2, "linear_relu"), (1, 2, "linear_tanh"),
                       (1, 3, "linear"), (2, 3, "linear_relu"))
    assert str(g).startswith("0->1: linear, ")
    with pytest.raises(ValueError, match="weights must be"):
        derive(w[:5], nodes=3)


def test_random_genotype_shape():
    rng = random.Random(0)
    for _ in range(20):
        g = random_genotype(rng, nodes=4, k=2)
        assert [sum(1 for _, j, _ in g.edges if j == node) for node in range(1, 5)] == [1, 2, 2, 2]
        assert all(op != "none" and i < j for i, j, op in g.edges)
    with pytest.raises(ValueError, match="no input"):
        CellNet(Genotype(((0, 1, "skip"),), nodes=2))


def test_supernet_with_one_hot_alpha_is_the_derived_cell():
    """The relaxation contains every discrete cell: with alpha saturated on a genotype's choices (and on
    "none" for dropped edges) the supernet computes exactly the CellNet with the same weights."""
    torch.manual_seed(2)
    net = SuperNet(width=6, nodes=3)
    genotype = Genotype(((0, 1, "linear_tanh"), (0, 2, "skip"), (1, 2, "linear"), (1, 3, "linear_relu"),
                         (2, 3, "linear_tanh")), nodes=3)
    cell = CellNet(genotype, width=6)
    cell.stem.load_state_dict(net.stem.state_dict())
    cell.head.load_state_dict(net.head.state_dict())
    for k, (i, j, op) in enumerate(genotype.edges):
        cell.ops[k].load_state_dict(net.mixed[net.edges.index((i, j))].ops[OPS.index(op)].state_dict())
    x, alpha = torch.rand(4, 64), net.alpha.detach().clone()
    with net.fixed_to(genotype) as fixed:
        torch.testing.assert_close(fixed(x), cell(x))
    assert torch.equal(net.alpha, alpha), "alpha is put back"
    assert (net(x) - cell(x)).abs().max() > 1e-3, "the relaxed supernet is not the cell"
    with pytest.raises(ValueError, match="not in this supernet"):
        with net.fixed_to(Genotype(((0, 4, "skip"),), nodes=4)):
            pass


def fake_digits(n: int = 40) -> DigitsSplits:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return DigitsSplits(x, y, x[:8], y[:8], x[:8], y[:8])


def test_search_batches_come_from_two_disjoint_halves():
    data = fake_digits()
    draw = search_batches(data, batch_size=64, seed=0)
    rows = {"w": set(), "a": set()}
    for _ in range(5):
        (xw, _), (xa, _) = draw()
        for name, xs in (("w", xw), ("a", xa)):
            rows[name] |= {tuple(r.flatten().tolist()) for r in xs}
    assert rows["w"] and rows["a"] and not rows["w"] & rows["a"]
    assert len(rows["w"]) == len(rows["a"]) == 20


def test_first_order_update():
    """One step: alpha moves by Adam's first step against dL_A/dalpha at the current weights
    (about -lr * sign(grad)), then the weights move on the other half's loss."""
    torch.manual_seed(3)
    net = SuperNet(width=8, nodes=2)
    search = DartsSearch(net, w_lr=1e-2, alpha_lr=1e-2, record_every=1)
    batch = search_batches(fake_digits(), 16, seed=1)()
    (xw, yw), (xa, ya) = batch
    grad = torch.autograd.grad(F.cross_entropy(net(xa), ya), net.alpha)[0]
    alpha0 = net.alpha.detach().clone()
    w0 = [p.detach().clone() for p in net.weight_parameters()]
    out = search.update(net, batch)
    step = net.alpha.detach() - alpha0
    big = grad.abs() > 1e-5
    torch.testing.assert_close(step[big], -1e-2 * grad[big].sign(), atol=1e-4, rtol=0)
    assert any(not torch.equal(a, p) for a, p in zip(w0, net.weight_parameters()))
    assert set(out) == {"loss", "alpha_loss"} and len(search.history) == 2
    torch.testing.assert_close(torch.tensor(search.history[-1][1]), net.arch_weights().detach())
