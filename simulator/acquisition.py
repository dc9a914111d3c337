"""One acquisition of a window of the world, before or after the event: the image (14 bands),
its scene classification (SCL, 20 m) and the landslides of the event (10 m).

The ground is ``simulator.world``'s (same terrain, land cover and sensor noise in every
acquisition, without the world's own cumulus: ``simulator.sky`` draws each acquisition's sky),
plus DORMANT SCARS: old landslides of another draw on the same terrain, bare debris in every
acquisition, spectrally the event's scars, but not part of the event. A single post-event
image cannot tell them from new landslides; the pre-event image can (they were already there).
The world's other bare ground (dry tilled fields on the plains, rock outcrops, scree and alpine
rock) is also bare before and after, but spectrally apart from debris by design.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.landslides import Landslides, landslides_near, rasterize
from simulator.noise import uniform
from simulator.relief import treeline_window
from simulator.sky import Sky, apply_sky, classify, sky_fields
from simulator.world import CHUNK, N_BANDS, _pixels, terrain_grid

DORMANT_KEY = 0x0D0
"""Derives the seed of the dormant scars' draw from the world's seed."""
DORMANT_SHARE = 0.4
"""Share of the other draw's landslides kept as dormant scars."""


@dataclass(frozen=True)
class Acquisition:
    image: np.ndarray
    """float32 (14, h, w) in ``s2-reflectance-v1``; NaN where the granule has no data."""
    scl: np.ndarray
    """uint8 (ceil(h/2), ceil(w/2)): the SCL on the window's 20 m cells."""
    landslides: np.ndarray
    """bool (h, w): the event's scars (none before the event). Where one runs over a dormant
    scar the pixel is the event's: fresh debris, though it was bare before."""
    dormant: np.ndarray
    """bool (h, w): the dormant scars (the same in every acquisition)."""


def _dormant(seed: int, grid, row0: int, col0: int, height: int, width: int) -> Landslides:
    other = (seed * 0x9E3779B1 + DORMANT_KEY) % 2**32
    ls = landslides_near(other, grid, row0, col0, height, width)
    src = np.round(ls.points[:, 0]).astype(np.int64)
    keep = uniform(seed, 901, src[:, 0], src[:, 1]) < DORMANT_SHARE
    return Landslides(ls.points[keep], ls.radii[keep], ls.n_points[keep],
                      ls.gain[keep] * np.float32(0.95), ls.wet[keep])


def render(seed: int, row0: int, col0: int, height: int, width: int, *, after: bool,
           sky: Sky, nodata: np.ndarray | None = None) -> Acquisition:
    """The window at global (``row0``, ``col0``) (both even: 20 m cells) as acquired
    ``after`` the event or before it, under ``sky``; ``nodata`` (bool, h x w) marks pixels
    outside the swath."""
    grid = terrain_grid(seed, row0, col0, height, width)
    new, gain, wet = rasterize(landslides_near(seed, grid, row0, col0, height, width),
                               row0, col0, height, width)
    old, old_gain, old_wet = rasterize(_dormant(seed, grid, row0, col0, height, width),
                                       row0, col0, height, width)
    if not after:
        new[...] = False
    scar = new | old
    gain = np.where(new, gain, old_gain)
    wet = np.where(new, wet, old_wet)
    img = np.empty((N_BANDS, height, width), dtype=np.float32)
    mask = np.empty((height, width), dtype=np.uint8)
    for i in range(0, height, CHUNK):
        n = min(CHUNK, height - i)
        rows = slice(i, i + n)
        _pixels(seed, grid, row0 + i, col0, n, width, scar[rows], gain[rows], wet[rows],
                img[:, rows], mask[rows], clouds=False)
    if nodata is not None:
        img[:, nodata] = np.nan
    fields = sky_fields(seed, sky, row0, col0, height, width)
    treeline = treeline_window(seed, row0, col0, height, width)
    scl = classify(img, treeline, fields, sky)
    apply_sky(img, scl, fields, seed, sky, row0, col0)
    return Acquisition(img, scl, new, old)
