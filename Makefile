# `make demo`: build the demo runs and check them with the example suites (report in reports/).
# `make test`: lint (ruff, ruff format --check, mypy --strict, import-linter), then the project's test suite.
# Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.neuronprobe-installed

.PHONY: install demo lint test bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The pinned CPU build first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/neuronprobe demo --out demo_runs
	$(BIN)/python -m pytest example_suites -p no:cacheprovider --neuron-run 'demo_runs/*' --neuron-report reports \
		--neuron-baseline example_suites/baseline --neuron-require-run

# Configuration of all four tools: pyproject.toml ([tool.ruff], [tool.mypy], [tool.importlinter]).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_analyses.py

clean:
	rm -rf demo_runs reports .neuronprobe .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
