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
# # Lab 09 · Guided Gram matrices and a style loss with spatial control
#
# A texture is what stays when you forget *where* things are: which features fire together, not where.
# Gatys, Ecker & Bethge (2015) measure it with the Gram matrix of a network's feature maps. A whole image,
# though, is several textures: sky, water, a field. Gatys, Ecker, Bethge, Hertzmann & Shechtman (2017,
# "Controlling perceptual factors in neural style transfer") give each region its own statistics: a mask says
# which positions belong to the region, and the guided Gram matrix averages over those positions only, so the
# sky of an image can be given the style of the sky of a painting. You will write the guided Gram matrix and
# the style loss over layers and regions with nothing but tensor operations; your code is graded against
# reference values and gradients on feature maps and masks you do not see.
#
# | part | you write | points |
# |---|---|---|
# | 1 | `guided_gram`: one Gram matrix per region | 1 + 2 + 1 |
# | 2 | `style_loss` over layers and regions | 3 + 1 |
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


def random_masks(batch: int, regions: int, height: int, width: int, seed: int, soft: bool = False) -> torch.Tensor:
    """Masks (B, R, H, W), float64: at each position the R regions' weights sum to 1. Hard masks give each
    position to one region (0 or 1); soft ones share it (a blurred border between regions, say)."""
    gen = torch.Generator().manual_seed(seed)
    scores = 2.0 * torch.randn(batch, regions, height, width, generator=gen, dtype=torch.float64)
    if soft:
        return torch.softmax(scores, dim=1)
    masks = torch.nn.functional.one_hot(scores.argmax(dim=1), regions).permute(0, 3, 1, 2).double()
    masks[:, :, 0, 0] = 1.0 / regions  # no region left empty: the first position shared by all
    return masks


def reference_gram(features: torch.Tensor) -> torch.Tensor:
    """The plain Gram matrix F F^T / M (B, C, C), over all the positions."""
    flat = features.flatten(2)
    return flat @ flat.transpose(1, 2) / flat.shape[2]


def close(name: str, got, want: torch.Tensor, atol: float = 1e-10) -> None:
    """Raise unless got is a tensor of want's shape within atol of it; say how far off."""
    assert isinstance(got, torch.Tensor), f"{name} should be a torch.Tensor, got {type(got).__name__}"
    assert got.shape == want.shape, f"{name} has shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    err = float((got - want).abs().max()) if got.numel() else 0.0
    assert err <= atol, f"{name} is off by {err:.3g} (tolerance {atol:g})"


# %% [markdown]
# ## Part 1 · The guided Gram matrix
#
# Feature maps F (B, C, H, W): a batch of B images, C channels (one per filter), H x W positions. Read each
# image's maps as a matrix of C rows and M = H W columns, one column per position. The plain Gram matrix is the
# average over positions of the outer product of the feature vector with itself, $\frac{1}{M} \sum_m F_{b,:,m}
# F_{b,:,m}^\top$. Masks $w$ (B, R, H, W) say how much each position belongs to each of R regions (0: not at
# all, 1: fully). The guided Gram matrix of region r is the average over that region's positions, each weighted
# by its mask:
#
# $$G_{b,r,i,j} = \frac{\sum_{m=1}^{M} w_{b,r,m}\, F_{b,i,m}\, F_{b,j,m}}{\sum_{m=1}^{M} w_{b,r,m}}
#   \qquad G: (B, R, C, C), \quad \text{or} \quad G_{b,r} = \frac{F_b\, \mathrm{diag}(w_{b,r})\, F_b^\top}{\sum_m w_{b,r,m}}.$$
#
# For a mask of 0s and 1s this is the Gram matrix of the masked features $F \circ w$ that Gatys et al. (2017)
# use, divided by the region's number of positions; with soft masks each position counts with weight $w$ (not
# $w^2$). A mask of ones over the whole image gives back the plain Gram matrix. Dividing by the mask's sum makes
# it an average, so a region can be compared with a region of another size.
#
# **Task 1.** Write `guided_gram(features, masks)`.

