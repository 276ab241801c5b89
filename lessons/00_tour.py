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
# # 00 · A tour of karpa-lab
#
# **The question.** How does this course work, and what does the small helper package `karpa_lab` do for
# you? By the end of this notebook you will know which device your lessons run on and why, how every
# lesson trains a model (one function, `fit`), how to read a training run (its `History`), how to make
# a lesson bigger on a GPU (the `KARPA_SCALE` knob), and where the code behind each lesson lives.
#
# **How a lesson is laid out.** Every lesson follows the same arc:
# 1. the question, and what you will be able to do;
# 2. the math, with the shape of every symbol written next to it;
# 3. the idea from scratch, in a few lines of tensors;
# 4. a check: the same numbers as PyTorch's own implementation, asserted to a tolerance;
# 5. training with `karpa_lab.fit` on data that needs no download, and an `assert` on the promised outcome;
# 6. a widget or knob to play with;
# 7. exercises; 8. a summary and what comes next.
#
# The `assert`s are the point: a lesson does not *say* that the LSTM remembers, it *checks* it, and the
# course's test suite runs every notebook to make sure it still does.

# %%
import os
import pkgutil
import time

import torch
from torch import nn

import karpa_lab
from karpa_lab import (
    accuracy,
    by_scale,
    describe,
    evaluate,
    fit,
    get_device,
    scale,
    seed_everything,
    warmup_cosine,
)
from karpa_lab.data import digits_loaders

# %% [markdown]
# ## 1. The device (设备)
#
# `get_device()` picks CUDA if PyTorch sees an NVIDIA GPU, then Apple's MPS, then the CPU. You can
# override it with the environment variable `KARPA_DEVICE` (`cpu`, `cuda`, `cuda:1`, `mps`); asking for a
# device the machine does not have is an error that says so, instead of a crash at the first `.to(device)`.
# On a GPU, `fit` also trains in mixed precision (混合精度): bfloat16 where the GPU supports it, float16
# with loss scaling otherwise, plain float32 on a CPU.

# %%
device = get_device()
print(describe(device))
# What the rule says this machine should get, unless KARPA_DEVICE asks for something else.
expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
if not os.environ.get("KARPA_DEVICE"):
    assert device.type == expected, (device, expected)

# %% [markdown]
# ## 2. The size knob: `KARPA_SCALE`
#
# Every lesson runs in about a minute on a laptop CPU at the default scale, `small`. On a GPU, start
# JupyterLab with `KARPA_SCALE=full make lab` and the same notebooks train bigger models for longer.
# Lessons choose their sizes with `by_scale(small=..., full=...)`; any other value of the variable is an
# error that lists the two allowed ones.

# %%
print("scale:", scale())
hidden = by_scale(small=128, full=512)
epochs = by_scale(small=12, full=60)
print(f"this run: hidden={hidden}, epochs={epochs}")
assert (hidden, epochs) == ((128, 12) if scale() == "small" else (512, 60))

# %% [markdown]
# ## 3. Training with `fit`
#
# A multi-layer perceptron (多层感知机) classifies scikit-learn's bundled 8x8 handwritten digits (no
# download: the images ship inside scikit-learn). `fit` runs the usual five lines of a training step,
#
# $$\mathcal{L} = \mathrm{CE}(f_\theta(x), y),\quad g = \nabla_\theta \mathcal{L},\quad
#   g \leftarrow g \cdot \min\!\left(1, \tfrac{c}{\lVert g \rVert}\right),\quad
#   \theta \leftarrow \mathrm{AdamW}(\theta, g, \eta_t)$$
#
# with $x$ a batch of images (B, 64), $y$ their labels (B,), $f_\theta(x)$ the logits (B, 10), $c$ the
# clipping threshold and $\eta_t$ the learning rate at step $t$ from a warm-up + cosine schedule. Around
# that step it adds a progress bar, a live loss plot updated in place, evaluation every few steps,
# checkpoints, and a clear error if the loss becomes NaN. Under a test runner it prints plain lines instead.

