"""A second, deliberately different world: "monsoon" (the default world is "alpine").

Made to measure how a model trained on the default world's patches maps a scene of a world it
has never seen (`bench.training` generalisation table). Same terrain generator and sensor, and
landslides are still fresh debris on steep ground, but everything a model could learn by heart
differs:
- spectra: humid broadleaf forest (darker visible, brighter NIR), shrub instead of alpine
  meadow, and lateritic debris (redder, darker and moister than the alpine scars: lower NIR and
  SWIR), a hazier atmosphere, another sun;
- landslides: about twice as many sources, most of them small (many under 10 pixels, a few
  long runouts), on any steep ground (no treeline), triggered by their own regional field;
- confusers the default world has none of: terraces of bare red soil on moderate slopes, grey
  gravel bars on flat valley floors, and roads cut across the hillsides (1-2 px bright lines).

Like the default world, every layer is a function of global pixel coordinates and the seed, so
any window of a scene is the same pixels. The seed is mixed first, so the monsoon world of a
seed is not the alpine world's terrain.
"""

import numpy as np

from simulator import landslides as ls_mod
from simulator import spectra
from simulator.landslides import HALO, TerrainGrid, rasterize
from simulator.noise import pixel_uniforms, smoothstep, uniform, value_noise, value_noise_at
from simulator.relief import PIXEL
from simulator.relief import mountainness_at as _alpine_mountainness
from simulator.world import N_BANDS, _clouds, terrain_grid
from tiler.terrain import horn_slope

NAME = "monsoon"
CLASSES: tuple[str, ...] = ("forest", "shrub", "terrace", "gravel", "road", "debris", "water")
#                  B1     B2     B3     B4     B5     B6     B7     B8     B9     B10    B11    B12
_TABLE = np.array([
    [0.020, 0.024, 0.048, 0.024, 0.075, 0.250, 0.330, 0.370, 0.125, 0.004, 0.150, 0.065],  # forest
    [0.035, 0.045, 0.075, 0.060, 0.115, 0.220, 0.260, 0.280, 0.100, 0.004, 0.240, 0.140],  # shrub
    [0.065, 0.080, 0.115, 0.170, 0.205, 0.220, 0.230, 0.240, 0.090, 0.004, 0.330, 0.270],  # terrace
    [0.110, 0.130, 0.150, 0.170, 0.185, 0.195, 0.205, 0.215, 0.090, 0.004, 0.260, 0.215],  # gravel
    [0.125, 0.145, 0.170, 0.195, 0.215, 0.225, 0.235, 0.245, 0.100, 0.004, 0.290, 0.245],  # road
    [0.070, 0.088, 0.125, 0.190, 0.220, 0.235, 0.245, 0.255, 0.100, 0.004, 0.265, 0.185],  # debris
    [0.045, 0.045, 0.050, 0.035, 0.025, 0.018, 0.015, 0.012, 0.005, 0.002, 0.006, 0.004],  # water
], dtype=np.float32)
HAZE = 2.5 * spectra.HAZE
SUN_AZIMUTH_DEG, SUN_ZENITH_DEG = 120.0, 28.0
CANDIDATES = 8
MIN_SOURCE_SLOPE = 26.0


def world_seed(seed: int) -> int:
    """The seed of the monsoon world's layers: another terrain than the alpine world's."""
    return int((seed * 0x9E3779B1 + 0x2545F491) % 2**32)


