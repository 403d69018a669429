"""Deep networks (ResNet-20, VGG-11-slim): every method of onespike on the same trained weights.

For each architecture (``resnet20``, ``vgg11-slim``, :mod:`onespike.models`) and dataset
(Fashion-MNIST, MNIST) one network is trained on 55,000 training images (the other 5,000 are
held out, as in ``rate.py``: every choice below is made on them, never on the test set) and its
weights are committed in ``benchmarks/weights/<dataset>-<arch>/``; every later part loads
them, and every row records their SHA-256 (``weights_sha256``). Parts (``--methods``):

- ``ann``: the float ANN: test accuracy, MACs, forward time per image, training history;
- ``ttfs``: exact TTFS conversion (no rectifier events: same outputs, fewer spikes) at T in
  4, 8, 16, 32, 64, with the decision time (``SimResult.decision_steps``: the steps each
  sample runs to its first output spike; mean, p50/p90/p99 and max in every TTFS row);
- ``ttfs-aware``: fine-tuning through the exact T-step TTFS function
  (:func:`onespike.optimize_for_ttfs`) at T in 4, 8, 16, evaluated in float64 like
  ``ttfs_optimise.py``;
- ``rate``: rate coding up to T = 256 in the variants of ``rate.py``: ``plain-max`` (max
  normalisation, membranes from 0: the baseline), ``plain`` (onespike's defaults) and
  ``optimised`` (threshold scale and initial membrane chosen with ``rate.py``'s
  ``choose_scale``, then the early-exit patience for them with its ``choose_patience``, on
  held-out images at ``SELECTION_STEPS``; ``rate.py`` chooses scale and patience jointly,
  four times the simulations, too many for these networks on 2 cores);
- ``binary``: (Fashion-MNIST) the same architecture trained with binary hidden weights, its
  ANN and its rate conversion in the same variants;
- ``hybrid``: single-spike hybrid encoding converted at T = 1..8 (spike values and thresholds
  calibrated per channel on the first 256 training images, as in ``hybrid.py``), and
  fine-tuned with STDB (:func:`onespike.finetune_stdb`) at T = 5.

Every part is resumable and re-runnable on its own: it writes
``results/deep-parts/<arch>-<dataset>-<part>.json`` (rows and the part's meta: command,
threads, ``os.getloadavg()`` at start and end, sizes) and then merges every part present into
``results/deep.json``, ``deep.meta.json`` (verdicts), ``deep.md``, ``deep.png`` (every
dataset) and ``deep-<dataset>.png`` (one figure per dataset); other parts' rows are kept.
``--merge`` only merges. Training, TTFS-aware fine-tuning and STDB keep per-epoch
checkpoints in ``runs/bench-deep/``: an interrupted part resumes, a finished one deletes its
fine-tuning checkpoints, so that a rerun (e.g. after a change in onespike's hybrid conversion
or STDB) fine-tunes afresh.

Simulations that cost one ANN pass per step on every test image are the long pole on a
2-core machine: rate rows and the hybrid sweep run on the first ``--sim-limit`` test images
(default 1,000; each row records ``samples``), the ANN, TTFS, TTFS-aware and hybrid T = 5 rows
on the whole test set.

``--quick`` (CI-sized: Fashion-MNIST only, 1 epoch on 1,000 images, 64 test and held-out
images, few T, fine-tuning on a few hundred images) writes ``deep-quick.*`` and its parts,
weights and checkpoints into ``--out`` (default ``runs/bench-quick``).

Usage::

    ONESPIKE_DATA=../shared/datasets python benchmarks/deep.py [--threads 1]
    python benchmarks/deep.py --only resnet20 --dataset fashion-mnist --methods hybrid
    python benchmarks/deep.py --merge
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

import onespike
from hybrid import calibration_images, hidden_spikes_per_neuron
from onespike._fs import atomic_write, atomic_write_json, atomic_write_text
from onespike.data import Dataset, batches, load_dataset, split_validation
from onespike.evaluate import SNNEvaluation, evaluate_snn, evaluate_snn_steps, summarize
from onespike.io import load_model, save_model
from onespike.models import build_model
from onespike.network import SpikingNetwork
from onespike.optimize import optimize_for_ttfs
from onespike.stdb import STDBConfig, finetune_stdb, save_hybrid
from onespike.train import TrainConfig, evaluate, train
from rate import PATIENCES, SELECTION_MARGIN, choose_patience, choose_scale, steps_within

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
WEIGHTS = ROOT / "weights"
RUNS = ROOT.parent / "runs" / "bench-deep"
QUICK_OUT = ROOT.parent / "runs" / "bench-quick"
ARCHITECTURES = ("resnet20", "vgg11-slim")
DATASETS = ("fashion-mnist", "mnist")
METHODS = ("ann", "ttfs", "ttfs-aware", "rate", "binary", "hybrid")
BINARY_DATASETS = ("fashion-mnist",)
HELD_OUT = 5000
TTFS_STEPS = (4, 8, 16, 32, 64)
AWARE_STEPS = (4, 8, 16)
RATE_STEPS = (4, 8, 16, 32, 64, 128, 256)
RATE_VARIANTS = ("plain-max", "plain", "optimised")
HYBRID_STEPS = tuple(range(1, 9))
STDB_STEPS = 5
# rate.py's selection runs at 64 steps; deep networks settle later, so they choose at 128.
SELECTION_STEPS = 128
# ... and their predictions keep changing for tens of steps: rate.py's patiences (2 to 6)
# stopped ResNet-20 at 31% (MNIST) and 49% (Fashion-MNIST), none reaching the target on
# held-out images, so the full run chooses among doublings up to 64 (--quick keeps rate.py's).
DEEP_PATIENCES = (2, 4, 8, 16, 32, 64)
QUICK = {
    "datasets": ("fashion-mnist",),
    "train": 1000,
    "test": 64,
    "held_out": 64,
    "ttfs": (4, 16),
    "aware": (4,),
    "rate": (4, 8),
    "hybrid": (2, 5),
    "stdb_samples": 128,
    "finetune_samples": 256,
}


# the networks -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """How one network of the benchmark is trained (batch 128, cosine schedule, seed 0)."""

    epochs: int
    optimizer: str
    lr: float
    weight_decay: float

    def config(self, epochs: int | None = None) -> TrainConfig:
        return TrainConfig(
            epochs=self.epochs if epochs is None else epochs,
            batch_size=128,
            lr=self.lr,
            optimizer="sgd" if self.optimizer == "sgd" else "adam",
            momentum=0.9,
            weight_decay=self.weight_decay,
            lr_schedule="cosine",
            seed=0,
        )


# Full precision: SGD with momentum 0.9 and weight decay 5e-4 (the CIFAR recipe of He et al.,
# arXiv 1512.03385, with a cosine schedule); binary hidden weights: Adam without weight decay
# (decay pulls the latent weights to zero, where their signs flip at random). Epochs fit a
# 2-core machine: a ResNet-20 epoch takes about 5 minutes on one thread, a VGG-11-slim one 1.2.
RECIPES: dict[tuple[str, str, bool], Recipe] = {
    ("resnet20", "fashion-mnist", False): Recipe(10, "sgd", 0.05, 5e-4),
    ("resnet20", "mnist", False): Recipe(4, "sgd", 0.05, 5e-4),
    ("resnet20", "fashion-mnist", True): Recipe(8, "adam", 1e-3, 0.0),
    ("vgg11-slim", "fashion-mnist", False): Recipe(12, "sgd", 0.05, 5e-4),
    ("vgg11-slim", "mnist", False): Recipe(6, "sgd", 0.05, 5e-4),
    ("vgg11-slim", "fashion-mnist", True): Recipe(12, "adam", 1e-3, 0.0),
}


@dataclass
class Context:
    """What every part of one (architecture, dataset) needs."""

    arch: str
    dataset: str
    train: Dataset
    held_out: Dataset
    test: Dataset
    args: argparse.Namespace
    # prepare()'s results by binary flag, so the parts of one run extract each network once
    prepared: dict[bool, Prepared] = field(default_factory=dict)

    @property
    def quick(self) -> bool:
        return bool(self.args.quick)

    def limited(self, n: int | None) -> Dataset:
        return self.test if n is None else self.test.head(n)


def splits(dataset: str, quick: bool) -> tuple[Dataset, Dataset, Dataset]:
    """Training images (55,000, less for ``--quick``), the held-out ones and the test set."""
    full = load_dataset(dataset, "train")
    rest, held_out = split_validation(full, HELD_OUT / len(full), seed=0)
    rest = replace(rest, name=f"{dataset}-train55k")
    test = load_dataset(dataset, "test")
    if quick:
        rest = replace(rest.head(QUICK["train"]), name=f"{dataset}-quick{QUICK['train']}")
        held_out = held_out.head(QUICK["held_out"])
        test = test.head(QUICK["test"])
    return rest, held_out, test


def weights_dir(ctx: Context, binary: bool) -> Path:
    name = f"{ctx.dataset}-{ctx.arch}{'-binary' if binary else ''}"
    return ctx.args.out / "weights" / name if ctx.quick else WEIGHTS / name


def runs_dir(ctx: Context) -> Path:
    return ctx.args.out / "deep-runs" if ctx.quick else RUNS


def network(ctx: Context, binary: bool = False) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network: loaded from its weights directory, else trained and saved there."""
    directory = weights_dir(ctx, binary)
    if not (directory / "model.json").exists():
        recipe = RECIPES[(ctx.arch, ctx.dataset, binary)]
        config = recipe.config(1 if ctx.quick else None)
        torch.manual_seed(0)
        model, spec = build_model(
            ctx.arch,
            ctx.train.image_shape,
            ctx.train.num_classes,
            **({"binary": True} if binary else {}),
        )
        load_start = list(os.getloadavg())
        result = train(
            model,
            ctx.train,
            config,
            val_ds=ctx.held_out,
            checkpoint_dir=runs_dir(ctx) / "checkpoints" / directory.name,
            progress=False,
        )
        model.eval()
        save_model(
            directory,
            model,
            spec,
            dataset=ctx.train.name,
            accuracy=evaluate(model, ctx.test),
            extra={
                "train_config": config.to_json(),
                "history": result.history,
                "train_seconds": sum(h["seconds"] for h in result.history),
                "torch_threads": torch.get_num_threads(),
                "loadavg_start": load_start,
                "loadavg_end": list(os.getloadavg()),
                "command": command(),
            },
        )
    return load_model(directory)


