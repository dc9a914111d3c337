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

from unet.errors import DatasetError

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
    """One mask as uint8 (H, W), 1 = landslide."""
    m = _read_h5(path, "mask")
    if m.ndim == 3 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != 2:
        raise DatasetError(f"{path}: 'mask' has shape {m.shape}, expected (H, W)")
    return (m > 0).astype(np.uint8)


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
