r"""How good is a generator? Numbers instead of eyeballing: a digits classifier judges generated digits.

- :func:`digits_classifier` trains (once per process and image size, a few seconds) a small MLP on the
  digits train split: pixels (B, s*s) -> 128 -> ReLU -> 64 -> ReLU (the *features*, (B, 64)) -> 10 logits,
  taught to be unsure on non-digits so that its confidence is a quality score.
- :func:`class_coverage`: how many of the 10 classes the generated digits fall into (a collapsed
  generator draws one or two digits over and over: 模式崩溃, mode collapse).
- :func:`mean_confidence`: the classifier's mean max-probability, high when samples look like *some* digit.
- :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two sets of features
  (the idea of FID, Heusel et al. 2017, with this small classifier instead of Inception):

      d^2 = ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1^{1/2} S_2 S_1^{1/2})^{1/2})

  with means mu (F,) and covariances S (F, F). It is 0 for identical statistics and grows both when
  samples are unlike real digits (the means move) and when they lack variety (the covariance shrinks).
- :func:`mode_coverage`: the 2D analogue on a :class:`~karpa_lab.data.GaussianMixture2D`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from karpa_lab.data.digits import load_digits_splits
from karpa_lab.data.synthetic import GaussianMixture2D

N_CLASSES = 10
_CLASSIFIERS: dict[int, DigitsClassifier] = {}


class DigitsClassifier(nn.Module):
    """An MLP on ``size`` x ``size`` digits: (B, 1, s, s) or (B, s*s) in [0, 1] -> logits (B, 10)."""

    def __init__(self, size: int = 8, hidden: int = 128, features: int = 64):
        super().__init__()
        self.size = size
        self.body = nn.Sequential(nn.Linear(size * size, hidden), nn.ReLU(), nn.Linear(hidden, features), nn.ReLU())
        self.head = nn.Linear(features, N_CLASSES)

    def _flat(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1) if x.dim() > 2 else x
        if x.dim() != 2 or x.shape[1] != self.size * self.size:
            raise ValueError(
                f"DigitsClassifier(size={self.size}): input must be (batch, 1, {self.size}, {self.size}) or "
                f"(batch, {self.size * self.size}), got {tuple(x.shape)}"
            )
        return x.float()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate layer (B, 64): the space where Fréchet distances are measured."""
        return self.body(self._flat(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _classifier_step(model: DigitsClassifier, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on real digits, plus two terms that make the classifier's confidence mean something:
    blends of two digits (mixup, Zhang et al. 2018) get blended labels, and non-digits (uniform noise of
    random brightness, flat grey) get the uniform distribution as target (outlier exposure, Hendrycks et
    al. 2019). Without them an MLP is confidently "sure" about pure noise."""
    x, y = batch
    x = x.flatten(1)
    n, pixels = x.shape
    k = n // 4
    lam = 0.25 + 0.5 * torch.rand(k, 1)
    partner = torch.randperm(n)[:k]
    blend = lam * x[:k] + (1 - lam) * x[partner]
    blend_target = lam * F.one_hot(y[:k], N_CLASSES) + (1 - lam) * F.one_hot(y[partner], N_CLASSES)
    noise = torch.cat([torch.rand(2 * k, pixels) * torch.rand(2 * k, 1), torch.rand(k, 1).expand(k, pixels)])
    to_uniform = -F.log_softmax(model(noise), dim=1).mean(1).mean()
    return F.cross_entropy(model(x), y) + 0.5 * F.cross_entropy(model(blend), blend_target) + 0.5 * to_uniform


def digits_classifier(size: int = 8, steps: int = 400) -> DigitsClassifier:
    """The digits classifier for ``size`` 8 or 16, trained with ``fit`` on the train split on first use and
    cached for the rest of the process (see :func:`_classifier_step` for its loss). Training is seeded and
    leaves the caller's random state untouched, so a lesson gives the same numbers whether or not a
    classifier was trained earlier in the process."""
    if size in _CLASSIFIERS:
        return _CLASSIFIERS[size]
    from karpa_lab.train import fit

    d = load_digits_splits(size=size)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(0)
        model = DigitsClassifier(size)
        batch = lambda: (lambda i: (d.x_train[i], d.y_train[i]))(torch.randint(len(d.y_train), (128,)))
        fit(model, batch, steps=steps, step_fn=_classifier_step, device="cpu", progress=False, log_every=steps,
            optimizer=torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4))
    model.eval().requires_grad_(False)
    _CLASSIFIERS[size] = model
    return model


def _classifier_for(x: torch.Tensor) -> DigitsClassifier:
    pixels = x[0].numel() if x.dim() > 1 else 0
    sizes = {64: 8, 256: 16}
    if pixels not in sizes:
        raise ValueError(f"digit images must be 8x8 or 16x16 (64 or 256 pixels each), got shape {tuple(x.shape)}")
    return digits_classifier(sizes[pixels])


@torch.no_grad()
def classify(x: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, 10) for digits ``x`` (N, 1, s, s) or (N, s*s), s = 8 or 16."""
    return F.softmax(_classifier_for(x)(x.detach().cpu()), dim=1)


@torch.no_grad()
def digit_features(x: torch.Tensor) -> torch.Tensor:
    """The classifier's features (N, 64) of digits ``x`` (N, 1, s, s) or (N, s*s)."""
    return _classifier_for(x).features(x.detach().cpu())


def class_counts(probs: torch.Tensor) -> list[int]:
    """How many samples the classifier puts in each class: a list of 10 counts."""
    return torch.bincount(probs.argmax(1), minlength=N_CLASSES).tolist()


def class_coverage(probs: torch.Tensor, min_share: float = 0.02) -> int:
    """Number of classes that receive at least ``min_share`` of the samples (an even share is 0.1).

    The 2 % floor keeps a handful of stray samples from counting as a class the generator "covers".
    """
    counts = torch.tensor(class_counts(probs), dtype=torch.float64)
    return int((counts >= min_share * probs.shape[0]).sum())


def mean_confidence(probs: torch.Tensor) -> float:
    """Mean over samples of the classifier's largest class probability."""
    return float(probs.max(1).values.mean())


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance d^2 between Gaussians fitted to features ``a`` (N, F) and ``b`` (M, F), in float64.

    The matrix square root uses symmetric eigendecompositions: with R = S_1^{1/2} (symmetric),
    tr((S_1 S_2)^{1/2}) = tr((R S_2 R)^{1/2}) = sum of sqrt(eigenvalues of R S_2 R), R S_2 R being
    symmetric positive semi-definite.
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need features (N, F) and (M, F) with the same F, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError(f"need at least 2 samples on each side, got {a.shape[0]} and {b.shape[0]}")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T).reshape(a.shape[1], -1), torch.cov(b.T).reshape(b.shape[1], -1)
    root = _sqrt_psd(cov_a)
    cross = torch.linalg.eigvalsh(root @ cov_b @ root).clamp(min=0).sqrt().sum()
    d2 = (mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * cross
    return float(d2.clamp(min=0))


def digit_quality(samples: torch.Tensor, reference: torch.Tensor | None = None,
                  min_share: float = 0.02) -> dict[str, float | int | list[int]]:
    """Every number at once for generated digits ``samples`` (N, 1, s, s) or (N, s*s).

    ``reference``: the real digits to compare with (default: the train split at the samples' size).
    Returns ``{"coverage", "confidence", "frechet", "counts"}``.
    """
    if reference is None:
        size = 8 if samples[0].numel() == 64 else 16
        reference = load_digits_splits(size=size).x_train
    probs = classify(samples)
    return {
        "coverage": class_coverage(probs, min_share),
        "confidence": mean_confidence(probs),
        "frechet": frechet_distance(digit_features(reference), digit_features(samples)),
        "counts": class_counts(probs),
    }


def mode_coverage(mixture: GaussianMixture2D, x: torch.Tensor, n_std: float = 3.0,
                  min_share: float = 0.01) -> dict[str, float | int]:
    """Mode collapse on a 2D mixture, measured: ``modes`` covered (each needs ``min_share`` of the samples
    within ``n_std`` std of its centre; an even share is 1/K), ``of`` (K), and ``quality`` (share of
    samples near any mode). Uses :meth:`GaussianMixture2D.modes_covered`."""
    min_count = max(1, int(round(min_share * x.shape[0])))
    return {"modes": mixture.modes_covered(x, n_std, min_count), "of": mixture.n_modes,
            "quality": mixture.quality(x, n_std)}


__all__ = [
    "DigitsClassifier", "class_counts", "class_coverage", "classify", "digit_features", "digit_quality",
    "digits_classifier", "frechet_distance", "mean_confidence", "mode_coverage",
]
