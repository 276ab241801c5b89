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
# # 16 · Texture synthesis and style transfer
#
# **The question.** Gatys, Ecker and Bethge (2015) described a texture (纹理) by which features of a
# convolutional network fire *together*, averaged over the image: the Gram matrix (格拉姆矩阵). Make a new
# image from noise whose Gram matrices match a photo of gravel, and it looks like more gravel; add a term
# that keeps a photo's own features, and you get style transfer (风格迁移). They used VGG, a network trained
# on ImageNet. Its weights are a download, and links to them die; Ustyuzhaninov, Brendel, Gatys and Bethge
# (2016) found that one layer of *random* filters at several sizes synthesises textures well too. So this
# lesson trains nothing and downloads nothing. If you have VGG-19's weights as a file of your own, the lesson
# at full scale also synthesises with it and puts the two networks side by side (section 4); the file is
# checked by its checksum and never fetched.
#
# By the end you can: write the Gram matrix with its shapes and check it and its gradient against loops,
# `einsum` and autograd; build the random multi-scale network; synthesise textures by optimising the
# pixels; judge them with a *different* random network against noise, a shuffled-pixel control and a
# power-spectrum control; and trade content against style with one weight.

# %%
import os
import time

import matplotlib.pyplot as plt
import torch

from karpa_lab import by_scale, get_device, scale, seed_everything
from karpa_lab.data import TEXTURES, load_photo, load_texture
from karpa_lab.models.texture import (
    RandomFilterNet,
    StyleTransferLoss,
    gram_loss_gradient,
    gram_matrix,
    grams,
    spectrum_match,
    synthesize,
    texture_distance,
    texture_loss,
)
from karpa_lab.models.vgg import VGG19_ENV, VGG19_SHA256_ENV, load_vgg19, vgg19_weights_path
from karpa_lab.widgets.style_weight import style_results, style_widget

seed_everything(0)
torch.set_num_threads(1)
start_lesson = time.perf_counter()

# %% [markdown]
# ## 1. The Gram matrix, with shapes
#
# A layer's feature maps $F$ (C, H, W) for one image, read as C rows of $M = HW$ positions, $F$ (C, M):
#
# $$G_{ij} = \frac{1}{M}\sum_{m=1}^{M} F_{im}\,F_{jm}, \qquad G = \tfrac{1}{M} F F^\top \quad (C \times C).$$
#
# $G_{ij}$ is how strongly features $i$ and $j$ respond at the same places, averaged over the image. The
# positions are summed away, so $G$ does not say *where* anything is: shift a texture and its Gram matrix
# barely changes. Dividing by $M$ makes $G$ an average, comparable between images of different sizes.
#
# **The texture loss** of an image $x$ against a target texture $t$, over the network's scales $s$, is the
# relative error of the Gram matrices:
#
# $$\mathcal{L}_{tex}(x, t) = \sum_s \frac{\lVert G_s(x) - G_s(t) \rVert_F^2}{\lVert G_s(t) \rVert_F^2}.$$
#
# Gatys et al. weight layer $l$ by $w_l / (4 N_l^2 M_l^2)$ on Grams that are not divided by $M$; dividing
# by the target's size instead makes each scale count alike and the loss a plain relative error.
#
# **Its gradient.** Write $A = G(t)$ (symmetric) and $D = G - A$. Since $\partial G_{ij} / \partial F_{km}
# = (\delta_{ik} F_{jm} + \delta_{jk} F_{im}) / M$,
#
# $$\frac{\partial}{\partial F}\,\frac{\lVert G - A\rVert_F^2}{\lVert A\rVert_F^2}
#   = \frac{2}{\lVert A\rVert_F^2 M}\,(D + D^\top) F = \frac{4\, D F}{M\,\lVert A\rVert_F^2}\quad (C \times M),$$
#
# Gatys' equation for the gradient up to the constant. Autograd then carries it through the ReLU and the
# convolution to the pixels. First the definition as loops, then `einsum`, then the package's one matrix
# product, and the hand-derived gradient against autograd:

