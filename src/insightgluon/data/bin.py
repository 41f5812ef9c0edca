"""``.bin`` verification packs: a pickled ``(bins, issame_list)`` pair (REFERENCE §2.2).

``bins`` holds the encoded images of the pairs in order ``(2i, 2i+1)`` and
``issame_list`` one boolean per pair. The 2018 packs were pickled by Python 2,
whose ``str`` loads as ``bytes`` with ``encoding='bytes'``.

A pickle can run arbitrary code while it loads, and ``.bin`` files are passed
around between strangers, so :func:`load_bin` uses an unpickler that resolves
no global names except the few that rebuild NumPy boolean arrays and the
``_codecs.encode`` that Python 3 uses for ``bytes`` under protocol 2; anything
else (``os.system``, ``builtins.eval``, ...) is refused before it can run.
"""
import io
import os
import pickle
from typing import List, Sequence, Tuple

import numpy as np

from insightgluon.data._atomic import atomic_file
from insightgluon.data.image import decode_jpeg, resize_to
from insightgluon.errors import DataFormatError
from insightgluon.progress import progress

# (module, name) pairs a .bin may reference. NumPy moved ``core`` to ``_core`` in 2.0.
_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}


class _RefusedGlobal(Exception):
    pass


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise _RefusedGlobal(f"{module}.{name}")

    def persistent_load(self, pid):
        raise _RefusedGlobal("a persistent id")


def _as_bool_list(path: str, issame) -> np.ndarray:
    if isinstance(issame, np.ndarray):
        if issame.dtype != np.bool_ or issame.ndim != 1:
            raise DataFormatError(f"{path}: issame_list must hold booleans, got an array of {issame.dtype} {issame.shape}")
        return issame.copy()
    if not isinstance(issame, (list, tuple)):
        raise DataFormatError(f"{path}: issame_list must be a list, got {type(issame).__name__}")
    for i, v in enumerate(issame):
        if not isinstance(v, (bool, np.bool_)):
            raise DataFormatError(f"{path}: issame_list[{i}] is {type(v).__name__}, not a boolean")
    return np.asarray(issame, dtype=bool).reshape(-1)


def load_bin(path: str) -> Tuple[List[bytes], np.ndarray]:
    """Safely load a ``.bin`` pack written by Python 2 or 3.

    Returns
    -------
    bins : list of bytes
        ``2 * P`` encoded images; pair ``i`` is ``(bins[2i], bins[2i+1])``.
    issame : np.ndarray
        ``(P,)`` bool.

    Raises
    ------
    DataFormatError
        Not a pickle, a pickle that references code, or the wrong structure.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataFormatError(f"{path}: no such .bin file") from None
    try:
        obj = _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _RefusedGlobal as err:
        raise DataFormatError(f"{path}: refused to unpickle: it references {err}, "
                              "but a .bin holds only image bytes and booleans") from None
    except Exception as err:  # any malformed pickle: EOFError, UnpicklingError, ValueError, ...
        raise DataFormatError(f"{path}: not a .bin pickle ({type(err).__name__}: {err})".replace("\n", " ")) from None
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise DataFormatError(f"{path}: expected a pickled (bins, issame_list) pair, got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)):
        raise DataFormatError(f"{path}: bins must be a list of image bytes, got {type(bins).__name__}")
    for i, b in enumerate(bins):
        if not isinstance(b, (bytes, bytearray)):
            raise DataFormatError(f"{path}: bins[{i}] is {type(b).__name__}, not image bytes")
    issame = _as_bool_list(path, issame)
    if len(bins) != 2 * len(issame):
        raise DataFormatError(f"{path}: {len(bins)} images but {len(issame)} pairs (need 2 images per pair)")
    return [bytes(b) for b in bins], issame


def save_bin(path: str, bins: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Write a ``.bin`` pack atomically (pickle protocol 4: lists of ``bytes`` and ``bool``)."""
    bins = [bytes(b) for b in bins]
    issame = [bool(v) for v in issame]
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{len(bins)} images for {len(issame)} pairs: need exactly 2 per pair")
    with atomic_file(os.fspath(path), "wb") as f:
        pickle.dump((bins, issame), f, protocol=4)


def decode_bin(path: str, image_size=(112, 112)) -> Tuple[np.ndarray, np.ndarray]:
    """Load and decode a ``.bin`` pack.

    Parameters
    ----------
    path : str
        The ``.bin`` file.
    image_size : (int, int)
        ``(H, W)``; images of another size are resized to it.

    Returns
    -------
    images : np.ndarray
        ``(2P, H, W, 3)`` uint8 RGB.
    issame : np.ndarray
        ``(P,)`` bool.
    """
    bins, issame = load_bin(path)
    height, width = int(image_size[0]), int(image_size[1])
    images = np.empty((len(bins), height, width, 3), dtype=np.uint8)
    for i, b in enumerate(progress(bins, desc=f"decoding {os.path.basename(path)}", unit="img", leave=False)):
        images[i] = resize_to(decode_jpeg(b, f"{path}: image {i}"), (height, width))
    return images, issame
