"""The default training data: the synthetic faces, generated once into a cache folder.

``train_softmax.py --network r100 --loss-type 4`` without ``--data-dir`` trains
on the embedded synthetic dataset, so the command runs on any machine. The
dataset lives in ``$INSIGHTGLUON_DATA`` when that is set, else in
``$XDG_CACHE_HOME/insightgluon/faces_synth_112x112`` (``~/.cache/...`` without
``XDG_CACHE_HOME``). It is written the first time and reused afterwards; the
generator's parameters are stored beside it (``synthetic.json``) so a change
of the default size writes it again. The folder appears with one rename when
it is complete, and concurrent first runs wait on a lock instead of writing
it twice, so a killed generation never leaves a cache that looks complete.
"""
import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional

from insightgluon.data.property import PROPERTY_FILE
from insightgluon.errors import ConfigError

logger = logging.getLogger(__name__)

ENV_VAR = "INSIGHTGLUON_DATA"
CACHE_NAME = "faces_synth_112x112"
PARAMS_FILE = "synthetic.json"
# Small enough that a first run on two CPU cores is training within a minute or two
# (about 6,400 images: 200 identities x 20 for training, three packs of 400 pairs).
DEFAULT_SYNTHETIC = {"num_ids": 200, "imgs_per_id": 20, "num_val_ids": 100, "pairs_per_bin": 400,
                     "seed": 0, "image_size": 112}


@dataclass(frozen=True)
class DefaultData:
    """Where the default training data is and how it got there."""

    path: str
    source: str  # "INSIGHTGLUON_DATA" or "cache"
    synthetic: Optional[dict] = None  # the generator's parameters, None for a user's own dataset
    generated_seconds: Optional[float] = None  # None when it was already there

    def describe(self) -> str:
        """One line: what the run trains on, where it is, and how to choose other data."""
        if self.synthetic:
            what = (f"the synthetic faces ({self.synthetic['num_ids']} identities x "
                    f"{self.synthetic['imgs_per_id']} images, lfw/cfp_fp/agedb_30 packs of "
                    f"{self.synthetic['pairs_per_bin']} pairs)")
        else:
            what = "the dataset"
        how = ("generated now in %.0f s" % self.generated_seconds if self.generated_seconds is not None
               else "already there")
        where = f"{ENV_VAR}={self.path}" if self.source == ENV_VAR else self.path
        return (f"no --data-dir: training on {what} in {where} ({how}); "
                f"--data-dir DIR or {ENV_VAR}=DIR trains on other data")


def cache_dir(env: Optional[Mapping[str, str]] = None) -> str:
    """``$INSIGHTGLUON_DATA``, else ``$XDG_CACHE_HOME/insightgluon/faces_synth_112x112``."""
    env = os.environ if env is None else env
    if env.get(ENV_VAR):
        return os.path.abspath(os.path.expanduser(env[ENV_VAR]))
    base = env.get("XDG_CACHE_HOME") or os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.abspath(os.path.join(base, "insightgluon", CACHE_NAME))


def _stored_params(path: str) -> Optional[dict]:
    try:
        with open(os.path.join(path, PARAMS_FILE), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _lock(path: str) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` (a second first run waits for the first)."""
    lock_path = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _remove_unfinished(path: str) -> None:
    """Delete the temporary folders of generations that were killed (the caller holds the lock)."""
    parent, name = os.path.split(path)
    for entry in os.listdir(parent):
        if entry.startswith(f".{name}.") and entry.endswith(".tmp"):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)


def default_data(env: Optional[Mapping[str, str]] = None, num_workers: int = 0,
                 synthetic: Optional[Mapping] = None) -> DefaultData:
    """The default dataset, generating the synthetic faces first when they are not there.

    Parameters
    ----------
    env : mapping, optional
        Environment (``INSIGHTGLUON_DATA``, ``XDG_CACHE_HOME``, ``HOME``); default ``os.environ``.
    num_workers : int
        Rendering processes for a generation (0: every core).
    synthetic : mapping, optional
        Generator parameters (default :data:`DEFAULT_SYNTHETIC`).

    Raises
    ------
    ConfigError
        ``$INSIGHTGLUON_DATA`` names a file, or a folder with other files but no dataset.
    """
    from insightgluon.data.synthetic import make_synthetic_dataset
    from insightgluon.outputs import output_dir

    env = os.environ if env is None else env
    path = cache_dir(env)
    source = ENV_VAR if env.get(ENV_VAR) else "cache"
    params = dict(DEFAULT_SYNTHETIC, **(synthetic or {}))
    if os.path.isfile(os.path.join(path, PROPERTY_FILE)) and _stored_params(path) is None:
        return DefaultData(path, source)  # the user's own dataset
    if _stored_params(path) == params:
        return DefaultData(path, source, params)
    label = ENV_VAR if source == ENV_VAR else "synthetic data cache"
    if os.path.isdir(path) and _stored_params(path) is None and os.listdir(path):
        raise ConfigError(f"{label} {path}: the folder holds files but no dataset (no '{PROPERTY_FILE}'); "
                          f"set {ENV_VAR} to a dataset or to a new folder for the synthetic faces")
    output_dir(path, label)
    with _lock(path):
        if _stored_params(path) == params:  # written by another run while this one waited
            return DefaultData(path, source, params)
        _remove_unfinished(path)
        logger.info("writing the synthetic training faces to %s (once; under a minute) ...", path)
        tic = time.time()
        make_synthetic_dataset(path, num_workers=num_workers or os.cpu_count() or 1, **params)
        with open(os.path.join(path, PARAMS_FILE), "w", encoding="utf-8") as f:
            json.dump(params, f)
        return DefaultData(path, source, params, time.time() - tic)
