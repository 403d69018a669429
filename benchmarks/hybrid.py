"""Hybrid single-spike encoding with STDB fine-tuning: MNIST and Fashion-MNIST ConvNets, T = 1..8.

For each dataset the BN ConvNet that ``benchmarks/rate.py`` trains on 55,000 training images
(the same networks, cached in ``benchmarks/models/``) is normalised on the first 5,000 of them.

- *Converted sweep*: it is converted with :class:`onespike.HybridConfig` at every T in 1..8,
  its per-layer thresholds and spike values calibrated on the first 256 training images
  (:func:`onespike.convert.hybrid.calibrate`), and scored on the first ``--sweep-limit`` test
  images (default: all). ``--legacy`` also scores the conversion without calibration data
  and with the legacy code (bias at every step), its one threshold chosen per T from
  ``INIT_GRID`` on 2,000 of the 5,000 held-out training images of ``split_validation``.
- *STDB* at each T of ``--stdb-steps`` (default 5, the paper's marked setting): the
  calibrated network is scored on the full test set with the closed-form simulator (the first
  64 test images also through the stepped reference: agreement and the largest spike count
  of any neuron), fine-tuned with :func:`onespike.finetune_stdb` on the first ``--samples``
  training images for at most ``--epochs`` epochs, the membrane readout scored after every
  epoch on ``--val-limit`` held-out training images, early stopping with ``--patience``
  (the best epoch's parameters are kept), ``--train-leak`` training the leak too, and scored
  on the full test set again. Checkpoints go to ``runs/bench-hybrid/`` (an interrupted run
  resumes), the fine-tuned networks to ``benchmarks/models/<dataset>-convnet-bn-hybrid-T<T>*/``.
- Energy (45 nm, compute only) two ways: every operation onespike counts (MACs, accumulates,
  bias adds, neuron updates) and MACs plus accumulates only.

Writes ``benchmarks/results/hybrid.json`` (one row per dataset, T and before/after STDB: the
:func:`onespike.evaluate.summarize` row plus ``finetuned``, the fields of :func:`row_extras`,
``energy_ratio_macs_accumulates``, the converted sweep and the STDB history),
``hybrid.meta.json`` (machine, threads, load, budget, verdicts), ``hybrid.md`` and
``hybrid.png`` (converted accuracy against T, STDB validation accuracy after every epoch).

The conversion is calibrated per channel (``HybridConfig``'s default); ``--per-layer`` also
sweeps the per-layer rule; ``--bias first_step`` converts the fine-tuned network with the
bias at step 0 only (the sweep keeps the default). STDB trains the readout temperature
(``--fixed-readout``: not); ``--shift N`` trains on images shifted by up to N pixels,
``--flip`` on images mirrored at random, ``--distill W`` adds the distillation term from the
ANN with weight W (``--distill-temperature``); ``--lr``, ``--time-loss-weight`` and
``--seed`` set the rest. A run with other STDB options keeps its own checkpoints and saved
networks. Runs of one dataset each can go side by side into separate ``--out`` directories;
``--merge DIR DIR`` then writes the combined results (``make bench`` does so: the main
results with shifts, distillation and the bias at step 0; ``hybrid-labels.*`` with labels
alone and the bias spread; ``hybrid-fashion-mnist-*.*`` variants).

``--quick`` (CI-sized) runs on the one-epoch ConvNets of ``rate.py --quick`` (trained here if
missing), T in 2 and 5, 500 validation and 200 test images, STDB for 1 epoch on 500 images, and
writes ``hybrid-quick.*``, checkpoints and fine-tuned networks into ``--out`` (default
``runs/bench-quick``).

Usage::

    ONESPIKE_DATA=../shared/datasets python benchmarks/hybrid.py [--threads 1] [--only mnist]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import onespike
from onespike._fs import atomic_write, atomic_write_json, atomic_write_text
from onespike.data import Dataset, batches, load_dataset, split_validation
from onespike.evaluate import SNNEvaluation, agreement, evaluate_snn, summarize
from onespike.io import load_model
from onespike.metrics import HOROWITZ_45NM, count_ops
from onespike.network import SpikingNetwork
from onespike.stdb import STDBConfig, finetune_stdb, save_hybrid
from onespike.train import evaluate
from ttfs import models_dir, out_dir, trained

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
MODELS = ROOT / "models"
CHECKPOINTS = ROOT.parent / "runs" / "bench-hybrid"
STEPS = tuple(range(1, 9))
MARKED = 5
INIT_GRID = (0.2, 0.3, 0.4, 0.5, 0.6)
HELD_OUT = 5000
INIT_VALIDATION = 2000  # held-out images that choose the initial threshold
NETWORKS = {
    "mnist": "mnist-train55k-convnet-bn-e12",
    "fashion-mnist": "fashion-mnist-train55k-convnet-bn-e8",
}
QUICK_STEPS = (2, 5)
LEGACY: dict[str, Any] = {"input_code": "ttfs", "bias": "every_step"}
"""The conversion before calibration: the image twice, the bias at every step."""
CALIBRATION_IMAGES = 256  # training images that set the calibrated thresholds
QUICK_TRAIN = 6000  # rate.py --quick: its ConvNets train 1 epoch on the first 6,000 images
STDB_LR = 1e-3  # --lr's default, the peak learning rate of every STDB run here


def calibration_images(images: torch.Tensor, quick: bool) -> torch.Tensor:
    """The training images that calibrate a hybrid conversion (a quarter for ``--quick``)."""
    return images[: CALIBRATION_IMAGES // (4 if quick else 1)]


def row_order(row: dict[str, Any]) -> tuple[int, int, bool]:
    """Rows by dataset (as in ``NETWORKS``), T, then before / after STDB."""
    return list(NETWORKS).index(row["dataset"]), row["steps"], row["finetuned"]


def choose_init(
    graph: onespike.Graph, steps: int, validation: Dataset, *, legacy: bool = False
) -> tuple[float, dict[float, float]]:
    """The uniform threshold of ``INIT_GRID`` with the best validation accuracy at ``steps``
    (the conversion without calibration data; ``legacy``: with the legacy code)."""
    options: dict[str, Any] = LEGACY if legacy else {}
    tried = {
        scale: evaluate_snn(
            onespike.convert(
                graph, onespike.HybridConfig(steps=steps, threshold_scale=scale, **options)
            ),
            validation,
            batch_size=1000,
        ).accuracy
        for scale in INIT_GRID
    }
    best = max(tried, key=lambda s: (tried[s], -s))
    return best, tried


def hidden_spikes_per_neuron(net: SpikingNetwork, evaluation: SNNEvaluation) -> float:
    """Mean spikes per hidden neuron (neuron populations other than the output) per image."""
    hidden = {p.name for p in net.populations if p.kind == "neuron" and not p.is_output}
    layers = [layer for layer in evaluation.ops.layers if layer.name in hidden]
    neurons = sum(layer.neurons for layer in layers)
    return sum(layer.spikes for layer in layers) / (neurons * evaluation.samples)


def max_spikes(net: SpikingNetwork, images: torch.Tensor) -> int:
    """The most spikes any neuron of any population emitted, counted by the stepped simulator."""
    result = onespike.simulate(net, images, method="stepped")
    return max(int(result.spike_counts[p.name].max()) for p in net.populations[1:])


def energy_breakdown(evaluation: SNNEvaluation) -> dict[str, float]:
    """Per-image energy (pJ, 45 nm) of the SNN by operation kind."""
    ops, model = evaluation.ops, HOROWITZ_45NM
    return {
        "analog_macs_pj": ops.per_sample("macs") * model.mac_pj,
        "synops_pj": ops.per_sample("synops") * model.add_pj,
        "bias_pj": ops.per_sample("bias_events") * model.add_pj,
        "neuron_updates_pj": ops.per_sample("neuron_updates") * model.neuron_update_pj,
    }


def row_extras(
    net: SpikingNetwork,
    evaluation: SNNEvaluation,
    probe: torch.Tensor,
    share: float,
) -> dict[str, Any]:
    """Fields of a row beyond the summarize() record."""
    return {
        "marked": net.config.steps == MARKED,
        "hidden_spikes_per_neuron": hidden_spikes_per_neuron(net, evaluation),
        "max_spikes_per_neuron": max_spikes(net, probe),
        "stepped_check": agreement(net, probe),
        "first_layer_mac_share": share,
        "energy_breakdown": energy_breakdown(evaluation),
        "accuracy_by_steps": evaluation.accuracy_by_steps(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def first_layer_mac_share(graph: onespike.Graph) -> float:
    """The share of the ANN's MACs spent in the layer(s) the input feeds."""
    ops = count_ops(graph, 1)
    pops = {p.name: p for p in onespike.network.populations(graph)}
    first = [
        layer.macs
        for layer in ops.layers
        if layer.kind == "neuron" and "input" in pops[layer.name].sources
    ]
    return sum(first) / ops.total("macs")


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| dataset | T | STDB | ANN acc. | SNN acc. | spikes/hidden neuron | max spikes/neuron | "
        "SNN MACs | synops | energy SNN/ANN | ANN/SNN | ANN/SNN (MACs + acc. only) |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        mark = "**5**" if r["marked"] else str(r["steps"])
        lines.append(
            f"| {r['dataset']} | {mark} | {'after' if r['finetuned'] else 'before'} | "
            f"{100 * r['ann_accuracy']:.2f}% | {100 * r['snn_accuracy']:.2f}% | "
            f"{r['hidden_spikes_per_neuron']:.3f} | {r['max_spikes_per_neuron']} | "
            f"{r['snn_macs']:,.0f} | {r['synops']:,.0f} | {r['energy_ratio_vs_ann']:.3f} | "
            f"{1 / r['energy_ratio_vs_ann']:.1f}x | {1 / r['energy_ratio_macs_accumulates']:.1f}x |"
        )
    sweeps = {r["dataset"]: r for r in rows if not r["finetuned"]}
    for dataset, r in sweeps.items():
        steps = r["sweep_steps"]
        lines += [
            "",
            f"Converted (before STDB), {dataset}, {r['sweep_test_images']} test images:",
            "",
            "| conversion | " + " | ".join(f"T={t}" for t in steps) + " |",
            "|---|" + "---|" * len(steps),
        ]
        for name, accs in r["converted_sweep"].items():
            lines.append(f"| {name} | " + " | ".join(f"{100 * a:.2f}%" for a in accs) + " |")
    curves = [r for r in rows if r["finetuned"]]
    for r in curves:
        history = r["stdb"]["history"]
        lines += [
            "",
            f"STDB, {r['dataset']}, T={r['steps']}: validation accuracy per epoch "
            f"({r['stdb']['validation_images']} held-out training images; best epoch "
            f"{r['stdb']['best_epoch']}): "
            + ", ".join(f"{100 * h['val_accuracy']:.2f}%" for h in history),
        ]
    return "\n".join(lines) + "\n"


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for dataset in NETWORKS:
        before = [r for r in rows if r["dataset"] == dataset and not r["finetuned"]]
        if before:
            r = before[0]
            accs = r["converted_sweep"]["calibrated"]
            drop = 100 * max((max(accs[:i]) - accs[i] for i in range(1, len(accs))), default=0.0)
            drop = max(drop, 0.0)
            out.append(
                f"{dataset} converted, T = {r['sweep_steps'][0]}..{r['sweep_steps'][-1]}: the "
                f"largest fall as T grows is {drop:.2f} points (target <= 1): "
                f"{'met' if drop <= 1.0 else 'NOT met'}"
            )
            if MARKED in r["sweep_steps"]:
                acc = accs[r["sweep_steps"].index(MARKED)]
                gap = 100 * (r["ann_accuracy"] - acc)
                out.append(
                    f"{dataset} converted T={MARKED} (HybridConfig's defaults): {100 * acc:.2f}% "
                    f"vs ANN {100 * r['ann_accuracy']:.2f}% ({gap:+.2f} points below; target "
                    f"<= 5): {'met' if gap <= 5.0 else 'NOT met'}"
                )
            for m in before:
                if m["marked"] and m.get("bias", "spread") != "spread":
                    gap = 100 * (m["ann_accuracy"] - m["snn_accuracy"])
                    out.append(
                        f"{dataset} T={MARKED}, the converted network STDB starts from "
                        f"(bias={m['bias']}): {100 * m['snn_accuracy']:.2f}% ({gap:+.2f} points "
                        "below the ANN)"
                    )
        mine = [r for r in rows if r["dataset"] == dataset and r["marked"] and r["finetuned"]]
        if not mine:
            continue
        r = mine[0]
        gap = 100 * (r["ann_accuracy"] - r["snn_accuracy"])
        out.append(
            f"{dataset} T=5 after STDB: {100 * r['snn_accuracy']:.2f}% vs ANN "
            f"{100 * r['ann_accuracy']:.2f}% ({gap:+.2f} points below; target <= 1): "
            f"{'met' if gap <= 1.0 else 'NOT met'}"
        )
        out.append(
            f"{dataset} T=5 after STDB: at most {r['max_spikes_per_neuron']} spike per neuron "
            f"(stepped, {r['stepped_check']['samples']} images), mean "
            f"{r['hidden_spikes_per_neuron']:.3f} per hidden neuron: "
            f"{'met' if r['max_spikes_per_neuron'] <= 1 else 'NOT met'}"
        )
        ratio = 1 / r["energy_ratio_vs_ann"]
        plain = 1 / r["energy_ratio_macs_accumulates"]
        out.append(
            f"{dataset} T=5 after STDB: compute energy {ratio:.2f}x lower than the ANN (45 nm, "
            f"MACs, accumulates, bias adds and neuron updates; target >= 5x): "
            f"{'met' if ratio >= 5 else 'NOT met'}; counting MACs and accumulates only "
            f"{plain:.2f}x; the analog first step alone costs "
            f"{100 * r['first_layer_mac_share']:.1f}% of the ANN's MACs"
        )
    return out


