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
# # Lab 05 · A circular convolution layer, forward and backward
#
# Some images have no edge: a 360° panorama goes on past its right border into its left one, a map of the
# globe wraps around in longitude, a simulation on a periodic grid has no boundary at all. A convolution layer
# for such data pads each side of its input with the pixels of the *opposite* side instead of zeros: circular
# (periodic) padding, as in Schubert et al. (2019), "Circular convolutional neural networks for panoramic
# images and laser data", and in PyTorch's `nn.Conv2d(..., padding_mode="circular")`. Such a layer commutes
# exactly with circular shifts of its input, border pixels included. You will write its forward pass with
# nothing but tensor operations, then its backward pass by hand: the three gradients that training needs. Your
# code is graded against PyTorch's circularly padded convolution and its autograd on shapes, strides and
# paddings you do not see, so it must be right for every geometry, not just the examples here.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `circular_conv2d`: the layer's output | 1 + 3 |
# | 2 | `circular_conv2d_backward`: dL/dx, then dL/dweight and dL/dbias | 2 + 2 |
# | 3 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# Each test cell below your code checks it and says what is wrong: which tensor, which shape, how far off,
# and which of the usual mistakes your numbers match. The teacher's grader runs those tests and some hidden
# ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename the
# functions, and do not use `F.conv2d`, `nn.Conv2d`, `F.conv_transpose2d`, autograd (`.backward()`,
# `torch.autograd.grad`) or `karpa_lab.models.conv` inside your functions: the grader sees such calls however
# they are made. `F.pad` (in any mode), `F.unfold` and `F.fold` are allowed. Before you hand it in:
# *Kernel → Restart Kernel and Run All Cells*; the notebook runs in a few seconds.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import warnings

import torch
import torch.nn.functional as F

from karpa_lab.grading import check_conv2d, check_conv2d_backward

torch.manual_seed(0)
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


def circular_reference(x, weight, bias=None, stride=1, padding=0):
    """PyTorch's circularly padded convolution, the layer this lab builds (for the examples and the tests)."""
    (ph, pw) = (padding, padding) if isinstance(padding, int) else padding
    return F.conv2d(F.pad(x, (pw, pw, ph, ph), mode="circular"), weight, bias, stride=stride)


# %% [markdown]
# ## Part 1 · The forward pass
#
# A convolution layer reads x (B, C_in, H, W) with a weight (C_out, C_in, kH, kW) and a bias (C_out,), where
# B is the batch size, C_in and C_out the numbers of input and output channels (通道) and kH x kW the
# kernel (卷积核) size. With stride $(s_h, s_w)$ and circular padding $(p_h, p_w)$ (at most H and W), the
# padded input $x^{pad}$ (B, C_in, H + 2p_h, W + 2p_w) reads x as if it tiled the plane:
#
# $$x^{pad}_{b,c,p,q} = x_{b,\,c,\,(p - p_h) \bmod H,\,(q - p_w) \bmod W},$$
#
# so the $p_h$ rows above x are its last $p_h$ rows, the $p_h$ rows below it its first ones, and the same for
# the columns (the corners come from the opposite corners). Then, as in every convolution layer,
#
# $$y_{b,o,i,j} = \text{bias}_o + \sum_{c=0}^{C_{in}-1} \sum_{u=0}^{k_H-1} \sum_{v=0}^{k_W-1}
#   x^{pad}_{b,\,c,\,i s_h + u,\,j s_w + v}\; w_{o,c,u,v}, \qquad
#   H_{out} = \left\lfloor \frac{H + 2p_h - k_H}{s_h} \right\rfloor + 1, \quad
#   W_{out} = \left\lfloor \frac{W + 2p_w - k_W}{s_w} \right\rfloor + 1.$$
#
# The output y is (B, C_out, H_out, W_out). This is a cross-correlation: the kernel is not flipped (what
# deep learning calls a convolution, and what `F.conv2d` computes). With stride 1 and "same" padding
# ($2p = k - 1$, so H_out = H) the layer is exactly equivariant to circular shifts: rolling x by (a, b)
# pixels (`torch.roll`) rolls y by (a, b), at the border too, which no zero-padded layer does.
#
# **Task 1.** Write `circular_conv2d(x, weight, bias, stride, padding)`. `bias` may be `None` (then leave it
# out); `stride` and `padding` are each an int or a pair (for height, width). Loops are fine: a loop over the
# kernel offsets (u, v), with the rest done on whole tensors, is short and fast enough. Return a new tensor
# with x's dtype.

