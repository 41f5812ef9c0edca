"""PyTorch state dicts (``backbone.pth``) read without PyTorch, and without running foreign code.

``torch.save`` writes either a zip archive (since PyTorch 1.6: ``<name>/data.pkl`` plus one raw
file per storage under ``<name>/data/``) or, in the legacy format, a sequence of pickles followed by
the raw storages. Both hold a pickle that rebuilds tensors through ``torch._utils`` from
storages named by persistent ids. This reader unpickles with a whitelist: ordered dicts, the
tensor-rebuilding functions and the storage types - each mapped onto NumPy - and refuses any
other global with one line naming it, as the ``.bin`` reader does. Nothing else is imported or
called.

:func:`read_state_dict` returns ``{name: np.ndarray}``; a checkpoint dict around the state dict
(``state_dict``, ``model``, ``backbone``, ``state_dict_backbone``) and a ``module.`` prefix
(``DataParallel``) are taken off.
"""
import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Callable, Dict, Optional

import numpy as np

from insightgluon.errors import CheckpointError

#: torch storage type -> NumPy dtype (little endian, as torch writes).
STORAGES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}
#: Keys under which training scripts store the state dict in a checkpoint dict.
WRAPPERS = ("state_dict_backbone", "state_dict", "backbone", "model")
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


class _Storage:
    """A storage named in the pickle: its dtype and where its bytes are."""

    def __init__(self, dtype: str, key: str, numel: int):
        self.dtype, self.key, self.numel = np.dtype(dtype), key, int(numel)
        self.array: Optional[np.ndarray] = None


class _Tensor:
    """A tensor to be rebuilt once its storage's bytes are read (the legacy format reads them last)."""

    def __init__(self, storage: _Storage, offset: int, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, int(offset), tuple(size), tuple(stride)

    def numpy(self, source: str) -> np.ndarray:
        data = self.storage.array
        if data is None:
            raise CheckpointError(f"{source}: storage {self.storage.key} has no data")
        if not self.size:
            return data[self.offset:self.offset + 1].reshape(()).copy()
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= data.size or self.offset < 0:
            raise CheckpointError(f"{source}: a tensor of shape {self.size} reaches past its storage "
                                  f"({data.size} elements)")
        itemsize = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(data[self.offset:], self.size,
                                               tuple(s * itemsize for s in self.stride), writeable=False)
        out = np.array(view)
        if self.storage.dtype == np.dtype("<u2"):  # bfloat16: the high half of a float32
            out = (out.astype(np.uint32) << 16).view(np.float32)
        return out


def _rebuild_tensor(storage, storage_offset, size, stride, *ignored):
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    return _Tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *ignored):
    return data


class _StorageType:
    def __init__(self, name: str):
        self.name = name


class _Refused(Exception):
    pass


class _Unpickler(pickle.Unpickler):
    """Allows ordered dicts, tensors and storages; anything else stops with its name."""

    ALLOWED: Dict[tuple, object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        **{("torch", name): _StorageType(name) for name in STORAGES},
    }

    def __init__(self, stream, load_storage: Callable[[tuple], _Storage]):
        super().__init__(stream, encoding="latin1")
        self._load_storage = load_storage

    def find_class(self, module, name):
        found = self.ALLOWED.get((module, name))
        if found is None:
            raise _Refused(f"{module}.{name}")
        return found

    def persistent_load(self, pid):
        return self._load_storage(tuple(pid))


def _storage_from(pid: tuple, storages: Dict[str, _Storage]) -> _Storage:
    if len(pid) < 5 or pid[0] != "storage" or not isinstance(pid[1], _StorageType):
        raise pickle.UnpicklingError(f"unknown persistent id {pid[:2]!r}")
    key = str(pid[2])
    if key not in storages:
        storages[key] = _Storage(STORAGES[pid[1].name], key, pid[4])
    return storages[key]


def _unpickle(stream, storages: Dict[str, _Storage], source: str):
    try:
        return _Unpickler(stream, lambda pid: _storage_from(pid, storages)).load()
    except _Refused as err:
        raise CheckpointError(f"{source}: refusing to unpickle {err}: a state dict holds tensors and "
                              "ordered dicts only (save model.state_dict(), not the model)") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, AttributeError,
            IndexError, struct.error) as err:
        raise CheckpointError(f"{source}: not a readable PyTorch file ({type(err).__name__}: {err})") from None


def _read_zip(path: str) -> tuple:
    storages: Dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path}: a zip archive without one data.pkl (not a torch.save file)")
        prefix = pickles[0][:-len("data.pkl")]
        with archive.open(pickles[0]) as stream:
            obj = _unpickle(io.BytesIO(stream.read()), storages, path)
        for key, storage in storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise CheckpointError(f"{path}: storage {key} is missing from the archive")
            raw = archive.read(member)
            storage.array = np.frombuffer(raw, dtype=storage.dtype, count=len(raw) // storage.dtype.itemsize)
    return obj, storages


def _read_legacy(path: str) -> tuple:
    storages: Dict[str, _Storage] = {}
    with open(path, "rb") as stream:
        try:
            magic = pickle.load(stream)
        except Exception:  # noqa: BLE001 -- any failure here means "not this format"
            magic = None
        if magic != LEGACY_MAGIC:
            raise CheckpointError(f"{path}: not a PyTorch file (neither a torch.save zip archive nor the "
                                  "legacy format)")
        protocol = _unpickle(stream, {}, path)
        if protocol != LEGACY_PROTOCOL:
            raise CheckpointError(f"{path}: legacy PyTorch protocol {protocol}, expected {LEGACY_PROTOCOL}")
        _unpickle(stream, {}, path)  # system information: sizes of types, byte order
        obj = _unpickle(stream, storages, path)
        keys = _unpickle(stream, {}, path)
        for key in keys:
            storage = storages.get(str(key))
            head = stream.read(8)
            if storage is None or len(head) != 8:
                raise CheckpointError(f"{path}: storage {key} is missing or cut short")
            count = struct.unpack("<q", head)[0]
            raw = stream.read(count * storage.dtype.itemsize)
            if len(raw) != count * storage.dtype.itemsize:
                raise CheckpointError(f"{path}: ends inside storage {key}")
            storage.array = np.frombuffer(raw, dtype=storage.dtype)
    return obj, storages


def _materialise(obj, source: str):
    if isinstance(obj, _Tensor):
        return obj.numpy(source)
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialise(v, source)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialise(v, source) for v in obj)
    return obj


def _state_dict(obj, source: str) -> Dict[str, np.ndarray]:
    if isinstance(obj, dict) and obj and all(isinstance(v, np.ndarray) for v in obj.values()):
        state = obj
    else:
        inner = [obj[k] for k in WRAPPERS if isinstance(obj, dict) and isinstance(obj.get(k), dict)]
        if not inner or not all(isinstance(v, np.ndarray) for v in inner[0].values()):
            raise CheckpointError(f"{source}: holds no state dict (a dict of tensors, or one under "
                                  f"{', '.join(WRAPPERS)})")
        state = inner[0]
    names = list(state)
    if names and all(n.startswith("module.") for n in names):  # saved from a DataParallel wrapper
        state = collections.OrderedDict((n[len("module."):], v) for n, v in state.items())
    return dict(state)


def read_state_dict(path: str) -> Dict[str, np.ndarray]:
    """``{parameter name: array}`` of a ``torch.save`` file (zip or legacy format), in file order."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    try:
        obj, _ = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
    except zipfile.BadZipFile as err:
        raise CheckpointError(f"{path}: a damaged zip archive ({err})") from None
    return _state_dict(_materialise(obj, path), path)
