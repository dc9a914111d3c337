"""What every job's ``main`` shares: the one-line error and exit status 2 for input mistakes."""

from __future__ import annotations

import sys
from collections.abc import Callable

from common.errors import LandslideError

EXIT_INPUT = 2


def one_line(message: str) -> str:
    """A message on one line: further lines (a library's detail) joined with '; '."""
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def report_error(prog: str, exc: BaseException | str) -> int:
    """Print ``python -m jobs.NAME: error: <message>`` on stderr; returns the exit status 2."""
    print(f"python -m {prog}: error: {one_line(str(exc))}", file=sys.stderr, flush=True)
    return EXIT_INPUT


def run_job(prog: str, body: Callable[[], int]) -> int:
    """Run a job's body; a LandslideError becomes one line on stderr and exit status 2."""
    try:
        return body()
    except LandslideError as exc:
        return report_error(prog, exc)
