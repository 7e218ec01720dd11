# `make run` sets everything up and serves the demo; `make test` runs the whole suite.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
AUDIT := tests/audit/node_modules/.installed

.PHONY: run setup migrate demo test test-sqlite test-postgres lint schema clean

run: setup migrate demo
	$(PY) server.py

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The graphql-http audit suite (tests/test_http_spec.py), installed from its lock file.
$(AUDIT): tests/audit/package.json tests/audit/package-lock.json
	cd tests/audit && npm ci --no-audit --no-fund --silent
	touch $(AUDIT)

# `make run` needs Python only; the suite also needs node for the audit (tests/test_http_spec.py).
setup: $(STAMP)

migrate: setup
	$(PY) manage.py migrate

demo: setup
	$(PY) manage.py seed-demo

# The whole suite, once per database (Tortoise binds one SQL dialect per process).
test: test-sqlite test-postgres

test-sqlite: setup $(AUDIT)
	TEST_DATABASE=sqlite $(PY) -m pytest $(PYTEST_ARGS)

test-postgres: setup $(AUDIT)
	TEST_DATABASE=postgres $(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

schema: setup
	$(PY) manage.py export-schema

clean:
	rm -rf $(VENV) crm.sqlite3 crm.sqlite3-*
