# dialkit — `make run` serves with embedded defaults, `make test` runs lint, types and tests.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed-stamp

.PHONY: run test lint pytest simulate bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/dialkit serve

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

test: lint pytest

simulate: $(STAMP)
	$(BIN)/dialkit call --simulate

bench: $(STAMP)
	$(BIN)/python bench/concurrent_calls.py --calls 200 --seconds 20
	$(BIN)/python bench/pipeline_latency.py

clean:
	rm -rf $(VENV) .dialkit .pytest_cache .mypy_cache .ruff_cache
