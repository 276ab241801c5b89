"""The scalar autograd engine against torch.autograd: random expression graphs, the MLP, the loss."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab.models.autograd import MLP, Value, cross_entropy, zero_grad

UNARY = ("exp", "tanh", "relu", "sigmoid", "log", "square", "cube", "sqrt", "neg", "reciprocal")
BINARY = ("add", "sub", "mul", "div", "radd", "rsub", "rmul", "rdiv")


def random_program(rng: random.Random, n_leaves: int, n_ops: int) -> list[tuple]:
    """Instructions over a growing list of nodes; each op reads earlier nodes, so nodes get reused (a DAG)."""
    program = []
    for i in range(n_ops):
        n_nodes = n_leaves + i
        if rng.random() < 0.5:
            program.append(("u", rng.choice(UNARY), rng.randrange(n_nodes)))
        else:
            program.append(("b", rng.choice(BINARY), rng.randrange(n_nodes), rng.randrange(n_nodes),
                            rng.uniform(-2, 2)))
    return program


def run(program: list[tuple], leaves: list, fn: dict):
    """Evaluate a program with either Values or tensors (``fn`` holds tanh, exp, relu, sigmoid, log).
    Unsafe inputs are made safe first (log and sqrt of 1 + x^2, division by 1 + x^2, exp of tanh(x))
    so every graph is finite."""
    tanh = fn["tanh"]
    unary = {
        "exp": lambda a: fn["exp"](tanh(a)),
        "tanh": tanh,
        "relu": fn["relu"],
        "sigmoid": fn["sigmoid"],
        "log": lambda a: fn["log"](a * a + 1),
        "square": lambda a: a**2,
        "cube": lambda a: tanh(a) ** 3,
        "sqrt": lambda a: (a * a + 1) ** 0.5,
        "neg": lambda a: -a,
        "reciprocal": lambda a: 1 / (a * a + 1),
    }
    binary = {
        "add": lambda a, b, c: a + b,
        "sub": lambda a, b, c: a - b,
        "mul": lambda a, b, c: tanh(a) * tanh(b),
        "div": lambda a, b, c: a / (b * b + 1),
        "radd": lambda a, b, c: c + a,
        "rsub": lambda a, b, c: c - a,
        "rmul": lambda a, b, c: c * a,
        "rdiv": lambda a, b, c: c / (a * a + 1),
    }
    nodes = list(leaves)
    for ins in program:
        if ins[0] == "u":
            nodes.append(unary[ins[1]](nodes[ins[2]]))
        else:
            nodes.append(binary[ins[1]](nodes[ins[2]], nodes[ins[3]], ins[4]))
    # the output depends on several nodes, the last ones and one from the middle
    return nodes[-1] + nodes[-2] * 0.5 + nodes[len(nodes) // 2]


NAMES = ("tanh", "exp", "relu", "sigmoid", "log")
VALUE_FNS = {name: getattr(Value, name) for name in NAMES}
TORCH_FNS = {name: getattr(torch, name) for name in NAMES}


@pytest.mark.parametrize("seed", range(40))
def test_random_graphs_match_torch_autograd(seed):
    rng = random.Random(seed)
    n_leaves = rng.randint(1, 5)
    program = random_program(rng, n_leaves, rng.randint(3, 30))
    inputs = [rng.uniform(-2, 2) for _ in range(n_leaves)]

    values = [Value(x) for x in inputs]
    out = run(program, values, VALUE_FNS)
    out.backward()

    tensors = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in inputs]
    ref = run(program, tensors, TORCH_FNS)
    ref.backward()

    assert out.data == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)
    for v, t in zip(values, tensors, strict=True):
        expected = 0.0 if t.grad is None else t.grad.item()
        assert v.grad == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_reused_value_accumulates_gradient():
    a = Value(3.0)
    out = a * a + a  # d/da = 2a + 1
    out.backward()
    assert a.grad == 7.0


def test_leaves_accumulate_over_backward_passes_like_torch():
    a = Value(2.0)
    out = (a * a).tanh()
    out.backward()
    first = a.grad
    out.backward()
    assert a.grad == pytest.approx(2 * first)
    zero_grad([a])
    out.backward()
    assert a.grad == pytest.approx(first)


def test_deep_graph_does_not_hit_the_recursion_limit():
    xs = [Value(0.001 * i) for i in range(5000)]
    total = sum(xs, Value(0.0))
    total.backward()
    assert all(x.grad == 1.0 for x in xs)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_mlp_and_cross_entropy_match_torch(act):
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(5, 4), nn.Tanh() if act == "tanh" else nn.ReLU(), nn.Linear(4, 3)).double()
    mlp = MLP.from_torch(ref, act=act)
    x = torch.randn(6, 5, dtype=torch.float64)
    y = torch.randint(3, (6,))

    losses = [cross_entropy(mlp(row.tolist()), int(t)) for row, t in zip(x, y, strict=True)]
    loss = sum(losses, Value(0.0)) / len(y)
    loss.backward()
    ref_loss = F.cross_entropy(ref(x), y)
    ref_loss.backward()

    assert loss.data == pytest.approx(ref_loss.item(), rel=1e-10)
    grads = [p.grad for p in mlp.parameters()]
    # MLP.parameters() lists each neuron's weights then its bias, layer by layer
    expected = []
    for linear in (ref[0], ref[2]):
        for w_row, b in zip(linear.weight.grad, linear.bias.grad, strict=True):
            expected += [*w_row.tolist(), b.item()]
    assert grads == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_cross_entropy_is_stable_for_large_logits():
    logits = [Value(1000.0), Value(0.0), Value(-1000.0)]
    assert cross_entropy(logits, 0).data == pytest.approx(0.0, abs=1e-12)
    assert cross_entropy(logits, 1).data == pytest.approx(1000.0)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="positive"):
        Value(0.0).log()
    with pytest.raises(ValueError, match="fractional power"):
        Value(-1.0) ** 0.5
    with pytest.raises(TypeError, match="constant"):
        Value(2.0) ** Value(2.0)
    with pytest.raises(ValueError, match="expects 3 inputs, got 2"):
        MLP(3, [2])([1.0, 2.0])
    with pytest.raises(ValueError, match="class index"):
        cross_entropy([Value(0.0), Value(1.0)], 2)
