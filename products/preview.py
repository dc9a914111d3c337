"""An RGB quicklook of the scene with the landslides outlined, small enough to look at."""

from pathlib import Path

import cv2
import numpy as np
from affine import Affine
from shapely.geometry import Polygon

from common.errors import OutputError
from tiler.grid import Grid

RGB = ("B4", "B3", "B2")
OUTLINE_BGR = (0, 255, 255)


def preview_step(grid: Grid, max_size: int = 1024) -> int:
    """The decimation that fits the scene's longer side into ``max_size`` preview pixels."""
    return max(1, -(-max(grid.height, grid.width) // max_size))


def decimate_block(image: np.ndarray, valid: np.ndarray, grid: Grid, row: int, col: int,
                   step: int, bands: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The preview's pixels (every step-th of the scene) that fall in block (row, col), from the
    block's image (bands, h, w) and valid (h, w) in memory: what ``decimated_rgb`` reads from the
    store for that block, so a job can assemble its preview from its blocks as they pass."""
    win = grid.block_window(row, col)
    y0, x0 = int(win.row_off), int(win.col_off)
    y1 = min(y0 + int(win.height), grid.height)
    x1 = min(x0 + int(win.width), grid.width)
    rows = slice(-(-y0 // step) * step - y0, max(y1 - y0, 0), step)
    cols = slice(-(-x0 // step) * step - x0, max(x1 - x0, 0), step)
    idx = [bands.index(b) for b in RGB]
    rgb = np.moveaxis(image[idx][:, rows, cols], 0, -1)
    return np.ascontiguousarray(rgb), valid[rows, cols] == 1


def assemble_blocks(pieces: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The decimated scene from every block's ``decimate_block`` pieces, keyed (row, col)."""
    rows = sorted({r for r, _ in pieces})
    cols = sorted({c for _, c in pieces})
    rgb = np.concatenate([np.concatenate([pieces[r, c][0] for c in cols], axis=1)
                          for r in rows])
    ok = np.concatenate([np.concatenate([pieces[r, c][1] for c in cols], axis=1) for r in rows])
    return rgb, ok


def stretch(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """2-98 percentile stretch per channel to uint8; nodata black."""
    out = np.zeros(rgb.shape, dtype=np.uint8)
    if not valid.any():
        return out
    for c in range(3):
        lo, hi = np.percentile(rgb[..., c][valid], (2, 98))
        scaled = (rgb[..., c] - lo) / max(hi - lo, 1e-6)
        out[..., c] = (np.clip(scaled, 0, 1) * 255).astype(np.uint8)
    out[~valid] = 0
    return out


def render_preview(rgb: np.ndarray, valid: np.ndarray, step: int, grid: Grid,
                   polygons: list[Polygon], path: Path) -> None:
    """The PNG: the decimated RGB stretched, the landslides outlined."""
    img = np.ascontiguousarray(stretch(rgb, valid)[..., ::-1])  # OpenCV wants BGR
    to_px = ~Affine(*grid.transform)
    for poly in polygons:
        for ring in (poly.exterior, *poly.interiors):
            cols, rows = to_px * np.asarray(ring.coords).T
            pts = np.stack([cols / step, rows / step], axis=-1).round().astype(np.int32)
            cv2.polylines(img, [pts], isClosed=True, color=OUTLINE_BGR, thickness=1)
    if not cv2.imwrite(str(path), img):
        raise OutputError(f"{path}: could not write the preview PNG")
