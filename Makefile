# The two commands a user needs: `make run` and `make test`. Each sets up
# its own virtual environment on first use.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCENARIO ?= lab/scenarios/default.toml
REPORT ?= reports/$(basename $(notdir $(SCENARIO)))
PROTOS := $(wildcard proto/balloon/v1/*.proto)

.PHONY: run test test-tools lint proto bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/balloonlab run $(SCENARIO) --report $(REPORT)

test-tools:
	scripts/test-tools.sh

test: $(BIN)/.installed test-tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

proto: $(BIN)/.installed
	$(BIN)/python -m balloon_common.protogen proto

bench: $(BIN)/.installed
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) reports .pytest_cache .mypy_cache .ruff_cache
