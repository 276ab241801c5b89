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
# # 12 · Convolutional networks: worked solutions
#
# One section per exercise of [lesson 12](../12_cnns.ipynb), in its order and with its wording. Each
# answer gives the reasoning first, then runs it and asserts what the reasoning predicted.

# %%
import numpy as np
import torch
import torch.nn.functional as F
from scipy.signal import convolve2d
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from karpa_lab import accuracy, evaluate, fit, seed_everything
from karpa_lab.data import digits_on_canvas, load_digits_splits
from karpa_lab.models.conv import conv2d_loops, max_pool2d, max_pool2d_backward, receptive_field, shape_trace, small_cnn

seed_everything(0)
torch.set_num_threads(1)

# %% [markdown]
# ## 1. Predict, then run
#
# *For a 28x28 input, conv 5x5 (no padding), pool 2, conv 5x5, pool 2: what are the output size and the
# receptive field of one unit of the last map? Check with `shape_trace` and `receptive_field`.*
#
# **Sizes.** A 5x5 convolution without padding removes 4 pixels: 28 -> 24; pool 2 halves: 12; conv: 8;
# pool: 4. The last map is 4x4.
#
# **Receptive field**, with $r_l = r_{l-1} + (k_l - 1) j_{l-1}$, $j_l = j_{l-1} s_l$: conv 5 (stride 1)
# gives $r = 5$, $j = 1$; pool 2 (stride 2): $r = 6$, $j = 2$; conv 5: $r = 6 + 4 \cdot 2 = 14$, $j = 2$;
# pool 2: $r = 14 + 1 \cdot 2 = 16$, $j = 4$. Each unit of the last map sees a 16x16 patch. (This is
# LeNet-5's front end.)

# %%
lenet = nn.Sequential(nn.Conv2d(1, 6, 5), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.MaxPool2d(2)).double()
trace = shape_trace(lenet, torch.zeros(1, 1, 28, 28, dtype=torch.float64))
for row in trace:
    print(row)
field = receptive_field([(5, 1), (2, 2), (5, 1), (2, 2)])
x = torch.rand(1, 1, 28, 28, dtype=torch.float64, requires_grad=True)
lenet(x)[0, :, 1, 1].sum().backward()
seen = (x.grad[0, 0] != 0).nonzero()
extent = tuple(int(v) for v in seen.max(0).values - seen.min(0).values + 1)
print(f"receptive_field: {field}; patch with a non-zero gradient for the unit (1, 1): {extent}")
assert trace[-1][2] == (1, 16, 4, 4)
assert field[-1] == (16, 4) and extent == (16, 16)

# %% [markdown]
# ## 2. Count
#
# *How many multiply-adds does a 3x3 convolution with 64 input and 64 output channels cost on a 56x56
# map, and how many weights does it have? Compare with a fully connected layer between the same two maps.*
#
# With padding 1 the output is 56x56 too. Every output value is a sum over 64 channels x 9 taps:
# $56 \cdot 56 \cdot 64 \cdot 64 \cdot 9 = 115{,}605{,}504$ multiply-adds per image (about 0.23 GFLOP,
# counting a multiply-add as two). Weights: $64 \cdot 64 \cdot 9 + 64 = 36{,}928$. A fully connected
# layer between two maps of $56 \cdot 56 \cdot 64 = 200{,}704$ values needs $200{,}704^2 \approx 4.0
# \cdot 10^{10}$ weights (160 GB in float32) and as many multiply-adds: weight sharing and locality save
# a factor of about a million in weights.

# %%
conv = nn.Conv2d(64, 64, 3, padding=1)
with FlopCounterMode(display=False) as counter:
    conv(torch.zeros(1, 64, 56, 56))
macs = counter.get_total_flops() // 2
weights = sum(p.numel() for p in conv.parameters())
dense = (56 * 56 * 64) ** 2
print(f"multiply-adds: {macs:,} (PyTorch's FLOP counter / 2, {2 * macs / 1e9:.2f} GFLOP); weights: {weights:,}; "
      f"a dense layer: {dense:,} weights ({dense * 4 / 1e9:.0f} GB in float32), {dense / weights:,.0f}x more")
assert macs == 56 * 56 * 64 * 64 * 9 and weights == 36_928
assert dense / weights > 1e6

# %% [markdown]
# ## 3. The flipped kernel
#
# *Mathematicians' convolution flips the kernel. Write it with `conv2d_loops` and show it equals
# `F.conv2d` with `weight.flip(2, 3)`.*
#
# The convolution of analysis is $(x * w)_{ij} = \sum_{u,v} w_{uv}\, x_{i-u, j-v}$: the kernel runs
# backwards over the window. Substituting $u' = k - 1 - u$ turns it into a cross-correlation with the
# kernel flipped in both spatial axes, $\sum_{u',v'} w_{k-1-u', k-1-v'}\, x_{i' + u', j' + v'}$. So the
# true convolution is `conv2d_loops(x, weight.flip(2, 3))`, and that equals `F.conv2d(x, weight.flip(2,
# 3))`; for one channel it also equals SciPy's `convolve2d(..., mode="valid")`, which flips by definition.

