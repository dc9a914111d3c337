"""The Landslide4Sense reader: the on-disk layout, the train/validation split and `tf.data`.

Layout: ROOT/{TrainData,ValidData,TestData}/img/image_N.h5 (key `img`, 128x128x14, float32 or
float64) and .../mask/mask_N.h5 (key `mask`, 128x128 uint8, 1 = landslide). Images are matched to
masks by N; a split without masks (ValidData and TestData of the real release) has masks None.
ROOT/dataset.json, when present, declares the radiometric "convention" and the "bands"; without it
the data is the real release ("l4s-release", B1..B12, slope, DEM). Band names and conventions are
data here: this package never imports the tiler.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from common.errors import DatasetError

RELEASE_CONVENTION = "l4s-release"
RELEASE_BANDS: tuple[str, ...] = tuple(f"B{i}" for i in range(1, 13)) + ("slope", "DEM")
SPLITS = ("TrainData", "ValidData", "TestData")
_NUMBER = re.compile(r"^(?:image|mask)_(\d+)\.h5$")


@dataclass(frozen=True)
class Sample:
    """One patch: its number N, image file and mask file (None when the split has no masks)."""

    index: int
    image: Path
    mask: Path | None


@dataclass(frozen=True)
class DatasetInfo:
    root: Path
    convention: str
    bands: tuple[str, ...]


def read_info(root: str | Path) -> DatasetInfo:
    """The convention and band names of a dataset folder (dataset.json, else the real release)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder")
    meta = root / "dataset.json"
    if not meta.exists():
        return DatasetInfo(root, RELEASE_CONVENTION, RELEASE_BANDS)
    try:
        data = json.loads(meta.read_text())
        return DatasetInfo(root, str(data["convention"]), tuple(str(b) for b in data["bands"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{meta}: unreadable dataset description ({exc})") from exc


def _numbered(folder: Path) -> dict[int, Path]:
    found = {}
    if folder.is_dir():
        for p in folder.iterdir():
            m = _NUMBER.match(p.name)
            if m:
                found[int(m.group(1))] = p
    return found


def list_split(root: str | Path, split: str) -> list[Sample]:
    """The patches of one split, sorted by N. Masks are matched by N; none at all is allowed,
    but a split where only some images have masks is an error (it would silently shrink)."""
    base = Path(root) / split
    images = _numbered(base / "img")
    if not images:
        raise DatasetError(f"{base / 'img'}: no image_N.h5 files")
    masks = _numbered(base / "mask")
    if masks:
        missing = sorted(set(images) - set(masks))
        if missing:
            n = missing[0]
            raise DatasetError(f"{base / 'mask'}: no mask_{n}.h5 for image_{n}.h5")
    return [Sample(n, images[n], masks.get(n)) for n in sorted(images)]


def has_masks(samples: list[Sample]) -> bool:
    return bool(samples) and all(s.mask is not None for s in samples)


def _read_h5(path: str | Path, key: str) -> np.ndarray:
    try:
        with h5py.File(path, "r") as f:
            return np.asarray(f[key][()])
    except (OSError, KeyError) as exc:
        raise DatasetError(f"{path}: cannot read dataset {key!r} ({exc})") from exc


def read_image(path: str | Path) -> np.ndarray:
    """One image as float32 (H, W, bands), whatever float type the file stores."""
    x = _read_h5(path, "img")
    if x.ndim != 3:
        raise DatasetError(f"{path}: 'img' has shape {x.shape}, expected (H, W, bands)")
    return x.astype(np.float32, copy=False)


def read_mask(path: str | Path) -> np.ndarray:
    """One mask as uint8 (H, W), 1 = landslide. Any value other than 0 and 1 is refused: a mask
    of 0/255, or of class numbers, means something this reader cannot guess."""
    m = _read_h5(path, "mask")
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise DatasetError(f"{path}: 'mask' has shape {m.shape}, expected (H, W)")
    bad = (m != 0) & (m != 1)
    if np.any(bad):
        found = np.unique(m[bad])
        shown = ", ".join(_value(v) for v in found[:5]) + (", ..." if len(found) > 5 else "")
        raise DatasetError(f"{path}: 'mask' must hold only 0 and 1, found {shown} "
                           f"in {int(bad.sum())} pixels")
    return m.astype(np.uint8)


def _value(v) -> str:
    v = v.item()
    return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)


def _check_image(path: Path, bands: tuple[str, ...]) -> tuple[int, int]:
    """Reads one image, refuses a wrong band count or a non-finite value; returns (H, W)."""
    x = read_image(path)
    if x.shape[-1] != len(bands):
        raise DatasetError(f"{path}: 'img' has {x.shape[-1]} bands, expected {len(bands)} "
                           f"({bands[0]}..{bands[-1]})")
    bad = ~np.isfinite(x)
    if np.any(bad):
        n = int(bad.sum())
        r, c, b = (int(i[0]) for i in np.nonzero(bad))
        raise DatasetError(f"{path}: 'img' has {n} non-finite value{'s' if n > 1 else ''} (NaN "
                           f"or inf), the first at row {r}, column {c}, band {bands[b]}")
    return x.shape[0], x.shape[1]


def _tile_size(samples: list[Sample], sizes: list[tuple[int, int]]) -> int:
    """The size most patches have (the real release: 128); it must be square."""
    counts: dict[tuple[int, int], int] = {}
    for size in sizes:
        counts[size] = counts.get(size, 0) + 1
    common = max(counts, key=lambda k: counts[k])
    if common[0] != common[1]:
        raise DatasetError(f"{samples[sizes.index(common)].image}: patches of "
                           f"{common[0]}x{common[1]} px, expected square tiles")
    return common[0]


def check_samples(samples: list[Sample], bands: tuple[str, ...],
                  tile_size: int | None = None) -> int:
    """Read every image and mask once (h5py, this process) and refuse the first bad one.

    Refused, naming the file: unreadable, a band count other than len(bands), NaN or inf, a
    mask with values other than 0 and 1, and an image or mask of another size than
    tile_size x tile_size (None: the size most of the images have). Returns the tile size.
    This runs before training so that no bad file reaches the tf.data pipeline, where an error
    names no file (a shape) or goes unnoticed (NaN statistics).
    """
    if not samples:
        raise DatasetError("no patches to check")
    sizes: list[tuple[int, int]] = []
    mask_sizes: list[tuple[int, int] | None] = []
    for s in samples:
        sizes.append(_check_image(s.image, bands))
        mask_sizes.append(read_mask(s.mask).shape if s.mask is not None else None)
    if tile_size is None:
        tile_size = _tile_size(samples, sizes)
    expected = (tile_size, tile_size)
    for s, size, mask_size in zip(samples, sizes, mask_sizes, strict=True):
        for path, key, found in ((s.image, "img", size), (s.mask, "mask", mask_size)):
            if found is not None and found != expected:
                raise DatasetError(f"{path}: {key!r} is {found[0]}x{found[1]} px, expected "
                                   f"{tile_size}x{tile_size} (the dataset's tile size)")
    return tile_size


def train_val_split(
    root: str | Path, val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Training and validation patches.

    ValidData is the validation split when it exists with masks; otherwise (the real release,
    whose ValidData has no masks) a fraction of TrainData is held out: a seeded permutation of the
    patch numbers, so the same seed gives the same split on every worker and on resume.
    """
    train = list_split(root, "TrainData")
    if not has_masks(train):
        raise DatasetError(f"{Path(root) / 'TrainData' / 'mask'}: training patches need masks")
    valid_dir = Path(root) / "ValidData" / "img"
    if valid_dir.is_dir() and _numbered(valid_dir):
        valid = list_split(root, "ValidData")
        if has_masks(valid):
            return train, valid
    if not 0 < val_fraction < 1:
        raise DatasetError(f"{root}: ValidData has no masks and val-fraction {val_fraction} "
                           "is not in (0, 1)")
    order = np.random.default_rng(seed).permutation(len(train))
    n_val = max(1, int(round(len(train) * val_fraction)))
    if n_val >= len(train):
        raise DatasetError(f"{root}: too few training patches ({len(train)}) to hold some out")
    val_idx = set(order[:n_val].tolist())
    return (
        [s for i, s in enumerate(train) if i not in val_idx],
        [s for i, s in enumerate(train) if i in val_idx],
    )
