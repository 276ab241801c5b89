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
# # Lab 05 · A convolution layer, forward and backward
#
# You will write the forward pass of a 2-D convolution layer with nothing but tensor operations, then its
# backward pass by hand: the three gradients that training needs. Your code is graded against PyTorch's
# `F.conv2d` and its autograd on shapes, strides and paddings you do not see, so it must be right for every
# geometry, not just the examples here.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `conv2d_forward`: the layer's output | 1 + 3 |
# | 2 | `conv2d_backward`: dL/dx, dL/dweight, dL/dbias | 2 + 1 + 1 |
# | 3 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# Each test cell below your code checks it and says what is wrong: which tensor, which shape, how far off,
# and which of the usual mistakes your numbers match. The teacher's grader runs those tests and some hidden
# ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename the
# functions, and do not use `F.conv2d`, `nn.Conv2d`, `F.conv_transpose2d`, autograd (`.backward()`,
# `torch.autograd.grad`) or `karpa_lab.models.conv` inside your functions: the grader sees such calls however
# they are made. `F.pad`, `F.unfold` and `F.fold` are allowed. Before you hand it in: *Kernel → Restart
# Kernel and Run All Cells*; the notebook runs in a few seconds.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import warnings

import torch
import torch.nn.functional as F

from karpa_lab.grading import check_conv2d, check_conv2d_backward

torch.manual_seed(0)
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


# %% [markdown]
# ## Part 1 · The forward pass
#
# A convolution layer reads x (B, C_in, H, W) with a weight (C_out, C_in, kH, kW) and a bias (C_out,), where
# B is the batch size, C_in and C_out the numbers of input and output channels (通道) and kH x kW the
# kernel (卷积核) size. With stride $(s_h, s_w)$ and zero padding $(p_h, p_w)$, pad x with $p_h$ zero rows
# above and below and $p_w$ zero columns left and right (call it $x^{pad}$), then
#
# $$y_{b,o,i,j} = \text{bias}_o + \sum_{c=0}^{C_{in}-1} \sum_{u=0}^{k_H-1} \sum_{v=0}^{k_W-1}
#   x^{pad}_{b,\,c,\,i s_h + u,\,j s_w + v}\; w_{o,c,u,v}, \qquad
#   H_{out} = \left\lfloor \frac{H + 2p_h - k_H}{s_h} \right\rfloor + 1, \quad
#   W_{out} = \left\lfloor \frac{W + 2p_w - k_W}{s_w} \right\rfloor + 1.$$
#
# The output y is (B, C_out, H_out, W_out). This is a cross-correlation: the kernel is not flipped (what
# deep learning calls a convolution, and what `F.conv2d` computes).
#
# **Task 1.** Write `conv2d_forward(x, weight, bias, stride, padding)`. `bias` may be `None` (then leave it
# out); `stride` and `padding` are each an int or a pair (for height, width). Loops are fine: a loop over the
# kernel offsets (u, v), with the rest done on whole tensors, is short and fast enough. Return a new tensor
# with x's dtype.

# %% nbgrader={"grade": false, "grade_id": "conv2d_forward", "locked": false, "schema_version": 3, "solution": true, "task": false}
def conv2d_forward(x, weight, bias=None, stride=1, padding=0):
    """x (B, C_in, H, W), weight (C_out, C_in, kH, kW), bias (C_out,) or None -> y (B, C_out, H_out, W_out)."""
    ### BEGIN SOLUTION
    (sh, sw) = (stride, stride) if isinstance(stride, int) else stride
    (ph, pw) = (padding, padding) if isinstance(padding, int) else padding
    kh, kw = weight.shape[2:]
    xp = F.pad(x, (pw, pw, ph, ph))
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
# Try it on a small example (change the stride and padding and watch the output size):

# %%
x = torch.randn(1, 2, 6, 5)
weight = torch.randn(3, 2, 3, 3)
y = conv2d_forward(x, weight, None, stride=2, padding=1)
print("y", tuple(y.shape), "F.conv2d", tuple(F.conv2d(x, weight, None, stride=2, padding=1).shape))

# %% [markdown]
# The tests of Task 1: the output's shape over strides and paddings (1 point), and its values against
# `F.conv2d`, with and without a bias (3 points).

