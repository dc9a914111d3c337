"""The project's one error family.

Every input mistake (a scene, a DEM, a model bundle, a dataset, a cluster.yaml, an option) is
raised as a subclass of ``LandslideError`` whose message names the file or option at fault and
the problem, in one line. Each job's ``main`` turns it into
``python -m jobs.NAME: error: <file>: <problem>`` and exit status 2 (``jobs.cli``); anything else
that escapes is a bug, and keeps its traceback.
"""


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
