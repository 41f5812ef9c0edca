"""Each test's memory and time, held to a budget, and the suite's figures at its end.

A test may use at most ``MEMORY_GIB`` of memory above what its process held when it began (its own
peak, read from the kernel's high-water mark reset before each test, plus the peak of the processes
it starts, sampled) and ``CPU_SECONDS`` of CPU time (its process and the children it waited for).
CPU time rather than wall time, so that a loaded machine does not change a verdict. A test that needs
more says so, and why::

    @pytest.mark.budget(reason="...", memory_gib=2.0, cpu_seconds=40)

Without it, overspending fails the test at its teardown. Tests marked so run one at a time across
the test processes (file locks), so two heavy tests never add up; one marked ``alone=True`` also waits
for the other processes' tests to finish and holds theirs back until it is done. Heavy tests allowed
more than 2 GiB are marked ``alone``: with two test processes the tree then stays under 4 GiB (a
heavy test's 2 GiB, the other process's test 1 GiB, both processes' own ~0.3 GiB each).

At the end the slowest tests, the hungriest, and the peak memory of the whole test process tree
(proportional set sizes summed, so shared libraries and copy-on-write pages count once) are printed;
``--budget-json PATH`` writes every test's figures.
"""
import fcntl
import json
import os
import threading
import time

import pytest

MEMORY_GIB = 1.0
CPU_SECONDS = 20.0
SHARED_GIB = 2.0  # the most a heavy test running beside other tests may use
SHOW = 10
_GIB = 1 << 30


def _pss_bytes(pid):
    """Proportional set size of one process (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _descendants(root):
    """Process ids below ``root``, from every process's parent (kernels need not list children)."""
    children = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


class _TreeSampler(threading.Thread):
    """The largest summed PSS of ``root``'s descendants (and ``root``'s own, if asked), sampled."""

    def __init__(self, root, include_root, interval):
        super().__init__(daemon=True)
        self.root, self.include_root, self.interval = root, include_root, interval
        self.peak = 0
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(self.interval):
            pids = _descendants(self.root) + ([self.root] if self.include_root else [])
            self.peak = max(self.peak, sum(_pss_bytes(pid) for pid in pids))

    def stop(self):
        self._halt.set()
        self.join()
        return self.peak


def _reset_high_water_mark():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:  # not allowed here: the budget falls back to the RSS the test leaves behind
        return False


def _cpu_seconds():
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class _TestMeter:
    """One test, from the start of its set-up to the end of its teardown."""

    def __init__(self):
        self.exact = _reset_high_water_mark()
        self.rss0 = _status_bytes("VmRSS:")
        self.cpu0, self.wall0 = _cpu_seconds(), time.perf_counter()
        self.children = _TreeSampler(os.getpid(), include_root=False, interval=0.1)
        self.children.start()

    def finish(self):
        child_peak = self.children.stop()
        own_peak = _status_bytes("VmHWM:" if self.exact else "VmRSS:")
        return {"memory": max(own_peak - self.rss0, 0) + child_peak,
                "cpu": _cpu_seconds() - self.cpu0, "wall": time.perf_counter() - self.wall0}


def _allowance(item):
    """(memory GiB, CPU seconds, marked) a test may use."""
    mark = item.get_closest_marker("budget")
    if mark is None:
        return MEMORY_GIB, CPU_SECONDS, False
    if not mark.kwargs.get("reason"):
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.budget needs reason='why this test is heavy'")
    memory = mark.kwargs.get("memory_gib", MEMORY_GIB)
    if memory > SHARED_GIB and not mark.kwargs.get("alone"):
        raise pytest.UsageError(f"{item.nodeid}: a test allowed more than {SHARED_GIB:g} GiB runs alone=True")
    return memory, mark.kwargs.get("cpu_seconds", CPU_SECONDS), True