# %%
def gram_loops(features: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C), one sum at a time: the definition."""
    b, c, h, w = features.shape
    out = torch.zeros(b, c, c, dtype=features.dtype)
    for n in range(b):
        for i in range(c):
            for j in range(c):
                out[n, i, j] = (features[n, i] * features[n, j]).sum() / (h * w)
    return out


features = torch.randn(2, 6, 5, 7, dtype=torch.float64, requires_grad=True)
target = gram_matrix(torch.randn(2, 6, 5, 7, dtype=torch.float64)).detach()
G = gram_matrix(features)
gaps = {"loops": float((G - gram_loops(features)).abs().max()),
        "einsum": float((G - torch.einsum("bihw,bjhw->bij", features, features) / 35).abs().max())}
loss = sum((G[n] - target[n]).pow(2).sum() / target[n].pow(2).sum() for n in range(2))
loss.backward()
gaps["gradient"] = float((gram_loss_gradient(features.detach(), target) - features.grad).abs().max())
print(f"features {tuple(features.shape)} -> Gram {tuple(G.shape)}; largest difference from the loops "
      f"{gaps['loops']:.1e}, from einsum {gaps['einsum']:.1e}; hand gradient vs autograd {gaps['gradient']:.1e}")
assert max(gaps.values()) < 1e-12
assert torch.autograd.gradcheck(gram_matrix, (features.detach().requires_grad_(),))

# %% [markdown]
# ## 2. A network of random filters
#
# `RandomFilterNet` is one convolution layer: for each filter size $k$, a set of filters drawn from a
# Gaussian and scaled to unit norm, applied to the image minus mid-grey (0.5) without padding, then a
# ReLU. Each size gives its own feature maps and its own Gram matrix; small filters see fine grain, large
# ones see larger patterns. Nothing is trained: the seed *is* the network. A second seed gives a second,
# independent network, which we keep aside as a **judge**: an image optimised to fool the first network
# has not seen the second, so the judge's distance measures the texture, not the optimisation.
#
# The textures are scikit-image's bundled brick, grass and gravel photographs (in its wheel, nothing
# downloaded), scaled down to the lesson's size.

# %%
device = get_device()
SIZE = by_scale(64, 256)
net = RandomFilterNet(sizes=by_scale((3, 7, 15, 23), (3, 5, 7, 11, 15, 23, 37, 55)), filters=by_scale(16, 128),
                      seed=0).to(device)
judge = RandomFilterNet(sizes=by_scale((3, 5, 7, 11, 15, 23), (3, 5, 9, 13, 19, 27, 41)), filters=by_scale(16, 64),
                        seed=1).to(device)
textures = torch.stack([load_texture(name, SIZE) for name in TEXTURES]).to(device)  # (3, 1, SIZE, SIZE)
maps = net(textures)
for k, f, g in zip(net.sizes, maps, grams(net, textures)):
    print(f"filters {k:>2}x{k:<2}: feature maps {tuple(f.shape)} -> Gram matrices {tuple(g.shape)}")
print(f"{sum(g.shape[1] ** 2 for g in grams(net, textures[:1]))} numbers describe each texture; "
      f"it has {SIZE * SIZE} pixels")

# %% [markdown]
# ## 3. Synthesis: optimise the pixels
#
# Start from uniform noise and minimise $\mathcal{L}_{tex}(x, t)$ over the pixels of $x$ with Adam.
# Nothing here is a model being trained: `synthesize` hands `karpa_lab.fit` a module whose only parameter
# is the image, with the loss as its `step_fn`, so the loop, the loss history and the NaN check are the
# course's usual ones. The three textures are optimised together as one batch of three images (each
# image's loss depends only on its own pixels).

# %%
STEPS = by_scale(150, 1000)
targets = grams(net, textures)
noise = torch.rand(textures.shape, generator=torch.Generator().manual_seed(0)).to(device)
start = time.perf_counter()
synthesized, history = synthesize(lambda x: texture_loss(grams(net, x), targets), noise, steps=STEPS, lr=0.03,
                                  device=device)
seconds = time.perf_counter() - start
fall = history.train_loss[0] / history.train_loss[-1]
print(f"{STEPS} Adam steps on {len(TEXTURES)} images of {SIZE}x{SIZE} in {seconds:.1f} s: texture loss "
      f"{history.train_loss[0]:.1f} -> {history.train_loss[-1]:.4f}, {fall:,.0f}x lower")
assert fall > 100, "the optimised pixels should match the target's Gram matrices at least 100x better than noise"
fig = history.plot(log=True)

# %% [markdown]
# ## 4. Judged by a network it has never seen
#
# The judge's texture distance $\mathcal{L}_{tex}$ (computed with the judge's filters) from each image to
# each of the three textures. Beside the synthesis, three controls:
#
# - **noise**: where the optimisation started;
# - **shuffled pixels**: the target's own pixels in a random order. The histogram is exactly right and every
#   spatial relation is destroyed: a method that only matched pixel statistics would look like this;
# - **the spectrum control**: the target with its Fourier phases randomised (`spectrum_match`). It keeps the
#   power spectrum, which is every second-order statistic of the pixels (the autocorrelation), the classic
#   description of a texture before neural networks; what it loses is in the phases (edges, shapes).
#
# And a **degenerate network** as the negative control: the same synthesis with 1x1 filters only, which see
# one pixel at a time. It can match the histogram's moments but nothing spatial, so it should fail the check
# the real synthesis passes.

# %%
controls = {
    "noise": noise,
    "shuffled pixels": torch.stack([t.flatten()[torch.randperm(SIZE * SIZE, generator=torch.Generator().manual_seed(i))]
                                    .view_as(t) for i, t in enumerate(textures.cpu())]).to(device),
    "spectrum control": spectrum_match(textures.cpu(), seed=0).to(device),
}
pointwise = RandomFilterNet(sizes=(1,), filters=by_scale(16, 128), seed=0).to(device)
pointwise_targets = grams(pointwise, textures)
controls["1x1 network"], _ = synthesize(lambda x: texture_loss(grams(pointwise, x), pointwise_targets), noise,
                                        steps=STEPS, lr=0.03, device=device)
candidates = {"synthesized": synthesized, **controls}


def judge_distances(images: torch.Tensor) -> torch.Tensor:
    """The judge's texture distance from each image (rows) to each texture (columns): (3, 3)."""
    return torch.tensor([[texture_distance(judge, images[i:i + 1].to(device), textures[j:j + 1])
                          for j in range(len(TEXTURES))] for i in range(len(images))])


distance = {name: judge_distances(images) for name, images in candidates.items()}
print("judge's distance from each synthesized image (rows) to each texture (columns):")
print(f"{'':>10}" + "".join(f"{t:>10}" for t in TEXTURES))
for i, name in enumerate(TEXTURES):
    print(f"{name:>10}" + "".join(f"{float(v):>10.4f}" for v in distance["synthesized"][i]))
print("\njudge's distance to its own target:")
print(f"{'':>17}" + "".join(f"{t:>10}" for t in TEXTURES))
for name, d in distance.items():
    print(f"{name:>17}" + "".join(f"{float(v):>10.4f}" for v in d.diag()))

# %% [markdown]
# The claims. Each synthesized image is much closer to its own texture than to the other two, and much
# closer than noise and than its own pixels shuffled; the 1x1 network, which has the same optimiser and the
# same number of filters but sees no neighbours, fails the shuffle test (the negative control).

# %%
def own_vs_others(d: torch.Tensor) -> torch.Tensor:
    """For each row: distance to its own texture / the smallest distance to another texture."""
    off = d + torch.diag(torch.full((len(d),), float("inf")))
    return d.diag() / off.min(dim=1).values


ratios = {name: own_vs_others(d) for name, d in distance.items()}
versus_shuffled = {name: distance[name].diag() / distance["shuffled pixels"].diag()
                   for name in ("synthesized", "1x1 network")}
for name in ("synthesized", "1x1 network"):
    print(f"{name:>12}: own / nearest other texture {[round(float(r), 3) for r in ratios[name]]}; "
          f"own / shuffled pixels {[round(float(r), 3) for r in versus_shuffled[name]]}")
assert float(ratios["synthesized"].max()) < 0.05, "each synthesis should be far closer to its own texture"
assert float(versus_shuffled["synthesized"].max()) < 0.5, "and far closer than its shuffled pixels"
assert float((distance["synthesized"].diag() / distance["noise"].diag()).max()) < 1e-2, "and than noise"
assert float(versus_shuffled["1x1 network"].min()) > 0.5, "a network that sees one pixel must not pass"

# %% [markdown]
# **Against the spectrum control**, the honest comparison: on each texture, which one does the judge find
# closer? The cell prints its verdict per texture; look at the pictures too. Regular, long-range structure
# (the rows of bricks) is where one small random layer struggles most, since its largest filter is smaller
# than a brick at this size.

# %%
for i, name in enumerate(TEXTURES):
    net_d, spec_d = float(distance["synthesized"][i, i]), float(distance["spectrum control"][i, i])
    verdict = "the network is closer" if net_d < spec_d else "the spectrum control is closer"
    print(f"{name:>7}: network {net_d:.4f}, spectrum control {spec_d:.4f} ({spec_d / net_d:.2f}x): {verdict}")
wins = sum(float(distance["synthesized"][i, i]) < float(distance["spectrum control"][i, i])
           for i in range(len(TEXTURES)))
print(f"the network beats the spectrum control on {wins} of {len(TEXTURES)} textures, on this judge")

columns = ["target", "synthesized", "spectrum control", "shuffled pixels", "1x1 network"]
pictures = {"target": textures, **candidates}
fig, axes = plt.subplots(len(TEXTURES), len(columns), figsize=(1.6 * len(columns), 1.7 * len(TEXTURES)), dpi=72)
for i, name in enumerate(TEXTURES):
    for j, column in enumerate(columns):
        axes[i, j].imshow(pictures[column][i, 0].cpu(), cmap="gray", vmin=0, vmax=1)
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
        if i == 0:
            axes[i, j].set_title(column, fontsize=9)
    axes[i, 0].set_ylabel(name)
plt.tight_layout()
plt.show()

# %% [markdown]
# **A trained network on the same judge.** Gatys et al. took their Gram matrices from VGG-19, trained on
# ImageNet. `karpa_lab.models.vgg` writes out its 16 convolutions and returns the feature maps after the
# first ReLU of each of its five blocks (relu1_1 to relu5_1, their layers), having normalised the image by
# ImageNet's mean and standard deviation (a grey image goes into all three colour channels). It returns them
# as a list, like `RandomFilterNet`, so `grams`, `texture_loss` and `synthesize` take it unchanged.
#
# The weights are not part of the course: they are your own file, for instance torchvision's
# `vgg19-dcbb9e9d.pth` (about 550 MB). `load_vgg19` reads it from your disk only, checks its SHA-256 before
# opening it (against `dcbb9e9d`, the start of the digest in that file's name, or the digest you give in
# `KARPA_VGG19_SHA256`), refuses a file with other keys or shapes, and never downloads anything. With
# `KARPA_SCALE=full` and `KARPA_VGG19=/path/to/vgg19-dcbb9e9d.pth`, the next cell synthesises the same three
# textures from the same noise with the same steps on VGG-19, and prints the judge's distances beside the
# random network's; otherwise it prints how to switch it on. Which network the judge prefers is whatever the
# cell prints. Keep in mind that the judge is itself one layer of random filters, closer in kind to the
# random network than to VGG-19: it is one view of the two, not the last word.

