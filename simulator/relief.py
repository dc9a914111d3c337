"""The terrain: a DEM in metres as a function of global pixel coordinates (10 m pixels).

Low-frequency noise decides where mountains rise (``mountainness`` 0 = plain, 1 = range); inside
them a ridged multifractal (sharp crests, V-shaped valleys) of about 2.2 km relief at most gives
slopes of 20-50 degrees on most flanks; plains stay within a few degrees. The same formula is
evaluated on windows (``terrain_window``, float32, bit-exact whatever the window); the
mountainness also at float points (to choose where patches are cut).
"""

from collections.abc import Callable

import numpy as np

from simulator.noise import smoothstep, value_noise, value_noise_at

PIXEL = 10.0
"""Pixel size in metres (the Sentinel-2 10 m grid)."""

# (key, lattice cell in px, amplitude) of the ridged octaves.
_RIDGE_OCTAVES = ((11, 1024, 1.0), (12, 512, 0.6), (13, 256, 0.45), (14, 128, 0.28),
                  (15, 64, 0.14), (16, 32, 0.05))
_RIDGE_NORM = sum(a for _, _, a in _RIDGE_OCTAVES)
_RELIEF_M = 3000.0
_BASE_M = 250.0

Noise = Callable[[int, int], np.ndarray]


def _ridge(n: np.ndarray) -> np.ndarray:
    """Ridged transform of value noise (mean 0.5, std ~0.12): 1 on crests, ~0 in valleys."""
    z = np.abs(n - 0.5) * 4.0
    r = 1.0 - np.minimum(z, 1.0)
    return r * r


def _mountainness(noise: Noise) -> np.ndarray:
    m = 0.65 * noise(1, 4096) + 0.35 * noise(2, 1536)
    return smoothstep(0.42, 0.60, m)


def _terrain(noise: Noise) -> tuple[np.ndarray, np.ndarray]:
    m = _mountainness(noise)
    ridges = sum(a * _ridge(noise(k, c)) for k, c, a in _RIDGE_OCTAVES) / _RIDGE_NORM
    plain = 60.0 * noise(3, 512) + 15.0 * noise(4, 128)
    # Valley floors widen and flatten where the range fades out.
    return _BASE_M + plain + _RELIEF_M * m * ridges * (0.35 + 0.65 * m), m


def terrain_window(seed: int, row0: int, col0: int, height: int,
                   width: int) -> tuple[np.ndarray, np.ndarray]:
    """(DEM in metres, mountainness), float32, of a window of global pixels."""

    def noise(key: int, cell: int) -> np.ndarray:
        return value_noise(seed, key, row0, col0, height, width, cell)

    dem, m = _terrain(noise)
    return dem.astype(np.float32), m.astype(np.float32)


def dem_window(seed: int, row0: int, col0: int, height: int, width: int) -> np.ndarray:
    """DEM (metres, float32) of a window of global pixels."""
    return terrain_window(seed, row0, col0, height, width)[0]


def mountainness_at(seed: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``mountainness`` at float global points."""

    def noise(key: int, cell: int) -> np.ndarray:
        return value_noise_at(seed, key, rows, cols, cell)

    return _mountainness(noise)


def horn_gradient(dem_halo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dz/drow, dz/dcol) in m/m by Horn's kernel on a DEM with a 1-px halo (output 2 px smaller).

    The same kernel as ``tiler.terrain.horn_slope``; the simulator also needs the aspect (for the
    hillshade), which the shared function does not return.
    """
    z = dem_halo
    a, b, c = z[:-2, :-2], z[:-2, 1:-1], z[:-2, 2:]
    d, f = z[1:-1, :-2], z[1:-1, 2:]
    g, h, i = z[2:, :-2], z[2:, 1:-1], z[2:, 2:]
    dzdc = ((c + 2 * f + i) - (a + 2 * d + g)) / (8.0 * PIXEL)
    dzdr = ((g + 2 * h + i) - (a + 2 * b + c)) / (8.0 * PIXEL)
    return dzdr, dzdc


def _treeline(noise: Noise) -> np.ndarray:
    return 1750.0 + 1500.0 * (noise(30, 2048) - 0.5)


def treeline_window(seed: int, row0: int, col0: int, height: int, width: int) -> np.ndarray:
    """Elevation (m) above which forest gives way to alpine meadow and rock."""
    return _treeline(lambda k, c: value_noise(seed, k, row0, col0, height, width, c)).astype(
        np.float32)

