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
# # 01 · Backpropagation and the MLP: worked solutions
#
# One section per exercise of [lesson 01](../01_backprop_mlp.ipynb), in its order and with its wording.
# Each answer gives the reasoning first, then runs it and asserts what the reasoning predicted. The scalar
# engine is the lesson's, as kept in `karpa_lab.models.autograd`.

# %%
import inspect
import math
import random

import matplotlib.pyplot as plt
import torch
from torch import nn

from karpa_lab import accuracy, evaluate, fit, seed_everything, warmup_cosine
from karpa_lab.data import digits_loaders, load_digits_splits
from karpa_lab.gradient_check import gradient_check
from karpa_lab.models import autograd

seed_everything(0)
torch.set_num_threads(1)
digits = load_digits_splits(flatten=True)

# %% [markdown]
# ## 1. Predict, then run
#
# *In the lesson's `Value.__mul__`, replace `self.grad += other.data * g` by `self.grad = other.data * g`.
# Which of the asserts fails first, and what does `(a * a + a)` give for `a.grad`? Explain the number.*
#
# **The neuron's asserts still pass.** In $o = \tanh(x_1 w_1 + x_2 w_2 + b)$ every Value is used once,
# so each gradient is written once and `=` does what `+=` did. **The first to fail is `assert a.grad ==
# 7.0`.** Walking $a \cdot a + a$ backward, the `+` node runs first and gives $a$ the 1 of its own path;
# then the `*` node, whose two inputs are both $a$, *assigns* `a.grad = other.data * 1 = 3` through
# `self`, overwriting that 1, and then *adds* `self.data * 1 = 3` through `other` (that line still says
# `+=`). Of the three paths from $a$ to the output
# ($1 + 3 + 3 = 7$), the first one is lost: `a.grad` is **6**. (The lesson's random graphs reuse values all the
# time, so the check against `torch.autograd` fails too.)

# %%
class AssigningMul(autograd.Value):
    """The kept Value, with ``=`` instead of ``+=`` for the first factor of a product."""

    def __mul__(self, other):
        other = other if isinstance(other, autograd.Value) else autograd.Value(other)
        out = autograd.Value(self.data * other.data, (self, other), "*")

        def _backward(g):
            self.grad = other.data * g
            other.grad += self.data * g
        out._backward = _backward
        return out


x1, x2, w1, w2 = AssigningMul(2.0), AssigningMul(0.0), AssigningMul(-3.0), AssigningMul(1.0)
b = AssigningMul(6.8813735870195432)
(x1 * w1 + x2 * w2 + b).tanh().backward()
print(f"neuron: do/dw1 = {w1.grad:+.4f}, do/dx1 = {x1.grad:+.4f}, do/db = {b.grad:+.4f} (the lesson asserts 1, -1.5, 0.5)")
assert abs(w1.grad - 1.0) < 1e-12 and abs(x1.grad + 1.5) < 1e-12 and abs(b.grad - 0.5) < 1e-12

a = AssigningMul(3.0)
(a * a + a).backward()
print(f"a * a + a at a = 3: a.grad = {a.grad} instead of 2a + 1 = 7")
assert a.grad == 6.0

# %% [markdown]
# ## 2. A new operation
#
# *Add `log` to the lesson's `Value` (local derivative $1/a$) and a `sigmoid` ($\sigma(a)(1-\sigma(a))$).
# Add them to `OPS` (apply `log` to `a * a + 1`) and re-run the check against `torch.autograd`.*
#
# Both are one-input nodes like `tanh`: the forward value, then a closure that adds local derivative x
# upstream gradient to the input. $\frac{d}{da}\log a = 1/a$; for $s = \sigma(a) = 1/(1+e^{-a})$,
# $\frac{ds}{da} = e^{-a}/(1+e^{-a})^2 = s(1-s)$, so the closure needs only the output it already
# computed. `log` is applied to $a^2 + 1 \ge 1$ so that no graph takes the log of a non-positive
# number. The kept engine has them, written exactly so:

# %%
print(inspect.getsource(autograd.Value.log))
print(inspect.getsource(autograd.Value.sigmoid))