# %% nbgrader={"grade": false, "grade_id": "circular_conv2d", "locked": false, "schema_version": 3, "solution": true, "task": false}
def circular_conv2d(x, weight, bias=None, stride=1, padding=0):
    """x (B, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out,) or None -> y (B, C_out, H_out, W_out)."""
    ### BEGIN SOLUTION
    (sh, sw) = (stride, stride) if isinstance(stride, int) else stride
    (ph, pw) = (padding, padding) if isinstance(padding, int) else padding
    kh, kw = weight.shape[2:]
    # the row (column) of x that each padded row (column) copies: x^pad = x[rows][:, cols]
    rows = (torch.arange(x.shape[2] + 2 * ph) - ph) % x.shape[2]
    cols = (torch.arange(x.shape[3] + 2 * pw) - pw) % x.shape[3]
    xp = x[:, :, rows][:, :, :, cols]
    h_out, w_out = (xp.shape[2] - kh) // sh + 1, (xp.shape[3] - kw) // sw + 1
    y = x.new_zeros(x.shape[0], weight.shape[0], h_out, w_out)
    for u in range(kh):
        for v in range(kw):
            # the input pixel under kernel offset (u, v), for every output pixel at once: (B, C_in, H_out, W_out)
            patch = xp[:, :, u:u + sh * (h_out - 1) + 1:sh, v:v + sw * (w_out - 1) + 1:sw]
            y = y + torch.einsum("bchw,oc->bohw", patch, weight[:, :, u, v])
    return y if bias is None else y + bias.view(1, -1, 1, 1)
    ### END SOLUTION


# %% [markdown]
# Try it on a small example (change the stride and padding and watch the output size), and see a pixel at
# the left edge reach the outputs on the right edge:

# %%
x = torch.randn(1, 2, 6, 5)
weight = torch.randn(3, 2, 3, 3)
y = circular_conv2d(x, weight, None, stride=2, padding=1)
print("y", tuple(y.shape), "reference", tuple(circular_reference(x, weight, None, stride=2, padding=1).shape))
edge = torch.zeros(1, 1, 5, 5)
edge[0, 0, 2, 0] = 1.0  # one pixel on the left edge
print(circular_conv2d(edge, torch.ones(1, 1, 3, 3), None, 1, 1)[0, 0])

# %% [markdown]
# The tests of Task 1: the output's shape over strides and paddings, and the equivariance to circular shifts
# (1 point); its values against PyTorch's circularly padded `F.conv2d`, with and without a bias (3 points).

# %% nbgrader={"grade": true, "grade_id": "test_forward_shift", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# A 7x6 input, a 3x2 kernel: stride 1 and no padding, stride 2 with padding 1, stride (1, 2) with padding (2, 0).
for stride, padding in [(1, 0), (2, 1), ((1, 2), (2, 0))]:
    x = torch.randn(2, 3, 7, 6)
    w = torch.randn(4, 3, 3, 2)
    out = circular_conv2d(x, w, None, stride, padding)
    want = tuple(circular_reference(x, w, None, stride=stride, padding=padding).shape)
    assert isinstance(out, torch.Tensor), f"circular_conv2d must return a tensor, got {type(out).__name__}"
    assert tuple(out.shape) == want, (f"stride={stride}, padding={padding}: the output is {tuple(out.shape)}, "
                                      f"it should be {want} = (batch, out_channels, H_out, W_out)")
print("✓ shapes")


