"""Landslides: placed per coarse cell by a hash, traced downhill on the analytic DEM.

Each ``CELL`` x ``CELL`` cell of the world holds ``CANDIDATES`` candidate sources at hashed
positions. A candidate becomes a landslide when the ground there is steep (> ``MIN_SOURCE_SLOPE``
degrees), forested (below the treeline) and a hashed draw passes a regional "trigger" intensity
(landslides cluster, as after a storm or an earthquake). From its source the scar is traced
downhill along the DEM gradient (smoothed direction, so it is elongated along the fall line)
until its hashed length or flatter ground (< ``MIN_RUN_SLOPE``) stops it; the scar is the union
of capsules around the trace, narrow at the scarp and wider in the body and deposit.

Everything depends on the seed and the cell index only, so a window needs just the landslides of
the cells within ``REACH`` pixels of it, and gets the same ones whatever its extent.
"""

from dataclasses import dataclass

import numpy as np

from simulator.noise import smoothstep, uniform, value_noise_at
from simulator.relief import PIXEL

CELL = 64
CANDIDATES = 6
STEP = 2.0
MAX_STEPS = 30
MAX_RADIUS = 7.0
REACH = int(STEP * MAX_STEPS + MAX_RADIUS * 1.2 + 2)
MIN_SOURCE_SLOPE = 30.0
MIN_RUN_SLOPE = 18.0
ACCEPT = 1.0


@dataclass(frozen=True)
class Landslides:
    """Traced landslides: ``points`` (n, MAX_STEPS+1, 2) global (row, col), ``radii`` (n, S+1),
    ``n_points`` (n,) used points per trace, ``gain`` (n,) brightness, ``wet`` (n,) SWIR factor."""

    points: np.ndarray
    radii: np.ndarray
    n_points: np.ndarray
    gain: np.ndarray
    wet: np.ndarray

    def __len__(self) -> int:
        return len(self.gain)


def _candidates(seed: int, r0: int, r1: int, c0: int, c1: int) -> dict[str, np.ndarray]:
    """Hashed parameters of every candidate of cells [r0, r1) x [c0, c1), in global order."""
    cr, cc, k = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), np.arange(CANDIDATES),
                            indexing="ij")
    cr, cc, k = cr.ravel(), cc.ravel(), k.ravel()
    kk = cc * CANDIDATES + k  # one hash stream per candidate

    def u(key: int) -> np.ndarray:
        return uniform(seed, 100 + key, cr, kk).astype(np.float64)

    return {
        "row": (cr + u(0)) * CELL, "col": (cc * 1.0 + u(1)) * CELL, "accept": u(2),
        "length": 20.0 + 40.0 * u(3), "radius": 2.5 + (MAX_RADIUS - 2.5) * u(4),
        "gain": 0.85 + 0.3 * u(5), "wet": 0.9 + 0.2 * u(6),
    }


