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
# # Lab 09 · Gram matrices and the style loss
#
# A texture is what stays when you forget *where* things are: which features fire together, not where.
# Gatys, Ecker & Bethge (2015) measure it with the Gram matrix of a network's feature maps, and the style
# loss compares those matrices layer by layer. You will write both with nothing but tensor operations; your
# code is graded against reference values and gradients on feature maps you do not see.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `gram_matrix` | 1 + 2 + 1 |
# | 2 | `style_loss` over several layers | 3 + 1 |
# | 3 | a short written answer | 2 (graded by your teacher) |
#
# **How to work.** Write your code where it says `YOUR CODE HERE` (delete the `raise NotImplementedError()`).
# Each test cell below your code checks it and says what is wrong. The teacher's grader runs those tests
# and hidden ones. Do not edit or delete the test cells (the grader puts the originals back), do not rename
# the functions, and do not use `karpa_lab.models.texture` inside your functions (the grader sees such calls
# however they are made). Before you hand it in: *Kernel → Restart Kernel and Run All Cells*; the notebook
# runs in a few seconds.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import warnings

import torch

torch.manual_seed(0)
warnings.simplefilter("ignore")  # under nbgrader a warning on stderr would cost a test cell its points


def random_maps(batch: int, channels: int, height: int, width: int, seed: int) -> torch.Tensor:
    """Feature maps (B, C, H, W) after a ReLU, float64, reproducible."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, height, width, generator=gen, dtype=torch.float64).relu()


def reference_gram(features: torch.Tensor) -> torch.Tensor:
    flat = features.flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[2]


def close(name: str, got, want: torch.Tensor, atol: float = 1e-10) -> None:
    """Raise unless got is a tensor of want's shape within atol of it; say how far off."""
    assert isinstance(got, torch.Tensor), f"{name} should be a torch.Tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"{name} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    err = float((got - want).abs().max()) if got.numel() else 0.0
    assert err <= atol, f"{name} is off by {err:.3g} (tolerance {atol:g})"


# %% [markdown]
# ## Part 1 · The Gram matrix
#
# Feature maps F (B, C, H, W): a batch of B images, C channels (one per filter), H x W positions. Read each
# image's maps as a matrix of C rows and M = H W columns, one column per position. The Gram matrix is the
# average over positions of the outer product of the feature vector with itself:
#
# $$G_{b,i,j} = \frac{1}{M} \sum_{m=1}^{M} F_{b,i,m}\, F_{b,j,m} \qquad G: (B, C, C).$$
#
# Dividing by M makes it an average, so maps of different sizes (a texture and a larger image made of it)
# can be compared.
#
# **Task 1.** Write `gram_matrix(features)`.

# %% nbgrader={"grade": false, "grade_id": "gram_matrix", "locked": false, "schema_version": 3, "solution": true, "task": false}
def gram_matrix(features):
    """G = F F^T / M for features (B, C, H, W) read as (B, C, M = H W): returns (B, C, C)."""
    ### BEGIN SOLUTION
    flat = features.reshape(features.shape[0], features.shape[1], -1)
    return torch.einsum("bim,bjm->bij", flat, flat) / flat.shape[2]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_gram_shape", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
for shape in [(2, 3, 4, 5), (1, 6, 2, 2)]:
    got = gram_matrix(random_maps(*shape, seed=0))
    assert isinstance(got, torch.Tensor), f"gram_matrix should return a tensor, got {type(got).__name__}"
    want = (shape[0], shape[1], shape[1])
    assert tuple(got.shape) == want, (f"for features {shape} the Gram matrix is (B, C, C) = {want}, got "
                                      f"{tuple(got.shape)}: one row and column per channel, not per position")
