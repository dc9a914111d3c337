"""jobs.synth event: two overlapping granules of one event, before and after, with SCL."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio

from jobs import synth
from simulator.event import read_event, write_event
from simulator.sky import SCL_UNUSABLE
from tiler.safe import read_safe

SIZE, OVERLAP = 512, 128
SHIFT = SIZE - OVERLAP


@pytest.fixture(scope="module")
def event(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("event")
    assert synth.main(["event", str(out), "--height", str(SIZE), "--width", str(SIZE),
                       "--overlap", str(OVERLAP), "--seed", "0"]) == 0
    return read_event(out)


def _read(path: str, band: int | None = None) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(band) if band else ds.read()


def _scl10(path: str) -> np.ndarray:
    scl = _read(path, 1)
    return np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)[:SIZE, :SIZE]


def test_event_json_lists_two_granules_before_and_after(event):
    a, b = event["granules"]["A"], event["granules"]["B"]
    assert a["tile_id"] != b["tile_id"]
    assert event["sensing_dates"]["pre"] < event["event_date"] < event["sensing_dates"]["post"]
    assert b["transform"][2] - a["transform"][2] == SHIFT * 10.0
    assert a["transform"][5] == b["transform"][5]
    for g in (a, b):
        for when in ("post", "pre"):
            safe = Path(g[when]["product"])
            product = read_safe(safe)
            assert product.level == "L2A" and product.scl == Path(g[when]["scl"])
            assert g["tile_id"] in safe.name
            root = ET.parse(safe / "MTD_MSIL2A.xml").getroot()
            start = next(el.text for el in root.iter() if el.tag == "PRODUCT_START_TIME")
            assert start[:19] == g[when]["sensing_date"][:19]
        with rasterio.open(g["truth"]) as t, rasterio.open(g["post"]["stack"]) as s:
            assert (t.shape, t.transform, t.crs) == (s.shape, s.transform, s.crs)
    with rasterio.open(event["dem"]) as dem, rasterio.open(b["post"]["stack"]) as s:
        from rasterio.warp import transform_bounds

        left, bottom, right, top = transform_bounds(s.crs, dem.crs, a["transform"][2],
                                                    s.bounds.bottom, s.bounds.right,
                                                    s.bounds.top)
        assert dem.bounds.left < left and dem.bounds.right > right
        assert dem.bounds.bottom < bottom and dem.bounds.top > top


def test_the_granules_are_one_world_where_they_overlap(event):
    a, b = event["granules"]["A"], event["granules"]["B"]
    for when in ("post", "pre"):
        sa, sb = _read(a[when]["stack"]), _read(b[when]["stack"])
        np.testing.assert_array_equal(sa[:, :, SHIFT:], sb[:, :, :OVERLAP])
        assert not np.array_equal(sa[:, :, :OVERLAP], sb[:, :, :OVERLAP])
        la, lb = _read(a[when]["scl"], 1), _read(b[when]["scl"], 1)
        np.testing.assert_array_equal(la[:, SHIFT // 2:], lb[:, :OVERLAP // 2])
    np.testing.assert_array_equal(_read(a["truth"], 1)[:, SHIFT:],
                                  _read(b["truth"], 1)[:, :OVERLAP])


def test_pre_event_is_the_same_ground_without_the_landslides(event):
    checked = 0
    for g in event["granules"].values():
        post, pre = _read(g["post"]["stack"]), _read(g["pre"]["stack"])
        truth = _read(g["truth"], 1)
        # the same terrain
        np.testing.assert_array_equal(post[12:], pre[12:])
        # where both skies are clear: the landslides are new (vegetation before, bare after)
        clear = ~np.isin(_scl10(g["post"]["scl"]), SCL_UNUSABLE)
        clear &= ~np.isin(_scl10(g["pre"]["scl"]), SCL_UNUSABLE)
        slide = clear & (truth == 1)
        ndvi = lambda im: (im[7] - im[3]) / (im[7] + im[3])  # noqa: E731
        assert slide.sum() > 200
        assert np.median(ndvi(pre)[slide]) > 0.5 > 0.3 > np.median(ndvi(post)[slide])
        # and elsewhere the same pixels
        away = clear & (truth == 0)
        assert away.mean() > 0.5
        np.testing.assert_array_equal(post[:12, away], pre[:12, away])
        checked += int(away.sum())
        # dormant scars: bare in both, so not in the truth
        assert g["pre"]["dormant_scar_pixels"] == g["post"]["dormant_scar_pixels"] > 100
        assert g["pre"]["landslide_pixels"] == 0 < g["post"]["landslide_pixels"]
    assert checked > 2 * 100_000


def test_scl_classes_match_the_pixels_and_the_truth(event):
    images, classes = [], []
    for g in event["granules"].values():
        post = _read(g["post"]["stack"])
        scl = _scl10(g["post"]["scl"])
        truth = _read(g["truth"], 1)
        np.testing.assert_array_equal(truth == 255, np.isin(scl, SCL_UNUSABLE))
        assert np.isnan(post[:12, scl == 0]).all() and np.isfinite(post[:12, scl != 0]).all()
        images.append(post.reshape(14, -1))
        classes.append(scl.ravel())
    img, scl = np.concatenate(images, axis=1), np.concatenate(classes)
    assert {0, 3, 4, 5, 6, 8, 9, 10, 11} <= set(np.unique(scl).tolist())
    clear = np.isin(scl, (4, 5, 6))
    b2, b3, b8, b10, b11 = img[1], img[2], img[7], img[9], img[10]
    assert np.mean(b2[scl == 9]) > 0.4 > 0.15 > np.mean(b2[clear])
    assert np.mean(b8[scl == 3]) < 0.5 * np.mean(b8[clear])
    assert np.mean(b3[scl == 11]) > 0.6 and np.mean(b11[scl == 11]) < 0.15
    assert np.mean(b10[scl == 10]) > 0.02 > np.mean(b10[clear])
    assert np.median(((b8 - img[3]) / (b8 + img[3]))[scl == 4]) > 0.5
    a = event["granules"]["A"]
    assert (_read(a["post"]["scl"], 1) != _read(a["pre"]["scl"], 1)).mean() > 0.05


def test_event_json_is_written_last_and_refuses_bad_overlap(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        synth.main(["event", str(tmp_path / "e"), "--width", "512", "--overlap", "100"])
    rc = exc.value.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "multiple of 6" in err
    assert not (tmp_path / "e" / "event.json").exists()
    small = write_event(tmp_path / "s", seed=3, height=64, width=70, overlap=10)
    manifest = json.loads(small.manifest.read_text())
    assert manifest["granules"]["B"]["col_offset"] == 60
