"""Scene inference end to end: outputs on the input grid, COGs, polygons, seams, clusters,
killed workers and killed clients, bad inputs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pyogrio.raw
import pytest
import rasterio
import rasterio.features
import rasterio.warp
import shapely
import zarr
from rio_cogeo.cogeo import cog_validate

from jobs.infer import OUTPUTS, main, parse_args, run
from mapping.cluster import load_cluster_config
from simulator.scene import write_scene
from tests.data.model.data import make_bundle
from unet.bundle import load_bundle, normalize, read_bundle

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    # 1100 x 1300: not a multiple of 128, 2 x 2 blocks of 1024, a nodata swath edge.
    out = tmp_path_factory.mktemp("scene")
    write_scene(out, height=1100, width=1300, seed=3, workers=1)
    return out


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="module")
def cluster_yaml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cluster") / "cluster.yaml"
    path.write_text("local:\n  n_workers: 2\n  threads_per_worker: 1\n"
                    "  dashboard_address: null\n")
    return path


@pytest.fixture(scope="module")
def baseline(scene, model, cluster_yaml, tmp_path_factory) -> Path:
    """One undisturbed run, the reference for the disturbed ones."""
    out = tmp_path_factory.mktemp("baseline")
    run(parse_args([str(scene / "scene.tif"), "--model", str(model), "--out", str(out),
                    "--cluster", str(cluster_yaml), "--min-area", "0"]))
    return out


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def assert_same_outputs(a: Path, b: Path) -> None:
    np.testing.assert_array_equal(read(a / "mask.tif"), read(b / "mask.tif"))
    np.testing.assert_allclose(read(a / "probability.tif"), read(b / "probability.tif"),
                               atol=1e-6, equal_nan=True)


def test_outputs_on_exactly_the_input_grid(scene, baseline):
    with rasterio.open(scene / "scene.tif") as src:
        grid = (src.crs, src.transform, src.width, src.height)
        nodata = np.isnan(src.read(1))
    assert nodata.any()
    for name, dtype, nd in (("mask.tif", "uint8", 255), ("probability.tif", "float32", None)):
        with rasterio.open(baseline / name) as dst:
            assert (dst.crs, dst.transform, dst.width, dst.height) == grid
            assert dst.dtypes[0] == dtype
            band = dst.read(1)
        if nd is None:
            assert dst.nodata is not None and np.isnan(dst.nodata)
            np.testing.assert_array_equal(np.isnan(band), nodata)
        else:
            assert dst.nodata == nd
            np.testing.assert_array_equal(band == nd, nodata)
            assert set(np.unique(band)) <= {0, 1, 255}


def test_outputs_are_valid_cogs_with_overviews(baseline):
    for name in ("mask.tif", "probability.tif"):
        valid, errors, _ = cog_validate(str(baseline / name), strict=True)
        assert valid, errors
        with rasterio.open(baseline / name) as src:
            assert src.profile["tiled"] and src.overviews(1)


def test_polygon_areas_equal_mask_pixels(baseline):
    mask = read(baseline / "mask.tif")
    info = pyogrio.read_info(baseline / "landslides.gpkg")
    meta, _, geometry, fields = pyogrio.raw.read(baseline / "landslides.gpkg")
    with rasterio.open(baseline / "mask.tif") as src:
        pixel_area = abs(src.transform.a * src.transform.e)
        assert rasterio.crs.CRS.from_user_input(meta["crs"]) == src.crs
    assert info["features"] == len(geometry) > 0
    area = fields[list(meta["fields"]).index("area_m2")]
    mean_prob = fields[list(meta["fields"]).index("mean_prob")]
    assert area.sum() == pytest.approx(np.count_nonzero(mask == 1) * pixel_area)
    assert np.all((mean_prob >= 0.5 - 1e-6) & (mean_prob <= 1.0))
    report = json.loads((baseline / "report.json").read_text())
    assert report["landslides"] == len(geometry)
    assert report["landslide_area_m2"] == pytest.approx(area.sum())


def test_polygon_attributes_from_the_rasters_under_them(scene, baseline, model):
    """Each polygon's statistics equal those of the pixels the mask gives it, read from the
    probability raster and the store's slope and DEM; lon/lat inside the scene."""
    meta, _, geometry, fields = pyogrio.raw.read(baseline / "landslides.gpkg")
    col = dict(zip(meta["fields"], fields, strict=True))
    assert {"perimeter_m", "max_prob", "mean_slope_deg", "elev_min_m", "elev_max_m", "lon",
            "lat", "scene", "sensing_date", "model_id"} <= set(col)
    polygons = shapely.from_wkb(geometry)
    prob = read(baseline / "probability.tif")
    with rasterio.open(baseline / "mask.tif") as src:
        labels = rasterio.features.rasterize([(g, i + 1) for i, g in enumerate(polygons)],
                                             out_shape=(src.height, src.width),
                                             transform=src.transform, dtype="int32")
        bounds = rasterio.warp.transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    image = zarr.open_group(str(baseline / "tiles.zarr"))["image"]
    slope, dem = (np.asarray(image[i, : prob.shape[0], : prob.shape[1]]) for i in (12, 13))
    for i in np.random.default_rng(0).choice(len(polygons), 25, replace=False):
        inside = labels == i + 1
        assert col["max_prob"][i] == pytest.approx(prob[inside].max())
        assert col["mean_prob"][i] == pytest.approx(prob[inside].mean(), rel=1e-5)
        assert col["mean_slope_deg"][i] == pytest.approx(slope[inside].mean(), rel=1e-5)
        assert col["elev_min_m"][i] == pytest.approx(dem[inside].min())
        assert col["elev_max_m"][i] == pytest.approx(dem[inside].max())
        assert col["perimeter_m"][i] == pytest.approx(polygons[i].length)
    assert np.all(col["max_prob"] >= col["mean_prob"] - 1e-6)
    assert np.all((col["lon"] > bounds[0]) & (col["lon"] < bounds[2]))
    assert np.all((col["lat"] > bounds[1]) & (col["lat"] < bounds[3]))
    assert set(col["scene"]) == {"scene"} and set(col["sensing_date"]) == {""}
    assert set(col["model_id"]) == {read_bundle(model).model_id}
    layer = pyogrio.read_info(baseline / "landslides.gpkg")["layer_metadata"]
    assert float(layer["threshold"]) == read_bundle(model).threshold
    assert layer["model_id"] == read_bundle(model).model_id


