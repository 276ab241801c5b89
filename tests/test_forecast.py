"""Honest forecasting: a time-ordered split without leakage, baselines right on toy series, metrics, the LSTM."""

from __future__ import annotations

import math

import pytest
import torch

from karpa_lab import fit, warmup_cosine
from karpa_lab.data.synthetic import random_walk, seasonal_series
from karpa_lab.models.forecast import (
    LSTMForecaster,
    Scaler,
    TimeSplit,
    coverage,
    error_band,
    mae,
    mae_by_horizon,
    paired_mae_difference,
    persistence,
    rmse,
    seasonal_naive,
    windows,
)


def test_split_is_in_time_order_and_covers_everything():
    split = TimeSplit.by_fraction(1000, 0.7, 0.15)
    assert split.bounds("train") == (0, 700) and split.bounds("val") == (700, 850)
    assert split.bounds("test") == (850, 1000)
    with pytest.raises(ValueError):
        TimeSplit.by_fraction(100, 0.9, 0.2)
    with pytest.raises(ValueError):
        split.bounds("future")


def test_scaler_uses_the_training_part_only():
    y = torch.arange(100, dtype=torch.float32)
    split = TimeSplit.by_fraction(100)
    scaler = Scaler.fit(y[: split.train_end])
    changed = y.clone()
    changed[split.train_end:] = 1e6  # whatever the future holds...
    assert Scaler.fit(changed[: split.train_end]) == scaler  # ...the scaler does not see it
    assert scaler.mean == pytest.approx(34.5) and scaler.std == pytest.approx(float(y[:70].std()))
    torch.testing.assert_close(scaler.inverse(scaler.transform(y)), y)
    z = scaler.transform(y[:70])
    assert abs(float(z.mean())) < 1e-5 and float(z.std()) == pytest.approx(1.0)
    assert Scaler.fit(torch.ones(5)).std == 1.0  # a constant series does not divide by zero


def test_windows_never_leak_across_the_split():
    n, L, H = 200, 12, 5
    t = torch.arange(n, dtype=torch.float32)  # the series is its own time index
    split = TimeSplit.by_fraction(n)
    for part in ("train", "val", "test"):
        start, end = split.bounds(part)
        X, Y, origins = windows(t, L, H, start, end)
        assert X.shape == (len(origins), L) and Y.shape == (len(origins), H)
        assert Y.min() >= start and Y.max() < end  # every target inside its own part
        assert torch.equal(X[:, -1] + 1, Y[:, 0])  # inputs end just before the first target
        assert torch.equal(origins, Y[:, 0].long())
        assert (X.max(dim=1).values < Y[:, 0]).all()  # inputs from the past only
    X, Y, _ = windows(t, L, H, *split.bounds("train"))
    assert Y.max() < split.train_end and X.max() < split.train_end  # training never touches val or test
    _, _, origins = windows(t, L, H, *split.bounds("test"))
    assert origins[0] == split.val_end and origins[-1] == n - H  # every test forecast is made
    with pytest.raises(ValueError, match="no window"):
        windows(t, L, 50, 180, 200)
    with pytest.raises(ValueError, match="1-D"):
        windows(t[None], L, H, 0, n)


def test_persistence_and_seasonal_naive_on_toy_series():
    X = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]])
    assert persistence(X, 3).tolist() == [[6.0, 6.0, 6.0]]
    # period 4: steps 0..5 repeat the last period 3, 4, 5, 6, then 3, 4 again
    assert seasonal_naive(X, 6, 4).tolist() == [[3.0, 4.0, 5.0, 6.0, 3.0, 4.0]]
    with pytest.raises(ValueError, match="period"):
        seasonal_naive(X, 3, 7)
    # a pure season of period 8 is forecast exactly by seasonal naive, a constant by persistence
    season = torch.sin(2 * math.pi * torch.arange(100) / 8)
    Xs, Ys, _ = windows(season, 16, 8, 0, 100)
    assert mae(seasonal_naive(Xs, 8, 8), Ys) < 1e-6 and mae(persistence(Xs, 8), Ys) > 0.3
    Xc, Yc, _ = windows(torch.full((50,), 3.0), 4, 2, 0, 50)
    assert mae(persistence(Xc, 2), Yc) == 0.0


