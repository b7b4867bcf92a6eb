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

# The C scanner under AddressSanitizer and UndefinedBehaviorSanitizer, fuzzed with atheris (libFuzzer) through
# tests/fuzz/fuzz_scanner.py (what it checks: its docstring). A build of its own in $(FUZZ_DIR)/build/, never
# the in-tree extension; clang, its sanitizer runtime files and atheris are installed only when missing. Seeds
# from tests/data/html-corpus and tests/data/real-pages are cut into $(FUZZ_DIR)/seeds/ at each run; what the
# fuzzer learns stays in $(FUZZ_DIR)/corpus/, a failing input in $(FUZZ_DIR)/crashes/ (all git-ignored).
# FUZZ_SECONDS: the time budget (0: no limit). FUZZ_REV=HEAD: fuzz the scanner of that commit instead of the
# working tree's. FUZZ_REPLAY="FILE...": run only those inputs through the sanitized build.
# FUZZ_PYTHON_COVERAGE=1: the rewriter's Python branches guide the fuzzer too (about 6 times fewer runs).
# FUZZ_FLAGS: more libFuzzer flags. tests/fuzz/ubsan-ignorelist.txt: UBSan checks left out for open findings.
FUZZ_SECONDS ?= 1800
FUZZ_MAX_LEN ?= 8192
FUZZ_REV ?=
FUZZ_REPLAY ?=
FUZZ_PYTHON_COVERAGE ?= 0
FUZZ_FLAGS ?=
FUZZ_CC ?= clang
FUZZ_DIR := .cache/fuzz-scanner
ATHERIS_VERSION := 3.0.0

.PHONY: fuzz-scanner
fuzz-scanner: $(STAMP)
	@SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	if ! command -v $(FUZZ_CC) >/dev/null; then \
	  echo "installing Debian packages to fuzz the HTML scanner: clang"; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends clang || exit 1; \
	fi; \
	if [ ! -f "$$($(FUZZ_CC) -print-resource-dir)/share/asan_ignorelist.txt" ]; then \
	  runtime=libclang-rt-$$($(FUZZ_CC) -dumpversion | cut -d. -f1)-dev; \
	  echo "installing Debian packages to fuzz the HTML scanner: $$runtime"; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends $$runtime || exit 1; \
	fi; \
	$(BIN)/python -c "import atheris" 2>/dev/null || $(BIN)/pip install --quiet atheris==$(ATHERIS_VERSION)
	@mkdir -p $(FUZZ_DIR)/build $(FUZZ_DIR)/corpus $(FUZZ_DIR)/crashes
	@src=consentproxy/html/_scanner.c; what="the working tree's $$src"; \
	if [ -n "$(FUZZ_REV)" ]; then \
	  git show $(FUZZ_REV):$$src > $(FUZZ_DIR)/build/_scanner.c || exit 1; \
	  src=$(FUZZ_DIR)/build/_scanner.c; what="$$src of $$(git rev-parse --short $(FUZZ_REV))"; \
	elif ! git diff --quiet HEAD -- $$src; then what="$$what (changed since $$(git rev-parse --short HEAD))"; \
	else what="$$what (as in $$(git rev-parse --short HEAD))"; fi; \
	include=$$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['include'])"); \
	suffix=$$($(BIN)/python -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"); \
	echo "fuzz-scanner: building $$what with ASan, UBSan and coverage"; \
	$(FUZZ_CC) -shared -fPIC -std=c11 -Wall -Wextra -g -O1 -fno-omit-frame-pointer \
	  -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
	  -fsanitize-ignorelist=tests/fuzz/ubsan-ignorelist.txt -I$$include $$src \
	  -o $(FUZZ_DIR)/build/_scanner$$suffix || exit 1; \
	rm -rf $(FUZZ_DIR)/seeds; \
	[ -n "$(FUZZ_REPLAY)" ] || $(BIN)/python tests/fuzz/fuzz_scanner.py --make-seeds $(FUZZ_DIR)/seeds --window 4096 \
	  || exit 1; \
	if [ -n "$(FUZZ_REPLAY)" ]; then inputs="$(FUZZ_REPLAY)"; \
	else inputs="-max_total_time=$(FUZZ_SECONDS) $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds"; fi; \
	( LD_PRELOAD=$$($(BIN)/python -c "import atheris; print(atheris.path())")/asan_with_fuzzer.so \
	  PYTHONMALLOC=malloc ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  CONSENTPROXY_FUZZ_SCANNER=$(FUZZ_DIR)/build/_scanner$$suffix \
	  CONSENTPROXY_FUZZ_PYTHON_COVERAGE=$(FUZZ_PYTHON_COVERAGE) \
	  $(BIN)/python tests/fuzz/fuzz_scanner.py -max_len=$(FUZZ_MAX_LEN) -timeout=30 -dict=tests/fuzz/html.dict \
	    -artifact_prefix=$(FUZZ_DIR)/crashes/ -print_final_stats=1 $(FUZZ_FLAGS) $$inputs; \
	  echo $$? > $(FUZZ_DIR)/status ) 2>&1 | grep -v '^INFO: Instrumenting' | tee $(FUZZ_DIR)/last-run.log; \
	status=$$(cat $(FUZZ_DIR)/status); \
	runs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/last-run.log); \
	rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $(FUZZ_DIR)/last-run.log); \
	seconds=$$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' $(FUZZ_DIR)/last-run.log); \
	cov=$$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*' $(FUZZ_DIR)/last-run.log | tail -1); \
	echo "fuzz-scanner: $${runs:-?} executions in $${seconds:-?} s ($${rate:-?}/s); $${cov:-no coverage line}"; \
	if [ "$$status" != 0 ]; then \
	  echo "fuzz-scanner: FAILED (exit $$status); the input is in $(FUZZ_DIR)/crashes/:"; ls -t $(FUZZ_DIR)/crashes/ | head -3; \
	  echo "replay it: make fuzz-scanner FUZZ_REPLAY=$(FUZZ_DIR)/crashes/FILE (sanitized)," \
	    "or $(BIN)/python tests/fuzz/fuzz_scanner.py --replay $(FUZZ_DIR)/crashes/FILE (normal build)"; \
	  exit 1; \
	fi

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

# The banner and console screenshots in docs/screenshots/ (not part of `make test`).
screenshots: $(STAMP) system-deps
	$(BIN)/python docs/take_screenshots.py
	$(BIN)/python docs/take_console_screenshots.py

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

# The body-integrity soak, not part of `make test` (which runs its fast subset): all 170 real pages of
# tests/data/real-pages at three consent states, in every timing, chunking, coding and cut mode of
# tests/body_upstream.py, five fetches each, through a real proxy process (tests/test_body_integrity.py).
.PHONY: soak
soak: $(STAMP)
	CONSENTPROXY_SOAK=1 $(BIN)/pytest -p no:cacheprovider --durations=5 tests/test_body_integrity.py
# Then the adversarial suite's long run (tests/adversarial/, whose fast part `make test` runs): every framing
# variant also byte by byte and cut at random places, 1,000 slow uploads and 1,000 slow header senders from
# one address kept up for 20 s (one worker, then two) while a normal client is measured, ten kill -9 rounds;
# its tally (variants per class, failures) and the normal client's latencies come last.
	CONSENTPROXY_SOAK=1 $(BIN)/pytest -p no:cacheprovider -q --durations=5 tests/adversarial
	@echo "adversarial suite tally (soak):"; cat .cache/adversarial-tally.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .cache
