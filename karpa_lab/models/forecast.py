r"""Honest time-series forecasting: a time-ordered split, a scaler fitted on the past, windows that never
leak the future, an LSTM forecaster, the baselines it must beat, and the errors that say whether it did.

A series y_0..y_{N-1} is cut in time order into train | val | test (never shuffled: the test part is
the future). A forecast from origin t (the first unseen step) reads the last L values and predicts
the next H:

    x = (y_{t-L}, ..., y_{t-1})          (L,)    the look-back window: known at time t
    y = (y_t, ..., y_{t+H-1})            (H,)    the targets: all inside one split

Baselines, for every horizon step h = 0..H-1:

    persistence      yhat_{t+h} = y_{t-1}                             ("tomorrow = today")
    seasonal naive   yhat_{t+h} = y_{t+h-P k},  k = ceil((h+1)/P)      (the same time one period ago)

Errors: MAE = mean |yhat - y|, RMSE = sqrt(mean (yhat - y)^2), on the original scale, on the test part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TimeSplit:
    """Boundaries of a time-ordered split.

    Train is ``[0, train_end)``, val ``[train_end, val_end)``, test ``[val_end, n)``.
    """

    n: int
    train_end: int
    val_end: int

    @classmethod
    def by_fraction(cls, n: int, train: float = 0.7, val: float = 0.15) -> TimeSplit:
        """The first ``train`` of the series to train, the next ``val`` to validate, the rest to test."""
        if not (0 < train and 0 < val and train + val < 1):
            raise ValueError(f"need train > 0, val > 0 and train + val < 1, got {train}, {val}")
        return cls(n, int(n * train), int(n * (train + val)))

    def bounds(self, part: str) -> tuple[int, int]:
        """``(start, end)`` of ``"train"``, ``"val"`` or ``"test"``."""
        table = {"train": (0, self.train_end), "val": (self.train_end, self.val_end), "test": (self.val_end, self.n)}
        if part not in table:
            raise ValueError(f"part must be 'train', 'val' or 'test', got {part!r}")
        return table[part]


@dataclass(frozen=True)
class Scaler:
    r"""Standardisation z = (y - mean) / std with ``mean`` and ``std`` measured on the training part only.

    Fitting it on the whole series would leak the future's level and spread into every training input.
    """

    mean: float
    std: float

    @classmethod
    def fit(cls, train: torch.Tensor) -> Scaler:
        if train.dim() != 1 or len(train) < 2:
            raise ValueError(f"Scaler.fit needs a 1-D training series of length >= 2, got {tuple(train.shape)}")
        std = float(train.std())
        return cls(float(train.mean()), std if std > 0 else 1.0)

    def transform(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.mean) / self.std

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std + self.mean


def windows(
    series: torch.Tensor, lookback: int, horizon: int, start: int, end: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every forecast whose targets lie in ``[start, end)``: inputs X (N, L), targets Y (N, H), origins (N,).

    Origin ``t`` takes ``X = series[t-L:t]`` (the past, which may reach back before ``start``: at time t
    it is known) and ``Y = series[t:t+H]`` with ``start <= t`` and ``t + H <= end``, so no target of one
    split is ever an input or target of an earlier one.
    """
    if series.dim() != 1:
        raise ValueError(f"windows: series must be 1-D (time,), got {tuple(series.shape)}")
    if lookback < 1 or horizon < 1 or not 0 <= start <= end <= len(series):
        raise ValueError(f"need lookback, horizon >= 1 and 0 <= start <= end <= {len(series)}; "
                         f"got {lookback}, {horizon}, {start}, {end}")
    first, last = max(start, lookback), end - horizon
    if last < first:
        raise ValueError(f"no window of lookback {lookback} and horizon {horizon} fits targets in [{start}, {end})")
    origins = torch.arange(first, last + 1)
    X = torch.stack([series[t - lookback : t] for t in origins.tolist()])
    Y = torch.stack([series[t : t + horizon] for t in origins.tolist()])
    return X, Y, origins


