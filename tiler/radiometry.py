"""A cheap look at a scene's values before anything is tiled: are they what the declared
convention says?

Digital numbers taken for reflectance (a float32 export of DN, a uint16 stack) give a map that
looks finished and is wrong, so the tiler reads one window at the centre of each band file (one
internal tile of a JP2 or tiled GeoTIFF: a fraction of a second), converts it as the block tasks
will, and refuses the scene when a band's median is far outside its convention's range. The
message names the likely cause and the option that fixes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.errors import RasterioError
from rasterio.windows import Window

from common.errors import InputError
from tiler.bands import CONVENTION, L4S_RELEASE_CONVENTION

if TYPE_CHECKING:
    from tiler.sources import BandSource

SAMPLE_PX = 256
REFLECTANCE_MEDIAN_MAX = 2.0
"""Reflectance is 0..1 (bright snow and cloud reach 1.5): a median above 2 is not reflectance."""
RELEASE_MEDIAN_MAX = 20.0
"""The Landslide4Sense release's bands have means about 1 (B10 up to ~50 in rare patches)."""
SLOPE_RANGE = (0.0, 90.0)


def sample_values(src: BandSource) -> np.ndarray:
    """Converted valid values of a window at the centre of ``src``'s file (empty when the
    centre is nodata; then a few windows spread over the file are tried)."""
    try:
        return _sample(src)
    except (RasterioError, CPLE_BaseError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputError(f"{src.path}: cannot read band {src.index} (truncated or corrupt "
                         f"file? {first})") from None


def _sample(src: BandSource) -> np.ndarray:
    with rasterio.open(src.path) as ds:
        for cy, cx in _centres(ds.height, ds.width):
            h, w = min(SAMPLE_PX, ds.height), min(SAMPLE_PX, ds.width)
            y0 = min(max(cy - h // 2, 0), ds.height - h)
            x0 = min(max(cx - w // 2, 0), ds.width - w)
            raw = ds.read(src.index, window=Window(x0, y0, w, h), out_dtype="float64")
            ok = np.isfinite(raw)
            if src.nodata is not None:
                ok &= raw != src.nodata
            if ok.any():
                return (raw[ok] + src.offset) / src.quantification
    return np.empty(0)


def _centres(height: int, width: int) -> list[tuple[int, int]]:
    spots = [(0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75)]
    return [(int(fy * height), int(fx * width)) for fy, fx in spots]


def check_radiometry(convention: str, spectral: dict[str, BandSource],
                     slope: BandSource | None, where: str) -> dict[str, float]:
    """Refuse bands whose sampled median is outside ``convention``'s range; returns the medians
    (band -> value) that were checked, for the record."""
    medians: dict[str, float] = {}
    limit = REFLECTANCE_MEDIAN_MAX if convention == CONVENTION else RELEASE_MEDIAN_MAX
    for band, src in spectral.items():
        values = sample_values(src)
        if values.size == 0:
            continue
        m = float(np.median(values))
        medians[band] = m
        if abs(m) > limit:
            raise InputError(_message(convention, band, src, m, where))
    if slope is not None and convention == CONVENTION:
        values = sample_values(slope)
        if values.size and not SLOPE_RANGE[0] <= float(np.median(values)) <= SLOPE_RANGE[1]:
            raise InputError(f"{slope.path}: the slope band's median {np.median(values):.4g} is "
                             f"not in degrees (0..90), as {CONVENTION} requires")
    return medians


def _message(convention: str, band: str, src: BandSource, median: float, where: str) -> str:
    what = f"{src.path}: band {band} has a median of {median:.4g} after conversion"
    if convention == L4S_RELEASE_CONVENTION:
        return (f"{what}, far from the {L4S_RELEASE_CONVENTION} units (about 1): not the "
                f"Landslide4Sense release's units; drop --convention {L4S_RELEASE_CONVENTION}")
    hint = ("it looks like digital numbers: pass --quantification 10000 "
            "(and --offset -1000 for products of processing baseline 04.00 or later)")
    if src.quantification != 1.0:
        hint = (f"it was divided by --quantification {src.quantification:g} and is still not "
                f"reflectance: check --quantification and --offset")
    if where == "stack":
        hint += (f"; or, if the stack is in the Landslide4Sense release's units, pass "
                 f"--convention {L4S_RELEASE_CONVENTION}")
    return f"{what}, far outside reflectance 0..1.5: {hint}"