def test_geojson_for_web_maps_in_wgs84(scene, model, baseline, cluster_yaml, tmp_path):
    out = tmp_path / "out"
    run(parse_args([str(baseline / "tiles.zarr"), "--model", str(model), "--out", str(out),
                    "--cluster", str(cluster_yaml), "--min-area", "0",
                    "--vector-format", "geojson"]))
    gj = pyogrio.read_info(out / "landslides.geojson")
    gp = pyogrio.read_info(out / "landslides.gpkg")
    assert rasterio.crs.CRS.from_user_input(gj["crs"]) == rasterio.crs.CRS.from_epsg(4326)
    assert gj["features"] == gp["features"] > 0
    assert list(gj["fields"]) == list(gp["fields"])
    assert "landslides.geojson" in json.loads((out / ".outputs.json").read_text())["outputs"]


def test_clouds_of_a_mask_are_nodata_and_the_map_elsewhere_unchanged(scene, model, baseline,
                                                                     cluster_yaml, tmp_path):
    with rasterio.open(scene / "scene.tif") as src:
        profile = {"driver": "GTiff", "width": src.width, "height": src.height, "count": 1,
                   "dtype": "uint8", "crs": src.crs, "transform": src.transform}
    scl = np.full((profile["height"], profile["width"]), 4, np.uint8)  # vegetation
    scl[200:500, 300:700] = 9  # cloud, high probability
    scl[600:650, 100:200] = 3  # cloud shadow
    with rasterio.open(tmp_path / "scl.tif", "w", **profile) as dst:
        dst.write(scl, 1)
    out = tmp_path / "out"
    run(parse_args([str(scene / "scene.tif"), "--model", str(model), "--out", str(out),
                    "--cluster", str(cluster_yaml), "--min-area", "0",
                    "--mask", str(tmp_path / "scl.tif")]))
    mask, before = read(out / "mask.tif"), read(baseline / "mask.tif")
    cloudy = np.isin(scl, (3, 9))
    assert (before[cloudy] == 1).any()  # there was something to hide
    assert np.all(mask[cloudy] == 255) and not (mask[cloudy] == 1).any()
    assert np.all(np.isnan(read(out / "probability.tif"))[cloudy])
    # beyond the network's reach of the clouds (their context changed), nothing else moved
    far = cv2.distanceTransform((~cloudy).astype(np.uint8), cv2.DIST_C, 3) > 128
    np.testing.assert_array_equal(mask[far], before[far])
    report = json.loads((out / "report.json").read_text())
    shares = report["unusable_pixels"]["shares"]
    assert shares["9"] == pytest.approx(cloudy.sum() / cloudy.size - 50 * 100 / cloudy.size,
                                        rel=1e-6)
    assert report["unusable_pixels"]["masked_share"] >= shares["9"] + shares["3"] - 1e-9


def test_tiled_inference_agrees_with_one_pass_over_the_scene(baseline, model):
    """Block-by-block prediction (1024 px blocks, 32 px halo) against the whole padded scene
    through the network in one call."""
    store = zarr.open_group(str(baseline / "tiles.zarr"), mode="r")
    keras_model, bundle = load_bundle(model)
    valid = store["valid"][:] == 1
    x = normalize(np.moveaxis(store["image"][:], 0, -1), bundle)
    x[~valid] = 0
    whole = np.asarray(keras_model(x[None], training=False))[0, ..., 0]
    tiled = zarr.open_group(str(baseline / "predictions.zarr"), mode="r")["probability"][:]
    agree = np.mean((whole[valid] >= 0.5) == (tiled[valid] >= 0.5))
    assert agree >= 0.999
    assert np.abs(whole[valid] - tiled[valid]).max() < 0.05
    report = json.loads((baseline / "report.json").read_text())
    assert 1.0 < report["compute_ratio"] <= 1.3


