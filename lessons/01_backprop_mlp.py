# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: nbgrader,tags,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-all
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Backpropagation and the MLP
#
# **The question.** What does `loss.backward()` actually do? Every lesson after this one calls it
# thousands of times. Here we open the box: we write an automatic-differentiation engine (自动微分) for
# single numbers in about sixty lines, prove that it computes exactly what PyTorch's `torch.autograd`
# computes, train a small neural network with it, and then switch to tensors and `karpa_lab.fit` to
# train a digit classifier that is right on at least 95 % of images it has never seen.
#
# By the end you can: draw the computational graph (计算图) of an expression, push gradients (梯度)
# backward through it with the chain rule (链式法则), explain why the gradients must be *accumulated*,
# and read what the first layer of a trained multilayer perceptron (多层感知机, MLP) has learned.

# %%
import math
import random
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab import accuracy, by_scale, evaluate, fit, seed_everything, warmup_cosine
from karpa_lab.data import digits_loaders, load_digits_splits

seed_everything(0)

# %% [markdown]
# ## 1. The math: the chain rule on a graph
#
# Any computation is a graph of small operations. Take one neuron with two inputs:
#
# $$o = \tanh(n),\qquad n = x_1 w_1 + x_2 w_2 + b$$
#
# with every symbol a single number here. We want $\partial o/\partial w_1$, $\partial o/\partial x_1$, ...
# for *every* input at once. The chain rule (链式法则) says that if $o$ depends on $w_1$ only through
# $n$, then
#
# $$\frac{\partial o}{\partial w_1} = \frac{\partial o}{\partial n}\,\frac{\partial n}{\partial w_1}
#   = (1 - \tanh^2 n)\; x_1 .$$
#
# Backpropagation (反向传播) organises this: walk the graph from the output back to the inputs, and at
# each node multiply the gradient arriving from above, $\bar{v} = \partial o/\partial v$, by that node's
# *local* derivative. For the few operations we need:
#
# | operation | local derivatives | backward rule |
# |---|---|---|
# | $c = a + b$ | $1,\ 1$ | $\bar a \mathrel{+}= \bar c,\ \bar b \mathrel{+}= \bar c$ |
# | $c = a\,b$ | $b,\ a$ | $\bar a \mathrel{+}= b\,\bar c,\ \bar b \mathrel{+}= a\,\bar c$ |
# | $c = a^k$ ($k$ a constant) | $k a^{k-1}$ | $\bar a \mathrel{+}= k a^{k-1}\bar c$ |
# | $c = e^a$ | $e^a = c$ | $\bar a \mathrel{+}= c\,\bar c$ |
# | $c = \tanh a$ | $1 - c^2$ | $\bar a \mathrel{+}= (1-c^2)\,\bar c$ |
# | $c = \max(0, a)$ (ReLU) | $[a > 0]$ | $\bar a \mathrel{+}= [a>0]\,\bar c$ |
#
# Subtraction and division need no rule of their own: $a - b = a + (-1)\,b$ and $a / b = a\,b^{-1}$.
#
# Why $\mathrel{+}=$ and not $=$? When a value feeds two operations (as $a$ does in $a\cdot a$, or as one
# weight does for every image in a batch), its gradient is the **sum** over every path to the output:
# the multivariable chain rule $\frac{\partial o}{\partial a} = \sum_{\text{uses } u}
# \frac{\partial o}{\partial u}\frac{\partial u}{\partial a}$. And the order matters: a node may only
# pass its gradient on once it has received everything from above. Sorting the graph so that every node
# comes after its inputs (a topological sort, 拓扑排序) and walking it in reverse guarantees that.

# %% [markdown]
# ## 2. From scratch: a scalar autograd engine
#
# Each `Value` stores its number `data`, its gradient `grad`, the Values it was computed from, and a
# small function `_backward(g)` that applies the table's backward rule given its own gradient `g`.
# This is the whole engine. (The same code, plus `log`, `sigmoid`, a numerically stable cross-entropy
# and a `Neuron`/`Layer`/`MLP`, lives in **`karpa_lab/models/autograd.py`**; after this section we
# import it from there.)

