# Two commands matter: `make dev` (virtualenv with the project and its dev
# extras) and `make test` (lint, type-check, every test tier).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev test lint typecheck unit crds proto clean control-plane demo system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

dev: $(VENV)/.installed

control-plane:
	bash hack/build-control-plane.sh

# Debian packages the tests use: PostgreSQL for the analytics-events tests
# (they start their own server) and iproute2 for the pod network namespaces.
system-deps:
	@{ ls /usr/lib/postgresql/*/bin/initdb && command -v ip; } >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq postgresql iproute2 >/dev/null; }

# The local demo: email, a webhook and SMS failover, no cluster and no accounts.
demo: dev
	bash hack/demo.sh

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: dev
	$(BIN)/mypy

# crds/ must be exactly what the models generate.
crds: dev
	$(BIN)/switchboard crds --check --reference docs/crd-reference.md

test: dev control-plane system-deps lint typecheck crds chart
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

.PHONY: kind-up chart

# A local kind cluster running this checkout: images built and loaded, the
# chart installed, examples/ applied (needs docker, kind, kubectl, helm).
kind-up:
	bash hack/kind-up.sh

# The Helm chart's generated parts are current: its CRDs are copies of crds/,
# values.schema.json and README.md match values.yaml.
chart: dev
	bash hack/sync-chart-crds.sh --check
	$(BIN)/python hack/chart-docs.py --check