# %%
seed_everything(0)
train_dl, val_dl, test_dl = digits_loaders(batch_size=64, flatten=True)
model = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
total = epochs * len(train_dl)
start = time.perf_counter()
history = fit(
    model, train_dl, epochs=epochs, lr=3e-3, schedule=warmup_cosine(warmup=20, total=total),
    clip_grad=1.0, val_data=val_dl, metrics={"accuracy": accuracy},
)
seconds = time.perf_counter() - start
test = evaluate(model, test_dl, metrics={"accuracy": accuracy})
print(f"{total} steps in {seconds:.1f} s ({history.steps_per_sec:.0f} steps/s); "
      f"validation accuracy {history.metric('accuracy')[-1]:.3f}, test accuracy {test['accuracy']:.3f}")

# %% [markdown]
# The outcome is checked, not just printed. The cell above prints the steps, the time they took on this
# machine and the two accuracies; the cell below prints how far the validation loss fell from the first
# evaluation to the last. Ten classes means an untrained network scores about 0.1, so a test accuracy of
# 0.9 fails for any model that did not learn.
#
# A check is only worth something if a broken model fails it, so each one is also run on a **negative
# control** (对照实验): the same untrained network, and the same network trained on *shuffled* labels
# (the images no longer say anything about the label, so there is nothing to learn). Both must fail.

# %%
def learned(hist, result):
    """The checks this section promises: a test accuracy of 0.9, a validation loss cut to under 0.3x."""
    ratio = hist.val_loss[-1] / hist.val_loss[0]
    return result["accuracy"] >= 0.90 and ratio < 0.3, ratio

ok, ratio = learned(history, test)
print(f"trained: test accuracy {test['accuracy']:.3f}, validation loss {history.val_loss[0]:.3f} -> "
      f"{history.val_loss[-1]:.3f} ({ratio:.2f}x)")
assert ok and len(history) == total and not history.interrupted

seed_everything(0)
untrained = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
untrained_acc = evaluate(untrained, test_dl, metrics={"accuracy": accuracy})["accuracy"]
x_train, y_train = train_dl.dataset.tensors
shuffled_dl = torch.utils.data.DataLoader(
    torch.utils.data.TensorDataset(x_train, y_train[torch.randperm(len(y_train))]), batch_size=64, shuffle=True)
shuffled = nn.Sequential(nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, 10))
shuffled_hist = fit(shuffled, shuffled_dl, epochs=epochs, lr=3e-3, schedule=warmup_cosine(warmup=20, total=total),
                    clip_grad=1.0, val_data=val_dl, progress=False, log_every=10**9)
shuffled_test = evaluate(shuffled, test_dl, metrics={"accuracy": accuracy})
shuffled_ok, shuffled_ratio = learned(shuffled_hist, shuffled_test)
print(f"untrained: test accuracy {untrained_acc:.3f}")
print(f"shuffled labels: test accuracy {shuffled_test['accuracy']:.3f}, validation loss ratio {shuffled_ratio:.2f}x")
assert untrained_acc < 0.90 and not shuffled_ok

# %% [markdown]
# ## 4. Reading a run: `History`
#
# `fit` returns a `History`: the training loss, learning rate, gradient norm and time of every step, and
# the validation loss and metrics of every evaluation. `history.plot()` draws them. The gradient norm
# panel is worth a look in every lesson: spikes there come before a loss that blows up.

# %%
fig = history.plot()

# %% [markdown]
# ## 5. When things go wrong, nothing is lost
#
# Plain gradient descent on a least-squares problem diverges when the learning rate exceeds
# $2/\lambda_{\max}$, with $\lambda_{\max}$ the largest eigenvalue of the loss's Hessian: each step then
# multiplies the error along that direction by $|1 - \eta\lambda_{\max}| > 1$, until it overflows.
# `fit` stops at the first non-finite loss, says where and what to try, keeps the weights from before
# the bad update, and hands back the history so far. Pressing **Ctrl-C** (or *Interrupt* in JupyterLab)
# mid-run is also safe: the run stops after the current step and `fit` returns the `History` so far,
# with the model keeping what it learned.