# %%
class Value:
    """A scalar that remembers how it was computed, so gradients can flow back through it."""

    def __init__(self, data, children=()):
        self.data, self.grad = float(data), 0.0
        self._prev = children
        self._backward = lambda g: None

    def __add__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data + other.data, (self, other))

        def _backward(g):
            self.grad += g
            other.grad += g
        out._backward = _backward
        return out

    def __mul__(self, other):
        other = other if isinstance(other, Value) else Value(other)
        out = Value(self.data * other.data, (self, other))

        def _backward(g):
            self.grad += other.data * g
            other.grad += self.data * g
        out._backward = _backward
        return out

    def __pow__(self, k):  # k is a plain number
        out = Value(self.data**k, (self,))

        def _backward(g):
            self.grad += k * self.data ** (k - 1) * g
        out._backward = _backward
        return out

    def exp(self):
        e = math.exp(self.data)
        out = Value(e, (self,))

        def _backward(g):
            self.grad += e * g
        out._backward = _backward
        return out

    def tanh(self):
        t = math.tanh(self.data)
        out = Value(t, (self,))

        def _backward(g):
            self.grad += (1 - t * t) * g
        out._backward = _backward
        return out

    def relu(self):
        out = Value(max(self.data, 0.0), (self,))

        def _backward(g):
            self.grad += (self.data > 0) * g
        out._backward = _backward
        return out

    def __neg__(self): return self * -1
    def __sub__(self, other): return self + (-other)
    def __truediv__(self, other): return self * (other if isinstance(other, Value) else Value(other)) ** -1
    def __radd__(self, other): return self + other
    def __rmul__(self, other): return self * other
    def __rsub__(self, other): return Value(other) - self
    def __rtruediv__(self, other): return Value(other) / self

    def backward(self):
        order, seen = [], set()

        def visit(v):  # depth-first: a node is appended after all of its inputs
            if v not in seen:
                seen.add(v)
                for child in v._prev:
                    visit(child)
                order.append(v)
        visit(self)
        for v in order:
            v.grad = 0.0
        self.grad = 1.0  # do/do = 1
        for v in reversed(order):
            v._backward(v.grad)

    def __repr__(self):
        return f"Value(data={self.data:.4f}, grad={self.grad:.4f})"


# %% [markdown]
# Two details worth a second look. `backward` walks the graph in reverse topological order, so by the
# time a node's `_backward` runs, its `grad` is complete. And `_backward` *adds* to the inputs'
# gradients. (This short `backward` resets every gradient first and recurses; the module's version
# keeps the leaves' gradients accumulating across passes, as PyTorch does, and uses an explicit stack so
# a graph thousands of nodes deep does not hit Python's recursion limit.)
#
# The neuron of section 1, with inputs chosen so that $n \approx 0.88$:

# %%
x1, x2 = Value(2.0), Value(0.0)
w1, w2 = Value(-3.0), Value(1.0)
b = Value(6.8813735870195432)
n = x1 * w1 + x2 * w2 + b
o = n.tanh()
o.backward()
for name, v in [("x1", x1), ("w1", w1), ("x2", x2), ("w2", w2), ("b", b)]:
    print(f"do/d{name} = {v.grad:+.4f}")

# by hand: do/dn = 1 - tanh(n)^2 = 0.5, so do/dw1 = 0.5 * x1 = 1 and do/dx1 = 0.5 * w1 = -1.5
assert abs(o.data - math.sqrt(0.5)) < 1e-12
assert abs(w1.grad - 1.0) < 1e-12 and abs(x1.grad + 1.5) < 1e-12 and abs(b.grad - 0.5) < 1e-12

# %% [markdown]
# The `+=` in action: $a\cdot a + a$ uses $a$ three times, and $\frac{d}{da}(a^2 + a) = 2a + 1$.

