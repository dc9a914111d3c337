"""The sky of one acquisition and its Sentinel-2 scene classification (SCL, 20 m).

An acquisition (``Sky``) draws cumulus (SCL 8 cloud medium and 9 cloud high probability, bright
and flat spectra), their shadows (3, darkened, cast to the north-north-west away from the sun
of ``simulator.world``), thin cirrus (10, a faint veil with high B10) and snow above a snowline
over the alpine zone (11); elsewhere the class is 4 vegetation, 5 not vegetated or 6 water from
the image itself, and 0 no data where the image has none. Every field is value noise of
GLOBAL 20 m cells (``simulator.noise``), so two granules of one acquisition agree where they
overlap, and two acquisitions (keys) have different skies over the same ground.

The classes are decided per 20 m cell and the spectral effects follow the class cell by cell
(a 20 m cell covers 2 x 2 pixels of 10 m): the 10 m pixels that the SCL, upsampled by nearest
neighbour, calls clear are untouched by any cloud, shadow, cirrus or snow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.noise import smoothstep, value_noise
from simulator.spectra import CLOUD

NODATA, SATURATED, DARK, CLOUD_SHADOW, VEGETATION, NOT_VEGETATED, WATER = 0, 1, 2, 3, 4, 5, 6
UNCLASSIFIED, CLOUD_MEDIUM, CLOUD_HIGH, THIN_CIRRUS, SNOW = 7, 8, 9, 10, 11
SCL_UNUSABLE = (NODATA, SATURATED, CLOUD_SHADOW, CLOUD_MEDIUM, CLOUD_HIGH, THIN_CIRRUS, SNOW)
"""The classes whose pixels cannot be mapped (the tiler's default exclusion, issue 13)."""

SNOW_SPECTRUM = np.array([0.92, 0.93, 0.91, 0.88, 0.86, 0.84, 0.82, 0.80, 0.62, 0.03, 0.09,
                          0.06], dtype=np.float32)
"""Fresh snow, B1..B12: bright in the visible and NIR, dark in the SWIR (B11, B12)."""
SHADOW_OFFSET = (30, 18)
"""(rows, cols) of 20 m cells from a cloud shadow to its cloud: towards the sun (azimuth 150
degrees, south-south-east); about 700 m, a cloud base near 1.5 km under a 40 degree zenith."""
CLOUD_EDGE = 0.06
"""Width (in noise units) over which a cloud's opacity rises from 0 to 1."""


@dataclass(frozen=True)
class Sky:
    """One acquisition's sky: noise keys and thresholds (higher = fewer clouds)."""

    key: int
    cloud_threshold: float
    cirrus_threshold: float
    snow_above_treeline_m: float


POST_SKY = Sky(key=500, cloud_threshold=0.57, cirrus_threshold=0.74, snow_above_treeline_m=800)
"""After the event: the monsoon's end, about 15% cumulus with shadows, some cirrus."""
PRE_SKY = Sky(key=540, cloud_threshold=0.64, cirrus_threshold=0.80, snow_above_treeline_m=900)
"""Before the event: fewer, other clouds; the snowline a little higher."""


def _noise(seed: int, key: int, row0: int, col0: int, h: int, w: int, cell: int) -> np.ndarray:
    return value_noise(seed, key, row0, col0, h, w, cell)


def _cloud(seed: int, sky: Sky, r2: int, c2: int, h2: int, w2: int) -> np.ndarray:
    c = (0.5 * _noise(seed, sky.key, r2, c2, h2, w2, 96)
         + 0.3 * _noise(seed, sky.key + 1, r2, c2, h2, w2, 32)
         + 0.2 * _noise(seed, sky.key + 2, r2, c2, h2, w2, 8))
    th = sky.cloud_threshold
    return smoothstep(th, th + CLOUD_EDGE, c).astype(np.float32)


def sky_fields(seed: int, sky: Sky, row0: int, col0: int, height: int,
               width: int) -> dict[str, np.ndarray]:
    """Cloud opacity, shadow strength and cirrus thickness (0..1) on the 20 m cells of the
    10 m window at global (``row0``, ``col0``), which must be even: cell (i, j) covers 10 m
    pixels (row0 + 2i .. +1, col0 + 2j .. +1)."""
    if row0 % 2 or col0 % 2:
        raise ValueError(f"the window must start on a 20 m cell, got ({row0}, {col0})")
    r2, c2 = row0 // 2, col0 // 2
    h2, w2 = -(-height // 2), -(-width // 2)
    dr, dc = SHADOW_OFFSET
    cir = _noise(seed, sky.key + 3, r2, c2, h2, w2, 64)
    th = sky.cirrus_threshold
    return {"cloud": _cloud(seed, sky, r2, c2, h2, w2),
            "shadow": _cloud(seed, sky, r2 + dr, c2 + dc, h2, w2),
            "cirrus": smoothstep(th, th + 0.05, cir).astype(np.float32)}


def to_20m(a: np.ndarray, reduce: str = "first") -> np.ndarray:
    """A 10 m array on 20 m cells: the cell's top-left pixel ("first") or whether any of its
    pixels is set ("any")."""
    if reduce == "first":
        return a[::2, ::2]
    h, w = a.shape
    p = np.pad(a, ((0, h % 2), (0, w % 2)), mode="edge")
    return p.reshape(p.shape[0] // 2, 2, p.shape[1] // 2, 2).any(axis=(1, 3))


def to_10m(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """A 20 m array on the 10 m pixels (nearest neighbour), cropped to height x width."""
    return np.repeat(np.repeat(a, 2, axis=0), 2, axis=1)[:height, :width]


def classify(img: np.ndarray, treeline: np.ndarray, fields: dict[str, np.ndarray],
             sky: Sky) -> np.ndarray:
    """SCL (uint8, 20 m cells) of a clear 10 m image (14, h, w) under ``fields``."""
    b4, b8 = to_20m(img[3]), to_20m(img[7])
    ndvi = (b8 - b4) / np.maximum(b8 + b4, 1e-6)
    scl = np.full(b4.shape, NOT_VEGETATED, dtype=np.uint8)
    scl[ndvi > 0.4] = VEGETATION
    scl[(ndvi < 0.05) & (b8 < 0.06)] = WATER
    snow = to_20m(img[13]) - to_20m(treeline) > sky.snow_above_treeline_m
    scl[snow] = SNOW
    scl[fields["cirrus"] > 0.3] = THIN_CIRRUS
    scl[fields["shadow"] > 0.3] = CLOUD_SHADOW
    scl[fields["cloud"] > 0.3] = CLOUD_MEDIUM
    scl[fields["cloud"] > 0.7] = CLOUD_HIGH
    scl[to_20m(~np.isfinite(img[:12]).all(axis=0) | ~np.isfinite(img[12:]).all(axis=0),
               "any")] = NODATA
    return scl


def apply_sky(img: np.ndarray, scl: np.ndarray, fields: dict[str, np.ndarray], seed: int,
              sky: Sky, row0: int, col0: int) -> None:
    """Give the 12 spectral bands of ``img`` (14, h, w) what the SCL says, in place: clouds,
    shadows, cirrus and snow, cell by cell; NaN in every band where the class is no data."""
    _, h, w = img.shape
    cls = to_10m(scl, h, w)
    f = {k: to_10m(v, h, w) for k, v in fields.items()}
    tex = _noise(seed, sky.key + 4, row0, col0, h, w, 12)
    cloudy = (cls == CLOUD_MEDIUM) | (cls == CLOUD_HIGH)
    a = (np.float32(0.45) + np.float32(0.55) * f["cloud"][cloudy])
    cloud_gain = np.float32(0.85) + np.float32(0.3) * tex[cloudy]
    shadow = cls == CLOUD_SHADOW
    dark = np.float32(0.25) + np.float32(0.2) * (np.float32(1) - f["shadow"][shadow])
    cirrus = cls == THIN_CIRRUS
    veil = np.float32(0.2) * f["cirrus"][cirrus]
    snow = cls == SNOW
    snow_gain = np.float32(0.8) + np.float32(0.2) * tex[snow]
    for b in range(12):
        band = img[b]
        band[shadow] *= dark
        band[cirrus] += veil * CLOUD[b]
        band[snow] = snow_gain * SNOW_SPECTRUM[b]
        band[cloudy] = band[cloudy] * (np.float32(1) - a) + a * cloud_gain * CLOUD[b]
    img[:, cls == NODATA] = np.nan
