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
# # 12 · Convolutional networks
#
# **The question.** A fully connected layer gives every pixel its own weight to every unit. A convolution
# (卷积) slides one small kernel (卷积核) over the whole image, so the same weights look for the same
# pattern everywhere. What exactly does that compute, what is its gradient, and when does this built-in
# assumption, the inductive bias (归纳偏置), make a network better than an MLP of the same size?
#
# By the end you can: write a convolution as loops and as im2col plus one matrix product, both equal to
# `F.conv2d` for any stride, padding, dilation and groups; derive its backward pass and check it against
# autograd; measure translation equivariance and a receptive field; show a CNN beating an MLP with as many
# parameters on digits placed anywhere on a canvas, and lose that edge when the pixels are shuffled; and
# find the layer a model breaks at with a shape trace.

# %%
import time

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from karpa_lab import accuracy, by_scale, evaluate, fit, seed_everything
from karpa_lab.data import digits_on_canvas, load_digits_splits, load_photo
from karpa_lab.models.conv import (
    conv2d_backward,
    conv2d_im2col,
    conv2d_loops,
    max_pool2d,
    max_pool2d_backward,
    receptive_field,
    shape_trace,
    small_cnn,
)
from karpa_lab.widgets.conv_filters import filter_widget

seed_everything(0)
torch.set_num_threads(1)

# %% [markdown]
# ## 1. The math, with shapes
#
# Input $x$ (B, C_in, H, W), weight $w$ (C_out, C_in/groups, k_h, k_w), bias $b$ (C_out,). PyTorch's
# convolution is a cross-correlation (the kernel is not flipped):
#
# $$y_{b,o,i,j} = b_o + \sum_{c=0}^{C_{in}/g - 1}\ \sum_{u=0}^{k_h-1}\ \sum_{v=0}^{k_w-1}
#   w_{o,c,u,v}\; x_{b,\ c_0(o) + c,\ s_h i + d_h u - p_h,\ s_w j + d_w v - p_w}$$
#
# with stride (步幅) $s$, dilation $d$, zero padding (填充) $p$, and $c_0(o)$ the first input channel of
# output $o$'s group. The output $y$ is (B, C_out, H_out, W_out) with
# $H_{out} = \lfloor (H + 2p_h - d_h(k_h - 1) - 1) / s_h \rfloor + 1$, likewise $W_{out}$.
#
# **im2col.** Cut every window the kernel visits into a column: `F.unfold` gives $X_{cols}$
# (B, C_in k_h k_w, L) with $L = H_{out} W_{out}$. Then the whole convolution is one matrix product,
# $Y = W_{mat} X_{cols}$ with $W_{mat}$ (C_out, C_in k_h k_w): the fast way, and how libraries did it
# before specialised kernels.

# %%
x = torch.randn(2, 4, 9, 11, dtype=torch.float64)
cases = [dict(stride=s, padding=p, dilation=d, groups=g) for s in (1, 2, (2, 1)) for p in (0, 1, (2, 0))
         for d in (1, 2) for g in (1, 2)]
