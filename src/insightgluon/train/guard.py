"""``python -m insightgluon.train.guard CMD ...``: run one process of a distributed job, tied to its launcher.

The launcher starts every scheduler, server and worker through this guard, over ssh or locally, with
a pipe on the guard's standard input. The guard runs ``CMD`` in a process group of its own and

- ends that group (SIGTERM, then SIGKILL after a grace period) when its standard input reaches end of
  file: the launcher closed it to stop the job, exited, was killed, or the ssh connection dropped;
- ends it too on SIGTERM or SIGHUP;
- exits with ``CMD``'s status when ``CMD`` ends (128 + N when a signal N ended it, as shells report it),
  which ssh hands back to the launcher.

So no process of a job outlives the launcher that started it, wherever it runs.
"""
import os
import signal
import subprocess
import sys
import threading
from typing import List, Optional

# Seconds a process group has between SIGTERM and SIGKILL.
GRACE = 5.0


def _end_group(child: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, GRACE), (signal.SIGKILL, None)):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            return
        try:
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def status_of(code: int) -> int:
    """A ``Popen.returncode`` as a shell reports it: 128 + N for a process ended by signal N."""
    return 128 - code if code < 0 else code


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        sys.stderr.write("usage: python -m insightgluon.train.guard CMD [ARGS...]\n")
        return 2
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    def watch_stdin():
        # os.read, not sys.stdin: a buffered reader's lock held by this thread at exit aborts Python
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    while child.poll() is None:
        if stop.wait(0.2):
            _end_group(child)
            break
    return status_of(child.wait())


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # (the stdin thread may still be blocked in a read)
