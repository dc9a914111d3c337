"""The event inventory measures ground metres by the project's one rule (issue 19, item 5).

``tiler.gridding.measures_ground_metres`` decides; where a CRS's metres are not ground metres
(geographic, Web Mercator, feet) the inventory's areas and perimeters are geodesic. Before, a
1 ha landslide in an inventory written in EPSG:3857 at 45 degrees N measured about 2 ha.
"""

from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from rasterio.crs import CRS

from products.inventory import LAYER, SceneLayer, write_inventory
from tiler.gridding import measures_ground_metres

UTM = CRS.from_epsg(32632)  # zone 32N, central meridian 9 E
E0, N0 = 610_000.0, 5_000_000.0  # about 45.1 N, 10.4 E: off the central meridian


def landslides() -> list:
    """A 1 ha square, a rotated rectangle with a hole, and a two-part landslide (m, UTM)."""
    square = shapely.box(E0, N0, E0 + 100, N0 + 100)
    holed = shapely.Polygon(
        [(E0 + 300, N0), (E0 + 700, N0 + 150), (E0 + 640, N0 + 310), (E0 + 240, N0 + 160)],
        holes=[[(E0 + 400, N0 + 100), (E0 + 450, N0 + 100), (E0 + 450, N0 + 140),
                (E0 + 400, N0 + 140)]])
    parts = shapely.MultiPolygon([shapely.box(E0, N0 + 500, E0 + 60, N0 + 530),
                                  shapely.box(E0 + 80, N0 + 500, E0 + 200, N0 + 560)])
    return [square, holed, parts]


def scene_layer(path: Path) -> Path:
    geoms = landslides()
    pyogrio.raw.write(
        str(path), geometry=np.array([shapely.to_wkb(g) for g in geoms], dtype=object),
        field_data=[np.arange(1, 4, dtype=np.int32), shapely.area(geoms),
                    shapely.length(geoms), np.array([0.9, 0.8, 0.7])],
        fields=["id", "area_m2", "perimeter_m", "mean_prob"], crs=UTM.to_wkt(),
        geometry_type="MultiPolygon", promote_to_multi=True, driver="GPKG", layer=LAYER)
    return path


def inventory(tmp_path: Path, crs: str) -> dict:
    layer = scene_layer(tmp_path / "A.gpkg")
    out = tmp_path / f"inventory-{crs.replace(':', '')}.gpkg"
    assert write_inventory(out, [SceneLayer("A", layer)], CRS.from_user_input(crs)) == 3
    meta, _, _, columns = pyogrio.raw.read(str(out))
    return dict(zip(meta["fields"], columns, strict=True))


@pytest.mark.parametrize("crs", ["EPSG:3857", "EPSG:4326", "EPSG:2263"])
def test_areas_and_perimeters_equal_utm_in_any_crs(tmp_path, crs):
    utm = inventory(tmp_path, "EPSG:32632")
    other = inventory(tmp_path, crs)
    np.testing.assert_allclose(other["area_m2"], utm["area_m2"], rtol=0.005)
    np.testing.assert_allclose(other["perimeter_m"], utm["perimeter_m"], rtol=0.005)


def test_one_hectare_is_one_hectare_in_web_mercator(tmp_path):
    cols = inventory(tmp_path, "EPSG:3857")
    holed = landslides()[1]
    assert cols["area_m2"][0] == pytest.approx(10_000, rel=0.005)
    assert cols["perimeter_m"][0] == pytest.approx(400, rel=0.005)
    # the hole is left out of the area, its ring counted in the perimeter (as on the plane)
    assert cols["area_m2"][1] == pytest.approx(holed.area, rel=0.005)
    assert cols["perimeter_m"][1] == pytest.approx(holed.length, rel=0.005)
    assert cols["area_m2"][2] == pytest.approx(60 * 30 + 120 * 60, rel=0.005)


@pytest.mark.parametrize("crs, ground", [
    ("EPSG:32632", True), ("EPSG:3035", True), ("EPSG:2154", True),
    ("EPSG:3857", False), ("EPSG:4326", False), ("EPSG:2263", False), ("EPSG:3395", False),
])
def test_one_rule_for_ground_metres(crs, ground):
    assert measures_ground_metres(CRS.from_user_input(crs)) is ground
