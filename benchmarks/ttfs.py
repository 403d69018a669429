"""Exact TTFS conversion on MNIST: accuracy, spikes, operations, energy and simulator speed.

Trains (or reuses, from ``benchmarks/models/``) the 784-500-500-10 MLP and Quartz's MNIST
ConvNet, converts each at T in 4, 8, 16, 32 (with and without the rectifier event),
simulates the full test set with the closed-form simulator, cross-checks a subset against
the stepped reference, and measures the closed-form simulator's throughput against the
ANN's forward pass on the same batch, interleaved in the same run. Writes
``benchmarks/results/ttfs.json`` (one record per network, T and rectifier setting),
``ttfs.meta.json`` (machine, threads, command, verdicts) and ``ttfs.md`` (the table).

``--quick`` (CI-sized: 6,000 training images, 1 epoch, 500 test images, T in 4 and 16) writes
``ttfs-quick.*`` into ``--out`` (default ``runs/bench-quick``) and caches its models in
``OUT/models/``, apart from the full ones.

Usage::

    ONESPIKE_DATA=../shared/datasets python benchmarks/ttfs.py [--threads 2] [--quick]
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

import onespike
from onespike._fs import atomic_write_json, atomic_write_text
from onespike.data import Dataset, batches, load_dataset
from onespike.evaluate import agreement, evaluate_snn, summarize
from onespike.io import load_model, save_model
from onespike.models import build_model
from onespike.train import TrainConfig, evaluate, train

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
MODELS = ROOT / "models"
STEPS = (4, 8, 16, 32)
EPOCHS = {"mlp": 10, "quartz-convnet": 15}
# --quick: where the CI-sized runs write by default, and their T.
QUICK_OUT = ROOT.parent / "runs" / "bench-quick"
QUICK_STEPS = (4, 16)


def out_dir(out: Path | None, quick: bool) -> Path:
    """The results directory: ``--out``, else ``benchmarks/results`` (full) or ``QUICK_OUT``."""
    if out is not None:
        return out
    return QUICK_OUT if quick else RESULTS


def models_dir(out: Path, quick: bool) -> Path:
    """Where trained models are cached: ``benchmarks/models`` for full runs; for ``--quick``
    runs ``OUT/models``, so that their one-epoch models never mix with the full ones."""
    return out / "models" if quick else MODELS


def trained(
    name: str,
    train_ds: Dataset,
    test_ds: Dataset,
    epochs: int,
    *,
    models: Path = MODELS,
    **options: Any,
) -> tuple[Any, float]:
    """Train ``name`` on ``train_ds`` (or reuse the saved model of an identical run).

    Args:
        name: architecture (see :func:`onespike.models.build_model`).
        train_ds: training data; its name is part of the cache key.
        test_ds: test data, for the accuracy saved with the model.
        epochs: training epochs.
        models: the cache directory (``benchmarks/models`` unless a quick run says otherwise).
        options: architecture options, also part of the cache key.

    Returns:
        The model and its test accuracy.
    """
    tag = "".join(
        f"-{k}{'x'.join(map(str, v)) if isinstance(v, (list, tuple)) else v}"
        for k, v in sorted(options.items())
    )
    directory = models / f"{train_ds.name}-{name}-e{epochs}{tag}"
    if (directory / "model.json").exists():
        model, meta = load_model(directory)
        return model, float(meta["accuracy"])
    torch.manual_seed(0)
    model, spec = build_model(
        name, tuple(train_ds.images.shape[1:]), train_ds.num_classes, **options
    )
    config = TrainConfig(epochs=epochs, batch_size=128, lr=1e-3, seed=0)
    train(model, train_ds, config, checkpoint_dir=directory / "checkpoints")
    accuracy = evaluate(model, test_ds)
    save_model(directory, model, spec, dataset=train_ds.name, accuracy=accuracy)
    return model, accuracy


def throughput_ratio(
    model: torch.nn.Module, net: onespike.SpikingNetwork, x: torch.Tensor, repeats: int
) -> tuple[float, float, float]:
    """Median seconds of ANN forward and closed-form simulation on ``x``, interleaved."""
    ann_times, snn_times = [], []
    with torch.no_grad():
        model(x)
        onespike.simulate(net, x)
        for _ in range(repeats):
            start = time.perf_counter()
            model(x)
            ann_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            onespike.simulate(net, x)
            snn_times.append(time.perf_counter() - start)
    ann, snn = statistics.median(ann_times), statistics.median(snn_times)
    return ann / snn, ann, snn


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | T | rectifier | ANN acc. | SNN acc. | spikes/neuron | synops | ANN MACs | "
        "energy vs ANN | latency (steps) | decision mean / max (steps) | sim. throughput vs ANN |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['steps']} | {'on' if r['rectifier'] else 'off'} | "
            f"{100 * r['ann_accuracy']:.2f}% | "
            f"{100 * r['snn_accuracy']:.2f}% | {r['spikes_per_neuron']:.3f} | "
            f"{r['synops']:,.0f} | {r['ann_macs']:,.0f} | {r['energy_ratio_vs_ann']:.3f} | "
            f"{r['latency_steps']} | "
            f"{r['decision_steps_mean']:.1f} / {r['decision_steps_max']:g} | "
            f"{r['sim_throughput_ratio_vs_ann']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="small subsets, 1 epoch (CI)")
    parser.add_argument("--percentile", type=float, default=99.99)
    parser.add_argument(
        "--out", type=Path, default=None, help="results directory (default: see module doc)"
    )
    args = parser.parse_args()
    args.out = out_dir(args.out, args.quick)
    torch.set_num_threads(args.threads)
    limit = 500 if args.quick else None
    train_ds = load_dataset("mnist", "train", limit=6000 if args.quick else None)
    test_ds = load_dataset("mnist", "test", limit=limit)
    calibration = load_dataset("mnist", "train", limit=1000 if args.quick else 5000)
    grid = QUICK_STEPS if args.quick else STEPS
    repeats, check = (3, 8) if args.quick else (15, 64)
    rows: list[dict[str, Any]] = []
    verdicts: list[str] = []
    for name in ("mlp", "quartz-convnet"):
        epochs = 1 if args.quick else EPOCHS[name]
        model, _ = trained(name, train_ds, test_ds, epochs, models=models_dir(args.out, args.quick))
        model.eval()
        ann_accuracy = evaluate(model, test_ds)
        graph = onespike.extract(model, test_ds.images[:2])
        graph = onespike.normalize(graph, batches(calibration, 500), percentile=args.percentile)
        for steps, rectifier in [(t, r) for t in grid for r in (True, False)]:
            net = onespike.convert(graph, onespike.TTFSConfig(steps=steps, rectifier=rectifier))
            evaluation = evaluate_snn(net, test_ds, batch_size=1000, progress=True)
            row = summarize(
                dataset="mnist",
                model=name,
                method="ttfs",
                steps=steps,
                ann_accuracy=ann_accuracy,
                evaluation=evaluation,
                ann_graph=graph,
                energy_model="45nm",
            )
            ratio, ann_s, snn_s = throughput_ratio(
                model, net, test_ds.images[:1000], repeats=repeats
            )
            row["rectifier"] = rectifier
            row["sim_throughput_ratio_vs_ann"] = ratio
            row["ann_forward_s_per_1000"] = ann_s
            row["snn_closed_form_s_per_1000"] = snn_s
            row["stepped_check"] = agreement(net, test_ds.images[:check])
            rows.append(row)
            print(
                f"{name} T={steps} rectifier={rectifier}: ANN {ann_accuracy:.4f} "
                f"SNN {row['snn_accuracy']:.4f} throughput {ratio:.2f}x",
                flush=True,
            )
    for row in rows:
        if row["model"] == "quartz-convnet" and row["steps"] == 16 and row["rectifier"]:
            loss = 100 * (row["ann_accuracy"] - row["snn_accuracy"])
            verdict = "met" if loss <= 0.2 else "NOT met"
            verdicts.append(
                f"ConvNet T=16 conversion loss {loss:.2f} points (target <= 0.2): {verdict}"
            )
        if row["sim_throughput_ratio_vs_ann"] < 0.5:
            verdicts.append(
                f"{row['model']} T={row['steps']}: closed-form throughput "
                f"{row['sim_throughput_ratio_vs_ann']:.2f}x ANN (target >= 0.5x): "
                "NOT met"
            )
    if not any("throughput" in v for v in verdicts):
        low = min(r["sim_throughput_ratio_vs_ann"] for r in rows)
        verdicts.append(f"closed-form throughput >= 0.5x ANN on every row (lowest {low:.2f}x): met")
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "quick": args.quick,
        "percentile": args.percentile,
        "energy_model": "45nm (Horowitz, ISSCC 2014)",
        "verdicts": verdicts,
    }
    suffix = "-quick" if args.quick else ""
    atomic_write_json(args.out / f"ttfs{suffix}.json", rows)
    atomic_write_json(args.out / f"ttfs{suffix}.meta.json", meta)
    table = markdown(rows)
    notes = "\n".join(f"- {v}" for v in verdicts)
    atomic_write_text(args.out / f"ttfs{suffix}.md", f"{table}\n{notes}\n")
    print(table)
    print(notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
