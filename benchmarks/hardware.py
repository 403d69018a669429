"""Hardware models on MNIST: TTFS accelerator vs rate-coded core vs dense ANN accelerator.

For the 784-500-500-10 MLP and Quartz's MNIST ConvNet (the cached models in
``benchmarks/models/``): converts each to an exact TTFS network (T = 16, no rectifier events:
forced spikes decode to 0 and change no output) and to a rate-coded network, simulates the
whole MNIST test set, and prices one inference on three architectures of one silicon budget
(``AcceleratorConfig()``: 4 cores x 16 PEs, 256 KB weight + 32 KB state + 8 KB event SRAM
per core, 200 MHz, Horowitz 45 nm): the event-driven TTFS accelerator, the time-stepped
rate-coded core at the T where rate coding first reaches the TTFS network's test accuracy
(both initial-membrane settings tried, the cheaper kept), and the dense MAC array running
the ANN. Reports energy per inference, latency, average power, EDP, the counts behind them,
PE scaling from 1 to 64 per core, the same budget at 7 nm, and a Loihi-style estimate beside
Quartz's Loihi measurements. Writes ``benchmarks/results/hardware.json`` (one record per
network and architecture), ``hardware.meta.json``, ``hardware.md`` and ``hardware.png``.

``--quick`` (CI-sized) prices the one-epoch networks of ``ttfs.py --quick`` (trained here if
missing) on 200 test images with rate run lengths up to 64, and writes ``hardware-quick.*``
into ``--out`` (default ``runs/bench-quick``).

Usage::

    ONESPIKE_DATA=../shared/datasets python benchmarks/hardware.py [--quick]
"""

from __future__ import annotations

import argparse
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
from onespike import hardware as hw
from onespike._fs import atomic_write_json, atomic_write_text
from onespike.data import Dataset, batches, load_dataset, split_validation
from onespike.evaluate import decision_summary
from onespike.hardware.config import WeightDataflow
from onespike.io import load_model
from onespike.simulate.rate import simulate_checkpoints
from onespike.train import evaluate
from ttfs import EPOCHS, models_dir, out_dir, trained

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
MODELS = ROOT / "models"
NETWORKS = (("mlp", "mnist-mlp-e10"), ("quartz-convnet", "mnist-quartz-convnet-e15"))
TTFS_STEPS = 16
RATE_STEPS = (4, 6, 8, 12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192, 256)
QUICK_RATE_STEPS = (4, 8, 16, 32, 64)
PES = (1, 2, 4, 8, 16, 32, 64)
YOSO_POWER_RATIO = 1.46  # Srivatsa et al., arXiv 2006.09982, abstract
BATCH = 500


def ttfs_workload(
    net: onespike.SpikingNetwork, test: Dataset
) -> tuple[hw.Workload, float, dict[str, float]]:
    """Workload, accuracy and decision-time summary of a TTFS network over ``test``."""
    total: hw.Workload | None = None
    correct = 0
    decisions = []
    for images, labels in batches(test, BATCH):
        result = onespike.simulate(net, images)
        correct += int((result.predictions == labels).sum())
        assert result.decision_steps is not None
        decisions.append(result.decision_steps)
        part = hw.profile(net, result)
        total = part if total is None else total + part
    assert total is not None
    return total, correct / total.samples, decision_summary(torch.cat(decisions))


def rate_workloads(
    net: onespike.SpikingNetwork, test: Dataset, steps: tuple[int, ...]
) -> dict[int, tuple[hw.Workload, float]]:
    """Workload and accuracy at every run length in ``steps``, from one simulation per batch."""
    totals: dict[int, hw.Workload] = {}
    correct = dict.fromkeys(steps, 0)
    for images, labels in batches(test, BATCH):
        for t, result in zip(steps, simulate_checkpoints(net, images, steps), strict=True):
            correct[t] += int((result.predictions == labels).sum())
            part = hw.profile(net, result)
            totals[t] = totals[t] + part if t in totals else part
    return {t: (totals[t], correct[t] / totals[t].samples) for t in steps}


def counts(workload: hw.Workload, architecture: str) -> dict[str, float]:
    """Per-inference counts behind a report."""
    ops = workload.ops
    if architecture == "ttfs-accelerator":
        updates = ops.per_sample("counter_events")  # one fire evaluation per neuron
    elif architecture == "rate-core":
        updates = workload.neurons * workload.steps_per_inference
    else:
        updates = ops.per_sample("neuron_updates")
    return {
        "spikes": ops.per_sample("spikes"),
        "synops": ops.per_sample("synops"),
        "synaptic_events": ops.per_sample("synaptic_events"),
        "macs": ops.per_sample("macs"),
        "neuron_updates": updates,
    }


