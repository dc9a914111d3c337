"""The scene grid: CRS, affine transform, unpadded size, and its tiles and 1024-px blocks.

The one owner of block geometry: a block's window, the window read for it with its halo of
context (``block_context``) and the blocks that halo reaches (``neighbours``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.windows import Window

from tiler.bands import BLOCK, TILE


def _ceil_to(n: int, step: int) -> int:
    return -(-n // step) * step


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid. ``transform`` is the affine (a, b, c, d, e, f) of the top-left
    corner; ``height``/``width`` are the unpadded scene size. Stores pad to a multiple of
    ``tile`` (right/bottom), and one Dask task writes one ``block`` x ``block`` shard."""

    crs_wkt: str
    transform: tuple[float, float, float, float, float, float]
    height: int
    width: int
    tile: int = TILE
    block: int = BLOCK

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def padded_height(self) -> int:
        return _ceil_to(self.height, self.tile)

    @property
    def padded_width(self) -> int:
        return _ceil_to(self.width, self.tile)

    @property
    def n_block_rows(self) -> int:
        return -(-self.padded_height // self.block)

    @property
    def n_block_cols(self) -> int:
        return -(-self.padded_width // self.block)

    @property
    def res(self) -> tuple[float, float]:
        """Pixel size (x, y) in CRS units, both positive."""
        a, b, _, d, e, _ = self.transform
        return float(np.hypot(a, d)), float(np.hypot(b, e))

    def blocks(self) -> list[tuple[int, int]]:
        return [(r, c) for r in range(self.n_block_rows) for c in range(self.n_block_cols)]

    def block_window(self, row: int, col: int) -> Window:
        """The block's window on the padded grid (the last row/column of blocks is shorter)."""
        y0, x0 = row * self.block, col * self.block
        h = min(self.block, self.padded_height - y0)
        w = min(self.block, self.padded_width - x0)
        return Window(x0, y0, w, h)

    def x_coords(self) -> np.ndarray:
        """Pixel-centre x of every padded column (north-up grids only)."""
        a, _, c = self.transform[:3]
        return c + a * (np.arange(self.padded_width) + 0.5)

    def y_coords(self) -> np.ndarray:
        d, e, f = self.transform[3:]
        return f + e * (np.arange(self.padded_height) + 0.5)

    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the unpadded scene."""
        a, _, c, _, e, f = self.transform
        xs = (c, c + a * self.width)
        ys = (f, f + e * self.height)
        return min(xs), min(ys), max(xs), max(ys)


def block_context(
    row: int, col: int, block: int, halo: int, height: int, width: int
) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
    """The window read for a block (block plus halo, clipped to the store) and the block inside it.

    Returns ((ya, yb, xa, xb) read window, (cy0, cy1, cx0, cx1) block within that window).
    """
    y0, x0 = row * block, col * block
    y1, x1 = min(y0 + block, height), min(x0 + block, width)
    ya, yb = max(0, y0 - halo), min(height, y1 + halo)
    xa, xb = max(0, x0 - halo), min(width, x1 + halo)
    return (ya, yb, xa, xb), (y0 - ya, y1 - ya, x0 - xa, x1 - xa)


def neighbours(row: int, col: int) -> list[tuple[int, int]]:
    """Block (row, col) and the eight blocks around it: those whose tiles its halo reads
    (some may lie off the grid)."""
    return [(row + dr, col + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
