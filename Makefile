# layerscope — `make help` lists the targets. Every target makes .venv on first use.
PYTHON ?= python3.11
VENV ?= .venv
# torch to install; a GPU user picks a CUDA build, e.g. make run TORCH="torch==2.13.0" TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cu128
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
ARGS ?=
PORT ?= 6006
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
ONLY ?=
SEED ?=
.PHONY: help venv run test test-slow bench bench-sweep bench-overhead reproduce tensorboard clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'
	@echo "  variables: ARGS='<hydra overrides>'  TORCH='$(TORCH)'  TORCH_INDEX=  PYTHON=$(PYTHON)  PORT=$(PORT)"

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; set PYTHON=<python3.10+>"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_INDEX) "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev,mnist5k,optuna]"
	@touch $(STAMP)

venv: $(STAMP)  ## create .venv and install layerscope (editable) with the TORCH build

run: $(STAMP)  ## train the default 10x500 MLP on digits (ARGS='activation=relu init=he_normal ...')
	$(BIN)/layerscope $(ARGS)

test: $(STAMP)  ## the fast test suite (slow tests excluded), on every CPU (ARGS='-n 0': in this process)
	$(BIN)/python -m pytest -m "not slow" -q -n auto $(ARGS)

test-slow: $(STAMP)  ## only the slow end-to-end tests
	$(BIN)/python -m pytest -m slow -q -n auto $(ARGS)

bench: $(STAMP)  ## throughput: plain PyTorch loop vs the layerscope trainer, same model/data/batch
	$(BIN)/python benchmarks/throughput.py $(ARGS)

bench-sweep: $(STAMP)  ## one sweep three ways: one after another, basic launcher, stacked launcher (ARGS='--ks 16')
	$(BIN)/python benchmarks/sweep.py $(ARGS)

bench-overhead: $(STAMP)  ## what a run, a stacked member and a sweep job cost beyond their arithmetic (ARGS='--repeats 3')
	$(BIN)/python benchmarks/overhead.py $(ARGS)

reproduce: $(STAMP)  ## run the lecture and paper experiments, check their claims, write outputs/reproduce/REPORT.md (ONLY=<name>|lecture|papers, SEED=<base seed>)
	$(BIN)/python -m layerscope.lecture.reproduce $(if $(ONLY),--only $(ONLY)) $(if $(SEED),--seed $(SEED))

tensorboard: $(STAMP)  ## serve outputs/ on http://localhost:6006 (PORT=... to change)
	$(BIN)/tensorboard --logdir outputs --host 127.0.0.1 --port $(PORT)

clean:  ## remove .venv and caches (outputs/ is kept)
	rm -rf $(VENV) .pytest_cache .hypothesis build dist src/*.egg-info
