"""An event's inventory: the landslide layers of several scenes as one layer in one CRS.

Neighbouring Sentinel-2 granules overlap (about 10 km), so a landslide in the overlap is mapped
by both. Polygons of different scenes that overlap (share area, not only a boundary) are one
landslide: they become one polygon, the union of them, whose attributes are those of the scene
that saw the most of it (its largest piece), except what is measured on the union itself:
``area_m2`` and ``perimeter_m``, the centroid's ``lon``/``lat``, ``scenes`` (every scene that saw
it) and ``n_scenes``. Areas and perimeters follow the project's one rule for ground metres
(``tiler.gridding.measures_ground_metres``): on the plane of a CRS whose metres are ground metres
(UTM, the scenes' grids), else geodesic on the WGS 84 ellipsoid (geographic CRSs, Web Mercator,
feet), so a 1 ha landslide is 1 ha in any ``--crs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.warp import transform

from common.errors import OutputError
from products.groups import connected_groups
from tiler.gridding import measures_ground_metres

LAYER = "landslides"
MEASURED = ("area_m2", "perimeter_m", "lon", "lat")
"""Attributes measured again on the merged polygon; the others come from its best scene."""
_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class SceneLayer:
    scene: str
    path: Path


def read_layer(path: Path, crs: CRS) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    """Polygons of one scene's layer, reprojected to ``crs``, with their field names and
    columns."""
    try:
        meta, _, wkb, columns = pyogrio.raw.read(str(path), layer=LAYER)
    except Exception as exc:  # noqa: BLE001 - any read failure of a layer we did not write
        raise OutputError(f"{path}: cannot read the landslide layer ({exc})") from None
    polys = shapely.from_wkb(wkb)
    src = CRS.from_user_input(meta["crs"])
    if src != crs and len(polys):
        def reproject(xy: np.ndarray) -> np.ndarray:
            x, y = transform(src, crs, xy[:, 0], xy[:, 1])
            return np.stack([x, y], axis=1)

        polys = shapely.transform(polys, reproject)
    return polys, list(meta["fields"]), list(columns)


def _groups(polys: np.ndarray, scene_of: np.ndarray) -> list[list[int]]:
    """Indices of the polygons that are one landslide: overlapping polygons of different scenes,
    joined transitively."""
    left, right = shapely.STRtree(polys).query(polys, predicate="intersects")
    keep = (left < right) & (scene_of[left] != scene_of[right])
    left, right = left[keep], right[keep]
    share = shapely.area(shapely.intersection(polys[left], polys[right])) > 0
    return connected_groups(len(polys), left[share], right[share])


def _measure(geoms: list, crs: CRS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Area (m2), perimeter (m, holes' rings included), and the centroid's lon and lat of each
    geometry."""
    arr = np.asarray(geoms, dtype=object)
    if not len(arr):
        return (np.zeros(0),) * 4
    c = shapely.centroid(arr)
    lon, lat = transform(crs, "EPSG:4326", shapely.get_x(c), shapely.get_y(c))
    if measures_ground_metres(crs):
        area, perimeter = shapely.area(arr), shapely.length(arr)
    else:
        area, perimeter = geodesic_area_perimeter(arr, crs)
    return area, perimeter, np.asarray(lon), np.asarray(lat)


def geodesic_area_perimeter(geoms: np.ndarray, crs: CRS) -> tuple[np.ndarray, np.ndarray]:
    """Area (m2) and perimeter (m, every ring) of polygons in ``crs`` on the WGS 84 ellipsoid."""
    def to_lonlat(xy: np.ndarray) -> np.ndarray:
        x, y = transform(crs, "EPSG:4326", xy[:, 0], xy[:, 1])
        return np.stack([x, y], axis=1)

    # exteriors counter-clockwise, holes clockwise: pyproj adds each ring's signed area
    lonlat = shapely.orient_polygons(shapely.transform(geoms, to_lonlat))
    area = np.array([_GEOD.geometry_area_perimeter(g)[0] for g in lonlat], dtype=np.float64)
    perimeter = np.array([_GEOD.geometry_length(b) for b in shapely.boundary(lonlat)],
                         dtype=np.float64)
    return np.abs(area), perimeter


def merge_layers(layers: list[SceneLayer], crs: CRS) -> tuple[list, list[str], list[list]]:
    """The inventory's polygons (in ``crs``), field names and columns (one list per field)."""
    polys, scene_of, rows, fields = [], [], [], None
    for k, layer in enumerate(layers):
        p, names, columns = read_layer(layer.path, crs)
        fields = fields or [n for n in names if n != "id"]
        for i in range(len(p)):
            row = {n: col[i] for n, col in zip(names, columns, strict=True)}
            rows.append(row)
        polys.extend(p)
        scene_of.extend([k] * len(p))
    fields = fields or ["area_m2", "mean_prob"]
    polys_arr = np.asarray(polys, dtype=object)
    scene_arr = np.asarray(scene_of, dtype=np.int64)
    merged, chosen, seen = [], [], []
    for group in _groups(polys_arr, scene_arr) if len(polys_arr) else []:
        best = max(group, key=lambda i: (polys_arr[i].area, -scene_arr[i]))
        merged.append(shapely.union_all(polys_arr[group]) if len(group) > 1 else polys_arr[best])
        chosen.append(rows[best])
        seen.append(sorted({layers[scene_arr[i]].scene for i in group}))
    area, perimeter, lon, lat = _measure(merged, crs)
    measured = {"area_m2": area, "perimeter_m": perimeter, "lon": lon, "lat": lat}
    out_fields = [*fields, "scenes", "n_scenes"]
    columns = [list(measured[f]) if f in measured else [r.get(f) for r in chosen]
               for f in fields]
    columns += [[",".join(s) for s in seen], [len(s) for s in seen]]
    return merged, out_fields, columns


def write_inventory(path: Path, layers: list[SceneLayer], crs: CRS,
                    metadata: dict[str, str] | None = None) -> int:
    """Write the event's inventory GeoPackage; returns its number of landslides."""
    geoms, fields, columns = merge_layers(layers, crs)
    data = [np.arange(1, len(geoms) + 1, dtype=np.int32)]
    for col in columns:
        arr = np.asarray(col)
        data.append(arr.astype(object) if arr.dtype.kind in "USO" else arr)
    pyogrio.raw.write(
        str(path), geometry=np.array([shapely.to_wkb(g) for g in geoms], dtype=object),
        field_data=data, fields=["id", *fields], crs=crs.to_wkt(),
        geometry_type="MultiPolygon", promote_to_multi=True, driver="GPKG", layer=LAYER,
        layer_metadata=metadata)
    return len(geoms)


def layer_crs(path: Path) -> CRS:
    """The CRS of a scene's landslide layer."""
    return CRS.from_user_input(pyogrio.read_info(str(path), layer=LAYER)["crs"])
