# The two commands of the README: `make up` and `make test`. Both work on a fresh machine with only
# Python 3.11 and apt, and are quick when everything is already installed.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Debian packages the stack and the tests need, as `command:package`: chromium and npm for the
# browser interop tests and the player page, iproute2 for the tests' network namespaces.
SYSTEM_DEPS := ffmpeg:ffmpeg ffprobe:ffmpeg redis-server:redis-server chromium:chromium \
	npm:npm ip:iproute2
# The player page's packages (hls.js, p2p-media-loader 2.3), from npm, served locally. Install
# scripts are skipped: a dependency's would download a native binary the page never uses.
PLAYER := deploy/player
PLAYER_STAMP := $(PLAYER)/node_modules/.package-lock.json
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up test lint typecheck imports unit system-deps venv player clean

up: system-deps venv player
	$(BIN)/shoal up

test: system-deps venv lint typecheck imports unit

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy

# The sans-IO boundary: core/ and manifests/ import no I/O library and no shell.
imports: venv
	$(BIN)/lint-imports

unit: venv player
	$(BIN)/pytest -n 2 --dist loadgroup

venv: $(STAMP)

player: $(PLAYER_STAMP)

$(PLAYER_STAMP): $(PLAYER)/package.json $(PLAYER)/package-lock.json
	npm ci --prefix $(PLAYER) --ignore-scripts --no-audit --no-fund

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) is required" >&2; exit 1; }
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

system-deps:
	@missing=""; for dep in $(SYSTEM_DEPS); do \
		command -v $${dep%%:*} >/dev/null 2>&1 || missing="$$missing $${dep##*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make: installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

clean:
	rm -rf $(VENV) $(PLAYER)/node_modules .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
