"""A DEM's height unit: metres, or feet converted to metres as the file declares them, and the
heights that cannot be metres on Earth (a DEM in feet that does not say so)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

from common.errors import InputError

FOOT_M = 0.3048
US_SURVEY_FOOT_M = 1200 / 3937
MAX_ELEVATION_M = 8900.0
"""Above Everest (8849 m): a DEM reaching higher over a scene is not in metres (feet?)."""
MIN_ELEVATION_M = -11000.0
"""Below the Challenger Deep (-10935 m)."""


def dem_unit(ds: rasterio.DatasetReader, path: Path) -> tuple[str | None, str, float]:
    """The DEM's unit as declared (band unit type, else a ``UNITS`` metadata item of the band
    or the dataset), where it was declared, and metres per unit (1 when undeclared). A unit
    that is not metres, feet or US survey feet, or two that disagree, are refused."""
    declared = [(ds.units[0] if ds.units else None, "band unit type"),
                *((v, f"{k}={v} tag") for tags in (ds.tags(1), ds.tags())
                  for k, v in tags.items() if k.lower() in ("units", "unit"))]
    found = [(u.strip(), where, metres_per(u)) for u, where in declared if u and u.strip()]
    if not found:
        return None, "", 1.0
    for unit, where, scale in found:
        if scale is None:
            raise InputError(f"{path}: the DEM's unit {unit!r} ({where}) is not metres, feet "
                             f"or US survey feet: cannot convert its heights to metres")
    if len({scale for _, _, scale in found}) > 1:
        listed = ", ".join(f"{u!r} ({w})" for u, w, _ in found)
        raise InputError(f"{path}: the DEM's units disagree: {listed}")
    return found[0][0], found[0][1], found[0][2]


def metres_per(unit: str) -> float | None:
    """Metres per ``unit`` (as GDAL, EPSG and exporters spell metres, feet and US survey feet),
    None when it is none of them."""
    u = " ".join(unit.lower().replace("_", " ").replace("-", " ").replace(".", " ").split())
    words = u.split()
    if words[0] in ("m", "metre", "metres", "meter", "meters"):
        return 1.0
    feet = {"ft", "foot", "feet", "ftus", "usft"}
    if not feet & set(words):
        return None
    if {"survey", "us", "ftus", "usft"} & set(words):  # "US survey foot", "Foot_US", "ftUS"
        return US_SURVEY_FOOT_M
    if words[0] in feet or words[0] == "international":
        return FOOT_M
    return None


def implausible_heights_note(dem: str | Path, heights: np.ndarray, unit: str | None,
                             where: str) -> str | None:
    """A note naming a DEM whose heights over the scene (metres, NaN = nodata) are no heights on
    Earth (feet that do not say so?), else None."""
    low, high = float(np.nanmin(heights)), float(np.nanmax(heights))
    if high <= MAX_ELEVATION_M and low >= MIN_ELEVATION_M:
        return None
    what = (f"reaches {high:.0f} m over the scene, above any height on Earth (Everest: 8849 m)"
            if high > MAX_ELEVATION_M else
            f"reaches {low:.0f} m over the scene, below any depth on Earth (-10935 m)")
    hint = (f"its unit is {unit} ({where})" if unit is not None else
            "its unit is not declared: if it is in feet, declare it (gdal_edit -units ft FILE)")
    return f"{dem}: the DEM {what}: check its unit; {hint}"
