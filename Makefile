# Two commands do everything on a fresh machine:
#   make demo   set up, then run a real local cluster with the monitor attached
#   make test   set up, then lint, type-check and run the whole test suite
# Set-up is a virtualenv in .venv (re-made when pyproject.toml changes) and,
# for the tests, Debian's chromium and nats-server (installed with apt-get
# when missing and when we are root).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup system-deps demo test lint typecheck bench bench-smoke clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing="$$missing nats-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing$$missing: install them (Debian packages) or the tests that need them skip"; \
	  fi; \
	fi

demo: setup
	$(BIN)/dask-monitor demo

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

typecheck: setup
	$(BIN)/mypy

test: setup system-deps lint typecheck
	$(BIN)/pytest $(PYTEST_ARGS)

bench: setup
	$(BIN)/python benchmarks/run.py

bench-smoke: setup
	$(BIN)/pytest tests/test_benchmarks_smoke.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build src/*.egg-info