def quick_model(dataset: str, train_part: Dataset, test: Dataset, models: Path) -> Any:
    """The one-epoch ConvNet of ``rate.py --quick`` (same subset and cache key), trained if
    missing."""
    subset = replace(train_part.head(QUICK_TRAIN), name=f"{dataset}-quick6k")
    return trained("convnet-bn", subset, test, 1, models=models)[0]


def converted_sweep(
    graph: onespike.Graph,
    test: Dataset,
    calibration: torch.Tensor,
    steps: list[int],
    validation: Dataset,
    legacy: bool,
    per_layer: bool = False,
) -> dict[str, list[float]]:
    """Converted (not fine-tuned) accuracy at every T: onespike's conversion (calibrated per
    channel); with ``per_layer`` also calibrated per layer; with ``legacy`` the earlier one
    (bias at every step, one threshold for all layers, chosen from ``INIT_GRID`` on held-out
    images)."""
    out: dict[str, list[float]] = {"calibrated": []}
    if per_layer:
        out["calibrated per layer"] = []
    if legacy:
        out["legacy"] = []
    for t in steps:
        net = onespike.convert(graph, onespike.HybridConfig(steps=t), calibration=calibration)
        out["calibrated"].append(evaluate_snn(net, test, batch_size=500).accuracy)
        if per_layer:
            layer = onespike.HybridConfig(steps=t, calibration="layer")
            net = onespike.convert(graph, layer, calibration=calibration)
            out["calibrated per layer"].append(evaluate_snn(net, test, batch_size=500).accuracy)
        if legacy:
            init, _ = choose_init(graph, t, validation, legacy=True)
            old = onespike.HybridConfig(steps=t, threshold_scale=init, **LEGACY)
            out["legacy"].append(evaluate_snn(onespike.convert(graph, old), test).accuracy)
        print(f"  T={t}: converted {100 * out['calibrated'][-1]:.2f}%", flush=True)
    return out


