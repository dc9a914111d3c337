"""The simulator's errors: one base class, which the CLI turns into a one-line message."""


class SimulatorError(Exception):
    """Bad arguments or an output path that cannot be used. The message names the path."""
