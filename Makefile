# Two commands: `make run` starts the whole stack, `make test` runs every test.
# Both set up what they need on a fresh machine (the venv; for tests, Debian's Chromium,
# HAProxy and PostgreSQL server, installed with apt-get when missing and run as root).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

.PHONY: run test test-postgres lint format system-packages chromium screenshot chaos clean bench bench-quick bench-browser bench-capacity soak

$(PY):
	@echo "==> Creating the virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)

$(RUNTIME_STAMP): requirements.txt | $(PY)
	@echo "==> Installing the pinned runtime requirements (requirements.txt; about a minute on a fresh clone)"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt
	@echo "==> Installing the pinned test and benchmark tools (requirements-dev.txt)"
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# Test-only JavaScript tools (axe-core for the accessibility tests), exactly as locked.
NODE_STAMP := node_modules/.installed
$(NODE_STAMP): package.json package-lock.json
	@echo "==> Installing the locked JavaScript test tools (npm ci: axe-core)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## run: migrate, load demo data, start Redis (unless REDIS_URL is set), web, worker and beat
run: $(RUNTIME_STAMP)
	$(PY) -m ticker.stack

## test: lint, every test (unit, consumer, end-to-end, browser, scale-out) on SQLite, then
## the unit and consumer suites again on PostgreSQL (the scale-out test runs on it already)
test: $(DEV_STAMP) $(NODE_STAMP) system-packages lint
	$(PY) -m pytest
	$(MAKE) --no-print-directory test-postgres

test-postgres: $(DEV_STAMP) system-packages
	TICKER_TEST_DATABASE=postgres $(PY) -m pytest tests --ignore=tests/e2e -q

lint: $(DEV_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: $(DEV_STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

## system-packages: Debian's Chromium (browser tests; Playwright cannot download one here),
## HAProxy and the PostgreSQL server (scale-out and PostgreSQL runs), iproute2's ss (the
## server's listen backlog), Prometheus's promtool (the alert rules' checks and unit tests)
SYSTEM_PACKAGES_MISSING = $(strip \
	$(if $(shell command -v chromium),,chromium) \
	$(if $(shell command -v haproxy || ls /usr/sbin/haproxy 2>/dev/null),,haproxy) \
	$(if $(wildcard /usr/lib/postgresql/*/bin/postgres),,postgresql) \
	$(if $(shell command -v ss),,iproute2) \
	$(if $(shell command -v promtool),,prometheus) \
	$(if $(shell command -v systemd-analyze),,systemd))

system-packages:
	@if [ -n "$(SYSTEM_PACKAGES_MISSING)" ]; then \
		if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
			echo "==> Installing Debian packages the tests need: $(SYSTEM_PACKAGES_MISSING) (apt-get; a few minutes)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(SYSTEM_PACKAGES_MISSING); \
		else \
			echo "Missing system packages: $(SYSTEM_PACKAGES_MISSING) (Debian: apt-get install them, or run as root)"; exit 1; \
		fi; \
	fi

chromium: system-packages

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache

## screenshot: refresh docs/screenshot.png and docs/order-book.png from the real pages
screenshot: $(DEV_STAMP) $(NODE_STAMP) system-packages
	$(PY) -m tests.e2e.screenshot docs/screenshot.png
	TICKER_ORDER_BOOK_SCREENSHOT=$(CURDIR)/docs/order-book.png $(PY) -m pytest -q tests/e2e/test_order_book_browser.py -k toggle

## bench: fan-out of Ticker against the naive pattern and a plain websockets floor (~10 min;
## sizes: BENCH_ARGS="--clients 100,500 --rates 200 ..." or BENCH_* variables, see docs/performance.md)
bench: $(DEV_STAMP)
	$(PY) -m bench $(BENCH_ARGS)
	@echo "==> Price alerts: producer CPU per window with 0 and 10,000 active alerts (bench/alerts.py)"
	$(PY) -m bench.alerts
	@echo "==> A trader's browser beside 500 dashboards: first price and long tasks (bench/browser.py)"
	$(MAKE) --no-print-directory bench-browser

## bench-capacity: the same load on 1, 2 and 4 Daphne processes behind HAProxy (~4 min; docs/capacity.md)
bench-capacity: $(DEV_STAMP) system-packages
	$(PY) -m bench.capacity $(BENCH_CAPACITY_ARGS)

## bench-browser: headless Chromium on the dashboard beside 500 load dashboards for a minute (~2 min)
bench-browser: $(DEV_STAMP) system-packages
	$(PY) -m bench.browser $(BENCH_BROWSER_ARGS)

## bench-quick: the same, smaller (~2 min)
bench-quick: $(DEV_STAMP)
	$(PY) -m bench --quick $(BENCH_ARGS)

## chaos: the fault tests at full length (Redis frozen 30 s) plus failover
chaos: $(DEV_STAMP)
	TICKER_CHAOS_FREEZE_SECONDS=30 $(PY) -m pytest tests/e2e/test_faults.py tests/e2e/test_failover.py -o log_cli=true --log-cli-level=INFO

## soak: SOAK_CLIENTS (500) dashboards for SOAK_MINUTES (10) minutes; a line per minute (ticks, lost, p99, memory, CPU); fails on loss, p99 drift or memory growth
soak: $(DEV_STAMP)
	$(PY) -m tests.e2e.soak
