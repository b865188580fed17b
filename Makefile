# Every target installs what it needs: a fresh machine runs `make demo` and `make test` as they are.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: venv demo test fresh-test lint unit integration e2e clean
.DEFAULT_GOAL := test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-* && touch $@

venv: $(STAMP)

## The main job: three hot upgrades of a real Envoy under load, then a report.
demo: venv
	$(PY) -m bench.demo

## Every test: lint, unit, integration (real Envoy, real API server), e2e (real cluster).
## The cluster comes up before integration and goes down after e2e, or at once when integration fails.
test: lint unit
	$(MAKE) --no-print-directory integration e2e || { rc=$$?; $(PY) -m localcluster down; exit $$rc; }

## The cold path of `make test`: `CI=true make test` on a fresh clone with empty Go, pip and project caches (prints its wall time).
fresh-test:
	bash .ci/fresh-test

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo --cache-dir $(VENV)/.import_linter_cache

unit: venv
	$(PY) -m pytest tests/unit

integration: venv
	$(PY) -m pytest tests/integration

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

-include mk/*.mk
