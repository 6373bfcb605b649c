# resviz: every command a person or CI needs. `make help` lists them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8501
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)

.DEFAULT_GOAL := help
.PHONY: help setup setup-dev browser-deps run serve test test-all lint format bench gpu-check demo-weights figures weights clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamps make the second run instant: pip runs again only when a requirements file changes.
$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/python -m pip install -r requirements-dev.txt
	@touch $@

setup: $(VENV)/.runtime ## create .venv and install the app's requirements

setup-dev: $(VENV)/.dev browser-deps ## setup + test tools + Chromium for the browser tests

browser-deps: ## install Debian's Chromium (browser tests) and nginx (make serve); needs root or sudo
	@if [ -x /usr/bin/chromium ] && [ -x /usr/sbin/nginx ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-liberation nginx; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
		sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium fonts-liberation nginx; \
	else echo "Chromium or nginx is missing and I cannot install them: the browser and serve tests will be skipped."; fi

run: setup ## set up and start the app (prints its URL)
	$(BIN)/python -m streamlit run app.py --server.port $(PORT) --server.headless true

serve: setup ## WORKERS (default: cores) app processes behind nginx on PORT, for many visitors
	$(BIN)/python deploy/serve.py --workers $(WORKERS) --port $(PORT)

test: setup-dev ## set up and run the test suite (browser tests included; slow ones excluded)
	$(BIN)/python -m pytest

test-all: setup-dev ## the whole suite, slow full-size tests included
	$(BIN)/python -m pytest -m "not gpu"

lint: setup-dev ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup-dev ## ruff: fix what can be fixed, then format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup ## print the benchmark ratios on this machine's device
	$(BIN)/python bench/run_all.py

gpu-check: setup ## on a CUDA machine: gpu tests, CUDA vs CPU results, AMP, peak memory (one table; skips without one)
	$(BIN)/python bench/gpu_check.py

weights: setup ## download ImageNet weights (resnet18, resnet50) into the torch cache, for offline use later
	$(BIN)/python -m resviz weights

demo-weights: setup ## retrain the bundled demo group: 3 seeds x 4 models (about 15 min a seed on 2 cores), bundle it, update the README's figures
	rm -rf .demo-train
	for seed in 0 1 2; do \
		$(BIN)/python -m resviz train --preset demo --seed $$seed --bundle demo-shapes --out .demo-train/seed$$seed || exit 1; \
	done
	$(BIN)/python -m resviz demo-bundle .demo-train/seed0 .demo-train/seed1 .demo-train/seed2
	$(BIN)/python -m resviz report --write README.md

figures: setup ## write the README's figures of the demo group from the bundled files (python -m resviz report)
	$(BIN)/python -m resviz report --write README.md

clean: ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache
