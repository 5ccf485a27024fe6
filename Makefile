# The two set-up commands: `make demo` and `make test`. Both create .venv when missing and install it
# from the locks (deploy/requirements.lock + deploy/requirements-dev.lock: exact versions and hashes);
# `make lock` regenerates them after a change to a dependency list in pyproject.toml or client/.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := deploy/requirements.lock
DEV_LOCK := deploy/requirements-dev.lock
PIP_VERSION ?= 26.3
DEMO_DURATION ?= 120
PYTEST_ARGS ?=

.PHONY: venv demo test test-unit lint bench clean schemas deploy-check lock lock-check browser

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q pip==$(PIP_VERSION)

# Exactly the locked set, torch==2.13.0+cpu included; --no-deps: nothing is resolved here, so no range
# can pull a CUDA torch or a new release. Then streamrec and the client (editable, built with the
# locked setuptools and hatchling).
$(STAMP): $(BIN)/python pyproject.toml client/pyproject.toml $(LOCK) $(DEV_LOCK)
	$(BIN)/pip install -q --require-hashes --no-deps -r $(DEV_LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e . -e ./client
	$(BIN)/pip check
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/streamrec demo --duration $(DEMO_DURATION) --json var/demo/summary.json

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Debian's Chromium for the console's browser tests (tests/e2e/console): Playwright drives it headless
# and never downloads a browser of its own. Installed only when missing (needs root, as in CI).
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@/usr/bin/chromium --version

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core iokit streams funnel feature_store models services
	cd client && ../$(BIN)/mypy -p streamrec.client
	$(BIN)/lint-imports

# Resolve pyproject.toml (+ the s3 and dev extras) and client/pyproject.toml into the two locks.
lock:
	bash deploy/docker/lock.sh

# pip freeze of .venv equals the locks (CI runs it on its fresh clone, after the tests).
lock-check: $(STAMP)
	$(BIN)/python deploy/docker/lockfile.py verify $(BIN)/python $(DEV_LOCK)

# The Dockerfile's install steps in a clean venv (no Docker engine here).
deploy-check:
	bash deploy/docker/check.sh

schemas: $(STAMP)
	$(BIN)/streamrec schemas write

bench: $(STAMP)
	mkdir -p var/bench
	$(BIN)/streamrec bench ingest --events 200000 --latency-curve 1000,3000 --json var/bench/ingest.json
	$(BIN)/streamrec bench ingest --events 200000 --workers 2 --partitions 4 --json var/bench/ingest2.json
	$(BIN)/streamrec bench features --json var/bench/features.json
	$(BIN)/streamrec bench serve --items 100000 --rps 200 --duration 60 --json var/bench/serve_200.json
	$(BIN)/streamrec bench serve --items 100000 --rps 1000 --duration 60 --json var/bench/serve_1000.json
	$(BIN)/streamrec bench serve --items 100000 --rps 100 --duration 60 --swap-every 10 --json var/bench/serve_e2f_100.json
	$(BIN)/streamrec bench train --events 1000000 --json var/bench/train.json
	$(BIN)/streamrec bench loop --json var/bench/loop.json
	$(BIN)/streamrec bench ope --json var/bench/ope.json
	$(BIN)/streamrec bench abtest --json var/bench/abtest.json
	$(BIN)/streamrec bench explore --json var/bench/explore.json
	$(BIN)/streamrec bench console --items 100000 --users 10000 --json var/bench/console.json
	$(BIN)/streamrec eval --data ../shared/data/ml-100k --format movielens --seeds 3 --json var/bench/eval_loo.json
	$(BIN)/streamrec eval --data ../shared/data/ml-100k --format movielens --split random --seeds 3 --no-global-split \
		--json var/bench/eval_random.json
	$(BIN)/python -m models.synthetic_log var/bench/syn1m.csv --users 50000 --items 50000 --events 1000000 --seed 0
	$(BIN)/streamrec eval --data var/bench/syn1m.csv --items var/bench/syn1m.items.csv --format csv --json var/bench/eval_1m.json

clean:
	rm -rf $(VENV) var build *.egg-info
