"""Per-polygon statistics of raster layers, accumulated strip by strip from label rasters
(``products.polygons.label_strips``: label i + 1 on the pixels of polygon i)."""

from __future__ import annotations

import numpy as np


class ZoneStats:
    """Sum, count, minimum and maximum of one layer's finite values under each label 1..n."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.sum = np.zeros(n + 1)
        self.count = np.zeros(n + 1)
        self.min = np.full(n + 1, np.inf)
        self.max = np.full(n + 1, -np.inf)

    def add(self, labels: np.ndarray, values: np.ndarray) -> None:
        sel = (labels > 0) & np.isfinite(values)
        if not sel.any():
            return
        lab, val = labels[sel], values[sel]
        self.sum += np.bincount(lab, weights=val, minlength=self.n + 1)
        self.count += np.bincount(lab, minlength=self.n + 1)
        np.minimum.at(self.min, lab, val)
        np.maximum.at(self.max, lab, val)

    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count[1:] > 0, self.sum[1:] / self.count[1:], np.nan)

    def minimum(self) -> np.ndarray:
        return np.where(self.count[1:] > 0, self.min[1:], np.nan)

    def maximum(self) -> np.ndarray:
        return np.where(self.count[1:] > 0, self.max[1:], np.nan)
