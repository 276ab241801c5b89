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
# # 00 · A tour of karpa-lab: worked solutions
#
# One section per exercise of [lesson 00](../00_tour.ipynb), in its order and with its wording. Each
# answer gives the reasoning first, then runs it and asserts what the reasoning predicted. Every run
# below trains the lesson's section-3 network with the lesson's `fit` call; only the number the exercise
# changes is changed.

# %%
import os
import signal
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from karpa_lab import accuracy, by_scale, evaluate, fit, scale, seed_everything, warmup_cosine
from karpa_lab.data import digits_loaders

torch.set_num_threads(1)


def section3_run(hidden: int, epochs: int, lr: float = 3e-3, **fit_args):
    """Lesson 00's section 3 with one number changed: the same seed, data, schedule and clipping."""
    seed_everything(0)
    train_dl, val_dl, test_dl = digits_loaders(batch_size=64, flatten=True)
    model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
    total = epochs * len(train_dl)
    history = fit(model, train_dl, epochs=epochs, lr=lr, schedule=warmup_cosine(warmup=20, total=total),
                  clip_grad=1.0, val_data=val_dl, metrics={"accuracy": accuracy}, verbose=False, **fit_args)
    return model, history, evaluate(model, test_dl, metrics={"accuracy": accuracy})["accuracy"], test_dl


# %% [markdown]
# ## 1. Predict, then run
#
# *Set `lr=3e-2` in the `fit` call of section 3. Will the final accuracy go up or down? Look at the
# gradient-norm panel before and after.*
#
# **Prediction: up.** The lesson's run is short (204 steps) and its validation loss is still falling at
# the end: it is limited by how far the weights can travel, not by noise. AdamW divides each gradient by
# a running estimate of its own size, so every weight moves by about $\eta$ per step: at 3e-2 the run
# covers ten times the distance, and the warm-up and the clipping at 1.0 keep its first steps safe. The
# gradient-norm panel should change in two ways. Early on, larger gradients, with spikes above the
# clipping threshold of 1 (where clipping acts). Later, much *smaller* gradients than in the lesson's
# run: the network fits its training images almost exactly, and the cross-entropy's gradient,
# proportional to $\mathrm{softmax}(z) - \mathrm{onehot}(y)$, vanishes with the training loss.

# %%
hidden, epochs = by_scale(small=128, full=512), by_scale(small=12, full=60)
runs = {lr: section3_run(hidden, epochs, lr=lr)[1:3] for lr in (3e-3, 3e-2)}
norms = {}
for lr, (hist, acc) in runs.items():
    g = torch.tensor(hist.grad_norm)
    half = len(g) // 2
    norms[lr] = {"early max": g[:50].max().item(), "clipped": int((g > 1).sum()), "late median": g[half:].median().item()}
    print(f"lr {lr:.0e}: {len(hist)} steps; validation loss at the last three evaluations "
          f"{', '.join(f'{v:.3f}' for v in hist.val_loss[-3:])}")
    print(f"  test accuracy {acc:.3f}, final training loss {hist.train_loss[-1]:.4f}; gradient norm: "
          f"largest in the first 50 steps {norms[lr]['early max']:.2f}, steps above 1 (clipped) "
          f"{norms[lr]['clipped']}, median of the second half {norms[lr]['late median']:.3f}")
fig = runs[3e-2][0].plot()
assert runs[3e-3][0].val_loss[-1] < runs[3e-3][0].val_loss[-3], "the lesson's run still improves at its end"
assert runs[3e-2][1] > runs[3e-3][1], "the accuracy goes up"
assert norms[3e-2]["early max"] > max(1.0, norms[3e-3]["early max"]), "early spikes, cut by the clipping"
assert norms[3e-2]["late median"] < 0.5 * norms[3e-3]["late median"], "then smaller gradients: the fit is tighter"

# %% [markdown]
# ## 2. The knob
#
# *Re-run the notebook with `KARPA_SCALE=full` (restart JupyterLab with `KARPA_SCALE=full make lab`). How
# long does it take, and does the test accuracy change?*
#
# `by_scale` reads `KARPA_SCALE` at each call, so setting it in this process is the same as restarting
# with it. The full scale trains a network four times as wide (512 hidden units) for five times as many
# epochs (60): five times the steps, each one costlier, so expect a run many times longer (on this CPU
# still a few seconds; on a GPU the full scale is what it is for). And the accuracy should **go up**:
# exercise 1 showed that the small run is limited by its number of steps, not by the data, so five times
# as many steps should buy what ten times the learning rate bought there.

# %%
timings, accs = {}, {}
for knob in ("small", "full"):
    os.environ["KARPA_SCALE"] = knob
    size = (by_scale(small=128, full=512), by_scale(small=12, full=60))
    start = time.perf_counter()
    _, hist, accs[knob], _ = section3_run(*size)
    timings[knob] = time.perf_counter() - start
    print(f"KARPA_SCALE={knob}: hidden={size[0]}, epochs={size[1]}, {len(hist)} steps in {timings[knob]:.1f} s, "
          f"test accuracy {accs[knob]:.3f}")
