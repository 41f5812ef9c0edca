"""Shared test set-up: deterministic seeds and small CPU-only MXNet settings.

Data fixtures (tiny .rec datasets, .bin packs) are built in ``tmp_path`` by the
test modules that need them, through the package's own writers.
"""
import os
import random
import shutil

# Before MXNet loads: one OpenMP thread per test process keeps parallel runs fast.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("MXNET_CPU_WORKER_NTHREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from _memory import release  # noqa: E402

pytest_plugins = ["_budget"]


# The longest files (about two minutes each on one core), then the rest in their order: each test
# process takes one file at a time, and a long file taken last would run alone at the end.
LONGEST_FIRST = ("test_networks_zoo.py", "test_zoo_training.py", "test_networks.py", "test_model_zoo.py",
                 "test_recipes.py", "test_readme.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # a stable sort


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same random state."""
    import mxnet as mx

    random.seed(0)
    np.random.seed(0)
    mx.random.seed(0)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.when == "call":
        item.passed_call = report.passed


@pytest.fixture(autouse=True)
def _release_resources(request):
    """Free each test's networks and files at its end.

    Gluon blocks sit in reference cycles that Python's collector, counting objects rather than
    bytes, would keep for many tests (hundreds of MB each); checkpoints of the full-size networks
    take up to a GB each, so a passed test's ``tmp_path`` is removed (a failed one's is kept).
    """
    yield
    release()
    tmp = request.node.funcargs.get("tmp_path")
    if tmp is not None and getattr(request.node, "passed_call", False):
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=[True, False], ids=["hybrid", "imperative"])
def hybridize(request):
    """Run a test with and without ``HybridBlock.hybridize``."""
    return request.param