def record(
    *,
    model: str,
    report: hw.HardwareReport,
    workload: hw.Workload,
    accuracy: float,
    ann_accuracy: float,
    steps: int,
    config: hw.AcceleratorConfig,
    extra: dict[str, Any],
) -> dict[str, Any]:
    scaling = hw.scale(workload, config=config, pes=PES, architecture=report.architecture)
    at_7nm = hw.run(
        workload, config=replace(config, tech=hw.JOUPPI_7NM_TECH), architecture=report.architecture
    )
    row: dict[str, Any] = {
        "dataset": "mnist",
        "model": model,
        "architecture": report.architecture,
        "method": report.method,
        "snn_accuracy": accuracy,
        "ann_accuracy": ann_accuracy,
        "steps": steps,
        "latency_steps": report.steps,
        "pes": config.pes,
        "cores": config.cores,
        "tech": config.tech.name,
        "energy_per_inference_j": report.energy_j,
        "energy_counts": f"hardware model {report.architecture}, {budget(report.config)}",
        "latency_s": report.latency_s,
        "average_power_w": report.average_power_w,
        "edp_js": report.edp_js,
        "throughput_per_s": report.throughput_per_s,
        "dynamic_energy_j": report.dynamic_pj * 1e-12,
        "static_energy_j": report.static_pj * 1e-12,
        "energy_by_component_j": {c: report.component_pj(c) * 1e-12 for c in hw.COMPONENTS},
        "latency_cycles": report.latency_cycles,
        "utilisation": report.utilisation,
        "bottleneck": report.bottleneck,
        "counts_per_inference": counts(workload, report.architecture),
        "samples": workload.samples,
        "layers": report.to_dict()["layers"],
        "pe_scaling": [
            {
                "pes": r.config.pes,
                "latency_s": r.latency_s,
                "energy_per_inference_j": r.energy_j,
                "average_power_w": r.average_power_w,
                "edp_js": r.edp_js,
                "utilisation": r.utilisation,
                "bottleneck": r.bottleneck,
            }
            for r in scaling
        ],
        "at_7nm": {
            "energy_per_inference_j": at_7nm.energy_j,
            "latency_s": at_7nm.latency_s,
            "average_power_w": at_7nm.average_power_w,
            "edp_js": at_7nm.edp_js,
        },
    }
    row.update(extra)
    return row


def choose_rate(
    variants: dict[float, dict[int, tuple[hw.Workload, float]]],
    target: float,
    config: hw.AcceleratorConfig,
) -> tuple[float, int, bool]:
    """The (initial membrane, T) of lowest energy among the smallest T reaching ``target``
    per variant; when no variant reaches it, the most accurate point (smallest T on ties)."""
    reached = []
    for start, by_steps in variants.items():
        hits = [t for t in sorted(by_steps) if by_steps[t][1] >= target]
        if hits:
            energy = hw.run(by_steps[hits[0]][0], config=config).energy_j
            reached.append((energy, start, hits[0]))
    if reached:
        _, start, steps = min(reached)
        return start, steps, True
    best = max(
        ((acc, -t, start) for start, by in variants.items() for t, (_, acc) in by.items()),
    )
    return best[2], -best[1], False


