"""Band statistics of a tile store, from a sample of its tiles (for harmonisation)."""

from pathlib import Path

import numpy as np

from common.errors import StoreError
from tiler.bands import BANDS, SPECTRAL
from tiler.grid import Grid
from tiler.store import open_group


def band_percentiles(
    store: str | Path, grid: Grid, q: list[float], max_tiles: int = 256, seed: int = 0
) -> np.ndarray:
    """Per-band percentiles (len(q), bands) of the valid pixels of up to max_tiles seeded tiles."""
    group = open_group(store)
    image, valid = group["image"], group["valid"]
    tile = image.chunks[-1]
    rows, cols = grid.padded_height // tile, grid.padded_width // tile
    rng = np.random.default_rng(seed)
    picks = rng.choice(rows * cols, size=min(max_tiles, rows * cols), replace=False)
    samples = []
    for k in picks:
        y, x = divmod(int(k), cols)
        ys, xs = slice(y * tile, (y + 1) * tile), slice(x * tile, (x + 1) * tile)
        ok = valid[ys, xs] == 1
        if ok.any():
            samples.append(image[:, ys, xs][:, ok])
    if not samples:
        raise StoreError(f"{store}: no valid pixel in {len(picks)} sampled tiles to compute "
                         f"band statistics from (for --harmonize)")
    return np.percentile(np.concatenate(samples, axis=1), q, axis=1)


def harmonization(
    scene_pct: np.ndarray, train_pct: np.ndarray, lo: int, hi: int,
    bands: tuple[str, ...] = BANDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band scale and offset mapping the scene's percentiles lo, hi onto the training data's.

    Rows lo and hi index the percentile arrays (len(q), bands); ``bands`` names their columns.
    Only the spectral bands (B1..B12) are matched: slope (degrees) and DEM (metres) are physical
    quantities, the same on any sensor, and stretching a flat scene's slopes onto the training
    data's mountains would fake the model's main cue. Their scale is 1 and offset 0, so
    ``x * scale + offset`` leaves them bit-identical.
    """
    if scene_pct.shape[-1] != len(bands) or train_pct.shape[-1] != len(bands):
        raise ValueError(f"harmonization: percentiles of {scene_pct.shape[-1]} and "
                         f"{train_pct.shape[-1]} bands for {len(bands)} band names")
    span = np.maximum(scene_pct[hi] - scene_pct[lo], 1e-9)
    scale = (train_pct[hi] - train_pct[lo]) / span
    offset = train_pct[lo] - scene_pct[lo] * scale
    physical = ~np.isin(np.asarray(bands), SPECTRAL)
    scale[physical], offset[physical] = 1.0, 0.0
    return scale.astype(np.float32), offset.astype(np.float32)
