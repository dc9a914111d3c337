"""The model side's errors: one base class, turned into a one-line message by the jobs."""

from common.errors import LandslideError


class UnetError(LandslideError):
    """Base class. The message names the file or option at fault."""


class DatasetError(UnetError):
    """A Landslide4Sense-layout folder or file that cannot be used."""


class BundleError(UnetError):
    """A model bundle that is missing, unreadable or does not match the input."""
