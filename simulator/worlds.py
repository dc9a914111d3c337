"""The simulated worlds by name: "alpine" (the default, ``simulator.world``) and "monsoon"
(``simulator.monsoon``, deliberately different, for measuring generalisation)."""

from collections.abc import Callable

import numpy as np

from common.errors import SimulatorError
from simulator import monsoon
from simulator.relief import mountainness_at
from simulator.world import simulate_window

DEFAULT_WORLD = "alpine"
WORLDS: tuple[str, ...] = (DEFAULT_WORLD, monsoon.NAME)

Window = Callable[[int, int, int, int, int], tuple[np.ndarray, np.ndarray]]
Mountains = Callable[[int, np.ndarray, np.ndarray], np.ndarray]


def check_world(world: str) -> str:
    """The name, or SimulatorError naming the worlds there are."""
    if world not in WORLDS:
        raise SimulatorError(f"world must be one of {', '.join(WORLDS)}, got {world!r}")
    return world


def window_of(world: str) -> Window:
    """``simulate_window(seed, row0, col0, height, width)`` of the world."""
    return simulate_window if check_world(world) == DEFAULT_WORLD else monsoon.simulate_window


def mountains_of(world: str) -> Mountains:
    """``mountainness_at(seed, rows, cols)`` of the world (where its patches and scenes go)."""
    return mountainness_at if check_world(world) == DEFAULT_WORLD else monsoon.mountainness_at