os.environ.pop("KARPA_SCALE")
print(f"full / small: {timings['full'] / timings['small']:.1f}x the time; accuracy {accs['full'] - accs['small']:+.3f}")
assert scale() == "small"
assert timings["full"] > 2 * timings["small"]
assert accs["full"] > accs["small"] + 0.01, "more steps, better accuracy"

# %% [markdown]
# ## 3. Interrupt
#
# *Set `epochs = 2000` and press *Interrupt* after a few seconds. Check that `history` holds the steps so
# far and that `evaluate(model, test_dl, ...)` still reports the accuracy it reached.*
#
# JupyterLab's *Interrupt* sends the kernel the signal SIGINT, the one Ctrl-C sends. `fit` catches it,
# finishes the step it is in, and returns: `history` then holds exactly the steps done, with
# `history.interrupted` set, and the model keeps its weights. To make the run reproducible, the cell
# below sends SIGINT itself from inside the loss function at step 150 of the 34,000 (a person pressing
# the button does the same, a few seconds in). Prediction: 150 steps in the history, and a test accuracy
# far above chance: 150 steps is most of the 204 that reach the lesson's accuracy (exercise 1).

# %%
def ctrl_c_at(step: int):
    """Cross-entropy, which also presses Ctrl-C (sends SIGINT) during training step ``step``."""
    done = {"steps": 0}

    def loss(logits, y):
        if torch.is_grad_enabled():  # a training step; evaluation runs without gradients
            done["steps"] += 1
            if done["steps"] == step:
                os.kill(os.getpid(), signal.SIGINT)
        return nn.functional.cross_entropy(logits, y)
    return loss


model, hist, _, test_dl = section3_run(128, 2000, loss_fn=ctrl_c_at(150))
reached = evaluate(model, test_dl, metrics={"accuracy": accuracy})["accuracy"]
print(f"interrupted: {hist.interrupted}; {len(hist)} steps in the history (of {2000 * 17:,}); "
      f"test accuracy reached {reached:.3f}")
assert hist.interrupted and len(hist) == 150 and hist.steps[-1] == 149
assert reached > 0.85

# %% [markdown]
# ## 4. Resume
#
# *Train with `checkpoint="runs/tour.ckpt", save_every=50`, interrupt, then call `fit` again with
# `resume_from="runs/tour.ckpt"`: the run continues where it stopped, with the same result as an
# uninterrupted one.*
#
# A checkpoint written by `fit` holds everything the next step depends on: the weights, AdamW's moment
# estimates, the history, the position in the shuffled epoch and the state of every random generator.
# So the resumed run draws the same batches in the same order and makes the same updates: the result
# should not be close to the uninterrupted one, it should be *identical*, weight for weight. Below: one
# uninterrupted run of 204 steps; one run interrupted at step 70 (the checkpoint on disk is then at step
# 70, not at the last `save_every` multiple, 50: `fit` writes one on Ctrl-C), resumed on a model built
# with another seed, so that everything it ends with comes from the checkpoint. (The files go to a
# temporary folder instead of `runs/`.)

# %%
with tempfile.TemporaryDirectory() as tmp:
    ckpt = Path(tmp) / "tour.ckpt"
    whole, whole_hist, whole_acc, _ = section3_run(128, 12, checkpoint=Path(tmp) / "whole.ckpt", save_every=50)
    _, cut_hist, _, _ = section3_run(128, 12, checkpoint=ckpt, save_every=50, loss_fn=ctrl_c_at(70))
    seed_everything(1)
    resumed = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    train_dl, val_dl, test_dl = digits_loaders(batch_size=64, flatten=True)
    resumed_hist = fit(resumed, train_dl, epochs=12, lr=3e-3, schedule=warmup_cosine(warmup=20, total=12 * len(train_dl)),
                       clip_grad=1.0, val_data=val_dl, metrics={"accuracy": accuracy}, verbose=False,
                       checkpoint=ckpt, save_every=50, resume_from=ckpt)
resumed_acc = evaluate(resumed, test_dl, metrics={"accuracy": accuracy})["accuracy"]
gap = max(float((a - b).abs().max()) for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()))
print(f"interrupted after {len(cut_hist)} steps; resumed to {len(resumed_hist)} steps")
print(f"test accuracy: uninterrupted {whole_acc:.4f}, interrupted + resumed {resumed_acc:.4f}; "
      f"largest weight difference {gap:.1e}; same loss at every step: {whole_hist.train_loss == resumed_hist.train_loss}")
assert len(cut_hist) == 70 and len(resumed_hist) == len(whole_hist) == 204
assert gap == 0.0 and whole_hist.train_loss == resumed_hist.train_loss and resumed_acc == whole_acc
