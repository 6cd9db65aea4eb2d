# robyn_fast developer commands. Everything runs inside .venv, created on demand.
#   make run    - create .venv, build (with the runtime dependencies only), and serve the demo
#                 (examples/echo.py) on http://127.0.0.1:8080
#   make test   - create .venv, build the extensions, install test extras, run the whole suite
#                 (`make test PYTHON=python3.13`: the same with that interpreter, in .venv-3.13)
#   make wheels - manylinux wheels for CPython 3.11-3.15 into wheelhouse/ (.ci/wheels; docs/wheels.md)
#   make wheels-test - the wheels installed and smoke-tested in a root without a C compiler
#   make autobahn-full - Autobahn categories 12/13 (permessage-deflate) in full (~25 min)
#   make sidroot - build (once; cached in /var/cache/robyn_fast) the Debian sid root with Python
#                  3.14 and 3.15 that .ci/run tests them in: `.ci/sidroot make test PYTHON=/usr/bin/python3.14`
#   make fuzz   - ASan/UBSan build in .venv-fuzz, then every atheris harness in fuzz/ for
#                 FUZZ_SECONDS each (the whole run, build included, takes about 5 min)
#   make bench  - micro-benchmarks of the codec (pytest-benchmark), pinned to one core
#   make bench-load - load tests: robyn_fast against other WebSocket and HTTP servers, every row of
#                     bench/README.md's table (WebSocket, TLS, HTTP with wrk, idle memory); quick by
#                     default, `make bench-load LOAD_ARGS=--full` for 3 rounds of 1 s + 3 s (times: bench/README.md)
#   make soak   - soak test: a 2-worker server under mixed load for SOAK_MINUTES (default 10);
#                 writes bench/results/soak-<date>.json/.png, exits 1 unless memory is flat and nothing failed
#   make bench-tls  - only the TLS rows of bench-load (echo over wss://; bench/tls.py)