# %% nbgrader={"grade": false, "grade_id": "guided_gram", "locked": false, "schema_version": 3, "solution": true, "task": false}
def guided_gram(features, masks):
    """G = F diag(w_r) F^T / sum(w_r) for features (B, C, H, W) and masks (B, R, H, W): returns (B, R, C, C)."""
    ### BEGIN SOLUTION
    flat = features.reshape(features.shape[0], features.shape[1], -1)  # (B, C, M)
    weights = masks.reshape(masks.shape[0], masks.shape[1], -1)  # (B, R, M)
    sums = torch.einsum("brm,bim,bjm->brij", weights, flat, flat)
    return sums / weights.sum(dim=2)[:, :, None, None]
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_gram_shape", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
for b, c, r, h, w in [(2, 3, 2, 4, 5), (1, 6, 3, 2, 2)]:
    got = guided_gram(random_maps(b, c, h, w, seed=0), random_masks(b, r, h, w, seed=1))
    assert isinstance(got, torch.Tensor), f"guided_gram should return a tensor, got {type(got).__name__}"
    want = (b, r, c, c)
    assert tuple(got.shape) == want, (f"for features {(b, c, h, w)} and masks {(b, r, h, w)} the guided Gram matrix "
                                      f"is (B, R, C, C) = {want}, got {tuple(got.shape)}: one C x C matrix per region")
print("✓ guided_gram is (B, R, C, C)")
### BEGIN HIDDEN TESTS
assert tuple(guided_gram(random_maps(3, 1, 7, 1, seed=1), random_masks(3, 1, 7, 1, seed=2)).shape) == (3, 1, 1, 1)
assert tuple(guided_gram(random_maps(1, 2, 3, 3, seed=3), random_masks(1, 4, 3, 3, seed=4)).shape) == (1, 4, 2, 2)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_gram_values", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
def region_gram(features, masks):
    """For masks of 0s and 1s: the plain Gram matrix of the positions inside each region, image by image."""
    out = features.new_zeros(features.shape[0], masks.shape[1], features.shape[1], features.shape[1])
    for b in range(features.shape[0]):
        for r in range(masks.shape[1]):
            inside = features[b].flatten(1)[:, masks[b, r].flatten() > 0]  # (C, positions in the region)
            out[b, r] = inside @ inside.T / inside.shape[1]
    return out


features, masks = random_maps(2, 3, 4, 5, seed=2), random_masks(2, 2, 4, 5, seed=3)
masks[:, :, 0, 0] = torch.tensor([1.0, 0.0])  # masks of 0s and 1s only
close("guided_gram, two regions", guided_gram(features, masks), region_gram(features, masks))
changed = features + 5.0 * (masks[:, :1] == 0)  # features changed wherever region 0 is not
close("guided_gram of region 0 after changing what lies outside it", guided_gram(changed, masks)[:, 0],
      guided_gram(features, masks)[:, 0])
print("✓ guided_gram matches the Gram matrix of each region's positions, and ignores what lies outside it")
### BEGIN HIDDEN TESTS
def weighted_gram(features, masks):
    f, w = features.flatten(2), masks.flatten(2)
    return torch.stack([(f * w[:, r:r + 1]) @ f.transpose(1, 2) / w[:, r].sum(-1)[:, None, None]
                        for r in range(w.shape[1])], dim=1)


for seed, (b, c, r, h, w) in enumerate([(1, 1, 1, 1, 1), (4, 8, 3, 3, 9), (2, 16, 2, 11, 6)]):
    features, masks = random_maps(b, c, h, w, seed=10 + seed), random_masks(b, r, h, w, seed=20 + seed, soft=True)
    close(f"hidden {seed}, soft masks", guided_gram(features, masks), weighted_gram(features, masks))
features = random_maps(2, 5, 6, 7, seed=30)
close("hidden: a mask of ones is the plain Gram matrix", guided_gram(features, torch.ones(2, 1, 6, 7, dtype=torch.float64)),
      reference_gram(features)[:, None])
close("hidden: a mask of 0.3s too", guided_gram(features, torch.full((2, 1, 6, 7), 0.3, dtype=torch.float64)),
      reference_gram(features)[:, None])
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_gram_gradient", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Synthesis optimises the image through the Gram matrices: their gradient must be right too.
def gram_gradient(fn, seed):
    features = random_maps(2, 4, 3, 5, seed=seed).requires_grad_()
    masks = random_masks(2, 2, 3, 5, seed=seed + 1, soft=True)
    weights = torch.randn(2, 2, 4, 4, generator=torch.Generator().manual_seed(seed + 2), dtype=torch.float64)
    (fn(features, masks) * weights).sum().backward()
    return features.grad


def masked_average_gram(features, masks):
    return torch.stack([torch.einsum("bchw,bdhw->bcd", features * m[:, None], features) / m.sum(dim=(1, 2))[:, None, None]
                        for m in masks.unbind(1)], dim=1)


