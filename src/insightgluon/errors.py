"""Exceptions the toolkit raises for bad input.

Every message is one line that names the file (and record, where there is one)
and says what is wrong, so a user can act on it without a traceback.
"""


class InsightGluonError(Exception):
    """Base class: an error caused by the user's input, not by a bug."""


class DataFormatError(InsightGluonError, ValueError):
    """A dataset file (``.rec``, ``.idx``, ``property``, ``.bin``, ``.lst``) is malformed."""


class ConfigError(InsightGluonError, ValueError):
    """A configuration value or combination of flags is invalid."""


class CheckpointError(InsightGluonError, ValueError):
    """A checkpoint or model file is missing, incomplete or incompatible."""
