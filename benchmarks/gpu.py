"""The simulators and STDB on a GPU against the CPU, with the same weights.

A small ConvNet is trained on the CPU (seeded), extracted, normalised and converted once per
method; each network is then simulated on the CPU and, moved with ``net.to("cuda")``, on the
GPU, on the same input batch. Compared:

- TTFS (closed form and stepped): every population's spike times, equal exactly (integer
  codes on a grid: float rounding cannot move them unless a potential sits on a rounding
  boundary, and the verdict says if one did), predictions and operation counts;
- rate (closed form and stepped, analog and Poisson input): spike counts per population,
  predictions, and the largest absolute difference of the decoded outputs;
- hybrid (closed form and stepped): spike times and predictions, output difference;
- STDB: one epoch from the same network on each device, then the accuracy of each tuned
  network and the largest absolute difference of its weights.

Accumulation order differs between CPU and CUDA kernels, so equality is a measured verdict,
not an assumption: a count that differs is reported with how many neurons differ.

Without a GPU the script prints a skip message and exits 0 without writing results.
``--device cpu`` runs the comparison CPU against CPU (a check of the script itself).

Writes ``benchmarks/results/gpu.json`` and ``gpu.meta.json`` (``--quick``: ``gpu-quick.*`` in
``--out``; digits instead of MNIST, fewer samples).

Usage::

    ONESPIKE_DATA=../shared/datasets python benchmarks/gpu.py [--quick] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

import onespike
from onespike._fs import atomic_write_json
from onespike.convert import HybridConfig, RateConfig, TTFSConfig
from onespike.data import Dataset, load_dataset
from onespike.network import SpikingNetwork, tensors_of
from onespike.simulate import SimResult
from onespike.stdb import STDBConfig, finetune_stdb
from onespike.train import TrainConfig, evaluate, train
from ttfs import out_dir


def _model(channels: int, side: int) -> nn.Module:
    pooled = (side - 2) // 2
    return nn.Sequential(
        nn.Conv2d(channels, 8, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * pooled * pooled, 32),
        nn.ReLU(),
        nn.Linear(32, 10),
    )


def _subset(ds: Dataset, n: int) -> Dataset:
    n = min(n, len(ds))
    return Dataset(ds.name, ds.split, ds.images[:n], ds.labels[:n], ds.num_classes)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().cpu(), b.double().cpu()
    finite = torch.isfinite(a) & torch.isfinite(b)
    if not bool(finite.any()):
        return 0.0
    return float((a[finite] - b[finite]).abs().max())


def _same_inf(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(torch.equal(torch.isinf(a.cpu()), torch.isinf(b.cpu())))


def _compare(name: str, cpu: SimResult, gpu: SimResult, labels: torch.Tensor) -> dict[str, Any]:
    row: dict[str, Any] = {"simulation": name}
    row["cpu_accuracy"] = cpu.accuracy(labels)
    row["gpu_accuracy"] = gpu.accuracy(labels)
    row["predictions_equal"] = bool(torch.equal(cpu.predictions, gpu.predictions.cpu()))
    row["predictions_differ"] = int((cpu.predictions != gpu.predictions.cpu()).sum())
    row["outputs_max_abs_diff"] = _max_diff(cpu.outputs, gpu.outputs)
    times_equal, times_differ = True, 0
    for pop in cpu.spike_times:
        a, b = cpu.spike_times[pop], gpu.spike_times[pop].cpu()
        equal = bool(torch.equal(a, b))
        times_equal &= equal
        times_differ += 0 if equal else int((a != b).sum())
    if cpu.spike_times:
        row["spike_times_equal"] = times_equal
        row["spike_times_differ"] = times_differ
    counts_equal, counts_differ = True, 0
    for pop in cpu.spike_counts:
        a, b = cpu.spike_counts[pop], gpu.spike_counts[pop].cpu()
        equal = bool(torch.equal(a, b))
        counts_equal &= equal
        counts_differ += 0 if equal else int((a != b).sum())
    if cpu.spike_counts:
        row["spike_counts_equal"] = counts_equal
        row["spike_counts_differ"] = counts_differ
    return row


def _timed(net: SpikingNetwork, x: torch.Tensor, method: str) -> tuple[SimResult, float]:
    sync = torch.cuda.synchronize if x.device.type == "cuda" else (lambda: None)
    sync()
    started = time.perf_counter()
    result = onespike.simulate(net, x, method=method)  # type: ignore[arg-type]
    sync()
    return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cuda", help="the device compared with the CPU")
    parser.add_argument("--samples", type=int, default=None, help="test samples simulated")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="digits, few samples (CI)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "gpu.py: skipped, no CUDA device is available (torch.cuda.is_available() is "
            "False); nothing written. Run it on a machine with a GPU, or pass --device cpu "
            "to check the script CPU against CPU."
        )
        return 0
    args.out = out_dir(args.out, args.quick)
    torch.set_num_threads(args.threads)
    dataset = "digits" if args.quick else "mnist"
    samples = args.samples or (200 if args.quick else 1000)
    train_ds = _subset(load_dataset(dataset, "train"), 1000 if args.quick else 10000)
    test_ds = _subset(load_dataset(dataset, "test"), samples)
    channels, side = train_ds.images.shape[1], train_ds.images.shape[-1]
    torch.manual_seed(0)
    model = _model(channels, side)
    epochs = 10 if args.quick else 2
    config = TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, seed=0)
    train(model, train_ds, config, progress=False)
    model.eval()
    ann_accuracy = evaluate(model, test_ds)
    print(f"ANN ({dataset}, {epochs} epochs on {len(train_ds)} samples): {ann_accuracy:.4f}")
    calibration = train_ds.images[:500]
    graph = onespike.normalize(onespike.extract(model, calibration[:2]), [calibration])
    x, labels = test_ds.images, test_ds.labels
    configs: dict[str, Any] = {
        "ttfs T=8": TTFSConfig(steps=8),
        "ttfs T=8 rectifier": TTFSConfig(steps=8, rectifier=True),
        "rate T=32": RateConfig(steps=32),
        "rate T=32 poisson": RateConfig(steps=32, input="poisson", seed=1),
        "hybrid T=5": HybridConfig(steps=5),
    }
    rows: list[dict[str, Any]] = []
    nets: dict[str, SpikingNetwork] = {}
    for label, config in configs.items():
        cal = calibration if isinstance(config, HybridConfig) else None
        net = onespike.convert(graph, config, calibration=cal)
        nets[label] = net
        moved = net.to(device)
        assert all(t.device.type == device.type for t in tensors_of(moved))
        for method in ("closed_form", "stepped"):
            cpu, cpu_s = _timed(net, x, method)
            gpu, gpu_s = _timed(moved, x.to(device), method)
            row = _compare(f"{label} {method}", cpu, gpu, labels)
            row["cpu_s"], row["device_s"] = cpu_s, gpu_s
            cpu_ops = onespike.count_ops(net, cpu).total("synops")
            gpu_ops = onespike.count_ops(moved, gpu).total("synops")
            row["synops_cpu"], row["synops_device"] = cpu_ops, gpu_ops
            rows.append(row)
            print(
                f"{row['simulation']:32s} acc cpu {row['cpu_accuracy']:.4f} "
                f"{device.type} {row['gpu_accuracy']:.4f}  predictions differ "
                f"{row['predictions_differ']}  times equal {row.get('spike_times_equal', '-')}"
                f"  counts equal {row.get('spike_counts_equal', '-')}  synops "
                f"{cpu_ops} / {gpu_ops}  {cpu_s:.3f}s / {gpu_s:.3f}s"
            )
    # STDB: one epoch from the same network on each device
    hybrid = nets["hybrid T=5"]
    stdb_ds = _subset(train_ds, 512 if args.quick else 2048)
    stdb = STDBConfig(epochs=1, batch_size=64, lr=1e-3, seed=0)
    tuned_cpu = finetune_stdb(hybrid, stdb_ds, stdb, progress=False).net
    tuned_gpu = finetune_stdb(hybrid.to(device), stdb_ds, stdb, progress=False).net
    weight_diff = max(
        _max_diff(a, b) for a, b in zip(tensors_of(tuned_cpu), tensors_of(tuned_gpu), strict=True)
    )
    stdb_row = {
        "simulation": "stdb 1 epoch hybrid T=5",
        "stdb_device": str(tuned_gpu.device),
        "cpu_accuracy": onespike.simulate(tuned_cpu, x).accuracy(labels),
        "gpu_accuracy": onespike.simulate(tuned_gpu, x.to(device)).accuracy(labels),
        "weights_max_abs_diff": weight_diff,
    }
    rows.append(stdb_row)
    print(
        f"{stdb_row['simulation']:32s} acc cpu {stdb_row['cpu_accuracy']:.4f} {device.type} "
        f"{stdb_row['gpu_accuracy']:.4f}  weights max |diff| {weight_diff:.3g}"
    )
    ttfs_rows = [r for r in rows if r["simulation"].startswith("ttfs")]
    ttfs_exact = all(r["spike_times_equal"] and r["predictions_equal"] for r in ttfs_rows)
    verdict = (
        "TTFS spike times and predictions identical on both devices"
        if ttfs_exact
        else "TTFS differs between devices: "
        + ", ".join(
            f"{r['simulation']} ({r['spike_times_differ']} spike times, "
            f"{r['predictions_differ']} predictions)"
            for r in ttfs_rows
            if not (r["spike_times_equal"] and r["predictions_equal"])
        )
    )
    print(f"verdict: {verdict}")
    meta = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "load_average": os.getloadavg(),
        "torch_threads": args.threads,
        "quick": args.quick,
        "dataset": dataset,
        "samples": int(x.shape[0]),
        "ann_accuracy": ann_accuracy,
        "ttfs_exact": ttfs_exact,
        "verdict": verdict,
    }
    suffix = "-quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"gpu{suffix}.json", rows)
    atomic_write_json(args.out / f"gpu{suffix}.meta.json", meta)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