# %%
vgg_file = vgg19_weights_path()
if scale() != "full" or vgg_file is None:
    why = f"{VGG19_ENV} is set, but is used at full scale only" if vgg_file else f"{VGG19_ENV} is not set"
    print(f"VGG-19 comparison off ({why}): set KARPA_SCALE=full and {VGG19_ENV}=/path/to/vgg19-dcbb9e9d.pth, "
          "your own copy of torchvision's weights (checked by SHA-256, never downloaded)")
else:
    vgg = load_vgg19(vgg_file, sha256=os.environ.get(VGG19_SHA256_ENV)).to(device)
    vgg_targets = grams(vgg, textures)
    start = time.perf_counter()
    vgg_images, vgg_history = synthesize(lambda x: texture_loss(grams(vgg, x), vgg_targets), noise, steps=STEPS,
                                         lr=0.03, device=device)
    distance["VGG-19"] = judge_distances(vgg_images)
    print(f"VGG-19 from {vgg_file}: {STEPS} Adam steps in {time.perf_counter() - start:.1f} s, its texture loss "
          f"{vgg_history.train_loss[0]:.2f} -> {vgg_history.train_loss[-1]:.4f}")
    print(f"judge's distance to its own target:\n{'':>7}{'random network':>16}{'VGG-19':>10}{'spectrum':>10}"
          f"{'noise':>10}")
    for i, name in enumerate(TEXTURES):
        print(f"{name:>7}" + "".join(f"{float(distance[k][i, i]):>{w}.4f}" for k, w in
                                     (("synthesized", 16), ("VGG-19", 10), ("spectrum control", 10), ("noise", 10))))
    vgg_wins = sum(float(distance["VGG-19"][i, i]) < float(distance["synthesized"][i, i]) for i in range(len(TEXTURES)))
    vgg_ratio = own_vs_others(distance["VGG-19"])
    print(f"VGG-19 is closer than the random network on {vgg_wins} of {len(TEXTURES)} textures, on this judge; "
          f"own / nearest other texture {[round(float(r), 3) for r in vgg_ratio]}")
    assert float(vgg_ratio.max()) < 1, "each VGG-19 synthesis should be closest to its own texture"
    assert bool((distance["VGG-19"].diag() < 0.1 * distance["noise"].diag()).all()), "and far closer than noise"
    fig, axes = plt.subplots(1, 3 * len(TEXTURES), figsize=(1.6 * 3 * len(TEXTURES), 2), dpi=72)
    for i, name in enumerate(TEXTURES):
        for j, (label, images) in enumerate((("target", textures), ("random", synthesized), ("VGG-19", vgg_images))):
            axes[3 * i + j].imshow(images[i, 0].cpu(), cmap="gray", vmin=0, vmax=1)
            axes[3 * i + j].set_title(f"{name}: {label}", fontsize=8)
            axes[3 * i + j].set_axis_off()
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## 5. Style transfer: content plus style
#
# Gatys, Ecker and Bethge (2016) added a content loss (内容损失): keep the feature maps themselves (not
# their Gram matrices) of a photo $p$, where things are, while matching the texture's Gram matrices:
#
# $$\mathcal{L}(x) = \alpha\,\mathcal{L}_{content}(x, p) + (1 - \alpha)\,\mathcal{L}_{tex}(x, t), \qquad
#   \mathcal{L}_{content}(x, p) = \sum_{s \in S_c} \frac{\lVert F_s(x) - F_s(p)\rVert^2}{\lVert F_s(p)\rVert^2}.$$
#
# Here the content scales $S_c$ are the two smallest filter sizes (edges and their positions), the style is
# every scale's Gram matrix, and the optimisation starts from the photo (scikit-image's astronaut, in
# grey). Both losses are relative errors, so one weight $\alpha$ trades them.
#
# **A pixel blend is not style transfer.** A simpler "style transfer" objective,
# $\alpha\lVert x - p\rVert^2 + (1 - \alpha)\lVert x - t\rVert^2$ (with $\alpha$ on the photo, as above),
# has its minimum where its gradient $2\alpha(x - p) + 2(1 - \alpha)(x - t)$ is zero: $x = \alpha p +
# (1 - \alpha) t$, a double exposure of the two images. The cell checks that the optimiser lands there.

