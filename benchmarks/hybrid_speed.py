"""STDB training speed against the ANN: one STDB step against T plain ANN steps, interleaved.

One STDB step is the forward pass of the T = 5 hybrid network over its steps (layer-major,
time folded into the batch), the STDB loss and the backward pass through time. The reference
is a plain forward and backward pass of the same ANN (the Fashion-MNIST BN ConvNet of
``benchmarks/rate.py``, BatchNorm in eval mode, cross-entropy) repeated T times on the same
batch. The two alternate in one process on one thread, ``--repeats`` times each; the medians
are compared. Target (issue 17): an STDB epoch within 1.3x of T ANN passes. The optimizer
step is left out of both (it is the same per parameter).

Writes ``benchmarks/results/hybrid-speed.json`` (``--quick``: ``hybrid-speed-quick.json`` in
``--out``, on the one-epoch ConvNet of ``rate.py --quick``, trained there if missing).

Usage::

    ONESPIKE_DATA=../shared/datasets python benchmarks/hybrid_speed.py [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import onespike
from hybrid import calibration_images
from onespike._fs import atomic_write_json
from onespike.data import load_dataset, split_validation
from onespike.io import load_model
from onespike.stdb import STDBConfig, STDBNet, stdb_loss
from ttfs import models_dir, out_dir

ROOT = Path(__file__).resolve().parent
NETWORK = ROOT / "models" / "fashion-mnist-train55k-convnet-bn-e8"
TARGET = 1.3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="3 repeats, quick ConvNet (CI)")
    args = parser.parse_args()
    args.out = out_dir(args.out, args.quick)
    torch.set_num_threads(args.threads)
    full = load_dataset("fashion-mnist", "train")
    train_part, _ = split_validation(full, 5000 / len(full), seed=0)
    if args.quick:
        from hybrid import quick_model

        args.repeats = 3
        test = load_dataset("fashion-mnist", "test", limit=200)
        model = quick_model("fashion-mnist", train_part, test, models_dir(args.out, True))
    else:
        model, _ = load_model(NETWORK)
    model.eval()
    images = train_part.images[:1000]
    graph = onespike.normalize(onespike.extract(model, images[:2]), [images])
    config = onespike.HybridConfig(steps=args.steps)
    # the full benchmark's calibration set: the network the STDB figures were trained on
    net = onespike.convert(graph, config, calibration=calibration_images(train_part.images, False))
    snn = STDBNet(net, STDBConfig(train_leak=True))
    x, y = train_part.images[: args.batch], train_part.labels[: args.batch]

    def stdb_step() -> None:
        membrane = snn(x)
        assert snn.output_spikes is not None
        stdb_loss(snn.readout(membrane), snn.output_spikes, y, 0.1).backward()

    def ann_steps() -> None:
        for _ in range(args.steps):
            F.cross_entropy(model(x), y).backward()

    stdb_step(), ann_steps()  # warm-up
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {"stdb": [], "ann_x_T": []}
    for _ in range(args.repeats):
        for name, fn in (("stdb", stdb_step), ("ann_x_T", ann_steps)):
            started = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - started)
    medians = {k: statistics.median(v) for k, v in times.items()}
    ratio = medians["stdb"] / medians["ann_x_T"]
    verdict = (
        f"STDB step {medians['stdb'] * 1e3:.0f} ms vs {args.steps} ANN forward+backward "
        f"{medians['ann_x_T'] * 1e3:.0f} ms (batch {args.batch}): {ratio:.2f}x "
        f"(target <= {TARGET}x): {'met' if ratio <= TARGET else 'NOT met'}"
    )
    record: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "steps": args.steps,
        "batch": args.batch,
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": medians,
        "ratio": ratio,
        "target": TARGET,
        "verdict": verdict,
    }
    name = "hybrid-speed-quick.json" if args.quick else "hybrid-speed.json"
    atomic_write_json(args.out / name, record)
    print(verdict)
    return 0


if __name__ == "__main__":
    sys.exit(main())
