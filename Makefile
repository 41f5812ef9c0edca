# Two set-up-free entry points: `make demo` and `make test`. The first call
# creates .venv with exactly the pinned dependency set.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Test processes (pytest-xdist, one test file per process at a time; each computes on one
# OpenMP thread). Two take about 5.5 min and 3.7 GiB at most on 2 cores; one, twice the time.
TEST_JOBS ?= 2

.PHONY: demo test bench venv clean

venv: $(STAMP)

$(STAMP): requirements/constraints.txt requirements/base.txt requirements/test.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c requirements/constraints.txt -r requirements/test.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m insightgluon demo

test: $(STAMP)
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile

bench: $(STAMP)
	for b in bench/[!_]*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info
