"""Compare a predicted mask raster with a ground-truth raster on the same grid, by windows."""

from pathlib import Path

import numpy as np
import rasterio

from common.errors import InputError


def confusion_counts(pred_tif: Path, truth_tif: Path) -> dict[str, int]:
    """tp, fp, fn, tn of the landslide class over pixels valid in both rasters (0/1 values)."""
    counts = dict.fromkeys(("tp", "fp", "fn", "tn"), 0)
    with rasterio.open(pred_tif) as pred, rasterio.open(truth_tif) as truth:
        if (pred.shape, pred.transform, pred.crs) != (truth.shape, truth.transform, truth.crs):
            raise InputError(f"{pred_tif}: not on the grid of {truth_tif}")
        for _, window in pred.block_windows(1):
            p, t = pred.read(1, window=window), truth.read(1, window=window)
            ok = (p <= 1) & (t <= 1)
            p, t = p[ok].astype(bool), t[ok].astype(bool)
            counts["tp"] += int(np.sum(p & t))
            counts["fp"] += int(np.sum(p & ~t))
            counts["fn"] += int(np.sum(~p & t))
            counts["tn"] += int(np.sum(~p & ~t))
    return counts
