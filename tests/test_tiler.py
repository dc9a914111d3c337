"""The tiler on stacked GeoTIFFs: georeferencing, padding, resume, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from distributed import Client, LocalCluster
from rasterio.transform import from_origin

import tiler.run
from common.errors import InputError, StoreError
from jobs import tile as tile_job
from tiler.bands import BANDS, CONVENTION
from tiler.run import plan_store, run_plan, tile_scene
from tiler.sources import resolve_input
from tiler.store import load_block, mark_complete, open_tiles, read_tiled, store_attrs

REPO = Path(__file__).resolve().parent.parent
X0, Y0 = 500_003.0, 6_000_007.0  # origin NOT a multiple of the 10 m pixel


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def coord_scene(path: Path, height: int, width: int, *, x0: float = X0, y0: float = Y0,
                res: float = 10.0, nodata_cols: int = 0) -> Path:
    """A 14-band stack whose pixels encode their own map coordinates (odc-geo style):
    band 0 = (x - 500000) / 10000, band 1 = (y - 6000000) / 10000 at the pixel centre
    (a 10 m pixel is 0.001: a misplaced pixel shows; magnitudes stay reflectance-like)."""
    transform = from_origin(x0, y0, res, res)
    cols, rows = np.meshgrid(np.arange(width), np.arange(height))
    xs = x0 + (cols + 0.5) * res
    ys = y0 - (rows + 0.5) * res
    data = np.empty((14, height, width), dtype="float32")
    data[0] = (xs - 500_000) / 10_000
    data[1] = (ys - 6_000_000) / 10_000
    for b in range(2, 12):
        data[b] = 0.01 * b + 0.001 * ((rows + 3 * cols + b) % 50)
    data[12] = (rows % 30).astype("float32")
    data[13] = 500 + rows * 0.5 + cols * 0.25
    if nodata_cols:
        data[:, :, :nodata_cols] = np.nan
    with rasterio.open(path, "w", driver="GTiff", height=height, width=width, count=14,
                       dtype="float32", crs="EPSG:32633", transform=transform,
                       nodata=float("nan"), tiled=True, blockxsize=256,
                       blockysize=256) as ds:
        ds.write(data)
        ds.descriptions = BANDS
    return path


def test_georeference_round_trip_odd_size_and_padding(tmp_path, client):
    h, w = 1157, 1031
    scene = coord_scene(tmp_path / "scene.tif", h, w, nodata_cols=7)
    store = tmp_path / "s.zarr"
    result = tile_scene(scene, store, client=client, progress=False)
    assert result.blocks_written == result.blocks_total == 4

    ds = xr.open_zarr(store, consolidated=False)
    attrs = ds.attrs
    assert (attrs["height"], attrs["width"]) == (h, w)
    assert attrs["tile_size"] == 128 and attrs["block_size"] == 1024
    assert attrs["convention"] == CONVENTION and attrs["complete"] is True
    assert attrs["bands"] == list(BANDS) and list(ds.band.values) == list(BANDS)
    assert attrs["source"]["kind"] == "stack"
    assert ds.image.shape == (14, 1280, 1152)  # padded to multiples of 128
    assert ds.image.encoding["chunks"] == (14, 128, 128)
    assert ds.image.encoding["shards"] == (14, 1024, 1024)
    with rasterio.open(scene) as src:
        assert ds.image.rio.crs == src.crs
        assert ds.image.rio.transform() == src.transform
        assert tuple(attrs["transform"]) == tuple(src.transform)[:6]

    image, valid = ds.image.values, ds.valid.values
    transform = rasterio.Affine(*attrs["transform"])
    rng = np.random.default_rng(0)
    for _ in range(200):
        r, c = rng.integers(0, 9), rng.integers(0, 8)
        i, j = rng.integers(0, 128, size=2)
        y, x = r * 128 + i, c * 128 + j
        if y >= h or x >= w or x < 7:
            continue
        mx, my = transform @ (x + 0.5, y + 0.5)
        assert image[0, y, x] == pytest.approx((mx - 500_000) / 10_000, abs=1e-5)
        assert image[1, y, x] == pytest.approx((my - 6_000_000) / 10_000, abs=1e-5)
        assert float(ds.x[x]) == pytest.approx(mx) and float(ds.y[y]) == pytest.approx(my)
    with rasterio.open(scene) as src:
        np.testing.assert_array_equal(image[:, :h, :w], np.nan_to_num(src.read()))
    # Padding and nodata are invalid and 0.
    assert not valid[h:].any() and not valid[:, w:].any() and not valid[:, :7].any()
    assert valid[:h, 7:w].all()
    assert not image[:, h:].any() and not image[:, :, w:].any()
    img, val = load_block(store, 1, 1)
    np.testing.assert_array_equal(img, image[:, 1024:, 1024:])
    np.testing.assert_array_equal(val, valid[1024:, 1024:])


def test_rerun_is_noop_and_resume_redoes_only_cleared_blocks(tmp_path, client, monkeypatch):
    scene = coord_scene(tmp_path / "scene.tif", 1100, 1500)
    store = tmp_path / "s.zarr"
    first = tile_scene(scene, store, client=client, progress=False)
    assert first.blocks_written == 4
    before = open_tiles(store).image.values

    again = tile_scene(scene, store, client=client, progress=False)
    assert again.already_complete and again.blocks_written == 0

    # Simulate a crash: block (1, 1) fails, the others finish.
    import zarr

    group = zarr.open_group(str(store), mode="r+")
    group["tiled"][...] = 0
    group["image"][...] = 0
    mark_complete(store, False)
    real = tiler.run.read_block_counts

    def failing(spec, row, col):
        if (row, col) == (1, 1):
            # crash once the other blocks are written: the job cancels what still runs
            deadline = time.monotonic() + 60
            while read_tiled(store).sum() < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            raise RuntimeError("simulated crash")
        return real(spec, row, col)

    monkeypatch.setattr(tiler.run, "read_block_counts", failing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tile_scene(scene, store, client=client, progress=False)
    assert store_attrs(store)["complete"] is False
    np.testing.assert_array_equal(read_tiled(store), [[1, 1], [1, 0]])
    with pytest.raises(StoreError, match="incomplete"):
        open_tiles(store)

    monkeypatch.setattr(tiler.run, "read_block_counts", real)
    resumed = tile_scene(scene, store, client=client, progress=False)
    assert resumed.blocks_written == 1 and not resumed.already_complete
    assert store_attrs(store)["complete"] is True
    np.testing.assert_array_equal(open_tiles(store).image.values, before)


def test_store_from_other_input_is_refused_unless_overwrite(tmp_path, client):
    a = coord_scene(tmp_path / "a.tif", 300, 200)
    b = coord_scene(tmp_path / "b.tif", 300, 250)
    store = tmp_path / "s.zarr"
    tile_scene(a, store, client=client, progress=False)
    with pytest.raises(StoreError, match=r"other inputs or settings \(.*b\.tif"):
        tile_scene(b, store, client=client, progress=False)
    tile_scene(b, store, client=client, progress=False, overwrite=True)
    assert store_attrs(store)["width"] == 250


def _write(path: Path, data: np.ndarray, *, crs="EPSG:32633", x0=X0, y0=Y0, res=10.0,
           nodata=None) -> Path:
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                       count=data.shape[0], dtype=data.dtype, crs=crs,
                       transform=from_origin(x0, y0, res, res), nodata=nodata) as ds:
        ds.write(data)
    return path


def _bad_band_folder(tmp_path: Path, *, shift_b5: bool = False) -> Path:
    folder = tmp_path / "bands"
    folder.mkdir()
    for i in range(1, 13):
        res = {1: 60, 9: 60, 10: 60, 5: 20, 6: 20, 7: 20, 11: 20, 12: 20}.get(i, 10)
        n = 600 // res
        x0 = X0 + (1e6 if shift_b5 and i == 5 else 0)
        _write(folder / f"T33UUU_20240101T000000_B{i:02d}_{res}m.tif",
               np.full((1, n, n), 1000, dtype="uint16"), x0=x0, res=res)
    return folder


def _cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    text = tmp_path / "notes.tif"
    text.write_text("not a raster")
    three = _write(tmp_path / "three.tif", np.ones((3, 20, 20), dtype="float32"))
    empty = _write(tmp_path / "empty.tif", np.full((14, 40, 40), np.nan, dtype="float32"),
                   nodata=float("nan"))
    small_dem = _write(tmp_path / "small_dem.tif", np.ones((1, 5, 5), dtype="int16"),
                       nodata=-32768)
    good = _bad_band_folder(tmp_path / "g") if (tmp_path / "g").mkdir() is None else None
    shifted = _bad_band_folder(tmp_path / "s", shift_b5=True) if (
        tmp_path / "s").mkdir() is None else None
    return {
        "not a raster": ([str(text)], "notes.tif"),
        "wrong band count": ([str(three)], "3 bands"),
        "all nodata": ([str(empty)], "empty"),
        "no overlap": ([str(shifted), "--dem", str(small_dem)], "band B5 covers"),
        "dem not covering": ([str(good), "--dem", str(small_dem)], "does not cover"),
        "missing dem": ([str(good)], "--dem"),
        "missing input": ([str(tmp_path / "nope.tif")], "does not exist"),
    }


@pytest.mark.parametrize("case", ["not a raster", "wrong band count", "all nodata",
                                  "no overlap", "dem not covering", "missing dem",
                                  "missing input"])
def test_bad_input_exits_2_with_one_line_and_no_store(tmp_path, capsys, case):
    argv, expected = _cases(tmp_path)[case]
    out = tmp_path / "out.zarr"
    rc = tile_job.main([*argv, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith("python -m jobs.tile: error: ") and expected in err
    assert not out.exists()
    assert not list(tmp_path.glob(".out.zarr*"))


def test_bad_input_raises_input_error_in_library(tmp_path):
    argv, _ = _cases(tmp_path)["wrong band count"]
    with pytest.raises(InputError, match="three.tif"):
        resolve_input(argv[0])


def test_job_subprocess_exit_code_and_plan_noop(tmp_path, client):
    bad = tmp_path / "bad.tif"
    bad.write_text("nope")
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "jobs.tile", str(bad), "--out",
                           str(tmp_path / "o.zarr")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "bad.tif" in proc.stderr

    scene = coord_scene(tmp_path / "scene.tif", 200, 300)
    spec = resolve_input(scene)
    plan = plan_store(spec, tmp_path / "s.zarr")
    assert plan.created and plan.todo == ((0, 0),)
    run_plan(plan, client, progress=False)
    plan2 = plan_store(spec, tmp_path / "s.zarr")
    assert plan2.already_complete and run_plan(plan2, None).already_complete
    assert json.loads(json.dumps(store_attrs(tmp_path / "s.zarr")["source"]))["kind"] == "stack"
