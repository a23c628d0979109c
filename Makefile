# Two entry points (see README.md): `make demo` runs the main job, `make test` the suite.
# Each builds the virtual environment it needs; torch is pinned to the CPU build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint bench clean

$(BIN)/pirf: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

demo: $(BIN)/pirf
	$(BIN)/pirf demo

test: $(BIN)/pirf
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q -n 2

lint: $(BIN)/pirf
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: $(BIN)/pirf
	$(BIN)/python benchmarks/bench_solvers.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache
