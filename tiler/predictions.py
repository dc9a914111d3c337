"""The prediction arrays inside a tile store: created before inference, read back by stitching.

Inference writes `probability` one 1024 x 1024 block (a whole shard) at a time and then sets that
block's flag in `predicted`; resuming rests on those flags alone, never on which chunks exist.
Arrays made another way (another model, TTA, halo, harmonisation, ...) are reset, not mixed.
"""

import json
from pathlib import Path

import numpy as np
import zarr

from tiler.errors import StoreError
from tiler.grid import Grid
from tiler.store import CODEC, open_group, store_attrs, store_grid

PROBABILITY = "probability"
PREDICTED = "predicted"
CHANGE = "change"
"""(layer, y, x) float32: ``tiler.change.LAYERS`` of each pixel, when a pre-event scene is
given; remade by every run (it depends on the pre-event scene, not on the model)."""
IDENTITY = "identity"
"""The attribute of `probability` that holds the whole identity of its predictions."""


def complete_grid(path: str | Path) -> Grid:
    """The grid of a finished tile store, or StoreError naming it."""
    if not store_attrs(path).get("complete"):
        raise StoreError(f"{path}: tile store is incomplete; re-run the tile job to finish it")
    return store_grid(path)


def prepare_predictions(store: str | Path, grid: Grid, identity: dict) -> list[tuple[int, int]]:
    """Create (or keep, when they were made the same way) the prediction arrays.

    ``identity`` is everything that changes the probabilities (model id, TTA, halo, the store's
    convention, harmonisation scale and offset, ...), JSON-serialisable: blocks predicted under
    another identity are never mixed with this run's. Returns the blocks still to predict, in
    row-major order.
    """
    group = open_group(store, mode="r+")
    identity = json.loads(json.dumps(identity))  # the form the attributes read back in
    existing = PROBABILITY in group and PREDICTED in group
    if existing and dict(group[PROBABILITY].attrs).get(IDENTITY) == identity:
        flags = group[PREDICTED][:]
    else:
        for name in (PROBABILITY, PREDICTED):
            if name in group:
                del group[name]
        _create(group, grid, identity)
        flags = np.zeros((grid.n_block_rows, grid.n_block_cols), dtype=np.uint8)
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(flags == 0), strict=True)]


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


def _create(group: zarr.Group, grid: Grid, identity: dict) -> None:
    tile = grid.tile
    prob = group.create_array(
        PROBABILITY,
        shape=(grid.padded_height, grid.padded_width),
        chunks=(tile, tile),
        shards=(grid.block, grid.block),
        dtype="float32",
        fill_value=np.nan,
        compressors=CODEC,
        dimension_names=("y", "x"),
    )
    prob.attrs.update({**identity, IDENTITY: identity})
    group.create_array(
        PREDICTED,
        shape=(grid.n_block_rows, grid.n_block_cols),
        chunks=(1, 1),
        dtype="uint8",
        fill_value=0,
        dimension_names=("block_row", "block_col"),
    )



def prepare_change(store: str | Path, grid: Grid, layers: int) -> None:
    """A fresh ``change`` array (NaN), replacing any of an earlier run."""
    group = open_group(store, mode="r+")
    if CHANGE in group:
        del group[CHANGE]
    group.create_array(
        CHANGE,
        shape=(layers, grid.padded_height, grid.padded_width),
        chunks=(layers, grid.tile, grid.tile),
        shards=(layers, grid.block, grid.block),
        dtype="float32",
        fill_value=np.nan,
        compressors=CODEC,
        dimension_names=("layer", "y", "x"),
    )


def write_block_change(store: str | Path, grid: Grid, row: int, col: int,
                       change: np.ndarray) -> None:
    """Write block (row, col) of ``change`` (a whole shard)."""
    win = grid.block_window(row, col)
    group = zarr.open_group(str(store), mode="r+", zarr_format=3)
    group[CHANGE][:, win.row_off:win.row_off + win.height,
                  win.col_off:win.col_off + win.width] = change


def has_change(store: str | Path) -> bool:
    return CHANGE in open_group(store)