worst = {"loops": 0.0, "im2col": 0.0}
for case in cases:
    for kernel in ((3, 3), (2, 5)):
        w = torch.randn(6, 4 // case["groups"], *kernel, dtype=torch.float64)
        b = torch.randn(6, dtype=torch.float64)
        ref = F.conv2d(x, w, b, **case)
        worst["im2col"] = max(worst["im2col"], float((conv2d_im2col(x, w, b, **case) - ref).abs().max()))
        if kernel == (2, 5):
            worst["loops"] = max(worst["loops"], float((conv2d_loops(x, w, b, **case) - ref).abs().max()))
print(f"{len(cases) * 2} geometries (stride, padding, dilation, groups, 3x3 and 2x5 kernels): largest difference "
      f"from F.conv2d: loops {worst['loops']:.1e}, im2col {worst['im2col']:.1e}")
assert worst["loops"] < 1e-12 and worst["im2col"] < 1e-12

# %% [markdown]
# Both match to float64 round-off. How much faster is one matrix product than the loops, and how far is
# it from PyTorch's own kernel? One image of 32x32 with 16 input and 16 output channels:

# %%
xb, wb = torch.randn(1, 16, 32, 32), torch.randn(16, 16, 3, 3)


def best_time(fn, repeats=3):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


timing = {"loops": best_time(lambda: conv2d_loops(xb, wb, padding=1), 1),
          "im2col": best_time(lambda: conv2d_im2col(xb, wb, padding=1)),
          "F.conv2d": best_time(lambda: F.conv2d(xb, wb, padding=1))}
for name, seconds in timing.items():
    print(f"{name:>9}: {seconds * 1e3:9.2f} ms  ({seconds / timing['F.conv2d']:8.1f}x F.conv2d)")
assert timing["loops"] > 10 * timing["im2col"]

# %% [markdown]
# ## 2. The backward pass: the gradient of a convolution is a convolution
#
# With the upstream gradient $G = \partial\mathcal{L}/\partial y$ (B, C_out, H_out, W_out), each weight
# collects the inputs it multiplied, and each input pixel collects the gradients of the outputs whose
# windows contained it:
#
# $$\frac{\partial\mathcal{L}}{\partial w_{o,c,u,v}} = \sum_{b,i,j} G_{b,o,i,j}\,
#   x_{b,c,s_h i + d_h u - p_h,\,s_w j + d_w v - p_w}, \qquad
#   \frac{\partial\mathcal{L}}{\partial b_o} = \sum_{b,i,j} G_{b,o,i,j}.$$
#
# In im2col form, $\partial\mathcal{L}/\partial W_{mat} = \sum_b G_{mat} X_{cols}^\top$ and
# $\partial\mathcal{L}/\partial X_{cols} = W_{mat}^\top G_{mat}$, folded back into the image (`F.fold`
# adds overlapping windows). That last step is a *transposed convolution* of $G$ with the same weights:
# the gradient of a convolution with respect to its input is a convolution.

# %%
worst_grad = 0.0
for case in [c for c in cases if c["groups"] == 1]:
    x = torch.randn(2, 4, 9, 11, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 4, 2, 5, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    args = {k: case[k] for k in ("stride", "padding", "dilation")}
    y = F.conv2d(x, w, b, **args)
    G = torch.randn_like(y)
    y.backward(G)
    gx, gw, gb = conv2d_backward(x.detach(), w.detach(), G, **args)
    worst_grad = max(worst_grad, *(float((m - r).abs().max()) for m, r in ((gx, x.grad), (gw, w.grad), (gb, b.grad))))
print(f"dL/dx, dL/dw, dL/db by hand vs autograd over {len(cases) // 2} geometries: largest difference {worst_grad:.1e}")
assert worst_grad < 1e-10

# the input gradient as a transposed convolution (stride 1, padding 1, 3x3): PyTorch's own
x = torch.randn(1, 4, 8, 8, dtype=torch.float64)
w = torch.randn(6, 4, 3, 3, dtype=torch.float64)
G = torch.randn(1, 6, 8, 8, dtype=torch.float64)
as_transposed = F.conv_transpose2d(G, w, padding=1)
gap = float((conv2d_backward(x, w, G, padding=1)[0] - as_transposed).abs().max())
print(f"dL/dx == conv_transpose2d(G, w): largest difference {gap:.1e}")
assert gap < 1e-12

# %% [markdown]
# **Max-pooling (池化)** keeps the largest value of each window; its gradient goes to that one input and
# is zero for the others (ties aside), which our `max_pool2d_backward` does with the saved arg-max:

# %%
x = torch.randn(2, 3, 6, 8, dtype=torch.float64, requires_grad=True)
values, where = max_pool2d(x.detach())
G = torch.randn_like(values)
F.max_pool2d(x, 2).backward(G)
pool_gap = max(float((values - F.max_pool2d(x.detach(), 2)).abs().max()),
               float((max_pool2d_backward(G, where) - x.grad).abs().max()))
print(f"max-pool forward and backward vs PyTorch: largest difference {pool_gap:.1e}; "
      f"share of inputs that get a gradient: {float((x.grad != 0).float().mean()):.2f} (one in four)")
assert pool_gap == 0.0

# %% [markdown]
# ## 3. Translation equivariance, and what strides and pooling do to it
#
# Shift the input and a convolution's output shifts by the same amount (translation equivariance,
# 平移等变性), because the same weights are used at every position: weight sharing (权重共享). Away from
# the borders (where zero padding breaks it) the match is exact. A stride of 2 only commutes with shifts
# by a multiple of 2, and so does a 2x2 pooling.

# %%
torch.manual_seed(0)
image = torch.rand(1, 1, 32, 32)
conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
strided = nn.Conv2d(1, 4, 3, padding=1, stride=2, bias=False)
strided.weight.data.copy_(conv.weight.data)
shift = lambda t, dy, dx: torch.roll(t, shifts=(dy, dx), dims=(2, 3))
inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
with torch.no_grad():
    equi = float((conv(shift(image, 2, 3)) - shift(conv(image), 2, 3))[inner].abs().max())
    odd = float((strided(shift(image, 1, 1)) - strided(image)).abs().mean())
    even = float((strided(shift(image, 2, 2)) - shift(strided(image), 1, 1))[inner].abs().max())
    pooled = lambda t: F.max_pool2d(conv(t), 2)
    pool_odd = float((pooled(shift(image, 1, 1)) - pooled(image)).abs().mean())
    pool_even = float((pooled(shift(image, 2, 2)) - shift(pooled(image), 1, 1))[inner].abs().max())
print(f"stride 1, shift (2, 3): output shifted by (2, 3), largest interior difference {equi:.1e}")
print(f"stride 2, shift (2, 2): output shifted by (1, 1), largest interior difference {even:.1e}; "
      f"shift (1, 1): no shift of the output matches, mean change {odd:.3f}")
print(f"pool 2x2, shift (2, 2): interior difference {pool_even:.1e}; shift (1, 1): mean change {pool_odd:.3f}")
assert equi < 1e-6 and even < 1e-6 and pool_even < 1e-6
assert odd > 100 * max(even, 1e-9) and pool_odd > 100 * max(pool_even, 1e-9)

# %% [markdown]
# **The receptive field (感受野)** of a unit is the patch of input it can see. Along one axis, after
# layer $l$ with kernel $k_l$ and stride $s_l$: $r_l = r_{l-1} + (k_l - 1)\,j_{l-1}$ and
# $j_l = j_{l-1} s_l$ ($j$: input pixels between neighbouring units, $r_0 = j_0 = 1$). The network of
# section 4 (`karpa_lab.models.conv.small_cnn`: conv 3x3, ReLU, pool 2x2, conv 3x3, ReLU, a global
# max-pool, a linear read-out) stacks conv 3x3, pool 2x2 and conv 3x3. The formula, and the patch where a
# unit's gradient with respect to the input is non-zero, must agree:

# %%
field = receptive_field([(3, 1), (2, 2), (3, 1)])
torch.manual_seed(0)
probe = small_cnn()[:5].double()  # up to the second convolution's ReLU
x = torch.rand(1, 1, 16, 16, dtype=torch.float64, requires_grad=True)
probe(x)[0, :, 4, 4].sum().backward()
seen = (x.grad[0, 0].abs() > 0).nonzero()
extent = tuple(int(v) for v in (seen.max(0).values - seen.min(0).values + 1))
print(f"(receptive field, jump) after each layer: {field}; the unit at (4, 4) of the second map sees a "
      f"{extent[0]}x{extent[1]} patch of the input")
assert extent == (field[-1][0], field[-1][0])
plt.figure(figsize=(3.2, 3.2))
plt.imshow(x.grad[0, 0].abs().numpy() > 0, cmap="Blues")
plt.title(f"receptive field: {extent[0]}x{extent[1]}")
plt.xticks([])
plt.yticks([])
plt.show()

# %% [markdown]
# ## 4. Where the inductive bias matters: digits anywhere on a canvas
#
# Put each 8x8 digit at a random place on a 16x16 canvas (three places per training digit, one per test
# digit, the test digits never seen: `karpa_lab.data.digits_on_canvas`). A small CNN, and an MLP with one hidden layer and as many weights.
# The MLP has to learn each digit at each position separately; the CNN's shared filters and its global
# max-pool find a stroke wherever it is.
#
# **The control** (the shuffle test of the MNIST-1D paper): permute the 256 pixels with one fixed
# permutation, the same for every image. For the MLP nothing changes: its first layer has one weight per
# pixel, so with its initial weights permuted the same way it computes the same function (only the order
# of the additions differs, so training drifts apart by round-off). The CNN loses its neighbourhoods, and
# its advantage should go with them. An MLP with ten times the weights is there for scale.

# %%
CANVAS, COPIES = 16, by_scale(3, 8)
EPOCHS = by_scale(6, 20)
digits = load_digits_splits()


x_train, y_train = digits_on_canvas(digits.x_train, CANVAS, COPIES, seed=1), digits.y_train.repeat(COPIES)
x_test, y_test = digits_on_canvas(digits.x_test, CANVAS, 1, seed=2), digits.y_test
permutation = torch.randperm(CANVAS * CANVAS, generator=torch.Generator().manual_seed(5))
shuffled = lambda t: t.flatten(1)[:, permutation].view_as(t)
n_params = lambda m: sum(p.numel() for p in m.parameters())
cnn_size = n_params(small_cnn())
hidden = round((cnn_size - 10) / (CANVAS * CANVAS + 11))  # 256 h + h + 10 h + 10 weights


def mlp(permute_init: bool = False, width: int = hidden) -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(CANVAS * CANVAS, width), nn.ReLU(), nn.Linear(width, 10))
    if permute_init:  # the same weights, each attached to the pixel it saw before the shuffle
        with torch.no_grad():
            model[1].weight[:, :] = model[1].weight[:, permutation].clone()  # pixel q now holds old pixel perm[q]
    return model


def train_and_test(model: nn.Module, x_tr, x_te) -> float:
    data = DataLoader(TensorDataset(x_tr, y_train), batch_size=64, shuffle=True,
                      generator=torch.Generator().manual_seed(0))
    fit(model, data, epochs=EPOCHS, lr=3e-3, device="cpu", verbose=False)
    return evaluate(model, DataLoader(TensorDataset(x_te, y_test), batch_size=512), metrics={"acc": accuracy})["acc"]


with torch.no_grad():  # before training: the shuffled MLP is the same function on shuffled pixels
    same_function = float((mlp(permute_init=True)(shuffled(x_test)) - mlp()(x_test)).abs().max())
print(f"untrained MLP, shuffled pixels and permuted weights vs the original: largest difference {same_function:.1e}")
assert same_function < 1e-5

start = time.perf_counter()
torch.manual_seed(0)
cnn = small_cnn()
acc = {"CNN": train_and_test(cnn, x_train, x_test),
       "MLP": train_and_test(mlp(), x_train, x_test)}
torch.manual_seed(0)
acc["CNN, shuffled pixels"] = train_and_test(small_cnn(), shuffled(x_train), shuffled(x_test))
acc["MLP, shuffled pixels"] = train_and_test(mlp(permute_init=True), shuffled(x_train), shuffled(x_test))
acc["MLP, 10x the weights"] = train_and_test(mlp(width=10 * hidden), x_train, x_test)
torch.manual_seed(0)
untrained = evaluate(small_cnn(), DataLoader(TensorDataset(x_test, y_test), batch_size=512), metrics={"acc": accuracy})["acc"]
print(f"{len(y_train)} training images, {len(y_test)} test images, {EPOCHS} epochs, "
      f"{time.perf_counter() - start:.1f} s")
print(f"weights: CNN {cnn_size}, MLP {n_params(mlp())} (hidden {hidden}), large MLP {n_params(mlp(width=10 * hidden))}")
for name, value in acc.items():
    print(f"  {name:<22} test accuracy {value:.3f}")
print(f"  {'untrained CNN':<22} test accuracy {untrained:.3f}")
advantage = acc["CNN"] - acc["MLP"]
advantage_shuffled = acc["CNN, shuffled pixels"] - acc["MLP, shuffled pixels"]
print(f"CNN minus MLP: {advantage:+.3f} on the canvas, {advantage_shuffled:+.3f} with the pixels shuffled")

# %% [markdown]
# The claims, each checked. The CNN beats the MLP of the same size by a wide margin, and an untrained CNN
# (the negative control) is nowhere near that margin; with the pixels shuffled the CNN's edge is gone;
# and the MLP does not notice the shuffle. Compare the large MLP's row with the CNN's: ten times the
# weights buy back only part of what the shared filters give.

# %%
assert advantage > 0.3, "the CNN should beat an MLP of the same size by a wide margin on shifted digits"
assert untrained - acc["MLP"] < 0.3, "an untrained CNN must not pass the check above"
assert advantage_shuffled < 0.05, "with the pixels shuffled the CNN's advantage should vanish"
assert abs(acc["MLP, shuffled pixels"] - acc["MLP"]) < 0.05, "the shuffle is invisible to an MLP (up to round-off)"
assert acc["CNN"] > acc["MLP, 10x the weights"] + 0.15, "ten times the weights should not buy the CNN's accuracy"

# %% [markdown]
# ## 5. Reading a model's shapes
#
# A CIFAR network as it is often written: three conv + pool blocks, then `nn.Linear(128*7*7, 1024)`. Fed
# 64x64 images it cannot run, and the error says only that two matrices do not multiply. A shape trace
# (a forward hook on every layer that records its output shape, `karpa_lab.models.conv.shape_trace`)
# names the layer that breaks:

# %%
def cifar_net(flat: int) -> nn.Sequential:
    block = lambda c_in, c_out: [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*block(3, 32), *block(32, 64), *block(64, 128), nn.Flatten(),
                         nn.Linear(flat, 1024), nn.ReLU(), nn.Linear(1024, 10))


images = torch.zeros(2, 3, 64, 64)
trace = shape_trace(cifar_net(128 * 7 * 7), images)
for name, kind, shape in trace:
    print(f"  {name:>3} {kind:<10} {shape}")
broken = trace[-1]
assert broken[1] == "Linear" and "fails" in str(broken[2])
flat = trace[-2][2][1]  # what Flatten really gives: 128 channels x 8 x 8
fixed = cifar_net(flat)
print(f"Flatten gives {flat} = 128 x 8 x 8 (64 / 2 / 2 / 2 = 8, not 7); with nn.Linear({flat}, 1024) the output is "
      f"{tuple(fixed(images).shape)}")
assert fixed(images).shape == (2, 10)

# %% [markdown]
# ## 6. Look inside: learned filters and feature maps of a photo
#
# The first-layer filters of the CNN trained in section 4, and the feature maps (特征图) they make of a
# photograph that ships with scikit-learn (`china.jpg`, nothing downloaded).

# %%
filters = cnn[0].weight.detach()[:, 0]
photo = load_photo("china.jpg", height=96)
with torch.no_grad():
    maps = F.relu(cnn[0](photo[None]))[0]
fig, axes = plt.subplots(2, len(filters), figsize=(1.2 * len(filters), 2.8))
for k in range(len(filters)):
    axes[0, k].imshow(filters[k], cmap="RdBu_r", vmin=-filters.abs().max(), vmax=filters.abs().max())
    axes[1, k].imshow(maps[k], cmap="gray")
    for ax in axes[:, k]:
        ax.set_xticks([])
        ax.set_yticks([])
axes[0, 0].set_ylabel("filter")
axes[1, 0].set_ylabel("map")
plt.tight_layout()
plt.show()
spread = (filters.flatten(1) / filters.flatten(1).norm(dim=1, keepdim=True))
similarity = (spread @ spread.T).abs().fill_diagonal_(0).max()
print(f"{len(filters)} filters; the most similar pair has |cosine| {float(similarity):.2f} (they learned different patterns)")
assert similarity < 0.99

# %% [markdown]
# ## 7. Play: one filter, one input
#
# Pick a hand-made filter and an input, and change the stride: the feature map is
# `conv2d(input, kernel, padding=1, stride)`, computed by our im2col convolution. Edges light up where the
# image changes across the filter's direction; a stride of 2 halves the map.

# %%
filter_widget()

# %% [markdown]
# ## Exercises
#
# 1. **Predict, then run.** For a 28x28 input, conv 5x5 (no padding), pool 2, conv 5x5, pool 2: what are
#    the output size and the receptive field of one unit of the last map? Check with `shape_trace` and
#    `receptive_field`.
# 2. **Count.** How many multiply-adds does a 3x3 convolution with 64 input and 64 output channels cost
#    on a 56x56 map, and how many weights does it have? Compare with a fully connected layer between the
#    same two maps.
# 3. **The flipped kernel.** Mathematicians' convolution flips the kernel. Write it with `conv2d_loops`
#    and show it equals `F.conv2d` with `weight.flip(2, 3)`.
# 4. **Average pooling.** Write `avg_pool2d` and its backward in the style of `max_pool2d` and check both
#    against PyTorch. Which inputs get a gradient now?
# 5. **Global average instead of global max.** Build the CNN with `small_cnn(pool="avg")` (global
#    average pooling instead of the global max) and re-run section 4. Predict first: does the CNN's edge
#    over the MLP grow or shrink?
#
# Worked solutions, each one run and checked: [solutions/12_cnns.ipynb](solutions/12_cnns.ipynb).
#
# ## Summary
#
# - A convolution is a cross-correlation with one small kernel per output and input channel pair, shared
#   over all positions; output size $\lfloor (H + 2p - d(k-1) - 1)/s \rfloor + 1$. As loops and as im2col
#   plus one matrix product it equals `F.conv2d` to round-off for every stride, padding, dilation and group.
# - Its gradient with respect to the weights correlates the input with the upstream gradient; with
#   respect to the input it is a transposed convolution of the upstream gradient. Max-pooling sends each
#   gradient to its window's maximum.
# - Convolutions are translation equivariant; strides and pooling keep that only for shifts by their step.
# - On digits placed anywhere, a CNN beats an MLP with as many weights by a wide margin; with the pixels
#   shuffled the CNN's advantage is gone and the MLP does not notice. That is the inductive bias at work.
# - A shape trace names the layer where a model's shapes stop fitting.
#
# **Next:** lesson 13 puts a CNN in front of an LSTM to write captions for images.
#
# | English | 中文 | one line |
# |---|---|---|
# | convolution | 卷积 | one small kernel slid over the input, the same weights at every position |
# | kernel | 卷积核 | the small weight array a convolution slides |
# | feature map | 特征图 | the output of one channel of a convolution |
# | stride | 步幅 | how many input pixels the kernel moves between outputs |
# | padding | 填充 | zeros added at the border so that the kernel can sit on edge pixels |
# | pooling | 池化 | a window reduced to one value (its maximum, or its mean) |
# | receptive field | 感受野 | the patch of input one unit can see |
# | translation equivariance | 平移等变性 | shift the input, and the output shifts the same way |
# | weight sharing | 权重共享 | one set of weights used at many positions |
# | inductive bias | 归纳偏置 | what a model assumes before it sees data |
