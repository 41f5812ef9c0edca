"""Simulated hosts for distributed tests: network namespaces on a bridge, each with its own sshd.

``SimulatedHosts(n, folder)`` makes namespaces ``h0`` ... joined by veth pairs to a bridge in this
namespace (addresses 10.213.X.10, .11, ...), starts Debian's ``sshd`` inside each with a host key and
a client key made for the test, and removes everything on exit. Processes started over ssh share this
machine's file system and process table (only the network is separate), so the tests read their
``/proc`` entries. :func:`why_not` says why hosts cannot be made here (not root, no ``ip``, no sshd).
"""
import os
import shutil
import subprocess
import time
from typing import List, Optional

SSHD = "/usr/sbin/sshd"


def why_not() -> Optional[str]:
    """None when namespaces and sshd are available, else the reason (for a skip line)."""
    if os.geteuid() != 0:
        return "simulated hosts need root (network namespaces)"
    for tool in ("ip", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"simulated hosts need '{tool}' (iproute2 / openssh-client)"
    if not os.path.exists(SSHD):
        return f"simulated hosts need {SSHD} (Debian's openssh-server; .ci/run installs it)"
    probe = f"igprobe{os.getpid() % 100000}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode:
        return f"network namespaces cannot be made here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


class SimulatedHosts:
    """``n`` hosts reachable over ssh at :attr:`addresses`; :attr:`ssh` is the client command."""

    def __init__(self, n: int, folder: str, tag: int = 0):
        # names and addresses unique per process and tag: several test processes run at once
        net = (os.getpid() * 4 + tag) % 250
        self.n, self.folder = n, folder
        self.bridge = f"igbr{os.getpid() % 100000}{tag}"
        self.names = [f"ig{os.getpid() % 100000}{tag}h{i}" for i in range(n)]
        self.addresses = [f"10.213.{net}.{10 + i}" for i in range(n)]
        self.gateway = f"10.213.{net}.1"
        self.key = os.path.join(folder, "id_ed25519")
        self.ssh = ["ssh", "-i", self.key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-o", "LogLevel=ERROR"]
        self.daemons: List[subprocess.Popen] = []

    def __enter__(self) -> "SimulatedHosts":
        try:
            self._network()
            self._sshd()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _network(self) -> None:
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i, (name, address) in enumerate(zip(self.names, self.addresses)):
            outside, inside = f"{name}o", f"{name}i"
            _run("ip", "netns", "add", name)
            _run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            _run("ip", "link", "set", inside, "netns", name)
            _run("ip", "link", "set", outside, "master", self.bridge, "up")
            _run("ip", "-n", name, "addr", "add", f"{address}/24", "dev", inside)
            _run("ip", "-n", name, "link", "set", inside, "up")
            _run("ip", "-n", name, "link", "set", "lo", "up")

    def _sshd(self) -> None:
        os.makedirs("/run/sshd", exist_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key)
        host_key = os.path.join(self.folder, "host_ed25519")
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key)
        shutil.copy(self.key + ".pub", os.path.join(self.folder, "authorized_keys"))
        for name, address in zip(self.names, self.addresses):
            config = os.path.join(self.folder, f"sshd_{name}.conf")
            with open(config, "w") as handle:
                handle.write(f"ListenAddress {address}\nPort 22\nHostKey {host_key}\n"
                             f"AuthorizedKeysFile {self.folder}/authorized_keys\nPermitRootLogin yes\n"
                             "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                             f"PidFile {self.folder}/sshd_{name}.pid\nMaxStartups 100\n")
            self.daemons.append(subprocess.Popen(["ip", "netns", "exec", name, SSHD, "-D", "-e", "-f", config],
                                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 20
        for address in self.addresses:
            while subprocess.run([*self.ssh, "-o", "ConnectTimeout=2", address, "true"],
                                 capture_output=True).returncode:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd at {address} did not answer")
                time.sleep(0.2)

    def hostfile(self, path: str, lines: Optional[List[str]] = None) -> str:
        with open(path, "w") as handle:
            handle.write("# simulated hosts\n" + "\n".join(lines or self.addresses) + "\n")
        return path

    def __exit__(self, *exc) -> None:
        for daemon in self.daemons:
            daemon.kill()
            daemon.wait()
        for name in self.names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def job_processes(port: int) -> List[int]:
    """Pids of every process of the job on ``port`` (its environment names the scheduler's port)."""
    found = []
    marker = f"DMLC_PS_ROOT_PORT={port}".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                if marker in handle.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found


def find_process(port: int, role: str, address: str) -> Optional[int]:
    """The pid of the job's ``role`` process (not its guard) on ``address``."""
    for pid in job_processes(port):
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                env = dict(item.split(b"=", 1) for item in handle.read().split(b"\0") if b"=" in item)
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ")
        except OSError:
            continue
        if (env.get(b"DMLC_ROLE") == role.encode() and env.get(b"DMLC_NODE_HOST") == address.encode()
                and b"insightgluon.train.guard" not in cmdline and b"env " not in cmdline[:4]):
            return pid
    return None