@pytest.fixture()
def dask_cluster(tmp_path):
    """A real `dask scheduler` and two one-thread `dask worker` processes on 127.0.0.1:
    the cluster.yaml that points at it."""
    from tests.clusters import running_cluster

    with running_cluster(tmp_path, ENV, tmp_path, workers=2, threads=1,
                         model_units=None) as cfg:
        yield cfg


def _flags(store: Path) -> np.ndarray:
    try:
        return zarr.open_group(str(store), mode="r")["predicted"][:]
    except Exception:  # not created yet
        return np.zeros(0)


def test_multiprocess_cluster_with_a_worker_killed_mid_job(dask_cluster, scene, model, baseline,
                                                           tmp_path):
    """Inference on a real scheduler + 2 worker processes; one worker dies after the first
    block is written. The job finishes and its output equals the undisturbed run's."""
    from distributed import Client

    out = tmp_path / "out"
    job = subprocess.Popen([sys.executable, "-m", "jobs.infer", str(scene / "scene.tif"),
                            "--model", str(model), "--out", str(out), "--cluster",
                            str(dask_cluster),
                            "--min-area", "0"], env=ENV, cwd=REPO)
    with Client(load_cluster_config(dask_cluster).address) as client:
        pids = client.run(os.getpid)  # {worker address: pid of the worker process}
    killed = None
    deadline = time.time() + 300
    while killed is None and job.poll() is None and time.time() < deadline:
        flags = _flags(out / "predictions.zarr")
        if flags.size and 0 < flags.sum() < flags.size:
            killed = min(pids.values())
            os.kill(killed, signal.SIGKILL)  # its nanny starts a new worker process
        time.sleep(0.05)
    assert job.wait(timeout=600) == 0
    assert killed is not None, "the job finished before a worker could be killed"
    assert_same_outputs(out, baseline)


def test_client_killed_mid_job_resumes_with_identical_output(scene, model, baseline, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "jobs.infer", str(scene / "scene.tif"), "--model", str(model),
           "--out", str(out), "--min-area", "0"]
    job = subprocess.Popen(cmd, env=ENV, cwd=REPO, start_new_session=True)
    deadline = time.time() + 300
    while job.poll() is None and time.time() < deadline:
        flags = _flags(out / "predictions.zarr")
        if flags.size and flags.sum() >= 1:
            os.killpg(job.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    job.wait(timeout=60)
    assert job.returncode == -signal.SIGKILL, "the job finished before it could be killed"
    assert not (out / "report.json").exists()
    done = int(_flags(out / "predictions.zarr").sum())
    assert subprocess.run(cmd, env=ENV, cwd=REPO).returncode == 0
    report = json.loads((out / "report.json").read_text())
    assert report["blocks"]["computed"] == report["blocks"]["total"] - done
    assert_same_outputs(out, baseline)


def _bad_cases(tmp_path: Path, scene: Path, model: Path) -> dict[str, list[str]]:
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    wrong_bands = make_bundle(tmp_path / "m13", n=8, epochs=1,
                              bands=("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9",
                                     "B10", "B11", "B12", "slope"))
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("local:\n  n_workers: two\n")
    s = str(scene / "scene.tif")
    return {
        "unreadable scene": [str(junk), "--model", str(model)],
        "band mismatch": [s, "--model", str(wrong_bands)],
        "missing model": [s, "--model", str(tmp_path / "nope")],
        "bad cluster.yaml": [s, "--model", str(model), "--cluster", str(bad_yaml)],
    }


def test_bad_inputs_one_line_exit_2_nothing_finished(scene, model, tmp_path, capsys):
    for name, args in _bad_cases(tmp_path, scene, model).items():
        out = tmp_path / name.replace(" ", "_")
        capsys.readouterr()
        assert main([*args, "--out", str(out)]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error" in err, (name, err)
        assert not any((out / o).exists() for o in OUTPUTS), name


def test_convention_mismatch_is_refused_unless_harmonized(scene, model, tmp_path, capsys):
    """A model trained on the Landslide4Sense release scale refuses reflectance scenes; with
    --harmonize the scene's percentiles are mapped onto the bundle's and the job runs."""
    import shutil

    other = tmp_path / "l4s-model"
    shutil.copytree(model, other)
    bundle = json.loads((other / "bundle.json").read_text())
    bundle["convention"] = "l4s-release"
    (other / "bundle.json").write_text(json.dumps(bundle))
    out = tmp_path / "out"
    args = [str(scene / "scene.tif"), "--model", str(other), "--out", str(out)]
    assert main(args) == 2
    assert "convention" in capsys.readouterr().err
    assert not (out / "report.json").exists()
    assert main([*args, "--harmonize"]) == 0
    assert json.loads((out / "report.json").read_text())["harmonized"] is True
