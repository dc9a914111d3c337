"""The products made block by block equal those of one pass over the whole scene: polygons merged
across block borders (landslides cut by borders, touching only at a corner, holes on a border),
the preview's pixels, and the network's input normalised in place."""

import numpy as np
import pytest
import rasterio
import shapely

from products.polygons import block_polygons, merge_block_polygons
from products.preview import assemble_blocks, decimate_block
from products.rasters import grid_profile
from tests.oracles import polygonize
from tiler.bands import BANDS
from tiler.grid import Grid
from unet.bundle import Bundle, normalize
from unet.predict import normalized_window

BLOCK, TILE = 64, 16
H, W = 200, 170  # not multiples of the block: short last row and column of blocks
CRS_WKT = rasterio.crs.CRS.from_epsg(32633).to_wkt()


def grid() -> Grid:
    return Grid(CRS_WKT, (10.0, 0.0, 300_000.0, 0.0, -10.0, 5_000_000.0), H, W, TILE, BLOCK)


def probabilities(seed: int) -> np.ndarray:
    """A padded probability raster with blobs of every size, many cut by block borders, plus
    hand-made cases: a ring whose hole straddles a border, pixels diagonal across a block
    corner, a one-pixel-wide line along a border. NaN outside the scene, as in a store."""
    g = grid()
    rng = np.random.default_rng(seed)
    p = rng.random((g.padded_height, g.padded_width)).astype(np.float32) * 0.4
    for _ in range(60):
        y, x, r = rng.integers(0, H), rng.integers(0, W), rng.integers(1, 9)
        yy, xx = np.ogrid[: g.padded_height, : g.padded_width]
        p[(yy - y) ** 2 + (xx - x) ** 2 <= r * r] = 0.9
    p[50:80, 50:80] = 0.9
    p[60:70, 60:70] = 0.1  # a hole across the corner of four blocks
    p[BLOCK - 1, BLOCK - 1] = p[BLOCK, BLOCK] = 0.95  # diagonal across a corner: two
    p[BLOCK - 1, BLOCK] = p[BLOCK, BLOCK - 1] = 0.0
    p[100:160, BLOCK * 2 - 1] = 0.9  # one pixel wide, along a border
    p[H:, :] = np.nan
    p[:, W:] = np.nan
    return p


def whole_scene(p: np.ndarray, threshold: float, min_area: float, tmp_path) -> list:
    g = grid()
    path = tmp_path / "t.tif"
    binary = (np.nan_to_num(p[:H, :W], nan=-1.0) >= threshold).astype(np.uint8)
    with rasterio.open(path, "w", **grid_profile(g, "uint8", None)) as dst:
        dst.write(binary, 1)
    return polygonize(path, min_area)


@pytest.mark.parametrize(("seed", "min_area"), [(0, 0.0), (1, 200.0), (2, 1500.0)])
def test_merged_block_polygons_equal_one_pass_over_the_scene(tmp_path, seed, min_area):
    g, p = grid(), probabilities(seed)
    pieces = []
    for r, c in g.blocks():
        win = g.block_window(r, c)
        block = p[win.row_off:win.row_off + win.height, win.col_off:win.col_off + win.width]
        pieces += block_polygons(block, 0.5, g, r, c, min_area)
    merged = merge_block_polygons(pieces, g, min_area)
    expected = whole_scene(p, 0.5, min_area, tmp_path)
    assert len(merged) == len(expected) > 20
    assert any(len(q.interiors) for q in expected) or min_area > 0
    left = list(expected)
    for poly in merged:
        match = [i for i, q in enumerate(left) if q.equals(poly)]
        assert len(match) == 1, poly.wkt
        assert poly.area == pytest.approx(left.pop(match[0]).area, abs=1e-6)
    assert not left


def test_merged_polygons_do_not_depend_on_the_order_blocks_finish():
    g, p = grid(), probabilities(3)
    per_block = []
    for r, c in g.blocks():
        win = g.block_window(r, c)
        block = p[win.row_off:win.row_off + win.height, win.col_off:win.col_off + win.width]
        per_block.append(block_polygons(block, 0.5, g, r, c))
    forward = merge_block_polygons([w for b in per_block for w in b], g, 200.0)
    backward = merge_block_polygons([w for b in per_block[::-1] for w in b[::-1]], g, 200.0)
    assert [shapely.normalize(q).wkb for q in forward] == \
        [shapely.normalize(q).wkb for q in backward]


def test_preview_pieces_assemble_into_the_decimated_scene():
    """Pixel values encode their own position, so a misplaced piece shows."""
    g = grid()
    bands = list(BANDS)
    yy, xx = np.mgrid[: g.padded_height, : g.padded_width].astype(np.float32)
    image = np.stack([yy * 1000 + xx + b for b in range(len(bands))])
    valid = ((yy < H) & (xx < W) & ((yy + xx) % 7 > 0)).astype(np.uint8)
    for step in (1, 3, 7):
        pieces = {}
        for r, c in g.blocks():
            win = g.block_window(r, c)
            ys = slice(win.row_off, win.row_off + win.height)
            xs = slice(win.col_off, win.col_off + win.width)
            pieces[r, c] = decimate_block(image[:, ys, xs], valid[ys, xs], g, r, c, step, bands)
        rgb, ok = assemble_blocks(pieces)
        idx = [bands.index(b) for b in ("B4", "B3", "B2")]
        np.testing.assert_array_equal(rgb, np.moveaxis(image[idx, :H:step, :W:step], 0, -1))
        np.testing.assert_array_equal(ok, valid[:H:step, :W:step] == 1)


def test_normalized_window_is_bitwise_the_channels_last_normalisation():
    rng = np.random.default_rng(5)
    n = len(BANDS)
    bundle = Bundle(bands=list(BANDS), tile_size=128, convention="s2-reflectance-v1",
                    normalization={"mean": list(rng.random(n)), "std": [*rng.random(n - 1), 0.0],
                                   "clip": 3.0}, threshold=0.5)
    image = (rng.standard_normal((n, 90, 70)) * 2).astype(np.float32)
    ok = rng.random((90, 70)) > 0.2
    scale, offset = tuple(rng.random(n) + 0.5), tuple(rng.standard_normal(n))
    for s, o in ((None, None), (scale, offset)):
        x = np.moveaxis(image, 0, -1)
        if s is not None:
            x = x * np.asarray(s, np.float32) + np.asarray(o, np.float32)
        expected = normalize(x, bundle)
        expected[~ok] = 0.0
        got = normalized_window(image.copy(), ok, bundle, s, o)
        assert got.flags.c_contiguous and got.dtype == np.float32
        np.testing.assert_array_equal(got, expected)
