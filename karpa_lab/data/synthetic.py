"""Synthetic tasks, built by code so they need no download and have a known right answer.

- :func:`recall_task`: remember a symbol across a lag of distractors (what an LSTM can and an RNN cannot).
- :class:`GaussianMixture2D`: a ring or a grid of Gaussians, the 2D playground of the GAN lessons,
  with the mode-coverage measure that shows mode collapse.
- :func:`seasonal_series` and :func:`random_walk`: time series for honest forecasting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


def recall_task(
    n: int, lag: int, n_symbols: int = 4, n_distractors: int = 4, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The long-memory task: see a symbol, wait ``lag`` steps of noise, then name the symbol.

    A sequence is ``[s, d_1, ..., d_lag, ?]`` of length ``lag + 2``: ``s`` in ``[0, n_symbols)`` is the
    symbol to remember, each ``d`` a random distractor in ``[n_symbols, n_symbols + n_distractors)``
    and ``?`` the query token ``n_symbols + n_distractors``. The target is ``s``, so chance accuracy
    is ``1 / n_symbols``. Returns ``x`` (n, lag + 2) int64 and ``y`` (n,) int64; the vocabulary size
    is ``n_symbols + n_distractors + 1`` (see :func:`recall_vocab_size`).
    """
    if lag < 0 or n_symbols < 2 or n_distractors < 1 or n < 1:
        raise ValueError(
            f"need n >= 1, lag >= 0, n_symbols >= 2, n_distractors >= 1; got {n}, {lag}, {n_symbols}, {n_distractors}"
        )
    y = torch.randint(n_symbols, (n,), generator=generator)
    noise = torch.randint(n_symbols, n_symbols + n_distractors, (n, lag), generator=generator)
    query = torch.full((n, 1), n_symbols + n_distractors, dtype=torch.long)
    return torch.cat([y[:, None], noise, query], dim=1), y


def recall_vocab_size(n_symbols: int = 4, n_distractors: int = 4) -> int:
    """Number of distinct tokens in :func:`recall_task` sequences."""
    return n_symbols + n_distractors + 1


@dataclass
class GaussianMixture2D:
    """An equal-weight mixture of isotropic 2D Gaussians with centres ``centers`` (K, 2) and std ``std``."""

    centers: torch.Tensor
    std: float

    @classmethod
    def ring(cls, modes: int = 8, radius: float = 2.0, std: float = 0.02) -> GaussianMixture2D:
        """``modes`` Gaussians evenly spaced on a circle (the standard GAN mode-collapse test)."""
        angles = torch.arange(modes, dtype=torch.float32) * (2 * math.pi / modes)
        return cls(torch.stack([radius * angles.cos(), radius * angles.sin()], dim=1), std)

    @classmethod
    def grid(cls, side: int = 5, spacing: float = 1.0, std: float = 0.05) -> GaussianMixture2D:
        """A ``side`` x ``side`` grid of Gaussians centred on the origin."""
        coords = (torch.arange(side, dtype=torch.float32) - (side - 1) / 2) * spacing
        gx, gy = torch.meshgrid(coords, coords, indexing="ij")
        return cls(torch.stack([gx.flatten(), gy.flatten()], dim=1), std)

    @property
    def n_modes(self) -> int:
        return self.centers.shape[0]

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples, shape (n, 2)."""
        which = torch.randint(self.n_modes, (n,), generator=generator)
        return self.centers[which] + self.std * torch.randn(n, 2, generator=generator)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log p(x) of the mixture at points ``x`` (n, 2): used for the optimal discriminator."""
        d2 = torch.cdist(x.float(), self.centers).pow(2)
        log_comp = -d2 / (2 * self.std**2) - math.log(2 * math.pi * self.std**2)
        return torch.logsumexp(log_comp, dim=1) - math.log(self.n_modes)

    def assign(self, x: torch.Tensor, n_std: float = 3.0) -> torch.Tensor:
        """Index of the nearest mode for each point, or -1 where it is farther than ``n_std`` std from it."""
        dist, idx = torch.cdist(x.detach().float().cpu(), self.centers).min(dim=1)
        return torch.where(dist <= n_std * self.std, idx, torch.full_like(idx, -1))

    def modes_covered(self, x: torch.Tensor, n_std: float = 3.0, min_count: int = 1) -> int:
        """How many modes have at least ``min_count`` of the points within ``n_std`` std of their centre."""
        idx = self.assign(x, n_std)
        counts = torch.bincount(idx[idx >= 0], minlength=self.n_modes)
        return int((counts >= min_count).sum())

    def quality(self, x: torch.Tensor, n_std: float = 3.0) -> float:
        """Share of points that fall within ``n_std`` std of some mode ("high-quality samples")."""
        return float((self.assign(x, n_std) >= 0).float().mean())


def seasonal_series(
    n: int, period: int = 24, trend: float = 0.02, amplitude: float = 1.0, noise: float = 0.2, seed: int = 0
) -> torch.Tensor:
    """``trend * t + amplitude * (sin(2 pi t / period) + 0.5 sin(4 pi t / period)) + noise``, shape (n,)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n, dtype=torch.float32)
    season = torch.sin(2 * math.pi * t / period) + 0.5 * torch.sin(4 * math.pi * t / period)
    return trend * t + amplitude * season + noise * torch.randn(n, generator=g)


def next_value_batches(series: torch.Tensor, window: int, batch_size: int,
                       generator: torch.Generator) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """Random batches for next-value prediction, time first, as ``fit`` takes a function of no arguments:
    x (window, B, 1) the windows ``series[s : s + window]`` from random starts s, y (B, 1) the value after each.
    """
    if series.dim() != 1:
        raise ValueError(f"next_value_batches: series must be 1-D (time,), got {tuple(series.shape)}")
    if not 1 <= window < len(series) - 1 or batch_size < 1:
        raise ValueError(f"need 1 <= window < {len(series) - 1} (the series' length - 1) and batch_size >= 1; "
                         f"got window {window}, batch_size {batch_size}")

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        start = torch.randint(0, len(series) - window - 1, (batch_size,), generator=generator)
        w = series[start[:, None] + torch.arange(window + 1)]  # (B, window + 1)
        return w[:, :window].T.unsqueeze(-1), w[:, window:]

    return batch


def random_walk(n: int, step_std: float = 1.0, seed: int = 0) -> torch.Tensor:
    """A Gaussian random walk: the best forecast of tomorrow is today (persistence), shape (n,)."""
    g = torch.Generator().manual_seed(seed)
    return torch.cumsum(step_std * torch.randn(n, generator=g), dim=0)
