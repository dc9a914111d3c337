"""The second simulated world ("monsoon"): consistent windows, deliberately different from the
default world (more small landslides, other spectra), and reachable from `jobs.synth`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio

from simulator import monsoon
from simulator.patches import region_origins
from simulator.worlds import WORLDS, window_of

ROOT = Path(__file__).resolve().parents[1]
SIDE = 384


def _window(world: str) -> tuple[np.ndarray, np.ndarray]:
    r, c = region_origins(0, "TrainData", 1, world)[0]
    return window_of(world)(0, r, c, SIDE, SIDE)


def _sizes(mask: np.ndarray) -> np.ndarray:
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return stats[1:, cv2.CC_STAT_AREA]


def test_monsoon_window_equals_the_same_region_of_a_bigger_window() -> None:
    r0, c0 = region_origins(0, "TrainData", 1, "monsoon")[0]
    big, big_mask = monsoon.simulate_window(0, r0, c0, 260, 240)
    assert big_mask.any()
    r, c, h, w = 41, 77, 120, 100
    small, small_mask = monsoon.simulate_window(0, r0 + r, c0 + c, h, w)
    np.testing.assert_array_equal(small, big[:, r:r + h, c:c + w])
    np.testing.assert_array_equal(small_mask, big_mask[r:r + h, c:c + w])


def test_monsoon_is_another_world() -> None:
    alpine, alpine_mask = _window("alpine")
    other, other_mask = _window("monsoon")
    assert other.shape == alpine.shape and other.dtype == np.float32
    small_alpine, small_other = _sizes(alpine_mask), _sizes(other_mask)
    assert len(small_other) > 2 * len(small_alpine)  # more landslides ...
    assert np.median(small_other) < 0.5 * np.median(small_alpine)  # ... and smaller ones
    assert np.count_nonzero(small_other < 10) >= 3 > np.count_nonzero(small_alpine < 10)
    debris_alpine = alpine[:12, alpine_mask == 1].mean(axis=1)
    debris_other = other[:12, other_mask == 1].mean(axis=1)
    assert np.abs(debris_other / debris_alpine - 1).max() > 0.05  # other debris spectrum
    assert np.all(np.isfinite(other)) and other[:12].min() > 0


def test_cli_world_option(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def synth(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "jobs.synth", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    p = synth("patches", str(tmp_path / "p"), "--n-train", "16", "--n-valid", "16",
              "--world", "monsoon")
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "p" / "dataset.json").read_text())["world"] == "monsoon"
    p = synth("scene", str(tmp_path / "s"), "--height", "100", "--width", "90", "--world",
              "monsoon", "--stack-only")
    assert p.returncode == 0, p.stderr
    with rasterio.open(tmp_path / "s" / "scene.tif") as src:
        assert src.tags()["world"] == "monsoon" and src.count == 14
    p = synth("scene", str(tmp_path / "x"), "--world", "mars")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "--world" in p.stderr and not (tmp_path / "x").exists()


@pytest.mark.parametrize("world", WORLDS)
def test_library_refuses_an_unknown_world(world: str, tmp_path: Path) -> None:
    from common.errors import SimulatorError
    from simulator.patches import write_patches

    with pytest.raises(SimulatorError, match="world"):
        write_patches(tmp_path / "p", 4, 4, world=world + "x")
