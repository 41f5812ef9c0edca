"""``dist_sync`` across hosts: the launcher, a lost process stopping the whole job, and resume.

Hosts are simulated (``_hosts.py``): two network namespaces on a bridge, an sshd in each. The
launcher runs here and starts the scheduler, the server and worker 0 on the first host and worker 1
on the second, over ssh. Where namespaces cannot be made (not root, no sshd) those tests skip with the
reason; the host file, placement, guard and the watchdog on one machine are tested everywhere.
"""
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from _datautil import make_tiny_dataset
from _hosts import SimulatedHosts, find_process, job_processes, why_not
from insightgluon.errors import ConfigError
from insightgluon.train import checkpoint as ckpt
from insightgluon.train.launcher import Host, JobEnd, place, read_hostfile

SIZE = 32
TINY = ["--network", "r18", "--version-multiplier", "0.125", "--emb-size", "16", "--image-size", f"{SIZE},{SIZE}",
        "--per-batch-size", "4", "--lr", "0.05", "--lr-steps", "1000", "--frequent", "1",
        "--verbose", "1000", "--ckpt", "0", "--data-workers", "0", "--tensorboard", "0", "--target", "",
        "--margin-s", "16", "--rand-mirror", "0", "--state-every", "2", "--seed", "3"]
STEPS = 20
# Seconds from a SIGKILL to the launcher's exit: detection (0.2 s polls, ssh ending with the remote
# process) plus the guards' SIGTERM and the teardown; a generous bound for a loaded machine.
BOUND = 20.0
NAMESPACES = why_not()
needs_hosts = pytest.mark.skipif(NAMESPACES is not None, reason=f"{NAMESPACES}")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("dist"), num_ids=4, per_id=6, size=SIZE)


