"""Several scenes of one event in one submission: two overlapping granules (crops of one
synthetic scene) give one inventory in which a landslide of the overlap is one polygon, a
failing scene does not stop the others, and a re-run redoes only what is missing."""

import json
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import rasterio
import shapely
from rasterio.windows import Window

from jobs.infer import main
from mapping.event import expand_inputs
from simulator.scene import write_scene

WINDOWS = {"A": Window(0, 0, 700, 640), "B": Window(420, 0, 700, 640),
           "union": Window(0, 0, 1120, 640)}


@pytest.fixture(scope="module")
def granules(tmp_path_factory) -> dict[str, Path]:
    """Granules A and B overlap by 280 columns; `union` is the map of both in one piece."""
    root = tmp_path_factory.mktemp("event")
    write_scene(root / "world", height=640, width=1120, seed=5, workers=1)
    paths = {}
    with rasterio.open(root / "world" / "scene.tif") as src:
        for name, win in WINDOWS.items():
            profile = {**src.profile, "width": win.width, "height": win.height,
                       "transform": src.window_transform(win)}
            paths[name] = root / f"{name}.tif"
            with rasterio.open(paths[name], "w", **profile) as dst:
                dst.write(src.read(window=win))
                dst.update_tags(**src.tags())
    return paths


@pytest.fixture(scope="module")
def event(granules, small_model, one_worker_cluster, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    args = ["--model", str(small_model), "--cluster", str(one_worker_cluster),
            "--min-area", "0"]
    assert main([str(granules["A"]), str(granules["B"]), "--out", str(out / "event"),
                 *args]) == 0
    assert main([str(granules["union"]), "--out", str(out / "union"), *args]) == 0
    return out


def layer(path: Path) -> tuple[np.ndarray, dict]:
    meta, _, wkb, columns = pyogrio.raw.read(path)
    return shapely.from_wkb(wkb), dict(zip(meta["fields"], columns, strict=True))


def test_a_landslide_seen_by_both_granules_is_one_polygon(event):
    inv, cols = layer(event / "event" / "inventory.gpkg")
    union, ucols = layer(event / "union" / "landslides.gpkg")
    assert 0 < len(inv) and (cols["n_scenes"] == 2).any()
    # no two inventory polygons share area
    left, right = shapely.STRtree(inv).query(inv, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(inv[left[pairs]], inv[right[pairs]]))
    assert np.all(overlap == 0)
    # the same landslides as one map of the union (edges of the granules see less context)
    assert len(inv) == pytest.approx(len(union), rel=0.05)
    assert cols["area_m2"].sum() == pytest.approx(ucols["area_m2"].sum(), rel=0.03)
    assert cols["area_m2"] == pytest.approx(shapely.area(inv))  # UTM: plane areas
    a, _ = layer(event / "event" / "A" / "landslides.gpkg")
    b, _ = layer(event / "event" / "B" / "landslides.gpkg")
    assert len(inv) < len(a) + len(b)
    assert set(",".join(cols["scenes"]).split(",")) == {"A", "B"}


def test_the_mosaic_shows_each_granules_probabilities(event, granules):
    report = json.loads((event / "event" / "report.json").read_text())
    assert report["mosaic_note"] is None and report["failed"] == 0
    with rasterio.open(event / "event" / "probability.vrt") as vrt, \
            rasterio.open(event / "union" / "probability.tif") as union:
        assert (vrt.crs, vrt.transform, vrt.shape) == (union.crs, union.transform, union.shape)
        mosaic = vrt.read(1)
    with rasterio.open(event / "event" / "A" / "probability.tif") as a:
        only_a = a.read(1)[:, :420]
    np.testing.assert_array_equal(mosaic[:, :420], only_a)


def test_a_failing_scene_is_reported_and_a_rerun_redoes_only_it(granules, small_model,
                                                                one_worker_cluster, tmp_path,
                                                                capsys):
    broken = tmp_path / "C.tif"
    broken.write_bytes(b"not a GeoTIFF")
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"{granules['A']}\n# a comment\n\nC.tif\n")
    out = tmp_path / "out"
    args = ["--out", str(out), "--model", str(small_model),
            "--cluster", str(one_worker_cluster)]
    assert main([str(listing), *args]) == 2
    report = json.loads((out / "report.json").read_text())
    status = {s["name"]: s for s in report["scenes"]}
    assert status["A"]["status"] == "mapped" and status["C"]["status"] == "failed"
    assert str(broken) in status["C"]["error"] and "\n" not in status["C"]["error"]
    assert (out / "A" / "mask.tif").is_file() and (out / "inventory.gpkg").is_file()
    assert "C: failed" in capsys.readouterr().out
    # the scene is fixed: the re-run maps C only
    broken.write_bytes(granules["B"].read_bytes())
    assert main([str(listing), *args]) == 0
    status = {s["name"]: s["status"] for s in
              json.loads((out / "report.json").read_text())["scenes"]}
    assert status == {"A": "unchanged", "C": "mapped"}
    # a setting that changes the maps (the halo of context): no scene is "unchanged" any more
    assert main([str(listing), *args, "--halo", "16"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert {s["name"]: s["status"] for s in report["scenes"]} == {"A": "mapped", "C": "mapped"}
    with rasterio.open(out / "A" / "mask.tif") as src:
        scene_a = json.loads((out / "A" / "report.json").read_text())
        assert src.tags()["LANDSLIDE_PROVENANCE"] == scene_a["provenance"]["products"]["digest"]
    inventory = pyogrio.read_info(out / "inventory.gpkg")["layer_metadata"]
    assert inventory["provenance"] == report["provenance"]["event"]["digest"]
    with rasterio.open(out / "probability.vrt") as vrt:
        assert vrt.tags()["LANDSLIDE_PROVENANCE"] == report["provenance"]["event"]["digest"]


def test_inputs_expand_from_folders_of_products_and_lists(tmp_path):
    products = tmp_path / "post"
    for name in ("S2B_MSIL2A_2.SAFE", "S2A_MSIL2A_1.SAFE"):
        (products / name).mkdir(parents=True)
    (products / "notes.txt").write_text("not a scene")
    scenes, event = expand_inputs([str(products)])
    assert event and [Path(s).name for s in scenes] == ["S2A_MSIL2A_1.SAFE",
                                                         "S2B_MSIL2A_2.SAFE"]
    assert expand_inputs(["one.tif"]) == (["one.tif"], False)
    assert expand_inputs(["a.tif", "b.tif"]) == (["a.tif", "b.tif"], True)