# %%
a = Value(3.0)
(a * a + a).backward()
print(a.grad)
assert a.grad == 7.0  # with '=' instead of '+=' in the backward rules this would be 3 or 1

# %% [markdown]
# ## 3. Check it against `torch.autograd`
#
# One hand-computed example proves little. We build random expression graphs (each operation picks its
# inputs among all earlier nodes, so values get reused) and evaluate every graph twice: once with our
# `Value`, once with float64 tensors that `torch.autograd` differentiates. Inputs of `exp`, `/` and
# `** 0.5` are made safe first so that no graph overflows or divides by zero.

# %%
OPS = {
    "add": lambda a, b, f: a + b,
    "sub": lambda a, b, f: a - b,
    "mul": lambda a, b, f: a * b,
    "div": lambda a, b, f: a / (b * b + 1),
    "sqrt": lambda a, b, f: (a * a + 1) ** 0.5,
    "square": lambda a, b, f: a**2,
    "scale": lambda a, b, f: 0.5 * a - 1,
    "exp": lambda a, b, f: f["exp"](f["tanh"](a)),
    "tanh": lambda a, b, f: f["tanh"](a),
    "relu": lambda a, b, f: f["relu"](a),
}
VALUE_FNS = {"exp": lambda v: v.exp(), "tanh": lambda v: v.tanh(), "relu": lambda v: v.relu()}
TORCH_FNS = {"exp": torch.exp, "tanh": torch.tanh, "relu": torch.relu}


def random_expression(leaves, fns, seed, n_ops=30):
    """A random graph over ``leaves``; the same seed gives the same graph for Values and tensors."""
    rng = random.Random(seed)
    nodes = list(leaves)
    for _ in range(n_ops):
        op = rng.choice(sorted(OPS))
        nodes.append(OPS[op](rng.choice(nodes), rng.choice(nodes), fns))
    return nodes[-1] + nodes[-2] + nodes[len(nodes) // 2]


def gradients(value_cls, inputs, seed):
    leaves = [value_cls(x) for x in inputs]
    out = random_expression(leaves, VALUE_FNS, seed)
    out.backward()
    return out.data, [v.grad for v in leaves]


def torch_gradients(inputs, seed):
    leaves = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in inputs]
    out = random_expression(leaves, TORCH_FNS, seed)
    out.backward()
    return out.item(), [0.0 if t.grad is None else t.grad.item() for t in leaves]


worst = 0.0
for seed in range(100):
    inputs = [random.Random(1000 + seed).uniform(-2, 2) for _ in range(4)]
    ours, ours_grads = gradients(Value, inputs, seed)
    ref, ref_grads = torch_gradients(inputs, seed)
    assert math.isclose(ours, ref, rel_tol=1e-10, abs_tol=1e-12)
    for g, r in zip(ours_grads, ref_grads, strict=True):
        worst = max(worst, abs(g - r) / max(1.0, abs(r)))
print(f"100 random graphs of 30 operations: largest gradient difference from torch.autograd {worst:.1e}")
assert worst < 1e-9

# %% [markdown]
# Look at the printed difference: it should be of the size of float64's rounding, far below the 1e-9
# asserted (a single wrong local derivative gives differences of order 1). The engine kept in
# `karpa_lab.models.autograd` is the same algorithm; we check it gives the same numbers on the same
# graphs, then use it from here on.

# %%
from karpa_lab.models import autograd

for seed in range(100):
    inputs = [random.Random(1000 + seed).uniform(-2, 2) for _ in range(4)]
    ours, ours_grads = gradients(Value, inputs, seed)
    kept, kept_grads = gradients(autograd.Value, inputs, seed)
    assert math.isclose(ours, kept, rel_tol=1e-12)
    assert all(math.isclose(g, k, rel_tol=1e-12, abs_tol=1e-15) for g, k in zip(ours_grads, kept_grads, strict=True))
