# Every target works on a fresh machine: it creates .venv and installs what it needs.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install browser run test lint format bench bench-classic trust clean docs docs-serve

install: $(STAMP)

# PyTorch is installed first, as TORCH says: pip takes the build of torch 2.13.0 that its
# configured package index offers -- the default wheel for Linux carries CUDA, and this
# project's CI machines are configured with the CPU build. To choose the build, point pip at
# the index of that build (TORCH_PIP="--index-url URL", as pytorch.org's install selector
# shows); to keep a torch already in the environment (a system one with CUDA, a virtualenv made
# with --system-site-packages: VENV_ARGS=--system-site-packages), set TORCH= (empty).
TORCH     ?= torch==2.13.0
TORCH_PIP ?=
VENV_ARGS ?=

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV_ARGS) $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(strip $(TORCH)),$(PY) -m pip install --quiet $(TORCH_PIP) '$(TORCH)')
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# `make run`: train the default preset (about 2 minutes) on the bundled Tiny Shakespeare, then
# print samples at two temperatures. Each run gets its own directory under runs/. More flags for
# the training: `make run TRAIN_FLAGS="--max-time 60 --threads 1"`.
RUN_DIR := runs/shakespeare-$(shell date +%Y%m%d-%H%M%S)
TRAIN_FLAGS ?=

run: install
	$(VENV)/bin/rnnkit train --preset default --out $(RUN_DIR) $(TRAIN_FLAGS)
	@echo "---- sample, temperature 0.5 ----"
	@$(VENV)/bin/rnnkit sample $(RUN_DIR) --temperature 0.5 --length 400 --seed 1 --prime "ROMEO:"
	@echo "---- sample, temperature 1.0 ----"
	@$(VENV)/bin/rnnkit sample $(RUN_DIR) --temperature 1.0 --length 400 --seed 1 --prime "ROMEO:"

# The HTML report's tests drive a real browser: Debian's chromium and chromedriver, installed
# here when missing (needs root and apt-get; where that fails the browser tests skip and say why).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null 2>&1 && \
	    apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || \
	  echo "could not install chromium + chromedriver: the browser tests will be skipped"; }

# lint-imports first: the one-way layering and the oracle's independence ([tool.importlinter]).
# The tests run in one process per core (pytest-xdist; most of them wait on the subprocesses
# they start, so two workers on two cores take ~11 minutes where one took ~19).
test: install browser
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n auto -m "not docs"

# `make docs`: the documentation site in site/, built with --strict (a broken link, a missing
# API reference or a tutorial that raises fails it; the tutorials run as the site builds, a few
# minutes), then the tests marked `docs`: a headless Chromium walks every page of the built
# site (console errors, images, math, search). `make docs-serve`: http://127.0.0.1:8000, rebuilt
# as you edit.
docs: install browser
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
	$(PY) -m pytest -q -m docs

docs-serve: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

lint: install
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format src tests benchmarks
	$(VENV)/bin/ruff check --fix src tests benchmarks

bench: install
	$(VENV)/bin/rnnkit bench
	$(PY) benchmarks/layers.py
	$(PY) benchmarks/padding.py
	$(PY) benchmarks/charlm_quality.py
	$(PY) benchmarks/tasks.py
	$(PY) benchmarks/memory_tasks.py --plot docs/memory.png
	$(PY) benchmarks/mingru_quality.py

# `make bench-classic`: docs/benchmarks.md, every real-data result beside its published
# baseline; trains only the benchmarks whose results are missing under runs/ (the full set:
# about 5 hours on 2 cores). CLASSIC_FLAGS=--fresh retrains all; CLASSIC_FLAGS=--quick: smoke
# runs, written to runs/classic-quick/.
CLASSIC_FLAGS ?= --run-missing
bench-classic: install
	$(PY) benchmarks/classic.py $(CLASSIC_FLAGS)

# The trust-and-scale figures (README "Several processes", "Serve over HTTP", "Crash safety"):
# SIGKILL tests, 100,000 fuzz inputs per loader, a 500-request load test, 1 vs 2 processes,
# and the outside audit's attacks (server, hostile files, ONNX bomb, two trainers on one run).
trust: install
	$(PY) benchmarks/attack.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/chaos.py --trials 20 --seed 0
	OMP_NUM_THREADS=1 $(PY) benchmarks/fuzz.py
	OMP_NUM_THREADS=1 $(PY) benchmarks/serve_load.py --requests 500 --concurrency 16 --length 200
	$(PY) benchmarks/ddp_speed.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
