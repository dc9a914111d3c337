"""Sentinel-2 SAFE products (L1C and L2A): which JP2 holds which band, and how DN become
reflectance, read from the product's MTD_MSIL1C.xml / MTD_MSIL2A.xml.

reflectance = (DN + offset) / quantification, DN 0 = nodata. Offsets (``BOA_ADD_OFFSET`` for
L2A, ``RADIO_ADD_OFFSET`` for L1C, -1000 since processing baseline 04.00) are indexed by
``band_id`` 0..12 in the order of ``S2_BAND_IDS``; products before 04.00 have no offset block,
so the offset is 0.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import InputError

S2_BAND_IDS: tuple[str, ...] = (
    "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12",
)
"""Sentinel-2 ``band_id`` 0..12 -> band name (the metadata's numbering, B8A included)."""

NATIVE_RES: dict[str, int] = {
    "B1": 60, "B2": 10, "B3": 10, "B4": 10, "B5": 20, "B6": 20, "B7": 20, "B8": 10,
    "B8A": 20, "B9": 60, "B10": 60, "B11": 20, "B12": 20,
}

_BAND_IN_NAME = re.compile(r"(?:^|_)B(\d{1,2}|8A)(?:_|\.|$)", re.IGNORECASE)
_RES_IN_NAME = re.compile(r"_(\d{2})m(?:\.|$)")


def band_of_name(name: str) -> str | None:
    """'T33UUU_20160608T153121_B02_10m.jp2' -> 'B2'; B8A -> 'B8A'; TCI/SCL/other -> None."""
    m = _BAND_IN_NAME.search(Path(name).name)
    if not m:
        return None
    tag = m.group(1).upper()
    return "B8A" if tag == "8A" else f"B{int(tag)}"


@dataclass(frozen=True)
class SafeProduct:
    """What the tiler needs from a SAFE product's metadata."""

    root: Path
    level: str  # "L1C" or "L2A"
    baseline: str
    quantification: float
    offsets: dict[str, float]  # band name -> additive offset on DN
    files: dict[str, Path]  # band name -> JP2 at the band's native (or finest present) res
    scl: Path | None = None  # L2A scene classification at 20 m, when the file is there
    coarse: dict[str, int] = field(default_factory=dict)
    """Bands present only coarser than their native resolution: band name -> metres."""


def looks_like_safe(folder: Path) -> bool:
    """A ``.SAFE`` folder name or a ``GRANULE/`` inside: a product, even without its metadata."""
    return folder.suffix.upper() == ".SAFE" or (folder / "GRANULE").is_dir()


def find_metadata(folder: Path) -> Path | None:
    for name in ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml"):
        if (folder / name).is_file():
            return folder / name
    return None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _iter_local(root: ET.Element, name: str):
    return (el for el in root.iter() if _local(el.tag) == name)


def _number(text: str | None, mtd: Path, name: str) -> float:
    try:
        value = float((text or "").strip())
    except ValueError:
        raise InputError(f"{mtd}: {name} is not a number ({text!r})") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"{mtd}: {name} is not a finite number ({text!r})")
    return value


def read_safe(folder: str | Path) -> SafeProduct:
    """Parse a SAFE folder's metadata. Raises InputError naming the file on anything missing."""
    folder = Path(folder)
    mtd = find_metadata(folder)
    if mtd is None:
        raise InputError(f"{folder}: no MTD_MSIL2A.xml or MTD_MSIL1C.xml: not a SAFE product")
    try:
        root = ET.parse(mtd).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{mtd}: not valid XML ({exc})") from exc
    level = "L2A" if "Level-2A" in root.tag or mtd.name == "MTD_MSIL2A.xml" else "L1C"

    baseline = next((el.text or "" for el in _iter_local(root, "PROCESSING_BASELINE")), "")
    qname = "BOA_QUANTIFICATION_VALUE" if level == "L2A" else "QUANTIFICATION_VALUE"
    qel = next(_iter_local(root, qname), None)
    if qel is None or not (qel.text or "").strip():
        raise InputError(f"{mtd}: no {qname}")
    quantification = _number(qel.text, mtd, qname)
    if not quantification > 0:
        raise InputError(f"{mtd}: {qname} must be positive, got {qel.text.strip()!r}")

    oname = "BOA_ADD_OFFSET" if level == "L2A" else "RADIO_ADD_OFFSET"
    offsets = {b: 0.0 for b in S2_BAND_IDS}
    for el in _iter_local(root, oname):
        idx = el.get("band_id", "")
        if not idx.isdigit() or not 0 <= int(idx) < len(S2_BAND_IDS):
            raise InputError(f"{mtd}: {oname} with unknown band_id {idx!r}")
        offsets[S2_BAND_IDS[int(idx)]] = _number(el.text, mtd, f"{oname} band_id {idx}")

    fmt = next((el.get("imageFormat") for el in _iter_local(root, "Granule")), None)
    exts = (".tif", ".jp2") if fmt == "GeoTIFF" else (".jp2", ".tif")
    candidates: dict[str, list[tuple[int, Path]]] = {}
    for el in _iter_local(root, "IMAGE_FILE"):
        rel = (el.text or "").strip()
        band = band_of_name(rel)
        if band is None:
            continue
        m = _RES_IN_NAME.search(rel + ".")
        res = int(m.group(1)) if m else NATIVE_RES[band]
        path = next((folder / (rel + e) for e in exts if (folder / (rel + e)).exists()),
                    folder / (rel + exts[0]))
        candidates.setdefault(band, []).append((res, path))
    files: dict[str, Path] = {}
    coarse: dict[str, int] = {}
    for band, options in candidates.items():
        res, files[band] = _pick(band, options)
        if res > NATIVE_RES[band]:
            coarse[band] = res
    scl = find_scl(folder, root, exts) if level == "L2A" else None
    return SafeProduct(folder, level, baseline, quantification, offsets, files, scl, coarse)