print("karpa_lab.models.autograd.Value agrees with the lesson's Value on all 100 graphs")

# %% [markdown]
# ## 4. A neural network made of scalars
#
# A multilayer perceptron for the 8x8 digits (a 64-pixel image in, 10 class scores out):
#
# $$h = \tanh(x W_1^\top + b_1),\qquad z = h W_2^\top + b_2,\qquad
#   \mathcal{L} = -\frac{1}{B}\sum_{i=1}^{B} \log \frac{e^{z_{i,y_i}}}{\sum_j e^{z_{ij}}}$$
#
# with a batch $x$ (B, 64) of pixel values in [0, 1], $W_1$ (H, 64), $b_1$ (H,), hidden activations
# $h$ (B, H), $W_2$ (10, H), $b_2$ (10,), logits $z$ (B, 10), labels $y$ (B,) and the cross-entropy
# (交叉熵) loss $\mathcal{L}$, a single number. With $H = 8$ hidden units that is
# $64\cdot 8 + 8 + 8\cdot 10 + 10 = 610$ parameters, each one a `Value`.
#
# First a check on real data: copy the weights of a PyTorch model into the scalar MLP and compare loss
# and all 610 gradients.

# %%
digits = load_digits_splits(flatten=True)
n_images = by_scale(small=16, full=64)
x_small = digits.x_train[:n_images].double()
y_small = digits.y_train[:n_images]

torch.manual_seed(0)
ref_mlp = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10)).double()
scalar_mlp = autograd.MLP.from_torch(ref_mlp, act="tanh")
params = scalar_mlp.parameters()


def scalar_loss(mlp, x, y):
    """Mean cross-entropy over the images, computed one scalar at a time."""
    losses = [autograd.cross_entropy(mlp(row), int(t)) for row, t in zip(x.tolist(), y.tolist(), strict=True)]
    return sum(losses, autograd.Value(0.0)) / len(losses)


start = time.process_time()
loss = scalar_loss(scalar_mlp, x_small, y_small)
autograd.zero_grad(params)
loss.backward()
scalar_seconds = time.process_time() - start

start = time.process_time()
ref_loss = F.cross_entropy(ref_mlp(x_small), y_small)
ref_loss.backward()
tensor_seconds = time.process_time() - start

ref_grads = torch.cat([torch.cat([m.weight.grad, m.bias.grad[:, None]], dim=1).flatten()
                       for m in (ref_mlp[0], ref_mlp[2])])  # the order of MLP.parameters()
our_grads = torch.tensor([p.grad for p in params], dtype=torch.float64)
print(f"loss: scalar engine {loss.data:.6f}, PyTorch {ref_loss.item():.6f}; "
      f"{len(params)} gradients, largest difference {(our_grads - ref_grads).abs().max():.1e}")
print(f"one forward + backward on {n_images} images: scalar engine {scalar_seconds * 1e3:.0f} ms "
      f"({len(loss.topological_order())} nodes), tensors {tensor_seconds * 1e3:.2f} ms "
      f"({scalar_seconds / tensor_seconds:.0f}x slower)")
assert abs(loss.data - ref_loss.item()) < 1e-10
torch.testing.assert_close(our_grads, ref_grads, rtol=1e-9, atol=1e-12)

# %% [markdown]
# Same numbers, tens of thousands of `Value` nodes, and many times slower than tensors (the ratio is printed): the
# algorithm is right, the bookkeeping of one Python object per number is what is slow. PyTorch's autograd
# is the same algorithm with one node per *tensor* operation.
#
# Now train the scalar network: plain gradient descent (梯度下降), $\theta \leftarrow \theta - \eta\,
# \partial\mathcal{L}/\partial\theta$ with learning rate (学习率) $\eta$, on the tiny slice of images. This
# is the one place in the course where we write the update by hand; from the next section on, `fit` does it.

