"""The suite's own budget: a test over 1 GiB or 20 CPU seconds fails unless a marker says why."""
import re

import pytest

import _budget

pytest_plugins = ["pytester"]

TESTS = '''
import time
import numpy as np
import pytest

def test_small():
    np.ones(1000).sum()

def test_hungry():
    a = np.ones(40 * 2**20 // 8)  # 40 MiB, touched
    a.sum()

@pytest.mark.budget(reason="holds 40 MiB on purpose", memory_gib=0.1)
def test_hungry_with_reason():
    np.ones(40 * 2**20 // 8).sum()

def test_busy():
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass

@pytest.mark.budget(memory_gib=0.1)
def test_no_reason():
    pass
'''


@pytest.fixture
def run(pytester, monkeypatch):
    """The tests above under a budget of 20 MiB and 0.2 CPU seconds."""
    monkeypatch.setattr(_budget, "MEMORY_GIB", 20 / 1024)
    monkeypatch.setattr(_budget, "CPU_SECONDS", 0.2)
    pytester.makepyfile(test_inner=TESTS)
    return lambda *args: pytester.runpytest_inprocess("-p", "_budget", "-p", "no:cacheprovider", *args)


def test_over_budget_fails_naming_what_and_how_to_allow_it(run):
    result = run("-k", "not no_reason")
    result.assert_outcomes(passed=4, errors=2)
    text = result.stdout.str()
    assert "test_hungry used 0.0" in text and "GiB of memory (allowed 0.0195312)" in text
    assert re.search(r"test_busy used \d+\.\d s of CPU time \(allowed 0\.2\)", text)
    assert "@pytest.mark.budget(reason=..., memory_gib=..., cpu_seconds=...)" in text
    assert "test_hungry_with_reason" not in text.split("short test summary")[1]
    # the summary: the slowest, the hungriest and the tree's peak
    assert "10 slowest tests" in text and "tests using the most memory" in text
    assert "peak memory of the test process tree" in text


def test_a_budget_marker_needs_its_reason(run):
    result = run("-k", "no_reason")
    assert "needs reason='why this test is heavy'" in result.stdout.str() + result.stderr.str()


def test_heavy_beside_other_tests_is_at_most_two_gib(pytester):
    pytester.makepyfile(test_inner='''
import pytest

@pytest.mark.budget(reason="big", memory_gib=3)
def test_big():
    pass
''')
    result = pytester.runpytest_inprocess("-p", "_budget", "-p", "no:cacheprovider")
    assert "runs alone=True" in result.stdout.str() + result.stderr.str()
