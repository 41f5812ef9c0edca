"""Timing on a shared virtual machine: wall time, and wall time without the hypervisor's steal.

A cloud VM's vCPUs are sometimes taken away for seconds at a time; Linux counts
that as *steal* in ``/proc/stat``. On the machine these figures come from,
steal reached half of a run's wall time, which moves img/s by 2x between two
identical runs. :class:`StealFreeClock` subtracts the steal (summed over all
CPUs, divided by their number) from ``time.perf_counter()``; the benchmarks
print figures from both clocks and take ratios from the steal-free one.
"""
import os
import time


def steal_seconds() -> float:
    """Total steal time of all CPUs since boot, in seconds (0 where ``/proc/stat`` has none)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class StealFreeClock:
    """``clock()`` -> seconds of wall time during which this machine's CPUs were its own."""

    def __init__(self):
        self.cpus = os.cpu_count() or 1
        self._steal0 = steal_seconds()
        self._wall0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - steal_seconds() / self.cpus

    def steal_share(self) -> float:
        """Fraction of the wall time since construction that was stolen."""
        wall = time.perf_counter() - self._wall0
        return (steal_seconds() - self._steal0) / self.cpus / max(wall, 1e-9)


def timed_rate(run, batch: int, min_seconds: float, clock: StealFreeClock):
    """``(wall, steal-free)`` items/s of ``run()`` (``batch`` items a call): one warm-up call, then
    calls until ``min_seconds`` of steal-free time have passed."""
    run()
    count, wall, free = 0, time.perf_counter(), clock()
    while clock() - free < min_seconds:
        run()
        count += 1
    return count * batch / (time.perf_counter() - wall), count * batch / (clock() - free)


def medians(values):
    """Median wall and steal-free rate of a list of :func:`timed_rate` results."""
    import statistics

    return statistics.median(w for w, _ in values), statistics.median(f for _, f in values)
