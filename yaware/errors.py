"""Errors the user can act on: each message names the file, key or row and the fix."""


class YAwareError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(YAwareError, ValueError):
    """A configuration value or key is invalid."""


class DataError(YAwareError, ValueError):
    """An input array or table is unusable."""


class CheckpointError(YAwareError, ValueError):
    """A checkpoint cannot be read or does not fit the model."""


class DivergedError(YAwareError, RuntimeError):
    """Training produced a non-finite loss; the message says which checkpoint was kept."""


class OutputError(YAwareError, OSError):
    """An output could not be written (disk full, quota, permissions); nothing was left."""
