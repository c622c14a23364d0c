# The two commands the README promises, plus the ones contributors use.
#   make demo   run the example project (SQLite, static targets, a local upstream it starts)
#   make test   run the test suite (SQLite + Redis when reachable; GATEWAY_TEST_DB=postgres for PostgreSQL)
PYTHON ?= python3
VENV ?= .venv
DJANGO ?= Django>=5.2,<5.3
BIN := $(VENV)/bin

.PHONY: demo test bench bench-flapping lint typecheck docs clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,bench,docs]' '$(DJANGO)' ruff
	touch $@

demo: $(VENV)/.installed
	$(BIN)/python example_project/manage.py demo

test: $(VENV)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

bench-flapping: $(VENV)/.installed
	$(BIN)/python -m benchmarks.flapping $(BENCH_ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check django_gateway tests benchmarks example_project
	$(BIN)/ruff format --check django_gateway tests benchmarks example_project
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed
	$(BIN)/mypy

docs: $(VENV)/.installed
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) .venv-* site .pytest_cache
