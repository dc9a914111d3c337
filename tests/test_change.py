"""Pre-event change evidence end to end, on a synthetic event (jobs.synth event): the SCL's
clouds are nodata, change.tif holds HazMapper's rdNDVI (new landslides lose vegetation, old scars
do not), every polygon carries its NDVI before and after, and --require-vegetation-loss drops
the ones that were already bare."""

import json
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import rasterio.features
import shapely

from jobs.infer import main
from simulator.event import read_event, write_event
from simulator.sky import SCL_UNUSABLE
from tiler.change import ndvi, rdndvi

SIZE, OVERLAP = 512, 128


@pytest.fixture(scope="module")
def event(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("event")
    write_event(out, seed=1, height=SIZE, width=SIZE, overlap=OVERLAP)
    return read_event(out)


def infer(event: dict, model: Path, cluster: Path, out: Path, *extra: str) -> int:
    a = event["granules"]["A"]
    return main([a["post"]["product"], "--dem", event["dem"], "--model", str(model),
                 "--cluster", str(cluster), "--out", str(out), "--min-area", "0",
                 "--threshold", "0.3", *extra])


@pytest.fixture(scope="module")
def maps(event, small_model, one_worker_cluster, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("maps")
    pre_folder = str(Path(event["granules"]["A"]["pre"]["product"]).parent)
    runs = {"post": [], "pre": ["--pre", pre_folder],
            "filtered": ["--pre", pre_folder, "--require-vegetation-loss", "0.1"]}
    for name, extra in runs.items():
        assert infer(event, small_model, one_worker_cluster, root / name, *extra) == 0
    return {name: root / name for name in runs}


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read(1)


def test_clouds_and_shadows_of_the_scl_are_never_landslides(event, maps):
    a = event["granules"]["A"]
    with rasterio.open(a["post"]["scl"]) as src:
        scl = np.repeat(np.repeat(src.read(1), 2, axis=0), 2, axis=1)[:SIZE, :SIZE]
    unusable = np.isin(scl, SCL_UNUSABLE)
    assert unusable.any()
    mask = read(maps["post"] / "mask.tif")
    assert np.all(mask[unusable] == 255)
    report = json.loads((maps["post"] / "report.json").read_text())
    assert report["unusable_pixels"]["kind"] == "scl"
    assert report["unusable_pixels"]["masked_share"] >= unusable.mean() - 1e-9


def test_change_is_hazmappers_rdndvi_of_the_two_dates(event, maps):
    a = event["granules"]["A"]
    change = read(maps["pre"] / "change.tif")
    with rasterio.open(a["post"]["stack"]) as post, rasterio.open(a["pre"]["stack"]) as pre:
        bands = list(post.descriptions)
        p, q = post.read(), pre.read()
    ok = np.isfinite(change)
    expected = rdndvi(ndvi(q, np.ones(q.shape[1:]), bands), ndvi(p, np.ones(p.shape[1:]), bands))
    np.testing.assert_allclose(change[ok], expected[ok], atol=2e-3)
    truth = read(a["truth"])
    new = (truth == 1) & ok
    assert change[new].mean() < -0.2 < change[(truth == 0) & ok].mean()


def test_polygons_carry_ndvi_before_and_after(maps):
    meta, _, wkb, columns = pyogrio.raw.read(maps["pre"] / "landslides.gpkg")
    col = dict(zip(meta["fields"], columns, strict=True))
    assert {"ndvi_pre", "ndvi_post", "rdndvi"} <= set(col) and len(wkb) > 0
    change = read(maps["pre"] / "change.tif")
    with rasterio.open(maps["pre"] / "mask.tif") as src:
        polys = shapely.from_wkb(wkb)
        labels = rasterio.features.rasterize([(g, i + 1) for i, g in enumerate(polys)],
                                             out_shape=src.shape, transform=src.transform,
                                             dtype="int32")
    for i in range(min(len(polys), 20)):
        values = change[(labels == i + 1) & np.isfinite(change)]
        if values.size:
            assert col["rdndvi"][i] == pytest.approx(values.mean(), abs=1e-5)


def test_vegetation_loss_keeps_only_landslides_that_stripped_vegetation(maps):
    meta, _, _, columns = pyogrio.raw.read(maps["filtered"] / "landslides.gpkg")
    rd = dict(zip(meta["fields"], columns, strict=True))["rdndvi"]
    assert np.all(np.isnan(rd) | (rd <= -0.1))
    before, after = read(maps["pre"] / "mask.tif"), read(maps["filtered"] / "mask.tif")
    assert np.all(before[after == 1] == 1)  # only removals
    assert (after == 1).sum() < (before == 1).sum()
    np.testing.assert_array_equal(before == 255, after == 255)


def test_vegetation_loss_needs_a_pre_event_scene(event, small_model, one_worker_cluster, tmp_path,
                                                 capsys):
    assert infer(event, small_model, one_worker_cluster, tmp_path / "o",
                 "--require-vegetation-loss", "0.1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--require-vegetation-loss: needs --pre" in err[0]


def test_a_rerun_without_pre_publishes_no_change_of_the_earlier_pre(event, maps, small_model,
                                                                    one_worker_cluster,
                                                                    tmp_path):
    """--pre, then the same command without it into the same --out: nothing of the first run's
    pre-event scene is left in what is published (no change.tif, no NDVI fields)."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(maps["pre"], out)
    assert (out / "change.tif").is_file()
    assert infer(event, small_model, one_worker_cluster, out) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["pre"] is None and "change.tif" not in report["outputs"]
    assert not (out / "change.tif").exists()
    assert report["provenance"]["change"] is None
    fields = set(pyogrio.read_info(out / "landslides.gpkg")["fields"])
    assert not fields & {"ndvi_pre", "ndvi_post", "rdndvi"}
    assert report["blocks"]["computed"] == 0  # the predictions did not change
