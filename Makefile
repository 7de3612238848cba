# make run   set up the venv, then build the default (CPU-sized) studies with Snakemake
# make test  set up the venv, then run the test suite
# make slurm-setup  install Debian's slurm-wlm (root or sudo), for the SLURM test: pytest -m slurm
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export WANDB_MODE ?= offline

.PHONY: setup run test lint slurm-setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check torch==2.13.0 -e '.[kernels,tracking,slurm,dev]'
	touch $@

run: setup
	snakemake --cores 2

test: setup
	python -m pytest -q

lint: setup
	ruff check . && ruff format --check .

slurm-setup:
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get update
	$(if $(filter 0,$(shell id -u)),,sudo) apt-get install -y slurm-wlm
