"""Read one 1024-px block of a scene in the project's convention: 14 bands + validity.

Each band file is read once per block: a plain windowed read when the file is on the scene grid,
otherwise through a ``WarpedVRT`` onto the scene grid (bilinear for data), reading only the
block's window, so no process ever holds more than a few blocks.

Band files stay open between blocks (``open_dataset``: a few handles per worker thread), so
GDAL's block cache keeps each decoded JP2 or GeoTIFF tile for the next block that needs it: a
1024 px tile of a 20 m band serves four 10 m blocks and one of a 60 m band up to 36, and
decoding JPEG 2000 is the tiler's main cost. Closing the file after every block threw the
decoded tiles away.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from common.errors import InputError
from tiler.bands import BANDS
from tiler.grid import Grid
from tiler.masks import apply_mask
from tiler.sources import BandSource, SceneSpec
from tiler.terrain import horn_slope

GDAL_ENV = {
    # Blocks are the parallelism (one task per core), so each decode uses one thread.
    "GDAL_NUM_THREADS": "1",
    # Bytes (rasterio passes an int to GDALSetCacheMax64: the 128 this once said meant 128
    # bytes, no cache at all) per worker process: a row of decoded 20 m and 60 m tiles of every
    # band (about 90 MB on a granule) for each of the worker's threads, kept for the next row.
    "GDAL_CACHEMAX": 384 * 2**20,
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
}
OPEN_PER_THREAD = 32
"""Band files kept open per worker thread (a scene has at most 14 plus its DEM)."""
_OPEN = threading.local()
WARP_MEM_LIMIT_MB = 256
WARP_TOLERANCE_PX = 0.01
"""Error bound of GDAL's approximate transformer (default 0.125 px). Its piecewise-linear
approximation depends on the window read, so with the default two blocks can disagree by
~0.05 m on a reprojected DEM; 0.01 px keeps blocks consistent and closer to the exact warp."""


def _on_grid(ds: rasterio.DatasetReader, grid: Grid) -> bool:
    return (ds.crs == CRS.from_wkt(grid.crs_wkt)
            and np.allclose(tuple(ds.transform)[:6], grid.transform, rtol=0, atol=1e-9))


def read_band(src: BandSource, grid: Grid, window: Window) -> np.ndarray:
    """``window`` (on the padded grid) of one band, converted, float32, NaN = nodata.

    A file that fails to decode (truncated GeoTIFF or JP2, a disk error) raises InputError
    naming the file, so the job's user reads one line, not a worker's traceback."""
    return _converted(_read_file(src, grid, window), src)


def _read_file(src: BandSource, grid: Grid, window: Window) -> np.ndarray:
    """The file's values (float32, NaN off the file) of ``window``, unconverted; InputError
    naming the file, the band and the window when the file cannot be read there."""
    try:
        raw = _read_raw(src, grid, window)
    except (RasterioError, CPLE_BaseError, OSError) as exc:
        error = InputError(
            f"{src.path}: cannot read band {src.index} in the window of {int(window.height)} x "
            f"{int(window.width)} px at row {int(window.row_off)}, col {int(window.col_off)} of "
            f"the scene grid (a corrupt or truncated file? {_reason(exc)})")
    else:
        return raw.astype("float32", copy=False)
    # Raised outside the except block, so without rasterio's errors as its context: they do not
    # unpickle, and a worker's error must travel to the job (common.errors.detached).
    raise error


def _reason(exc: BaseException) -> str:
    """What GDAL said, from the chain of ``exc``: rasterio's own message is often only "Read
    failed. See previous exception for details.", the specifics are in its causes."""
    said: list[str] = []
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        text = (str(link).strip().splitlines() or [type(link).__name__])[0]
        if "See previous exception" not in text and not any(text in s for s in said):
            said.append(text)
        link = link.__cause__ or link.__context__
    if len(said) > 2:
        said = [said[0], said[-1]]  # the first that names the block, and the root
    return "; ".join(said) or type(exc).__name__


def _converted(raw: np.ndarray, src: BandSource) -> np.ndarray:
    """File values in the convention: ``nodata`` -> NaN, (raw + offset) / quantification, then
    x ``unit_scale`` (a DEM in feet). Modifies ``raw``."""
    if src.nodata is not None:
        raw[raw == src.nodata] = np.nan
    if src.offset or src.quantification != 1.0:
        raw = (raw + np.float32(src.offset)) / np.float32(src.quantification)
    if src.unit_scale != 1.0:
        raw = raw * np.float32(src.unit_scale)
    return raw


def open_dataset(path: str) -> rasterio.DatasetReader:
    """``path`` opened for reading, kept open for this thread's later blocks (least recently
    used closed first). A file replaced since (another size or mtime) is opened afresh."""
    handles: OrderedDict = getattr(_OPEN, "handles", None) or OrderedDict()
    _OPEN.handles = handles
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    if key in handles:
        handles.move_to_end(key)
        return handles[key]
    ds = rasterio.open(path)
    handles[key] = ds
    while len(handles) > OPEN_PER_THREAD:
        handles.popitem(last=False)[1].close()
    return ds