def benchmark_network(
    name: str,
    directory: str,
    test: Dataset,
    calibration: Dataset,
    config: hw.AcceleratorConfig,
    rate_steps: tuple[int, ...],
    models: Path = MODELS,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    model, _ = load_model(models / directory)
    model.eval()
    ann_accuracy = evaluate(model, test)
    graph = onespike.extract(model, test.images[:2])
    graph = onespike.normalize(graph, batches(calibration, 500), percentile=99.99)

    started = time.perf_counter()
    ttfs_net = onespike.convert(graph, onespike.TTFSConfig(steps=TTFS_STEPS, rectifier=False))
    ttfs, ttfs_accuracy, decision = ttfs_workload(ttfs_net, test)
    print(f"{name}: TTFS T={TTFS_STEPS} accuracy {ttfs_accuracy:.4f}", flush=True)

    variants = {}
    for start in (0.0, 0.5):
        rate_net = onespike.convert(
            graph, onespike.RateConfig(steps=max(rate_steps), initial_membrane=start)
        )
        variants[start] = rate_workloads(rate_net, test, rate_steps)
        accuracies = {t: round(a, 4) for t, (_, a) in variants[start].items()}
        print(f"{name}: rate (initial membrane {start}) accuracy by T {accuracies}", flush=True)
    start, rate_t, matched = choose_rate(variants, ttfs_accuracy, config)
    rate, rate_accuracy = variants[start][rate_t]
    ann = hw.profile(graph, len(test))
    seconds = time.perf_counter() - started

    reports = {
        "ttfs-accelerator": (hw.run(ttfs, config=config), ttfs, ttfs_accuracy, TTFS_STEPS),
        "rate-core": (hw.run(rate, config=config), rate, rate_accuracy, rate_t),
        "dense-ann": (hw.run(ann, config=config), ann, ann_accuracy, 0),
    }
    # Power at one common inference rate: the slowest architecture's throughput.
    common_rate = min(r.throughput_per_s for r, *_ in reports.values())
    rows = []
    for architecture, (report, workload, accuracy, steps) in reports.items():
        busy = sum(layer.busy_pe_cycles for layer in report.layers)
        extra: dict[str, Any] = {
            "busy_pe_cycles": busy,
            "dynamic_pj_per_busy_pe_cycle": report.dynamic_pj / busy,
            "common_rate_per_s": common_rate,
            # Idle between inferences: dynamic energy per inference times the rate, plus leakage.
            "power_at_common_rate_w": report.dynamic_pj * 1e-12 * common_rate
            + report.config.leakage_w,
        }
        if architecture != "dense-ann":
            estimate = hw.loihi_estimate(workload)
            extra["loihi_estimate"] = {
                **asdict(estimate),
                "dynamic_energy_j": estimate.dynamic_pj * 1e-12,
            }
        if architecture == "rate-core":
            extra["rate_initial_membrane"] = start
            extra["rate_matches_ttfs_accuracy"] = matched
            extra["rate_accuracy_by_steps"] = {
                f"{s}": {str(t): a for t, (_, a) in by.items()} for s, by in variants.items()
            }
        if architecture == "ttfs-accelerator":
            extra["rectifier"] = False
            extra.update(decision)
        rows.append(
            record(
                model=name,
                report=report,
                workload=workload,
                accuracy=accuracy,
                steps=steps,
                ann_accuracy=ann_accuracy,
                config=config,
                extra=extra,
            )
        )
    info = {
        "model": name,
        "seconds": seconds,
        "reports": [r for r, *_ in reports.values()],
        "workloads": {"ttfs-accelerator": ttfs, "dense-ann": ann},
    }
    return rows, info


def verdicts(rows: list[dict[str, Any]]) -> list[str]:
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = {r["architecture"]: r for r in rows if r["model"] == model}
        ttfs, rate = mine["ttfs-accelerator"], mine["rate-core"]
        power = rate["average_power_w"] / ttfs["average_power_w"]
        energy = rate["energy_per_inference_j"] / ttfs["energy_per_inference_j"]
        common = rate["power_at_common_rate_w"] / ttfs["power_at_common_rate_w"]
        match = (
            f"rate T={rate['steps']:g} reaches {100 * rate['snn_accuracy']:.2f}% "
            f"(TTFS {100 * ttfs['snn_accuracy']:.2f}%)"
            if rate["rate_matches_ttfs_accuracy"]
            else f"rate coding never reaches the TTFS accuracy ({100 * ttfs['snn_accuracy']:.2f}%) "
            f"up to T={max(RATE_STEPS)}; compared at its best, T={rate['steps']:g} "
            f"({100 * rate['snn_accuracy']:.2f}%)"
        )
        out.append(
            f"{model}: {match}. Energy per inference: TTFS {energy:.2f}x lower "
            f"({'met' if energy > 1 else 'NOT met'}). Average power while running back to back: "
            f"rate / TTFS = {power:.2f} (target >= {YOSO_POWER_RATIO}): "
            f"{'met' if power >= YOSO_POWER_RATIO else 'NOT met'}. Power at one common inference "
            f"rate ({ttfs['common_rate_per_s']:,.0f}/s): rate / TTFS = {common:.2f}: "
            f"{'met' if common >= YOSO_POWER_RATIO else 'NOT met'}. Behind the busy power: "
            f"dynamic energy per busy PE-cycle TTFS {ttfs['dynamic_pj_per_busy_pe_cycle']:.1f} pJ "
            f"vs rate {rate['dynamic_pj_per_busy_pe_cycle']:.1f} pJ (the rate core's "
            f"{rate['counts_per_inference']['macs']:,.0f} MACs, "
            f"{100 * rate['counts_per_inference']['macs'] / rate['busy_pe_cycles']:.0f}% of its "
            "busy PE-cycles, accumulate in PE registers; every synaptic event reads and writes a "
            f"neuron state in SRAM); PE utilisation TTFS {100 * ttfs['utilisation']:.0f}% vs rate "
            f"{100 * rate['utilisation']:.0f}%."
        )
    return out


def budget(config: hw.AcceleratorConfig) -> str:
    """A short label of what a hardware energy figure prices: the budget and its dataflow."""
    flow = (
        f"stationary weights ({config.pe_buffer_kb:g} KB per PE)"
        if config.weight_dataflow == "stationary"
        else "streamed weights"
    )
    options = [flow]
    if config.event_batching:
        options.append("events batched per step")
    if config.sized_codes:
        options.append("sized codes")
    return (
        f"{config.cores}x{config.pes} PEs, {config.weight_sram_kb:g}/{config.state_sram_kb:g}/"
        f"{config.event_sram_kb:g} KB SRAM per core, {config.tech.name}, " + ", ".join(options)
    )


# The design space swept for the TTFS accelerator and the dense array (4 cores): PEs per core,
# SRAM macro sizes, the weight dataflow with its PE buffer, and (TTFS) batching, sized codes.
SWEEP_AXES: dict[str, tuple[Any, ...]] = {
    "pes": (4, 16, 64),
    "weight_sram_kb": (64.0, 256.0),
    "state_sram_kb": (8.0, 32.0),
    "sized_codes": (False, True),
}
DATAFLOWS: tuple[tuple[WeightDataflow, float], ...] = (
    ("streamed", 1.0),
    ("stationary", 1.0),
    ("stationary", 4.0),
    ("stationary", 16.0),
)
QUICK_SWEEP_AXES: dict[str, tuple[Any, ...]] = {
    "pes": (16,),
    "weight_sram_kb": (256.0,),
    "state_sram_kb": (32.0,),
    "sized_codes": (False, True),
}
QUICK_DATAFLOWS: tuple[tuple[WeightDataflow, float], ...] = (
    ("streamed", 1.0),
    ("stationary", 4.0),
)
# What fixes the silicon: two configs with the same values here are the same budget.
BUDGET_FIELDS = (
    "cores",
    "pes",
    "weight_sram_kb",
    "state_sram_kb",
    "weight_dataflow",
    "pe_buffer_kb",
)


def point(report: hw.HardwareReport) -> dict[str, Any]:
    """One swept configuration: its knobs and what it costs."""
    c = report.config
    return {
        "architecture": report.architecture,
        **{f: getattr(c, f) for f in BUDGET_FIELDS},
        "event_batching": c.event_batching,
        "sized_codes": c.sized_codes,
        "sram_kb": c.sram_kb,
        "total_pes": c.total_pes,
        "energy_per_inference_j": report.energy_j,
        "dynamic_energy_j": report.dynamic_pj * 1e-12,
        "static_energy_j": report.static_pj * 1e-12,
        "latency_s": report.latency_s,
        "energy_by_component_j": {k: report.component_pj(k) * 1e-12 for k in hw.COMPONENTS},
    }


def sweep_network(
    name: str, workloads: dict[str, hw.Workload], base: hw.AcceleratorConfig, quick: bool
) -> dict[str, Any]:
    """Sweep both architectures of one network; Pareto fronts and the same-budget verdict."""
    axes = QUICK_SWEEP_AXES if quick else SWEEP_AXES
    reports: list[hw.HardwareReport] = []
    refused: list[str] = []
    for architecture, workload in workloads.items():
        batching = (False, True) if architecture == "ttfs-accelerator" else (False,)
        for flow, buffer in QUICK_DATAFLOWS if quick else DATAFLOWS:
            config = replace(base, weight_dataflow=flow, pe_buffer_kb=buffer)
            got, lost = hw.sweep(
                workload,
                config=config,
                architecture=architecture,
                axes={**axes, "event_batching": batching},
            )
            reports += got
            refused += [f"{architecture}: {why}" for _, why in lost]
    front = hw.pareto_front(reports)
    fronts = {a: hw.pareto_front([r for r in reports if r.architecture == a]) for a in workloads}
    # Same budget: each architecture with its best free options (batching, sized codes).
    best: dict[tuple[Any, ...], dict[str, hw.HardwareReport]] = {}
    for r in reports:
        key = tuple(getattr(r.config, f) for f in BUDGET_FIELDS)
        mine = best.setdefault(key, {})
        if r.architecture not in mine or r.energy_j < mine[r.architecture].energy_j:
            mine[r.architecture] = r
    pairs = [m for m in best.values() if len(m) == 2]
    ratios = [m["dense-ann"].energy_j / m["ttfs-accelerator"].energy_j for m in pairs]
    wins = [m for m in pairs if m["ttfs-accelerator"].energy_j < m["dense-ann"].energy_j]
    lowest = {
        a: min((r for r in reports if r.architecture == a), key=lambda r: r.energy_j)
        for a in workloads
    }
    return {
        "model": name,
        "points": [point(r) for r in reports],
        "refused": refused,
        "pareto_front": [point(r) for r in front],
        "pareto_front_by_architecture": {a: [point(r) for r in f] for a, f in fronts.items()},
        "budgets_compared": len(pairs),
        "budgets_ttfs_lower_energy": len(wins),
        "dense_over_ttfs_energy_min": min(ratios) if ratios else None,
        "dense_over_ttfs_energy_max": max(ratios) if ratios else None,
        "ttfs_wins": [
            {f: getattr(m["ttfs-accelerator"].config, f) for f in BUDGET_FIELDS}
            | {"dense_over_ttfs": m["dense-ann"].energy_j / m["ttfs-accelerator"].energy_j}
            for m in wins
        ],
        "lowest_energy": {a: point(r) for a, r in lowest.items()},
    }


def sweep_statement(s: dict[str, Any]) -> str:
    """What the sweep says about one network, in numbers."""
    low = s["lowest_energy"]
    ttfs, dense = low["ttfs-accelerator"], low["dense-ann"]

    def where(p: dict[str, Any]) -> str:
        flow = (
            f"stationary {p['pe_buffer_kb']:g} KB/PE"
            if p["weight_dataflow"] == "stationary"
            else "streamed"
        )
        extra = ", batched" if p.get("event_batching") else ""
        extra += ", sized codes" if p["sized_codes"] else ""
        return (
            f"{p['cores']}x{p['pes']} PEs, {p['weight_sram_kb']:g}/{p['state_sram_kb']:g} KB, "
            f"{flow}{extra}"
        )

    ratio = dense["energy_per_inference_j"] / ttfs["energy_per_inference_j"]
    verdict = "beats" if ratio > 1 else "does not beat"
    return (
        f"{s['model']}: on the same budget TTFS has the lower energy per inference on "
        f"{s['budgets_ttfs_lower_energy']} of {s['budgets_compared']} budgets (dense / TTFS "
        f"energy {s['dense_over_ttfs_energy_min']:.2f} to {s['dense_over_ttfs_energy_max']:.2f}). "
        f"Lowest energy anywhere: TTFS {_us(ttfs['energy_per_inference_j'])} uJ ({where(ttfs)}), "
        f"dense {_us(dense['energy_per_inference_j'])} uJ ({where(dense)}): TTFS {verdict} the "
        f"dense array at their best ({ratio:.2f}x)."
    )


def sweep_section(sweeps: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## The design space: TTFS accelerator against the dense array",
        "",
        "Swept on 4 cores: PEs per core, weight and state SRAM per core, streamed or "
        "stationary weights (PE buffer size), sized codes, and for TTFS events batched per "
        "time step. Same budget: the same cores, PEs, SRAM macros, weight dataflow and PE "
        "buffers; each architecture with its best of the free options (batching, sized codes). "
        "Pareto front: no other point has lower or equal energy, latency, SRAM and PEs (the "
        "area proxy: there is no cited area per PE to add the two).",
        "",
    ]
    for s in sweeps:
        lines += [f"- {sweep_statement(s)}"]
    for s in sweeps:
        lines += [
            "",
            f"### {s['model']}: Pareto front ({len(s['pareto_front'])} of {len(s['points'])} "
            "points)",
            "",
            "| architecture | PEs | weight / state SRAM per core (KB) | weights | batched | sized "
            "| SRAM total (KB) | energy/inf. (uJ) | latency (us) | weight reads | state r/w | "
            "compute | static |",
            "|" + "---|" * 13,
        ]
        for p in sorted(s["pareto_front"], key=lambda p: p["energy_per_inference_j"]):
            e = p["energy_by_component_j"]
            flow = (
                f"stationary {p['pe_buffer_kb']:g} KB"
                if p["weight_dataflow"] == "stationary"
                else "streamed"
            )
            lines.append(
                f"| {p['architecture']} | {p['cores']}x{p['pes']} | {p['weight_sram_kb']:g} / "
                f"{p['state_sram_kb']:g} | {flow} | {'yes' if p['event_batching'] else 'no'} | "
                f"{'yes' if p['sized_codes'] else 'no'} | {p['sram_kb']:,.0f} | "
                f"{_us(p['energy_per_inference_j'])} | {_us(p['latency_s'])} | "
                f"{_us(e['weight_reads'])} | {_us(e['state_reads_writes'])} | "
                f"{_us(e['compute'])} | {_us(p['static_energy_j'])} |"
            )
    return lines


# The binary-weight rate networks of benchmarks/rate.py (hidden layers +-alpha, first and last
# full precision), trained the way rate.py trains them (55,000 images, models shared in
# benchmarks/models/), priced on all four architectures.
BINARY_NETWORKS = (("mlp", 10), ("convnet-bn", 8))
BINARY_TEST = {"mlp": None, "convnet-bn": 2000}  # rate.py's test subsets
BINARY_STEPS = (8, 16, 24, 32, 48, 64)
QUICK_BINARY_STEPS = (8, 16, 32)


def best_dataflow(
    workload: hw.Workload, config: hw.AcceleratorConfig, architecture: str, quick: bool
) -> hw.HardwareReport:
    """The lowest-energy report over the dataflow options on the budget's cores, PEs and SRAM
    macros (streamed or stationary weights with each PE buffer size, batching, sized codes)."""
    reports = []
    for flow, buffer in QUICK_DATAFLOWS if quick else DATAFLOWS:
        got, _ = hw.sweep(
            workload,
            config=replace(config, weight_dataflow=flow, pe_buffer_kb=buffer),
            architecture=architecture,
            axes={"event_batching": (False, True), "sized_codes": (False, True)},
        )
        reports += got
    return min(reports, key=lambda r: r.energy_j)


def binary_networks(
    config: hw.AcceleratorConfig, quick: bool, out: Path
) -> tuple[list[dict[str, Any]], list[str]]:
    """The binary rate networks on the rate core and the crossbar, their ANNs on the dense
    array and as TTFS networks on the TTFS accelerator: on the default budget, and with each
    architecture's best dataflow."""
    full = load_dataset("mnist", "train")
    rest, _ = split_validation(full, 5000 / len(full), seed=0)
    rest = replace(rest, name="mnist-train55k")
    calibration = rest.head(5000)
    steps = QUICK_BINARY_STEPS if quick else BINARY_STEPS
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for name, epochs in BINARY_NETWORKS:
        test = load_dataset("mnist", "test", limit=200 if quick else BINARY_TEST[name])
        train_part = replace(rest.head(6000), name="mnist-quick6k") if quick else rest
        model, _ = trained(
            name,
            train_part,
            test,
            1 if quick else epochs,
            models=models_dir(out, quick),
            binary=True,
        )
        model.eval()
        ann_accuracy = evaluate(model, test)
        graph = onespike.extract(model, test.images[:2])
        graph = onespike.normalize(graph, batches(calibration, 500), percentile=99.99)
        rate_net = onespike.convert(graph, onespike.RateConfig(steps=max(steps), binary=True))
        by_steps = rate_workloads(rate_net, test, steps)
        within = [t for t in steps if by_steps[t][1] >= ann_accuracy - 0.01]
        rate_t = within[0] if within else max(steps, key=lambda t: by_steps[t][1])
        rate, rate_accuracy = by_steps[rate_t]
        ttfs_net = onespike.convert(graph, onespike.TTFSConfig(steps=TTFS_STEPS, rectifier=False))
        ttfs, ttfs_accuracy, decision = ttfs_workload(ttfs_net, test)
        ann = hw.profile(graph, len(test))
        binary_layers = [layer.name for layer in rate.layers if layer.binary]
        for label in ("default", "best dataflow"):
            for architecture, workload, accuracy, t in (
                ("in-memory", rate, rate_accuracy, rate_t),
                ("rate-core", rate, rate_accuracy, rate_t),
                ("dense-ann", ann, ann_accuracy, 0),
                ("ttfs-accelerator", ttfs, ttfs_accuracy, TTFS_STEPS),
            ):
                report = (
                    hw.run(workload, config=config, architecture=architecture)
                    if label == "default"
                    else best_dataflow(workload, config, architecture, quick)
                )
                budget_config = report.config
                row = {
                    "model": f"{name}-binary",
                    "budget": label,
                    "architecture": architecture,
                    "method": report.method,
                    "snn_accuracy": accuracy,
                    "ann_accuracy": ann_accuracy,
                    "steps": t,
                    "samples": workload.samples,
                    "energy_per_inference_j": report.energy_j,
                    "energy_counts": f"hardware model {architecture}, {budget(budget_config)}",
                    "dynamic_energy_j": report.dynamic_pj * 1e-12,
                    "static_energy_j": report.static_pj * 1e-12,
                    "energy_by_component_j": {
                        c: report.component_pj(c) * 1e-12 for c in hw.COMPONENTS
                    },
                    "latency_s": report.latency_s,
                    "binary_layers": binary_layers,
                    "rate_accuracy_by_steps": {str(k): v[1] for k, v in by_steps.items()},
                }
                if architecture == "ttfs-accelerator":
                    row.update(decision)
                rows.append(row)
        mine = {(r["budget"], r["architecture"]): r for r in rows if r["model"] == f"{name}-binary"}
        for label in ("default", "best dataflow"):
            energies = {a: mine[(label, a)]["energy_per_inference_j"] for a in hw.ARCHITECTURES}
            order = sorted(energies, key=energies.__getitem__)
            notes.append(
                f"{name}-binary ({label} budget; rate T={rate_t}, "
                f"{100 * rate_accuracy:.2f}% vs ANN {100 * ann_accuracy:.2f}%; "
                f"TTFS T={TTFS_STEPS}, {100 * ttfs_accuracy:.2f}%): energy per inference "
                + ", ".join(f"{a} {_us(energies[a])} uJ" for a in order)
                + f"; lowest: {order[0]}."
            )
    return rows, notes


def binary_section(rows: list[dict[str, Any]], notes: list[str]) -> list[str]:
    lines = [
        "",
        "## Binary-weight rate networks on the in-memory architecture",
        "",
        "The binary networks of `rate.py` (hidden layers with +-1 synapses, first and last "
        "layers full precision): the rate-coded SNN on the crossbar architecture (binary layers "
        "on crossbars of binary cells, a column evaluation 1.27 pJ with its ADC after the "
        "XNOR-SRAM macro's 403 TOPS/W, Yin et al., JSSC 2020; every tile evaluated at every "
        "step; the other layers on the digital PEs) and on the rate core, the binary ANN on "
        "the dense array, and its TTFS conversion on the TTFS accelerator. The default budget, "
        "and the same cores, PEs and SRAM macros with each architecture's lowest-energy "
        "dataflow (streamed or stationary weights with 1, 4 or 16 KB PE buffers, batching, "
        "sized codes; the choice is in each row's `energy_counts`).",
        "",
        "| model | budget | architecture | acc. | T | energy/inf. (uJ) | latency (us) | crossbar | "
        "weight reads | state r/w | neuron updates | static | what it prices |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        e = r["energy_by_component_j"]
        lines.append(
            f"| {r['model']} | {r['budget']} | {r['architecture']} | "
            f"{100 * r['snn_accuracy']:.2f}% | {r['steps'] or '-'} | "
            f"{_us(r['energy_per_inference_j'])} | {_us(r['latency_s'])} | {_us(e['crossbar'])} | "
            f"{_us(e['weight_reads'])} | {_us(e['state_reads_writes'])} | "
            f"{_us(e['neuron_updates'])} | {_us(r['static_energy_j'])} | {r['energy_counts']} |"
        )
    lines += ["", *(f"- {n}" for n in notes)]
    return lines


def _us(x: float) -> str:
    return f"{x * 1e6:,.2f}"


def markdown(rows: list[dict[str, Any]], notes: list[str], config: hw.AcceleratorConfig) -> str:
    lines = [
        "# Hardware models on MNIST",
        "",
        f"Silicon budget (all architectures): {config.cores} cores x {config.pes} PEs, "
        f"{config.weight_sram_kb:g} KB weight + {config.state_sram_kb:g} KB state + "
        f"{config.event_sram_kb:g} KB event SRAM per core, {config.clock_hz / 1e6:g} MHz, "
        f"{config.weight_bits}-bit weights, {config.state_bits}-bit states, "
        f"{config.accumulator} adds, {config.operand} multiplies, technology "
        f"{config.tech.name} ({config.tech.source}); leakage {config.leakage_w * 1e3:.2f} mW. "
        "Equations: `onespike.hardware.models`; numbers and their sources: `docs/hardware.md`.",
        "",
        "| model | architecture | acc. | T | time steps | energy/inf. (uJ) | latency (us) | "
        "avg. power (mW) | EDP (J s) | power at common rate (mW) | utilisation | bottleneck |",
        "|" + "---|" * 12,
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['architecture']} | {100 * r['snn_accuracy']:.2f}% | "
            f"{r['steps'] or '-'} | {r['latency_steps']:g} | {_us(r['energy_per_inference_j'])} | "
            f"{_us(r['latency_s'])} | "
            f"{1e3 * r['average_power_w']:.1f} | {r['edp_js']:.3e} | "
            f"{1e3 * r['power_at_common_rate_w']:.2f} | {100 * r['utilisation']:.0f}% | "
            f"{r['bottleneck']} |"
        )
    lines += [
        "",
        "Average power: energy per inference over the time per inference, the accelerator "
        "running inferences back to back (leakage included). Power at common rate: each "
        "architecture serving the slowest one's inference rate and idle (leaking) in between: "
        "dynamic energy per inference x rate + leakage. TTFS runs without rectifier events "
        "(the forced spikes decode to 0 and change no output). T of the rate core: the "
        "smallest run length whose test accuracy reaches the TTFS network's.",
        "",
        "## The counts behind it (per inference)",
        "",
        "| model | architecture | spikes | synops | synaptic events | MACs | neuron updates | "
        "compute | weight reads | state r/w | neuron updates | routing | crossbar | static (uJ) |",
        "|" + "---|" * 14,
    ]
    for r in rows:
        c, e = r["counts_per_inference"], r["energy_by_component_j"]
        lines.append(
            f"| {r['model']} | {r['architecture']} | {c['spikes']:,.0f} | {c['synops']:,.0f} | "
            f"{c['synaptic_events']:,.0f} | {c['macs']:,.0f} | {c['neuron_updates']:,.0f} | "
            + " | ".join(_us(e[k]) for k in hw.COMPONENTS)
            + f" | {_us(r['static_energy_j'])} |"
        )
    lines += [
        "",
        "Neuron updates: the TTFS accelerator evaluates each neuron once (its counter event); "
        "the rate core updates every neuron at every step; the ANN once per neuron.",
        "",
        "## Verdicts",
        "",
        *(f"- {n}" for n in notes),
        "",
        "Reading the power verdicts: on one silicon budget each architecture keeps its PEs as "
        "busy as its work allows, so its power while running is (energy per busy PE-cycle) x "
        "(busy PE-cycles per second). A synaptic event costs the same on the TTFS accelerator "
        "and on the rate core (an add, a weight read, a state read and a state write) and takes "
        "one PE-cycle on both, so doing fewer events shortens the run as much as it cuts the "
        "energy: the TTFS network's saving shows in energy per inference and latency, and in "
        "power only where the work is served at a fixed inference rate. Where the rate core's "
        "work is mostly dense MACs of its analog first layer (partial sums in PE registers, "
        "no state traffic), each of its busy cycles is cheaper, and its power while running is "
        "lower than the TTFS accelerator's.",
        "",
        "## PE scaling (PEs per core, 4 cores): latency (us) / utilisation / bottleneck",
        "",
        "| model | architecture | " + " | ".join(str(p) for p in PES) + " |",
        "|" + "---|" * (len(PES) + 2),
    ]
    for r in rows:
        cells = [
            f"{_us(s['latency_s'])} / {100 * s['utilisation']:.0f}% / {s['bottleneck']}"
            for s in r["pe_scaling"]
        ]
        lines.append(f"| {r['model']} | {r['architecture']} | " + " | ".join(cells) + " |")
    lines += ["", "## Same budget at 7 nm (Jouppi et al., ISCA 2021)", ""]
    lines += ["| model | architecture | energy/inf. (uJ) | latency (us) | avg. power (mW) |"]
    lines += ["|---|---|---|---|---|"]
    for r in rows:
        s = r["at_7nm"]
        lines.append(
            f"| {r['model']} | {r['architecture']} | {_us(s['energy_per_inference_j'])} | "
            f"{_us(s['latency_s'])} | {1e3 * s['average_power_w']:.1f} |"
        )
    lines += loihi_section(rows)
    return "\n".join(lines) + "\n"


def loihi_section(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "",
        "## Loihi-style estimate beside Quartz's Loihi measurements (MNIST ConvNet)",
        "",
        "Estimate: Davies et al. (IEEE Micro 2018) Table 2 energies (23.6 pJ per synaptic op, "
        "81 / 52 pJ per active / inactive neuron update, 1.7 pJ per within-tile spike), every "
        "compartment updated at every step, no tile hops, no static power: a lower bound on "
        "dynamic energy.",
        "",
        "| model | network | T | steps | synaptic ops | active / inactive updates | "
        "estimated dynamic energy (uJ) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "loihi_estimate" not in r:
            continue
        est = r["loihi_estimate"]
        lines.append(
            f"| {r['model']} | {r['method']} | {r['steps']} | {est['steps']:g} | "
            f"{est['synaptic_ops']:,.0f} | {est['active_updates']:,.0f} / "
            f"{est['inactive_updates']:,.0f} | {_us(est['dynamic_energy_j'])} |"
        )
    lines += [
        "",
        "Quartz on Loihi, MNIST ConvNet: the nxSDK probes of github.com/biphasic/Quartz-on-"
        "Loihi `CNN/mnist-EDP-plot.ipynb` (unchanged since May 2021; see `docs/hardware.md`):",
        "",
        "| t_max | error | steps | first output spike | time/step (us) | latency (ms) | core "
        "dynamic to decision (uJ) | core dynamic + static to decision (uJ) | cores + x86, all "
        "steps (uJ) | EDP (uJ s) |",
        "|" + "---|" * 10,
    ]
    for q in hw.QUARTZ_LOIHI_MNIST:
        lines.append(
            f"| {q.t_max} | {q.error_percent}% | {q.steps_per_sample} | {q.first_output_step} | "
            f"{q.time_per_step_us:.1f} | {q.latency_s * 1e3:.2f} | "
            f"{q.dynamic_energy_j * 1e6:.1f} | {q.core_energy_j * 1e6:.1f} | "
            f"{q.system_energy_j * 1e6:.1f} | {q.edp_js * 1e6:.3f} |"
        )
    edp = hw.QUARTZ_MNIST_EDP_UJS
    lines += [
        "",
        "EDP: cores and x86 cores over all steps times the latency, the accounting the "
        "notebook's plot uses. EDP bars of the Quartz repository's plotting notebook (MNIST, "
        "uJ s): " + ", ".join(f"{k} {v:g}" for k, v in edp.items()) + "; the rate bar is NxTF's "
        "result (Rueckauer et al., arXiv 2101.04261), not a rate code Quartz ran.",
    ]
    return lines


def plot(reports: list[tuple[str, hw.HardwareReport]], path: Path) -> str:
    try:
        hw.plot_energy_breakdown(
            [r for _, r in reports],
            path,
            labels=[label for label, _ in reports],
            title="MNIST: energy per inference by component",
        )
    except ImportError as exc:
        return f"no plot: {exc}"
    return f"plot written to {path}"


def meta_of(args: argparse.Namespace, test_samples: int, **extra: Any) -> dict[str, Any]:
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "torch_threads": 1,
        "torch": torch.__version__,
        "quick": args.quick,
        "test_samples": test_samples,
        **extra,
    }


def main_part(args: argparse.Namespace, config: hw.AcceleratorConfig) -> None:
    """The MLP and Quartz's ConvNet on the default budget, then the design-space sweep."""
    test = load_dataset("mnist", "test", limit=200 if args.quick else None)
    calibration = load_dataset("mnist", "train", limit=1000 if args.quick else 5000)
    rows: list[dict[str, Any]] = []
    timings = {}
    bars: list[tuple[str, hw.HardwareReport]] = []
    sweeps = []
    networks: tuple[tuple[str, str], ...] = NETWORKS
    rate_steps: tuple[int, ...] = RATE_STEPS
    models = models_dir(args.out, args.quick)
    if args.quick:  # the networks of ttfs.py --quick: 1 epoch on 6,000 training images
        networks = tuple((name, f"mnist-{name}-e1") for name, _ in NETWORKS)
        rate_steps = QUICK_RATE_STEPS
        subset = load_dataset("mnist", "train", limit=6000)
        for name, _ in NETWORKS:
            trained(name, subset, test, 1, models=models)
    else:  # the networks of ttfs.py, trained here if ttfs.py has not cached them
        full = load_dataset("mnist", "train")
        for name, directory in NETWORKS:
            if not (models / directory / "model.json").exists():
                trained(name, full, test, EPOCHS[name], models=models)
    for name, directory in networks:
        mine, info = benchmark_network(
            name, directory, test, calibration, config, rate_steps, models
        )
        rows += mine
        timings[name] = info["seconds"]
        bars += [(f"{name}\n{r.architecture}", r) for r in info["reports"]]
        sweeps.append(sweep_network(name, info["workloads"], config, args.quick))
    notes = verdicts(rows)
    statements = [sweep_statement(s) for s in sweeps]
    suffix = "-quick" if args.quick else ""
    plot_note = plot(bars, args.out / f"hardware{suffix}.png")
    meta = meta_of(
        args,
        len(test),
        ttfs={"steps": TTFS_STEPS, "rectifier": False},
        rate={"candidate_steps": list(rate_steps), "initial_membrane": [0.0, 0.5]},
        config={**asdict(config), "tech": config.tech.name},
        tech_source=config.tech.source,
        sweep_axes={
            k: list(v) for k, v in (QUICK_SWEEP_AXES if args.quick else SWEEP_AXES).items()
        },
        sweep_dataflows=[list(d) for d in (QUICK_DATAFLOWS if args.quick else DATAFLOWS)],
        seconds_per_network=timings,
        plot=plot_note,
        verdicts=notes,
        sweep_verdicts=statements,
    )
    atomic_write_json(args.out / f"hardware{suffix}.json", rows)
    atomic_write_json(args.out / f"hardware{suffix}.meta.json", meta)
    atomic_write_json(args.out / f"hardware-sweep{suffix}.json", sweeps)
    atomic_write_json(
        args.out / f"hardware-sweep{suffix}.meta.json", {**meta, "verdicts": statements}
    )
    text = markdown(rows, notes, config) + "\n".join(sweep_section(sweeps)) + "\n"
    atomic_write_text(args.out / f"hardware{suffix}.md", text)
    print(text)


def binary_part(args: argparse.Namespace, config: hw.AcceleratorConfig) -> None:
    """The binary rate networks on the four architectures."""
    started = time.perf_counter()
    rows, notes = binary_networks(config, args.quick, args.out)
    suffix = "-quick" if args.quick else ""
    meta = meta_of(
        args,
        int(rows[0]["samples"]) if rows else 0,
        test_samples_by_model={r["model"]: r["samples"] for r in rows},
        config={**asdict(config), "tech": config.tech.name},
        best_dataflow_options=[list(d) for d in DATAFLOWS],
        crossbar_source=(
            "Yin, Jiang, Seo, Seok, XNOR-SRAM, IEEE JSSC 2020, doi 10.1109/JSSC.2019.2963616: "
            "403 TOPS/W (65 nm, 0.6 V), 256 rows per column evaluation"
        ),
        seconds=time.perf_counter() - started,
        verdicts=notes,
    )
    atomic_write_json(args.out / f"hardware-binary{suffix}.json", rows)
    atomic_write_json(args.out / f"hardware-binary{suffix}.meta.json", meta)
    text = "\n".join(binary_section(rows, notes)) + "\n"
    atomic_write_text(args.out / f"hardware-binary{suffix}.md", text)
    print(text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small subsets (CI)")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("main", "binary"),
        default=["main", "binary"],
        help="main: the MLP and ConvNet on the default budget and the design-space sweep "
        "(hardware.*, hardware-sweep.*); binary: the binary rate networks (hardware-binary.*)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results directory (default: see module doc)"
    )
    args = parser.parse_args()
    args.out = out_dir(args.out, args.quick)
    torch.set_num_threads(1)
    config = hw.AcceleratorConfig()
    if "main" in args.parts:
        main_part(args, config)
    if "binary" in args.parts:
        binary_part(args, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
