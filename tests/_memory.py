"""Memory a test has let go of, handed back to the system (``from _memory import release``).

Gluon blocks sit in reference cycles, MXNet frees arrays on its engine thread, and glibc keeps
freed heap pages for the next allocation: without the three steps below a process holds, after a
test, what the test held at its peak.
"""
import ctypes
import ctypes.util
import gc
import sys

_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
# Arrays of 1 MiB and more get a mapping of their own, returned as soon as they are freed
# (glibc's M_MMAP_THRESHOLD; by default it rises to 32 MiB as large blocks are freed).
_LIBC.mallopt(-3, 1 << 20)


def release():
    """Collect cycles, wait for MXNet's pending frees, and return free heap pages."""
    gc.collect()
    if "mxnet" in sys.modules:
        sys.modules["mxnet"].nd.waitall()
    _LIBC.malloc_trim(0)