class Budget:
    """The per-test meter (in every test process) and the report (in the controlling one)."""

    def __init__(self, config):
        self.config = config
        self.results = []
        self.tree = None
        if not hasattr(config, "workerinput"):  # the controlling process watches the whole tree
            self.tree = _TreeSampler(os.getpid(), include_root=True, interval=0.25)
            self.tree.start()

    def _lock(self, name):
        base = self.config._tmp_path_factory.getbasetemp()
        # pytest-xdist workers each have a basetemp below one shared root
        root = base.parent if hasattr(self.config, "workerinput") else base
        return open(os.path.join(str(root), f"{name}.lock"), "a")

    def _acquire(self, item):
        """The locks ``item`` runs under (waiting for them is not charged to it).

        ``heavy``: one budget-marked test at a time. ``all``: shared by every test, exclusive for an
        ``alone`` one; ``gate`` is taken before it, briefly by the others, so that a waiting
        ``alone`` test is not starved by the stream of small ones.
        """
        mark = item.get_closest_marker("budget")
        alone = bool(mark and mark.kwargs.get("alone"))
        held = []
        for name, mode in (("gate", fcntl.LOCK_EX), ("heavy", fcntl.LOCK_EX if mark else None),
                           ("all", fcntl.LOCK_EX if alone else fcntl.LOCK_SH)):
            if mode is not None:
                held.append(self._lock(name))
                fcntl.flock(held[-1], mode)
        if not alone:  # others pass the gate at once
            held.pop(0).close()
        return held

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item):
        _allowance(item)  # (a marker without its reason is refused before anything runs)
        locks = self._acquire(item)
        item._budget = (_TestMeter(), locks)
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        if call.when != "teardown" or not hasattr(item, "_budget"):
            return
        meter, locks = item._budget
        del item._budget
        used = meter.finish()
        for lock in reversed(locks):
            lock.close()
        report = outcome.get_result()
        report.user_properties.append(("budget", used))
        memory_gib, cpu_seconds, _ = _allowance(item)
        over = []
        if used["memory"] > memory_gib * _GIB:
            over.append(f"{used['memory'] / _GIB:.2f} GiB of memory (allowed {memory_gib:g})")
        if used["cpu"] > cpu_seconds:
            over.append(f"{used['cpu']:.1f} s of CPU time (allowed {cpu_seconds:g})")
        if over and report.passed:
            report.outcome = "failed"
            report.longrepr = (f"{item.nodeid} used {' and '.join(over)}: make it smaller, or mark it "
                               "@pytest.mark.budget(reason=..., memory_gib=..., cpu_seconds=...) saying why")

    def pytest_runtest_logreport(self, report):
        if report.when == "teardown":
            self.results += [(report.nodeid, used) for key, used in report.user_properties if key == "budget"]

    def pytest_terminal_summary(self, terminalreporter):
        if self.tree is None or not self.results:
            return
        peak = self.tree.stop()
        path = self.config.getoption("budget_json")
        if path:
            with open(path, "w") as f:
                json.dump({"peak_tree_bytes": peak, "tests": dict(self.results)}, f, indent=1)
        write = terminalreporter.write_line
        terminalreporter.section("time and memory")
        write(f"{SHOW} slowest tests (wall s, CPU s, memory MiB):")
        for nodeid, used in sorted(self.results, key=lambda r: -r[1]["wall"])[:SHOW]:
            write(f"  {used['wall']:6.1f} {used['cpu']:6.1f} {used['memory'] / 2**20:6.0f}  {nodeid}")
        write(f"{SHOW} tests using the most memory (MiB, wall s):")
        for nodeid, used in sorted(self.results, key=lambda r: -r[1]["memory"])[:SHOW]:
            write(f"  {used['memory'] / 2**20:6.0f} {used['wall']:6.1f}  {nodeid}")
        cpu = sum(used["cpu"] for _, used in self.results)
        write(f"{len(self.results)} tests, {cpu / 60:.1f} CPU-minutes; peak memory of the test process tree "
              f"{peak / _GIB:.2f} GiB (summed proportional set sizes, sampled every 0.25 s)")


def pytest_addoption(parser):
    parser.addoption("--budget-json", metavar="PATH", help="write every test's wall time, CPU time and memory")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", f"budget(reason, memory_gib={MEMORY_GIB:g}, cpu_seconds={CPU_SECONDS:g}, alone=False): a test "
                   "allowed more memory or CPU time than every test gets, and why (such tests run one at a time; "
                   "alone: with no other test running)")
    config.pluginmanager.register(Budget(config), "insightgluon-budget")