class Launched:
    """``insightgluon train --launch-dist 2 ...`` running, its log collected line by line."""

    def __init__(self, argv):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "insightgluon", "train", *argv], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(iter(self.proc.stderr.readline, "")),
                                       daemon=True)
        self.reader.start()

    @property
    def port(self) -> int:
        found = [re.search(r"launching on port (\d+)", line) for line in self.lines]
        return next(int(m.group(1)) for m in found if m)

    def wait_for(self, predicate, timeout=120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            if predicate(list(self.lines)):
                return
            time.sleep(0.1)
        raise AssertionError("the job ended or stalled first:\n" + "".join(self.lines[-30:]))

    def finish(self, timeout=300.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code


def _batches_done(worker: str):
    return lambda lines: sum(f"[{worker}" in line and "Batch [" in line for line in lines)


def _params(prefix):
    arrays, meta = ckpt.load_state(ckpt.state_path(str(prefix)))
    return {k: v for k, v in arrays.items() if k.startswith("arg:")}, meta


def test_hostfile_lines_and_placement(tmp_path):
    path = tmp_path / "hosts"
    path.write_text("# cluster\n10.0.0.1\nroot@node2 slots=2   # two GPUs\n\nnode3:1\n")
    hosts = read_hostfile(str(path))
    assert hosts == [Host("10.0.0.1"), Host("root@node2", 2), Host("node3")]
    assert hosts[1].address == "node2"
    roles = place(hosts, num_workers=4, num_servers=2)
    assert [r.label for r in roles] == ["scheduler @ 10.0.0.1", "server 0 @ 10.0.0.1", "server 1 @ node2",
                                        "worker 0 @ 10.0.0.1", "worker 1 @ node2", "worker 2 @ node3",
                                        "worker 3 @ node2"]
    path.write_text("node1 slots=0\n")
    with pytest.raises(ConfigError, match=r"--hosts .*hosts: line 1 'node1 slots=0' is not 'HOST'"):
        read_hostfile(str(path))
    path.write_text("# nobody\n")
    with pytest.raises(ConfigError, match=r"--hosts .*hosts: no host in the file"):
        read_hostfile(str(path))
    with pytest.raises(ConfigError, match="no such file"):
        read_hostfile(str(tmp_path / "missing"))
    assert JobEnd(137, "worker 1 @ node2", "killed by SIGKILL", {1: 7, 0: 8}).line() == (
        "lost worker 1 @ node2 (killed by SIGKILL); last batch finished by each worker: rank 0: 8, rank 1: 7; "
        "job stopped")


def test_hosts_needs_a_worker_count(tmp_path, caplog):
    from insightgluon.cli import main as cli_main

    (tmp_path / "hosts").write_text("10.0.0.1\n")
    assert cli_main(["train", "--hosts", str(tmp_path / "hosts"), "--prefix", str(tmp_path / "m")]) == 2
    assert "--hosts: say how many workers to start with --launch-dist N" in caplog.text


def test_the_guard_ends_its_process_group_when_its_input_closes(tmp_path):
    marker = tmp_path / "grandchild.pid"
    script = f"import os, subprocess, time; p = subprocess.Popen(['sleep', '300']); " \
             f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(300)"
    guard = subprocess.Popen([sys.executable, "-m", "insightgluon.train.guard", sys.executable, "-c", script],
                             stdin=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(marker.read_text())
    guard.stdin.close()  # the launcher (or the ssh connection) is gone
    assert guard.wait(timeout=15) == 128 + signal.SIGTERM
    time.sleep(0.2)
    assert not os.path.exists(f"/proc/{grandchild}") or "Z" in open(f"/proc/{grandchild}/stat").read().split()[2]
    # a child that ends by itself: its status, as a shell reports it (input open, as the launcher keeps it)
    guard = subprocess.Popen([sys.executable, "-m", "insightgluon.train.guard", sys.executable, "-c",
                              "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], stdin=subprocess.PIPE)
    assert guard.wait(timeout=30) == 137


def test_a_lost_local_worker_stops_the_job(data, tmp_path):
    job = Launched(["--data-dir", data, *TINY, "--prefix", str(tmp_path / "m"), "--max-steps", "100000",
                    "--launch-dist", "2"])
    job.wait_for(lambda lines: _batches_done("worker 1")(lines) >= 2)
    port = job.port
    os.kill(find_process(port, "worker", "127.0.0.1"), signal.SIGKILL)
    killed = time.monotonic()
    assert job.finish() == 137 and time.monotonic() - killed < BOUND
    lost = [line for line in job.lines if " ERROR lost " in line]
    assert len(lost) == 1 and re.search(r"lost worker \d @ localhost \(killed by SIGKILL\); last batch finished by "
                                        r"each worker: rank 0: \d+, rank 1: \d+; job stopped", lost[0]), lost
    assert job_processes(port) == []


@pytest.fixture
def cluster(tmp_path_factory):
    """Two hosts of this test's own (their sshd, and so the processes started through it, are
    reaped at the test's end: the CPU time they took counts against this test's budget)."""
    if NAMESPACES is not None:
        pytest.skip(NAMESPACES)
    with SimulatedHosts(2, str(tmp_path_factory.mktemp("hosts")), tag=1) as hosts:
        yield hosts


def _launch(cluster, data, prefix, *extra):
    hostfile = cluster.hostfile(os.path.join(os.path.dirname(cluster.key), "hostfile"))
    return Launched(["--data-dir", data, *TINY, "--prefix", str(prefix), "--launch-dist", "2", "--hosts", hostfile,
                     "--ssh-command", " ".join(cluster.ssh), *extra])


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    """An uninterrupted launcher job of :data:`STEPS` batches on two simulated hosts of its own."""
    if NAMESPACES is not None:
        pytest.skip(NAMESPACES)
    prefix = tmp_path_factory.mktemp("reference") / "m"
    with SimulatedHosts(2, str(tmp_path_factory.mktemp("reference-hosts")), tag=2) as hosts:
        job = _launch(hosts, data, prefix, "--max-steps", str(STEPS))
        assert job.finish() == 0, "".join(job.lines[-30:])
    sums = [line.rsplit(" ", 1)[1] for line in job.lines if "parameter checksum" in line]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert any(f"[worker 1 @ {hosts.addresses[1]}]" in line for line in job.lines)  # ran on the second host
    assert job_processes(job.port) == []
    return prefix


@needs_hosts
@pytest.mark.slow
@pytest.mark.budget(reason="a launcher job on two simulated hosts beside one process", cpu_seconds=60)
def test_the_launchers_job_equals_one_process(reference, data, tmp_path):
    from insightgluon.cli.train import parse_config
    from insightgluon.train import train

    cfg, _ = parse_config(["--data-dir", data, *TINY, "--prefix", str(tmp_path / "single"), "--max-steps",
                           str(STEPS), "--ctx", "cpu:2"])  # the same global batch: 2 workers x 4
    single = train(cfg.resolve(env={}))
    ref = {k: v for k, v in ckpt.load_state(single.state_file)[0].items() if k.startswith("arg:")}
    got, meta = _params(reference)
    assert meta["step"] == STEPS and ref.keys() == got.keys()
    for name in ref:
        # the servers sum the gradients in their own float order: equal within rounding, not bit for bit
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-3, atol=5e-4, err_msg=name)


@needs_hosts
@pytest.mark.slow
@pytest.mark.budget(reason="two launcher jobs (killed, resumed) on two simulated hosts", cpu_seconds=60)
@pytest.mark.parametrize("role, host", [("worker", 1), ("server", 0), ("scheduler", 0)])
def test_a_lost_process_stops_the_job_and_resume_is_exact(cluster, data, reference, tmp_path, role, host):
    prefix = tmp_path / "m"
    job = _launch(cluster, data, prefix, "--max-steps", "100000")
    job.wait_for(lambda lines: _batches_done("worker 0")(lines) >= 5)  # a state of batch 4 is on disk
    port, address = job.port, cluster.addresses[host]
    os.kill(find_process(port, role, address), signal.SIGKILL)
    killed = time.monotonic()
    code = job.finish()
    assert code == 137 and time.monotonic() - killed < BOUND, "".join(job.lines[-20:])
    lost = [line for line in job.lines if " ERROR lost " in line]
    label = "scheduler" if role == "scheduler" else f"{role} {0 if role == 'server' else 1}"
    assert len(lost) == 1 and re.search(rf"lost {label} @ {re.escape(address)} \(killed by SIGKILL\); last batch "
                                        r"finished by each worker: rank 0: \d+, rank 1: \d+; job stopped", lost[0])
    time.sleep(0.5)
    assert job_processes(port) == []  # nothing of the job is left on any host
    saved = _params(prefix)[1]["step"]
    assert 4 <= saved < STEPS
    resumed = _launch(cluster, data, prefix, "--max-steps", str(STEPS), "--resume")
    assert resumed.finish() == 0, "".join(resumed.lines[-30:])
    assert any("resumed from" in line and f"at batch {saved}" in line for line in resumed.lines)
    ref, _ = _params(reference)
    got, meta = _params(prefix)
    assert meta["step"] == STEPS
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_killed_launcher_leaves_no_process(data, tmp_path):
    # Slurm cancelling the job, or kill -9: the guards see their input close and end their processes
    job = Launched(["--data-dir", data, *TINY, "--prefix", str(tmp_path / "m"), "--max-steps", "100000",
                    "--launch-dist", "2"])
    job.wait_for(lambda lines: _batches_done("worker 1")(lines) >= 2)
    port = job.port
    assert len(job_processes(port)) >= 8  # scheduler, server, two workers, each behind its guard
    job.proc.kill()
    deadline = time.monotonic() + BOUND
    while job_processes(port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job_processes(port) == []