# %%
x = torch.randn(1, 1, 9, 7, dtype=torch.float64)
w = torch.randn(1, 1, 3, 4, dtype=torch.float64)
true_conv = conv2d_loops(x, w.flip(2, 3))
scipy_conv = torch.from_numpy(convolve2d(x[0, 0].numpy(), w[0, 0].numpy(), mode="valid"))
gaps = (float((true_conv - F.conv2d(x, w.flip(2, 3))).abs().max()),
        float((true_conv[0, 0] - scipy_conv).abs().max()),
        float((conv2d_loops(x, w) - F.conv2d(x, w)).abs().max()))
print(f"flipped loops vs F.conv2d(flipped) {gaps[0]:.1e}, vs scipy convolve2d {gaps[1]:.1e}; "
      f"unflipped loops vs F.conv2d {gaps[2]:.1e}")
print(f"and the flip matters: unflipped vs scipy differ by {float((conv2d_loops(x, w)[0, 0] - scipy_conv).abs().max()):.2f}")
assert max(gaps) < 1e-12
assert float((conv2d_loops(x, w)[0, 0] - scipy_conv).abs().max()) > 0.1

# %% [markdown]
# ## 4. Average pooling
#
# *Write `avg_pool2d` and its backward in the style of `max_pool2d` and check both against PyTorch.
# Which inputs get a gradient now?*
#
# The mean of a $k \times k$ window has the derivative $1/k^2$ with respect to each of its inputs, so
# every input gets $1/k^2$ of its window's upstream gradient: all of them, where max-pooling fed one in
# $k^2$.

# %%
def avg_pool2d(x: torch.Tensor, kernel: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.view(b, c, h // kernel, kernel, w // kernel, kernel).mean(dim=(3, 5))


def avg_pool2d_backward(grad_out: torch.Tensor, kernel: int = 2) -> torch.Tensor:
    return grad_out.repeat_interleave(kernel, dim=2).repeat_interleave(kernel, dim=3) / kernel**2


x = torch.randn(2, 3, 6, 8, dtype=torch.float64, requires_grad=True)
G = torch.randn(2, 3, 3, 4, dtype=torch.float64)
F.avg_pool2d(x, 2).backward(G)
forward_gap = float((avg_pool2d(x.detach()) - F.avg_pool2d(x.detach(), 2)).abs().max())
backward_gap = float((avg_pool2d_backward(G) - x.grad).abs().max())
_, where = max_pool2d(x.detach())
max_share = float((max_pool2d_backward(G, where) != 0).float().mean())
print(f"forward {forward_gap:.1e}, backward {backward_gap:.1e}; inputs with a gradient: average pool "
      f"{float((x.grad != 0).float().mean()):.2f}, max pool {max_share:.2f}")
assert forward_gap < 1e-12 and backward_gap < 1e-12
assert bool((x.grad != 0).all()) and max_share == 0.25

# %% [markdown]
# ## 5. Global average instead of global max
#
# *Build the CNN with `small_cnn(pool="avg")` (global average pooling instead of the global max) and
# re-run section 4. Predict first: does the CNN's edge over the MLP grow or shrink?*
#
# **Prediction: it shrinks, and stays positive.** Both pools are translation invariant, so the CNN still
# has the right bias. But the digit covers only a small part of the 8x8 map that the global pool reads:
# the global max reports a stroke detector's response at full strength wherever the stroke is, while the
# global average divides it by 64 and adds the responses of the empty canvas. The read-out sees a weaker,
# noisier signal, so with the same small network and the same six epochs it should learn less.

# %%
digits = load_digits_splits()
x_train, y_train = digits_on_canvas(digits.x_train, 16, 3, seed=1), digits.y_train.repeat(3)
x_test, y_test = digits_on_canvas(digits.x_test, 16, 1, seed=2), digits.y_test


def test_accuracy(model: nn.Module) -> float:
    data = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True,
                      generator=torch.Generator().manual_seed(0))
    fit(model, data, epochs=6, lr=3e-3, device="cpu", verbose=False)
    return evaluate(model, DataLoader(TensorDataset(x_test, y_test), batch_size=512), metrics={"acc": accuracy})["acc"]


torch.manual_seed(0)
acc = {"global max": test_accuracy(small_cnn(pool="max"))}
torch.manual_seed(0)
acc["global average"] = test_accuracy(small_cnn(pool="avg"))
torch.manual_seed(0)
acc["MLP"] = test_accuracy(nn.Sequential(nn.Flatten(), nn.Linear(256, 11), nn.ReLU(), nn.Linear(11, 10)))
for name, value in acc.items():
    print(f"  {name:<15} {value:.3f}")
edge = {k: acc[k] - acc["MLP"] for k in ("global max", "global average")}
print(f"edge over the MLP: global max {edge['global max']:+.3f}, global average {edge['global average']:+.3f}")
assert edge["global average"] < edge["global max"] - 0.2, "the edge should shrink"
assert edge["global average"] > 0.1, "and stay positive: the bias is still the right one"
print(f"share of the canvas the digit covers: {np.mean([(x_test[i, 0] > 0).float().mean().item() for i in range(50)]):.2f} "
      "on average")
