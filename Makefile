# One-command set-up: every target creates .venv if needed. torch==2.13.0 is installed
# first because that exact CPU wheel is available offline on the development machines;
# any other torch requirement would pull a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench peers clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,plot,nir]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/onespike run --dataset digits --model mlp --method ttfs --steps 16 --out runs/demo

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# Long runs (tens of minutes on 2 cores); trained models are cached in benchmarks/models/.
bench: $(STAMP)
	$(BIN)/python benchmarks/ttfs.py
	$(BIN)/python benchmarks/ttfs_optimise.py
	$(BIN)/python benchmarks/rate.py
	$(BIN)/python benchmarks/hardware.py

peers: $(STAMP)
	$(BIN)/pip install -q -e '.[peers]'
	$(BIN)/pip install -q --no-deps spikingjelly norse sinabs

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