close("d/dF of sum(W * G)", gram_gradient(guided_gram, 3), gram_gradient(masked_average_gram, 3))
print("✓ the gradient through guided_gram")
### BEGIN HIDDEN TESTS
close("hidden gradient", gram_gradient(guided_gram, 40), gram_gradient(masked_average_gram, 40))
### END HIDDEN TESTS

# %% [markdown]
# ## Part 2 · The style loss over layers and regions
#
# A network gives feature maps at several layers (or, in the course's random network, several filter
# sizes), and each layer gets the masks at its own resolution. The style loss sums, over the layers $l$ and the
# regions $r$, the squared distance between the guided Gram matrices of the image $x$ and of the target $t$,
# relative to the target's:
#
# $$\mathcal{L}_{style}(x, t) = \sum_{l} \sum_{r} \frac{\lVert G_{l,r}(x) - G_{l,r}(t) \rVert_F^2}
#   {\lVert G_{l,r}(t) \rVert_F^2},$$
#
# with $\lVert A \rVert_F^2 = \sum_{b,i,j} A_{b,i,j}^2$ (over the whole batch, for one layer and one region).
# Each layer and each region then count alike whatever their size. Region r of x is compared with region r of
# t: x's masks say where, in x, each region is, and t's masks where it is in t. The maps (and masks) of x and t
# have the same channels (and regions) at each layer but may have different H x W.
#
# **Task 2.** Write `style_loss(features_x, features_t, masks_x, masks_t)`: four lists, one entry per layer,
# returning a scalar tensor (differentiable in `features_x`), using your `guided_gram`.

# %% nbgrader={"grade": false, "grade_id": "style_loss", "locked": false, "schema_version": 3, "solution": true, "task": false}
def style_loss(features_x, features_t, masks_x, masks_t):
    """sum over layers and regions of ||G_r(x) - G_r(t)||^2 / ||G_r(t)||^2: a scalar."""
    ### BEGIN SOLUTION
    total = features_x[0].new_zeros(())
    for fx, ft, mx, mt in zip(features_x, features_t, masks_x, masks_t):
        gx, gt = guided_gram(fx, mx), guided_gram(ft, mt)  # (B, R, C, C)
        total = total + ((gx - gt).pow(2).sum(dim=(0, 2, 3)) / gt.pow(2).sum(dim=(0, 2, 3))).sum()
    return total
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "test_style_loss", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def reference_style(features_x, features_t, masks_x, masks_t):
    total = 0.0
    for fx, ft, mx, mt in zip(features_x, features_t, masks_x, masks_t):
        for r in range(mx.shape[1]):
            gx, gt = masked_average_gram(fx, mx[:, r:r + 1])[:, 0], masked_average_gram(ft, mt[:, r:r + 1])[:, 0]
            total = total + (gx - gt).pow(2).sum() / gt.pow(2).sum()
    return total


layers_x = [random_maps(1, 4, 6, 6, seed=4), random_maps(1, 8, 3, 3, seed=5)]
layers_t = [random_maps(1, 4, 6, 6, seed=6), random_maps(1, 8, 3, 3, seed=7)]
masks_x = [random_masks(1, 2, 6, 6, seed=8), random_masks(1, 2, 3, 3, seed=9, soft=True)]
masks_t = [random_masks(1, 2, 6, 6, seed=10), random_masks(1, 2, 3, 3, seed=11, soft=True)]
close("style_loss, two layers, two regions", style_loss(layers_x, layers_t, masks_x, masks_t),
      reference_style(layers_x, layers_t, masks_x, masks_t))
close("style_loss of a texture against itself", style_loss(layers_t, layers_t, masks_t, masks_t),
      torch.zeros((), dtype=torch.float64))
print("✓ style_loss over two layers and two regions")
### BEGIN HIDDEN TESTS
sizes = [((2, 3, 5, 7), (2, 3, 10, 14)), ((2, 6, 4, 4), (2, 6, 8, 8)), ((2, 5, 2, 3), (2, 5, 4, 6))]
layers_x = [random_maps(*sx, seed=30 + i) for i, (sx, _) in enumerate(sizes)]
layers_t = [random_maps(*st, seed=40 + i) for i, (_, st) in enumerate(sizes)]
masks_x = [random_masks(sx[0], 3, *sx[2:], seed=50 + i, soft=i == 1) for i, (sx, _) in enumerate(sizes)]
masks_t = [random_masks(st[0], 3, *st[2:], seed=60 + i, soft=i == 2) for i, (_, st) in enumerate(sizes)]
close("hidden: three layers, three regions, the target twice as large",
      style_loss(layers_x, layers_t, masks_x, masks_t), reference_style(layers_x, layers_t, masks_x, masks_t))
