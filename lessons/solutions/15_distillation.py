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
# # 15 · Knowledge distillation: worked solutions
#
# One section per exercise of [lesson 15](../15_distillation.ipynb), in its order and with its wording. Each
# answer gives the reasoning first, then runs it and asserts what the reasoning predicted. Exercises 2 to 5
# need the lesson's teacher and students, rebuilt here in the same way.

# %%
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from karpa_lab import fit, seed_everything
from karpa_lab.data import load_digits_splits
from karpa_lab.models.distill import distillation_step, soft_target_cross_entropy, softmax_t

seed_everything(0)
torch.set_num_threads(1)

# %% [markdown]
# ## 1. Predict, then run
#
# *For the teacher logits $v = (4, 2, 0)$, compute $p$ at $T = 1$, $2$ and $\infty$ by hand. Then check
# with `softmax_t`.*
#
# $T = 1$: $(e^4, e^2, 1) = (54.60, 7.39, 1)$, sum $62.99$, so $p = (0.867, 0.117, 0.016)$.
# $T = 2$: $(e^2, e^1, 1) = (7.389, 2.718, 1)$, sum $11.107$, so $p = (0.665, 0.245, 0.090)$.
# $T \to \infty$: every $v_i / T \to 0$, so $p \to (1/3, 1/3, 1/3)$. The order of the classes never
# changes, only how far apart their probabilities are; the smallest one grows from 1.6 % to 9 % when $T$
# doubles.

# %%
v = torch.tensor([4.0, 2.0, 0.0])
by_hand = {1.0: [0.867, 0.117, 0.016], 2.0: [0.665, 0.245, 0.090], 1e6: [1 / 3, 1 / 3, 1 / 3]}
for T, expected in by_hand.items():
    p = softmax_t(v, T)
    print(f"T = {T:g}: softmax_t {[round(float(x), 3) for x in p]}, by hand {[round(x, 3) for x in expected]}")
    assert float((p - torch.tensor(expected)).abs().max()) < 1e-3

# %% [markdown]
# The lesson's teacher, transfer set and students, for the next four exercises:

