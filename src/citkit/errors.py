"""The errors citkit raises on purpose.

Every message names what is wrong, shows the offending value and says what to do. The command line
turns any `CitkitError` into one line on stderr and a non-zero exit code, without a traceback.
"""

from __future__ import annotations


class CitkitError(Exception):
    """Base class of every error citkit raises for bad input or bad state."""

    exit_code = 2


class ConfigError(CitkitError):
    """A configuration value is missing, out of range or inconsistent with another one."""


class DataFormatError(CitkitError):
    """A data file or record does not follow the expected (LLaVA) format."""


class UnknownNameError(CitkitError):
    """A name (method, stream, scorer, ...) is not registered."""


class IncompatibleMethodError(CitkitError):
    """A method cannot run in the requested setting (e.g. training a method that does not train)."""


class ResumeMismatchError(CitkitError):
    """A run directory was resumed with a configuration different from the one that created it."""


class ModelLoadError(CitkitError):
    """A model or processor could not be loaded from the given path or hub id."""
