"""The task Dask runs for each 1024-px block of a scene: predict it (unless the store already
holds it), write it back, and make the block's share of the products while it is in memory.

Seam-free by construction: each block is predicted from the block plus a halo of context on every
side that lies inside the scene (the outer edge of the scene gets no halo, as in one pass over
the whole scene), and only the centre is kept. A halo of 32 px around a 1024 px block costs
(1088 / 1024)^2 = 1.13 times the compute of non-overlapping tiles.

The block's products: its landslide polygons in pixel coordinates of the scene
(``products.polygons.block_polygons``; merged across block borders at the end) and its pixels of
the preview. They are made for every block, predicted now or by an earlier run, so a resumed job
gives the same maps.
"""

from __future__ import annotations

import time
from dataclasses import astuple, dataclass, field

import numpy as np

from common.errors import reaches_client
from products.change import change_block
from products.polygons import block_polygons
from products.preview import decimate_block
from tiler.grid import Grid, block_context
from tiler.predictions import (
    is_predicted,
    read_block_probability,
    write_block_change,
    write_block_probability,
)
from tiler.store import read_window
from unet.predict import cached_model, normalized_window, predict_window


@dataclass(frozen=True)
class BlockJob:
    """Everything a worker needs to map a block; small and picklable."""

    store: str
    """The tile store: read only."""
    predictions: str
    """The prediction store (``tiler.predictions``) the block's probabilities go to."""
    grid: Grid
    model_dir: str
    threshold: float
    min_area_m2: float
    bands: tuple[str, ...]
    preview_step: int
    halo: int = 32
    tta: bool = False
    intra_op_threads: int | None = None
    scale: tuple[float, ...] | None = None
    """Optional per-band harmonisation applied before normalisation: x * scale + offset."""
    offset: tuple[float, ...] | None = None
    model_key: str | None = None
    """The digest of the model identity the job was planned with (``unet.bundle``); the worker
    refuses to predict with another. None: whatever model_dir holds when the worker looks."""
    pre_store: str | None = None
    """The pre-event scene's store, on the same grid: the block's change layers are made."""


@dataclass
class BlockTimes:
    """What block tasks did and where their time went (seconds, on the workers, summed)."""

    tiles: int = 0
    load_s: float = 0.0
    """Importing TensorFlow and loading the model: paid by the first block on each worker."""
    read_s: float = 0.0
    prepare_s: float = 0.0
    model_s: float = 0.0
    write_s: float = 0.0
    products_s: float = 0.0
    """Threshold, polygons and preview pixels of the block."""

    def __add__(self, other: BlockTimes) -> BlockTimes:
        return BlockTimes(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


@dataclass
class BlockResult:
    row: int
    col: int
    times: BlockTimes
    polygons: list[bytes] = field(default_factory=list)
    """WKB polygons >= threshold in pixel coordinates of the scene (block_polygons)."""
    preview: tuple[np.ndarray, np.ndarray] | None = None
    span: tuple[float, float] = (0.0, 0.0)
    """Wall-clock start and end of the task (time.time()), for the job's overlap profile."""


class _Laps:
    def __init__(self) -> None:
        self.last = time.perf_counter()

    def __call__(self) -> float:
        now = time.perf_counter()
        spent, self.last = now - self.last, now
        return spent


@reaches_client
def map_block(job: BlockJob, row: int, col: int, *after: object) -> BlockResult:
    """Predict block (row, col) of job.store into job.predictions (unless its flag says an
    earlier run did), then the block's products. ``after``: the tiling tasks of the block and
    its neighbours, so that Dask runs this once its halo is in the store (values unused).

    Idempotent: the flag is set only after the block's shard is written, so a task that dies
    part-way is simply run again.
    """
    start = time.time()
    times, lap = BlockTimes(), _Laps()
    grid = job.grid
    if is_predicted(job.predictions, row, col):
        p = read_block_probability(job.predictions, grid, row, col)
        win = grid.block_window(row, col)
        image, valid = read_window(job.store, slice(win.row_off, win.row_off + win.height),
                                   slice(win.col_off, win.col_off + win.width))
        times.read_s += lap()
    else:
        p, image, valid = _predict(job, row, col, times, lap)
    if job.pre_store is not None:
        win = grid.block_window(row, col)
        pre, pre_valid = read_window(job.pre_store, slice(win.row_off, win.row_off + win.height),
                                     slice(win.col_off, win.col_off + win.width))
        write_block_change(job.predictions, grid, row, col,
                           change_block(image, valid, pre, pre_valid, list(job.bands)))
    pieces = block_polygons(p, job.threshold, grid, row, col, job.min_area_m2)
    preview = decimate_block(image, valid, grid, row, col, job.preview_step, list(job.bands))
    times.products_s += lap()
    return BlockResult(row, col, times, pieces, preview, (start, time.time()))


def _predict(job: BlockJob, row: int, col: int, times: BlockTimes,
             lap: _Laps) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The block's probabilities (written to the store), and its image and valid."""
    grid = job.grid
    (ya, yb, xa, xb), (cy0, cy1, cx0, cx1) = block_context(
        row, col, grid.block, job.halo, grid.padded_height, grid.padded_width)
    image, valid = read_window(job.store, slice(ya, yb), slice(xa, xb))
    ok = valid.astype(bool)
    block_image = image[:, cy0:cy1, cx0:cx1].copy()
    block_valid = valid[cy0:cy1, cx0:cx1]
    p = np.full(ok.shape, np.nan, dtype=np.float32)
    times.read_s += lap()
    if ok[cy0:cy1, cx0:cx1].any():
        model, bundle = cached_model(job.model_dir, job.intra_op_threads, job.model_key)
        times.load_s += lap()
        x = normalized_window(image, ok, bundle, job.scale, job.offset)
        times.prepare_s += lap()
        p = predict_window(model, x, job.tta)
        p[~ok] = np.nan
        times.model_s += lap()
    p = p[cy0:cy1, cx0:cx1]
    write_block_probability(job.predictions, grid, row, col, p)
    times.write_s += lap()
    tile = grid.tile
    times.tiles = int(-(-(cy1 - cy0) // tile) * -(-(cx1 - cx0) // tile))
    return p, block_image, block_valid