def macs_and_accumulates_ratio(row: dict[str, Any]) -> float:
    """SNN/ANN energy counting only MACs and accumulates (synops), 45 nm."""
    model = HOROWITZ_45NM
    snn = row["snn_macs"] * model.mac_pj + row["synops"] * model.add_pj
    return float(snn / (row["ann_macs"] * model.mac_pj))


def run_dataset(dataset: str, args: argparse.Namespace, config: STDBConfig) -> list[dict[str, Any]]:
    full = load_dataset(dataset, "train")
    train_part, validation = split_validation(full, HELD_OUT / len(full), seed=0)
    models = models_dir(args.out, args.quick)
    checkpoints = args.out / "checkpoints" if args.quick else CHECKPOINTS
    if not args.quick and not (MODELS / NETWORKS[dataset] / "model.json").exists():
        raise SystemExit(
            f"{MODELS / NETWORKS[dataset]} is missing: run benchmarks/rate.py first (it trains "
            "the ConvNets every method of the comparison shares)"
        )
    data = train_part.head(args.samples)
    test = load_dataset(dataset, "test", limit=args.limit)
    if args.quick:
        validation = validation.head(500)
        model = quick_model(dataset, train_part, test, models)
    else:
        model, _ = load_model(MODELS / NETWORKS[dataset])
    model.eval()
    ann_accuracy = evaluate(model, test)
    graph = onespike.extract(model, test.images[:2])
    graph = onespike.normalize(graph, batches(train_part.head(1000 if args.quick else 5000), 500))
    calibration = calibration_images(train_part.images, args.quick)
    share = first_layer_mac_share(graph)
    probe = test.images[: 16 if args.quick else 64]
    sweep_test = test.head(args.sweep_limit) if args.sweep_limit else test
    print(f"{dataset}: ANN {100 * ann_accuracy:.2f}%; converted at T = {args.steps}", flush=True)
    sweep = converted_sweep(
        graph,
        sweep_test,
        calibration,
        list(args.steps),
        validation.head(INIT_VALIDATION),
        args.legacy,
        args.per_layer,
    )
    rows: list[dict[str, Any]] = []
    # STDB options that change the training get their own checkpoints and saved networks
    variant = "".join(
        (
            f"-shift{config.shift}" if config.shift else "",
            "-flip" if config.flip else "",
            f"-distill{config.distill_weight:g}" if config.distill_weight else "",
            f"-tau{config.distill_temperature:g}"
            if config.distill_weight
            and config.distill_temperature != STDBConfig.distill_temperature
            else "",
            "" if config.train_readout_scale else "-fixed-readout",
            f"-time{config.time_loss_weight:g}"
            if config.time_loss_weight != STDBConfig.time_loss_weight
            else "",
            f"-lr{config.lr:g}" if config.lr != STDB_LR else "",
            f"-seed{config.seed}" if config.seed else "",
            "" if args.bias == "spread" else f"-bias-{args.bias}",
        )
    )
    for steps in args.stdb_steps:
        hybrid = onespike.HybridConfig(steps=steps, bias=args.bias)
        net = onespike.convert(graph, hybrid, calibration=calibration)
        stdb_validation = validation.head(args.val_limit)
        for finetuned in (False, True):
            extra: dict[str, Any] = {
                "converted_sweep": sweep,
                "sweep_steps": list(args.steps),
                "sweep_test_images": len(sweep_test),
            }
            if finetuned:
                started = time.perf_counter()
                result = finetune_stdb(
                    net,
                    data,
                    config,
                    val_data=stdb_validation,
                    checkpoint_dir=checkpoints / f"{dataset}-T{steps}{variant}",
                    progress=args.progress,
                    teacher=model if config.distill_weight else None,
                )
                net = result.net
                extra["stdb"] = {
                    **asdict(config),
                    "samples": len(data),
                    "validation_images": len(stdb_validation),
                    "seconds": time.perf_counter() - started,
                    "history": result.history.history,
                    "best_epoch": result.best_epoch,
                    "leak": net.config.leak,
                }
                save_hybrid(
                    models / f"{dataset}-convnet-bn-hybrid-T{steps}{variant}",
                    net,
                    extra={"dataset": dataset, "stdb": extra["stdb"]},
                )
            evaluation = evaluate_snn(net, test, batch_size=500)
            row = summarize(
                dataset=dataset,
                model="convnet-bn",
                method="hybrid",
                steps=steps,
                ann_accuracy=ann_accuracy,
                evaluation=evaluation,
                ann_graph=graph,
                energy_model="45nm",
            )
            row["finetuned"] = finetuned
            row["bias"] = args.bias
            row.update(row_extras(net, evaluation, probe, share))
            row["energy_ratio_macs_accumulates"] = macs_and_accumulates_ratio(row)
            row.update(extra)
            rows.append(row)
            print(
                f"{dataset} T={steps} {'STDB' if finetuned else 'converted'}: "
                f"SNN {row['snn_accuracy']:.4f} vs ANN {ann_accuracy:.4f}, energy "
                f"{1 / row['energy_ratio_vs_ann']:.2f}x lower "
                f"(MACs + accumulates only: {1 / row['energy_ratio_macs_accumulates']:.2f}x)",
                flush=True,
            )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None, help="datasets to run")
    parser.add_argument("--steps", type=int, nargs="*", default=None, help="T (default 1..8)")
    parser.add_argument("--samples", type=int, default=None, help="STDB training images")
    parser.add_argument("--epochs", type=int, default=2, help="STDB epochs (at most)")
    parser.add_argument("--patience", type=int, default=2, help="early stopping patience")
    parser.add_argument(
        "--stdb-steps", type=int, nargs="*", default=None, help="T fine-tuned (default 5)"
    )
    parser.add_argument(
        "--sweep-limit", type=int, default=None, help="test images of the converted sweep"
    )
    parser.add_argument(
        "--val-limit", type=int, default=2000, help="held-out images scored every STDB epoch"
    )
    parser.add_argument("--train-leak", action="store_true", help="STDB also trains the leak")
    parser.add_argument(
        "--shift", type=int, default=0, help="STDB augmentation: random shifts of up to N pixels"
    )
    parser.add_argument(
        "--flip", action="store_true", help="STDB augmentation: random left-right mirroring"
    )
    parser.add_argument(
        "--distill",
        type=float,
        default=0.0,
        metavar="W",
        help="STDB: weight of the distillation term from the ANN (0: labels only)",
    )
    parser.add_argument(
        "--distill-temperature",
        type=float,
        default=STDBConfig.distill_temperature,
        help="its softening temperature",
    )
    parser.add_argument(
        "--bias",
        choices=("spread", "first_step"),
        default="spread",
        help="how the fine-tuned network's bias enters (HybridConfig.bias)",
    )
    parser.add_argument(
        "--fixed-readout",
        action="store_true",
        help="STDB without the trained readout scale (the membrane loss in normalised units)",
    )
    parser.add_argument(
        "--legacy", action="store_true", help="also sweep the uncalibrated legacy conversion"
    )
    parser.add_argument(
        "--per-layer",
        action="store_true",
        help="also sweep the conversion calibrated per layer instead of per channel",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        metavar="DIR",
        help="only merge the hybrid.json / hybrid.meta.json of runs written with --out DIR",
    )
    parser.add_argument("--lr", type=float, default=STDB_LR, help="STDB peak learning rate")
    parser.add_argument("--seed", type=int, default=0, help="STDB seed (batch order, shifts)")
    parser.add_argument(
        "--time-loss-weight",
        type=float,
        default=STDBConfig.time_loss_weight,
        help="STDB: weight of the output spike-time term of the loss",
    )
    parser.add_argument("--limit", type=int, default=None, help="test images (default: all)")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument(
        "--out", type=Path, default=None, help="results directory (default: see module doc)"
    )
    parser.add_argument("--quick", action="store_true", help="small subsets, 1 epoch (CI)")
    args = parser.parse_args()
    args.out = out_dir(args.out, args.quick)
    if args.steps is None:
        args.steps = list(QUICK_STEPS if args.quick else STEPS)
    if args.stdb_steps is None:
        args.stdb_steps = [MARKED]
    if args.samples is None:
        args.samples = 500 if args.quick else 20000
    if args.quick:
        args.epochs = 1
        args.limit = args.limit or 200
        args.val_limit = min(args.val_limit, 200)
    torch.set_num_threads(args.threads)
    config = STDBConfig(
        epochs=args.epochs,
        lr=args.lr,
        time_loss_weight=args.time_loss_weight,
        patience=args.patience,
        seed=args.seed,
        train_leak=args.train_leak,
        shift=args.shift,
        flip=args.flip,
        distill_weight=args.distill,
        distill_temperature=args.distill_temperature,
        train_readout_scale=not args.fixed_readout,
    )
    suffix = "-quick" if args.quick else ""
    if args.merge:
        return merge(args.merge, args.out, suffix)
    path = args.out / f"hybrid{suffix}.json"
    rows: list[dict[str, Any]] = []
    if path.exists():  # keep the rows this run does not redo
        redo = set(args.only or NETWORKS)
        rows = [
            r
            for r in json.loads(path.read_text())
            if r["dataset"] not in redo or r["steps"] not in args.stdb_steps
        ]
    started = time.perf_counter()
    for dataset in NETWORKS:
        if args.only and dataset not in args.only:
            continue
        rows += run_dataset(dataset, args, config)
        rows.sort(key=row_order)
        atomic_write_json(path, rows)
    meta: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "torch": torch.__version__,
        "models": NETWORKS,
        "steps": list(args.steps),
        "stdb_steps": list(args.stdb_steps),
        "calibration_images": CALIBRATION_IMAGES,
        "legacy_threshold_grid": list(INIT_GRID),
        "legacy_threshold_chosen_on": f"{INIT_VALIDATION} of {HELD_OUT} held-out training images",
        "load_average": os.getloadavg(),
        "bias": args.bias,
        "stdb_budget": {
            "samples": args.samples,
            "epochs": args.epochs,
            "config": asdict(config),
            "note": "the first --samples training images; early stopping on held-out images",
        },
        "test_images": args.limit or "all",
        "energy_model": "45nm (Horowitz, ISSCC 2014), compute only",
        "seconds": time.perf_counter() - started,
    }
    if args.quick:
        meta["quick"] = True
        meta["models"] = {d: f"{d}-quick6k-convnet-bn-e1" for d in NETWORKS}
    write(rows, meta, args.out, suffix)
    return 0