close("hidden: one layer", style_loss(layers_x[:1], layers_t[:1], masks_x[:1], masks_t[:1]),
      reference_style(layers_x[:1], layers_t[:1], masks_x[:1], masks_t[:1]))
ones_x, ones_t = [torch.ones_like(m[:, :1]) for m in masks_x], [torch.ones_like(m[:, :1]) for m in masks_t]
plain = sum((reference_gram(fx) - reference_gram(ft)).pow(2).sum() / reference_gram(ft).pow(2).sum()
            for fx, ft in zip(layers_x, layers_t))
close("hidden: one region covering everything is the plain style loss", style_loss(layers_x, layers_t, ones_x, ones_t),
      plain)
### END HIDDEN TESTS

# %% nbgrader={"grade": true, "grade_id": "test_style_shift", "locked": true, "points": 1, "schema_version": 3, "solution": false, "task": false}
# Where things are is forgotten inside a region: a texture rolled around (circularly) together with its masks
# has the same style. The masks are what remembers where: the same roll under masks that stay put changes it.
layers_t = [random_maps(1, 4, 8, 8, seed=12), random_maps(1, 6, 5, 5, seed=13)]
masks_t = [random_masks(1, 2, 8, 8, seed=14), random_masks(1, 2, 5, 5, seed=15)]
layers_t = [f * (1.0 + 3.0 * m[:, 1:]) for f, m in zip(layers_t, masks_t)]  # region 1 fires more strongly
rolled = [f.roll(shifts=(3, 2), dims=(2, 3)) for f in layers_t]
rolled_masks = [m.roll(shifts=(3, 2), dims=(2, 3)) for m in masks_t]
loss = style_loss(rolled, layers_t, rolled_masks, masks_t)
assert isinstance(loss, torch.Tensor) and abs(float(loss)) < 1e-20, f"style loss of the texture rolled with its masks: {loss}"
moved = style_loss(rolled, layers_t, masks_t, masks_t)
assert float(moved) > 0.1, (f"style loss of the texture rolled under masks that stay put: {float(moved):.3g}; each "
                            "region's statistics come from the positions its mask covers, so they should change")
print(f"✓ rolled with its masks: the same style; rolled under fixed masks: a style loss of {float(moved):.3f}")
### BEGIN HIDDEN TESTS
tiled = [f.repeat(1, 1, 2, 2) for f in layers_t]  # four copies side by side, masks too: the same averages
tiled_masks = [m.repeat(1, 1, 2, 2) for m in masks_t]
assert abs(float(style_loss(tiled, layers_t, tiled_masks, masks_t))) < 1e-20, "a tiled texture has the same style"
swapped = [m.flip(1) for m in masks_t]  # the regions' names exchanged: region 0 of x is region 1 of t
assert float(style_loss(layers_t, layers_t, swapped, masks_t)) > 0.1, "region r of x is compared with region r of t"
### END HIDDEN TESTS

# %% [markdown]
# ## Part 3 · What the guided Gram matrix keeps (written answer, 2 points)
#
# In a few sentences: why does the guided Gram matrix still forget where features sit inside a region (what
# happens when you move the features and the masks together, and when you move the features but not the masks,
# as the last test did)? Why divide by the mask's sum rather than by M when a region covers a different share
# of x than of t (say the sky is a third of the photo and two thirds of the painting)? And what does spatial
# control let you do that one Gram matrix of the whole image cannot?

# %% [markdown] nbgrader={"grade": true, "grade_id": "answer_gram", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# **Model answer** (the released notebook shows "YOUR ANSWER HERE" instead). $G_{r,ij}$ is a weighted sum over
# positions $m$ of $w_{r,m} F_{im} F_{jm}$: moving features and masks by the same permutation of the positions
# only reorders the terms, so the guided Gram matrices (and the style loss) are unchanged; within a region, where
# a feature fires is forgotten. Moving the features alone changes which features each mask weighs, so each
# region's statistics change: the masks are the only memory of where. Dividing by $\sum_m w_{r,m}$ makes
# $G_r$ an average over the region, independent of how much of the image it covers; divided by M, a region
# covering two thirds of t would have Gram entries about twice as large as the same texture covering a third of
# x, and the loss would push x's features to grow instead of to match. With one Gram matrix for the whole image,
# the statistics of sky, water and ground are mixed into one average and the synthesis spreads them anywhere;
# with one per region, each region of x gets the style of the matching region of t (or of another painting).
# One point for the invariance within a region and the masks' role, one for the normalisation and what spatial
# control allows.