# The interpreter (3.11-3.15): `make test PYTHON=python3.13` (or a path) builds and tests in a
# virtualenv of its own, .venv-<version>; without PYTHON= the default one lives in .venv.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
PYVER  := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
ifeq ($(PYVER),)
$(error cannot run the interpreter PYTHON=$(PYTHON))
endif
ifeq ($(origin PYTHON),file)
VENV   := .venv
else
VENV   := .venv-$(PYVER)
endif
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.robyn_fast-installed
SOURCES := $(wildcard _core/*.pyx _core/*.pxd _core/*.c _core/*.h _core/*.pyi) setup.py pyproject.toml

BENCH_STAMP := $(VENV)/.robyn_fast-bench-installed
# rfload, the load generator: a Cython module that cimports the installed codec,
# so it is rebuilt whenever the codec's contract (.pxd) or the install changes.
LOADGEN := bench/loadgen/.rfload-built
LOAD_ARGS ?= --quick
SOAK_MINUTES ?= 10

.PHONY: socket-activate install run wheels wheels-test test sidroot autobahn-full autobahn-table fuzz fuzz-build bench bench-loadgen bench-load soak bench-tls clean browser redis nginx clang

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Editable installs are "strict": a tree of links to the sources (build/__editable__.*) on a
# plain .pth path, which mypy and other static tools follow (setuptools' default, an import
# hook, they cannot: `import robyn_fast` would type as Any in users' code). The links follow
# edits to existing files; adding or removing a file needs a reinstall, so the list of the
# package's files is kept in LINKED and a change to it reinstalls.
EDITABLE := --config-settings editable_mode=strict
LINKED := $(VENV)/.robyn_fast-files
LINKED_NOW := $(sort $(shell find robyn_fast _core -type f \( -name '*.py' -o -name '*.pyi' -o -name py.typed \) -not -path '*/__pycache__/*' 2>/dev/null))
ifneq ($(wildcard $(VENV)),)
ifneq ($(shell cat $(LINKED) 2>/dev/null),$(LINKED_NOW))
$(shell echo '$(LINKED_NOW)' > $(LINKED))
endif
endif

# Editable install: builds every _core/ extension in place and installs the test extras.
$(STAMP): $(BIN)/python $(SOURCES) $(wildcard $(LINKED))
	$(BIN)/python -m pip install --disable-pip-version-check $(EDITABLE) -e '.[test]'
	@echo '$(LINKED_NOW)' > $(LINKED)
	@touch $@ $(RUN_STAMP)

install: $(STAMP)

# The demo needs the package and its runtime dependencies (uvloop, httptools), not the test
# extras; after `make install` (a superset) nothing more is installed.
RUN_STAMP := $(VENV)/.robyn_fast-run-installed
$(RUN_STAMP): $(BIN)/python $(SOURCES) $(wildcard $(LINKED))
	$(BIN)/python -m pip install --disable-pip-version-check $(EDITABLE) -e .
	@echo '$(LINKED_NOW)' > $(LINKED)
	@touch $@

run: $(RUN_STAMP)
	$(BIN)/python examples/echo.py

# Manylinux wheels for CPython 3.11-3.15, built from the sdist with zig's C compiler targeting
# glibc 2.28 and checked and tagged by auditwheel (.ci/wheels, docs/wheels.md): wheelhouse/.
wheels: sidroot
	$(PYTHON) .ci/wheels

# Each wheel of wheelhouse/ (`make wheels` first) in a fresh venv in a Debian root without a C
# compiler (.ci/nocc-root, cached under /var/cache/robyn_fast/nocc-sid): HTTP, WebSocket echo,
# the compiled core loaded (the sdist/wheel packaging checks, tests/test_packaging.py, are in `make test`).
wheels-test: install
	ROBYN_FAST_REQUIRE_WHEELS=1 $(BIN)/python -m pytest tests/test_wheels.py

# Debian's chromium, for the Playwright test of the echo chat page (Playwright never downloads a browser here).
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)

# Debian's redis-server, for the Redis broker tests (they start their own servers on private ports).
redis:
	command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)

# Debian's systemd-socket-activate, for the socket-activation test of --fd (skipped without it).
socket-activate:
	command -v systemd-socket-activate >/dev/null || (apt-get update && apt-get install -y --no-install-recommends systemd) \
		|| echo "systemd-socket-activate not installed: tests/test_listening.py skips its test"

# Debian's nginx, for the reverse-proxy test of docs/deploy.md (it runs its own nginx on a private port).
nginx:
	command -v nginx >/dev/null || (apt-get update && apt-get install -y nginx)

test: install browser redis nginx socket-activate
	$(BIN)/python -m pytest tests --durations=25

# Debian sid's Python 3.14 and 3.15 (with chromium, redis-server, nginx) in a root of their own (.ci/sidroot; needs root).
sidroot:
	.ci/sidroot --build

# Autobahn's permessage-deflate categories 12 and 13 in full (216 cases, both loops, both
# compression modes: ~25 min); `make test` runs a size-limited selection of them.
# AUTOBAHN_K narrows it (pytest -k), e.g. AUTOBAHN_K="compression and uvloop" (~13 min).
AUTOBAHN_K ?= compression
autobahn-full: install
	AUTOBAHN_FULL=1 $(BIN)/python -m pytest tests/test_autobahn.py -k "$(AUTOBAHN_K)" -s

# The whole Autobahn suite once (517 cases: 1-10, then 12/13 in full; uvloop, shared mode) with
# every case's verdict written into docs/autobahn.md's table (~15-25 min).
autobahn-table: install
	$(BIN)/python -m tests.autobahn_report

# Fuzzing (README.md, "Fuzzing"): a virtualenv of its own with atheris, and the compiled core
# built with clang under ASan + UBSan + libFuzzer coverage into build/fuzz-asan, never over the
# normal in-place .so files. The harnesses import that build (fuzz/campaign.py sets PYTHONPATH
# and LD_PRELOADs atheris's ASan runtime); each runs FUZZ_SECONDS.
FUZZ_VENV    := .venv-fuzz
FUZZ_BIN     := $(FUZZ_VENV)/bin
FUZZ_STAMP   := $(FUZZ_VENV)/.deps-installed
FUZZ_BUILD   := build/fuzz-asan
FUZZ_SECONDS ?= 20
FUZZ_SANITIZE := -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=all -fno-omit-frame-pointer
# Every UBSan report is fatal (no recover). CYTHON_VECTORCALL_TPNEW=0: Cython's vectorcall tp_new
# computes `args + nargs` with args NULL and nargs 0 for a call without positional arguments
# (UBSan's "zero offset to null pointer", Cython's code, not ours); the tuple path avoids it.
FUZZ_CFLAGS  := $(FUZZ_SANITIZE) -g -DCYTHON_VECTORCALL_TPNEW=0
FUZZ_SO      := $(FUZZ_BUILD)/.built

# Debian's clang: atheris's sanitizer runtimes are LLVM's, so the extensions must be built by clang.
clang:
	command -v clang >/dev/null || (apt-get update && apt-get install -y clang)

$(FUZZ_BIN)/python:
	$(PYTHON) -m venv $(FUZZ_VENV)

$(FUZZ_STAMP): $(FUZZ_BIN)/python | clang
	$(FUZZ_BIN)/python -m pip install --disable-pip-version-check -q atheris 'Cython>=3.0.10,<4' 'setuptools>=77' \
		wheel httptools uvloop hiredis typing_extensions
	@touch $@

# --force: setuptools would keep objects built with other flags. Only the .so files are built
# here; fuzz/campaign.py puts them beside a fresh copy of robyn_fast/ on every run.
$(FUZZ_SO): $(FUZZ_STAMP) $(SOURCES) Makefile | clang
	CC=clang LDSHARED="clang -shared" CFLAGS="$(FUZZ_CFLAGS)" LDFLAGS="$(FUZZ_SANITIZE)" \
		$(FUZZ_BIN)/python setup.py -q build_ext -j 2 --build-lib $(FUZZ_BUILD)/lib --build-temp $(FUZZ_BUILD)/temp --force
	@touch $@

fuzz-build: $(FUZZ_SO)

fuzz: fuzz-build
	$(FUZZ_BIN)/python fuzz/campaign.py --build $(FUZZ_BUILD) --seconds $(FUZZ_SECONDS)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --disable-pip-version-check -q $(EDITABLE) -e '.[bench]'
	@touch $@

bench: $(BENCH_STAMP)
	taskset -c 0 $(BIN)/python -m pytest bench --benchmark-enable --benchmark-only \
		--benchmark-columns=min,median,mean,ops --benchmark-sort=fullname \
		--benchmark-json=bench/results/micro.json
	$(BIN)/python bench/ratios.py bench/results/micro.json

$(LOADGEN): $(BENCH_STAMP) bench/loadgen/_rfload.pyx bench/setup_loadgen.py $(wildcard _core/*.pxd)
	$(BIN)/python bench/setup_loadgen.py
	@touch $@

bench-loadgen: $(LOADGEN)

# Creates bench/.venv-robyn077 and .venv-robyn088 (Robyn 0.77.0, 0.88.0) on first use; needs wrk for the
# HTTP rows (apt-get install wrk); writes bench/results/load-<date>.json and load.png.
bench-load: $(LOADGEN)
	$(BIN)/python bench/run.py $(LOAD_ARGS)

# Soak test (bench/README.md, "Soak test"): needs only the bench extras.
soak: $(BENCH_STAMP)
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES)

# Echo over TLS: the TLS rows of bench-load alone (bench/tls.py passes LOAD_ARGS on to bench/run.py).
bench-tls: $(BENCH_STAMP)
	$(BIN)/python bench/tls.py $(LOAD_ARGS)

clean:
	rm -rf build dist wheelhouse *.egg-info .venv .venv-* _core/*.so .pytest_cache .hypothesis .benchmarks