def write(rows: list[dict[str, Any]], meta: dict[str, Any], out: Path, suffix: str) -> None:
    """``hybrid{suffix}.json``, ``.meta.json`` (with the verdicts), ``.md`` and ``.png``."""
    rows = sorted(rows, key=row_order)
    notes = verdicts(rows)
    meta = {**meta, "verdicts": notes}
    atomic_write_json(out / f"hybrid{suffix}.json", rows)
    atomic_write_json(out / f"hybrid{suffix}.meta.json", meta)
    table = markdown(rows)
    bullets = "\n".join(f"- {v}" for v in notes)
    atomic_write_text(out / f"hybrid{suffix}.md", f"{table}\n{bullets}\n")
    plot(rows, out / f"hybrid{suffix}.png")
    print(table)
    print("\n".join(notes))


def merge(parts: list[Path], out: Path, suffix: str) -> int:
    """Combine runs written to separate ``--out`` directories (e.g. one dataset each, run side
    by side) into ``out``; a dataset present in two of them is an error."""
    rows: list[dict[str, Any]] = []
    metas: list[dict[str, Any]] = []
    for part in parts:
        data = part / f"hybrid{suffix}.json"
        described = part / f"hybrid{suffix}.meta.json"
        if not data.is_file() or not described.is_file():
            raise SystemExit(f"{part} has no hybrid{suffix}.json and .meta.json to merge")
        found = json.loads(data.read_text())
        clash = {r["dataset"] for r in found} & {r["dataset"] for r in rows}
        if clash:
            raise SystemExit(f"{part} repeats dataset(s) {sorted(clash)} of an earlier part")
        rows += found
        metas.append(json.loads(described.read_text()))
    meta = {
        **{k: v for k, v in metas[0].items() if k != "verdicts"},
        "merged_from": [str(p) for p in parts],
        "parts": [{k: v for k, v in m.items() if k != "verdicts"} for m in metas],
        "merged": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    write(rows, meta, out, suffix)
    return 0


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Converted accuracy against T, and the STDB validation accuracy after every epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for index, dataset in enumerate(NETWORKS):
        mine = [r for r in rows if r["dataset"] == dataset]
        if not mine:
            continue
        color = f"C{index}"
        before = next((r for r in mine if not r["finetuned"]), None)
        if before is not None:
            for name, accs in before["converted_sweep"].items():
                style = "-" if name == "calibrated" else ":"
                left.plot(
                    before["sweep_steps"],
                    [100 * a for a in accs],
                    style,
                    color=color,
                    marker="o",
                    ms=3,
                    label=f"{dataset}, {name}",
                )
            left.axhline(100 * before["ann_accuracy"], color=color, lw=0.8, ls="--")
        for r in mine:
            if r["finetuned"]:
                history = r["stdb"]["history"]
                right.plot(
                    [h["epoch"] for h in history],
                    [100 * h["val_accuracy"] for h in history],
                    color=color,
                    marker="o",
                    ms=3,
                    label=f"{dataset}, T={r['steps']} (held-out images)",
                )
                right.axhline(100 * r["ann_accuracy"], color=color, lw=0.8, ls="--")
    left.set_title("converted (no fine-tuning); dashed: ANN", fontsize=9)
    left.set_xlabel("time steps T")
    right.set_title("STDB: validation accuracy after every epoch; dashed: ANN (test)", fontsize=9)
    right.set_xlabel("epoch")
    for ax in (left, right):
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.suptitle("Single-spike hybrid encoding, BN ConvNets")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
