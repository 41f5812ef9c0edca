"""Start a ``dist_sync`` job — scheduler, servers, workers — here or on the hosts of a host file, and
stop all of it as soon as any part is lost.

:func:`read_hostfile` reads one host per line (``10.0.0.2``, ``user@node3``, ``node4 slots=2`` or
``node4:2``; ``#`` comments), as MXNet's ``launch.py`` and ``horovodrun`` read them. :func:`place` puts
the scheduler on the first host, the servers round-robin from the first host on, and the workers
round-robin over the hosts' slots. :class:`Job` starts each process through
:mod:`insightgluon.train.guard` — over ``ssh HOST`` with the ``DMLC_*`` variables on its command line,
or directly without a host file — prefixes every line it prints with its role and host, and watches:

- a process that exits (a worker with an error or a signal, a server or the scheduler at any time
  before the workers finish) is seen within :data:`POLL` seconds; a host that stops answering within
  the ssh keep-alive bound (:data:`SSH_OPTIONS`: 3 probes 5 s apart); a job in which no worker
  finishes a batch for ``progress_timeout`` seconds (when set), then;
- the job then stops: every guard's input is closed (each ends its process group, SIGTERM then
  SIGKILL after :data:`insightgluon.train.guard.GRACE` s), and what still runs after
  :data:`STOP_GRACE` s is killed; one line names the lost process and the last batch each worker
  finished (workers report it on a line of their own, :data:`BEACON`, which the launcher keeps out
  of the log).
"""
import logging
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from insightgluon.errors import ConfigError

logger = logging.getLogger(__name__)

#: Workers print ``BEACON rank=R batch=N`` after each batch when ``INSIGHTGLUON_PROGRESS=1``.
BEACON = "@@insightgluon-progress"
PROGRESS_ENV = "INSIGHTGLUON_PROGRESS"
_BEACON_RE = re.compile(re.escape(BEACON) + r" rank=(\d+) batch=(\d+)")
#: ssh as the launcher runs it: no prompt, and a host that stops answering is given up in about 15 s.
SSH_OPTIONS = ("-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
               "-o", "ConnectTimeout=10")
POLL = 0.2
# ssh's own exit status when it fails (no connection, authentication refused, keep-alive timeout).
SSH_FAILED = 255
# Seconds scheduler and servers have to exit by themselves once every worker has finished.
FINISH_GRACE = 30.0
# Seconds the guards have to end their processes once the job is stopped.
STOP_GRACE = 10.0
# Environment variables handed to remote processes besides the DMLC_* ones.
FORWARDED = ("OMP_NUM_THREADS", "PYTHONPATH", "INSIGHTGLUON_DATA")
FORWARDED_PREFIXES = ("MXNET_", "INSIGHTGLUON_")
_HOST_RE = re.compile(r"^(?P<target>[^\s:]+)(?::(?P<colon>\d+))?(?:\s+slots=(?P<slots>\d+))?$")


@dataclass(frozen=True)
class Host:
    """A line of the host file: ``target`` as ssh takes it (``user@address``) and its worker slots."""

    target: str
    slots: int = 1

    @property
    def address(self) -> str:
        """The address the job's processes listen on (the target without ``user@``)."""
        return self.target.rpartition("@")[2]


def read_hostfile(path: str) -> List[Host]:
    """The hosts of ``path``, in order; a bad line or an empty file is one line naming it."""
    if not os.path.isfile(path):
        raise ConfigError(f"--hosts {path}: no such file")
    hosts = []
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            match = _HOST_RE.match(line)
            slots = match and int(match.group("slots") or match.group("colon") or 1)
            if not match or not slots:
                raise ConfigError(f"--hosts {path}: line {number} '{line}' is not 'HOST', 'HOST slots=N' or "
                                  "'HOST:N' (N >= 1)")
            hosts.append(Host(match.group("target"), slots))
    if not hosts:
        raise ConfigError(f"--hosts {path}: no host in the file")
    return hosts


@dataclass(frozen=True)
class Role:
    """One process of the job: ``kind`` (scheduler, server, worker), its index and where it runs."""

    kind: str
    index: int
    host: Optional[Host] = None

    @property
    def label(self) -> str:
        name = self.kind if self.kind == "scheduler" else f"{self.kind} {self.index}"
        return f"{name} @ {self.host.address if self.host else 'localhost'}"


