"""The simulator's errors: one base class, which the CLI turns into a one-line message."""

from common.errors import LandslideError


class SimulatorError(LandslideError):
    """Bad arguments or an output path that cannot be used. The message names the path."""