def _read_raw(src: BandSource, grid: Grid, window: Window) -> np.ndarray:
    ds = open_dataset(src.path)
    if _on_grid(ds, grid):
        fill = src.nodata if src.nodata is not None else np.nan
        if np.issubdtype(np.dtype(ds.dtypes[src.index - 1]), np.integer) and np.isnan(fill):
            fill = 0
        inside = (window.col_off >= 0 and window.row_off >= 0
                  and window.col_off + window.width <= ds.width
                  and window.row_off + window.height <= ds.height)
        # boundless reads go through a VRT: twice the time, so only where they are needed
        raw = ds.read(src.index, window=window, boundless=not inside, fill_value=fill,
                      out_dtype="float32")
        if not inside:
            # Off the file is no data, whatever the fill (an integer file without nodata):
            # a given grid larger than the scene must not read 0s there as values.
            r0, c0 = int(window.row_off), int(window.col_off)
            raw[:max(0, -r0), :] = np.nan
            raw[max(0, ds.height - r0):, :] = np.nan
            raw[:, :max(0, -c0)] = np.nan
            raw[:, max(0, ds.width - c0):] = np.nan
    else:
        with WarpedVRT(
            ds, crs=CRS.from_wkt(grid.crs_wkt), transform=grid.affine,
            width=grid.padded_width, height=grid.padded_height,
            resampling=Resampling[src.resampling], src_nodata=src.nodata,
            nodata=np.nan, dtype="float32", warp_mem_limit=WARP_MEM_LIMIT_MB,
            tolerance=WARP_TOLERANCE_PX,
        ) as vrt:
            raw = vrt.read(src.index, window=window)
    return raw


def read_dem_and_slope(src: BandSource, grid: Grid, window: Window) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """DEM (bilinear onto the grid) and Horn slope for ``window``.

    The DEM is read with a 1-px halo clipped to the unpadded scene and edge-replicated beyond
    it, so every block gives exactly ``horn_slope`` of the whole scene's DEM: no seams.
    """
    y0, x0 = window.row_off, window.col_off
    y1, x1 = y0 + window.height, x0 + window.width
    r0, r1 = max(y0 - 1, 0), min(y1 + 1, grid.height)
    c0, c1 = max(x0 - 1, 0), min(x1 + 1, grid.width)
    halo = read_band(src, grid, Window(c0, r0, c1 - c0, r1 - r0))
    pad = ((r0 - (y0 - 1), (y1 + 1) - r1), (c0 - (x0 - 1), (x1 + 1) - c1))
    halo = np.pad(halo, pad, mode="edge")
    slope = horn_slope(halo, *grid.res)[1:-1, 1:-1]
    return halo[1:-1, 1:-1], slope


def read_block(spec: SceneSpec, row: int, col: int) -> tuple[np.ndarray, np.ndarray]:
    """Image float32 (14, h, w) (0 where invalid) and valid uint8 (h, w) of block (row, col).

    A pixel is valid when it lies in the unpadded scene, all 14 bands are finite, not every
    spectral band read from a file is 0 there, and the scene's mask (``spec.mask``) does not
    exclude it.
    """
    image, valid, _ = read_block_counts(spec, row, col)
    return image, valid


def read_block_counts(spec: SceneSpec, row: int, col: int) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray | None]:
    """``read_block`` and the block's mask counts (int64 per ``spec.mask.buckets``, over its
    pixels in the unpadded scene; None when the scene has no mask)."""
    grid = spec.grid
    window = grid.block_window(row, col)
    h, w = int(window.height), int(window.width)
    image = np.empty((len(BANDS), h, w), dtype="float32")
    # 0 in every spectral band read from a file is not an Earth surface but a fill that the
    # file does not declare (a swath edge): nodata (tiler.sources.ALL_ZERO_IS_NODATA).
    zero = np.ones((h, w), dtype=bool)
    with rasterio.Env(**GDAL_ENV):
        for i, src in enumerate(spec.bands):
            if isinstance(src, BandSource):
                raw = _read_file(src, grid, window)
                zero &= raw == 0
                image[i] = _converted(raw, src)
            else:
                image[i] = np.float32(src)
        if spec.slope is not None:
            image[12] = read_band(spec.slope, grid, window)
            image[13] = read_band(spec.dem, grid, window)
        else:
            image[13], image[12] = read_dem_and_slope(spec.dem, grid, window)
    valid = np.isfinite(image).all(axis=0)
    if any(isinstance(src, BandSource) for src in spec.bands):
        valid &= ~zero
    scene = np.ones((h, w), dtype=bool)
    scene[max(grid.height - window.row_off, 0):, :] = False
    scene[:, max(grid.width - window.col_off, 0):] = False
    valid &= scene
    counts = None
    if spec.mask is not None:
        m = spec.mask
        src = BandSource(m.path, m.index, nodata=m.nodata, resampling="nearest")
        with rasterio.Env(**GDAL_ENV):
            values = read_band(src, grid, window)
        excluded, counts = apply_mask(values, m, scene)
        valid &= ~excluded
    image[:, ~valid] = 0.0
    return image, valid.astype("uint8"), counts