def command() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])


def ann_seconds_per_image(model: nn.Module, data: Dataset) -> float:
    """Median over 3 passes of the ANN's forward time per image (batches of 1,000)."""
    times = []
    with torch.no_grad():
        for _ in range(3):
            started = time.perf_counter()
            for images, _labels in batches(data, 1000):
                model(images)
            times.append(time.perf_counter() - started)
    return sorted(times)[1] / len(data)


# rows -------------------------------------------------------------------------------------
def base_row(ctx: Context, meta: dict[str, Any], binary: bool = False) -> dict[str, Any]:
    return {"binary": binary, "weights": meta["sha256"], "train_set": meta["dataset"]}


def snn_row(
    ctx: Context,
    net: SpikingNetwork,
    method: str,
    steps: int,
    ann_accuracy: float,
    graph: onespike.Graph,
    evaluation: SNNEvaluation,
    meta: dict[str, Any],
    *,
    sim_seconds: float,
    ann_s: float,
    binary: bool = False,
) -> dict[str, Any]:
    row = summarize(
        dataset=ctx.dataset,
        model=ctx.arch,
        method=method,
        steps=steps,
        ann_accuracy=ann_accuracy,
        evaluation=evaluation,
        ann_graph=graph,
        energy_model="45nm",
    )
    row.update(base_row(ctx, meta, binary))
    row["depth"] = net.depth
    row["sim_s_per_image"] = sim_seconds / evaluation.samples
    row["ann_s_per_image"] = ann_s
    row["sim_time_vs_ann"] = row["sim_s_per_image"] / ann_s
    return row


