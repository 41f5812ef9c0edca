"""The one-line ``property`` file of an InsightFace dataset: ``num_classes,H,W``."""
import os
from typing import NamedTuple, Union

from insightgluon.errors import DataFormatError

PROPERTY_FILE = "property"


class Property(NamedTuple):
    """Identity count and image size of a dataset (``85742,112,112`` for ``faces_emore``)."""

    num_classes: int
    height: int
    width: int


def _property_path(path_or_dir: Union[str, os.PathLike]) -> str:
    path = os.fspath(path_or_dir)
    return os.path.join(path, PROPERTY_FILE) if os.path.isdir(path) else path


def read_property(path_or_dir: Union[str, os.PathLike]) -> Property:
    """Read ``property`` from a dataset directory (or the file itself).

    Raises
    ------
    DataFormatError
        The file is missing or is not three positive integers ``num_classes,H,W``.
    """
    path = _property_path(path_or_dir)
    try:
        with open(path, "r", encoding="ascii") as f:
            text = f.read()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: missing (a dataset needs 'num_classes,H,W' in property)") from None
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not a text file 'num_classes,H,W'") from None
    fields = text.strip().split(",")
    try:
        values = [int(v) for v in fields]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) <= 0:
        raise DataFormatError(f"{path}: expected 'num_classes,H,W' (three positive integers), got {text.strip()[:60]!r}")
    return Property(*values)


def write_property(directory: Union[str, os.PathLike], prop: Property) -> str:
    """Write ``property`` into ``directory`` atomically; returns the file path."""
    prop = Property(*(int(v) for v in prop))
    if min(prop) <= 0:
        raise ValueError(f"property values must be positive, got {tuple(prop)}")
    path = os.path.join(os.fspath(directory), PROPERTY_FILE)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{prop.num_classes},{prop.height},{prop.width}\n")
    os.replace(tmp, path)
    return path
