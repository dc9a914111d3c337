"""Whole synthetic scenes: a 14-band GeoTIFF and its ground truth, written block by block.

The scene is a window of the simulated world (a third zone, apart from the patch sets), placed
by a seeded search for a mountainous spot, on a UTM grid at 10 m. Blocks of ``BLOCK`` x
``BLOCK`` pixels are simulated in worker threads (numpy releases the GIL in its array loops; no
pickling of 60 MB blocks between processes, and safe in a parent that has TensorFlow loaded)
with a bounded number in flight, so memory stays at a few blocks whatever the scene size, and
written in order; both files are written under temporary names and renamed at the end. The
swath edge of a real granule is imitated by a slanted strip of nodata (NaN in all 14 bands, 255
in the truth) along one side.
"""

import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from common import owned
from common.errors import SimulatorError
from simulator import JOB
from simulator.l4s_release import to_l4s_release
from simulator.patches import ZONE
from simulator.relief import PIXEL
from simulator.worlds import DEFAULT_WORLD, check_world, mountains_of, window_of
from tiler.bands import BANDS, BLOCK, CONVENTION, CONVENTION_TAG, CONVENTIONS

DEFAULT_HEIGHT = 1500
DEFAULT_WIDTH = 1300
CRS = "EPSG:32645"
X0, Y0 = 399965.0, 3100020.0
"""Upper-left corner (metres, UTM 45N): a realistic origin, deliberately not on a 10 m multiple."""
SCENE_ZONE = (3 * ZONE, 0)
TRUTH_NODATA = 255
TILE_PX = 256
MAX_SIDE = 50_000


@dataclass(frozen=True)
class SceneInfo:
    """What ``write_scene`` wrote: paths, grid, and where in the world the scene lies."""

    scene: Path
    truth: Path
    crs: str
    transform: Affine
    height: int
    width: int
    seed: int
    world_row0: int
    world_col0: int
    nodata_fraction: float
    landslide_fraction: float
    """Landslide pixels / valid pixels."""


def scene_origin(seed: int, height: int, width: int,
                 world: str = DEFAULT_WORLD) -> tuple[int, int]:
    """Seeded world (row, col) of the scene's top-left pixel: the most mountainous of a few
    candidates, judged on a 5 x 5 grid of points, but keeping some plain if there is any."""
    mountainness_at = mountains_of(world)
    rng = np.random.default_rng([seed, 3])
    best, best_score = (0, 0), -1.0
    fr = np.linspace(0.1, 0.9, 5)
    for _ in range(24):
        r = SCENE_ZONE[0] + int(rng.integers(0, ZONE))
        c = SCENE_ZONE[1] + int(rng.integers(0, ZONE))
        rows = (r + fr[:, None] * height + 0 * fr[None, :]).ravel()
        cols = (c + 0 * fr[:, None] + fr[None, :] * width).ravel()
        m = mountainness_at(seed, rows, cols)
        score = float(np.mean(m)) - abs(float(np.mean(m)) - 0.8)
        if score > best_score:
            best, best_score = (r, c), score
    return best


def swath_nodata(seed: int, row0: int, col0: int, height: int, width: int,
                 scene_height: int, scene_width: int) -> np.ndarray:
    """Boolean nodata mask of a window of the scene (scene pixel indices): a slanted swath
    edge covering about 10% of the scene along its left or right side."""
    rng = np.random.default_rng([seed, 4])
    f_top, f_bottom = rng.uniform(0.04, 0.09), rng.uniform(0.11, 0.17)
    left = bool(rng.random() < 0.5)
    rows = np.arange(row0, row0 + height, dtype=np.float64)[:, None] + 0.5
    edge = (f_top + (f_bottom - f_top) * rows / scene_height) * scene_width
    cols = np.arange(col0, col0 + width, dtype=np.float64)[None, :] + 0.5
    return cols < edge if left else cols > scene_width - edge


def _block(job: tuple[int, int, int, int, int, int, int, int, int, str, str]) -> tuple[
        np.ndarray, ...]:
    seed, wr, wc, r, c, h, w, sh, sw, convention, world = job
    img, mask = window_of(world)(seed, wr + r, wc + c, h, w)
    nodata = swath_nodata(seed, r, c, h, w, sh, sw)
    img[:, nodata] = np.nan
    mask[nodata] = TRUTH_NODATA
    if convention != CONVENTION:
        img = to_l4s_release(img)
    return img, mask


def _check(out_dir: Path, height: int, width: int, seed: int, convention: str) -> None:
    if convention not in CONVENTIONS:
        raise SimulatorError(f"convention must be one of {', '.join(CONVENTIONS)}, got "
                             f"{convention!r}")
    if not 0 <= seed < 2**32:
        raise SimulatorError(f"seed must be in [0, 2**32), got {seed}")
    for name, v in (("height", height), ("width", width)):
        if not 1 <= v <= MAX_SIDE:
            raise SimulatorError(f"{name} must be between 1 and {MAX_SIDE}, got {v}")
    if out_dir.exists() and not out_dir.is_dir():
        raise SimulatorError(f"{out_dir} exists and is not a directory")


