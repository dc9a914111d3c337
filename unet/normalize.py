"""Per-band normalisation statistics and the normalisation itself (NumPy only, no TensorFlow).

Statistics of the training split are STREAMED: one file at a time into float64 accumulators
(per-file mean and sum of squared deviations merged with Chan's formula), so the split never has
to fit in memory and the result equals NumPy's mean/std over all pixels of all files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

OFFICIAL_MEAN: tuple[float, ...] = (
    -0.4914, -0.3074, -0.1277, -0.0625, 0.0439, 0.0803, 0.0644, 0.0802, 0.3000, 0.4082,
    0.0823, 0.0516, 0.3338, 0.7819,
)
"""The Landslide4Sense baseline's per-band means (l4s-release convention only)."""
OFFICIAL_STD: tuple[float, ...] = (
    0.9325, 0.8775, 0.8860, 0.8869, 0.8857, 0.8418, 0.8354, 0.8491, 0.9061, 1.6072,
    0.8848, 0.9232, 0.9018, 1.2913,
)
DEFAULT_CLIP = 10.0
"""Normalised values are clipped to +-clip: the real release has B10 up to 50 (about 30 sigma)."""
DEFAULT_QUANTILES: tuple[float, ...] = (1, 2, 5, 25, 50, 75, 95, 98, 99)


@dataclass
class BandStats:
    """Per-band statistics of a training split (lists of floats, one per band)."""

    mean: list[float]
    std: list[float]
    count: int
    q: list[float] = field(default_factory=lambda: list(DEFAULT_QUANTILES))
    percentiles: list[list[float]] = field(default_factory=list)
    """percentiles[b][i]: band b at quantile q[i] (percent)."""
    percentile_pixels: int = 0
    """How many pixels the percentiles were estimated from."""


def streamed_stats(
    paths: Iterable,
    read: Callable[[object], np.ndarray],
    q: Iterable[float] = DEFAULT_QUANTILES,
    sample_pixels: int = 200_000,
    seed: int = 0,
) -> BandStats:
    """Mean and std (population, ddof=0) per band over every pixel of every file, plus percentiles.

    `read(path)` returns one (H, W, bands) array. Percentiles are estimated from a seeded random
    subsample: about `sample_pixels / n_files` pixels drawn without replacement from each file
    (at least one), with `numpy.random.default_rng(seed)`; the same files and seed give the same
    values. They describe the training radiometry for later harmonisation, not the normalisation.
    """
    paths = list(paths)
    if not paths:
        raise ValueError("no training files to compute statistics from")
    rng = np.random.default_rng(seed)
    per_file = max(1, sample_pixels // len(paths))
    n = 0
    mean = None
    m2 = None
    samples = []
    for path in paths:
        x = np.asarray(read(path), dtype=np.float64)
        x = x.reshape(-1, x.shape[-1])
        k = x.shape[0]
        file_mean = x.mean(axis=0)
        file_m2 = ((x - file_mean) ** 2).sum(axis=0)
        if mean is None:
            n, mean, m2 = k, file_mean, file_m2
        else:
            delta = file_mean - mean
            total = n + k
            mean = mean + delta * (k / total)
            m2 = m2 + file_m2 + delta**2 * (n * k / total)
            n = total
        take = rng.choice(k, size=min(per_file, k), replace=False)
        samples.append(x[take])
    sample = np.concatenate(samples, axis=0)
    q = [float(v) for v in q]
    pct = np.percentile(sample, q, axis=0)  # (len(q), bands)
    return BandStats(
        mean=[float(v) for v in mean],
        std=[float(v) for v in np.sqrt(m2 / n)],
        count=int(n),
        q=q,
        percentiles=[[float(v) for v in pct[:, b]] for b in range(pct.shape[1])],
        percentile_pixels=int(sample.shape[0]),
    )


def normalize_array(x, mean, std, clip: float = DEFAULT_CLIP) -> np.ndarray:
    """Channels-last float32: (x - mean) / std, clipped to +-clip. A zero std counts as 1."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    std = np.where(std > 0, std, np.float32(1.0))
    out = (np.asarray(x, np.float32) - mean) / std
    return np.clip(out, -clip, clip).astype(np.float32, copy=False)
