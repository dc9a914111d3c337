"""--require-vegetation-loss on the stores themselves (issue 19, item 6): the tile store's
``valid`` and the prediction store's ``change`` layers written as the block tasks write them
(``products.change.change_block``), then ``products.polygons.vegetation_loss_filter``
over polygons of known ground. Independent of any model: each polygon's pre- and post-event
NDVI is set."""

from pathlib import Path

import numpy as np
import pytest
import shapely
from rasterio.crs import CRS

from common import provenance
from products.change import LOSS, NO_EVIDENCE, change_block
from products.polygons import change_means, vegetation_loss_filter
from tiler.bands import BANDS
from tiler.grid import Grid
from tiler.predictions import prepare_change, prepare_predictions, write_block_change
from tiler.store import create_store, write_block

SIZE, X0, Y0 = 256, 500_000.0, 4_000_000.0
GRID = Grid(CRS.from_epsg(32645).to_wkt(), (10.0, 0.0, X0, 0.0, -10.0, Y0), SIZE, SIZE,
            tile=128, block=256)
RED = 0.05
# name: (rows, cols, NDVI pre, NDVI post, pre-event usable share)
GROUND = {
    "stripped": ((10, 40), (10, 40), 0.7, 0.1, 1.0),
    "unchanged": ((10, 40), (60, 90), 0.7, 0.7, 1.0),
    "water": ((10, 40), (110, 140), -0.54, -0.54, 1.0),  # rdNDVI undefined: root of -0.08
    "bare_before": ((60, 90), (10, 40), 0.1, -0.3, 1.0),  # rdNDVI -0.45 but no vegetation
    "clouded_before": ((60, 90), (60, 90), 0.7, 0.1, 0.0),  # no usable pre-event pixel
    "half_clouded": ((60, 90), (110, 140), 0.7, 0.1, 0.5),  # loss seen on the clear half
}
INDEX = {name: i for i, name in enumerate(GROUND)}


def image_of(ndvi: np.ndarray) -> np.ndarray:
    """A (bands, h, w) reflectance image with the given NDVI (B4 = RED, B8 to match)."""
    img = np.full((len(BANDS), SIZE, SIZE), 0.1, dtype=np.float32)
    img[BANDS.index("B4")] = RED
    img[BANDS.index("B8")] = RED * (1 + ndvi) / (1 - ndvi)
    return img


def dates(same: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pre- and post-event images and the pre-event valid mask."""
    pre, post = np.full((SIZE, SIZE), 0.6), np.full((SIZE, SIZE), 0.6)
    pre_valid = np.ones((SIZE, SIZE), dtype=np.uint8)
    for (r0, r1), (c0, c1), before, after, share in GROUND.values():
        pre[r0:r1, c0:c1], post[r0:r1, c0:c1] = before, after
        pre_valid[r0:r1, c0:c0 + round((c1 - c0) * (1 - share))] = 0
    if same:
        return image_of(post), image_of(post), np.ones((SIZE, SIZE), dtype=np.uint8)
    return image_of(pre), image_of(post), pre_valid


def polygons() -> list:
    out = []
    for (r0, r1), (c0, c1), *_ in GROUND.values():
        out.append(shapely.box(X0 + 10 * c0, Y0 - 10 * r1, X0 + 10 * c1, Y0 - 10 * r0))
    return out


def stores(root: Path, same: bool = False) -> tuple[Path, Path]:
    pre, post, pre_valid = dates(same)
    valid = np.ones((SIZE, SIZE), dtype=np.uint8)
    store = create_store(root / "tiles.zarr", GRID, {"input": "test"})
    write_block(store, GRID, 0, 0, post, valid)
    predictions = root / "predictions.zarr"
    identity = provenance.make("predictions", {"test": True})
    prepare_predictions(predictions, GRID, identity)
    prepare_change(predictions, GRID, 3, provenance.make("change", {"test": True}))
    write_block_change(predictions, GRID, 0, 0,
                       change_block(post, valid, pre, pre_valid, list(BANDS)))
    return store, predictions


def test_change_means_count_usable_pixels_and_skip_undefined_ones(tmp_path):
    usable, ndvi_pre, rd = change_means(*stores(tmp_path), GRID, polygons())
    area = 30 * 30
    assert usable.tolist() == [area, area, area, area, 0, area // 2]
    stripped, water, clouded = INDEX["stripped"], INDEX["water"], INDEX["clouded_before"]
    assert ndvi_pre[stripped] == pytest.approx(0.7, abs=1e-5)
    assert rd[stripped] == pytest.approx((0.1 - 0.7) / np.sqrt(1.8), abs=1e-5)
    assert ndvi_pre[water] == pytest.approx(-0.54, abs=1e-5) and np.isnan(rd[water])
    assert np.isnan(ndvi_pre[clouded]) and np.isnan(rd[clouded])


def test_only_vegetation_loss_or_no_pre_event_pixel_is_kept(tmp_path):
    polys = polygons()
    kept, evidence = vegetation_loss_filter(*stores(tmp_path), GRID, polys, 0.05)
    names = [name for name, p in zip(GROUND, polys, strict=True)
             if any(p.equals(k) for k in kept)]
    assert names == ["stripped", "clouded_before", "half_clouded"]
    assert evidence.tolist() == [LOSS, NO_EVIDENCE, LOSS]


def test_pre_event_equal_to_post_event_keeps_nothing(tmp_path):
    kept, evidence = vegetation_loss_filter(*stores(tmp_path, same=True), GRID, polygons(),
                                            0.05)
    assert kept == [] and evidence.size == 0
    assert vegetation_loss_filter(*stores(tmp_path / "none"), GRID, [], 0.05)[0] == []
