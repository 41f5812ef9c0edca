"""Check where a command will write before its long work starts.

An alignment that runs for minutes and then fails to create its output file
loses the user's time; so every command checks its outputs right after
parsing its arguments: missing parent folders are created and a write is
tried, and anything in the way becomes one :class:`~insightgluon.errors.ConfigError`
line that names the flag, the path and the reason.
"""
import errno
import os
import tempfile
from typing import Optional

from insightgluon.errors import ConfigError


def _reason(err: OSError) -> str:
    return err.strerror or errno.errorcode.get(err.errno or 0, "") or str(err)


def _probe(folder: str, what: str) -> None:
    """Create the folder (and its parents) and try a write in it."""
    try:
        os.makedirs(folder, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{what}: {folder} exists and is not a folder") from None
    except OSError as err:
        where = f" {err.filename}" if err.filename and err.filename != folder else ""
        raise ConfigError(f"{what}: cannot create folder {folder} ({_reason(err)}{where})") from None
    if not os.path.isdir(folder):
        raise ConfigError(f"{what}: {folder} exists and is not a folder")
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"{what}: cannot write in {folder} ({_reason(err)})") from None


def _label(path: str, flag: Optional[str]) -> str:
    return f"{flag} {path}" if flag else path


def output_file(path: str, flag: Optional[str] = None) -> str:
    """Make sure ``path`` can be written as a file; returns ``path``.

    Parameters
    ----------
    path : str
        The file a command will write (it may exist; it will be replaced).
    flag : str, optional
        The option that named it (``--output``), for the message.

    Raises
    ------
    ConfigError
        ``path`` is a folder, or its folder cannot be created or written.
    """
    if not path:
        raise ConfigError(f"{flag or 'output'}: empty file name")
    what = _label(path, flag)
    if os.path.isdir(path):
        raise ConfigError(f"{what}: is a folder, expected a file name")
    _probe(os.path.dirname(os.path.abspath(path)), what)
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(f"{what}: the file exists and is not writable")
    return path


def output_dir(path: str, flag: Optional[str] = None) -> str:
    """Make sure ``path`` is a writable folder or can be created as one; returns ``path``.

    An existing folder is tried for a write; for a new one its parents are
    created and tried, and the folder itself is left to the writer (a dataset
    folder appears with one rename when it is complete).
    """
    if not path:
        raise ConfigError(f"{flag or 'output'}: empty folder name")
    what = _label(path, flag)
    full = os.path.abspath(path)
    if os.path.exists(full) and not os.path.isdir(full):
        raise ConfigError(f"{what}: exists and is not a folder")
    _probe(full if os.path.isdir(full) else os.path.dirname(full), what)
    return path


def output_prefix(prefix: str, flag: Optional[str] = "--prefix") -> str:
    """Make sure files ``PREFIX-*`` can be written beside ``prefix``; returns ``prefix``."""
    if not prefix or prefix.endswith(("/", os.sep)):
        raise ConfigError(f"{_label(prefix, flag)}: expected a folder and a file-name start, "
                          "e.g. models/r100/model")
    _probe(os.path.dirname(os.path.abspath(prefix)), _label(prefix, flag))
    return prefix


def os_error_line(err: OSError) -> str:
    """One line for an OS error that escaped the checks (disk full, file removed meanwhile)."""
    names = " -> ".join(str(n) for n in (err.filename, err.filename2) if n)
    return f"{names}: {_reason(err)}" if names else _reason(err)