# %%
ALPHAS, STYLE_STEPS = (0.7, 0.9, 0.98), by_scale(120, 1000)
photo = load_photo("astronaut", height=SIZE).to(device)[None]  # (1, 1, SIZE, SIZE)
style = textures[TEXTURES.index("grass")][None]
transfer = StyleTransferLoss(net, photo, style, ALPHAS, content_scales=(0, 1))
start = time.perf_counter()
stylized, _ = synthesize(transfer, photo.expand(len(ALPHAS), -1, -1, -1), steps=STYLE_STEPS, lr=0.03,
                                        device=device)
content, style_part = (t.detach().cpu() for t in transfer.parts(stylized.to(device)))
alpha = torch.tensor(ALPHAS).view(-1, 1, 1, 1).to(device)
blend = alpha * photo + (1 - alpha) * style
pixel_loss = lambda x: (alpha.flatten() * (x - photo).pow(2).flatten(1).sum(1)
                        + (1 - alpha.flatten()) * (x - style).pow(2).flatten(1).sum(1)).mean()
optimised_blend, _ = synthesize(pixel_loss, noise[:1].expand(len(ALPHAS), -1, -1, -1), steps=STYLE_STEPS, lr=0.03,
                                device=device)
blend_gap = float((optimised_blend.to(device) - blend).abs().max())
print(f"{len(ALPHAS)} style transfers in {time.perf_counter() - start:.1f} s; the pixel loss's optimum is the "
      f"blend to {blend_gap:.1e}")
judged = {"style transfer": [texture_distance(judge, stylized[i:i + 1].to(device), style) for i in range(len(ALPHAS))],
          "pixel blend": [texture_distance(judge, blend[i:i + 1], style) for i in range(len(ALPHAS))]}
print(f"{'alpha':>6} {'content loss':>13} {'style loss':>11} {'judge: style transfer':>22} {'judge: blend':>13}")
for i, a in enumerate(ALPHAS):
    print(f"{a:>6} {float(content[i]):>13.3f} {float(style_part[i]):>11.3f} {judged['style transfer'][i]:>22.3f} "
          f"{judged['pixel blend'][i]:>13.3f}")
print(f"the photo itself: judge's distance to the grass {texture_distance(judge, photo, style):.1f}")

# %% [markdown]
# The claims: raising $\alpha$ keeps more of the photo (the content loss falls) and less of the texture
# (the style loss rises), in order; and at every $\alpha$ the judge finds the Gram-based result closer to
# the grass than the pixel blend with the same weight: a blend keeps the photo's edges at full contrast
# and lays the grass over them, where the Gram loss makes the image's local statistics the grass's.

# %%
assert blend_gap < 0.02, "the pixel objective's optimum is the blend"
assert bool((content[1:] < content[:-1]).all()) and bool((style_part[1:] > style_part[:-1]).all()), \
    "alpha should trade content against style monotonically"
assert all(s < 0.1 * b for s, b in zip(judged["style transfer"], judged["pixel blend"])), \
    "at the same alpha, the Gram-based result should be far closer to the texture than a blend"

