# The two set-up commands: `make demo` and `make test`. Both create .venv when missing.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DURATION ?= 120
PYTEST_ARGS ?=

.PHONY: venv demo test test-unit lint bench clean schemas deploy-check

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the CPU build, so nothing later can pull a CUDA wheel.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/streamrec demo --duration $(DEMO_DURATION) --json var/demo/summary.json

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core iokit streams funnel feature_store models services
	$(BIN)/lint-imports

# The Dockerfile's install steps in a clean venv (no Docker engine here).
deploy-check:
	bash deploy/docker/check.sh

schemas: $(STAMP)
	$(BIN)/streamrec schemas write

bench: $(STAMP)
	mkdir -p var/bench
	$(BIN)/streamrec bench ingest --events 100000 --json var/bench/ingest.json
	$(BIN)/streamrec bench features --json var/bench/features.json
	$(BIN)/streamrec bench serve --items 100000 --rps 100 --duration 30 --json var/bench/serve.json
	$(BIN)/streamrec bench train --events 1000000 --json var/bench/train.json
	$(BIN)/streamrec bench loop --json var/bench/loop.json
	$(BIN)/streamrec eval --data ../shared/data/ml-100k --format movielens --json var/bench/eval.json

clean:
	rm -rf $(VENV) var build *.egg-info
