# One-command set-up: every target creates .venv if needed. torch==2.13.0 is installed
# first because that exact CPU wheel is available offline on the development machines;
# any other torch requirement would pull a multi-GB CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench bench-quick peers clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,plot,nir,onnx]'
	# Norse (the NIR interop test) with --no-deps: its own requirements would pull a CUDA
	# build of torch and torchvision, which it does not need to load NIR graphs.
	$(BIN)/pip install -q nirtorch
	$(BIN)/pip install -q --no-deps norse
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

# Long runs (hours on 2 cores; set ONESPIKE_DATA): each writes benchmarks/results/NAME.*,
# trained models are cached in benchmarks/models/. rate.py trains the networks hybrid.py
# converts, ttfs.py those hardware.py prices (hardware.py also trains rate.py's binary
# networks if missing); quartz.py trains its own ConvNet. summary.py then writes BENCHMARKS.md.
# rate.py --label peers repeats onespike's default conversion and the peers on whole test
# sets (rate.py's ConvNet rows use 2,000 test images); sinabs, far behind on the ConvNets
# there, is left out of its ConvNet part to keep it near an hour. deep.py starts from the
# weights committed in benchmarks/weights/ (training them again takes hours) and runs its
# parts one after another; any part runs alone, e.g. side by side on the two cores:
# deep.py --only resnet20 --dataset mnist --methods hybrid (then deep.py --merge).
bench: $(STAMP)
	$(BIN)/python benchmarks/ttfs.py
	$(BIN)/python benchmarks/ttfs_optimise.py
	$(BIN)/python benchmarks/rate.py
	$(BIN)/python benchmarks/rate.py --label peers --variants plain --only mlp
	$(BIN)/python benchmarks/rate.py --label peers --variants plain --peers spikingjelly-rate \
		--test-limit 10000 --only convnet-bn
	$(BIN)/python benchmarks/rate.py --label peers --merge
	for d in mnist fashion-mnist; do $(BIN)/python benchmarks/hybrid.py --threads 1 --only $$d \
		--samples 55000 --epochs 12 --patience 12 --train-leak --shift 1 --distill 1 \
		--bias first_step --per-layer --out runs/bench-hybrid/$$d || exit 1; done
	$(BIN)/python benchmarks/hybrid.py --merge runs/bench-hybrid/mnist runs/bench-hybrid/fashion-mnist
	$(BIN)/python benchmarks/hybrid.py --threads 1 --only fashion-mnist --steps 5 --samples 55000 \
		--epochs 12 --patience 12 --train-leak --shift 1 --flip --distill 1 --bias first_step \
		--out runs/bench-hybrid/fashion-mnist-flip
	$(BIN)/python benchmarks/hybrid.py --threads 1 --only fashion-mnist --steps 5 --samples 55000 \
		--epochs 12 --patience 12 --train-leak --shift 1 --distill 1 --bias first_step --seed 1 \
		--out runs/bench-hybrid/fashion-mnist-seed1
	for v in flip seed1; do for e in json md meta.json png; do \
		cp runs/bench-hybrid/fashion-mnist-$$v/hybrid.$$e \
			benchmarks/results/hybrid-fashion-mnist-$$v.$$e || exit 1; done; done
	$(BIN)/python benchmarks/hybrid.py --threads 1 --only mnist --samples 55000 --epochs 15 \
		--patience 3 --train-leak --per-layer --out runs/bench-hybrid/mnist-labels
	$(BIN)/python benchmarks/hybrid.py --threads 1 --only fashion-mnist --samples 55000 --epochs 10 \
		--patience 10 --train-leak --per-layer --out runs/bench-hybrid/fashion-mnist-labels
	$(BIN)/python benchmarks/hybrid.py --merge runs/bench-hybrid/mnist-labels \
		runs/bench-hybrid/fashion-mnist-labels --out runs/bench-hybrid/labels
	$(BIN)/python benchmarks/hybrid.py --threads 1 --only fashion-mnist --steps 5 --samples 55000 \
		--epochs 10 --patience 10 --train-leak --shift 1 --out runs/bench-hybrid/fashion-mnist-shift1
	for e in json md meta.json png; do \
		cp runs/bench-hybrid/labels/hybrid.$$e benchmarks/results/hybrid-labels.$$e || exit 1; \
		cp runs/bench-hybrid/fashion-mnist-shift1/hybrid.$$e \
			benchmarks/results/hybrid-fashion-mnist-shift1.$$e || exit 1; done
	$(BIN)/python benchmarks/hybrid_speed.py --threads 1
	$(BIN)/python benchmarks/quartz.py --threads 1
	$(BIN)/python benchmarks/hardware.py
	$(BIN)/python benchmarks/extract.py
	$(BIN)/python benchmarks/deep.py --threads 1
	$(BIN)/python benchmarks/speed.py --threads 1
	$(BIN)/python benchmarks/summary.py

# CI-sized runs of every benchmark (--quick: 1 epoch, small subsets, few T; minutes on 2
# cores) into $(QUICK) (NAME-quick.*; models cached in $(QUICK)/models/, never mixed with
# the full ones), then $(QUICK)/BENCHMARKS.md. `rm -rf $(QUICK)` retrains from scratch.
QUICK := runs/bench-quick
bench-quick: $(STAMP)
	$(BIN)/python benchmarks/ttfs.py --quick --threads 1 --out $(QUICK)
	$(BIN)/python benchmarks/ttfs_optimise.py --quick --threads 1 --out $(QUICK)
	$(BIN)/python benchmarks/rate.py --quick --threads 1 --out $(QUICK)
	$(BIN)/python benchmarks/rate.py --quick --threads 1 --label peers --variants plain --out $(QUICK)
	$(BIN)/python benchmarks/hybrid.py --quick --threads 1 --shift 1 --distill 1 --bias first_step \
		--out $(QUICK)
	$(BIN)/python benchmarks/hybrid_speed.py --quick --threads 1 --out $(QUICK)
	$(BIN)/python benchmarks/quartz.py --quick --threads 1 --out $(QUICK)
	$(BIN)/python benchmarks/hardware.py --quick --out $(QUICK)
	$(BIN)/python benchmarks/extract.py --quick --threads 1 --out $(QUICK)
	$(BIN)/python benchmarks/deep.py --quick --threads 1 --out $(QUICK)
	$(BIN)/python benchmarks/gpu.py --quick --threads 1 --out $(QUICK)
	$(BIN)/python benchmarks/speed.py --quick --threads 1 --out $(QUICK)
	$(BIN)/python benchmarks/summary.py --results $(QUICK) --out $(QUICK)/BENCHMARKS.md

peers: $(STAMP)
	$(BIN)/pip install -q -e '.[peers]'
	$(BIN)/pip install -q --no-deps spikingjelly norse sinabs snntorch

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