def timed_evaluation(net: SpikingNetwork, data: Dataset) -> tuple[SNNEvaluation, float]:
    started = time.perf_counter()
    evaluation = evaluate_snn(net, data, batch_size=500)
    return evaluation, time.perf_counter() - started


@dataclass(frozen=True)
class Prepared:
    """A trained network and what every method reads from it."""

    model: nn.Module
    meta: dict[str, Any]
    extracted: onespike.Graph
    graph: onespike.Graph  # normalised at the 99.99th percentile
    accuracy: float  # on the test set
    ann_s: float  # forward seconds per test image

    def parts(self) -> tuple[nn.Module, dict[str, Any], onespike.Graph, float, float]:
        return self.model, self.meta, self.graph, self.accuracy, self.ann_s


def prepare(ctx: Context, binary: bool = False) -> Prepared:
    """The network, its meta data, its graphs, test accuracy and forward time (cached)."""
    if binary not in ctx.prepared:
        model, meta = network(ctx, binary)
        model.eval()
        extracted = onespike.extract(model, ctx.test.images[:2])
        ctx.prepared[binary] = Prepared(
            model,
            meta,
            extracted,
            onespike.normalize(extracted, calibration(ctx)),
            evaluate(model, ctx.test),
            ann_seconds_per_image(model, ctx.test),
        )
    return ctx.prepared[binary]


def calibration(ctx: Context) -> list[torch.Tensor]:
    """The normalisation images: the first 5,000 training images (1,000 for ``--quick``)."""
    return [images for images, _ in batches(ctx.train.head(1000 if ctx.quick else 5000), 500)]


def ann_row(ctx: Context, binary: bool) -> dict[str, Any]:
    """The float (or binary-weight) ANN: accuracy, MACs, forward time, how it was trained."""
    model, meta, graph, accuracy, ann_s = prepare(ctx, binary).parts()
    ops = onespike.count_ops(graph, 1)
    extra = meta.get("extra") or {}
    history = extra.get("history") or []
    print(f"{ctx.arch} {ctx.dataset} binary={binary}: ANN {accuracy:.4f}", flush=True)
    return {
        "dataset": ctx.dataset,
        "model": ctx.arch,
        "method": "ann",
        "steps": None,
        "ann_accuracy": accuracy,
        "snn_accuracy": None,
        "held_out_accuracy": evaluate(model, ctx.held_out),
        "ann_macs": ops.per_sample("macs"),
        "ann_energy_pj": onespike.estimate_energy(ops, "45nm").per_sample_pj,
        "ann_s_per_image": ann_s,
        "depth": onespike.convert(graph, onespike.TTFSConfig(steps=2)).depth,
        "parameters": sum(p.numel() for p in model.parameters()),
        "samples": len(ctx.test),
        "train_config": extra.get("train_config"),
        "train_epochs": len(history),
        "train_seconds": extra.get("train_seconds"),
        "train_history": history,
        "train_torch_threads": extra.get("torch_threads"),
        "train_loadavg": [extra.get("loadavg_start"), extra.get("loadavg_end")],
        **base_row(ctx, meta, binary),
    }


def part_ann(ctx: Context) -> list[dict[str, Any]]:
    return [ann_row(ctx, binary=False)]