# %% nbgrader={"grade": true, "grade_id": "test_forward_shapes", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# A 7x6 input, a 3x2 kernel: stride 1 and no padding, stride 2 with padding 1, stride (1, 2) with padding (2, 0).
for stride, padding in [(1, 0), (2, 1), ((1, 2), (2, 0))]:
    x = torch.randn(2, 3, 7, 6)
    w = torch.randn(4, 3, 3, 2)
    out = conv2d_forward(x, w, None, stride, padding)
    want = tuple(F.conv2d(x, w, None, stride=stride, padding=padding).shape)
    assert isinstance(out, torch.Tensor), f"conv2d_forward must return a tensor, got {type(out).__name__}"
    assert tuple(out.shape) == want, (f"stride={stride}, padding={padding}: the output is {tuple(out.shape)}, "
                                      f"it should be {want} = (batch, out_channels, H_out, W_out)")
print("✓ shapes")
### BEGIN HIDDEN TESTS
for size, kernel, stride, padding in [((5, 5), (5, 5), 1, 0), ((9, 4), (1, 1), 3, 0), ((4, 7), (2, 2), (2, 3), (1, 2))]:
    x, w = torch.randn(1, 2, *size), torch.randn(3, 2, *kernel)
    out = conv2d_forward(x, w, None, stride, padding)
    assert tuple(out.shape) == tuple(F.conv2d(x, w, None, stride=stride, padding=padding).shape), (size, kernel)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_forward_values", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
# Your conv2d_forward against F.conv2d in float64: with a bias, without one, and with stride 2 and padding 1.
check_conv2d(conv2d_forward)
check_conv2d(conv2d_forward, bias=False, seed=1)
check_conv2d(conv2d_forward, stride=2, padding=1, seed=2)
### BEGIN HIDDEN TESTS
for seed, (b, c_in, c_out, size, kernel, stride, padding) in enumerate([
        (1, 1, 1, (5, 5), (3, 3), 1, 0), (3, 2, 5, (8, 7), (1, 1), 1, 0), (2, 3, 2, (9, 8), (3, 3), 2, 1),
        (1, 2, 3, (7, 9), (2, 3), (2, 1), (1, 0)), (2, 1, 2, (6, 6), (6, 6), 1, 0), (1, 2, 2, (5, 4), (3, 3), 3, 2)]):
    check_conv2d(conv2d_forward, b, c_in, c_out, size, kernel, stride, padding, seed=10 + seed)
x, w, bias = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3), torch.randn(4)
assert torch.allclose(conv2d_forward(x, w, bias, 1, 1), F.conv2d(x, w, bias, padding=1), atol=1e-5), "float32"
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
#   g_{b,o,i,j}\; w_{o,c,u,v},$$
#
# and $\partial L / \partial x$ is $\partial L / \partial x^{pad}$ with the padding rows and columns cut off
# (the padded zeros are not inputs). Each gradient has the shape of what it is the gradient of.
#
# **Task 2.** Write `conv2d_backward(x, weight, grad_out, stride, padding)` returning the triple
# `(grad_x, grad_weight, grad_bias)`. The same loop over (u, v) as in Task 1 works: at each offset, the
# patch that multiplied $w_{:,:,u,v}$ gets $g \cdot w$ added back, and $w_{:,:,u,v}$ collects $g \cdot$ patch.

# %% nbgrader={"grade": false, "grade_id": "conv2d_backward", "locked": false, "schema_version": 3, "solution": true, "task": false}
def conv2d_backward(x, weight, grad_out, stride=1, padding=0):
    """dL/dx (like x), dL/dweight (like weight), dL/dbias (C_out,) from grad_out = dL/dy (B, C_out, H_out, W_out)."""
    ### BEGIN SOLUTION
    (sh, sw) = (stride, stride) if isinstance(stride, int) else stride
    (ph, pw) = (padding, padding) if isinstance(padding, int) else padding
    kh, kw = weight.shape[2:]
    h_out, w_out = grad_out.shape[2:]
    xp = F.pad(x, (pw, pw, ph, ph))
    grad_xp, grad_weight = torch.zeros_like(xp), torch.zeros_like(weight)
    for u in range(kh):
        for v in range(kw):
            rows, cols = slice(u, u + sh * (h_out - 1) + 1, sh), slice(v, v + sw * (w_out - 1) + 1, sw)
            grad_weight[:, :, u, v] = torch.einsum("bohw,bchw->oc", grad_out, xp[:, :, rows, cols])
            grad_xp[:, :, rows, cols] += torch.einsum("bohw,oc->bchw", grad_out, weight[:, :, u, v])
    grad_x = grad_xp[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]
    return grad_x, grad_weight, grad_out.sum(dim=(0, 2, 3))
    ### END SOLUTION


