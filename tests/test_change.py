"""Pre-event change evidence end to end, on a synthetic event (jobs.synth event): the SCL's
clouds are nodata, change.tif holds HazMapper's rdNDVI (new landslides lose vegetation, old scars
do not), every polygon carries its NDVI before and after, and --require-vegetation-loss drops
the ones that were already bare, or whose rdNDVI is undefined, keeping (and marking) only those
without any usable pre-event pixel; NDVI is computed only from reflectance."""

import json
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import rasterio.features
import shapely

from common.errors import InputError
from jobs.infer import main
from products.change import (
    LOSS,
    NO_EVIDENCE,
    VEGETATED_NDVI,
    check_ndvi_convention,
    ndvi,
    rdndvi,
    vegetation_evidence,
)
from simulator.event import read_event, write_event
from simulator.sky import SCL_UNUSABLE
from tiler.bands import CONVENTION, L4S_RELEASE_CONVENTION

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
    post = event["granules"]["A"]["post"]["product"]
    runs = {"post": [], "pre": ["--pre", pre_folder],
            "filtered": ["--pre", pre_folder, "--require-vegetation-loss", "0.1"],
            "same": ["--pre", post, "--require-vegetation-loss", "0.05"]}
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
    col = dict(zip(meta["fields"], columns, strict=True))
    loss = col["change_evidence"] == LOSS
    none = col["change_evidence"] == NO_EVIDENCE
    assert np.all(loss | none)
    assert np.all(col["rdndvi"][loss] <= -0.1)
    assert np.all(col["ndvi_pre"][loss] >= VEGETATED_NDVI)
    # kept without evidence: no pre-event pixel under it at all
    assert np.all(np.isnan(col["ndvi_pre"][none]) & np.isnan(col["ndvi_post"][none]))
    # the same polygons as the unfiltered run's that meet the rule, no others
    meta, _, _, columns = pyogrio.raw.read(maps["pre"] / "landslides.gpkg")
    every = dict(zip(meta["fields"], columns, strict=True))
    with np.errstate(invalid="ignore"):
        meets = (every["ndvi_pre"] >= VEGETATED_NDVI) & (every["rdndvi"] <= -0.1)
    unseen = np.isnan(every["ndvi_pre"]) & np.isnan(every["ndvi_post"])
    assert (loss.sum(), none.sum()) == (meets.sum(), unseen.sum())
    report = json.loads((maps["filtered"] / "report.json").read_text())
    assert report["kept_without_pre_event"] == int(none.sum())
    assert pyogrio.read_info(maps["filtered"] / "landslides.gpkg")["layer_metadata"][
        "require_vegetation_loss"] == "0.1"
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


def test_pre_event_equal_to_post_event_drops_every_landslide(maps):
    """The same scene on both dates lost no vegetation: rdNDVI is 0 where it is defined, and
    undefined (NaN) where NDVI_post + NDVI_pre + 1 <= 0, which is no evidence of loss either."""
    before = pyogrio.raw.read(maps["pre"] / "landslides.gpkg")[2]
    assert len(before) > 0  # there was something to drop
    meta, _, wkb, _ = pyogrio.raw.read(maps["same"] / "landslides.gpkg")
    assert len(wkb) == 0 and "change_evidence" in meta["fields"]
    assert not (read(maps["same"] / "mask.tif") == 1).any()
    report = json.loads((maps["same"] / "report.json").read_text())
    assert report["landslides"] == 0 and report["kept_without_pre_event"] == 0


def test_only_polygons_without_any_usable_pre_event_pixel_are_kept_unseen():
    usable = np.array([40, 40, 40, 40, 40, 0, 0])
    ndvi_pre = np.array([0.7, 0.7, 0.1, np.nan, 0.7, np.nan, np.nan])
    rd = np.array([-0.4, -0.01, -0.4, -0.4, np.nan, np.nan, -0.4])
    evidence = vegetation_evidence(usable, ndvi_pre, rd, 0.05)
    # lost vegetation; too little loss; bare before; pre-event NDVI undefined; rdNDVI
    # undefined; no usable pre-event pixel (twice)
    assert evidence.tolist() == [LOSS, "", "", "", "", NO_EVIDENCE, NO_EVIDENCE]
    assert vegetation_evidence(usable[:1], ndvi_pre[:1], np.array([-0.05]), 0.05)[0] == LOSS


def test_ndvi_needs_reflectance():
    check_ndvi_convention(CONVENTION, "scene.tif")
    with pytest.raises(InputError) as caught:
        check_ndvi_convention(L4S_RELEASE_CONVENTION, "release.tif")
    message = str(caught.value)
    assert message.startswith("release.tif: ") and "\n" not in message
    assert L4S_RELEASE_CONVENTION in message and "--pre" in message
