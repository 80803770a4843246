# Two commands for a newcomer: `make demo` (set up, then prove real traces on a local
# devnet end to end) and `make test` (set up, then run the test suite).
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LIB := roller/ffi/lib/libroller_prover.so
CARGO ?= cargo

.PHONY: setup setup-dev system system-dev venv venv-dev native faultlib demo test test-fast test-random faults chaos fleet fleet-systemd lint bench clean

# What the demo needs: Redis, a C toolchain, Python's venv, the Rust build, the runtime
# package. `make test` adds the dev and fleet extras, Chromium and systemd-analyze.
setup: system venv native
setup-dev: setup system-dev venv-dev

RUNTIME_CMDS := redis-server:redis-server gcc:build-essential pkg-config:pkg-config
DEV_CMDS := chromium:chromium systemd-analyze:systemd
# promtool for the alert rules' tests (tests/test_alerts.py). Without recommends: they would
# add node-exporter, smartmontools and their daemons. The package enables and, on a host run
# by systemd, starts a Prometheus on :9090 (all interfaces): the tests need none, so stop it.
PROM_CMDS := promtool:prometheus
# The fleet's systemd test hosts (tests/fleet/nspawn.py). Without recommends: the recommended
# libnss-mymachines would edit this machine's /etc/nsswitch.conf.
NSPAWN_CMDS := systemd-nspawn:systemd-container debootstrap:debootstrap

system:
	@$(MAKE) --no-print-directory _apt CMDS="$(RUNTIME_CMDS)"
	@command -v $(CARGO) >/dev/null || { echo "error: cargo not found; install Rust (https://rustup.rs) first"; exit 1; }

system-dev:
	@$(MAKE) --no-print-directory _apt CMDS="$(DEV_CMDS)"
	@$(MAKE) --no-print-directory _apt CMDS="$(NSPAWN_CMDS)" APT_OPTS=--no-install-recommends
	@command -v promtool >/dev/null || { \
	  $(MAKE) --no-print-directory _apt CMDS="$(PROM_CMDS)" APT_OPTS=--no-install-recommends && \
	  if [ -d /run/systemd/system ]; then $(SUDO) systemctl disable --now prometheus.service; fi; }

_apt:
	@missing=""; \
	for c in $(CMDS); do \
	  command -v $${c%%:*} >/dev/null || missing="$$missing $${c##*:}"; done; \
	$(PY) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_OPTS) $$missing; \
	fi

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/python
	$(BIN)/pip install -q -e .

venv-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,fleet]'

# Installed by rename, never copied over: a worker proving with the old library keeps its
# mapping of the old file (cp rewrote the same inode under it: SIGBUS, SIGSEGV in the loader).
native:
	cd native && $(CARGO) build --release
	mkdir -p roller/ffi/lib
	install -m 0755 native/target/release/libroller_prover.so $(LIB).tmp
	mv -f $(LIB).tmp $(LIB)

demo: setup
	$(BIN)/roller demo

faultlib:
	$(BIN)/python -m roller.ffi.build --features fault-injection

test: setup-dev faultlib
	cd native && $(CARGO) test --release
	$(MAKE) --no-print-directory test-random
	$(BIN)/pytest -q -m "not faults and not fleet_systemd and not chaos"

# The unit tier: no Redis, no subprocess, no circuit build (~20 s on 2 cores).
test-fast: venv-dev
	$(BIN)/pytest -q -m unit

# The unit tier once more in a random order across all files (pytest-random-order; the seed
# is printed in the header, `--random-order-seed=N` replays it): every test must pass in
# any order. `make test` runs it once (~20 s) before the whole suite in file order.
test-random: venv-dev
	$(BIN)/pytest -m unit -p random_order --random-order-bucket=global

faults: setup-dev faultlib
	$(BIN)/pytest -q tests/faults -m "faults or faults_smoke"

# Chaos as a test: overlapping seeded faults of every kind on production settings for
# CHAOS_MINUTES, judged from both ledgers (docs/faults.md, "Chaos"); the seed is printed first
# (`chaos seed=N`), ROLLER_CHAOS_SEED=N replays it. Not in `make test` yet: an accepted answer
# whose record a Redis kill interrupted is resubmitted and refused (an open bug chaos found).
CHAOS_MINUTES ?= 30
chaos: setup-dev faultlib
	ROLLER_CHAOS_MINUTES=$(CHAOS_MINUTES) $(BIN)/pytest -q -s tests/faults/test_chaos.py -m chaos

# ops/ansible for real: test hosts under supervisord and under systemd (nspawn containers)
# installed, proving, and upgraded mid-proof (~13 min). `make test` runs the supervisord
# part; CI runs `make test` and then `make fleet-systemd`.
fleet: setup-dev
	$(BIN)/pytest -q -s tests/test_ansible_lint.py tests/test_ansible_units.py tests/fleet

fleet-systemd: setup-dev
	$(BIN)/pytest -q -s tests/fleet/test_fleet_systemd.py

lint: venv-dev
	$(BIN)/ruff check roller tests bench celeryconfig.py
	$(BIN)/mypy
	cd native && $(CARGO) clippy --release --all-targets -- -D warnings

bench: setup
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/gpu_busy.py
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/worker_rss.py
	$(BIN)/python bench/prover.py
	$(BIN)/python bench/ledger_memory.py

clean:
	rm -rf $(VENV) native/target roller/ffi/lib run