def place(hosts: Optional[Sequence[Host]], num_workers: int, num_servers: int) -> List[Role]:
    """Scheduler on the first host, servers round-robin, workers round-robin over the slots."""
    if num_workers <= 0 or num_servers <= 0:
        raise ConfigError("--launch-dist needs at least one worker and one server")
    if not hosts:
        return ([Role("scheduler", 0)] + [Role("server", i) for i in range(num_servers)]
                + [Role("worker", i) for i in range(num_workers)])
    slots = [h for rounds in range(max(h.slots for h in hosts)) for h in hosts if h.slots > rounds]
    return ([Role("scheduler", 0, hosts[0])] + [Role("server", i, hosts[i % len(hosts)]) for i in range(num_servers)]
            + [Role("worker", i, slots[i % len(slots)]) for i in range(num_workers)])


@dataclass
class _Running:
    role: Role
    proc: subprocess.Popen
    started: float
    rank: Optional[int] = None
    batch: int = 0
    pump: Optional[threading.Thread] = None


@dataclass
class JobEnd:
    """How a job ended: ``code`` (0: every worker finished), the ``lost`` process's label and ``reason``
    ('' when none), and the last batch each worker rank finished."""

    code: int
    lost: str = ""
    reason: str = ""
    batches: Dict[int, int] = field(default_factory=dict)

    def line(self) -> str:
        done = ", ".join(f"rank {r}: {b}" for r, b in sorted(self.batches.items())) or "none yet"
        return f"lost {self.lost} ({self.reason}); last batch finished by each worker: {done}; job stopped"


def describe_exit(code: int) -> str:
    """A process's exit as words: ``exit status 1``, ``killed by SIGKILL``."""
    import signal

    if code == SSH_FAILED:
        return "exit status 255: ssh could not reach the host, or the connection dropped"
    if code > 128 and code - 128 in signal.valid_signals():
        return f"killed by {signal.Signals(code - 128).name}"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


