"""Devices, kvstores and the ``DMLC_*`` environment of a ``dist_sync`` job.

Data parallelism has two levels. Inside one process the global batch is split
over a context list (``--gpus 0,1``, ``CUDA_VISIBLE_DEVICES`` or ``--ctx cpu:2``)
and ``gluon.Trainer`` sums the gradients with a ``local``/``device`` kvstore.
Across processes or machines MXNet's parameter server (``dist_sync``) sums them:
every worker reads its slice of each global batch (by ``kv.rank``), so N workers
compute exactly what one process with N times the devices would.

The parameter server needs a scheduler and server processes; they are plain
``import mxnet`` runs with ``DMLC_ROLE`` set. :mod:`insightgluon.train.launcher` starts them
and the workers, on one machine or on the hosts of a host file
(``insightgluon train --launch-dist N [--hosts FILE] ...``).
"""
import logging
import os
import re
import socket
from typing import List, Mapping, Optional, Sequence, Tuple

from insightgluon.errors import ConfigError

logger = logging.getLogger(__name__)

_CTX_COUNT = re.compile(r"^(cpu|gpu):(\d+)$")
_CTX_ONE = re.compile(r"^(cpu|gpu)\((\d+)\)$|^(cpu|gpu)(\d*)$")


def parse_contexts(gpus: str = "", ctx: str = "", env: Optional[Mapping[str, str]] = None
                   ) -> Tuple[str, ...]:
    """Context names (``'cpu(0)'``, ``'gpu(1)'`` ...) from the flags and environment.

    Precedence: ``--ctx`` (``cpu:2``, ``gpu:4``, ``cpu(0),cpu(1)``), then ``--gpus``
    (``0,1``), then a non-empty ``CUDA_VISIBLE_DEVICES`` (one GPU per listed id, as
    the legacy script), else one CPU.
    """
    env = os.environ if env is None else env
    if ctx.strip():
        names: List[str] = []
        for item in (s.strip().lower() for s in ctx.split(",") if s.strip()):
            many, one = _CTX_COUNT.match(item), _CTX_ONE.match(item)
            if many:
                if int(many.group(2)) <= 0:
                    raise ConfigError(f"--ctx '{ctx}': '{item}' needs a positive count")
                names += [f"{many.group(1)}({i})" for i in range(int(many.group(2)))]
            elif one:
                kind = one.group(1) or one.group(3)
                index = one.group(2) or one.group(4) or "0"
                names.append(f"{kind}({int(index)})")
            else:
                raise ConfigError(f"--ctx '{ctx}': '{item}' is not cpu:N, gpu:N, cpu(i) or gpu(i)")
        return tuple(names)
    explicit = gpus.strip()
    ids = explicit or env.get("CUDA_VISIBLE_DEVICES", "").strip()
    if ids:
        try:
            numbers = [int(i) for i in ids.split(",") if i.strip()]
        except ValueError:
            raise ConfigError(f"--gpus '{ids}': expected comma-separated GPU ids") from None
        # CUDA renumbers visible devices from 0, so N visible ids are gpu(0)..gpu(N-1).
        return tuple(f"gpu({i})" for i in (numbers if explicit else range(len(numbers))))
    return ("cpu(0)",)


def make_contexts(names: Sequence[str]):
    """``mx.Context`` objects for context names; a GPU on a CPU-only build is an error."""
    import mxnet as mx

    out = []
    for name in names:
        kind, index = name.rstrip(")").split("(")
        if kind == "gpu" and int(index) >= mx.context.num_gpus():
            raise ConfigError(f"context {name}: this machine/MXNet build has "
                              f"{mx.context.num_gpus()} GPU(s); use --ctx cpu:N")
        out.append(mx.Context(kind, int(index)))
    return out


def num_dist_workers(kvstore: str, env: Optional[Mapping[str, str]] = None) -> int:
    """Number of worker processes: ``DMLC_NUM_WORKER`` for ``dist_*`` kvstores, else 1."""
    env = os.environ if env is None else env
    if not kvstore.startswith("dist"):
        return 1
    value = env.get("DMLC_NUM_WORKER", "")
    if not value.isdigit() or int(value) <= 0 or env.get("DMLC_ROLE") != "worker":
        raise ConfigError(f"--kvstore {kvstore}: needs DMLC_ROLE=worker and DMLC_NUM_WORKER (start the run "
                          "with 'insightgluon train --launch-dist N ...' or see docs/TRAINING.md)")
    return int(value)


def create_kvstore(kind: str):
    """Create the kvstore; returns ``(kvstore, rank, num_workers)``."""
    import mxnet as mx

    kv = mx.kv.create(kind)
    return kv, kv.rank, kv.num_workers


def free_port() -> int:
    """An unused TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dist_env(num_workers: int, num_servers: int, port: int, host: str = "127.0.0.1",
             interface: str = "lo") -> dict:
    """The ``DMLC_*`` variables shared by scheduler, servers and workers (REFERENCE §14)."""
    return {"DMLC_PS_ROOT_URI": host, "DMLC_PS_ROOT_PORT": str(port), "DMLC_NUM_SERVER": str(num_servers),
            "DMLC_NUM_WORKER": str(num_workers), "DMLC_NODE_HOST": host, "DMLC_INTERFACE": interface}


def worker_threads(num_workers: int, env: Mapping[str, str]) -> int:
    """OpenMP threads per local worker: the launcher's budget (``OMP_NUM_THREADS``, else
    every core) shared equally, at least one each."""
    try:
        budget = int(env.get("OMP_NUM_THREADS", "") or 0)
    except ValueError:
        raise ConfigError(f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']!r} is not a number") from None
    return max(1, (budget or os.cpu_count() or 1) // num_workers)