def write_scene(out_dir: str | os.PathLike, height: int = DEFAULT_HEIGHT,
                width: int = DEFAULT_WIDTH, seed: int = 0, workers: int | None = None,
                block: int = BLOCK, convention: str = CONVENTION,
                world: str = DEFAULT_WORLD) -> SceneInfo:
    """Write ``OUT/scene.tif`` (14-band float32, tiled 256, zstd, NaN nodata, band descriptions
    ``BANDS``) and ``OUT/truth.tif`` (uint8 0/1, 255 = nodata) on one UTM 10 m grid.

    ``convention`` (one of ``CONVENTIONS``) is the units of scene.tif, declared in its
    ``CONVENTION_TAG`` metadata item: ``s2-reflectance-v1``, or ``l4s-release`` (the same
    pixels through ``simulator.l4s_release.to_l4s_release``). truth.tif is the same for both.
    ``world``: one of ``simulator.worlds.WORLDS`` (tagged ``world`` when not the default).

    OUT must be new, empty, or written by ``jobs.synth`` before, and an existing scene.tif or
    truth.tif must be its own (``common.owned``): a file of the user's is never replaced.

    Memory is bounded by ``workers + 2`` blocks of ``block`` x ``block`` x 14 float32 (about
    60 MB each at 1024) plus each worker's scratch, whatever the scene size.
    """
    out = Path(out_dir)
    _check(out, height, width, seed, convention)
    check_world(world)
    if block % TILE_PX:
        raise SimulatorError(f"block must be a multiple of {TILE_PX}, got {block}")
    owned.claim_folder(out, JOB)
    if workers is None:
        workers = min(4, len(os.sched_getaffinity(0)))
    wr, wc = scene_origin(seed, height, width, world)
    transform = Affine(PIXEL, 0.0, X0, 0.0, -PIXEL, Y0)
    common = {"driver": "GTiff", "height": height, "width": width, "crs": CRS,
              "transform": transform, "tiled": True, "blockxsize": TILE_PX,
              "blockysize": TILE_PX, "num_threads": "ALL_CPUS"}
    jobs = [(seed, wr, wc, r, c, min(block, height - r), min(block, width - c), height, width,
             convention, world) for r in range(0, height, block) for c in range(0, width, block)]
    n_valid = n_slide = 0
    with ExitStack() as outputs:  # truth.tif is renamed into place last
        truth_tmp = outputs.enter_context(owned.output_file(out / "truth.tif", JOB))
        scene_tmp = outputs.enter_context(owned.output_file(out / "scene.tif", JOB))
        with rasterio.Env(GDAL_CACHEMAX=256), \
                rasterio.open(scene_tmp, "w", **common, count=len(BANDS), dtype="float32",
                              nodata=float("nan"), compress="zstd", zstd_level=1, predictor=3,
                              interleave="band", bigtiff="IF_SAFER") as dst, \
                rasterio.open(truth_tmp, "w", **common, count=1, dtype="uint8",
                              nodata=TRUTH_NODATA, compress="deflate") as tdst:
            for i, name in enumerate(BANDS, start=1):
                dst.set_band_description(i, name)
            tdst.set_band_description(1, "landslide")
            tags = {"seed": str(seed), "world_row0": str(wr), "world_col0": str(wc),
                    "simulator": "simulator.scene"}
            if world != DEFAULT_WORLD:
                tags["world"] = world
            dst.update_tags(**tags, convention=convention, **{CONVENTION_TAG: convention})
            tdst.update_tags(**tags)
            for job, (img, mask) in zip(jobs, _run(jobs, workers), strict=True):
                window = Window(job[4], job[3], job[6], job[5])
                dst.write(img, window=window)
                tdst.write(mask, 1, window=window)
                n_valid += int(np.count_nonzero(mask != TRUTH_NODATA))
                n_slide += int(np.count_nonzero(mask == 1))
    return SceneInfo(out / "scene.tif", out / "truth.tif", CRS, transform, height, width, seed,
                     wr, wc, 1.0 - n_valid / (height * width), n_slide / max(n_valid, 1))


def _run(jobs: list, workers: int) -> Iterator[tuple[np.ndarray, ...]]:
    """Results of ``_block`` in order, at most ``workers + 1`` blocks in flight."""
    if workers <= 1:
        for job in jobs:
            yield _block(job)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque[Future] = deque()
        it = iter(jobs)
        for job in it:
            pending.append(pool.submit(_block, job))
            if len(pending) > workers:
                break
        while pending:
            yield pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(_block, nxt))