# %%
d = load_digits_splits(flatten=True)
images = d.x_train.view(-1, 8, 8)
jittered = torch.cat([torch.roll(images, (dy, dx), (1, 2)).flatten(1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
torch.manual_seed(0)
teacher = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Dropout(0.3),
                        nn.Linear(256, 256), nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, 10))
fit(teacher, DataLoader(TensorDataset(jittered, d.y_train.repeat(9)), batch_size=256, shuffle=True,
                        generator=torch.Generator().manual_seed(0)), epochs=10, lr=2e-3, device="cpu", verbose=False)
teacher.eval()
SEEDS = range(3)


def test_errors(model: nn.Module) -> int:
    model.eval()
    with torch.no_grad():
        return int((model(d.x_test).argmax(1) != d.y_test).sum())


def student_errors(seed: int, n_transfer: int = 100, step_fn=None, epochs: int = 100) -> int:
    """Test errors of the lesson's 32-unit student trained from seed ``seed`` on the first ``n_transfer``
    training images, on the labels (step_fn None) or with a step_fn over batches (x, labels, teacher logits)."""
    x, y = d.x_train[:n_transfer], d.y_train[:n_transfer]
    with torch.no_grad():
        v = teacher(x)
    torch.manual_seed(seed)
    student = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    data = DataLoader(TensorDataset(x, y) if step_fn is None else TensorDataset(x, y, v), batch_size=50,
                      shuffle=True, generator=torch.Generator().manual_seed(seed))
    fit(student, data, epochs=epochs, lr=3e-3, step_fn=step_fn, device="cpu", verbose=False)
    return test_errors(student)


def summary(name: str, errors: list[int]) -> np.ndarray:
    e = np.array(errors)
    print(f"  {name:<34} {e.mean():6.1f} +- {e.std(ddof=1):4.1f}   per seed {e.tolist()}")
    return e


print(f"teacher: {test_errors(teacher)} test errors of {len(d.y_test)}")

# %% [markdown]
# ## 2. The whole training set
#
# *Re-run section 3 with the whole training set as transfer set (`N_TRANSFER = len(x_train)`). Predict
# first: does the paired gain grow, shrink, or vanish into the noise?*
#
# **Prediction: it shrinks, to within the noise.** With 100 images the labels-only student lacks data,
# and the teacher (which saw all 1,077 images and their shifts) fills the gap with ten numbers per image.
# With all 1,077 images the student has nearly all the teacher's data; what the soft targets still add
# (the teacher's jitter, the similarity between digits) is small for a 32-unit student on digits this easy.
# The epochs are cut to 30 to keep the run short (660 steps, against 200 on 100 images); both students get
# the same.

# %%
full = {"labels only": [], "distilled": []}
for seed in SEEDS:
    full["labels only"].append(student_errors(seed, len(d.x_train), epochs=30))
    full["distilled"].append(student_errors(seed, len(d.x_train), distillation_step(2.0, 0.9), epochs=30))
small = {"labels only": [student_errors(seed) for seed in SEEDS],
         "distilled": [student_errors(seed, step_fn=distillation_step(2.0, 0.9)) for seed in SEEDS]}
gains = {}
for name, runs in (("100 transfer images", small), ("1,077 transfer images", full)):
    print(name)
    e = {k: summary(k, v) for k, v in runs.items()}
    gains[name] = summary("paired difference", list(e["labels only"] - e["distilled"]))

# %%
small_gain, full_gain = gains["100 transfer images"], gains["1,077 transfer images"]
full_se = full_gain.std(ddof=1) / np.sqrt(len(full_gain))
print(f"gain: {small_gain.mean():.1f} errors with 100 images, {full_gain.mean():.1f} +- {full_se:.1f} (standard error) "
      f"with the whole training set")
assert full_gain.mean() < small_gain.mean() / 2, "the gain should shrink with the whole training set"
assert abs(full_gain.mean()) < 2 * full_se, "and be within the noise of the seeds"

# %% [markdown]
# ## 3. Drop the $T^2$
#
# *Train the distilled student of section 3 at $T = 8$ with the soft term not multiplied by $T^2$ (divide
# `alpha * T^2` back out). What happens to the balance between the soft and the hard term, and to the test
# errors?*
#
# **Reasoning.** Without the factor the soft term's gradient is $T^2 = 64$ times smaller, while the hard
# term's is unchanged, so the soft term goes from dominating the gradient to a minor part of it. More
# exactly, $\alpha H + (1 - \alpha)\,\mathrm{CE} = c\,[\alpha' T^2 H + (1 - \alpha')\,\mathrm{CE}]$ with
# $\alpha' = \alpha / (\alpha + (1 - \alpha) T^2)$, about 0.12 at $T = 8$, and a constant $c$. Adam's
# step does not change when the loss is multiplied by a constant (it divides the gradient by its own running
# size), so training without $T^2$ at $\alpha = 0.9$ *is* training with $T^2$ at $\alpha' \approx 0.12$:
# the student listens mostly to the labels. The prediction that can be checked: seed by seed, the two give
# the same test errors (up to round-off). Whether that balance is better or worse than $\alpha = 0.9$ is a
# separate, empirical question; the point of $T^2$ is that $\alpha$ keeps its meaning when $T$ changes,
# not that one balance is right. First the gradients on one batch (the untrained student's logits), then the
# students.

# %%
x, y = d.x_train[:100], d.y_train[:100]
with torch.no_grad():
    v100 = teacher(x)
torch.manual_seed(0)
z = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))(x).detach().requires_grad_()
T, alpha = 8.0, 0.9
hard = torch.autograd.grad((1 - alpha) * F.cross_entropy(z, y), z)[0].norm()
soft = {f: torch.autograd.grad(alpha * f * soft_target_cross_entropy(z, v100, T), z)[0].norm() for f in (T**2, 1.0)}
share = {f: float(s / (s + hard)) for f, s in soft.items()}
print(f"T = 8: the soft term's share of the gradient norm {share[T**2]:.2f} with T^2, {share[1.0]:.3f} without")
assert share[T**2] > 0.8 and share[1.0] < 0.3


def no_t_squared(T: float, alpha: float = 0.9):
    """The lesson's loss without the factor T^2 on the soft term."""
    def step(model, batch):
        xb, yb, vb = batch
        z = model(xb)
        return alpha * soft_target_cross_entropy(z, vb, T) + (1 - alpha) * F.cross_entropy(z, yb)
    return step


alpha_equivalent = 0.9 / (0.9 + 0.1 * 8.0**2)
e3 = {"labels only": summary("labels only", small["labels only"]),
      "T = 8 with T^2, alpha 0.9": summary("T = 8 with T^2, alpha 0.9",
                                           [student_errors(s, step_fn=distillation_step(8.0, 0.9)) for s in SEEDS]),
      "T = 8 without T^2, alpha 0.9": summary("T = 8 without T^2, alpha 0.9",
                                              [student_errors(s, step_fn=no_t_squared(8.0)) for s in SEEDS]),
      "T = 8 with T^2, alpha'": summary(f"T = 8 with T^2, alpha' = {alpha_equivalent:.3f}",
                                        [student_errors(s, step_fn=distillation_step(8.0, alpha_equivalent)) for s in SEEDS])}
