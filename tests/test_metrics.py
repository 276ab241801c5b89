"""Generator-quality metrics (karpa_lab.metrics): the digits classifier, coverage, confidence, Fréchet distance."""

from __future__ import annotations

import pytest
import torch

from karpa_lab.data import GaussianMixture2D, load_digits_splits
from karpa_lab.metrics import (
    class_counts,
    class_coverage,
    classify,
    digit_features,
    digit_quality,
    digits_classifier,
    frechet_distance,
    mean_confidence,
    mode_coverage,
)


# ------------------------------------------------------------------------------------------ Fréchet distance
def _frechet_scipy(a: torch.Tensor, b: torch.Tensor) -> float:
    linalg = pytest.importorskip("scipy.linalg")
    a, b = a.double().numpy(), b.double().numpy()
    import numpy as np

    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(s_a @ s_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a + s_b - 2 * root))


@pytest.mark.parametrize("n,m,f", [(50, 80, 3), (200, 150, 16), (40, 40, 1)])
def test_frechet_distance_equals_the_scipy_formula(n, m, f):
    g = torch.Generator().manual_seed(n + f)
    a = torch.randn(n, f, generator=g, dtype=torch.float64) @ torch.randn(f, f, generator=g, dtype=torch.float64)
    b = 0.5 + 2 * torch.randn(m, f, generator=g, dtype=torch.float64)
    assert frechet_distance(a, b) == pytest.approx(_frechet_scipy(a, b), rel=1e-6, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(frechet_distance(b, a), rel=1e-8)


def test_frechet_distance_zero_for_same_set_and_mean_shift_squared():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    assert frechet_distance(x, x) < 1e-8
    shift = torch.arange(8.0) / 4
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift.pow(2).sum()), rel=1e-6)
    # a collapsed copy (no variety, right mean) is far: the covariance term counts
    collapsed = x.mean(0, keepdim=True).repeat(300, 1) + 1e-3 * torch.randn(300, 8)
    assert frechet_distance(x, collapsed) > 0.5 * float(torch.cov(x.T).trace())


def test_frechet_distance_checks_shapes():
    with pytest.raises(ValueError, match=r"same F, got \(4, 3\) and \(5, 2\)"):
        frechet_distance(torch.zeros(4, 3), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))


# ------------------------------------------------------------------------------------------ coverage, confidence
def test_coverage_counts_and_confidence_on_hand_made_probabilities():
    probs = torch.full((100, 10), 0.01)
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 19 + [3])
    probs[torch.arange(100), labels] = 0.91
    assert class_counts(probs) == [50, 30, 19, 1, 0, 0, 0, 0, 0, 0]
    assert class_coverage(probs) == 3  # class 3 has 1 % of the samples, under the 2 % floor
    assert class_coverage(probs, min_share=0.01) == 4
    assert mean_confidence(probs) == pytest.approx(0.91)


def test_mode_coverage_on_the_ring():
    ring = GaussianMixture2D.ring()
    g = torch.Generator().manual_seed(0)
    full = mode_coverage(ring, ring.sample(2000, generator=g))
    assert (full["modes"], full["of"]) == (8, 8) and full["quality"] > 0.97
    one_mode = ring.centers[3] + ring.std * torch.randn(1000, 2, generator=g)
    assert mode_coverage(ring, one_mode)["modes"] == 1
    mostly_one = torch.cat([one_mode, ring.centers.repeat(5, 1)])  # 5 points on every mode: under 1 % each
    assert mode_coverage(ring, mostly_one)["modes"] == 1
    assert mode_coverage(ring, mostly_one, min_share=0.0)["modes"] == 8
    assert mode_coverage(ring, torch.zeros(100, 2))["modes"] == 0


# ------------------------------------------------------------------------------------------ the classifier
def test_digits_classifier_is_accurate_cached_and_leaves_the_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    model = digits_classifier(8)
    assert torch.equal(torch.rand(3), expected)
    assert digits_classifier(8) is model
    d = load_digits_splits(size=8)
    probs = classify(d.x_test)
    assert (probs.argmax(1) == d.y_test).float().mean() > 0.93
    assert probs.shape == (len(d.y_test), 10) and torch.allclose(probs.sum(1), torch.ones(len(d.y_test)))
    assert digit_features(d.x_test).shape == (len(d.y_test), 64)
    torch.testing.assert_close(classify(d.x_test.flatten(1)), probs)


def test_confidence_separates_digits_from_noise():
    d = load_digits_splits(size=8)
    real = digit_quality(d.x_test)
    noise = digit_quality(torch.rand(500, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert real["coverage"] == 10 and real["confidence"] > 0.85
    assert noise["confidence"] < 0.4
    assert real["frechet"] < 0.05 * noise["frechet"]
    one_class = d.x_train[d.y_train == 7]
    collapsed = digit_quality(one_class)
    assert collapsed["coverage"] == 1 and collapsed["confidence"] > 0.85
    assert collapsed["frechet"] > 20 * real["frechet"]  # right-looking digits, but no variety


def test_16x16_digits_are_routed_to_their_own_classifier():
    d = load_digits_splits(size=16)
    probs = classify(d.x_test)
    assert (probs.argmax(1) == d.y_test).float().mean() > 0.93
    assert digits_classifier(16).size == 16


def test_classifier_inputs_are_checked():
    with pytest.raises(ValueError, match=r"8x8 or 16x16.*\(3, 1, 5, 5\)"):
        classify(torch.zeros(3, 1, 5, 5))
    with pytest.raises(ValueError, match=r"\(batch, 1, 8, 8\) or \(batch, 64\), got \(2, 65\)"):
        digits_classifier(8)(torch.zeros(2, 65))