def _pick(band: str, options: list[tuple[int, Path]]) -> tuple[int, Path]:
    """(resolution, file) of a band: the native resolution when its file is there, else the
    finest file there; when none is there, the native (or finest) one listed, which the tiler
    then refuses as missing, naming it."""
    present = sorted((r, p) for r, p in options if p.exists())
    listed = sorted(options)
    for choices in (present, listed):
        native = [(r, p) for r, p in choices if r == NATIVE_RES[band]]
        if native or choices:
            return (native or choices)[0]
    raise AssertionError(band)  # options is never empty


def coarse_note(product: SafeProduct) -> str | None:
    """One line when some bands are only coarser than native in the product (e.g. only its
    R60m folder was downloaded): the scene is still mapped on the 10 m grid, from resampled
    coarse bands, so the map is coarser than a full product's; None otherwise."""
    if not product.coarse:
        return None
    by_res: dict[int, list[str]] = {}
    for band in S2_BAND_IDS:
        if band in product.coarse:
            by_res.setdefault(product.coarse[band], []).append(band)
    parts = ", ".join(f"{'/'.join(bands)} only at {res} m" for res, bands in sorted(by_res.items()))
    return (f"{product.root}: {parts} (native 10/20 m files missing): resampled to the 10 m "
            f"grid, so the map is coarser than from a complete product")


METADATA_FILES = ("MTD_MSIL2A.xml", "MTD_MSIL1C.xml", "MTD_TL.xml", "manifest.safe",
                  "INSPIRE.xml")
"""Files of a SAFE product that users give by mistake instead of the product's folder."""


def check_not_metadata(path: Path) -> None:
    """Refuse a SAFE product's metadata file given as the scene (it is XML, not an image):
    name the ``.SAFE`` folder to give instead."""
    if not path.is_file() or path.name not in METADATA_FILES:
        return
    product = next((p for p in path.parents if find_metadata(p) is not None
                    or p.suffix.upper() == ".SAFE"), path.parent)
    raise InputError(f"{path}: this is the metadata of a SAFE product, not an image: give the "
                     f".SAFE folder ({product})")


def find_scl(folder: Path, root: ET.Element, exts: tuple[str, ...] = (".jp2", ".tif")
             ) -> Path | None:
    """The 20 m scene classification of an L2A product: the ``..._SCL_20m`` IMAGE_FILE of its
    metadata (as in real products), else ``GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2``; None when
    the file is not there."""
    for el in _iter_local(root, "IMAGE_FILE"):
        rel = (el.text or "").strip()
        if rel.endswith("_SCL_20m"):
            for e in exts:
                if (folder / (rel + e)).is_file():
                    return folder / (rel + e)
    found = sorted(folder.glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2"))
    return found[0] if found else None


def sensing_date(folder: str | Path) -> str | None:
    """The product's sensing start (``PRODUCT_START_TIME`` of MTD_MSIL1C/2A.xml, ISO 8601 UTC),
    or None when the folder has no readable metadata or the field is missing."""
    mtd = find_metadata(Path(folder))
    if mtd is None:
        return None
    try:
        root = ET.parse(mtd).getroot()
    except (ET.ParseError, OSError):
        return None
    for el in _iter_local(root, "PRODUCT_START_TIME"):
        if el.text and el.text.strip():
            return el.text.strip()
    return None
