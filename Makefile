# Entry commands. `make demo` and `make test` work on a fresh machine: they create the virtualenv themselves.
# `make mutate` (not part of `make test`): mutation testing of the core and the chain's rules, see docs/mutation.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv up down status demo test test-full tf-check lint bench mutate clean

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
	$(PY) -m pytest -m "not full"

# Everything, including the stack cases CI leaves out (tests/conftest.py FULL_ONLY); about 3 minutes more.
test-full: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	sh local/ensure_chromium.sh
	$(PY) -m pytest

tf-check: venv
	$(PY) -m pytest tests/test_terraform.py tests/test_terraform_archive.py tests/test_terraform_lint.py

bench: venv
	$(PY) -m bench

# Mutants are written under mutants/ (git-ignored), never into the source tree. Every run starts afresh: mutmut's
# cache would keep a survivor's verdict after a new test kills it. Score per module and survivors; fails under 90 %.
mutate: venv
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-mutate.txt
	rm -rf mutants && mkdir -p mutants
	@echo "mutmut run: progress in mutants/run.log (several minutes on 2 cores)"
	nice -n 10 $(VENV)/bin/mutmut run $(if $(MUTATE_JOBS),--max-children $(MUTATE_JOBS)) > mutants/run.log 2>&1 \
		|| { tr '\r' '\n' < mutants/run.log | tail -n 40; exit 1; }
	$(PY) -m local.mutation_score --min 90

clean: down
	rm -rf .stack $(VENV)
