# Entry commands. `make demo` and `make test` work on a fresh machine: they create the virtualenv themselves.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv up down status demo test tf-check lint bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

up: venv
	$(PY) -m local.stack up

down: venv
	$(PY) -m local.stack down

status: venv
	$(PY) -m local.stack status

demo: venv
	$(PY) -m local.demo

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	sh local/ensure_chromium.sh
	$(PY) -m pytest

tf-check: venv
	$(PY) -m pytest tests/test_terraform.py tests/test_terraform_archive.py tests/test_terraform_lint.py

bench: venv
	$(PY) -m bench

clean: down
	rm -rf .stack $(VENV)
