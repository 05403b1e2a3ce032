# Two entry points for a fresh machine: `make demo` and `make test`; `make serve` runs the proxy
# on mock models (examples/config.yaml), with no key and no network.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo serve test lint bench bench-quick clean dashboard chromium screenshots

$(STAMP): pyproject.toml
	@python3 -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed: installing python3-venv (apt)"; rm -rf $(VENV); \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null; \
	  python3 -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lmgate demo
	@echo; echo "next: make serve   (the proxy on mock models at http://127.0.0.1:4000; see README.md)"
	@echo "      make dashboard   (the proxy, a burst of traffic, and the dashboard's URL; docs/ui.md)"

# the proxy on mock models with the log store, a burst of calls through the openai client, and the
# dashboard's URL and login key; then a call every 3 s until Ctrl-C (examples/dashboard.py)
DASHBOARD_PORT ?= 4000
dashboard: $(STAMP)
	$(PY) examples/dashboard.py --port $(DASHBOARD_PORT)

# loopback only: the example config has no master key, so every request is accepted
SERVE_PORT ?= 4000
serve: $(STAMP)
	$(VENV)/bin/lmgate serve --config examples/config.yaml --host 127.0.0.1 --port $(SERVE_PORT)

# redis-server is a real dependency of the cache tests; install it when the machine lacks it.
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  echo "installing redis-server (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq redis-server >/dev/null; }

# promtool (Debian package prometheus) checks /metrics in the proxy tests; install it when missing.
# Only the promtool binary is used; the tests never start the Prometheus server the package brings.
promtool:
	@command -v promtool >/dev/null 2>&1 || { \
	  echo "installing prometheus for promtool (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

# wrk drives the proxy benchmarks (bench/) and their smoke test; install it when the machine lacks it.
wrk:
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "installing wrk (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq wrk >/dev/null; }

# chromium + chromium-driver: the dashboard's browser tests (tests/test_ui_browser.py, Selenium);
# install them when missing. The tests start Chromium headless with a fresh profile, loopback only.
chromium:
	@{ command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; } || { \
	  echo "installing chromium and chromium-driver (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }

# the dashboard screenshots docs/ui.md shows, taken by the browser tests
screenshots: $(STAMP) chromium
	LMGATE_SCREENSHOTS=docs/img $(PY) -m pytest tests/test_ui_browser.py -q

# PostgreSQL is a real dependency of the key-store tests (tests/pg.py runs initdb + postgres in a temp dir as an
# unprivileged user); install Debian's postgresql package when no initdb is found. The tests never use the
# cluster the package may start.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  echo "installing postgresql (apt)"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql >/dev/null; }

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy src

test: $(STAMP) redis-server promtool wrk postgresql chromium lint
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) bench/run.py

bench-quick: $(STAMP)
	$(PY) bench/run.py --quick

clean:
	rm -rf $(VENV) build *.egg-info