same = np.abs(e3["T = 8 without T^2, alpha 0.9"] - e3["T = 8 with T^2, alpha'"])
moved = np.abs(e3["T = 8 without T^2, alpha 0.9"] - e3["T = 8 with T^2, alpha 0.9"]).mean()
print(f"without T^2 vs with T^2 at alpha': largest per-seed difference {same.max()} errors; "
      f"vs with T^2 at alpha 0.9: {moved:.1f} on average")
assert same.max() <= 2, "dropping T^2 should be the same as the smaller alpha', seed by seed"
assert moved > 3 * max(same.mean(), 1), "and differ from the alpha = 0.9 student"

# %% [markdown]
# ## 4. Logit matching
#
# *Replace the soft term by the squared error between mean-centred logits (section 2) and train the student
# with it. Is it as good as distillation at $T = 2$?*
#
# **Reasoning.** Logit matching is distillation's limit at $T \to \infty$: it asks the student to
# reproduce every logit, including the very negative ones of the classes the teacher rules out. Hinton et
# al. point out that those are almost unconstrained by the teacher's own training (any very negative value
# gives the same near-zero probability), so they are largely noise, and a 32-unit student that spends its
# capacity on them learns less of what matters. At $T = 2$ they weigh almost nothing. Prediction: logit
# matching is clearly worse than distillation at $T = 2$. Whether it still beats the labels alone is open:
# with $\alpha = 0.9$ on the matching term the labels have little say. (At a high $T$ the $T^2$-scaled soft
# term has exactly this gradient, so the same $\alpha$ is the fair weight.)

# %%
def logit_matching(alpha: float = 0.9):
    def step(model, batch):
        xb, yb, vb = batch
        z = model(xb)
        centred = (z - z.mean(-1, keepdim=True)) - (vb - vb.mean(-1, keepdim=True))
        return alpha * (centred**2).sum(-1).mean() / (2 * z.shape[1]) + (1 - alpha) * F.cross_entropy(z, yb)
    return step


e4 = {"labels only": summary("labels only", small["labels only"]),
      "distilled, T = 2": summary("distilled, T = 2", small["distilled"]),
      "logit matching": summary("logit matching", [student_errors(s, step_fn=logit_matching()) for s in SEEDS])}
gap4 = e4["logit matching"] - e4["distilled, T = 2"]
print(f"logit matching minus distillation at T = 2, seed by seed: {gap4.tolist()}; against the labels only: "
      f"{(e4['logit matching'] - e4['labels only']).tolist()} (positive: more errors)")
assert gap4.min() > 5, "logit matching should be clearly worse than distillation at T = 2, on every seed"

# %% [markdown]
# ## 5. A temperature sweep
#
# *Distil at $T \in \{1, 2, 4, 8\}$ over the seeds of section 3. Which temperature is best here, and is the
# difference between the best two larger than the noise?*
#
# **Reasoning.** Even at $T = 1$ the teacher's outputs say more than the labels: a teacher trained with
# dropout is not fully sure of every training digit, and where it hesitates its probabilities show it
# (the line printed below: its mean top probability on the transfer set). Higher temperatures reveal the
# runner-up classes more, up to the point where the student spends its few units on the logits of classes
# that do not matter (exercise 4). Expect a best value at a low-to-middle temperature, $T = 8$ worse than
# the best, and neighbouring temperatures within the noise of three seeds: the paired difference between
# the best two, seed by seed, against its own spread, decides.

# %%
print(f"the teacher's mean top probability on the 100 transfer images at T = 1: {float(softmax_t(v100, 1.0).max(1).values.mean()):.3f}")
done = {2.0: small["distilled"], 8.0: e3["T = 8 with T^2, alpha 0.9"]}  # the same runs as in exercises 2 and 3
sweep = {T: summary(f"T = {T:g}", done[T] if T in done else
                    [student_errors(s, step_fn=distillation_step(T, 0.9)) for s in SEEDS]) for T in (1.0, 2.0, 4.0, 8.0)}
ranked = sorted(sweep, key=lambda T: sweep[T].mean())
best, second = ranked[0], ranked[1]
paired = sweep[second] - sweep[best]
se = paired.std(ddof=1) / np.sqrt(len(paired))
print(f"best T = {best:g}, then T = {second:g}: paired difference {paired.mean():.1f} +- {se:.1f} (standard error); "
      f"{'larger than' if paired.mean() > 2 * se else 'within'} twice its standard error")
assert best in (1.0, 2.0, 4.0), "a low-to-middle temperature should be best here"
assert sweep[8.0].mean() > sweep[best].mean(), "the highest temperature should not be the best"