print("✓ gram_matrix is (B, C, C)")
### BEGIN HIDDEN TESTS
assert tuple(gram_matrix(random_maps(3, 1, 7, 1, seed=1)).shape) == (3, 1, 1)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_gram_values", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
features = random_maps(2, 3, 4, 5, seed=2)
close("gram_matrix", gram_matrix(features), reference_gram(features))
print("✓ gram_matrix matches F F^T / M")
### BEGIN HIDDEN TESTS
for seed, shape in enumerate([(1, 1, 1, 1), (4, 8, 3, 9), (2, 16, 11, 6)]):
    features = random_maps(*shape, seed=10 + seed)
    close(f"hidden {seed}", gram_matrix(features), reference_gram(features))
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_gram_gradient", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Synthesis optimises the image through the Gram matrix: its gradient must be right too.
def gram_gradient(fn, seed):
    features = random_maps(2, 4, 3, 5, seed=seed).requires_grad_()
    weights = torch.randn(2, 4, 4, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    (fn(features) * weights).sum().backward()
    return features.grad


close("d/dF of sum(W * G)", gram_gradient(gram_matrix, 3), gram_gradient(reference_gram, 3))
print("✓ the gradient through gram_matrix")
### BEGIN HIDDEN TESTS
close("hidden gradient", gram_gradient(gram_matrix, 20), gram_gradient(reference_gram, 20))
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · The style loss over layers
#
# A network gives feature maps at several layers (or, in the course's random network, several filter
# sizes); the style loss sums, over the layers $l$, the squared distance between the Gram matrices of the
# image $x$ and of the target texture $t$, relative to the target's:
#
# $$\mathcal{L}_{style}(x, t) = \sum_{l} \frac{\lVert G_l(x) - G_l(t) \rVert_F^2}{\lVert G_l(t) \rVert_F^2},$$
#
# with $\lVert A \rVert_F^2 = \sum_{b,i,j} A_{b,i,j}^2$ (over the whole batch). Each layer then counts alike
# whatever its size, and noise starts near 1 on each layer. The maps of $x$ and $t$ have the same channels at
# each layer but may have different H x W.
#
# **Task 2.** Write `style_loss(features_x, features_t)`: two lists of feature maps, one per layer, returning
# a scalar tensor (differentiable in `features_x`), using your `gram_matrix`.

# %% nbgrader={"grade": false, "grade_id": "style_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def style_loss(features_x, features_t):
    """sum over layers of ||G(x) - G(t)||^2 / ||G(t)||^2: a scalar."""
    ### BEGIN SOLUTION
    total = features_x[0].new_zeros(())
    for fx, ft in zip(features_x, features_t):
        gx, gt = gram_matrix(fx), gram_matrix(ft)
        total = total + (gx - gt).pow(2).sum() / gt.pow(2).sum()
    return total
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_style_loss", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def reference_style(features_x, features_t):
    return sum((reference_gram(fx) - reference_gram(ft)).pow(2).sum() / reference_gram(ft).pow(2).sum()
               for fx, ft in zip(features_x, features_t))


layers_x = [random_maps(1, 4, 6, 6, seed=4), random_maps(1, 8, 3, 3, seed=5)]
layers_t = [random_maps(1, 4, 6, 6, seed=6), random_maps(1, 8, 3, 3, seed=7)]
close("style_loss, two layers", style_loss(layers_x, layers_t), reference_style(layers_x, layers_t))
close("style_loss of a texture against itself", style_loss(layers_t, layers_t), torch.zeros((), dtype=torch.float64))
print("✓ style_loss over two layers")
### BEGIN HIDDEN TESTS
gen_sizes = [((2, 3, 5, 7), (2, 3, 10, 14)), ((2, 6, 4, 4), (2, 6, 8, 8)), ((2, 5, 2, 3), (2, 5, 4, 6))]
layers_x = [random_maps(*sx, seed=30 + i) for i, (sx, _) in enumerate(gen_sizes)]
layers_t = [random_maps(*st, seed=40 + i) for i, (_, st) in enumerate(gen_sizes)]
close("hidden: three layers, the target twice as large", style_loss(layers_x, layers_t),
      reference_style(layers_x, layers_t))
close("hidden: one layer", style_loss(layers_x[:1], layers_t[:1]), reference_style(layers_x[:1], layers_t[:1]))
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_style_shift", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Where things are is forgotten: a texture rolled around (circularly) has the same Gram matrices.
layers_t = [random_maps(1, 4, 8, 8, seed=8), random_maps(1, 6, 5, 5, seed=9)]
rolled = [f.roll(shifts=(3, 2), dims=(2, 3)) for f in layers_t]
loss = style_loss(rolled, layers_t)
assert isinstance(loss, torch.Tensor) and abs(float(loss)) < 1e-20, f"style loss of the rolled texture: {loss}"
print("✓ a rolled texture has the same style")
### BEGIN HIDDEN TESTS
tiled = [f.repeat(1, 1, 2, 2) for f in layers_t]  # four copies side by side: the same averages
assert abs(float(style_loss(tiled, layers_t))) < 1e-20, "a tiled texture has the same style"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · What the Gram matrix keeps (written answer, 2 points)
#
# In a few sentences: why does the Gram matrix forget the positions of features (what is the style loss
# between a set of feature maps and the same maps with their positions shuffled, one permutation for all
# channels, and why)? Why would matching the feature maps
# themselves (the content loss) not give a new texture, and why does a network of several filter sizes
# give better textures than one of 3x3 filters alone?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_gram", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). $G_{ij}$ is a sum over positions
# $m$ of $F_{im} F_{jm}$: permuting the positions, the same way in every channel, permutes the terms of that
# sum and leaves it unchanged, so the style loss of the shuffled maps is exactly 0. Only *which features
# co-occur, and how strongly on average* survives, not where. Matching the maps themselves pins every feature at its position, so the optimisation reproduces
# the original image, not a new sample of the texture. A filter sees only its own window: 3x3 filters
# capture fine grain, while the structure at the scale of a brick needs filters (or receptive fields) that
# large, so several sizes capture statistics at several scales. One point for the sum over positions and
# its invariance, one for content vs texture and the scales.
