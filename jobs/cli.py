"""What every job's ``main`` shares: the one-line error and exit status 2 for input mistakes."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import NoReturn

from common.errors import LandslideError
from common.paths import is_loop, loop_message
from tiler.bands import CONVENTIONS
from tiler.masks import SCL_EXCLUDED, parse_values

EXIT_INPUT = 2


def one_line(message: str) -> str:
    """A message on one line: further lines (a library's detail) joined with '; '."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def report_error(prog: str, exc: BaseException | str) -> int:
    """Print ``python -m jobs.NAME: error: <message>`` on stderr; returns the exit status 2."""
    print(f"python -m {prog}: error: {one_line(str(exc))}", file=sys.stderr, flush=True)
    return EXIT_INPUT


class Parser(argparse.ArgumentParser):
    """argparse whose error is one line (``python -m jobs.NAME: error: ...``, no usage dump),
    exit status 2, like every other refusal of the jobs."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_INPUT, f"{self.prog}: error: {one_line(message)}\n")


def run_job(prog: str, body: Callable[[], int]) -> int:
    """Run a job's body; a LandslideError becomes one line on stderr and exit status 2."""
    try:
        return body()
    except LandslideError as exc:
        return report_error(prog, exc)


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def finite(text: str) -> float:
    """argparse type: any finite number."""
    return _number(text)


def positive(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not > 0")
    return value


def non_negative(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def probability(text: str) -> float:
    """argparse type: a threshold strictly between 0 and 1 (0 would map every valid pixel as a
    landslide, 1 none)."""
    value = _number(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1 (exclusive)")
    return value


def mask_values(text: str) -> tuple[float, ...]:
    """argparse type: a comma-separated list of numbers ('3,8,9')."""
    try:
        return parse_values(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_scene_options(p: argparse.ArgumentParser) -> None:
    """The options of every job that reads a scene: the DEM, the radiometric conversion and
    the unusable-pixel mask (``args.mask``, ``args.mask_values``)."""
    p.add_argument("--dem", type=path_arg,
                   help="DEM raster (any CRS) for band-folder and SAFE input")
    p.add_argument("--offset", type=finite, default=None,
                   help="add to the spectral bands before dividing by --quantification, for "
                        "band files and stacks of any type (e.g. -1000: L2A baseline >= 04.00)")
    p.add_argument("--quantification", type=positive, default=None,
                   help="divide the spectral bands by this (default: 10000 for integer band "
                        "files, 1 for float files and stacks; a SAFE product gives its own)")
    p.add_argument("--convention", choices=CONVENTIONS, default=None,
                   help="what a stacked GeoTIFF holds (default: its LANDSLIDE_CONVENTION tag, "
                        f"else {CONVENTIONS[0]}); {CONVENTIONS[1]} is stored as it is")
    p.add_argument("--mask", type=path_arg, default=None, metavar="FILE",
                   help="one-band raster (any CRS, covering the scene) marking unusable "
                        "pixels, e.g. an SCL: pixels with one of --mask-values become nodata "
                        "(default: an L2A product's own SCL; L1C products are not masked)")
    p.add_argument("--mask-values", type=mask_values, default=None, metavar="V,V,...",
                   help="mask values to exclude (default: the SCL classes "
                        f"{','.join(map(str, SCL_EXCLUDED))}: no data, saturated, cloud "
                        "shadow, cloud medium/high probability, thin cirrus, snow)")


def bounded_int(low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: a whole number from low to high (no upper bound when high is None)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if high is None and value < low:
            raise argparse.ArgumentTypeError(f"{text} is less than {low}")
        if high is not None and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not between {low} and {high}")
        return value

    return parse


count = bounded_int(1)
"""argparse type: a whole number >= 1 (epochs, batch size, patches, pixels, threads)."""
seed = bounded_int(0, 2**32 - 1)
"""argparse type: a random seed, 0 to 2**32 - 1 (what numpy's generators take)."""


def fraction(text: str) -> float:
    """argparse type: a number from 0 (included) to 1 (excluded): a share, a dropout rate."""
    value = _number(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not from 0 to 1 (1 excluded)")
    return value


def path_arg(text: str) -> str:
    """argparse type of a path the job reads (INPUT, --dem, --mask, --pre, --model): a loop of
    symbolic links is refused here, in one line, before any work (it would otherwise surface
    as a traceback from the first ``Path.resolve``)."""
    if is_loop(text):
        raise argparse.ArgumentTypeError(loop_message(text, "the path"))
    return text