# %%
steps, lr = by_scale(small=8, full=30), 1.0
scalar_losses = []
for _ in range(steps):
    loss = scalar_loss(scalar_mlp, x_small, y_small)
    autograd.zero_grad(params)  # the leaves accumulate: clear them before each backward pass
    loss.backward()
    for p in params:
        p.data -= lr * p.grad
    scalar_losses.append(loss.data)
print("scalar-engine training loss:", " ".join(f"{v:.3f}" for v in scalar_losses))

# %% [markdown]
# The cell prints the loss at every step; asserted: the last loss is below 80 % of
# the first (a sign error in any backward rule makes the loss rise instead).

# %%
assert scalar_losses[-1] < 0.8 * scalar_losses[0], scalar_losses

# %% [markdown]
# ## 5. The same network with tensors and `fit`
#
# Before handing the gradients to `fit`, two checks that do not trust autograd: the gradient of the loss
# with respect to the logits, derived by hand, and a finite-difference check of the whole network.
#
# %% [markdown]
# ### 5a. The gradient of the last layer, by hand
#
# The loss of one image is $\ell_i = \log\sum_k e^{z_{ik}} - z_{i,y_i}$ and $\mathcal{L} = \frac1B\sum_i
# \ell_i$. Only $\ell_i$ depends on row $z_i$ (10,), and
#
# $$\frac{\partial \ell_i}{\partial z_{ij}} = \frac{e^{z_{ij}}}{\sum_k e^{z_{ik}}} - [j = y_i]
#   = p_{ij} - [j = y_i], \qquad
#   \frac{\partial\mathcal{L}}{\partial z} = \frac{1}{B}\big(\mathrm{softmax}(z) - \mathrm{onehot}(y)\big)
#   \quad (B, 10),$$
#
# with $p_i = \mathrm{softmax}(z_i)$ (10,) the predicted probabilities. The gradient pushes the right
# class's logit up by $1 - p_{i,y_i}$ and every other logit down by its probability; an image the network
# already gets right with confidence contributes almost nothing. One step further back, $z = h W_2^\top + b_2$
# gives $\partial\mathcal{L}/\partial W_2 = (\partial\mathcal{L}/\partial z)^\top h$ (10, H). Both, against
# `torch.autograd`, on the float64 MLP of section 4 and a batch of 64 images:

# %%
x_check = digits.x_train[:64].double()
y_check = digits.y_train[:64]
ref_mlp.zero_grad()
hidden_act = ref_mlp[1](ref_mlp[0](x_check))                      # h (B, H)
logits = ref_mlp[2](hidden_act)                                    # z (B, 10)
logits.retain_grad()
F.cross_entropy(logits, y_check).backward()
dz = (torch.softmax(logits, dim=1) - F.one_hot(y_check, 10)) / len(y_check)   # (B, 10), by hand
dz_error = (dz - logits.grad).abs().max().item()
dw2_error = (dz.T @ hidden_act - ref_mlp[2].weight.grad).abs().max().item()
no_mean_error = (dz * len(y_check) - logits.grad).abs().max().item()          # the 1/B forgotten
print(f"dL/dz by hand vs autograd: largest difference {dz_error:.1e}; dL/dW2 {dw2_error:.1e}; "
      f"without the 1/B: {no_mean_error:.2f}")
assert dz_error < 1e-12 and dw2_error < 1e-12
assert no_mean_error > 0.1  # the check is sharp enough to catch a forgotten 1/B

