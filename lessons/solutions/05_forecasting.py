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
# # 05 · Sequence forecasting, honestly: worked solutions
#
# One section per exercise of [lesson 05](../05_forecasting.ipynb), in its order and with its wording.
# Each answer gives the reasoning first, then runs it and asserts what the reasoning predicted. Every
# model is the lesson's `LSTMForecaster`, trained as in its section 3 (600 steps of 64 random training
# windows, AdamW 1e-2 with warm-up and cosine, clipping 1.0) on the lesson's split.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from karpa_lab import fit, seed_everything, warmup_cosine
from karpa_lab.data.synthetic import random_walk, seasonal_series
from karpa_lab.models.forecast import (
    LSTMForecaster,
    Scaler,
    TimeSplit,
    mae,
    mae_by_horizon,
    paired_mae_difference,
    persistence,
    seasonal_naive,
    windows,
)

torch.set_num_threads(1)
n, period, lookback, horizon, steps = 3000, 24, 48, 24, 600
split = TimeSplit.by_fraction(n, train=0.7, val=0.15)
walk = random_walk(n, seed=0)


def train_on(X_train, Y_train, out=horizon, seed=0):
    """Section 3's training of an LSTMForecaster on given (already scaled) training windows."""
    g = torch.Generator().manual_seed(seed)

    def batch():
        i = torch.randint(len(X_train), (64,), generator=g)
        return X_train[i], Y_train[i]

    seed_everything(seed)
    model = LSTMForecaster(out, hidden_size=32)
    fit(model, batch, steps=steps, lr=1e-2, schedule=warmup_cosine(steps // 20, steps), clip_grad=1.0,
        device="cpu", verbose=False)
    return model.eval()


def honest(series, out=horizon):
    """The lesson's protocol: scaler from the training part, training windows only; returns a forecaster."""
    scaler = Scaler.fit(series[: split.train_end])
    X, Y, _ = windows(scaler.transform(series), lookback, out, *split.bounds("train"))
    model = train_on(X, Y, out)

    def predict(X):
        with torch.no_grad():
            return scaler.inverse(model(scaler.transform(X)))
    return predict


def test_windows(series):
    return windows(series, lookback, horizon, *split.bounds("test"))[:2]


# %% [markdown]
# ## 1. Leak on purpose
#
# *On the random walk, scale each window by the minimum and maximum of its inputs *and its targets*
# together (a mistake seen in tutorials), train on such windows and de-scale the forecasts with the same
# numbers. Where does the "skill" come from? Is it significant with 18 independent forecasts, and what
# would stride 1 (overlapping forecasts) wrongly make of it? Then try the other classic mistakes ...*
#
# **Where the skill comes from.** After the scaling, the inputs and targets of a window together span
# exactly $[0, 1]$. If the scaled inputs stay far from 1, the window's maximum must lie in the targets:
# the walk goes up; far from 0, it goes down; and the de-scaling, with the targets' own minimum and
# maximum, puts the forecast's range in the right place. The model reads the future off the scaler.
# The model has to learn to decode this, and the lesson's small level-free model, in 600 steps, learns
# only part of it. **Prediction:** a "gain" over persistence that is real (it comes from the leak) but
# modest next to the errors of a random walk 24 steps ahead, which are several units. With 18
# independent forecasts the standard error of the mean difference is large, so it should *not* be
# significant ($\bar d + 2\,\mathrm{se} < 0$ fails). Stride 1 uses all the forecasts, about 24 times as
# many, but they share up to 23 of 24 targets with their neighbours, so they are not independent: the
# standard error it computes is too small by a factor of up to $\sqrt{24} \approx 5$, and it would wrongly
# call the leak's gain significant: a leak "validated" by a test that counts the same errors many times.

# %%
X, Y = test_windows(walk)
X_tr, Y_tr, _ = windows(walk, lookback, horizon, *split.bounds("train"))


def minmax_with_targets(X, Y):
    lo = torch.minimum(X.min(1, keepdim=True).values, Y.min(1, keepdim=True).values)
    hi = torch.maximum(X.max(1, keepdim=True).values, Y.max(1, keepdim=True).values)
    return lo, hi - lo


lo, span = minmax_with_targets(X_tr, Y_tr)
leaky_model = train_on((X_tr - lo) / span, (Y_tr - lo) / span)
lo, span = minmax_with_targets(X, Y)
with torch.no_grad():
    leaky_pred = leaky_model((X - lo) / span) * span + lo
naive = persistence(X, horizon)
d18 = paired_mae_difference(leaky_pred, naive, Y, stride=horizon)
d1 = paired_mae_difference(leaky_pred, naive, Y, stride=1)
print(f"MAE on the test part: leaky LSTM {mae(leaky_pred, Y):.3f}, persistence {mae(naive, Y):.3f}")
for name, (m, se, k) in (("stride 24", d18), ("stride 1", d1)):
    print(f"{name:>9}: leaky - persistence {m:+.3f} +- {se:.3f} (se, {k} forecasts): "
          f"{'significant' if m + 2 * se < 0 else 'not significant'}")
assert d18[2] == 18 and d18[0] < 0 and not d18[0] + 2 * d18[1] < 0, "a gain, not significant with 18 forecasts"
assert d1[0] + 2 * d1[1] < 0 and d1[1] < d18[1] / 2, "stride 1 calls it significant, with a standard error far too small"

# %% [markdown]
# **The other two mistakes.** A scaler fitted on the whole series gives the model the future's mean and
# spread; windows shuffled before the split put test windows between training windows that share most of
# their targets. The lesson's model is level-free (it forecasts the change from the last input), so the
# mean leaks nothing it uses, and the spread only rescales its inputs. On a random walk, neighbouring
# windows share a path, but the path is noise: a 32-unit model that memorised neighbours' targets
# would gain a little, at most. **Prediction: no significant gain over persistence from either** (the
# honest check, $\bar d + 2\,\mathrm{se} < 0$, fails), which is no reason to make them: with a model
# that uses the level, or a series that has structure, both leak.

# %%
whole = Scaler.fit(walk)
z = whole.transform(walk)
Xz, Yz, _ = windows(z, lookback, horizon, *split.bounds("train"))
whole_model = train_on(Xz, Yz)
with torch.no_grad():
    whole_pred = whole.inverse(whole_model(whole.transform(X)))
d_whole = paired_mae_difference(whole_pred, naive, Y, stride=horizon)

all_X, all_Y, _ = windows(walk, lookback, horizon, 0, n)
order = torch.randperm(len(all_X), generator=torch.Generator().manual_seed(0))
cut = int(0.85 * len(order))
train_idx, test_idx = order[:cut], order[cut:]
scaler = Scaler.fit(walk[: split.train_end])
shuffled_model = train_on(scaler.transform(all_X[train_idx]), scaler.transform(all_Y[train_idx]))
with torch.no_grad():
    shuffled_pred = scaler.inverse(shuffled_model(scaler.transform(all_X[test_idx])))
# the shuffled test windows are in random order: take 18 spread-out ones, as for the honest test part
spread = test_idx.argsort()[:: max(1, len(test_idx) // 18)][:18]
d_shuf = paired_mae_difference(shuffled_pred[spread], persistence(all_X[test_idx][spread], horizon),
                               all_Y[test_idx][spread], stride=1)
for name, (m, se, k) in (("scaler on the whole series", d_whole), ("windows shuffled before the split", d_shuf)):
    print(f"{name:<34} LSTM - persistence {m:+.3f} +- {se:.3f} (se, {k} forecasts): "
          f"{'significant' if m + 2 * se < 0 else 'not significant'}")
assert not d_whole[0] + 2 * d_whole[1] < 0 and not d_shuf[0] + 2 * d_shuf[1] < 0

# %% [markdown]
# ## 2. Recursive instead of direct
#
# *Train `LSTMForecaster(horizon=1)` and forecast 24 steps by feeding each prediction back as the newest
# input. Plot its MAE against the horizon next to the direct model's. Where do the errors compound?*
#
# On the seasonal series. The one-step model is trained on true inputs only; fed back, its own forecasts
# become inputs, each with its error, and the next step's error adds to the errors it inherits, in
# inputs it was never trained on (exposure bias). **Prediction:** at one step ahead the two are about
# equal (the recursive model is *trained* for that step); the recursive error grows with the horizon
# faster than the direct model's, whose every step is trained against the truth; the gap opens over the
# steps ahead, and is largest at the far end.

# %%
seasonal = seasonal_series(n, period=period, trend=0.02, noise=0.2, seed=0)
Xs, Ys = test_windows(seasonal)
direct = honest(seasonal)
one_step = honest(seasonal, out=1)
window, recursive = Xs.clone(), []
for _ in range(horizon):
    nxt = one_step(window)  # (N, 1)
    recursive.append(nxt)
    window = torch.cat([window[:, 1:], nxt], dim=1)
recursive = torch.cat(recursive, dim=1)
direct_pred = direct(Xs)
by_h = {"direct": mae_by_horizon(direct_pred, Ys), "recursive": mae_by_horizon(recursive, Ys)}
fig, ax = plt.subplots(figsize=(6, 3.2))
for name, e in by_h.items():
    ax.plot(np.arange(1, horizon + 1), e, "o-", ms=3, label=name)
ax.set(xlabel="steps ahead", ylabel="test MAE", title="seasonal series: direct against recursive")
ax.legend()
plt.show()
for h in (1, 6, 12, 24):
    print(f"{h:>2} steps ahead: direct {by_h['direct'][h - 1]:.3f}, recursive {by_h['recursive'][h - 1]:.3f}")
ratio = by_h["recursive"] / by_h["direct"]
print(f"recursive / direct: {ratio[0]:.2f} at 1 step, {ratio[-1]:.2f} at 24")
assert abs(ratio[0] - 1) < 0.2 and ratio[-1] > ratio[0] + 0.1

# %% [markdown]
# ## 3. A fairer seasonal naive
#
# *Add the average change over one period, measured on the training part only, to the seasonal-naive
# forecast (seasonal naive with drift). How close does it come to the LSTM? What is left for the LSTM to
# win on?*
#
# Seasonal naive copies the value one period back, so it misses one period of trend, $0.02 \cdot 24 =
# 0.48$: adding the mean of $y_t - y_{t-P}$ over the training part (the drift per period) removes that
# bias. What remains is noise: its error is $\varepsilon_{t+h} - \varepsilon_{t+h-P}$, the difference of
# two independent noises, with an MAE of $\sqrt 2 \cdot 0.2 \sqrt{2/\pi} \approx 0.226$, against the noise
# floor $0.2\sqrt{2/\pi} \approx 0.160$ of a forecaster that knows the signal exactly. **Prediction:** with
# drift, seasonal naive comes within about 0.23 of MAE, far closer to the LSTM than without, but the LSTM
# still wins: what is left for it is the noise in the single past value that seasonal naive copies. The
# LSTM averages many past points (a whole window of 48) into its estimate of the signal, so its own error
# is close to the floor.

# %%
train_part = seasonal[: split.train_end]
drift = float((train_part[period:] - train_part[:-period]).mean())
with_drift = seasonal_naive(Xs, horizon, period) + drift * torch.ceil((torch.arange(horizon) + 1) / period)
maes = {"seasonal naive": mae(seasonal_naive(Xs, horizon, period), Ys), "seasonal naive + drift": mae(with_drift, Ys),
        "LSTM": mae(direct_pred, Ys)}
print(f"drift per period on the training part: {drift:.3f} (the truth: {0.02 * period:.3f})")
for name, value in maes.items():
    print(f"{name:<24} MAE {value:.3f}")
print(f"theory: seasonal naive + drift {math.sqrt(2) * 0.2 * math.sqrt(2 / math.pi):.3f}, the noise floor "
      f"{0.2 * math.sqrt(2 / math.pi):.3f}")
assert abs(maes["seasonal naive + drift"] - math.sqrt(2) * 0.2 * math.sqrt(2 / math.pi)) < 0.03
assert maes["LSTM"] < maes["seasonal naive + drift"] < 0.6 * maes["seasonal naive"]

# %% [markdown]
# ## 4. Predict, then run
#
# *Multiply the noise of the seasonal series by 5 (`noise=1.0`). Which of the three MAEs changes the
# most, and does the LSTM still beat both baselines by the asserted margin?*
#
# **Prediction.** Every error has a noise part that grows: seasonal naive's is the difference of two noises,
# $\sqrt 2\,\sigma$, so its MAE grows the most, by about $\sqrt 2 \cdot 0.8 \sqrt{2/\pi} \approx 0.9$ (less, once
# combined with the trend it misses); persistence's error is dominated by the season it ignores, and
# noise adds to it in quadrature, less; the LSTM's MAE cannot fall below the new floor $1.0\sqrt{2/\pi}
# \approx 0.80$. **The margin fails:** the lesson asserts the LSTM's MAE below 0.6 of the better
# baseline's, but with the LSTM at 0.8 or more, the better baseline would need an MAE above 1.33.
# Seasonal naive's error is a normal error of spread $\sqrt 2\,\sigma$ shifted by the 0.48 of trend it
# misses, whose mean absolute value is about 1.2 by the same arithmetic: below 1.33. The LSTM should
# still beat both, by less.

# %%
noisy = seasonal_series(n, period=period, trend=0.02, noise=1.0, seed=0)
Xn, Yn = test_windows(noisy)
before = {"LSTM": mae(direct_pred, Ys), "persistence": mae(persistence(Xs, horizon), Ys),
          "seasonal naive": mae(seasonal_naive(Xs, horizon, period), Ys)}
after = {"LSTM": mae(honest(noisy)(Xn), Yn), "persistence": mae(persistence(Xn, horizon), Yn),
         "seasonal naive": mae(seasonal_naive(Xn, horizon, period), Yn)}
for name in before:
    print(f"{name:<15} MAE noise 0.2: {before[name]:.3f}, noise 1.0: {after[name]:.3f} ({after[name] - before[name]:+.3f})")
ratio_noisy = after["LSTM"] / min(after["persistence"], after["seasonal naive"])
print(f"LSTM / better baseline: {ratio_noisy:.2f} (the lesson's check: below 0.6)")
change = {k: after[k] - before[k] for k in before}
assert max(change, key=change.get) == "seasonal naive"
assert after["LSTM"] > 0.95 * math.sqrt(2 / math.pi), "no forecaster beats the noise floor"
assert 0.6 < ratio_noisy < 1.0, "still better than both, but not by the lesson's margin"

# %% [markdown]
# ## 5. A walk with drift
#
# *Use `random_walk(n) + 0.1 * torch.arange(n)`. Is persistence still optimal? Write the best forecast
# down, then check whether the LSTM finds it.*
#
# $y_t = y_{t-1} + 0.1 + \varepsilon_t$: the increments now have mean 0.1, so $\mathbb{E}[y_{t+h} \mid
# y_{<t}] = y_{t-1} + 0.1\,(h + 1)$. **Persistence is no longer optimal**: it is biased by $0.1(h+1)$, up
# to 2.4 at 24 steps ahead, against a noise of $\sqrt{h+1}$ there. The best forecast is persistence plus
# the drift. The LSTM forecasts the change from the last value, so what it must learn is a constant
# ramp, the easiest thing a read-out can learn (its bias). **Prediction:** the LSTM finds the ramp: its
# mean forecast change grows by about 0.1 per step ahead. But how much does knowing the drift buy? The
# bias $b = 0.1(h+1)$ is small against the noise $\sigma = \sqrt{h+1}$ of the walk (at most $0.1\sqrt{24}
# \approx 0.5\,\sigma$), and for a Gaussian error the MAE grows with the bias only to second order, by
# about $\sqrt{2/\pi}\, b^2 / (2\sigma)$: a fraction of a percent here. So the best forecast beats
# persistence by very little, too little to show with 18 independent forecasts: the paired test will find
# the LSTM neither better than persistence nor worse than the best forecast. The test is too weak to see
# a drift this small; the learned ramp is what shows that the LSTM found it.

# %%
drifting = random_walk(n, seed=0) + 0.1 * torch.arange(n)
Xd, Yd = test_windows(drifting)
lstm_d = honest(drifting)(Xd)
best_d = persistence(Xd, horizon) + 0.1 * (torch.arange(horizon) + 1)
vs_persistence = paired_mae_difference(lstm_d, persistence(Xd, horizon), Yd, stride=horizon)
vs_best = paired_mae_difference(lstm_d, best_d, Yd, stride=horizon)
print(f"MAE: LSTM {mae(lstm_d, Yd):.3f}, persistence {mae(persistence(Xd, horizon), Yd):.3f}, "
      f"persistence + drift {mae(best_d, Yd):.3f}")
for name, (m, se, k) in (("persistence", vs_persistence), ("persistence + drift", vs_best)):
    print(f"LSTM - {name}: {m:+.3f} +- {se:.3f} (se, {k} forecasts)")
learned = (lstm_d - persistence(Xd, horizon)).mean(0)
print(f"the LSTM's mean forecast change at 1, 12 and 24 steps ahead: {learned[0]:.2f}, {learned[11]:.2f}, "
      f"{learned[23]:.2f} (the drift says 0.1, 1.2, 2.4)")
slope = float(learned[-1] - learned[0]) / (horizon - 1)
print(f"slope of the LSTM's mean forecast change: {slope:.3f} per step ahead")
assert mae(best_d, Yd) < mae(persistence(Xd, horizon), Yd), "persistence is no longer optimal"
assert 0.05 < slope < 0.2, "the LSTM learned the ramp"
assert not vs_persistence[0] + 2 * vs_persistence[1] < 0 and abs(vs_best[0]) < 2 * vs_best[1] + 0.02, \
    "and the paired test, with 18 forecasts, cannot tell the three apart"