# %% [markdown]
# The tests of Task 2, one gradient each, against autograd through `F.conv2d`: dL/dx (2 points), dL/dweight
# (1 point) and dL/dbias (1 point).

# %% nbgrader={"grade": true, "grade_id": "test_grad_input", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
check_conv2d_backward(conv2d_backward, only="grad_x")
check_conv2d_backward(conv2d_backward, only="grad_x", stride=2, padding=1, seed=1)
### BEGIN HIDDEN TESTS
for seed, (b, c_in, c_out, size, kernel, stride, padding) in enumerate([
        (1, 1, 1, (5, 5), (3, 3), 1, 0), (2, 3, 2, (9, 8), (3, 3), 2, 1), (1, 2, 3, (7, 9), (2, 3), (2, 1), (1, 0)),
        (1, 2, 2, (5, 4), (3, 3), 3, 2), (2, 2, 1, (8, 8), (4, 4), 4, 0)]):
    check_conv2d_backward(conv2d_backward, "grad_x", b, c_in, c_out, size, kernel, stride, padding, seed=20 + seed)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_grad_weight", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
check_conv2d_backward(conv2d_backward, only="grad_weight")
check_conv2d_backward(conv2d_backward, only="grad_weight", stride=2, padding=1, seed=1)
### BEGIN HIDDEN TESTS
for seed, (b, c_in, c_out, size, kernel, stride, padding) in enumerate([
        (3, 2, 5, (8, 7), (1, 1), 1, 0), (1, 2, 3, (7, 9), (2, 3), (2, 1), (1, 0)), (1, 2, 2, (5, 4), (3, 3), 3, 2)]):
    check_conv2d_backward(conv2d_backward, "grad_weight", b, c_in, c_out, size, kernel, stride, padding, seed=30 + seed)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_grad_bias", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
check_conv2d_backward(conv2d_backward, only="grad_bias")
### BEGIN HIDDEN TESTS
check_conv2d_backward(conv2d_backward, "grad_bias", 4, 1, 3, (5, 6), (2, 2), 2, 1, seed=40)
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · The gradient of a convolution is a convolution (written answer, 2 points)
#
# In a few sentences, for stride 1 and no padding: show from the formula of Task 2 that $\partial L/\partial x$
# is itself a convolution of $g$, and say with which kernel and which padding (what happens to the kernel's
# orientation, and why $g$ must be padded by $k - 1$). Then say what changes with stride 2: where do the
# values of $g$ go before that convolution, and why?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_transposed", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). With $s = 1$, $p = 0$ the
# formula reads $\partial L/\partial x_{b,c,p,q} = \sum_{o,u,v} g_{b,o,p-u,q-v}\, w_{o,c,u,v}$ (terms with
# $p - u$ or $q - v$ outside $g$ are zero). Writing $u' = k_H - 1 - u$, $v' = k_W - 1 - v$ turns it into
# $\sum_{o,u',v'} \tilde g_{b,o,p+u',q+v'}\, w_{o,c,k_H-1-u',k_W-1-v'}$ with $\tilde g$ = $g$ padded by
# $k - 1$ zeros on every side: a cross-correlation of the padded $g$ with the kernel rotated by 180° and
# its in/out channels swapped, which is why the output is back to H x W ($H_{out} + 2(k-1) - k + 1 = H$).
# With stride 2 the output pixel $(i, j)$ came from input $(2i + u, 2j + v)$, so before that convolution
# $g$ is spread out with one zero between neighbouring values (a "dilated" or transposed convolution):
# this puts each $g_{b,o,i,j}$ back at the input position it was computed from. One point for the rotated
# kernel and $k-1$ padding, one for the zeros inserted by the stride.
