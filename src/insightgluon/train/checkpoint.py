"""Checkpoints: deployable backbone files, the full training state, the save policy.

Two kinds of files are written beside ``PREFIX``:

* ``PREFIX-symbol.json`` + ``PREFIX-NNNN.params`` — the backbone only (legacy
  parameter names, ``arg:``/``aux:`` keys), loadable by any MXNet code and by
  :func:`insightgluon.model_io.load_symbol_block` at layer ``fc1``. ``NNNN`` is the
  legacy ``msave`` counter of verification rounds, not an epoch.
* ``PREFIX-train.state`` — everything needed to continue exactly: backbone and
  fc7 parameters (including batch-norm statistics), optimizer states, batch
  counter, epoch and data position, RNG states and best accuracies. It is an
  ``.npz`` archive (no pickle) of arrays plus one JSON metadata entry.

Every file is written to a temporary name, flushed to disk and renamed, so a
crash (or SIGKILL) leaves either the old or the new file, never half of one.
"""
import contextlib
import json
import logging
import os
import shutil
import tempfile
import zipfile
from typing import BinaryIO, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from insightgluon.errors import CheckpointError

logger = logging.getLogger(__name__)

STATE_FORMAT = "insightgluon-train-state"
STATE_VERSION = 1


def state_path(prefix: str) -> str:
    """The training-state file of a checkpoint prefix."""
    return f"{prefix}-train.state"


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` (flushed to disk, then renamed) if the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a flushed temporary file and a rename."""
    with atomic_output(path) as out:
        out.write(data)


def _commit(tmp: str, final: str) -> None:
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


def save_deployable(net, prefix: str, index: int) -> Tuple[str, str]:
    """Write the backbone as ``PREFIX-symbol.json`` / ``PREFIX-NNNN.params``, in float32.

    The graph is the network's float32 one whatever precision it trains in (parameters
    are float32 anyway), so a checkpoint of a bf16/fp16 run loads like any other. Returns
    the two paths. The symbol file is replaced only after the params file is complete, so
    a reader never pairs a new graph with missing weights.
    """
    from insightgluon.nn import float32_symbol

    directory = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(directory, exist_ok=True)
    tmp_prefix = os.path.join(directory, f".tmp-{os.getpid()}-{os.path.basename(prefix)}")
    symbol = float32_symbol(net)
    sym_tmp, params_tmp = f"{tmp_prefix}-symbol.json", f"{tmp_prefix}-{index:04d}.params"
    _write_params(net, symbol, params_tmp)
    symbol.save(sym_tmp)
    sym_path, params_path = f"{prefix}-symbol.json", f"{prefix}-{index:04d}.params"
    _commit(params_tmp, params_path)
    _commit(sym_tmp, sym_path)
    _fsync_dir(prefix)
    logger.info('Saved checkpoint to "%s"', params_path)
    return sym_path, params_path


def _write_params(net, symbol, path: str) -> None:
    """The arrays of ``symbol``'s variables under MXNet's ``arg:``/``aux:`` keys, averaged over the
    devices as ``HybridBlock.export`` does (BatchNorm statistics differ per device)."""
    import mxnet as mx

    params = net.collect_params()
    args, auxs = set(symbol.list_arguments()), set(symbol.list_auxiliary_states())
    arrays = {}
    for name, param in params.items():
        kind = "arg" if name in args else "aux" if name in auxs else None
        if kind is not None:
            arrays[f"{kind}:{name}"] = param._reduce()
    mx.nd.save(path, arrays)


class BytesFile:
    """A file whose bytes a training state stores as one ``uint8`` array, copied in pieces."""

    def __init__(self, path: str):
        self.path = path


def save_state(path: str, arrays: Dict, meta: dict) -> None:
    """Write a training state: named arrays plus JSON-serialisable metadata.

    ``arrays`` values are NumPy arrays, MXNet NDArrays (copied to NumPy one at a time, as they
    are written) or :class:`BytesFile`: the state never holds a second copy of the network and
    optimiser in memory. The file is the ``.npz`` archive ``np.savez`` writes.
    """
    meta = dict(meta, format=STATE_FORMAT, version=STATE_VERSION)
    entries = [(f"a/{k}", v) for k, v in arrays.items()]
    entries.append(("meta", np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)))
    with atomic_output(path) as out, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, value in entries:
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                if isinstance(value, BytesFile):
                    size = os.path.getsize(value.path)
                    np.lib.format.write_array_header_1_0(member, {
                        "descr": "|u1", "fortran_order": False, "shape": (size,)})
                    with open(value.path, "rb") as source:
                        shutil.copyfileobj(source, member, 1 << 22)
                else:
                    array = value.asnumpy() if hasattr(value, "asnumpy") else np.asarray(value)
                    np.lib.format.write_array(member, array, allow_pickle=False)


def load_state(path: str) -> Tuple[Dict[str, np.ndarray], dict]:
    """Read a training state written by :func:`save_state`; errors name the file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such training state")
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(bytes(archive["meta"]).decode("utf-8"))
            arrays = {k[2:]: archive[k] for k in archive.files if k.startswith("a/")}
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise CheckpointError(f"{path}: not a readable training state ({type(err).__name__}: {err})") from None
    except Exception as err:  # zipfile.BadZipFile and friends
        raise CheckpointError(f"{path}: not a readable training state ({type(err).__name__})") from None
    if meta.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not an insightgluon training state")
    if meta.get("version") != STATE_VERSION:
        raise CheckpointError(f"{path}: training-state version {meta.get('version')} "
                              f"is not supported (expected {STATE_VERSION})")
    return arrays, meta


def rng_states() -> dict:
    """Python and NumPy global RNG states as JSON-serialisable data."""
    import random

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]}


def set_rng_states(states: dict) -> None:
    """Restore the states saved by :func:`rng_states`."""
    import random

    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


class CheckpointPolicy:
    """The November-2018 save decision (``is_highest``) and ``--ckpt`` modes.

    At every verification round the ``msave`` counter advances. ``is_highest``
    is true when the last target's accuracy strictly improves, or ties while
    the sum of all accuracies is at least the best sum. Mode 0 never saves,
    1 saves when highest, 2 always saves, 3 saves when highest under index 1.
    """

    def __init__(self, mode: int, msave: int = 0, highest: Optional[Sequence[float]] = None):
        if mode not in (0, 1, 2, 3):
            raise CheckpointError(f"--ckpt {mode}: expected 0, 1, 2 or 3")
        self.mode = mode
        self.msave = msave
        self.highest: List[float] = list(highest) if highest is not None else [0.0, 0.0]

    def decide(self, accuracies: Sequence[float]) -> Optional[int]:
        """Record one verification round; return the index to save under, or None."""
        self.msave += 1
        is_highest = False
        if accuracies:
            score, last = float(sum(accuracies)), float(accuracies[-1])
            if last >= self.highest[-1]:
                if last > self.highest[-1]:
                    is_highest = True
                elif score >= self.highest[0]:
                    is_highest = True
                    self.highest[0] = score
                self.highest[-1] = last
        save = {0: False, 1: is_highest, 2: True, 3: is_highest}[self.mode]
        if not save:
            return None
        return 1 if self.mode == 3 else self.msave

    def state(self) -> dict:
        return {"msave": self.msave, "highest": list(self.highest)}
