"""Landslide4Sense-layout patch sets cut from the simulated world.

Patches are 128 x 128 windows of the world. To share the fixed cost of a window (terrain halo,
landslide tracing), they are cut 4 x 4 from 512 x 512 regions; region positions are drawn by a
seeded generator inside a zone of the world, with a bias to mountains (where landslides are),
as the real dataset's patches were chosen around landslide events. TrainData and ValidData come
from zones a million pixels apart, so they never overlap; scenes use a third zone.
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from common import owned
from common.errors import SimulatorError
from simulator import JOB
from simulator.worlds import DEFAULT_WORLD, check_world, mountains_of, window_of
from tiler.bands import BANDS, CONVENTION, TILE

DEFAULT_N_TRAIN = 1200
DEFAULT_N_VALID = 300
REGION = 4 * TILE
ZONE = 1_000_000
ZONES = {"TrainData": (0, 0), "ValidData": (0, 2 * ZONE)}
"""Global (row, col) origin of each split's zone of the world."""


@dataclass(frozen=True)
class PatchSet:
    """What ``write_patches`` wrote."""

    root: Path
    n_train: int
    n_valid: int
    seed: int


def region_origins(seed: int, split: str, n_regions: int,
                   world: str = DEFAULT_WORLD) -> list[tuple[int, int]]:
    """Seeded (row, col) of the split's regions, mostly in the world's mountains."""
    mountainness_at = mountains_of(world)
    zr, zc = ZONES[split]
    rng = np.random.default_rng([seed, 1 if split == "TrainData" else 2])
    out: list[tuple[int, int]] = []
    while len(out) < n_regions:
        r = zr + int(rng.integers(0, ZONE - REGION))
        c = zc + int(rng.integers(0, ZONE - REGION))
        m = float(mountainness_at(seed, np.array([r + REGION / 2]), np.array([c + REGION / 2]))[0])
        if m > 0.6 or rng.random() < 0.2:
            out.append((r, c))
    return out


def _write_region(job: tuple[int, int, int, str, int, int, str]) -> None:
    """Simulate one region and write its patches numbered from ``first``."""
    seed, row0, col0, split_dir, first, count, world = job
    img, mask = window_of(world)(seed, row0, col0, REGION, REGION)
    per_row = REGION // TILE
    for k in range(count):
        r, c = (k // per_row) * TILE, (k % per_row) * TILE
        i = first + k
        tile = np.ascontiguousarray(img[:, r:r + TILE, c:c + TILE].transpose(1, 2, 0))
        with h5py.File(os.path.join(split_dir, "img", f"image_{i}.h5"), "w") as f:
            f.create_dataset("img", data=tile)
        with h5py.File(os.path.join(split_dir, "mask", f"mask_{i}.h5"), "w") as f:
            f.create_dataset("mask", data=mask[r:r + TILE, c:c + TILE])


def _jobs(seed: int, split: str, split_dir: str, n: int,
          world: str) -> list[tuple[int, int, int, str, int, int, str]]:
    per_region = (REGION // TILE) ** 2
    n_regions = -(-n // per_region)
    jobs = []
    for j, (r, c) in enumerate(region_origins(seed, split, n_regions, world)):
        first = j * per_region + 1
        jobs.append((seed, r, c, split_dir, first, min(per_region, n - j * per_region), world))
    return jobs


def _simulate(jobs: list[tuple[int, int, int, str, int, int, str]], workers: int) -> None:
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(_write_region, jobs))
    else:
        for job in jobs:
            _write_region(job)


def write_patches(out_dir: str | os.PathLike, n_train: int = DEFAULT_N_TRAIN,
                  n_valid: int = DEFAULT_N_VALID, seed: int = 0,
                  workers: int | None = None, world: str = DEFAULT_WORLD) -> PatchSet:
    """Write ``OUT/{TrainData,ValidData}/{img,mask}/`` and ``OUT/dataset.json``.

    OUT must be new, empty, or a patch set written here before (``common.owned``: a folder of
    the user's, such as a real Landslide4Sense release, is refused and left untouched). Each
    split is built in a temporary folder inside OUT and renamed into place (replacing the
    earlier split), and ``dataset.json`` is written last, so an interrupted run never leaves a
    set that looks complete. ``workers`` threads simulate regions in parallel (default: the
    CPUs available, at most 4; numpy releases the GIL in its array loops). ``world``: one of
    ``simulator.worlds.WORLDS`` (recorded in dataset.json when it is not the default).
    """
    check_world(world)
    if not 0 <= seed < 2**32:
        raise SimulatorError(f"seed must be in [0, 2**32), got {seed}")
    if n_train < 1 or n_valid < 1:
        raise SimulatorError(f"n_train and n_valid must be >= 1, got {n_train} and {n_valid}")
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise SimulatorError(f"{root} exists and is not a directory")
    owned.claim_folder(root, JOB)
    for name in ("TrainData", "ValidData"):
        owned.check_replaceable(root / name, JOB, "dir")
    owned.remove(root / "dataset.json", JOB)
    if workers is None:
        workers = min(4, len(os.sched_getaffinity(0)))
    with ExitStack() as stack:
        jobs = []
        for split, n in (("TrainData", n_train), ("ValidData", n_valid)):
            tmp = stack.enter_context(owned.output_folder(root / split, JOB))
            os.makedirs(tmp / "img")
            os.makedirs(tmp / "mask")
            jobs += _jobs(seed, split, str(tmp), n, world)
        _simulate(jobs, workers)
    meta = {"convention": CONVENTION, "bands": list(BANDS), "seed": seed, "n_train": n_train,
            "n_valid": n_valid}
    if world != DEFAULT_WORLD:
        meta["world"] = world
    owned.write_text(root / "dataset.json", json.dumps(meta, indent=2) + "\n", JOB)
    return PatchSet(root, n_train, n_valid, seed)
