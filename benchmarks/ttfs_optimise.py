"""TTFS-aware fine-tuning against plain conversion at short latency (T = 2, 4, 8, 16).

For each network: train the float ANN (or reuse it from ``benchmarks/models/``), convert it
plainly at each T, then fine-tune it through the exact function of its T-step TTFS network
(:func:`onespike.optimize_for_ttfs`) and convert that. Optimised networks are evaluated in
float64, both the fine-tuned ANN's exact forward and its SNN, so that "no conversion loss" is
tested without float32 rounding ties. Writes ``benchmarks/results/ttfs_optimise.json`` after
every network, ``ttfs_optimise.meta.json``, ``ttfs_optimise.md`` and ``ttfs_optimise.png``.

``--quick`` (CI-sized: 1 training epoch on 6,000 images, 1 fine-tuning epoch on 2,000, 500
test images, T in 2 and 8) writes ``ttfs_optimise-quick.*`` into ``--out`` (default
``runs/bench-quick``) and caches its models in ``OUT/models/``.

Usage::

    ONESPIKE_DATA=../shared/datasets python benchmarks/ttfs_optimise.py [--only mlp] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import onespike
from onespike._fs import atomic_write, atomic_write_json, atomic_write_text
from onespike.data import Dataset, batches, load_dataset
from onespike.evaluate import SNNEvaluation, evaluate_snn, summarize
from onespike.network import SpikingNetwork
from onespike.optimize import optimize_for_ttfs
from onespike.train import evaluate
from ttfs import models_dir, out_dir, throughput_ratio, trained

RESULTS = Path(__file__).resolve().parent / "results"
STEPS = (2, 4, 8, 16)
QUICK_STEPS = (2, 8)
# (dataset, model, training epochs, label in the results, fine-tuning epochs, fine-tuning lr,
#  model options)
NETWORKS: tuple[tuple[str, str, int, str, int, float, dict[str, Any]], ...] = (
    ("mnist", "mlp", 20, "mlp", 5, 5e-4, {"dropout": 0.2}),
    ("mnist", "quartz-convnet", 15, "quartz-convnet", 8, 5e-4, {}),
    ("mnist", "convnet-bn", 12, "convnet-bn", 4, 2e-4, {}),
    (
        "fashion-mnist",
        "convnet-bn",
        20,
        "fashion-convnet-bn",
        2,
        2e-4,
        {"widths": [32, 64], "hidden": 256},
    ),
)


def as_double(ds: Dataset) -> Dataset:
    return replace(ds, images=ds.images.double())


def record(
    label: str,
    dataset: str,
    method: str,
    steps: int,
    ann_accuracy: float,
    net: SpikingNetwork,
    graph: onespike.Graph,
    evaluation: SNNEvaluation,
    model: torch.nn.Module,
    probe: torch.Tensor,
) -> dict[str, Any]:
    row = summarize(
        dataset=dataset,
        model=label,
        method=method,
        steps=steps,
        ann_accuracy=ann_accuracy,
        evaluation=evaluation,
        ann_graph=graph,
        energy_model="45nm",
    )
    row["sim_throughput_ratio_vs_ann"] = throughput_ratio(model, net, probe, repeats=5)[0]
    row["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    return row


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against T per network: full range on top, zoomed near the ANN below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({r["model"] for r in rows}, key=[r["model"] for r in rows].index)
    fig, axes = plt.subplots(
        2, len(labels), figsize=(4.2 * len(labels), 6.4), squeeze=False, sharex=True
    )
    for column, label in enumerate(labels):
        mine = [r for r in rows if r["model"] == label]
        ann = 100 * mine[0]["ann_accuracy"]
        for row, ax in enumerate(axes[:, column]):
            for method, style in (("ttfs", "o--"), ("ttfs-optimised", "s-")):
                pts = sorted(
                    (r["steps"], 100 * r["snn_accuracy"]) for r in mine if r["method"] == method
                )
                if pts:
                    ax.plot(*zip(*pts, strict=True), style, label=method)
            ax.axhline(ann, color="grey", lw=1, label=f"float ANN ({ann:.2f}%)")
            ax.set_xscale("log", base=2)
            ax.set_xticks(list(STEPS), [str(s) for s in STEPS])
            ax.grid(alpha=0.3)
            if row == 0:
                low = min(100 * r["snn_accuracy"] for r in mine)
                ax.set_ylim(max(low - 2, 0), 100.5)
                ax.set_title(f"{mine[0]['dataset']} / {label}")
                ax.legend(fontsize=8, loc="lower right")
            else:
                ax.set_ylim(ann - 2.0, min(ann + 0.6, 100.0))
                ax.set_title("zoom: within 2 points of the ANN", fontsize=9)
                ax.set_xlabel("T (code levels)")
            ax.set_ylabel("test accuracy (%)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def decision(row: dict[str, Any]) -> str:
    """Mean / max step of the first output spike; rows written before it was recorded: '-'."""
    if "decision_steps_mean" not in row:
        return "-"
    return f"{row['decision_steps_mean']:.1f} / {row['decision_steps_max']:g}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | model | method | T | ANN acc. | fine-tuned ANN | SNN acc. | clipped | "
        "spikes/neuron | energy vs ANN | latency | decision mean / max |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        tuned = r.get("finetuned_ann_accuracy")
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['method']} | {r['steps']} | "
            f"{100 * r['ann_accuracy']:.2f}% | "
            f"{'' if tuned is None else f'{100 * tuned:.2f}%'} | {100 * r['snn_accuracy']:.2f}% | "
            f"{100 * r['early_spike_fraction']:.3f}% | {r['spikes_per_neuron']:.3f} | "
            f"{r['energy_ratio_vs_ann']:.3f} | {r['latency_steps']} | {decision(r)} |"
        )
    return "\n".join(lines) + "\n"


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    out = []

    def best(label: str, max_steps: int) -> tuple[float, int] | None:
        cands = [
            (r["snn_accuracy"], r["steps"])
            for r in rows
            if r["model"] == label and r["steps"] <= max_steps
        ]
        return max(cands) if cands else None

    for label, max_steps, target in (
        ("mlp", 16, 0.985),
        ("convnet-bn", 8, 0.994),
        ("fashion-convnet-bn", 16, 0.929),
    ):
        found = best(label, max_steps)
        if found is not None:
            acc, steps = found
            verdict = "met" if acc >= target else f"NOT met by {100 * (target - acc):.2f} points"
            out.append(
                f"{label}: best SNN {100 * acc:.2f}% at T={steps} <= {max_steps} "
                f"(target {100 * target:.1f}%): {verdict}"
            )
    for steps, limit in ((8, 0.1), (16, 0.05)):
        rows_q = [r for r in rows if r["model"] == "quartz-convnet" and r["steps"] == steps]
        if rows_q:
            loss = min(100 * (r["ann_accuracy"] - r["snn_accuracy"]) for r in rows_q)
            verdict = "met" if loss <= limit else f"NOT met by {loss - limit:.2f} points"
            out.append(
                f"quartz-convnet T={steps}: smallest conversion loss vs float ANN "
                f"{loss:.2f} points (target <= {limit}): {verdict}"
            )
    tuned = [r for r in rows if r["method"] == "ttfs-optimised"]
    if tuned:
        worst = max(abs(r["finetuned_ann_accuracy"] - r["snn_accuracy"]) for r in tuned)
        out.append(
            f"largest |fine-tuned ANN - SNN| accuracy gap over {len(tuned)} optimised "
            f"rows: {100 * worst:.4f} points (target 0): {'met' if worst == 0 else 'NOT met'}"
        )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="labels of networks to run")
    parser.add_argument(
        "--out", type=Path, default=None, help="results directory (default: see module doc)"
    )
    parser.add_argument("--quick", action="store_true", help="small subsets, 1 epoch (CI)")
    args = parser.parse_args()
    load_start = list(os.getloadavg())
    started = time.perf_counter()
    args.out = out_dir(args.out, args.quick)
    torch.set_num_threads(args.threads)
    suffix = "-quick" if args.quick else ""
    grid = QUICK_STEPS if args.quick else STEPS
    path = args.out / f"ttfs_optimise{suffix}.json"
    rows: list[dict[str, Any]] = []
    if args.only and path.exists():  # keep the other networks' rows
        import json

        rows = [r for r in json.loads(path.read_text()) if r["model"] not in args.only]
    for dataset, name, epochs, label, finetune_epochs, finetune_lr, options in NETWORKS:
        if args.only and label not in args.only:
            continue
        if args.quick:
            epochs, finetune_epochs = 1, 1
        train_ds = load_dataset(dataset, "train", limit=6000 if args.quick else None)
        test_ds = load_dataset(dataset, "test", limit=500 if args.quick else None)
        model, _ = trained(
            name, train_ds, test_ds, epochs, models=models_dir(args.out, args.quick), **options
        )
        model.eval()
        ann_accuracy = evaluate(model, test_ds)
        calibration = load_dataset(dataset, "train", limit=1000 if args.quick else 5000)
        base = onespike.extract(model, test_ds.images[:2])
        base = onespike.normalize(base, batches(calibration, 500))
        probe = test_ds.images[:500]
        for steps in grid:
            net = onespike.convert(base, onespike.TTFSConfig(steps=steps))
            evaluation = evaluate_snn(net, test_ds, batch_size=1000)
            rows.append(
                record(
                    label, dataset, "ttfs", steps, ann_accuracy, net, base, evaluation, model, probe
                )
            )
            print(f"{label} T={steps} plain: {evaluation.accuracy:.4f}", flush=True)

            result = optimize_for_ttfs(
                model,
                train_ds.head(2000) if args.quick else train_ds,
                steps=steps,
                epochs=finetune_epochs,
                lr=finetune_lr,
                progress=False,
            )
            tuned = result.net.double().eval()
            test64 = as_double(test_ds)
            finetuned_accuracy = evaluate(tuned, test64)
            graph = tuned.to_graph(test64.images[:2])
            snn = onespike.convert(graph, tuned.config())
            evaluation = evaluate_snn(snn, test64, batch_size=1000)
            row = record(
                label,
                dataset,
                "ttfs-optimised",
                steps,
                ann_accuracy,
                snn,
                graph,
                evaluation,
                tuned,
                probe.double(),
            )
            row["finetuned_ann_accuracy"] = finetuned_accuracy
            row["finetune_epochs"] = finetune_epochs
            row["finetune_lr"] = finetune_lr
            rows.append(row)
            print(
                f"{label} T={steps} optimised: ANN {finetuned_accuracy:.4f} "
                f"SNN {evaluation.accuracy:.4f}",
                flush=True,
            )
        atomic_write_json(path, rows)
    notes = verdicts(rows)
    meta: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "seconds": time.perf_counter() - started,
        "finetune": {
            n[3]: {"epochs": n[4], "lr": n[5], "optimizer": "adam+cosine"} for n in NETWORKS
        },
        "training_epochs": {n[3]: n[2] for n in NETWORKS},
        "model_options": {n[3]: n[6] for n in NETWORKS},
        "verdicts": notes,
    }
    if args.quick:
        meta["quick"] = True
        meta["training_epochs"] = dict.fromkeys(meta["training_epochs"], 1)
        for setting in meta["finetune"].values():
            setting["epochs"] = 1
    atomic_write_json(args.out / f"ttfs_optimise{suffix}.meta.json", meta)
    table = markdown(rows)
    atomic_write_text(
        args.out / f"ttfs_optimise{suffix}.md",
        table + "\n" + "\n".join(f"- {v}" for v in notes) + "\n",
    )
    try:
        plot(rows, args.out / f"ttfs_optimise{suffix}.png")
    except ImportError:
        print("matplotlib is not installed (the 'plot' extra): no plot written")
    print(table)
    print("\n".join(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