def part_ttfs(ctx: Context) -> list[dict[str, Any]]:
    _model, meta, graph, accuracy, ann_s = prepare(ctx).parts()
    rows = []
    for steps in QUICK["ttfs"] if ctx.quick else TTFS_STEPS:
        net = onespike.convert(graph, onespike.TTFSConfig(steps=steps, rectifier=False))
        evaluation, seconds = timed_evaluation(net, ctx.test)
        row = snn_row(
            ctx,
            net,
            "ttfs",
            steps,
            accuracy,
            graph,
            evaluation,
            meta,
            sim_seconds=seconds,
            ann_s=ann_s,
        )
        row["rectifier"] = False
        rows.append(row)
        print(
            f"{ctx.arch} {ctx.dataset} TTFS T={steps}: {evaluation.accuracy:.4f} (ANN "
            f"{accuracy:.4f}), decision {row['decision_steps_mean']:.0f}/{row['latency_steps']}",
            flush=True,
        )
    return rows


def part_ttfs_aware(ctx: Context) -> list[dict[str, Any]]:
    model, meta, _graph, accuracy, ann_s = prepare(ctx).parts()
    samples = QUICK["finetune_samples"] if ctx.quick else ctx.args.finetune_samples
    data = ctx.train.head(samples)
    test64 = replace(ctx.test, images=ctx.test.images.double())
    rows = []
    for steps in QUICK["aware"] if ctx.quick else AWARE_STEPS:
        started = time.perf_counter()
        checkpoints = runs_dir(ctx) / "ttfs-aware" / f"{ctx.dataset}-{ctx.arch}-T{steps}"
        result = optimize_for_ttfs(
            model,
            data,
            steps=steps,
            epochs=ctx.args.finetune_epochs,
            lr=ctx.args.finetune_lr,
            checkpoint_dir=checkpoints,
            progress=False,
        )
        finetune_seconds = time.perf_counter() - started
        # Checkpoints resume an interrupted part; a finished one starts afresh next time (its
        # rows are recorded), so a rerun after a change in onespike fine-tunes again.
        shutil.rmtree(checkpoints)
        tuned = result.net.double().eval()
        tuned_accuracy = evaluate(tuned, test64)
        graph = tuned.to_graph(test64.images[:2])
        net = onespike.convert(graph, tuned.config(rectifier=False))
        evaluation, seconds = timed_evaluation(net, test64)
        row = snn_row(
            ctx,
            net,
            "ttfs-aware",
            steps,
            accuracy,
            graph,
            evaluation,
            meta,
            sim_seconds=seconds,
            ann_s=ann_s,
        )
        row.update(
            rectifier=False,
            finetuned_ann_accuracy=tuned_accuracy,
            finetune={
                "epochs": ctx.args.finetune_epochs,
                "lr": ctx.args.finetune_lr,
                "samples": len(data),
                "seconds": finetune_seconds,
                "history": result.history.history,
            },
            precision="float64",
        )
        rows.append(row)
        print(
            f"{ctx.arch} {ctx.dataset} TTFS-aware T={steps}: SNN {evaluation.accuracy:.4f}, "
            f"fine-tuned ANN {tuned_accuracy:.4f} (ANN {accuracy:.4f})",
            flush=True,
        )
    return rows


