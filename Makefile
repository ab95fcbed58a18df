# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO_DIR ?= $(CURDIR)/.demo

.PHONY: install demo test lint pytest bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]'
	touch $@

demo: install
	DEMO_DIR=$(DEMO_DIR) STELLA_BIN=$(BIN)/stella scripts/demo.sh

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

pytest: install
	$(BIN)/pytest

test: lint pytest

bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
