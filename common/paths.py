"""Paths given by the user, resolved without a traceback: a loop of symbolic links is one line
naming the path (``pathlib.Path.resolve`` raises RuntimeError for it on Python 3.11)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

from common.errors import LandslideError, PathLoopError


def loop_message(path: str | os.PathLike, what: str) -> str:
    """The one-line problem of a path that loops: '<path>: <what> is a loop of symbolic links'."""
    return f"{path}: {what} is a loop of symbolic links (it never reaches a file)"


def is_loop(path: str | os.PathLike) -> bool:
    """Whether following ``path`` runs into a loop of symbolic links."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def resolved(path: str | os.PathLike, what: str = "the path",
             error: type[LandslideError] = PathLoopError) -> Path:
    """``Path(path).resolve()``, or ``error`` (one line naming the path) when it loops."""
    if is_loop(path):
        raise error(loop_message(path, what))
    try:
        return Path(path).resolve()
    except RuntimeError:  # Python 3.11: "Symlink loop from ..." on a loop inside the path
        raise error(loop_message(path, what)) from None