# %% [markdown]
# The lesson's check, with the two operations added to the table: random graphs of 30 operations whose
# inputs are drawn from all earlier nodes (so values are reused), once with Values, once with float64
# tensors. Prediction: the same agreement as the lesson's, of the size of float64's rounding; and a
# negative control, a sigmoid whose backward forgets the factor $(1 - s)$, must fail the same check.

# %%
def value_fns(sigmoid):
    return {"exp": autograd.Value.exp, "tanh": autograd.Value.tanh, "relu": autograd.Value.relu,
            "log": autograd.Value.log, "sigmoid": sigmoid}


TORCH_FNS = {"exp": torch.exp, "tanh": torch.tanh, "relu": torch.relu, "log": torch.log, "sigmoid": torch.sigmoid}
OPS = {
    "add": lambda a, b, f: a + b, "sub": lambda a, b, f: a - b, "mul": lambda a, b, f: a * b,
    "div": lambda a, b, f: a / (b * b + 1), "sqrt": lambda a, b, f: (a * a + 1) ** 0.5,
    "square": lambda a, b, f: a**2, "scale": lambda a, b, f: 0.5 * a - 1,
    "exp": lambda a, b, f: f["exp"](f["tanh"](a)), "tanh": lambda a, b, f: f["tanh"](a),
    "relu": lambda a, b, f: f["relu"](a),
    "log": lambda a, b, f: f["log"](a * a + 1), "sigmoid": lambda a, b, f: f["sigmoid"](a),
}


def graph_gradients(make_leaf, fns, inputs, seed, n_ops=30):
    """The lesson's random expression over ``inputs``: its value and the gradients of the inputs."""
    rng, leaves = random.Random(seed), [make_leaf(x) for x in inputs]
    nodes = list(leaves)
    for _ in range(n_ops):
        nodes.append(OPS[rng.choice(sorted(OPS))](rng.choice(nodes), rng.choice(nodes), fns))
    out = nodes[-1] + nodes[-2] + nodes[len(nodes) // 2]
    out.backward()
    grads = [float(0.0 if v.grad is None else v.grad) for v in leaves]
    return float(out.data), grads


def worst_gap(sigmoid):
    worst = 0.0
    for seed in range(100):
        inputs = [random.Random(1000 + seed).uniform(-2, 2) for _ in range(4)]
        ours, ours_grads = graph_gradients(autograd.Value, value_fns(sigmoid), inputs, seed)
        ref, ref_grads = graph_gradients(lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True),
                                         TORCH_FNS, inputs, seed)
        assert math.isclose(ours, ref, rel_tol=1e-10, abs_tol=1e-12)
        worst = max([worst] + [abs(g - r) / max(1.0, abs(r)) for g, r in zip(ours_grads, ref_grads, strict=True)])
    return worst


def sigmoid_without_one_minus_s(v):
    s = 1 / (1 + math.exp(-v.data))
    out = autograd.Value(s, (v,), "sigmoid")

    def _backward(g):
        v.grad += s * g  # the planted bug: s instead of s (1 - s)
    out._backward = _backward
    return out


gap, broken_gap = worst_gap(autograd.Value.sigmoid), worst_gap(sigmoid_without_one_minus_s)
print(f"100 random graphs with log and sigmoid: largest gradient difference from torch.autograd {gap:.1e}")
print(f"the same check with a sigmoid that forgets (1 - s): {broken_gap:.2f}")
assert gap < 1e-9
assert broken_gap > 1e-3

# %% [markdown]
# ## 3. The finite-difference step
#
# *Re-run `gradient_check` with `eps` = 1e-2, 1e-4, 1e-8 and 1e-11 and plot the largest relative error
# against `eps` on log-log axes. Why does it fall and then rise again? ... Then run it with the model and
# the images in float32.*
#
# Two errors add up. **Truncation:** by Taylor, $\frac{\mathcal{L}(\theta+\epsilon) - \mathcal{L}(\theta-
# \epsilon)}{2\epsilon} = \mathcal{L}'(\theta) + \frac{\epsilon^2}{6}\mathcal{L}'''(\theta) + O(\epsilon^4)$,
# falling as $\epsilon^2$. **Rounding:** each loss carries an error of about $u\,\mathcal{L}$ with $u
# \approx 10^{-16}$ in float64, and the quotient divides it by $2\epsilon$: an error of order $u\mathcal{L}
# /\epsilon$, rising as $\epsilon$ shrinks. Their sum is smallest where they are equal, near $\epsilon
# \approx u^{1/3} \approx 10^{-5}$: of the four steps, 1e-4 should be the best, 1e-2 worse (truncation,
# $10^4$ times larger, and a step that large also crosses ReLU kinks, where no Taylor expansion holds),
# and 1e-8 and 1e-11 worse and worse (rounding, $10^{-8}$ and $10^{-5}$ absolute,
# against the smallest gradients of order $10^{-5}$: at 1e-11 the relative error is of order 1). In
# float32, $u \approx 6 \cdot 10^{-8}$: the rounding error alone is $10^{-7}/\epsilon$, larger than the
# small gradients at every step we try, so the check cannot pass at any $\epsilon$: float32 is too coarse
# to check gradients with. (`karpa_lab.gradient_check` is the lesson's `gradient_check`.)

