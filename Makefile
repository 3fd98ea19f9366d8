# Statehouse: `make run` serves the product on the embedded SQLite default;
# `make test` runs the whole test suite (DATABASE_URL picks PostgreSQL instead).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run demo test lint typecheck check clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python manage.py serve

demo: install
	$(BIN)/python manage.py serve --demo

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy with django-stubs ([tool.mypy] in pyproject.toml). The folders agents/ and
# examples/ are the packages statehouse_agents and statehouse_examples: .typecheck/ names
# them so (mypy cannot follow the editable install's import hook).
typecheck: install
	mkdir -p .typecheck
	for link in statehouse statehouse_site statehouse_agents:agents statehouse_examples:examples; do \
	  ln -sfn "../$${link#*:}" ".typecheck/$${link%%:*}"; done
	$(BIN)/mypy

check: install
	$(BIN)/python manage.py check
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) .typecheck .mypy_cache data/test-*.sqlite3*
