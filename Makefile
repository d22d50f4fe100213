# Two commands on a fresh machine: `make demo` and `make test` (see README.md).
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := $(PYTHON) -m uv
endif
VENV := .venv
# pytest-xdist workers for `make test` (the suite's tests are independent; Spark's share one)
TEST_WORKERS ?= 2
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast lint format clean help

help:
	@echo "make demo   set up .venv (uv sync --frozen), generate demo data if needed, run the pipeline"
	@echo "make test   ruff (lint + format check), mypy, lint-imports and the whole pytest suite"
	@echo "make test-fast   the edit-run loop: unit tests and the fast data tests (-m 'not slow')"
	@echo "make lint | format | clean"

# uv is installed with pip only when neither `uv` nor `python3 -m uv` is available.
$(VENV)/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || \
		$(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(UV) sync --frozen
	@touch $@

setup: $(VENV)/.synced

demo: setup
	$(BIN)/featurestack demo-data
	$(BIN)/featurestack run

test: setup lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

test-fast: setup
	$(BIN)/pytest -m "not slow" tests/unit tests/data

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf data dbt_project/target dbt_project/logs
