# Sorna: the commands people (and CI) type. See README.md.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PKGS := sorna-common sorna-manager sorna-agent sorna-client sorna-repl sorna-media
STAMP := $(VENV)/.sorna-installed
PYPROJECTS := pyproject.toml $(foreach p,$(PKGS),$(p)/pyproject.toml)
PIP_QUIET := --quiet --disable-pip-version-check
MYPY_TARGETS := -p sorna.common -p sorna.gateway -p sorna.manager -p sorna.agent -p sorna.client -p sorna.repl -p sorna.types -p sorna.drawing -p sorna.display -p sorna.matplotlib -p sorna.mediaassets -p sorna.singlepc

.PHONY: install test test-fast test-images screenshots lint fmt bench clean jail images image run dist compose-images

install: $(STAMP)

$(STAMP): $(PYPROJECTS)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@echo "==> installing Sorna packages (editable, with test extras) into $(VENV)"
	@$(BIN)/pip install $(PIP_QUIET) --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	@set -o pipefail; $(BIN)/pip install $(PIP_QUIET) \
		$(foreach p,$(PKGS),-e ./$(p)[test]) -e .[dev] 2>&1 | grep -v "^WARNING: Location" ; \
		test $${PIPESTATUS[0]} -eq 0
	@touch $(STAMP)

# Single-PC mode from a checkout: venv, install, then `sorna up` in the foreground (Ctrl-C
# stops it). Extra options: make run UP_ARGS="--port 9090 --data-dir /tmp/sorna".
run: install
	$(BIN)/sorna up $(UP_ARGS)

# Wheels of every package and of the `sorna` meta-package into dist/, the static jail binary
# built first so that sorna-repl's wheel carries it (see sorna-repl/hatch_build.py). Then:
#   pip install sorna --find-links dist/
# (version 2.0.0 is above the unrelated 2017 `sorna` 1.0 / `sorna-*` 0.9 releases on PyPI, so
# pip takes these wheels rather than those)
DIST ?= dist
dist: jail
	@rm -rf $(DIST) && mkdir -p $(DIST)
	@set -o pipefail; $(BIN)/pip wheel $(PIP_QUIET) --no-deps --wheel-dir $(DIST) \
		$(foreach p,$(PKGS),./$(p)) . 2>&1 | grep -v "^WARNING: Location" ; \
		test $${PIPESTATUS[0]} -eq 0
	@ls -1 $(DIST)

# Images of the compose deployment (docker-compose.yml), on the same base as the kernels.
BASE_IMAGE ?= sorna/base:bookworm
compose-images: dist
	@rm -rf build/wheelhouse && mkdir -p build/wheelhouse
	$(BIN)/pip wheel $(PIP_QUIET) --wheel-dir build/wheelhouse $(DIST)/*.whl pip 2>&1 | grep -v "^WARNING: Location" || true
	docker build -f deploy/Dockerfile.manager --build-arg BASE_IMAGE=$(BASE_IMAGE) -t sorna/manager:latest .
	docker build -f deploy/Dockerfile.agent --build-arg BASE_IMAGE=$(BASE_IMAGE) -t sorna/agent:latest .

jail: install
	@$(BIN)/python -c "from sorna.repl import jailbin; print(jailbin.build())"

test: install lint test-images
	$(BIN)/pytest $(PYTEST_ARGS)

# Kernel images for the Docker tests: built (or found up to date in the layer cache) when an
# engine answers; without one the Docker tests skip (or fail under SORNA_REQUIRE_DOCKER=1).
test-images: install
	@if docker info >/dev/null 2>&1; then $(BIN)/python -m sorna.repl.imagebuild --all; \
	else echo "==> no Docker engine answers: Docker tests will be skipped"; fi

# While working: skip slow and Docker tests. CI always runs `make test`.
test-fast: install
	$(BIN)/pytest -m "not slow and not docker" $(PYTEST_ARGS)

# docs/console-*.png: the demo console against a live test stack (Valkey, PostgreSQL, chromium).
screenshots: install
	SORNA_SCREENSHOTS=1 $(BIN)/pytest sorna-media/tests/test_media_console.py -k screenshots

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(MYPY_TARGETS)

fmt: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Kernel images sorna/kernel-<lang>:latest (base built once with debootstrap if needed).
images: install
	@$(BIN)/python -m sorna.repl.imagebuild --all

image: install
	@test "$(origin LANG)" = "command line" || { echo "usage: make image LANG=python3"; exit 2; }
	@LANG=C.UTF-8 $(BIN)/python -m sorna.repl.imagebuild $(LANG)

bench: install
	@for b in bench/*.py; do echo "==> $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) dist build .mypy_cache .ruff_cache .pytest_cache sorna-repl/jail/bin
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
