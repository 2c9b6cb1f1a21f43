# The two commands a new user needs: `make run` and `make test`. Everything else is a
# step they depend on. Nothing has to be installed by hand: the first call makes .venv.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run test unit faults bench broker browser screenshot lint clean prometheus deploy-check dashboard
CHROMIUM := /usr/bin/chromium
# What `make run` lets deliveries reach: loopback only, so a local receiver works.
LOCAL_NETWORKS := 127.0.0.0/8,::1/128

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 or run 'make PYTHON=python3 ...'"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,dev]'
	@touch $(STAMP)

venv: $(STAMP) ## create .venv and install the project

BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,dev,bench]'
	@touch $(BENCH_STAMP)

run: $(STAMP) ## start broker, workers and the admin service (Ctrl-C stops)
	SYNCTEC_ALLOW_PRIVATE_NETWORKS=$${SYNCTEC_ALLOW_PRIVATE_NETWORKS-$(LOCAL_NETWORKS)} $(BIN)/synctec-webhooks run

test: $(STAMP) prometheus browser ## run the whole suite (unit + real-broker + browser)
	$(BIN)/synctec-webhooks broker --fetch-only
	$(BIN)/python -m pytest

prometheus: ## install Debian's prometheus + promtool if missing (never started as a service)
	@tools/ensure-prometheus.sh

deploy-check: $(STAMP) prometheus ## validate deploy/: compose, k8s, promtool rules, dashboard
	$(BIN)/python -m pytest tests/integration/test_deploy.py

dashboard: $(STAMP) prometheus ## redraw docs/dashboard.png from a real run (about 3 min)
	$(BIN)/synctec-webhooks broker --fetch-only
	SYNCTEC_OBSERVABILITY_TRAFFIC_SECONDS=150 SYNCTEC_DASHBOARD_PNG=docs/dashboard.png \
		$(BIN)/python -m pytest tests/integration/test_observability.py


# Debian's Chromium for the settings-page test (Playwright cannot download browsers
# here). Quick when already installed; apt-get needs root, as CI runs.
browser: ## install Debian's chromium for the browser test, if missing
	@test -x $(CHROMIUM) || { \
	  command -v apt-get >/dev/null || { echo "install Chromium at $(CHROMIUM)"; exit 1; }; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

unit: $(STAMP) ## unit tests only (no broker)
	$(BIN)/python -m pytest tests/unit

faults: $(STAMP) ## the long fault suite; its table goes into docs/guarantees.md
	$(BIN)/python -m tests.faults.run --scale long --write-doc docs/guarantees.md

bench: $(BENCH_STAMP) ## the benchmark (about 9 min); appends its figures to docs/benchmarks.md
	$(BIN)/synctec-webhooks broker --fetch-only
	$(BIN)/python -m bench.run $(BENCH_ARGS)

broker: $(STAMP) ## run a local single-node Kafka broker in the foreground
	$(BIN)/synctec-webhooks broker

lint: $(STAMP) ## ruff (lint + format) and mypy, as CI runs them
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/typecheck.py
	$(BIN)/mypy tools bench

screenshot: $(STAMP) browser ## refresh docs/settings-page.png (needs a broker: runs the browser test)
	SYNCTEC_SCREENSHOT=docs/settings-page.png $(BIN)/python -m pytest -q tests/integration/test_admin_page.py

clean: ## remove the virtualenv and local state (the Kafka jar cache in ~/.cache stays)
	rm -rf $(VENV) .state
