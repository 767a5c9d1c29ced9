# Two commands: `make run` starts the whole stack, `make test` runs every test.
# Both set up what they need on a fresh machine (the venv; for tests, Chromium).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test lint format chromium screenshot chaos clean bench bench-quick

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

## run: migrate, load demo data, start Redis (unless REDIS_URL is set), web, worker and beat
run: $(RUNTIME_STAMP)
	$(PY) -m ticker.stack

## test: lint, then every test (unit, consumer, end-to-end, browser)
test: $(DEV_STAMP) chromium lint
	$(PY) -m pytest

lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(DEV_STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

## chromium: the browser tests drive Debian's Chromium (Playwright cannot download one here)
chromium:
	@if ! command -v chromium >/dev/null 2>&1; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "Installing Chromium with apt-get"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "Chromium is missing: install it (Debian: apt-get install chromium) or run as root"; exit 1; \
		fi; \
	fi

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

## screenshot: refresh docs/screenshot.png from the real page
screenshot: $(DEV_STAMP) chromium
	$(PY) -m tests.e2e.screenshot docs/screenshot.png

## bench: fan-out of Ticker against the naive pattern and a plain websockets floor (~10 min;
## sizes: BENCH_ARGS="--clients 100,500 --rates 200 ..." or BENCH_* variables, see docs/performance.md)
bench: $(DEV_STAMP)
	$(PY) -m bench $(BENCH_ARGS)

## bench-quick: the same, smaller (~2 min)
bench-quick: $(DEV_STAMP)
	$(PY) -m bench --quick $(BENCH_ARGS)

## chaos: the fault tests at full length (Redis frozen 30 s) plus failover
chaos: $(DEV_STAMP)
	TICKER_CHAOS_FREEZE_SECONDS=30 $(PY) -m pytest tests/e2e/test_faults.py tests/e2e/test_failover.py -o log_cli=true --log-cli-level=INFO
