# Two commands: `make demo` and `make test`. Each sets up .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-all bench docs clean mutate

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,parquet,docs,sklearn]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/measureflow reproduce --preset quick --out results

# The default tests on TEST_WORKERS processes (pytest-xdist; each worker runs whole test
# files: tests/conftest.py). 2, not auto: the project's machines and CI have 2 cores, and
# every worker is a JAX process that starts its own subprocesses (experiments, sweep
# workers, a Dask cluster), so one per core of a large machine multiplies the memory for
# little gain. TEST_WORKERS=0: one process, as pytest alone runs.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

bench: $(STAMP)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[bench]"
	uptime || true
	$(BIN)/python benchmarks/run.py --quick

# Mutation testing of the numerical core (not part of `make test`): a sample of 40 mutants
# per module (mutation/run.py --help); MODULES="losses certificates" for some.
# Reports in mutation/reports/.
mutate: $(STAMP)
	$(BIN)/python -c "import cosmic_ray" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[mutate]"
	uptime || true
	$(BIN)/python mutation/run.py --jobs 2 $(MODULES)

docs: $(STAMP)
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) results site .pytest_cache
