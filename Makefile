# The two commands a new user needs: `make run` and `make test`. Everything else is a
# step they depend on. Nothing has to be installed by hand: the first call makes .venv.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help run test unit faults bench broker lint clean

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

run: $(STAMP) ## start broker, fan-out, delivery and retry workers (Ctrl-C stops)
	$(BIN)/synctec-webhooks run

test: $(STAMP) ## run the whole suite (unit + real-broker integration)
	$(BIN)/synctec-webhooks broker --fetch-only
	$(BIN)/python -m pytest

unit: $(STAMP) ## unit tests only (no broker)
	$(BIN)/python -m pytest tests/unit

faults: $(STAMP) ## the long fault suite; its table goes into docs/guarantees.md
	$(BIN)/python -m tests.faults.run --scale long --write-doc docs/guarantees.md

bench: $(BENCH_STAMP) ## the benchmark (about 8 min); appends its figures to docs/benchmarks.md
	$(BIN)/synctec-webhooks broker --fetch-only
	$(BIN)/python -m bench.run $(BENCH_ARGS)

broker: $(STAMP) ## run a local single-node Kafka broker in the foreground
	$(BIN)/synctec-webhooks broker

lint: $(STAMP) ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/mypy synctec_webhooks producers consumers schemas

clean: ## remove the virtualenv and local state (the Kafka jar cache in ~/.cache stays)
	rm -rf $(VENV) .state
