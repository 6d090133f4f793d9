# The two set-up commands of the README: `make demo` (main job) and `make test` (the test suite).
# Each installs what it needs (apt packages, .venv) through scripts/bootstrap.sh, then runs.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bootstrap lint typecheck pytest bench

bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/bin/cccd-edge demo --serve

test: bootstrap
	$(VENV)/bin/ruff check edge tests hil_tests bench provisioning
	$(VENV)/bin/mypy edge provisioning
	$(PY) -m pytest -q
	CCCD_EDGE_RIG=hil_tests/virtual-rig.toml $(PY) -m pytest hil_tests -q

bench: bootstrap
	for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done
