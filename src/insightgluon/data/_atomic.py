"""Write-then-rename helpers, so an interrupted writer never leaves a file set that looks complete."""
import contextlib
import os
import shutil
import tempfile
from typing import Iterator

from insightgluon.data.property import PROPERTY_FILE


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "wb") -> Iterator:
    """Open a temporary sibling of ``path``; rename it over ``path`` only if the block succeeds.

    Missing parent folders are created.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; publish with the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(out_dir: str) -> Iterator[str]:
    """Yield a temporary directory beside ``out_dir``; publish its files there on success.

    A new ``out_dir`` appears with one rename. When ``out_dir`` already exists its
    old ``property`` is removed first and the new one moved in last, because
    ``property`` is what makes a directory a dataset: a crash in between leaves
    a directory that readers reject instead of a mix of old and new files.
    """
    out_dir = os.path.abspath(os.fspath(out_dir))
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out_dir)}.", suffix=".tmp", dir=parent)
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        if not os.path.exists(out_dir):
            os.rename(tmp, out_dir)
            return
        names = sorted(os.listdir(tmp), key=lambda n: n == PROPERTY_FILE)
        if PROPERTY_FILE in names:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(out_dir, PROPERTY_FILE))
        for name in names:
            os.replace(os.path.join(tmp, name), os.path.join(out_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
