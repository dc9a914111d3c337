"""The project's one error family.

Every input mistake (a scene, a DEM, a model bundle, a dataset, a cluster.yaml, an option) is
raised as a subclass of ``LandslideError`` whose message names the file or option at fault and
the problem, in one line. Each job's ``main`` turns it into
``python -m jobs.NAME: error: <file>: <problem>`` and exit status 2 (``jobs.cli``); anything else
that escapes is a bug, and keeps its traceback.

A Dask task (run in a worker process) wraps itself in ``reaches_client`` so that the error it
raises comes back to the job as the same class and message (``detached``).
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


class LandslideError(Exception):
    """Base class of every error the jobs report as a one-line message (exit status 2)."""


class ForeignFileError(LandslideError):
    """A job asked to write over a file, or into a folder, that it did not make: it refuses and
    touches nothing (``common.owned``). The message names the file or folder."""


class PathLoopError(LandslideError):
    """A path that is a loop of symbolic links (``common.paths``). The message names it."""


class TilerError(LandslideError):
    """Bad input or a store that cannot be used. The message names the file."""


class InputError(TilerError):
    """A scene, band file, SAFE product or DEM that cannot be read or does not fit."""


class StoreError(TilerError):
    """A tile or prediction store that is missing, incomplete or not what it claims to be."""


class OutputError(TilerError):
    """An output (store, raster, polygons, preview) that cannot be written where asked."""


class UnetError(LandslideError):
    """The model side's base class. The message names the file or option at fault."""


class DatasetError(UnetError):
    """A Landslide4Sense-layout folder or file that cannot be used."""


class BundleError(UnetError):
    """A model bundle that is missing, unreadable or does not match the input."""


class SimulatorError(LandslideError):
    """Bad arguments or an output path that cannot be used. The message names the path."""


class ClusterConfigError(LandslideError):
    """A cluster.yaml that cannot be used; the message is one line naming the file and key."""


class BusyError(LandslideError):
    """Another job holds the lock on this output."""


class InferError(LandslideError):
    """A scene and a model that do not go together."""


def detached(exc: LandslideError) -> LandslideError:
    """``exc`` without the exceptions it was raised from, ready to travel from a worker to the
    job. Dask pickles a task's error with its whole chain (``__cause__``, ``__context__``) and
    sends a bare ``Exception(repr)`` instead when any link does not unpickle, as rasterio's
    CPLE errors do not: the job then saw a traceback, not one line. The message already says
    what the chain said. An error that still does not pickle (a subclass with another
    ``__init__``) becomes a LandslideError with its message."""
    exc.__cause__ = None
    exc.__context__ = None
    exc.__suppress_context__ = True
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # noqa: BLE001 - anything that stops it travelling
        return LandslideError(str(exc))
    return exc


def reaches_client(task: Callable[P, R]) -> Callable[P, R]:
    """Decorator of a Dask task: a LandslideError it raises reaches the job as a LandslideError
    of the same class and message (``detached``), so the job prints one line."""
    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return task(*args, **kwargs)
        except LandslideError as exc:
            error = detached(exc)
        raise error  # outside the except block: no __context__ is attached again

    return run