# %%
EPS = [1e-2, 1e-4, 1e-8, 1e-11]
errors = {}
for dtype in (torch.float64, torch.float32):
    seed_everything(0)
    net = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).to(dtype)
    x_fd, y_fd = digits.x_train[:32].to(dtype), digits.y_train[:32]
    errors[dtype] = [gradient_check(net, x_fd, y_fd, eps=eps) for eps in EPS]
    print(f"{str(dtype):<14}", "  ".join(f"eps {eps:.0e}: {err:.1e}" for eps, err in zip(EPS, errors[dtype], strict=True)))

fig, ax = plt.subplots(figsize=(5, 3.5))
for dtype, errs in errors.items():
    ax.loglog(EPS, errs, "o-", label=str(dtype))
ax.set_xlabel("eps")
ax.set_ylabel("largest relative error")
ax.legend()
plt.show()

e64, e32 = errors[torch.float64], errors[torch.float32]
assert min(e64) == e64[1] < 1e-5, "1e-4 is the best of the four"
assert e64[0] > 10 * e64[1] and e64[3] > e64[2] > 10 * e64[1], "falls, then rises"
assert min(e32) > 1e-2, "in float32 no step passes"

# %% [markdown]
# ## 4. Learning rate
#
# *Re-run the scalar training of section 4 with `lr = 0.1` and `lr = 5.0`. Which one is too slow, which one
# unstable? Then try `lr = 3e-2` in section 5: what happens to the test accuracy?*
#
# Plain gradient descent moves by $\eta \nabla\mathcal{L}$. At $\eta = 0.1$ the steps are ten times shorter
# than the lesson's $\eta = 1$: all 8 of them together travel about as far as 0.8 of one step at
# $\eta = 1$, so the loss should fall less in 8 steps than in the lesson's first step alone: **too slow**. At $\eta =
# 5$ the first step moves the weights so far along the initial gradient that it overshoots the valley:
# the loss stops falling steadily, jumps up or oscillates, **unstable**. In section 5 the optimizer is
# AdamW, whose step is about $\eta$ per weight: at 3e-2 the steps are ten times the lesson's 3e-3. But
# that run is long (680 steps) and its schedule ends with steps ten times smaller than its peak: both
# rates reach a network that fits the training images, and the last small steps settle either one. So,
# unlike lesson 00's exercise 1, where a 204-step run was short of steps and the larger rate helped,
# **expect almost no change**: the test accuracy within a few of the 360 images.

# %%
x_small, y_small = digits.x_train[:16].double(), digits.y_train[:16]
torch.manual_seed(0)
ref_mlp = nn.Sequential(nn.Linear(64, 8), nn.Tanh(), nn.Linear(8, 10)).double()


def scalar_training(lr, steps=8):
    """Section 4's loop: the same start, the same 16 images, plain gradient descent with ``lr``."""
    mlp = autograd.MLP.from_torch(ref_mlp, act="tanh")
    params, losses = mlp.parameters(), []
    for _ in range(steps):
        losses.append(sum((autograd.cross_entropy(mlp(row), int(t)) for row, t in
                           zip(x_small.tolist(), y_small.tolist(), strict=True)), autograd.Value(0.0)) / 16)
        autograd.zero_grad(params)
        losses[-1].backward()
        for p in params:
            p.data -= lr * p.grad
    return [v.data for v in losses]