# %% [markdown]
# ### 5b. A finite-difference gradient check
#
# Autograd could share a mistake with our reasoning; the definition of the derivative cannot. For any
# parameter $\theta_k$, the centred difference (中心差分)
#
# $$g^{\text{num}}_k = \frac{\mathcal{L}(\theta + \epsilon e_k) - \mathcal{L}(\theta - \epsilon e_k)}{2\epsilon}$$
#
# approximates $\partial\mathcal{L}/\partial\theta_k$ with an error of order $\epsilon^2$ (the one-sided
# difference is only of order $\epsilon$). The gradient check (梯度检验) of CS231n compares it with the
# backward pass by the relative error $|g^{\text{num}} - g^{\text{bp}}| / \max(|g^{\text{num}}|, |g^{\text{bp}}|)$,
# in float64: float32's rounding alone would swamp the difference. We check the tensor MLP that `fit`
# trains below (64-256-10, ReLU), on a float64 copy and 32 images, at 50 random coordinates of each of its
# four parameter tensors, with $\epsilon = 10^{-4}$. A coordinate whose gradient is exactly 0 on both sides
# (a weight of an always-blank pixel) counts as agreement. Why not a much smaller $\epsilon$: the loss
# itself is rounded to about $10^{-16}$ of its value, so the difference quotient carries an error of about
# $10^{-16}/\epsilon$, which for the smallest gradients here (of order $10^{-5}$) is the larger error
# (exercise 3 measures both).

# %%
def gradient_check(net, x, y, coords_per_tensor=50, eps=1e-4, seed=0):
    """Largest relative error between backprop and centred differences at random coordinates of ``net``."""
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    rng, worst = torch.Generator().manual_seed(seed), 0.0
    with torch.no_grad():
        for p in net.parameters():
            flat, grad = p.view(-1), p.grad.view(-1)
            for k in torch.randint(flat.numel(), (coords_per_tensor,), generator=rng).tolist():
                saved = flat[k].item()
                flat[k] = saved + eps
                up = F.cross_entropy(net(x), y).item()
                flat[k] = saved - eps
                down = F.cross_entropy(net(x), y).item()
                flat[k] = saved
                numeric, analytic = (up - down) / (2 * eps), grad[k].item()
                scale = max(abs(numeric), abs(analytic))
                worst = max(worst, 0.0 if scale == 0 else abs(numeric - analytic) / scale)
    return worst


seed_everything(0)
mlp_check = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).double()
x_fd, y_fd = digits.x_train[:32].double(), digits.y_train[:32]
fd_error = gradient_check(mlp_check, x_fd, y_fd)
print(f"gradient check, 200 coordinates, eps = 1e-4: largest relative error {fd_error:.1e}")
assert fd_error < 2e-6, fd_error
# The package's karpa_lab.gradient_check is this function (the exercises use it): the same error, exactly.
from karpa_lab.gradient_check import gradient_check as package_gradient_check  # noqa: E402

assert package_gradient_check(mlp_check, x_fd, y_fd) == fd_error

# %% [markdown]
# The largest error sits on a coordinate whose gradient is tiny, where the rounding of $\mathcal{L}$ counts
# most; asserted: below $2 \cdot 10^{-6}$. CS231n's notes: a relative error above $10^{-2}$ usually means a bug, below $10^{-7}$ you should be
# happy, and with kinks such as ReLU's (where a step of $\epsilon$ can cross from one side to the other)
# somewhat more is normal. The check has teeth: a backward pass that forgets the $\frac1B$ of the mean
# is off by a factor of $B$ at every coordinate, a relative error of $1 - 1/B$:

# %%
class SummedGradient(nn.Module):
    """The forward of ``net``, but its backward is that of the summed, not the mean, loss (a planted bug)."""

    def __init__(self, net, batch):
        super().__init__()
        self.net, self.batch = net, batch

    def forward(self, x):
        z = self.net(x)
        return z + (self.batch - 1) * (z - z.detach())  # same value, gradient times B


broken_error = gradient_check(SummedGradient(mlp_check, len(y_fd)), x_fd, y_fd)
print(f"the same check on a backward pass without the 1/B: largest relative error {broken_error:.2f}")
assert broken_error > 0.5, broken_error

# %% [markdown]
# ### 5c. Training
#
# With tensors, $x W_1^\top$ for a whole batch is one matrix product, and `fit` runs the training loop:
# forward, `loss.backward()` (the algorithm above), AdamW update, evaluation. We widen the hidden layer to
# 256 ReLU units and train on the full training split (1,078 images; 359 for validation, 360 for the
# test). The **knob**: change `hidden`, `epochs` or `lr` and re-run from here.

