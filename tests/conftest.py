"""Shared test set-up: deterministic seeds and small CPU-only MXNet settings.

Data fixtures (tiny .rec datasets, .bin packs) are built in ``tmp_path`` by the
test modules that need them, through the package's own writers.
"""
import gc
import os
import random

# Before MXNet loads: one OpenMP thread per test process keeps parallel runs fast.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    import mxnet as mx

    random.seed(0)
    np.random.seed(0)
    mx.random.seed(0)
    yield


@pytest.fixture(autouse=True)
def _release_arrays():
    """Free each test's networks at its end: Gluon blocks sit in reference cycles that Python's
    collector, counting objects rather than bytes, would keep for many tests (hundreds of MB each)."""
    yield
    gc.collect()


@pytest.fixture(params=[True, False], ids=["hybrid", "imperative"])
def hybridize(request):
    """Run a test with and without ``HybridBlock.hybridize``."""
    return request.param
