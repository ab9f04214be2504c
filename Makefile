# Two commands matter: `make dev` (virtualenv with the project and its dev
# extras) and `make test` (lint, type-check, every test tier).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: dev lock test lint typecheck unit crds proto clean control-plane demo system-deps kafka images node policy-controller real-node

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Exactly the locked versions, hash-checked (requirements/dev.txt, from `make
# lock`), installed by the locked uv; the project itself is built with the
# locked setuptools, not one fetched for the build. The libraries' bytecode is
# compiled once here: where PYTHONDONTWRITEBYTECODE is set, every process would
# otherwise compile what it imports from source each time it starts (2 s of CPU
# for a router, and the tests start hundreds of processes). The project's own
# modules are few and stay source only, so no bytecode lands in the images'
# build contexts.
$(VENV)/.installed: $(BIN)/python requirements/dev.txt requirements/uv.txt pyproject.toml
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/uv.txt
	$(BIN)/uv pip sync --quiet --compile-bytecode --python $(BIN)/python --require-hashes requirements/dev.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $@

dev: $(VENV)/.installed

# Re-resolve the locked installs after a change to pyproject.toml's
# dependencies (pins move only where they must); `make lock UPGRADE=1` moves
# every pin to its newest version.
lock: dev
	$(BIN)/python hack/lock.py $(if $(UPGRADE),--upgrade)

control-plane:
	bash hack/build-control-plane.sh

# Debian packages the tests use: PostgreSQL for the analytics-events tests
# (they start their own server), iproute2 for the pod network namespaces, and
# for the images and the real node podman, mmdebstrap, runc, and iptables and
# ipset (the node's kube-proxy rule and its NetworkPolicy enforcer).
SYSTEM_COMMANDS := ip podman mmdebstrap runc iptables ipset
# The VOLTHA event-bus tests' broker: Apache Kafka's jars from Maven Central
# (needs mvn and Java 17), cached by version under ~/.cache/switchboard.
kafka: dev
	$(BIN)/python -m tests.vendor.kafka fetch

system-deps:
	@( ls /usr/lib/postgresql/*/bin/initdb && for c in $(SYSTEM_COMMANDS); do command -v $$c || exit 1; done ) \
	  >/dev/null 2>&1 || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y -qq postgresql iproute2 podman mmdebstrap runc iptables ipset >/dev/null; }

# The Switchboard image, the plugin base image and every plugin image, built
# with podman from the committed Dockerfiles (no Docker, no registry: a Debian
# Python base and a wheelhouse of the locked wheels); cached by content.
images: dev system-deps
	$(BIN)/python hack/images.py

# The real node of tests/realnode (kubelet, containerd, CNI plugins, pause
# image), built from Go modules and cached by version like the control plane.
node: control-plane system-deps
	bash hack/build-node.sh

# The real node's NetworkPolicy enforcer: kube-router's policy controller,
# built from its Go module and cached by version like the node.
policy-controller: system-deps
	bash hack/build-policy-controller.sh

# What the real-node tier runs, built before the tests when this machine can
# run it (root, overlayfs); elsewhere the tier is skipped and says why.
real-node: dev control-plane system-deps
	@if [ "$$(id -u)" = 0 ] && grep -qw overlay /proc/filesystems; then \
	  bash hack/build-node.sh >/dev/null && bash hack/build-policy-controller.sh >/dev/null \
	  && $(BIN)/python hack/images.py; \
	else echo "real-node: not root or no overlayfs here: tests/realnode will be skipped"; fi

# The local demo: email, a webhook and SMS failover, no cluster and no accounts.
demo: dev
	bash hack/demo.sh

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# The fast tier: no cluster, no network namespaces (docs/testing.md has its time).
unit: dev
	$(BIN)/python -m pytest -q tests/unit tests/sdk

typecheck: dev
	$(BIN)/mypy

# crds/ must be exactly what the models generate.
crds: dev
	$(BIN)/switchboard crds --check --reference docs/crd-reference.md

test: dev control-plane system-deps kafka lint typecheck crds chart real-node
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
