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