fig, axes = plt.subplots(2, len(ALPHAS) + 1, figsize=(1.8 * (len(ALPHAS) + 1), 3.8), dpi=72)
for row, (images, label) in enumerate(((stylized, "content + style"), (blend, "pixel blend"))):
    axes[row, 0].imshow((photo if row == 0 else style)[0, 0].cpu(), cmap="gray", vmin=0, vmax=1)
    axes[row, 0].set_title("photo" if row == 0 else "texture", fontsize=9)
    for i, a in enumerate(ALPHAS):
        axes[row, i + 1].imshow(images[i, 0].cpu(), cmap="gray", vmin=0, vmax=1)
        axes[row, i + 1].set_title(f"{label}, alpha {a}", fontsize=8)
for ax in axes.flat:
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 6. Play: the content weight
#
# The slider moves $\alpha$ over the values optimised above (an optimisation takes seconds, too slow to
# run at every move): the Gram-based result on the left, the pixel blend with the same weight on the right.

# %%
style_widget(style_results(ALPHAS, stylized, blend, content.tolist(), style_part.tolist()))

# %%
print(f"lesson time: {time.perf_counter() - start_lesson:.1f} s")

# %% [markdown]
# ## Exercises
#
# 1. **What a Gram matrix forgets.** Predict, then check: roll the gravel texture by half its width
#    (`torch.roll`). How far is it from the original under the judge, compared with the other textures?
# 2. **Fewer filters.** Synthesise the gravel with 2 filters per size instead of 16. Predict the judge's
#    distance before you run it.
# 3. **Only small filters.** Synthesise the brick with `sizes=(3,)` only. Which does the judge penalise
#    more, this or the four-size network, and what do you see in the picture?
# 4. **Why divide by M.** Tile the grass 2x2 into an image of twice the size. Compare its Gram matrices
#    with the original's, with and without the division by the number of positions.
# 5. **Two seeds, one texture.** Synthesise the gravel from two different noise images. Are the results the
#    same image? Are they the same texture?
#
# Worked solutions, each one run and checked: [solutions/16_texture_synthesis.ipynb](solutions/16_texture_synthesis.ipynb).
#
# ## Summary
#
# - A Gram matrix $G = F F^\top / M$ (C x C) keeps which features fire together and forgets where; the
#   texture loss is its relative error summed over scales, and its gradient $4 D F / (M \lVert A\rVert^2)$
#   equals autograd's.
# - One layer of random filters at several sizes is enough to describe a texture: no trained network, no
#   download. Synthesis optimises the pixels (through `fit`), and the Gram loss falls by orders of magnitude.
# - Judged by a second random network it never saw, each synthesis is closest to its own texture and far
#   closer than noise or its own shuffled pixels; a 1x1 network fails that test. The spectrum control is a
#   strong baseline: the printed verdict says where the network beats it.
# - With VGG-19's weights as your own file (checked by SHA-256, never downloaded), at full scale the same
#   code synthesises on a trained network, and the same judge prints its distances beside the random one's.
# - Style transfer adds a content loss on the feature maps; one weight trades content for style. A pixel
#   blend of photo and texture, the minimum of a pixel-space objective, is a double exposure instead.
#
# **Next:** the losses take any network's feature maps. With VGG-19 loaded, `StyleTransferLoss(vgg, ...)` is
# Gatys' style transfer on the same code (its content scales index VGG-19's five layers: `(3,)` is relu4_1).
#
# | English | 中文 | one line |
# |---|---|---|
# | texture | 纹理 | an image whose statistics are the same everywhere: grass, gravel, brick |
# | Gram matrix | 格拉姆矩阵 | the average over positions of the outer product of the feature vectors |
# | texture synthesis | 纹理合成 | a new image with the statistics of an example texture |
# | style transfer | 风格迁移 | an image with one photo's content and another image's texture statistics |
# | content loss | 内容损失 | the distance between two images' feature maps, position by position |
# | power spectrum | 功率谱 | the squared magnitude of the Fourier transform: second-order statistics |
# | random features | 随机特征 | features from untrained, randomly drawn weights |
# | pretrained network | 预训练网络 | a network whose weights were trained on another task (VGG-19 on ImageNet) |
