"""Errors that are meant for the user: they carry a message that names the option, file or field
and says what was expected, and the CLI prints them without a traceback."""


class BenchError(Exception):
    """Base class for errors whose message is the whole user interface."""


class ConfigError(BenchError):
    """A setting is unknown or out of range; the message names the option and the accepted range."""


class UnsupportedError(ConfigError):
    """A method that cannot run on this architecture (bench.methods.Method.unsupported_reason): refused
    before any work, naming the method and the architecture. A sweep runs its other cells and lists
    the refused ones (bench.cli); a single run exits 2 like any configuration error."""