# %%
seed_everything(0)
linear = nn.Linear(64, 1)
squared_error = lambda out, y: torch.nn.functional.mse_loss(out.squeeze(1), y.float())
try:
    fit(linear, train_dl, steps=500, optimizer=torch.optim.SGD(linear.parameters(), lr=2.0),
        loss_fn=squared_error, progress=False, log_every=100)
    raise AssertionError("this run was meant to blow up")
except karpa_lab.NonFiniteLossError as err:
    print(str(err)[:420], "...")
    bad_run = err.history
assert 0 < len(bad_run) < 500
assert all(torch.isfinite(p).all() for p in linear.parameters())
print(f"loss went {bad_run.train_loss[0]:.3g} -> {bad_run.train_loss[-1]:.3g} in {len(bad_run)} steps")

# %% [markdown]
# ## 6. Where things are
#
# | you want | open |
# |---|---|
# | the device, seeds, the scale knob | `karpa_lab/device.py` |
# | the training loop; its `History`, checkpoints, several processes, progress display | `karpa_lab/train.py`; `history.py`, `checkpoint.py`, `distributed.py`, `reporting.py` |
# | offline data: Python source text, digits, synthetic tasks | `karpa_lab/data/` |
# | the models each lesson builds from scratch (LSTM, attention, GPT, GANs) | `karpa_lab/models/` |
# | the sliders and their pure functions | `karpa_lab/widgets/` |
# | neural architecture search | `karpa_lab/nas/` |
#
# Each lesson's from-scratch code is proven in the lesson, then kept in the module named after the idea
# (lesson 03's LSTM cell is `karpa_lab/models/lstm.py`), so later lessons reuse it. The modules are short
# and written to be read; here is what each says about itself:

# %%
package_dir = os.path.dirname(karpa_lab.__file__)
for info in pkgutil.walk_packages([package_dir], prefix="karpa_lab."):
    if info.name.startswith("karpa_lab.testing") or info.name.endswith(".__main__"):  # test helpers; command lines
        continue
    module = __import__(info.name, fromlist=["__doc__"])
    first_line = (module.__doc__ or "").strip().splitlines()[0] if module.__doc__ else ""
    print(f"{info.name:<34} {first_line}")

# %% [markdown]
# ## Exercises
# 1. **Predict, then run.** Set `lr=3e-2` in the `fit` call of section 3. Will the final accuracy go up
#    or down? Look at the gradient-norm panel before and after.
# 2. **The knob.** Re-run the notebook with `KARPA_SCALE=full` (restart JupyterLab with
#    `KARPA_SCALE=full make lab`). How long does it take, and does the test accuracy change?
# 3. **Interrupt.** Set `epochs = 2000` and press *Interrupt* after a few seconds. Check that `history` holds
#    the steps so far and that `evaluate(model, test_dl, ...)` still reports the accuracy it reached.
# 4. **Resume.** Train with `checkpoint="runs/tour.ckpt", save_every=50`, interrupt, then call `fit` again
#    with `resume_from="runs/tour.ckpt"`: the run continues where it stopped, with the same result as
#    an uninterrupted one.
#
# Worked solutions, each one run and checked: [solutions/00_tour.ipynb](solutions/00_tour.ipynb).
#
# ## Summary
# - `get_device()` picks CUDA > MPS > CPU; `KARPA_DEVICE` overrides; `KARPA_SCALE` sizes every lesson.
# - `fit` is the one training loop of the course; it returns a `History` you can plot.
# - A NaN loss or a Ctrl-C never throws away finished work.
# - A check on the outcome counts only if a broken model fails it: run it on a negative control too.
#
# **Next:** lesson 01 opens the black box of `loss.backward()`: a scalar automatic-differentiation
# engine (自动微分) written from scratch and checked against PyTorch's.
#
# | English | 中文 | one line |
# |---|---|---|
# | device | 设备 | the hardware a tensor lives on and a model trains on: CPU, CUDA GPU or Apple MPS |
# | mixed precision | 混合精度 | compute in bfloat16/float16 where it is safe, keep float32 where it is not |
# | multilayer perceptron (MLP) | 多层感知机 | linear layers with a nonlinearity between them |
# | negative control | 对照实验 | the same check run on a model that cannot have learned; it must fail |
# | automatic differentiation | 自动微分 | computing exact gradients of a program by the chain rule, step by step |
