"""The prediction store: a Zarr v3 group of its own beside the tile store, on the same grid.

Data flows one way: the tile store (an input, never written by inference) -> this store ->
rasters and polygons. It holds ``probability`` (written one 1024 x 1024 block, a whole shard, at
a time, then that block's flag in ``predicted``: resuming rests on those flags alone) and, when a
pre-event scene is given, ``change``. The group's ``provenance`` attribute is the identity of the
predictions (``common.provenance``: tiles, model, TTA, halo, harmonisation); ``change`` keeps
its own. Arrays made from another identity are reset, never mixed or reused.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import numpy as np
import zarr

from common import provenance
from common.errors import StoreError
from common.provenance import Identity
from tiler.grid import Grid
from tiler.store import CODEC, store_attrs, store_grid

PROBABILITY = "probability"
PREDICTED = "predicted"
CHANGE = "change"
"""(layer, y, x) float32: ``products.change.LAYERS`` of each pixel, when a pre-event scene is
given; its ``provenance`` attribute names the tiles of both dates."""
KIND = "landslide-predictions"


def complete_grid(path: str | Path) -> Grid:
    """The grid of a finished tile store, or StoreError naming it."""
    if not store_attrs(path).get("complete"):
        raise StoreError(f"{path}: tile store is incomplete; re-run the tile job to finish it")
    return store_grid(path)


def open_predictions(path: str | Path, mode: str = "r") -> zarr.Group:
    """The prediction store at ``path``, or StoreError naming it."""
    try:
        group = zarr.open_group(str(path), mode=mode, zarr_format=3)
    except Exception as exc:  # noqa: BLE001 - any zarr failure is a bad store
        raise StoreError(f"{path}: cannot open the prediction store ({exc})") from exc
    if group.attrs.get("kind") != KIND:
        raise StoreError(f"{path}: not a prediction store")
    return group


def is_prediction_store(path: str | Path) -> bool:
    try:
        open_predictions(path)
    except StoreError:
        return False
    return True


def prepare_predictions(path: str | Path, grid: Grid,
                        identity: Identity) -> list[tuple[int, int]]:
    """Create the prediction store at ``path`` (or keep it, when its predictions were made from
    exactly ``identity``). A store of another identity is replaced; a folder that is not a
    prediction store is refused. Returns the blocks still to predict, in row-major order."""
    path = Path(path)
    if path.exists():
        if not is_prediction_store(path):
            raise StoreError(f"{path}: exists and is not a prediction store: will not replace "
                             "it")
        group = open_predictions(path)
        if provenance.matches(group.attrs.get(provenance.ATTRIBUTE), identity):
            flags = np.asarray(group[PREDICTED][...])
            return [(int(r), int(c)) for r, c in zip(*np.nonzero(flags == 0), strict=True)]
        shutil.rmtree(path)
    _create(path, grid, identity)
    return list(grid.blocks())


def is_predicted(store: str | Path, row: int, col: int) -> bool:
    """Whether block (row, col) of the store's probabilities is written (its flag is set)."""
    return bool(zarr.open_group(str(store), mode="r", zarr_format=3)[PREDICTED][row, col])


def write_block_probability(store: str | Path, grid: Grid, row: int, col: int,
                            probability: np.ndarray) -> None:
    """Write block (row, col) of ``probability`` (a whole shard), then set its flag: a task
    that dies part-way leaves the flag unset and the block is simply predicted again."""
    win = grid.block_window(row, col)
    group = zarr.open_group(str(store), mode="r+", zarr_format=3)
    group[PROBABILITY][win.row_off:win.row_off + win.height,
                       win.col_off:win.col_off + win.width] = probability
    group[PREDICTED][row, col] = 1


def read_block_probability(store: str | Path, grid: Grid, row: int, col: int) -> np.ndarray:
    """Block (row, col) of ``probability`` (NaN where nothing was predicted)."""
    win = grid.block_window(row, col)
    prob = zarr.open_group(str(store), mode="r", zarr_format=3)[PROBABILITY]
    return np.asarray(prob[win.row_off:win.row_off + win.height,
                           win.col_off:win.col_off + win.width])


def _create(path: Path, grid: Grid, identity: Identity) -> None:
    """The empty store, built under a temporary sibling name and renamed into place."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    group = zarr.open_group(str(tmp), mode="w-", zarr_format=3)
    group.attrs.update({"kind": KIND, provenance.ATTRIBUTE: identity.as_dict(),
                        "height": grid.height, "width": grid.width,
                        "crs_wkt": grid.crs_wkt, "transform": list(grid.transform),
                        "tile_size": grid.tile, "block_size": grid.block})
    tile = grid.tile
    group.create_array(
        PROBABILITY,
        shape=(grid.padded_height, grid.padded_width),
        chunks=(tile, tile),
        shards=(grid.block, grid.block),
        dtype="float32",
        fill_value=np.nan,
        compressors=CODEC,
        dimension_names=("y", "x"),
    )
    group.create_array(
        PREDICTED,
        shape=(grid.n_block_rows, grid.n_block_cols),
        chunks=(1, 1),
        dtype="uint8",
        fill_value=0,
        dimension_names=("block_row", "block_col"),
    )
    tmp.rename(path)


def prepare_change(store: str | Path, grid: Grid, layers: int, identity: Identity) -> None:
    """A fresh ``change`` array (NaN) made from ``identity``, replacing any of an earlier run
    (every block of it is written again by this run)."""
    group = open_predictions(store, mode="r+")
    if CHANGE in group:
        del group[CHANGE]
    change = group.create_array(
        CHANGE,
        shape=(layers, grid.padded_height, grid.padded_width),
        chunks=(layers, grid.tile, grid.tile),
        shards=(layers, grid.block, grid.block),
        dtype="float32",
        fill_value=np.nan,
        compressors=CODEC,
        dimension_names=("layer", "y", "x"),
    )
    change.attrs[provenance.ATTRIBUTE] = identity.as_dict()


def drop_change(store: str | Path) -> None:
    """Remove the ``change`` array (a run without a pre-event scene): it can never be read as
    this run's."""
    group = open_predictions(store, mode="r+")
    if CHANGE in group:
        del group[CHANGE]


def write_block_change(store: str | Path, grid: Grid, row: int, col: int,
                       change: np.ndarray) -> None:
    """Write block (row, col) of ``change`` (a whole shard)."""
    win = grid.block_window(row, col)
    group = zarr.open_group(str(store), mode="r+", zarr_format=3)
    group[CHANGE][:, win.row_off:win.row_off + win.height,
                  win.col_off:win.col_off + win.width] = change


def change_identity(store: str | Path) -> Identity | None:
    """The identity the store's ``change`` array was made from (None: there is none)."""
    group = open_predictions(store)
    if CHANGE not in group:
        return None
    return provenance.from_dict(group[CHANGE].attrs.get(provenance.ATTRIBUTE))