# %%
hidden = by_scale(small=256, full=512)
epochs = by_scale(small=40, full=100)
lr = 3e-3

seed_everything(0)
train_dl, val_dl, test_dl = digits_loaders(batch_size=64, flatten=True)
model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
initial_w1 = model[0].weight.detach().clone()  # to see in section 6 what training changed
total = epochs * len(train_dl)
history = fit(model, train_dl, epochs=epochs, lr=lr, schedule=warmup_cosine(20, total),
              val_data=val_dl, metrics={"accuracy": accuracy}, eval_every=total // 8)
test = evaluate(model, test_dl, metrics={"accuracy": accuracy})
print(f"test accuracy {test['accuracy']:.4f} ({round(test['accuracy'] * 360)} of 360 images), "
      f"test loss {test['loss']:.3f}")
fig = history.plot()

# %% [markdown]
# The cell above prints the test accuracy and loss of this run (one seed); asserted:
# accuracy at least 0.95 and loss below 0.3. Chance is an accuracy of 0.10 and a loss of
# $\log 10 \approx 2.3$; a network whose gradients were wrong would not get near either number.

# %%
assert test["accuracy"] >= 0.95, test
assert test["loss"] < 0.3, test

# %% [markdown]
# ## 6. What did the first layer learn?
#
# Hidden unit $k$ computes $\mathrm{ReLU}(W_1[k] \cdot x + b_1[k])$: its weight row $W_1[k]$ (64,) is a
# template laid over the image, and the unit fires when the image matches it. The rows start random, so
# we look at what training *added* to them, $\Delta W_1[k] = W_1[k] - W_1^{\text{init}}[k]$, reshaped
# to 8x8, for the 32 units that changed most. Red pixels: ink there now makes the unit fire more; blue:
# less. Each title says which digit the unit votes for most (the largest entry of its column of $W_2$).

# %%
weights = model[0].weight.detach().cpu()  # (hidden, 64)
change = weights - initial_w1
votes = model[2].weight.detach().cpu().argmax(dim=0)  # (hidden,): the class each unit pushes up most
strongest = change.norm(dim=1).argsort(descending=True)[:32]
fig, axes = plt.subplots(4, 8, figsize=(10, 5.4))
for ax, k in zip(axes.flat, strongest.tolist(), strict=True):
    w = change[k].reshape(8, 8)
    limit = w.abs().max()
    ax.imshow(w, cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(f"unit {k} -> {votes[k].item()}", fontsize=8)
    ax.axis("off")
fig.suptitle("what training changed in the first-layer weights (red +, blue -) and the digit each unit votes for")
fig.tight_layout()
plt.show()

# %% [markdown]
# These are not whole digits: each unit is a piece of evidence (ink in the upper loop, a gap on the
# left, ...), and the second layer adds the pieces up. One thing the figure shows is backpropagation
# itself. The gradient of a first-layer weight is $\partial\mathcal{L}/\partial W_1[k, p] =
# \sum_i \bar{a}_{ik}\, x_{ip}$ (with $\bar{a}_{ik}$ the gradient at unit $k$'s pre-activation for
# image $i$), so a pixel $p$ that is blank in every training image gets a gradient of exactly zero and
# training never moves its weights. The digits have five such pixels; only AdamW's weight decay
# touches them, shrinking them slightly. The cell prints how many such pixels there are, their largest
# change and the mean change of the other pixels (asserted: below 5 % of it).

# %%
blank = digits.x_train.abs().sum(dim=0) == 0  # (64,) pixels without ink in every training image
blank_change = change[:, blank].abs().max().item()
typical_change = change[:, ~blank].abs().mean().item()
print(f"{int(blank.sum())} always-blank pixels: largest weight change {blank_change:.4f}; "
      f"mean change elsewhere {typical_change:.4f}")
assert blank_change < 0.05 * typical_change

# %% [markdown]
# ## Exercises
#
# 1. **Predict, then run.** In the lesson's `Value.__mul__`, replace `self.grad += other.data * g` by
#    `self.grad = other.data * g`. Which of the asserts fails first, and what does `(a * a + a)` give for
#    `a.grad`? Explain the number.
# 2. **A new operation.** Add `log` to the lesson's `Value` (local derivative $1/a$) and a `sigmoid`
#    ($\sigma(a)(1-\sigma(a))$). Add them to `OPS` (apply `log` to `a * a + 1`) and re-run the check
#    against `torch.autograd`.
# 3. **The finite-difference step.** Re-run `gradient_check` with `eps` = 1e-2, 1e-4, 1e-8 and 1e-11 and
#    plot the largest relative error against `eps` on log-log axes. Why does it fall and then rise again?
#    (The centred difference is off by a term of order $\epsilon^2$; float64 rounds $\mathcal{L}$ to about
#    $10^{-16}$, an error of order $10^{-16}/\epsilon$ in the quotient.) Then run it with the model and
#    the images in float32.
# 4. **Learning rate.** Re-run the scalar training of section 4 with `lr = 0.1` and `lr = 5.0`. Which one
#    is too slow, which one unstable? Then try `lr = 3e-2` in section 5: what happens to the test accuracy?
# 5. **Capacity.** Set `hidden = 16` in section 5. Predict the test accuracy before you run it. How do the
#    first-layer images change? (With fewer units, each one must carry more of a digit.)
#
# Worked solutions, each one run and checked: [solutions/01_backprop_mlp.ipynb](solutions/01_backprop_mlp.ipynb).
#
# ## Summary
#
# - Backpropagation is the chain rule applied node by node in reverse topological order; each operation
#   only needs its local derivatives, and gradients are *summed* over every use of a value.
# - Our 60-line `Value` computes the same gradients as `torch.autograd` (to float64 rounding on 100
#   random graphs), and trains a scalar MLP; it is kept in `karpa_lab/models/autograd.py`.
# - The gradient of the mean cross-entropy with respect to the logits is $(\mathrm{softmax}(z) -
#   \mathrm{onehot}(y))/B$, equal to autograd's; a centred-difference gradient check in float64 agrees with
#   the backward pass of the 64-256-10 MLP to a relative error below $2 \cdot 10^{-6}$ (asserted), and catches a
#   planted missing $1/B$.
# - With tensors and `fit`, a 64-256-10 MLP classifies at least 95 % of the test digits (asserted); its first-layer units
#   are templates for pieces of digits, and pixels that never carry ink never receive a gradient.
#
# **Next:** lesson 02 applies backpropagation to a network that runs over time, the recurrent neural
# network, and shows why gradients sent many steps back vanish or explode.
#
# | English | 中文 | one line |
# |---|---|---|
# | automatic differentiation | 自动微分 | computing exact gradients of a program by the chain rule, step by step |
# | computational graph | 计算图 | the operations of a computation as nodes, their inputs as edges |
# | chain rule | 链式法则 | the derivative of a composition is the product of the local derivatives |
# | backpropagation | 反向传播 | the chain rule applied node by node from the output back to the inputs |
# | topological sort | 拓扑排序 | an order of the nodes in which every node comes after its inputs |
# | gradient | 梯度 | the vector of partial derivatives of the loss with respect to the parameters |
# | gradient descent | 梯度下降 | step the parameters against the gradient, scaled by the learning rate |
# | learning rate | 学习率 | the step size of a gradient update |
# | cross-entropy | 交叉熵 | the mean negative log-probability the model gives the right class |
# | multilayer perceptron (MLP) | 多层感知机 | linear layers with a nonlinearity between them |
# | gradient check | 梯度检验 | comparing the backward pass with finite differences of the loss |
# | centred difference | 中心差分 | (f(x + eps) - f(x - eps)) / 2 eps, a derivative estimate with error of order eps^2 |
