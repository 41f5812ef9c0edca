"""Writes ``{name: array}`` as ``torch.save`` does (zip or legacy format), without PyTorch.

The pickle names ``torch._utils._rebuild_tensor_v2`` and ``torch.FloatStorage`` ... as PyTorch's
does; to let :mod:`pickle` emit those names, stand-in ``torch`` modules sit in ``sys.modules``
while it runs (only where PyTorch itself is not importable).
"""
import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

KINDS = {np.dtype("float32"): "FloatStorage", np.dtype("float16"): "HalfStorage",
         np.dtype("float64"): "DoubleStorage", np.dtype("int64"): "LongStorage", np.dtype("int32"): "IntStorage",
         np.dtype("uint8"): "ByteStorage", np.dtype("bool"): "BoolStorage"}


@contextlib.contextmanager
def _stand_in_torch():
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: only its name is pickled")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for kind in KINDS.values():
        setattr(torch, kind, type(kind, (), {"__module__": "torch"}))
    torch._utils = utils
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield torch
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


class _StorageRef:
    def __init__(self, key, array):
        self.key, self.array = key, np.ascontiguousarray(array).ravel()


class _TensorRef:
    def __init__(self, storage, shape, rebuild):
        self.storage, self.shape, self.rebuild = storage, shape, rebuild

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[k + 1:])) for k in range(len(self.shape)))
        return self.rebuild, (self.storage, 0, tuple(self.shape), stride, False, collections.OrderedDict())


def _pickle(obj, torch, legacy: bool) -> bytes:
    class Pickler(pickle.Pickler):
        def persistent_id(self, value):
            if isinstance(value, _StorageRef):
                kind = getattr(torch, KINDS[value.array.dtype])
                pid = ("storage", kind, value.key, "cpu", value.array.size)
                return pid + ((None,) if legacy else ())
            return None

    stream = io.BytesIO()
    Pickler(stream, protocol=2).dump(obj)
    return stream.getvalue()


def write_pth(path: str, state, legacy: bool = False, wrap=None) -> str:
    """``state`` (name -> array) as a torch.save file; ``wrap`` a key to put it under (a checkpoint dict)."""
    with _stand_in_torch() as torch:
        storages = [_StorageRef(str(k), np.asarray(v)) for k, v in enumerate(state.values())]
        tensors = collections.OrderedDict(
            (name, _TensorRef(s, np.shape(v), torch._utils._rebuild_tensor_v2))
            for (name, v), s in zip(state.items(), storages))
        obj = {wrap: tensors, "epoch": 1} if wrap else tensors
        data = _pickle(obj, torch, legacy)
    if not legacy:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/data.pkl", data)
            archive.writestr("archive/byteorder", "little")
            for s in storages:
                archive.writestr(f"archive/data/{s.key}", s.array.astype(s.array.dtype.newbyteorder("<")).tobytes())
            archive.writestr("archive/version", "3\n")
        return path
    with open(path, "wb") as stream:
        for head in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(head, stream, protocol=2)
        stream.write(data)
        pickle.dump([s.key for s in storages], stream, protocol=2)
        for s in storages:
            stream.write(struct.pack("<q", s.array.size) + s.array.tobytes())
    return path