class LSTMForecaster(nn.Module):
    r"""Direct multi-step forecaster: an LSTM reads the window, a linear head emits all H steps at once.

    Inputs are made level-free, x'_s = x_s - x_{L-1}, and the head predicts the change from the last
    value, yhat = x_{L-1} + W h_L + b. A trending series then never asks the LSTM to produce a level it
    has not seen in training; with the head at zero (its initialisation) the model *is* persistence,
    and training learns what to add to it. X (B, L) -> (B, H).
    """

    def __init__(self, horizon: int, hidden_size: int = 32, num_layers: int = 1):
        super().__init__()
        self.horizon = horizon
        self.lstm = nn.LSTM(1, hidden_size, num_layers, batch_first=True)
        self.head = nn.Linear(hidden_size, horizon)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] < 1:
            raise ValueError(f"LSTMForecaster: input must be windows (batch, lookback), got {tuple(x.shape)}")
        last = x[:, -1:]
        out, _ = self.lstm((x - last).unsqueeze(-1))
        return last + self.head(out[:, -1])


def persistence(X: torch.Tensor, horizon: int) -> torch.Tensor:
    """Tomorrow = today: the last value of each window repeated, X (N, L) -> (N, H)."""
    return X[:, -1:].expand(-1, horizon).clone()


def seasonal_naive(X: torch.Tensor, horizon: int, period: int) -> torch.Tensor:
    """The value one period earlier, X (N, L) -> (N, H): step h takes ``X[:, L - P + (h mod P)]`` (needs L >= P)."""
    if X.shape[1] < period:
        raise ValueError(
            f"seasonal_naive needs windows at least one period long: lookback {X.shape[1]} < period {period}"
        )
    idx = X.shape[1] - period + torch.arange(horizon) % period
    return X[:, idx]


def mae(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Mean absolute error over every forecast and horizon step."""
    _same_shape(pred, truth)
    return float((pred - truth).abs().mean())


def rmse(pred: torch.Tensor, truth: torch.Tensor) -> float:
    """Root mean squared error over every forecast and horizon step."""
    _same_shape(pred, truth)
    return math.sqrt(float((pred - truth).pow(2).mean()))


def mae_by_horizon(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """MAE of each horizon step, (N, H) -> (H,): errors grow the further ahead one looks."""
    _same_shape(pred, truth)
    return (pred - truth).abs().mean(dim=0)


def error_band(pred: torch.Tensor, truth: torch.Tensor, level: float = 0.9) -> torch.Tensor:
    """Half-width of an empirical ``level`` interval per horizon step: the ``level`` quantile of |error|, (H,).

    Measure it on the validation part; then ``pred +- band`` should hold the truth about ``level`` of
    the time on the test part (:func:`coverage`).
    """
    _same_shape(pred, truth)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return torch.quantile((pred - truth).abs(), level, dim=0)


def coverage(pred: torch.Tensor, truth: torch.Tensor, band: torch.Tensor) -> float:
    """Share of (forecast, step) pairs with |pred - truth| <= band of that step."""
    _same_shape(pred, truth)
    return float(((pred - truth).abs() <= band).float().mean())


def paired_mae_difference(
    pred_a: torch.Tensor, pred_b: torch.Tensor, truth: torch.Tensor, stride: int
) -> tuple[float, float, int]:
    r"""Is forecaster a better than b beyond noise? Mean and standard error of the per-forecast difference

        d_n = MAE_n(a) - MAE_n(b)     (MAE_n: the mean |error| over the H steps of forecast n)

    over every ``stride``-th forecast. With ``stride >= H`` the kept forecasts have disjoint targets,
    so the d_n are close to independent and se = std(d) / sqrt(n) is honest (overlapping windows
    share errors and would make it too small). Returns ``(mean, se, n)``; a < b is shown only when
    ``mean + 2 se < 0``.
    """
    _same_shape(pred_a, truth)
    _same_shape(pred_b, truth)
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    d = ((pred_a - truth).abs().mean(dim=1) - (pred_b - truth).abs().mean(dim=1))[::stride].double()
    if len(d) < 2:
        raise ValueError(f"need at least 2 forecasts after taking every {stride}-th, got {len(d)}")
    return float(d.mean()), float(d.std() / math.sqrt(len(d))), len(d)


def _same_shape(pred: torch.Tensor, truth: torch.Tensor) -> None:
    if pred.shape != truth.shape:
        raise ValueError(f"forecast {tuple(pred.shape)} and truth {tuple(truth.shape)} must have the same shape")
