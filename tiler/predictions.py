"""The prediction arrays inside a tile store: created before inference, read back by stitching.

Inference writes `probability` one 1024 x 1024 block (a whole shard) at a time and then sets that
block's flag in `predicted`; resuming rests on those flags alone, never on which chunks exist.
Arrays made by another model (or with other TTA settings) are reset rather than mixed.
"""

from dataclasses import dataclass

import numpy as np
import zarr

from tiler.errors import StoreError

PROBABILITY = "probability"
PREDICTED = "predicted"


@dataclass(frozen=True)
class StoreGrid:
    """What stitching needs to know of a store: its grid and its block layout."""

    path: str
    height: int
    width: int
    padded_height: int
    padded_width: int
    block: int
    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    convention: str
    bands: tuple[str, ...]

    @property
    def block_rows(self) -> int:
        return -(-self.padded_height // self.block)

    @property
    def block_cols(self) -> int:
        return -(-self.padded_width // self.block)

    def block_window(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) of block (row, col) in padded-store pixels."""
        y0, x0 = row * self.block, col * self.block
        y1 = min(y0 + self.block, self.padded_height)
        return y0, y1, x0, min(x0 + self.block, self.padded_width)


def store_grid(path: str) -> StoreGrid:
    """Read the grid of a complete tile store, or raise StoreError naming it."""
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
        image = group["image"]
    except Exception as exc:  # zarr raises several types for a missing or foreign folder
        raise StoreError(f"{path}: not a tile store ({exc.__class__.__name__}: {exc})") from exc
    if not attrs.get("complete"):
        raise StoreError(f"{path}: tile store is incomplete; re-run the tile job to finish it")
    _, padded_h, padded_w = image.shape
    return StoreGrid(
        path=str(path),
        height=int(attrs["height"]),
        width=int(attrs["width"]),
        padded_height=int(padded_h),
        padded_width=int(padded_w),
        block=int(attrs["block_size"]),
        crs_wkt=str(attrs["crs_wkt"]),
        transform=tuple(float(v) for v in attrs["transform"][:6]),
        convention=str(attrs["convention"]),
        bands=tuple(attrs["bands"]),
    )


def prepare_predictions(grid: StoreGrid, model_id: str, tta: bool) -> list[tuple[int, int]]:
    """Create (or keep, when they belong to this model) the prediction arrays.

    Returns the blocks still to predict, in row-major order.
    """
    group = zarr.open_group(grid.path, mode="r+")
    identity = {"model_id": model_id, "tta": bool(tta)}
    existing = PROBABILITY in group and PREDICTED in group
    if existing and {k: group[PROBABILITY].attrs.get(k) for k in identity} == identity:
        flags = group[PREDICTED][:]
    else:
        for name in (PROBABILITY, PREDICTED):
            if name in group:
                del group[name]
        _create(group, grid, identity)
        flags = np.zeros((grid.block_rows, grid.block_cols), dtype=np.uint8)
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(flags == 0), strict=True)]


def _create(group: zarr.Group, grid: StoreGrid, identity: dict) -> None:
    tile = min(128, grid.block)
    prob = group.create_array(
        PROBABILITY,
        shape=(grid.padded_height, grid.padded_width),
        chunks=(tile, tile),
        shards=(grid.block, grid.block),
        dtype="float32",
        fill_value=np.nan,
        compressors=zarr.codecs.ZstdCodec(level=3),
        dimension_names=("y", "x"),
    )
    prob.attrs.update(identity)
    group.create_array(
        PREDICTED,
        shape=(grid.block_rows, grid.block_cols),
        chunks=(1, 1),
        dtype="uint8",
        fill_value=0,
        dimension_names=("block_row", "block_col"),
    )


def predictions_complete(grid: StoreGrid) -> bool:
    group = zarr.open_group(grid.path, mode="r")
    return PREDICTED in group and bool(np.all(group[PREDICTED][:] == 1))