def test_metrics():
    pred, truth = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[2.0, 2.0], [3.0, 1.0]])
    assert mae(pred, truth) == pytest.approx(1.0)
    assert rmse(pred, truth) == pytest.approx(math.sqrt(10 / 4))
    assert mae_by_horizon(pred, truth).tolist() == [0.5, 1.5]
    with pytest.raises(ValueError, match="same shape"):
        mae(pred, truth[:, :1])


def test_error_band_and_coverage():
    g = torch.Generator().manual_seed(0)
    truth = torch.zeros(4000, 3)
    pred = torch.randn(4000, 3, generator=g) * torch.tensor([1.0, 2.0, 4.0])
    band = error_band(pred[:2000], truth[:2000], level=0.9)
    torch.testing.assert_close(band, 1.645 * torch.tensor([1.0, 2.0, 4.0]), atol=0.15, rtol=0)  # normal 90%
    assert coverage(pred[2000:], truth[2000:], band) == pytest.approx(0.9, abs=0.02)


def test_paired_difference_sees_a_real_gap_and_not_a_fake_one():
    g = torch.Generator().manual_seed(0)
    truth = torch.zeros(600, 4)
    a = torch.randn(600, 4, generator=g)
    b = torch.randn(600, 4, generator=g)
    mean, se, n = paired_mae_difference(a, b, truth, stride=4)
    assert n == 150 and abs(mean) < 2.5 * se  # two equal forecasters: no significant difference
    mean, se, _ = paired_mae_difference(0.5 * a, b, truth, stride=4)
    assert mean + 2 * se < 0  # a with half the error is found better


def test_forecaster_starts_as_persistence_and_checks_shapes():
    model = LSTMForecaster(horizon=6, hidden_size=8)
    X = torch.randn(5, 20)
    torch.testing.assert_close(model(X), persistence(X, 6))
    with pytest.raises(ValueError, match=r"\(batch, lookback\).*\(5, 20, 1\)"):
        model(X[..., None])


def test_forecaster_learns_a_season_and_beats_the_baselines():
    y = seasonal_series(800, period=12, trend=0.02, noise=0.1, seed=0)
    split = TimeSplit.by_fraction(len(y))
    scaler = Scaler.fit(y[: split.train_end])
    z = scaler.transform(y)
    X, Y, _ = windows(z, 24, 6, *split.bounds("train"))
    torch.manual_seed(0)
    model = LSTMForecaster(horizon=6, hidden_size=16)
    g = torch.Generator().manual_seed(0)

    def batch():
        i = torch.randint(len(X), (32,), generator=g)
        return X[i], Y[i]

    fit(model, batch, steps=300, lr=2e-2, schedule=warmup_cosine(10, 300), clip_grad=1.0,
        verbose=False)
    Xt, Yt, _ = windows(y, 24, 6, *split.bounds("test"))
    with torch.no_grad():
        pred = scaler.inverse(model(scaler.transform(Xt)))
    lstm_mae = mae(pred, Yt)
    assert lstm_mae < 0.7 * mae(seasonal_naive(Xt, 6, 12), Yt)  # measured 0.11 against 0.25
    assert lstm_mae < 0.3 * mae(persistence(Xt, 6), Yt)


def test_random_walk_is_what_persistence_is_best_for():
    y = random_walk(3000, seed=1)
    X, Y, _ = windows(y, 10, 5, 0, 3000)
    drift = X[:, -1:] + 0.5 * (X[:, -1:] - X[:, -2:-1])  # a "momentum" forecast
    assert mae(persistence(X, 5), Y) < mae(drift.expand(-1, 5), Y)
