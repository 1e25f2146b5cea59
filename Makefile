# `make demo` and `make test` set everything up on a fresh machine (a virtualenv in .venv), then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint format clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/judge-arena run configs/demo.yaml

test: $(STAMP) lint
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check judge_arena tests
	$(BIN)/ruff format --check judge_arena tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix judge_arena tests
	$(BIN)/ruff format judge_arena tests

clean:
	rm -rf cache runs configs/cache configs/runs .pytest_cache .mypy_cache .ruff_cache