def mountainness_at(seed: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Where the mountains are (for placing patches and scenes)."""
    return _alpine_mountainness(world_seed(seed), rows, cols)


def _candidates(seed: int, r0: int, r1: int, c0: int, c1: int) -> dict[str, np.ndarray]:
    """Hashed candidate sources of cells [r0, r1) x [c0, c1): small ones mostly."""
    cr, cc, k = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), np.arange(CANDIDATES),
                            indexing="ij")
    cr, cc, k = cr.ravel(), cc.ravel(), k.ravel()
    kk = cc * CANDIDATES + k

    def u(key: int) -> np.ndarray:
        return uniform(seed, 300 + key, cr, kk).astype(np.float64)

    size = u(3) ** 2.5  # skewed to small: half of the draws under 0.18
    return {
        "row": (cr + u(0)) * ls_mod.CELL, "col": (cc * 1.0 + u(1)) * ls_mod.CELL,
        "accept": u(2), "length": 2.0 + 50.0 * size, "radius": 1.0 + 4.5 * size ** 0.7,
        "gain": 0.8 + 0.35 * u(5), "wet": 0.85 + 0.2 * u(6),
    }


def landslides_near(seed: int, grid: TerrainGrid, row0: int, col0: int, height: int,
                    width: int) -> ls_mod.Landslides:
    """The monsoon landslides that can touch the window (``grid`` covers it + ``HALO``)."""
    reach = ls_mod.REACH
    r0, r1 = (row0 - reach) // ls_mod.CELL, (row0 + height + reach) // ls_mod.CELL + 1
    c0, c1 = (col0 - reach) // ls_mod.CELL, (col0 + width + reach) // ls_mod.CELL + 1
    cand = _candidates(seed, r0, r1, c0, c1)
    rows, cols = cand["row"], cand["col"]
    near = ((rows >= row0 - reach) & (rows < row0 + height + reach)
            & (cols >= col0 - reach) & (cols < col0 + width + reach))
    cand = {k: v[near] for k, v in cand.items()}
    rows, cols = cand["row"], cand["col"]
    gr, gc = grid.sample(rows, cols)
    slope = np.degrees(np.arctan(np.hypot(gr, gc)))
    trigger = 0.2 + 0.8 * smoothstep(0.35, 0.65, value_noise_at(seed, 41, rows, cols, 768))
    ok = (slope > MIN_SOURCE_SLOPE) & (cand["accept"] < trigger)
    ok &= grid.at(grid.mountainness, rows, cols) > 0.25
    idx = np.flatnonzero(ok)
    return ls_mod._trace(seed, grid, {k: v[idx] for k, v in cand.items()}, gr[idx], gc[idx])


def _illumination(dzdr: np.ndarray, dzdc: np.ndarray) -> np.ndarray:
    az, zen = np.radians(SUN_AZIMUTH_DEG), np.radians(SUN_ZENITH_DEG)
    sx, sy, sz = np.sin(zen) * np.sin(az), np.sin(zen) * np.cos(az), np.cos(zen)
    cos_i = (-dzdc * sx + dzdr * sy + sz) / np.sqrt(1.0 + dzdr * dzdr + dzdc * dzdc)
    return (0.3 + 0.7 * np.clip(cos_i / sz, 0.0, 1.5)).astype(np.float32)


def _classes(seed: int, row0: int, col0: int, height: int, width: int, m: np.ndarray,
             slope: np.ndarray, scar: np.ndarray) -> np.ndarray:
    """Class index (into ``CLASSES``) of every pixel, scars last."""

    def noise(key: int, cell: int) -> np.ndarray:
        return value_noise(seed, key, row0, col0, height, width, cell)

    f32 = np.float32
    cls = np.zeros((height, width), np.uint8)  # forest
    cls[(noise(80, 32) > f32(0.62)) & (m > f32(0.5))] = CLASSES.index("shrub")
    terraces = ((slope > f32(6)) & (slope < f32(24)) & (noise(81, 96) > f32(0.55))
                & (noise(82, 12) > f32(0.35)))
    cls[terraces] = CLASSES.index("terrace")
    flat = (slope < f32(4)) & (m < f32(0.45))
    cls[flat & (noise(83, 48) > f32(0.5))] = CLASSES.index("gravel")
    cls[flat & (noise(84, 256) > f32(0.75))] = CLASSES.index("water")
    road = (np.abs(noise(85, 160) - f32(0.5)) < f32(0.007)) & (m > f32(0.2))
    cls[road] = CLASSES.index("road")
    cls[scar] = CLASSES.index("debris")
    return cls


def simulate_window(seed: int, row0: int, col0: int, height: int,
                    width: int) -> tuple[np.ndarray, np.ndarray]:
    """Image float32 (14, H, W) (``tiler.bands`` order, reflectance) and mask uint8 (H, W) of
    the monsoon world: the counterpart of ``simulator.world.simulate_window``."""
    if height <= 0 or width <= 0:
        raise ValueError(f"window must be non-empty, got {height} x {width}")
    s = world_seed(seed)
    grid = terrain_grid(s, row0, col0, height, width)
    scar, ls_gain, wet = rasterize(landslides_near(s, grid, row0, col0, height, width),
                                   row0, col0, height, width)
    f32 = np.float32
    inner = (slice(HALO, HALO + height), slice(HALO, HALO + width))
    halo1 = (slice(HALO - 1, HALO + height + 1), slice(HALO - 1, HALO + width + 1))
    dem, m = grid.dem[inner], grid.mountainness[inner]
    slope = horn_slope(grid.dem[halo1], PIXEL, PIXEL)[1:-1, 1:-1]
    cls = _classes(s, row0, col0, height, width, m, slope, scar)
    gain = (f32(0.88) + f32(0.24) * value_noise(s, 86, row0, col0, height, width, 6))
    gain *= _illumination(grid.dzdr[inner], grid.dzdc[inner])
    gain[scar] *= ls_gain[scar]
    alpha = _clouds(s, row0, col0, height, width)
    noise = pixel_uniforms(s, 87, row0, col0, height, width, 12)
    img = np.empty((N_BANDS, height, width), np.float32)
    for b in range(12):
        band = _TABLE[cls, b] * gain
        if b >= 10:
            band[scar] *= wet[scar]
        band += HAZE[b]
        band = band * (f32(1) - alpha) + alpha * spectra.CLOUD[b]
        band += (noise[b] - f32(0.5)) * f32(np.sqrt(12.0) * 1.3 * spectra.NOISE_STD[b])
        img[b] = np.maximum(band, f32(1e-4))
    img[12] = slope
    img[13] = dem
    mask = (scar & (alpha < 0.5)).astype(np.uint8)
    return img, mask
