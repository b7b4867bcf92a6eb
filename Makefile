# Two commands on a fresh machine: `make demo` and `make test`.
# Everything they need (virtualenv, Python packages, Debian packages, a
# running PostgreSQL) is installed or started here, only when missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the test suite and the benchmarks use (nodejs brings npm, for axe-core).
APT_PACKAGES := nginx-light wrk chromium nodejs
DEMO_ARGS ?=
# axe-core, the accessibility checker the browser tests inject into pages; from
# the npm registry, pinned, into a git-ignored folder (tests/test_browser_banner.py
# names the same version).
AXE_VERSION := 4.14.1
AXE_DIR := .cache/axe

.PHONY: demo test lint typecheck unit build-deps system-deps postgres axe screenshots bench clean \
	fuzz fuzz-properties

# The HTML scanner is C (consentproxy/html/_scanner.c): pip compiles it, so a compiler and Python's
# headers come first (Debian: gcc, and python3-dev when the Python in use is Debian's).
$(STAMP): pyproject.toml setup.py consentproxy/html/_scanner.c | build-deps
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/consentproxy demo $(DEMO_ARGS)

test: $(STAMP) system-deps postgres axe lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check consentproxy tests load_tests docs

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) axe
	$(BIN)/pytest

# Exploration, not part of `make test`: the property tests with fresh random examples, and the scanner fuzzer.
fuzz: fuzz-properties fuzz-scanner

# Every @given test in tests/ under the "fuzz" Hypothesis profile (tests/conftest.py: random, 20 times the
# examples `make test` runs), round after round with a new seed, printed, until FUZZ_MINUTES have passed (the
# round under way finishes). To rerun a failing round: the command it prints, with its seed; a failure also
# prints a @reproduce_failure blob, and stays in .hypothesis/ for the next run.
FUZZ_MINUTES ?= 10
PROPERTY_TESTS = $(shell grep -l '@given' tests/test_*.py)

fuzz-properties: $(STAMP)
	@start=$$(date +%s); round=0; \
	while [ $$(( $$(date +%s) - start )) -lt $$(( $(FUZZ_MINUTES) * 60 )) ]; do \
	  round=$$((round + 1)); seed=$$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); \
	  command="HYPOTHESIS_PROFILE=fuzz $(BIN)/pytest -m hypothesis --hypothesis-seed=$$seed $(PROPERTY_TESTS)"; \
	  echo "fuzz-properties round $$round, seed $$seed: $$command"; \
	  eval "$$command -q --timeout=1800 --hypothesis-show-statistics" || exit 1; \
	done; \
	echo "fuzz-properties: $$round rounds in $$(( $$(date +%s) - start ))s, no failing example"

# Installed only when missing or of another version. The image's nodejs package
# bundles npm; Debian's own nodejs does not, so npm comes from Debian then.
axe: system-deps
	@if ! command -v npm >/dev/null; then \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends npm; \
	fi
	@installed=$$(node -p "require('./$(AXE_DIR)/node_modules/axe-core/package.json').version" 2>/dev/null); \
	if [ "$$installed" != "$(AXE_VERSION)" ]; then \
	  echo "installing axe-core $(AXE_VERSION) into $(AXE_DIR)"; \
	  npm install --no-save --no-audit --no-fund --loglevel=error --prefix $(AXE_DIR) axe-core@$(AXE_VERSION); \
	fi

# The banner screenshots in docs/screenshots/ (not part of `make test`).
screenshots: $(STAMP) system-deps
	$(BIN)/python docs/take_screenshots.py

build-deps:
	@missing=""; \
	command -v cc >/dev/null || missing="gcc libc6-dev"; \
	include=$$($(PYTHON) -c "import sysconfig; print(sysconfig.get_paths()['include'])"); \
	[ -f "$$include/Python.h" ] || missing="$$missing python3-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages to build the HTML scanner:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

system-deps:
	@missing=""; for pkg in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$missing; \
	fi

postgres:
	@if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then \
	  echo "starting PostgreSQL"; \
	  for version in $$(ls /etc/postgresql 2>/dev/null); do \
	    pg_ctlcluster --skip-systemctl-redirect $$version main start || true; \
	  done; \
	  for i in 1 2 3 4 5 6 7 8 9 10; do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; \
	fi

bench: $(STAMP) system-deps
	$(BIN)/python load_tests/bench_proxy.py
	$(BIN)/python load_tests/bench_cookies.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache
