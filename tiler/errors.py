"""The tiler's errors: one base class, so the jobs can turn any of them into a one-line message."""

from common.errors import LandslideError


class TilerError(LandslideError):
    """Base class: bad input or a store that cannot be used. The message names the file."""


class InputError(TilerError):
    """A scene, band file, SAFE product or DEM that cannot be read or does not fit."""


class StoreError(TilerError):
    """A tile store that is missing, incomplete or not what it claims to be."""


class OutputError(TilerError):
    """An output (store, raster, polygons, preview) that cannot be written where asked."""
