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


def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type's name when it has none), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
