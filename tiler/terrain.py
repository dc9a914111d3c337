"""Terrain derivatives on a raster grid."""

import numpy as np


def horn_slope(dem: np.ndarray, xres: float, yres: float) -> np.ndarray:
    """Slope in degrees by Horn's (1981) 3x3 method, with the true pixel size in metres.

    Edge pixels use a replicated border, so the output has the shape of the input. NaN in the
    DEM propagates to its 3x3 neighbourhood.
    """
    z = np.pad(np.asarray(dem, dtype=np.float64), 1, mode="edge")
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    dzdx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8.0 * abs(xres))
    dzdy = ((g + 2 * h + i) - (a + 2 * b + c)) / (8.0 * abs(yres))
    return np.degrees(np.arctan(np.hypot(dzdx, dzdy))).astype(np.float32)
