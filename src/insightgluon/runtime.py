"""Process-level MXNet settings that must be applied before ``import mxnet``.

MXNet 1.9 sizes its OpenMP pool to half the processor count (it assumes
hyper-threading), so on a 2-core machine it computes on one core. Subnormal
floats, which appear when a model over-fits, slow x86 kernels several-fold;
flush-to-zero avoids that. Command-line entry points call
:func:`configure` first; library code never changes the environment.
"""
import ctypes
import mmap
import os
import platform
import sys


def configure(num_threads: int = 0) -> None:
    """Set OpenMP threads and flush-to-zero for this process, before MXNet loads.

    Parameters
    ----------
    num_threads : int
        OpenMP threads for MXNet operators; 0 means all cores. An
        ``OMP_NUM_THREADS`` already set by the user is kept.
    """
    if "mxnet" not in sys.modules:
        os.environ.setdefault("OMP_NUM_THREADS", str(num_threads or os.cpu_count() or 1))
        # Idle OpenMP threads must not spin while DataLoader workers decode.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "2")
    _flush_denormals()


def _flush_denormals() -> None:
    """Enable FTZ/DAZ in the calling thread; threads started later inherit it.

    Runs a 19-byte x86-64 stub (``stmxcsr``; ``or 0x8040``; ``ldmxcsr``; ``ret``)
    from an anonymous executable page. Other processors, or a system that
    forbids executable mappings, keep the default floating-point mode.
    """
    if platform.machine() not in ("x86_64", "AMD64"):
        return
    # numpy computes and caches its float limits on first use; computed under
    # FTZ the smallest subnormal reads as zero and numpy warns on every import.
    import numpy as np

    for dtype in (np.float16, np.float32, np.float64, np.longdouble):
        np.finfo(dtype)
    code = bytes.fromhex("0fae5c24fc" "814c24fc40800000" "0fae5424fc" "c3")
    try:
        page = mmap.mmap(-1, len(code), prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError, AttributeError):
        return
    page.write(code)
    stub = ctypes.CFUNCTYPE(None)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
    stub()
    del stub


def host_threads() -> int:
    """Threads for the engines that keep their own pool (onnxruntime, OpenVINO): ``OMP_NUM_THREADS``
    when it is set, the budget MXNet computes with, else 0 (their own default)."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() else 0