scalar = {lr: scalar_training(lr) for lr in (0.1, 1.0, 5.0)}
for lr, losses in scalar.items():
    print(f"lr {lr:<4}", " ".join(f"{v:.3f}" for v in losses))
drop = {lr: losses[0] - losses[-1] for lr, losses in scalar.items()}
rises = {lr: sum(b > a for a, b in zip(losses, losses[1:])) for lr, losses in scalar.items()}
print(f"loss drop over 8 steps: {', '.join(f'lr {lr}: {d:.3f}' for lr, d in drop.items())}; "
      f"steps where the loss rose: {rises}")
assert drop[0.1] < scalar[1.0][0] - scalar[1.0][1], "8 steps at 0.1 do less than one at 1.0"
assert rises[5.0] > 0 and rises[1.0] == 0 and rises[0.1] == 0, "5.0 is the unstable one"


# %%
def section5_run(hidden=256, lr=3e-3, epochs=40):
    """Lesson 01's section 5c with one number changed; returns the model, its first-layer change, test."""
    seed_everything(0)
    train_dl, val_dl, test_dl = digits_loaders(batch_size=64, flatten=True)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    initial_w1 = model[0].weight.detach().clone()
    total = epochs * len(train_dl)
    fit(model, train_dl, epochs=epochs, lr=lr, schedule=warmup_cosine(20, total), val_data=val_dl,
        metrics={"accuracy": accuracy}, eval_every=total // 8, verbose=False)
    print(f"hidden {hidden}, lr {lr:.0e}: {total} steps on {len(train_dl.dataset)} training images")
    return model, model[0].weight.detach().cpu() - initial_w1, evaluate(model, test_dl, metrics={"accuracy": accuracy})


_, change_256, test_lesson = section5_run(lr=3e-3)
_, _, test_fast = section5_run(lr=3e-2)
for name, t in (("lr 3e-3 (the lesson)", test_lesson), ("lr 3e-2", test_fast)):
    print(f"{name:<21} test accuracy {t['accuracy']:.4f} ({round(t['accuracy'] * 360)} of 360), test loss {t['loss']:.3f}")
assert abs(test_fast["accuracy"] - test_lesson["accuracy"]) <= 3 / 360 + 1e-6, "within three images"

# %% [markdown]
# ## 5. Capacity
#
# *Set `hidden = 16` in section 5. Predict the test accuracy before you run it. How do the first-layer
# images change? (With fewer units, each one must carry more of a digit.)*
#
# **Prediction: about 0.93-0.95, a few images below the lesson's 256 units, and still far above chance.**
# Sixteen units still give $64 \cdot 16 + 16 + 16 \cdot 10 + 10 = 1{,}210$ parameters for 1,078 images of
# ten fairly separable classes: a linear classifier on these pixels already gets most of them right, so
# the hidden layer is not the bottleneck. **The images:** with 256 units, each one's gradient is a small
# share of the work, and most units move little from their random start. With 16, each unit is used by
# many digits and must carry a large part of the evidence, so its weights move much further: the change
# $\Delta W_1[k]$ should be larger per unit, and look more like strokes of whole digits than speckle.

# %%
model_16, change_16, test_16 = section5_run(hidden=16)
print(f"hidden 16: test accuracy {test_16['accuracy']:.4f} ({round(test_16['accuracy'] * 360)} of 360); "
      f"hidden 256: {test_lesson['accuracy']:.4f}")
moved = {16: change_16.norm(dim=1).mean().item(), 256: change_256.norm(dim=1).mean().item()}
print(f"mean size of a unit's weight change: 16 units {moved[16]:.2f}, 256 units {moved[256]:.2f} "
      f"({moved[16] / moved[256]:.1f}x)")
votes = model_16[2].weight.detach().cpu().argmax(dim=0)
fig, axes = plt.subplots(2, 8, figsize=(10, 2.9))
for ax, k in zip(axes.flat, range(16), strict=True):
    limit = change_16[k].abs().max()
    ax.imshow(change_16[k].reshape(8, 8), cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_title(f"unit {k} -> {votes[k].item()}", fontsize=8)
    ax.axis("off")
fig.suptitle("16 hidden units: what training changed in each (red +, blue -)")
fig.tight_layout()
plt.show()
assert 0.90 <= test_16["accuracy"] <= test_lesson["accuracy"]
assert moved[16] > 1.5 * moved[256]