def check_shift(size, kernel, padding, shift, seed):
    """conv(roll(x)) == roll(conv(x)) at every pixel, for stride 1 and same padding."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 2, *size, generator=gen, dtype=torch.float64)
    w = torch.randn(3, 2, *kernel, generator=gen, dtype=torch.float64)
    rolled_in = circular_conv2d(torch.roll(x, shift, dims=(2, 3)), w, None, 1, padding)
    rolled_out = torch.roll(circular_conv2d(x, w, None, 1, padding), shift, dims=(2, 3))
    assert tuple(rolled_in.shape) == (1, 3, *size), (
        f"kernel {kernel} with padding {padding} should keep the size {size}: got {tuple(rolled_in.shape)}")
    err = (rolled_in - rolled_out).abs()
    i, j = divmod(int(err.amax(dim=(0, 1)).argmax()), size[1])
    assert float(err.max()) < 1e-10, (
        f"input {size}, kernel {kernel}, padding {padding}: rolling x by {shift} does not roll the output by "
        f"{shift}; off by {float(err.max()):.3g} at output pixel ({i}, {j}). A circularly padded layer commutes "
        f"with circular shifts at every pixel; zeros in the padding break it at the border")


check_shift((8, 9), (3, 3), 1, (2, -3), seed=0)
print("✓ rolling the input rolls the output, border included")
### BEGIN HIDDEN TESTS
for size, kernel, stride, padding in [((5, 5), (5, 5), 1, 0), ((9, 4), (1, 1), 3, 0), ((4, 7), (2, 2), (2, 3), (1, 2)),
                                      ((3, 3), (3, 3), 1, 3), ((6, 5), (4, 2), 2, (4, 5))]:
    x, w = torch.randn(1, 2, *size), torch.randn(3, 2, *kernel)
    out = circular_conv2d(x, w, None, stride, padding)
    assert tuple(out.shape) == tuple(circular_reference(x, w, None, stride, padding).shape), (size, kernel)
check_shift((7, 10), (5, 3), (2, 1), (-1, 4), seed=1)
check_shift((6, 6), (3, 5), (1, 2), (5, 5), seed=2)
check_shift((4, 9), (1, 7), (0, 3), (0, -8), seed=3)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_forward_values", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Your circular_conv2d against F.conv2d of the circularly padded input, in float64: with a bias and padding 1,
# without a bias and padding (2, 1), and with stride 2 and padding 1.
check_conv2d(circular_conv2d, padding=1, padding_mode="circular")
check_conv2d(circular_conv2d, padding=(2, 1), bias=False, seed=1, padding_mode="circular")
check_conv2d(circular_conv2d, stride=2, padding=1, seed=2, padding_mode="circular")
### BEGIN HIDDEN TESTS
for seed, (b, c_in, c_out, size, kernel, stride, padding) in enumerate([
        (1, 1, 1, (5, 5), (3, 3), 1, 1), (3, 2, 5, (8, 7), (1, 1), 1, 0), (2, 3, 2, (9, 8), (3, 3), 2, 1),
        (1, 2, 3, (7, 9), (2, 3), (2, 1), (1, 0)), (2, 1, 2, (6, 6), (6, 6), 1, (3, 2)), (1, 2, 2, (5, 4), (3, 3), 3, 2),
        (1, 1, 2, (3, 4), (3, 3), 1, (3, 4)), (2, 2, 1, (6, 5), (2, 4), (1, 2), (0, 5))]):
    check_conv2d(circular_conv2d, b, c_in, c_out, size, kernel, stride, padding, seed=10 + seed,
                 padding_mode="circular")
x, w, bias = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
assert torch.allclose(circular_conv2d(x, w, bias, 1, 1), circular_reference(x, w, bias, 1, 1), atol=1e-5), "float32"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · The backward pass
#
# Training needs the gradient of a loss L with respect to the input, the weight and the bias, given
# $g = \partial L / \partial y$ (B, C_out, H_out, W_out) from the layer above. Each output pixel is a sum of
# products, so the chain rule sends $g_{b,o,i,j}$ back along every product it is made of:
#
# $$\frac{\partial L}{\partial \text{bias}_o} = \sum_{b,i,j} g_{b,o,i,j}, \qquad
#   \frac{\partial L}{\partial w_{o,c,u,v}} = \sum_{b,i,j} g_{b,o,i,j}\; x^{pad}_{b,\,c,\,i s_h + u,\,j s_w + v},$$
#
# $$\frac{\partial L}{\partial x^{pad}_{b,c,p,q}} = \sum_{o,u,v \,:\, p = i s_h + u,\; q = j s_w + v}
#   g_{b,o,i,j}\; w_{o,c,u,v}.$$
#
# A padded pixel is not an input of its own: it is a copy of $x_{b,c,(p - p_h) \bmod H,\,(q - p_w) \bmod W}$.
# So every pixel of x collects the gradient of all its copies, itself and those in the padding:
#
# $$\frac{\partial L}{\partial x_{b,c,m,n}} = \sum_{p,q \,:\, (p - p_h) \bmod H = m,\; (q - p_w) \bmod W = n}
#   \frac{\partial L}{\partial x^{pad}_{b,c,p,q}}.$$
#
# Each gradient has the shape of what it is the gradient of.
#
# **Task 2.** Write `circular_conv2d_backward(x, weight, grad_out, stride, padding)` returning the triple
# `(grad_x, grad_weight, grad_bias)`. The same loop over (u, v) as in Task 1 works: at each offset, the
# patch that multiplied $w_{:,:,u,v}$ gets $g \cdot w$ added back, and $w_{:,:,u,v}$ collects $g \cdot$ patch.
# For the last sum, `Tensor.index_add_(dim, index, source)` adds slice k of `source` into slice `index[k]`,
# repeated indices adding up.

# %% nbgrader={"grade": false, "grade_id": "circular_conv2d_backward", "locked": false, "schema_version": 3, "solution": true, "task": false}
def circular_conv2d_backward(x, weight, grad_out, stride=1, padding=0):
    """dL/dx (like x), dL/dweight (like weight), dL/dbias (C_out,) from grad_out = dL/dy (B, C_out, H_out, W_out)."""
    ### BEGIN SOLUTION
    (sh, sw) = (stride, stride) if isinstance(stride, int) else stride
    (ph, pw) = (padding, padding) if isinstance(padding, int) else padding
    kh, kw = weight.shape[2:]
    h_out, w_out = grad_out.shape[2:]
    rows = (torch.arange(x.shape[2] + 2 * ph) - ph) % x.shape[2]
    cols = (torch.arange(x.shape[3] + 2 * pw) - pw) % x.shape[3]
    xp = x[:, :, rows][:, :, :, cols]
    grad_xp, grad_weight = torch.zeros_like(xp), torch.zeros_like(weight)
    for u in range(kh):
        for v in range(kw):
            r, c = slice(u, u + sh * (h_out - 1) + 1, sh), slice(v, v + sw * (w_out - 1) + 1, sw)
            grad_weight[:, :, u, v] = torch.einsum("bohw,bchw->oc", grad_out, xp[:, :, r, c])
            grad_xp[:, :, r, c] += torch.einsum("bohw,oc->bchw", grad_out, weight[:, :, u, v])
    # every padded copy sends its gradient back to the pixel it copies: first along the rows, then the columns
    grad_rows = grad_xp.new_zeros(x.shape[0], x.shape[1], x.shape[2], xp.shape[3]).index_add_(2, rows, grad_xp)
    grad_x = torch.zeros_like(x).index_add_(3, cols, grad_rows)
    return grad_x, grad_weight, grad_out.sum(dim=(0, 2, 3))
    ### END SOLUTION


# %% [markdown]
# The tests of Task 2, against autograd through the circularly padded `F.conv2d`: dL/dx (2 points), and
# dL/dweight with dL/dbias (2 points).

# %% nbgrader={"grade": true, "grade_id": "test_grad_input", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_conv2d_backward(circular_conv2d_backward, only="grad_x", padding=1, padding_mode="circular")
check_conv2d_backward(circular_conv2d_backward, only="grad_x", stride=2, padding=(1, 2), seed=1,
                      padding_mode="circular")
### BEGIN HIDDEN TESTS
for seed, (b, c_in, c_out, size, kernel, stride, padding) in enumerate([
        (1, 1, 1, (5, 5), (3, 3), 1, 1), (2, 3, 2, (9, 8), (3, 3), 2, 1), (1, 2, 3, (7, 9), (2, 3), (2, 1), (1, 0)),
        (1, 2, 2, (5, 4), (3, 3), 3, 2), (2, 2, 1, (8, 8), (4, 4), 4, 0), (1, 1, 2, (3, 4), (3, 3), 1, (3, 4)),
        (1, 2, 1, (6, 5), (5, 1), (1, 2), (2, 0))]):
    check_conv2d_backward(circular_conv2d_backward, "grad_x", b, c_in, c_out, size, kernel, stride, padding,
                          seed=20 + seed, padding_mode="circular")
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_grad_params", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_conv2d_backward(circular_conv2d_backward, only="params", padding=1, padding_mode="circular")
check_conv2d_backward(circular_conv2d_backward, only="params", stride=2, padding=(1, 2), seed=1,
                      padding_mode="circular")
### BEGIN HIDDEN TESTS
for seed, (b, c_in, c_out, size, kernel, stride, padding) in enumerate([
        (3, 2, 5, (8, 7), (1, 1), 1, 0), (1, 2, 3, (7, 9), (2, 3), (2, 1), (1, 0)), (1, 2, 2, (5, 4), (3, 3), 3, 2),
        (4, 1, 3, (5, 6), (2, 2), 2, 1), (1, 1, 2, (3, 4), (3, 3), 1, (3, 4))]):
    check_conv2d_backward(circular_conv2d_backward, "params", b, c_in, c_out, size, kernel, stride, padding,
                          seed=30 + seed, padding_mode="circular")
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · The gradient of a circular convolution is a circular convolution (written answer, 2 points)
#
# In a few sentences, for stride 1 and "same" padding $p = (k - 1)/2$ on both axes (an odd kernel, so
# H_out = H): show from the formulas of Task 2 that $\partial L/\partial x$ is itself a circular convolution
# of $g$, and say with which kernel and which padding (what happens to the kernel's orientation and its
# channel axes, and why, unlike in a zero-padded layer, $g$ needs no zeros around it). Then say what changes
# with stride 2 (take H and W even): where do the values of $g$ go before that convolution, and why?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_transposed", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). With $s = 1$ the forward pass is
# $y_{b,o,i,j} = \sum_{c,u,v} x_{b,c,(i+u-p) \bmod H,(j+v-p) \bmod W}\, w_{o,c,u,v}$, so collecting the copies
# gives $\partial L/\partial x_{b,c,m,n} = \sum_{o,u,v} g_{b,o,(m-u+p) \bmod H,(n-v+p) \bmod W}\, w_{o,c,u,v}$.
# Writing $u' = k - 1 - u$, $v' = k - 1 - v$ and using $k - 1 = 2p$ turns the index into $(m + u' - p) \bmod H$:
# $\partial L/\partial x = \sum_{o,u',v'} g_{b,o,(m+u'-p) \bmod H,(n+v'-p) \bmod W}\, w_{o,c,k-1-u',k-1-v'}$, the
# same circular layer applied to $g$ with the kernel rotated by 180° and its in/out channels swapped, and the
# same circular padding $p$. No zeros are needed because there is no border: the output is periodic like the
# input, so the terms a zero-padded layer loses at the edges (and pads $g$ with $k-1-p$ zeros to express)
# wrap around to the other side. With stride 2 the output pixel $(i, j)$ is centred on input position
# $(2i, 2j)$, so before that convolution $g$ is spread onto the H x W grid with a zero between neighbouring
# values (a transposed convolution): each $g_{b,o,i,j}$ goes back to the position its window is centred on. One
# point for the rotated kernel with the same circular padding and no zeros, one for the zeros inserted by
# the stride.
