"""The scene grid: CRS, affine transform, unpadded size, and its tiles and 1024-px blocks."""

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
