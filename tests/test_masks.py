"""Unusable pixels (issue 13): an L2A product's SCL or --mask FILE makes them nodata, the store
counts every mask value, L1C products carry on unmasked with a note; a scene onto a given grid."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

from common.errors import InputError, StoreError
from jobs import tile as tile_job
from simulator.event import read_event, write_event
from tiler.blocks import read_block, read_block_counts
from tiler.masks import SCL_EXCLUDED
from tiler.run import finish_plan, plan_store, tile_block
from tiler.sources import resolve_input
from tiler.store import mask_shares, open_group

SIZE, OVERLAP = 512, 128
SHIFT = SIZE - OVERLAP


@pytest.fixture(scope="module")
def event(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("event")
    write_event(out, seed=0, height=SIZE, width=SIZE, overlap=OVERLAP)
    return read_event(out)


def _tile(spec, store: Path) -> Path:
    plan = plan_store(spec, store)
    n = sum(tile_block(r, c, spec, str(store)) for r, c in plan.todo)
    finish_plan(plan, n)
    return store


def _scl10(path: str) -> np.ndarray:
    """The SCL read plainly and repeated 2 x 2 onto the 10 m grid."""
    with rasterio.open(path) as ds:
        scl = ds.read(1)
    return np.repeat(np.repeat(scl, 2, axis=0), 2, axis=1)[:SIZE, :SIZE]


def _valid(store: Path) -> np.ndarray:
    return np.asarray(open_group(store)["valid"][:SIZE, :SIZE]).astype(bool)


def _near_edge(a: np.ndarray, r: int) -> np.ndarray:
    """Pixels within ``r`` px of a change of ``a``'s value or of the scene's border."""
    a = a.astype("int8")
    p = np.pad(a, r, constant_values=-1)
    out = np.zeros(a.shape, dtype=bool)
    h, w = a.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out |= p[r + dy:r + dy + h, r + dx:r + dx + w] != a
    return out


def test_scl_of_an_l2a_product_masks_exactly_its_unusable_classes(event, tmp_path):
    g = event["granules"]["A"]["post"]
    spec = resolve_input(g["product"], event["dem"])
    assert spec.mask.kind == "scl" and spec.mask.path == g["scl"] and spec.mask_note is None
    store = _tile(spec, tmp_path / "a.zarr")
    scl = _scl10(g["scl"])
    excluded = np.isin(scl, SCL_EXCLUDED)
    assert 0.02 < excluded.mean() < 0.5
    np.testing.assert_array_equal(_valid(store), ~excluded)
    image = np.asarray(open_group(store)["image"][:, :SIZE, :SIZE])
    assert not image[:, excluded].any()

    shares = mask_shares(store)
    assert shares["kind"] == "scl" and shares["excluded_values"] == list(SCL_EXCLUDED)
    assert sorted(shares["shares"], key=int) == [str(c) for c in range(12)]
    counts = np.bincount(scl.ravel(), minlength=12) / scl.size
    for c in range(12):
        assert shares["shares"][str(c)] == pytest.approx(counts[c], abs=1e-12)
    assert sum(shares["shares"].values()) == pytest.approx(1.0)
    assert shares["masked_share"] == pytest.approx(excluded.mean())
    assert {3, 8, 9, 11} <= {c for c in range(12) if counts[c] > 0}

    # --mask-values picks other classes of the same SCL
    only9 = resolve_input(g["product"], event["dem"], mask_values=[9])
    _, valid = read_block(only9, 0, 0)
    np.testing.assert_array_equal(~valid[:SIZE, :SIZE].astype(bool), scl == 9)


def test_mask_file_in_another_crs_masks_the_right_place(event, tmp_path):
    g = event["granules"]["A"]["post"]
    with rasterio.open(g["scl"]) as src:
        t, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height,
                                              *src.bounds)
        geo = np.zeros((h, w), dtype="uint8")
        reproject(rasterio.band(src, 1), geo, dst_transform=t, dst_crs="EPSG:4326",
                  resampling=Resampling.nearest)
    mask = tmp_path / "scl_4326.tif"
    with rasterio.open(mask, "w", driver="GTiff", height=h, width=w, count=1, dtype="uint8",
                       crs="EPSG:4326", transform=t) as dst:
        dst.write(geo, 1)
    spec = resolve_input(g["stack"], mask=mask)
    assert spec.kind == "stack" and spec.mask.kind == "file"
    store = _tile(spec, tmp_path / "s.zarr")
    excluded = np.isin(_scl10(g["scl"]), SCL_EXCLUDED)
    wrong = _valid(store) == excluded
    assert wrong.mean() < 0.01
    assert not (wrong & ~_near_edge(excluded, 3)).any()
    shares = mask_shares(store)
    assert shares["kind"] == "file" and shares["masked_share"] == pytest.approx(
        excluded.mean(), abs=0.005)
    assert sum(shares["shares"].values()) == pytest.approx(1.0)
    # --mask overrides a product's own SCL
    assert resolve_input(g["product"], event["dem"], mask=mask).mask.path == str(mask)


def _l1c(safe: Path, out: Path) -> Path:
    """The product as an L1C: its metadata renamed and rewritten, no SCL."""
    dst = out / safe.name.replace("MSIL2A", "MSIL1C")
    shutil.copytree(safe, dst)
    mtd = (dst / "MTD_MSIL2A.xml").read_text()
    (dst / "MTD_MSIL2A.xml").unlink()
    mtd = (mtd.replace("Level-2A", "Level-1C").replace("BOA_QUANTIFICATION_VALUE",
                                                        "QUANTIFICATION_VALUE")
           .replace("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET"))
    (dst / "MTD_MSIL1C.xml").write_text(mtd)
    for f in dst.glob("GRANULE/*/IMG_DATA/*/*_SCL_*"):
        f.unlink()
    return dst


def test_l1c_is_tiled_unmasked_and_says_so(event, tmp_path, capsys):
    g = event["granules"]["A"]["post"]
    l1c = _l1c(Path(g["product"]), tmp_path)
    spec = resolve_input(l1c, event["dem"])
    assert spec.mask is None and "L1C" in spec.mask_note and "not masked" in spec.mask_note
    store = _tile(spec, tmp_path / "l1c.zarr")
    assert _valid(store).all()
    shares = mask_shares(store)
    assert shares["kind"] is None and shares["note"] == spec.mask_note
    assert open_group(store).attrs["source"]["mask"]["note"] == spec.mask_note
    # the job says it in one line on stderr (the store is complete: no cluster starts)
    rc = tile_job.main([str(l1c), "--dem", event["dem"], "--out", str(store)])
    err = capsys.readouterr().err.strip()
    assert rc == 0 and len(err.splitlines()) == 1 and "note:" in err and "L1C" in err
    # an L2A product without its SCL file: the same, with its own note
    l2a = tmp_path / "l2a" / Path(g["product"]).name
    shutil.copytree(g["product"], l2a)
    Path(l2a / Path(g["scl"]).relative_to(g["product"])).unlink()
    spec = resolve_input(l2a, event["dem"])
    assert spec.mask is None and "no SCL file" in spec.mask_note
    with pytest.raises(InputError, match="--mask-values needs a mask"):
        resolve_input(l1c, event["dem"], mask_values=[3])


def _bad_masks(tmp_path: Path, event: dict) -> dict[str, tuple[list[str], str]]:
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    two = tmp_path / "two.tif"
    far = tmp_path / "far.tif"
    for path, count, x0 in ((two, 2, 399965.0), (far, 1, 499965.0)):
        with rasterio.open(path, "w", driver="GTiff", height=300, width=300, count=count,
                           dtype="uint8", crs="EPSG:32645",
                           transform=rasterio.transform.from_origin(x0, 3100020.0, 20, 20)
                           ) as dst:
            dst.write(np.full((count, 300, 300), 4, dtype="uint8"))
    stack = event["granules"]["A"]["post"]["stack"]
    return {
        "not a raster": ([stack, "--mask", str(text)], "notes.tif: the mask is not a readable"),
        "two bands": ([stack, "--mask", str(two)], "two.tif: the mask has 2 bands"),
        "not covering": ([stack, "--mask", str(far)], "far.tif: the mask does not cover"),
        "missing": ([stack, "--mask", str(tmp_path / "none.tif")], "does not exist"),
        "bad values": ([stack, "--mask", str(two), "--mask-values", "3,x"], "'x'"),
        "values, no mask": ([stack, "--mask-values", "3"], "--mask-values needs a mask"),
    }


@pytest.mark.parametrize("case", ["not a raster", "two bands", "not covering", "missing",
                                  "bad values", "values, no mask"])
def test_bad_mask_exits_2_in_one_line(event, tmp_path, capsys, case):
    argv, expected = _bad_masks(tmp_path, event)[case]
    out = tmp_path / "out.zarr"
    try:
        rc = tile_job.main([*argv, "--out", str(out), "--no-progress"])
    except SystemExit as exc:  # argparse
        rc = exc.code
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("python -m jobs.tile: error: ") and expected in err, err
    assert not out.exists()


def test_a_store_tiled_without_a_mask_is_not_resumed_with_one(event, tmp_path):
    g = event["granules"]["A"]["post"]
    plain = resolve_input(g["stack"])
    masked = resolve_input(g["stack"], mask=g["scl"])
    assert plain.source_record()["fingerprint"] != masked.source_record()["fingerprint"]
    plan_store(plain, tmp_path / "s.zarr")
    with pytest.raises(StoreError, match="other inputs or settings.*mask"):
        plan_store(masked, tmp_path / "s.zarr")
    other = resolve_input(g["stack"], mask=g["scl"], mask_values=[9])
    plan_store(masked, tmp_path / "m.zarr")
    with pytest.raises(StoreError, match=r"other inputs or settings \(mask\.excluded: "):
        plan_store(other, tmp_path / "m.zarr")


def test_pre_event_scene_onto_the_post_event_grid(event, tmp_path):
    a, b = event["granules"]["A"], event["granules"]["B"]
    post_a = resolve_input(a["post"]["product"], event["dem"])
    pre_b = resolve_input(b["pre"]["product"], event["dem"], grid=post_a.grid)
    own_b = resolve_input(b["pre"]["product"], event["dem"])
    assert pre_b.grid == post_a.grid and pre_b.details["grid"]["given"]
    assert pre_b.source_record()["fingerprint"] != own_b.source_record()["fingerprint"]
    img, valid, counts = read_block_counts(pre_b, 0, 0)
    own_img, own_valid = read_block(own_b, 0, 0)
    assert not valid[:, :SHIFT].any() and not img[:, :, :SHIFT].any()
    np.testing.assert_array_equal(valid[:SIZE, SHIFT:SIZE], own_valid[:SIZE, :OVERLAP])
    assert valid[:SIZE, SHIFT:SIZE].mean() > 0.5
    np.testing.assert_allclose(img[:12, :SIZE, SHIFT:SIZE], own_img[:12, :SIZE, :OVERLAP],
                               atol=1e-5)
    # the DEM warped onto another window (GDAL approximates each window's transform to 0.01
    # px: decimetres on steep ground); the slope differs on the columns where one grid ends
    np.testing.assert_allclose(img[13, :SIZE, SHIFT:SIZE], own_img[13, :SIZE, :OVERLAP],
                               atol=0.5)
    np.testing.assert_allclose(img[12, :SIZE, SHIFT + 1:SIZE - 1],
                               own_img[12, :SIZE, 1:OVERLAP - 1], atol=0.5)
    # the mask counts: B's SCL does not reach the first SHIFT columns of A's grid
    assert counts[-1] == SIZE * SHIFT and counts.sum() == SIZE * SIZE
    # a stack onto a grid larger than itself: the pixels beyond it are nodata
    wide = resolve_input(a["post"]["stack"])
    grid = type(wide.grid)(wide.grid.crs_wkt, wide.grid.transform, SIZE, SIZE + 100)
    _, v = read_block(resolve_input(a["post"]["stack"], grid=grid), 0, 0)
    assert not v[:, SIZE:].any() and v[:SIZE, :SIZE].all()
    far = type(grid)(grid.crs_wkt, (10.0, 0.0, 900_000.0, 0.0, -10.0, 3_100_020.0), 100, 100)
    with pytest.raises(InputError, match="does not overlap the given grid"):
        resolve_input(b["pre"]["product"], event["dem"], grid=far)