@dataclass(frozen=True)
class TerrainGrid:
    """Terrain rasters on a window grown by ``HALO`` px: what tracing needs, window-independent
    pixel by pixel. ``dzdr``/``dzdc`` in m/m; (row0, col0) is the global index of [0, 0]."""

    row0: int
    col0: int
    dem: np.ndarray
    mountainness: np.ndarray
    treeline: np.ndarray
    dzdr: np.ndarray
    dzdc: np.ndarray

    def sample(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bilinear (dz/drow, dz/dcol) at float global points (which must lie on the grid)."""
        y = rows - self.row0
        x = cols - self.col0
        iy = np.floor(y).astype(np.int64)
        ix = np.floor(x).astype(np.int64)
        ty, tx = y - iy, x - ix
        out = []
        for g in (self.dzdr, self.dzdc):
            top = g[iy, ix] * (1 - tx) + g[iy, ix + 1] * tx
            bot = g[iy + 1, ix] * (1 - tx) + g[iy + 1, ix + 1] * tx
            out.append(top * (1 - ty) + bot * ty)
        return out[0], out[1]

    def at(self, layer: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Nearest-pixel value of one of the grid's layers at float global points."""
        iy = np.floor(rows - self.row0 + 0.5).astype(np.int64)
        ix = np.floor(cols - self.col0 + 0.5).astype(np.int64)
        return layer[iy, ix].astype(np.float64)


HALO = REACH + int(STEP * MAX_STEPS) + 3
"""Margin of terrain a window needs around it to trace every landslide that can touch it."""


def landslides_near(seed: int, grid: TerrainGrid, row0: int, col0: int, height: int,
                    width: int) -> Landslides:
    """The landslides that can touch the window (sources within ``REACH`` px of it).

    ``grid`` must cover the window grown by ``HALO`` px.
    """
    r0 = (row0 - REACH) // CELL
    r1 = (row0 + height + REACH) // CELL + 1
    c0 = (col0 - REACH) // CELL
    c1 = (col0 + width + REACH) // CELL + 1
    cand = _candidates(seed, r0, r1, c0, c1)
    rows, cols = cand["row"], cand["col"]
    near = ((rows >= row0 - REACH) & (rows < row0 + height + REACH)
            & (cols >= col0 - REACH) & (cols < col0 + width + REACH))
    cand = {k: v[near] for k, v in cand.items()}
    rows, cols = cand["row"], cand["col"]
    gr, gc = grid.sample(rows, cols)
    slope = np.degrees(np.arctan(np.hypot(gr, gc)))
    trigger = 0.25 + 0.75 * smoothstep(0.4, 0.6, value_noise_at(seed, 40, rows, cols, 1024))
    ok = (slope > MIN_SOURCE_SLOPE) & (cand["accept"] < ACCEPT * trigger)
    ok &= grid.at(grid.mountainness, rows, cols) > 0.3
    ok &= grid.at(grid.dem, rows, cols) < grid.at(grid.treeline, rows, cols) + 100.0
    idx = np.flatnonzero(ok)
    return _trace(seed, grid, {k: v[idx] for k, v in cand.items()}, gr[idx], gc[idx])


def _trace(seed: int, grid: TerrainGrid, cand: dict[str, np.ndarray], gr: np.ndarray,
           gc: np.ndarray) -> Landslides:
    n = len(cand["row"])
    pts = np.zeros((n, MAX_STEPS + 1, 2))
    pos = np.stack([cand["row"], cand["col"]], axis=1)
    pts[:, 0] = pos
    g = np.hypot(gr, gc) + 1e-12
    d = -np.stack([gr / g, gc / g], axis=1)
    n_steps = np.minimum(MAX_STEPS, np.round(cand["length"] / STEP)).astype(int)
    n_points = np.ones(n, dtype=int)
    active = np.ones(n, dtype=bool)
    for s in range(1, MAX_STEPS + 1):
        active &= n_steps >= s
        if not active.any():
            pts[:, s:] = pts[:, s - 1:s]
            break
        pos = pos + STEP * d * active[:, None]
        pts[:, s] = pos
        n_points += active
        gr, gc = grid.sample(pos[:, 0], pos[:, 1])
        g = np.hypot(gr, gc) + 1e-12
        active &= np.degrees(np.arctan(g)) > MIN_RUN_SLOPE
        nd = -np.stack([gr / g, gc / g], axis=1)
        d = 0.6 * d + 0.4 * nd
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
    t = np.arange(MAX_STEPS + 1)[None, :] / np.maximum(n_points - 1, 1)[:, None]
    t = np.minimum(t, 1.0)
    profile = 0.5 + 0.6 * t * (1.6 - t)  # narrow scarp, wider body and deposit
    jitter = np.empty((n, MAX_STEPS + 1))
    for s in range(MAX_STEPS + 1):
        jitter[:, s] = uniform(seed, 200 + s, np.round(cand["row"] * 7).astype(np.int64),
                               np.round(cand["col"] * 7).astype(np.int64))
    radii = cand["radius"][:, None] * profile * (0.85 + 0.3 * jitter)
    return Landslides(pts, radii, n_points, cand["gain"], cand["wet"])


def rasterize(ls: Landslides, row0: int, col0: int, height: int,
              width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scar bool, gain float32, wet float32) on the window; later landslides win overlaps.

    Pixel (r, c) is covered when its centre lies within the interpolated radius of a segment of
    the trace: pure geometry in global coordinates, so identical in any window.
    """
    scar = np.zeros((height, width), dtype=bool)
    gain = np.ones((height, width), dtype=np.float32)
    wet = np.ones((height, width), dtype=np.float32)
    for i in range(len(ls)):
        p = ls.points[i, : ls.n_points[i]]
        r = ls.radii[i, : ls.n_points[i]]
        rmax = r.max()
        ra = max(int(np.floor(p[:, 0].min() - rmax)), row0)
        rb = min(int(np.ceil(p[:, 0].max() + rmax)) + 1, row0 + height)
        ca = max(int(np.floor(p[:, 1].min() - rmax)), col0)
        cb = min(int(np.ceil(p[:, 1].max() + rmax)) + 1, col0 + width)
        if ra >= rb or ca >= cb:
            continue
        y = np.arange(ra, rb, dtype=np.float64)[:, None, None]
        x = np.arange(ca, cb, dtype=np.float64)[None, :, None]
        if len(p) == 1:
            a, b, rr0, rr1 = p[:1], p[:1], r[:1], r[:1]
        else:
            a, b, rr0, rr1 = p[:-1], p[1:], r[:-1], r[1:]
        dy, dx = b[:, 0] - a[:, 0], b[:, 1] - a[:, 1]
        ll = dy * dy + dx * dx
        s = ((y - a[:, 0]) * dy + (x - a[:, 1]) * dx) / np.where(ll > 0, ll, 1.0)
        s = np.clip(s, 0.0, 1.0)
        dist = np.hypot(y - (a[:, 0] + s * dy), x - (a[:, 1] + s * dx))
        inside = (dist <= rr0 + s * (rr1 - rr0)).any(axis=2)
        sub = (slice(ra - row0, rb - row0), slice(ca - col0, cb - col0))
        scar[sub] |= inside
        gain[sub][inside] = ls.gain[i]
        wet[sub][inside] = ls.wet[i]
    return scar, gain, wet


def length_m(ls: Landslides) -> np.ndarray:
    """Run-out length of each landslide in metres (for summaries)."""
    return (ls.n_points - 1) * STEP * PIXEL