class Job:
    """A launched ``dist_sync`` job; :meth:`wait` watches it to its end.

    Parameters
    ----------
    roles : list of Role
        What to start (:func:`place`).
    worker_argv : list of str
        ``insightgluon train`` flags of the workers (a ``dist_*`` kvstore).
    env : mapping
        ``DMLC_*`` values shared by every process (:func:`insightgluon.train.distributed.dist_env`).
    ssh : list of str
        The ssh command for remote hosts, options included (the host follows them).
    sink : callable
        Receives each output line, prefixed ``[worker 1 @ host] ``.
    progress_timeout : float
        Stop the job when no worker finishes a batch for this many seconds (0: never).
    """

    def __init__(self, roles: Sequence[Role], worker_argv: Sequence[str], env: Mapping[str, str],
                 ssh: Sequence[str] = ("ssh",) + SSH_OPTIONS, sink: Optional[Callable[[str], None]] = None,
                 progress_timeout: float = 0.0, local_env: Optional[Mapping[str, str]] = None):
        self.roles, self.worker_argv, self.env, self.ssh = list(roles), list(worker_argv), dict(env), list(ssh)
        self.sink = sink or (lambda line: sys.stderr.write(line + "\n"))
        self.progress_timeout = progress_timeout
        self.local_env = dict(os.environ if local_env is None else local_env)
        self.running: List[_Running] = []
        self.last_progress = time.monotonic()
        self._lock = threading.Lock()

    # -- starting ------------------------------------------------------------------------------
    def command(self, role: Role) -> List[str]:
        """The argv that starts ``role``: the guard around ``python -m insightgluon train`` (workers)
        or ``python -c 'import mxnet'`` (scheduler, servers), behind ``ssh HOST`` for a remote host."""
        python = sys.executable
        program = ([python, "-m", "insightgluon", "train", *self.worker_argv] if role.kind == "worker"
                   else [python, "-c", "import mxnet"])
        guarded = [python, "-m", "insightgluon.train.guard", *program]
        if role.host is None:
            return guarded
        values = dict(self._forwarded(), **self.role_env(role))
        remote = (f"cd {shlex.quote(os.getcwd())} && exec env "
                  + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(values.items())) + " "
                  + " ".join(shlex.quote(a) for a in guarded))
        return [*self.ssh, role.host.target, remote]

    def role_env(self, role: Role) -> Dict[str, str]:
        """The variables ``role`` runs with besides the inherited ones."""
        env = dict(self.env, DMLC_ROLE=role.kind)
        if role.host is not None:
            env.update(DMLC_PS_ROOT_URI=self.roles[0].host.address, DMLC_NODE_HOST=role.host.address)
            env.pop("DMLC_INTERFACE", None)  # (the node's address says where to listen)
        if role.kind == "worker":
            env[PROGRESS_ENV] = "1"
        return env

    def _forwarded(self) -> Dict[str, str]:
        return {k: v for k, v in self.local_env.items()
                if k in FORWARDED or (k.startswith(FORWARDED_PREFIXES) and k != PROGRESS_ENV)}

    def start(self) -> "Job":
        for role in self.roles:
            env = None if role.host is not None else dict(self.local_env, **self.role_env(role))
            proc = subprocess.Popen(self.command(role), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True)
            running = _Running(role, proc, time.monotonic())
            running.pump = threading.Thread(target=self._pump, args=(running,), daemon=True)
            running.pump.start()
            self.running.append(running)
        return self

    def _pump(self, running: _Running) -> None:
        prefix = f"[{running.role.label}] "
        for raw in iter(running.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            match = _BEACON_RE.search(line)
            if match:
                with self._lock:
                    running.rank, running.batch = int(match.group(1)), int(match.group(2))
                    self.last_progress = time.monotonic()
                continue
            self.sink(prefix + line)

    # -- watching ------------------------------------------------------------------------------
    def batches(self) -> Dict[int, int]:
        """The last batch each worker rank reported."""
        with self._lock:
            return {r.rank: r.batch for r in self.running if r.role.kind == "worker" and r.rank is not None}

    def wait(self) -> JobEnd:
        """Watch until every worker has finished (then scheduler and servers exit) or something is lost."""
        workers = [r for r in self.running if r.role.kind == "worker"]
        others = [r for r in self.running if r.role.kind != "worker"]
        clean_exit: Dict[str, float] = {}  # a scheduler or server that ended well: the workers end next
        while True:
            for r in self.running:
                code = r.proc.poll()
                if code is None or (r.role.kind == "worker" and code == 0):
                    continue
                if code == 0:
                    first = clean_exit.setdefault(r.role.label, time.monotonic())
                    if time.monotonic() - first < FINISH_GRACE or all(w.proc.poll() == 0 for w in workers):
                        continue
                reason = describe_exit(code) if code else "exited while the workers were still training"
                return self.stop(JobEnd(code or 1, r.role.label, reason, self.batches()))
            if all(w.proc.poll() == 0 for w in workers):
                deadline = time.monotonic() + FINISH_GRACE
                while time.monotonic() < deadline and any(o.proc.poll() is None for o in others):
                    time.sleep(POLL)
                lingering = [o.role.label for o in others if o.proc.poll() is None]
                if lingering:
                    logger.warning("%s still running %.0f s after the workers finished; stopped",
                                   ", ".join(lingering), FINISH_GRACE)
                return self.stop(JobEnd(0, batches=self.batches()))
            if self.progress_timeout and time.monotonic() - self.last_progress > self.progress_timeout:
                return self.stop(JobEnd(1, "progress", f"no worker finished a batch for {self.progress_timeout:g} s",
                                        self.batches()))
            time.sleep(POLL)

    def stop(self, end: JobEnd) -> JobEnd:
        """End every process still running: close the guards' input, then kill what remains."""
        import signal

        for r in self.running:
            try:
                r.proc.stdin.close()
            except OSError:
                pass
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and any(r.proc.poll() is None for r in self.running):
            time.sleep(POLL)
        for r in self.running:
            if r.proc.poll() is None:
                try:
                    os.killpg(r.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                r.proc.wait()
        for r in self.running:
            if r.pump is not None:
                r.pump.join(timeout=5)
        return end


def launch(num_workers: int, worker_argv: Sequence[str], num_servers: int = 1, hosts: Optional[Sequence[Host]] = None,
           ssh: Optional[Sequence[str]] = None, progress_timeout: float = 0.0, port: int = 0) -> int:
    """Run a ``dist_sync`` job to its end; returns 0 when every worker finished, else non-zero.

    Without ``hosts`` every process runs on this machine on the loopback interface, the workers
    sharing this machine's OpenMP threads; with ``hosts`` each runs on its host over ``ssh``.
    """
    from insightgluon.train.distributed import dist_env, free_port, worker_threads

    roles = place(hosts, num_workers, num_servers)
    port = port or free_port()
    env = dist_env(num_workers, num_servers, port)
    local_env = dict(os.environ)
    if not hosts:
        local_env["OMP_NUM_THREADS"] = str(worker_threads(num_workers, os.environ))
    job = Job(roles, worker_argv, env, ssh=[*(ssh or ["ssh"]), *SSH_OPTIONS],
              progress_timeout=progress_timeout, local_env=local_env)
    logger.info("launching on port %d: %s", port, "; ".join(r.label for r in roles))
    try:
        end = job.start().wait()
    except KeyboardInterrupt:
        job.stop(JobEnd(130))
        raise
    if end.code:
        logger.error("%s", end.line())
    else:
        logger.info("job finished: %d worker(s), last batch %s", num_workers,
                    ", ".join(f"rank {r}: {b}" for r, b in sorted(end.batches.items())))
    return end.code
