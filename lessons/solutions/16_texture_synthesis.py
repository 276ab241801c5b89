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
# # 16 · Texture synthesis and style transfer: worked solutions
#
# One section per exercise of [lesson 16](../16_texture_synthesis.ipynb), in its order and with its
# wording. Each answer gives the reasoning first, then runs it and asserts what the reasoning predicted.
# The lesson's set-up first: the same textures, the same network to optimise and the same judge.

# %%
import matplotlib.pyplot as plt
import torch

from karpa_lab import seed_everything
from karpa_lab.data import TEXTURES, load_texture
from karpa_lab.models.texture import RandomFilterNet, gram_matrix, grams, synthesize, texture_distance, texture_loss

seed_everything(0)
torch.set_num_threads(1)

SIZE, SIZES, FILTERS, STEPS = 64, (3, 7, 15, 23), 16, 150
net = RandomFilterNet(sizes=SIZES, filters=FILTERS, seed=0)
judge = RandomFilterNet(sizes=(3, 5, 7, 11, 15, 23), filters=16, seed=1)
texture = {name: load_texture(name, SIZE)[None] for name in TEXTURES}  # each (1, 1, 64, 64)
noise = lambda seed, n=1: torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def synthesize_with(model: RandomFilterNet, target: torch.Tensor, init: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The lesson's synthesis of ``target`` (B, 1, H, W) on ``model``; returns the images and the loss's fall."""
    goal = grams(model, target)
    images, history = synthesize(lambda x: texture_loss(grams(model, x), goal), init, steps=STEPS, lr=0.03,
                                 device="cpu")
    return images, history.train_loss[0] / history.train_loss[-1]


# the lesson's network on the brick and on the gravel from two starting noises, one batch
reference, _ = synthesize_with(net, torch.cat([texture["brick"], texture["gravel"], texture["gravel"]]),
                               torch.cat([noise(0), noise(0), noise(1)]))
brick_4, gravel_4, gravel_4_other = reference[0:1], reference[1:2], reference[2:3]
shuffled = lambda t: t.flatten()[torch.randperm(t.numel(), generator=torch.Generator().manual_seed(0))].view_as(t)

# %% [markdown]
# ## 1. What a Gram matrix forgets
#
# *Predict, then check: roll the gravel texture by half its width (`torch.roll`). How far is it from the
# original under the judge, compared with the other textures?*
#
# **Prediction: almost nothing changes.** A Gram matrix sums over positions, so moving every pixel by the
# same amount leaves it as it was, except for the features that straddle the new seam in the middle (where
# the old left and right edges now meet), a thin strip of the image. The distance should be tiny next to
# the distances to brick and grass, while pixel by pixel the rolled image is a different image.

# %%
gravel = texture["gravel"]
rolled = torch.roll(gravel, shifts=SIZE // 2, dims=3)
d_rolled = texture_distance(judge, rolled, gravel)
d_others = {name: texture_distance(judge, texture[name], gravel) for name in ("brick", "grass")}
pixel_change = float((rolled - gravel).abs().mean())
print(f"judge's distance to the gravel: rolled gravel {d_rolled:.4f}; brick {d_others['brick']:.3f}, "
      f"grass {d_others['grass']:.3f}; mean pixel change of the roll {pixel_change:.3f}")
assert d_rolled < 0.01 * min(d_others.values()), "a shifted texture keeps its Gram matrices"
assert pixel_change > 0.05, "while its pixels all moved"

# %% [markdown]
# ## 2. Fewer filters
#
# *Synthesise the gravel with 2 filters per size instead of 16. Predict the judge's distance before you
# run it.*
#
# **Prediction: the optimiser succeeds, the judge is not fooled.** With 2 filters per size each Gram
# matrix is 2x2: 4 sizes x 3 distinct entries = 12 numbers for 4,096 pixels. Matching them is easy (the loss
# still falls by orders of magnitude), but many images that are not gravel have the same 12 numbers, and
# the judge, with its own 16 filters per size, sees the difference: its distance should be many times
# that of the 16-filter synthesis (more than an order of magnitude).

# %%
few = RandomFilterNet(sizes=SIZES, filters=2, seed=0)
gravel_2, fall_2 = synthesize_with(few, gravel, noise(0))
d16, d2 = texture_distance(judge, gravel_4, gravel), texture_distance(judge, gravel_2, gravel)
print(f"2 filters per size: own loss {fall_2:,.0f}x lower; judge's distance {d2:.4f} against {d16:.4f} "
      f"with 16 ({d2 / d16:.1f}x)")
assert fall_2 > 100, "the small network is matched"
assert d2 > 20 * d16, "but the judge is not fooled"

# %% [markdown]
# ## 3. Only small filters
#
# *Synthesise the brick with `sizes=(3,)` only. Which does the judge penalise more, this or the four-size
# network, and what do you see in the picture?*
#
# **Prediction: the 3x3 network is penalised more.** A 3x3 filter sees the brick's mortar lines only as
# short edge fragments; nothing tells it that they join into long, evenly spaced rows. The synthesis
# gets the local grain and the edge orientations and loses the rows, and the judge's larger filters (up to
# 23x23) see that. The four-size network sees further, though the lesson showed it is not enough for
# bricks at this size either.

# %%
small = RandomFilterNet(sizes=(3,), filters=FILTERS, seed=0)
brick_3, _ = synthesize_with(small, texture["brick"], noise(0))
d_small = texture_distance(judge, brick_3, texture["brick"])
d_four = texture_distance(judge, brick_4, texture["brick"])
print(f"judge's distance to the brick: 3x3 filters only {d_small:.4f}, four sizes {d_four:.4f} ({d_small / d_four:.1f}x)")
assert d_small > 2 * d_four, "small filters alone should miss the large-scale structure"
fig, axes = plt.subplots(1, 3, figsize=(6, 2.2), dpi=72)
for ax, image, title in zip(axes, (texture["brick"], brick_3, brick_4), ("brick", "3x3 filters only", "four sizes")):
    ax.imshow(image[0, 0], cmap="gray", vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Why divide by M
#
# *Tile the grass 2x2 into an image of twice the size. Compare its Gram matrices with the original's, with
# and without the division by the number of positions.*
#
# **Prediction.** The tiled image has the same local statistics (apart from the seams where tiles meet), so
# the *average* outer product, $F F^\top / M$, barely changes. The *sum* $F F^\top$ grows with the number of
# positions: a $k \times k$ filter without padding has $(2S - k + 1)^2$ positions instead of $(S - k + 1)^2$,
# a little more than 4 times as many. Without the division, the Gram matrix measures the image's size as
# much as its texture.

# %%
grass = texture["grass"]
tiled = grass.repeat(1, 1, 2, 2)  # (1, 1, 128, 128)
for k, small_map, big_map in zip(net.sizes, net(grass), net(tiled)):
    mean_gap = float((gram_matrix(big_map) - gram_matrix(small_map)).norm() / gram_matrix(small_map).norm())
    sums = [float((m.flatten(2) @ m.flatten(2).transpose(1, 2)).norm()) for m in (small_map, big_map)]
    positions = ((2 * SIZE - k + 1) / (SIZE - k + 1)) ** 2
    print(f"{k:>2}x{k:<2} filters: divided by M, relative change {mean_gap:.3f}; not divided, the tiled "
          f"image's is {sums[1] / sums[0]:.2f}x larger (positions: {positions:.2f}x)")
    assert mean_gap < 0.1, "the average outer product does not depend on the image's size"
    assert abs(sums[1] / sums[0] / positions - 1) < 0.06, "the sum grows with the number of positions"

# %% [markdown]
# ## 5. Two seeds, one texture
#
# *Synthesise the gravel from two different noise images. Are the results the same image? Are they the
# same texture?*
#
# **Prediction: different images, the same texture.** The Gram matrices fix 4 x 136 numbers (the distinct
# entries of four symmetric 16x16 matrices), far fewer than 4,096 pixels, so very many images satisfy
# them; each starting noise leads the optimiser to a different one. Pixel by pixel the two results should
# differ about as much as two unrelated crops of gravel; under the judge, each should be as close to the
# gravel as the lesson's synthesis, and closer to each other than the gravel's own shuffled pixels are.

# %%
pixel_gap = float((gravel_4 - gravel_4_other).abs().mean())
crops_gap = float((gravel[..., :32, :] - gravel[..., 32:, :]).abs().mean())
judged = [texture_distance(judge, image, gravel) for image in (gravel_4, gravel_4_other)]
between = texture_distance(judge, gravel_4_other, gravel_4)
control = texture_distance(judge, shuffled(gravel), gravel)
print(f"mean pixel difference between the two syntheses {pixel_gap:.3f} (two halves of the gravel: {crops_gap:.3f})")
print(f"judge: seed 0 {judged[0]:.4f}, seed 1 {judged[1]:.4f} from the gravel; {between:.4f} from each other; "
      f"the gravel's shuffled pixels {control:.4f}")
assert pixel_gap > 0.5 * crops_gap, "different images"
assert max(judged) < 0.5 * control and between < 0.5 * control, "the same texture"