def rate_rows(ctx: Context, binary: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rate coding of the float (or binary) network in ``RATE_VARIANTS``."""
    prepared = prepare(ctx, binary)
    model, meta, graph, accuracy, _ann_s = prepared.parts()
    grid = QUICK["rate"] if ctx.quick else RATE_STEPS
    test = ctx.limited(None if ctx.quick else ctx.args.sim_limit)
    held_out = ctx.held_out.head(ctx.args.selection_limit)
    ann_test = evaluate(model, test)
    target_held_out = evaluate(model, held_out) - 0.01 + SELECTION_MARGIN
    max_graph = onespike.normalize(prepared.extracted, calibration(ctx), percentile=100.0)
    selection = max(grid) if ctx.quick else SELECTION_STEPS
    chosen: dict[str, Any] = {}
    configs: dict[str, tuple[onespike.Graph, onespike.RateConfig]] = {
        "plain-max": (max_graph, onespike.RateConfig(binary=binary, initial_membrane=0.0)),
        "plain": (graph, onespike.RateConfig(binary=binary)),
    }
    if "optimised" in ctx.args.variants:
        started = time.perf_counter()
        scale = choose_scale(graph, held_out, target_held_out, selection)
        options = {
            "threshold_scale": scale["threshold_scale"],
            "initial_membrane": scale["initial_membrane"],
        }
        patiences = PATIENCES if ctx.quick else DEEP_PATIENCES
        patience = choose_patience(
            graph, held_out, target_held_out, [options], selection, patiences
        )
        chosen = {
            "chosen_threshold_scale": scale,
            "chosen_early_exit": patience,
            "selection_seconds": time.perf_counter() - started,
        }
        configs["optimised"] = (
            graph,
            onespike.RateConfig(binary=binary, early_exit=patience["early_exit"], **options),
        )
    rows: list[dict[str, Any]] = []
    reached: dict[str, float | None] = {}
    curves: dict[str, list[float]] = {}
    ann_sub = ann_seconds_per_image(model, test)
    for variant in [v for v in RATE_VARIANTS if v in ctx.args.variants]:
        used_graph, config = configs[variant]
        net = onespike.convert(used_graph, replace(config, steps=max(grid)))
        started = time.perf_counter()
        by_steps = evaluate_snn_steps(net, test, grid, batch_size=500)
        seconds = time.perf_counter() - started
        curve = by_steps[max(grid)].accuracy_by_steps()
        curves[variant] = curve
        for steps, evaluation in by_steps.items():
            # One simulation to max(grid) gives every T; its time is scaled by T / max(grid)
            # (each step costs the same; with early exit this is an upper bound).
            row = snn_row(
                ctx,
                net,
                "rate",
                steps,
                ann_test,
                used_graph,
                evaluation,
                meta,
                sim_seconds=seconds * steps / max(grid),
                ann_s=ann_sub,
                binary=binary,
            )
            row.update(
                variant=variant,
                threshold_scale=config.threshold_scale,
                initial_membrane=config.initial_membrane,
                early_exit=config.early_exit,
                percentile=100.0 if variant == "plain-max" else 99.99,
                sim_time_basis=f"one run to T={max(grid)}, scaled by T/{max(grid)}",
                full_test_ann_accuracy=accuracy,
            )
            rows.append(row)
        target = ann_test - 0.01
        if config.early_exit:
            good = [r for r in rows if r["variant"] == variant and r["snn_accuracy"] >= target]
            reached[variant] = min((r["mean_latency_steps"] for r in good), default=None)
        else:
            reached[variant] = steps_within(curve, target)
        print(
            f"{ctx.arch} {ctx.dataset} binary={binary} rate {variant}: "
            + ", ".join(
                f"T={r['steps']} {100 * r['snn_accuracy']:.2f}%"
                for r in rows
                if r["variant"] == variant
            ),
            flush=True,
        )
    summary = {
        "dataset": ctx.dataset,
        "model": ctx.arch,
        "binary": binary,
        "ann_accuracy": ann_test,
        "samples": len(test),
        "held_out_samples": len(held_out),
        "weights": meta["sha256"],
        "selection_steps": selection,
        "max_steps": max(grid),
        "steps_within_1pt": reached,
        "accuracy_by_steps": curves,
        **chosen,
    }
    if reached.get("plain-max") and reached.get("optimised"):
        summary["speedup_vs_plain_max"] = reached["plain-max"] / reached["optimised"]
    return rows, summary


def part_rate(ctx: Context) -> list[dict[str, Any]]:
    rows, summary = rate_rows(ctx, binary=False)
    return [*rows, {**summary, "method": "rate-summary"}]


def part_binary(ctx: Context) -> list[dict[str, Any]]:
    if ctx.dataset not in BINARY_DATASETS:
        return []
    rate, summary = rate_rows(ctx, binary=True)
    return [ann_row(ctx, binary=True), *rate, {**summary, "method": "rate-summary"}]


def part_hybrid(ctx: Context) -> list[dict[str, Any]]:
    _model, meta, graph, accuracy, ann_s = prepare(ctx).parts()
    sweep = ctx.limited(None if ctx.quick else ctx.args.sim_limit)
    calibration = calibration_images(ctx.train.images, ctx.quick)
    ann_sweep = ann_seconds_per_image(_model, sweep)
    sweep_accuracy = evaluate(_model, sweep)
    steps_grid = QUICK["hybrid"] if ctx.quick else HYBRID_STEPS
    samples = QUICK["stdb_samples"] if ctx.quick else ctx.args.stdb_samples
    config = STDBConfig(epochs=ctx.args.stdb_epochs, lr=ctx.args.stdb_lr)
    rows = []
    for steps in steps_grid:
        marked = steps == STDB_STEPS
        net = onespike.convert(graph, onespike.HybridConfig(steps=steps), calibration=calibration)
        data = ctx.test if marked else sweep
        stages = (False, True) if marked else (False,)
        for finetuned in stages:
            extra: dict[str, Any] = {"calibration_images": len(calibration)}
            if finetuned:
                started = time.perf_counter()
                checkpoints = runs_dir(ctx) / "stdb" / f"{ctx.dataset}-{ctx.arch}-T{steps}"
                result = finetune_stdb(
                    net, ctx.train.head(samples), config, checkpoint_dir=checkpoints, progress=False
                )
                shutil.rmtree(checkpoints)  # as for TTFS-aware fine-tuning
                net = result.net
                extra["stdb"] = {
                    **asdict(config),
                    "samples": samples,
                    "seconds": time.perf_counter() - started,
                    "history": result.history.history,
                }
                save_hybrid(
                    runs_dir(ctx) / "hybrid" / f"{ctx.dataset}-{ctx.arch}-T{steps}",
                    net,
                    extra={"dataset": ctx.dataset, "stdb": extra["stdb"]},
                )
            evaluation, seconds = timed_evaluation(net, data)
            row = snn_row(
                ctx,
                net,
                "hybrid",
                steps,
                accuracy if marked else sweep_accuracy,
                graph,
                evaluation,
                meta,
                sim_seconds=seconds,
                ann_s=ann_s if marked else ann_sweep,
            )
            row.update(
                finetuned=finetuned,
                marked=marked,
                hidden_spikes_per_neuron=hidden_spikes_per_neuron(net, evaluation),
                accuracy_by_steps=evaluation.accuracy_by_steps(),
                **extra,
            )
            rows.append(row)
            print(
                f"{ctx.arch} {ctx.dataset} hybrid T={steps} "
                f"{'STDB' if finetuned else 'converted'}: "
                f"{evaluation.accuracy:.4f} vs ANN {row['ann_accuracy']:.4f}",
                flush=True,
            )
    return rows


PARTS: dict[str, Callable[[Context], list[dict[str, Any]]]] = {
    "ann": part_ann,
    "ttfs": part_ttfs,
    "ttfs-aware": part_ttfs_aware,
    "rate": part_rate,
    "binary": part_binary,
    "hybrid": part_hybrid,
}


# merging, verdicts, table, plot -----------------------------------------------------------
def parts_dir(out: Path, quick: bool) -> Path:
    return out / ("deep-quick-parts" if quick else "deep-parts")


def part_path(out: Path, quick: bool, arch: str, dataset: str, method: str) -> Path:
    return parts_dir(out, quick) / f"{arch}-{dataset}-{method}.json"


def run_part(ctx: Context, method: str) -> None:
    load_start = list(os.getloadavg())
    started = time.perf_counter()
    rows = PARTS[method](ctx)
    meta = {
        "part": f"{ctx.arch}/{ctx.dataset}/{method}",
        "command": command(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "loadavg_start": load_start,
        "loadavg_end": list(os.getloadavg()),
        "seconds": time.perf_counter() - started,
        "quick": ctx.quick,
        "settings": {
            k: v
            for k, v in vars(ctx.args).items()
            if k not in ("only", "dataset", "methods", "merge", "out")
        },
    }
    atomic_write_json(
        part_path(ctx.args.out, ctx.quick, ctx.arch, ctx.dataset, method),
        {"meta": meta, "rows": rows},
    )
    print(f"{meta['part']}: {meta['seconds']:.0f} s, load {meta['loadavg_end']}", flush=True)


def load_parts(out: Path, quick: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    metas: list[dict[str, Any]] = []
    for arch in ARCHITECTURES:
        for dataset in DATASETS:
            for method in METHODS:
                path = part_path(out, quick, arch, dataset, method)
                if path.exists():
                    part = json.loads(path.read_text())
                    rows += part["rows"]
                    metas.append(part["meta"])
    return rows, metas


def missing_parts(out: Path, quick: bool) -> list[str]:
    """Every part of the benchmark with no results file yet (``arch/dataset/method``)."""
    datasets = QUICK["datasets"] if quick else DATASETS
    return [
        f"{arch}/{dataset}/{method}"
        for arch in ARCHITECTURES
        for dataset in datasets
        for method in METHODS
        if (method != "binary" or dataset in BINARY_DATASETS)
        and not part_path(out, quick, arch, dataset, method).exists()
    ]


def _gap(ann: float, snn: float) -> float:
    return 100 * (ann - snn)


def _judge(ok: bool, gap: float, limit: float) -> str:
    return "met" if ok else f"NOT met by {gap - limit:.2f} points"


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    """Every target of the deep benchmark, with the measured figure, per network."""
    out: list[str] = []
    networks = list(dict.fromkeys((r["model"], r["dataset"]) for r in rows))

    def find(arch: str, dataset: str, method: str, **match: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in rows
            if (r["model"], r["dataset"], r["method"]) == (arch, dataset, method)
            and all(r.get(k) == v for k, v in match.items())
        ]

    for arch, dataset in networks:
        name = f"{dataset}/{arch}"
        for steps, limit in ((16, 0.5), (8, 1.0)):
            for r in find(arch, dataset, "ttfs-aware", steps=steps):
                gap = _gap(r["ann_accuracy"], r["snn_accuracy"])
                out.append(
                    f"{name}: TTFS-aware T={steps} {100 * r['snn_accuracy']:.2f}% vs float ANN "
                    f"{100 * r['ann_accuracy']:.2f}% ({gap:+.2f} points below; target <= "
                    f"{limit:g}): {_judge(gap <= limit, gap, limit)}"
                )
        for r in find(arch, dataset, "ttfs", steps=32):
            gap = _gap(r["ann_accuracy"], r["snn_accuracy"])
            out.append(
                f"{name}: plain TTFS T=32 {100 * r['snn_accuracy']:.2f}% vs float ANN "
                f"{100 * r['ann_accuracy']:.2f}% ({gap:+.2f} points below; target <= 0.3): "
                f"{_judge(gap <= 0.3, gap, 0.3)}; decision at step "
                f"{r['decision_steps_mean']:.0f} on average (latency {r['latency_steps']})"
            )
        for summary in find(arch, dataset, "rate-summary"):
            kind = "binary" if summary["binary"] else "fp32"
            reached = summary["steps_within_1pt"]
            if not {"plain-max", "optimised"} <= set(reached):
                continue
            speed = summary.get("speedup_vs_plain_max")
            opt = reached["optimised"]
            base = reached["plain-max"]
            if speed is None:
                last = summary["max_steps"]
                opt_text = "not reached" if opt is None else f"at {opt:.1f} steps (mean)"
                base_text = f"not reached by T={last}" if base is None else f"at T={base}"
                out.append(
                    f"{name}/{kind}: rate within 1 point of the ANN on {summary['samples']} "
                    f"test images: optimised {opt_text}, plain-max {base_text} (target: within "
                    "1 point in >= 10x fewer steps): NOT met"
                )
                continue
            out.append(
                f"{name}/{kind}: rate optimised within 1 point of the ANN in {opt:.1f} steps "
                f"(mean, early exit) vs T={base} for plain-max: {speed:.1f}x fewer, on "
                f"{summary['samples']} test images (target >= 10x): "
                f"{'met' if speed >= 10 else 'NOT met'}"
            )
        fp = find(arch, dataset, "ann", binary=False)
        binary = find(arch, dataset, "ann", binary=True)
        if fp and binary:
            gap = _gap(fp[0]["ann_accuracy"], binary[0]["ann_accuracy"])
            out.append(
                f"{name}: binary-weight ANN {100 * binary[0]['ann_accuracy']:.2f}% vs full "
                f"precision {100 * fp[0]['ann_accuracy']:.2f}% ({gap:+.2f} points below; target "
                f"<= 1.5): {_judge(gap <= 1.5, gap, 1.5)}"
            )
        for r in find(arch, dataset, "hybrid", steps=STDB_STEPS, finetuned=True):
            gap = _gap(r["ann_accuracy"], r["snn_accuracy"])
            out.append(
                f"{name}: hybrid T=5 after STDB {100 * r['snn_accuracy']:.2f}% vs float ANN "
                f"{100 * r['ann_accuracy']:.2f}% ({gap:+.2f} points below; target <= 2): "
                f"{_judge(gap <= 2, gap, 2)}"
            )
        weights = {r["weights"] for r in rows if (r["model"], r["dataset"]) == (arch, dataset)}
        fp_weights = {r["weights"] for r in fp}
        shared = {
            r["weights"]
            for r in rows
            if (r["model"], r["dataset"]) == (arch, dataset) and not r.get("binary")
        }
        if fp_weights and len(shared) == 1:
            out.append(
                f"{name}: every full-precision row on one trained network "
                f"(sha256 {next(iter(shared))[:12]}): met"
            )
        elif fp_weights:
            out.append(f"{name}: rows on {len(weights)} different weights: NOT met")
    return out


def _cell(value: Any, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def markdown(rows: list[dict[str, Any]]) -> str:
    head = (
        "| dataset | model | method | weights | T | ANN acc. | SNN acc. | latency | decision "
        "(mean / p99 / max) | spikes/neuron | synops | MACs | energy vs ANN | sim. time vs ANN | "
        "test images |"
    )
    lines = [head, "|" + "---|" * 15]
    for r in rows:
        if r["method"] == "rate-summary":
            continue
        method = r["method"]
        if method == "rate":
            method = f"rate {r['variant']}"
        if method == "hybrid":
            method = "hybrid + STDB" if r["finetuned"] else "hybrid"
        decision = (
            f"{r['decision_steps_mean']:.1f} / {_cell(r.get('decision_steps_p99'), '.0f')} / "
            f"{r['decision_steps_max']:.0f}"
            if r.get("decision_steps_mean") is not None
            else "-"
        )
        latency = r.get("mean_latency_steps") if r.get("early_exit") else r.get("latency_steps")
        lines.append(
            f"| {r['dataset']} | {r['model']} | {method} | "
            f"{'binary' if r.get('binary') else 'fp32'} | {_cell(r['steps'], 'd')} | "
            f"{_percent(r['ann_accuracy'])} | {_percent(r['snn_accuracy'])} | "
            f"{_cell(latency, '.1f' if r.get('early_exit') else 'd')} | {decision} | "
            f"{_cell(r.get('spikes_per_neuron'), '.3f')} | {_cell(r.get('synops'), ',.0f')} | "
            f"{_cell(r.get('snn_macs', r.get('ann_macs')), ',.0f')} | "
            f"{_cell(r.get('energy_ratio_vs_ann'), '.3f')} | "
            f"{_cell(r.get('sim_time_vs_ann'), '.2f')} | {r['samples']} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy against inference time steps: one row of panels per dataset, one panel per
    architecture, every method; TTFS decision times as hollow markers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in rows)]
    archs = [a for a in ARCHITECTURES if any(r["model"] == a for r in rows)]
    if not datasets or not archs:
        return
    fig, axes = plt.subplots(
        len(datasets), len(archs), figsize=(6.5 * len(archs), 4.6 * len(datasets)), squeeze=False
    )
    for i, dataset in enumerate(datasets):
        for j, arch in enumerate(archs):
            ax = axes[i][j]
            mine = [r for r in rows if (r["dataset"], r["model"]) == (dataset, arch)]
            if not mine:  # no part of this network has run yet
                ax.set_title(f"{dataset} / {arch}: not run")
                ax.set_axis_off()
                continue
            ann = [r for r in mine if r["method"] == "ann" and not r["binary"]]
            # (label, colour, line style, marker, hollow, points)
            series: list[tuple[str, str, str, str, bool, list[tuple[float, float]]]] = []
            for method, label, colour, marker in (
                ("ttfs", "TTFS", "C0", "o"),
                ("ttfs-aware", "TTFS-aware", "C1", "s"),
            ):
                pts = [r for r in mine if r["method"] == method]
                latency = [(r["latency_steps"], r["snn_accuracy"]) for r in pts]
                decided = [(r["decision_steps_mean"], r["snn_accuracy"]) for r in pts]
                series.append((f"{label} (latency)", colour, "-", marker, False, latency))
                series.append((f"{label} (decision, mean)", colour, "", marker, True, decided))
            summary = next(
                (r for r in mine if r["method"] == "rate-summary" and not r["binary"]), None
            )
            for variant, colour in (("plain-max", "C2"), ("plain", "C3")):
                curve = (summary or {}).get("accuracy_by_steps", {}).get(variant)
                if curve:  # accuracy after every step of the one simulation
                    pts = [(float(t), a) for t, a in enumerate(curve, start=1)]
                    series.append((f"rate {variant}", colour, "--", "", False, pts))
            optimised = [
                (r["mean_latency_steps"], r["snn_accuracy"])
                for r in mine
                if r["method"] == "rate" and r["variant"] == "optimised" and not r["binary"]
            ]
            series.append(("rate optimised (mean latency)", "C4", "", "D", False, optimised))
            hybrid = [
                (r["steps"], r["snn_accuracy"])
                for r in mine
                if r["method"] == "hybrid" and not r["finetuned"]
            ]
            series.append(("hybrid", "C5", "-", "^", False, hybrid))
            tuned = [
                (r["steps"], r["snn_accuracy"])
                for r in mine
                if r["method"] == "hybrid" and r["finetuned"]
            ]
            series.append(("hybrid + STDB", "C6", "", "*", False, tuned))
            for label, colour, line, marker, hollow, pts in series:
                if not pts:
                    continue
                xs, ys = zip(*sorted(pts), strict=True)
                ax.plot(
                    xs,
                    [100 * y for y in ys],
                    color=colour,
                    ls=line or "none",
                    marker=marker or None,
                    label=label,
                    ms=9 if marker == "*" else 5,
                    mfc="none" if hollow else colour,
                    lw=1.2,
                )
            if ann:
                level = 100 * ann[0]["ann_accuracy"]
                ax.axhline(level, color="grey", lw=1, label=f"ANN {level:.2f}%")
                ax.set_ylim(max(level - 15, 0), min(level + 1.5, 100))
            ax.set_xscale("log", base=2)
            ax.set_title(f"{dataset} / {arch}")
            ax.set_xlabel("time steps per inference")
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def merge(out: Path, quick: bool) -> int:
    rows, metas = load_parts(out, quick)
    if not rows:
        print(f"no parts in {parts_dir(out, quick)}: run a part first", file=sys.stderr)
        return 1
    suffix = "-quick" if quick else ""
    missing = missing_parts(out, quick)
    notes = verdicts(rows) + [
        f"{name}: not run (no {part_path(out, quick, *name.split('/')).name}); its targets "
        "are not judged"
        for name in missing
    ]
    meta = {
        "command": command(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "energy_model": "45nm (Horowitz, ISSCC 2014), compute only",
        "recipes": {
            f"{a}/{d}{'/binary' if b else ''}": asdict(r) for (a, d, b), r in RECIPES.items()
        },
        "parts": metas,
        "not_run": missing,
        "verdicts": notes,
    }
    atomic_write_json(out / f"deep{suffix}.json", rows)
    atomic_write_json(out / f"deep{suffix}.meta.json", meta)
    table = markdown(rows)
    atomic_write_text(
        out / f"deep{suffix}.md", table + "\n" + "\n".join(f"- {v}" for v in notes) + "\n"
    )
    try:
        plot(rows, out / f"deep{suffix}.png")
        for dataset in dict.fromkeys(r["dataset"] for r in rows):  # one figure per dataset
            plot([r for r in rows if r["dataset"] == dataset], out / f"deep{suffix}-{dataset}.png")
    except ImportError:
        print("matplotlib is not installed (the 'plot' extra): no plot written")
    print("\n".join(notes))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="+", choices=ARCHITECTURES, default=list(ARCHITECTURES))
    parser.add_argument("--dataset", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--variants", nargs="+", choices=RATE_VARIANTS, default=list(RATE_VARIANTS))
    parser.add_argument(
        "--sim-limit", type=int, default=1000, help="test images of the rate rows and hybrid sweep"
    )
    parser.add_argument(
        "--selection-limit", type=int, default=500, help="held-out images that choose options"
    )
    parser.add_argument("--finetune-samples", type=int, default=20000)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--finetune-lr", type=float, default=2e-4)
    parser.add_argument("--stdb-samples", type=int, default=10000)
    parser.add_argument("--stdb-epochs", type=int, default=1)
    parser.add_argument("--stdb-lr", type=float, default=1e-3)
    parser.add_argument("--merge", action="store_true", help="only merge the parts present")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument("--quick", action="store_true", help="CI-sized run (see module doc)")
    args = parser.parse_args()
    if args.out is None:
        args.out = QUICK_OUT if args.quick else RESULTS
    if args.quick:
        args.selection_limit = min(args.selection_limit, QUICK["held_out"])
        args.dataset = [d for d in args.dataset if d in QUICK["datasets"]]
        args.stdb_epochs = args.finetune_epochs = 1
    torch.set_num_threads(args.threads)
    if args.merge:
        return merge(args.out, args.quick)
    for dataset in args.dataset:
        train_ds, held_out, test = splits(dataset, args.quick)
        for arch in args.only:
            ctx = Context(arch, dataset, train_ds, held_out, test, args)
            for method in args.methods:
                if method == "binary" and dataset not in BINARY_DATASETS:
                    continue
                run_part(ctx, method)
                merge(args.out, args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
