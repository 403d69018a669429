"""Extraction and normalisation cost against the ANN's own forward pass.

Measures, side by side in one process with interleaved repeats (median and spread):

- ``extract`` of a CIFAR ResNet-18 (the widely copied BasicBlock version, functional pooling
  and ``view``, random weights, BatchNorm with random statistics) against one ANN forward pass
  of a 64-image batch (target: at most 1x), and of a torchvision-style VGG-11-BN (for
  information: no target);
- ``normalize`` over 256 calibration images (four batches of 64, percentile 99.99) against
  the ANN forward over the same images (target: at most 1.3x);
- ``extract`` of a 100-block residual network (three stages of 16/32/64 channels, random
  weights) against the ResNet-18's extraction (target: at most 10x).

The models are the test zoo's (``tests/zoo.py``), written as they appear in the wild. Writes
``benchmarks/results/extract.{json,md}`` and ``extract.meta.json`` (machine, threads, load
average before and after, command, verdicts).

``--quick`` (CI-sized: fewer repeats, the 100-block network at 30 blocks) writes
``extract-quick.*`` into ``--out`` (default ``runs/bench-quick``); its figures are not the
benchmark's.

Usage::

    python benchmarks/extract.py [--threads 2] [--repeats 7] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import onespike
from onespike._fs import atomic_write_json, atomic_write_text

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))  # the test zoo: models written as users write them
from tests import zoo  # noqa: E402

RESULTS = ROOT / "results"
QUICK_OUT = ROOT.parent / "runs" / "bench-quick"
BATCH = 64
CALIBRATION = 4  # batches of BATCH images
TARGETS = {"extract_vs_forward": 1.0, "normalize_vs_forward": 1.3, "deep_vs_resnet18": 10.0}
# The networks the targets are set on; the VGG-11-BN row (a 100M-weight classifier, so its
# extraction is mostly the copy of its weights) is measured for information.
TARGETED = ("resnet18", "resnet-")


def interleaved(tasks: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Run every task once per round, ``repeats`` rounds, after one warm-up round."""
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for round_index in range(repeats + 1):
        for name, task in tasks.items():
            started = time.perf_counter()
            task()
            elapsed = time.perf_counter() - started
            if round_index:  # round 0 warms caches and the allocator
                times[name].append(elapsed)
    return times


def summary(values: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(values), "min_s": min(values), "max_s": max(values)}


def forward(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            return model(x)

    return run


def measure(
    name: str,
    model: torch.nn.Module,
    x: torch.Tensor,
    calibration: list[torch.Tensor],
    repeats: int,
) -> dict[str, Any]:
    graph = onespike.extract(model, x[:2])
    times = interleaved(
        {
            "forward": forward(model, x),
            "extract": lambda: onespike.extract(model, x[:2]),
            "forward_calibration": lambda: [forward(model, b)() for b in calibration],
            "normalize": lambda: onespike.normalize(graph, calibration),
        },
        repeats,
    )
    stats = {key: summary(values) for key, values in times.items()}
    ratio = {
        "extract_vs_forward": stats["extract"]["median_s"] / stats["forward"]["median_s"],
        "normalize_vs_forward": stats["normalize"]["median_s"]
        / stats["forward_calibration"]["median_s"],
    }
    return {"model": name, "nodes": len(graph.nodes), **ratio, "times": stats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.repeats < 1:
        parser.error("--threads and --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    out = args.out or (QUICK_OUT if args.quick else RESULTS)
    repeats = 2 if args.quick else args.repeats
    deep_blocks = 30 if args.quick else 100
    load_before = os.getloadavg()

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((BATCH, 3, 32, 32), generator=gen)
    calibration = [torch.rand((BATCH, 3, 32, 32), generator=gen) for _ in range(CALIBRATION)]
    resnet = zoo.randomise_batchnorm(zoo.ResNet18())
    vgg = zoo.randomise_batchnorm(zoo.VGG("vgg11"))
    rows = [
        measure("resnet18", resnet, x, calibration, repeats),
        measure("vgg11-bn", vgg, x, calibration, repeats),
    ]
    deep = zoo.randomise_batchnorm(zoo.resnet_deep(blocks=deep_blocks))
    times = interleaved(
        {
            "resnet18": lambda: onespike.extract(resnet, x[:2]),
            "deep": lambda: onespike.extract(deep, x[:2]),
        },
        repeats,
    )
    deep_row = {
        "model": f"resnet-{deep_blocks}-blocks",
        "nodes": len(onespike.extract(deep, x[:2]).nodes),
        "deep_vs_resnet18": statistics.median(times["deep"]) / statistics.median(times["resnet18"]),
        "times": {key: summary(values) for key, values in times.items()},
    }
    rows.append(deep_row)
    load_after = os.getloadavg()

    verdicts = []
    for row in rows:
        for key, target in TARGETS.items():
            if key not in row or not row["model"].startswith(TARGETED):
                continue
            value = row[key]
            status = "met" if value <= target else f"NOT met (by {value / target:.2f}x)"
            verdicts.append(f"{row['model']}: {key} {value:.2f}x (target <= {target}x): {status}")
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "repeats": repeats,
        "quick": args.quick,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "batch": BATCH,
        "calibration_images": BATCH * CALIBRATION,
        "verdicts": verdicts,
    }
    suffix = "-quick" if args.quick else ""
    atomic_write_json(out / f"extract{suffix}.json", rows)
    atomic_write_json(out / f"extract{suffix}.meta.json", meta)
    lines = [
        "| model | graph nodes | extract / forward (64 images) | normalize / forward "
        f"({BATCH * CALIBRATION} images) | extract / ResNet-18 extract |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        cells = [
            f"{row[k]:.2f}x" if k in row else "-"
            for k in ("extract_vs_forward", "normalize_vs_forward", "deep_vs_resnet18")
        ]
        lines.append(f"| {row['model']} | {row['nodes']} | " + " | ".join(cells) + " |")
    load = ", ".join(f"{v:.2f}" for v in load_before)
    text = "\n".join(
        [
            *lines,
            "",
            f"Medians of {repeats} interleaved repeats, {args.threads} torch thread(s), "
            f"load average before the run {load}.",
            "",
            *(f"- {v}" for v in verdicts),
        ]
    )
    atomic_write_text(out / f"extract{suffix}.md", text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
