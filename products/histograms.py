"""The histogram of a scene's landslide probabilities, read from the store one block row at a
time (a whole scene's probabilities never sit in memory at once)."""

from pathlib import Path

import numpy as np

from products.rasters import row_strips
from tiler.grid import Grid
from tiler.predictions import PROBABILITY, open_predictions


def probability_histogram(store: str | Path, grid: Grid,
                          bins: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """(counts int64 (bins,), edges (bins + 1,)) of the probabilities of the scene's valid
    pixels over [0, 1]; nodata (NaN) is left out."""
    prob = open_predictions(store)[PROBABILITY]
    edges = np.linspace(0.0, 1.0, bins + 1)
    counts = np.zeros(bins, np.int64)
    for y0, y1 in row_strips(grid):
        p = np.asarray(prob[y0:y1, : grid.width])
        counts += np.histogram(p[np.isfinite(p)], bins=edges)[0]
    return counts, edges
