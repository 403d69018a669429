"""Write BENCHMARKS.md from the JSON results of one results directory.

Reads ``NAME.json`` and ``NAME.meta.json`` (or the ``NAME-quick.*`` files of a ``--quick``
run) for every benchmark in ``BENCHMARKS`` and writes one page: the runs (machine, threads,
date, command of each, from the meta files), a comparison of every method on the networks
that ``rate.py`` trains (other networks are named as such in the table), and one table per
method with its verdicts. Every number on the page is read from those files; nothing is typed
here. A missing or unreadable file is reported on the page, not raised. The page is written
atomically (a reader sees the old page or the new one).

Usage::

    python benchmarks/summary.py                       # benchmarks/results -> BENCHMARKS.md
    python benchmarks/summary.py --results runs/bench-quick --out runs/bench-quick/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onespike._fs import atomic_write_text

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
PAGE = ROOT.parent / "BENCHMARKS.md"
# (file stem, section title, script): the order of the page.
BENCHMARKS = (
    ("ttfs", "Exact TTFS conversion (Quartz)", "ttfs.py"),
    ("ttfs_optimise", "TTFS-aware optimisation (YOSO)", "ttfs_optimise.py"),
    ("rate", "Rate coding, full-precision and binary weights (Lu & Sengupta)", "rate.py"),
    ("rate-peers", "Rate coding against the peers on whole test sets", "rate.py --label peers"),
    ("hybrid", "Single-spike hybrid encoding with STDB (Datta et al.)", "hybrid.py"),
    ("hybrid-labels", "Single-spike hybrid, STDB on the labels alone", "hybrid.py"),
    (
        "hybrid-fashion-mnist-shift1",
        "Single-spike hybrid, Fashion-MNIST, labels alone with 1-pixel shifts",
        "hybrid.py",
    ),
    (
        "hybrid-fashion-mnist-flip",
        "Single-spike hybrid, Fashion-MNIST, the main recipe with mirroring",
        "hybrid.py",
    ),
    (
        "hybrid-fashion-mnist-seed1",
        "Single-spike hybrid, Fashion-MNIST, the main recipe with another seed",
        "hybrid.py",
    ),
    ("quartz", "Quartz's MNIST table reproduced (t_max = 16)", "quartz.py"),
    ("hardware", "Hardware models", "hardware.py"),
    (
        "hardware-sweep",
        "Hardware design space: TTFS accelerator against the dense array",
        "hardware.py",
    ),
    ("hardware-binary", "Binary-weight rate networks on the in-memory architecture", "hardware.py"),
    ("deep", "Deep networks: ResNet-20 and VGG-11-slim, every method on one network", "deep.py"),
    ("extract", "Extraction and normalisation of real classifiers", "extract.py"),
    ("speed", "Simulator speed against the ANN, a plain-torch floor and the peers", "speed.py"),
)
# Variants of a benchmark that only ``make bench`` runs: a quick page leaves them out.
FULL_ONLY = (
    "hybrid-labels",
    "hybrid-fashion-mnist-shift1",
    "hybrid-fashion-mnist-flip",
    "hybrid-fashion-mnist-seed1",
)
# Accuracy within this many points of the ANN selects a row for the comparison.
WITHIN_POINTS = 1.0


# loading ---------------------------------------------------------------------------------------
@dataclass
class Result:
    """The rows and meta data of one benchmark, or why they could not be read."""

    stem: str
    title: str
    script: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the rows could be read."""
        return self.problem is None


def load(results: Path, stem: str, title: str, script: str) -> Result:
    """Read ``stem.json`` (else ``stem-quick.json``) and its meta file from ``results``."""
    result = Result(stem, title, script)
    for suffix in ("", "-quick"):
        path = results / f"{stem}{suffix}.json"
        if not path.exists():
            continue
        result.path = path
        try:
            result.rows = json.loads(path.read_text())
            meta_path = results / f"{stem}{suffix}.meta.json"
            result.meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        except (OSError, ValueError) as exc:
            result.problem = f"unreadable: {exc}"
        if not isinstance(result.rows, list):
            result.problem = "unreadable: the file does not hold a list of rows"
        return result
    result.problem = f"missing: no `{stem}.json` or `{stem}-quick.json`"
    return result


# formatting ------------------------------------------------------------------------------------
def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pct(x: Any, digits: int = 2) -> str:
    """A fraction as a percentage, ``-`` where there is none."""
    return "-" if _missing(x) else f"{100 * x:.{digits}f}%"


def num(x: Any, digits: int = 3) -> str:
    """A real number with ``digits`` decimals, ``-`` where there is none."""
    return "-" if _missing(x) else f"{x:.{digits}f}"


def count(x: Any) -> str:
    """A count with thousands separators, ``-`` where there is none."""
    return "-" if _missing(x) else f"{x:,.0f}"


def steps_cell(x: Any) -> str:
    """A latency in steps: integers as such, means with one decimal."""
    if _missing(x):
        return "-"
    return str(int(x)) if float(x).is_integer() else f"{x:.1f}"


def table(head: list[str], rows: Iterable[list[str]]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def bullets(items: Iterable[str]) -> list[str]:
    """Markdown list lines."""
    return [f"- {item}" for item in items]


def peers_not_run(result: Result) -> list[str]:
    """The peers rate.py could not run, as recorded in its meta file (none: no lines)."""
    missing = result.meta.get("peers_missing") or []
    return ["", "Peers not run:", "", *bullets(missing)] if missing else []


def verdicts(result: Result) -> list[str]:
    """The verdicts a benchmark recorded in its meta file, as a list."""
    notes = result.meta.get("verdicts") or []
    return ["", "Verdicts (from the meta file):", "", *bullets(notes)] if notes else []


# the runs --------------------------------------------------------------------------------------
def runs_section(results: list[Result], page_dir: Path) -> list[str]:
    """Machine, threads, date and command of every run, from the meta files."""
    body = []
    for r in results:
        if not r.ok:
            body.append([r.script, r.problem or "", "-", "-", "-", "-", "-"])
            continue
        parts = r.meta.get("parts") or [r.meta]  # rate.py --merge keeps its parts' meta
        for part in parts:
            body.append(
                [
                    r.script,
                    f"[{r.path.name if r.path else ''}]({link(r.path, page_dir)})",
                    str(part.get("date", "-")),
                    str(part.get("machine", "-")),
                    str(part.get("cpu_count", "-")),
                    str(part.get("torch_threads", "-")),
                    f"`{part['command']}`" if "command" in part else "-",
                ]
            )
    head = ["benchmark", "results", "date (UTC)", "machine", "CPUs", "torch threads", "command"]
    return ["## Runs", "", *table(head, body)]


def link(path: Path | None, page_dir: Path) -> str:
    """``path`` relative to the page's directory (links work from the page)."""
    return "" if path is None else Path(os.path.relpath(path, page_dir)).as_posix()


# the comparison --------------------------------------------------------------------------------
def architecture(row: dict[str, Any]) -> str:
    """The architecture of a row: ``ttfs_optimise.py`` labels its wider Fashion-MNIST ConvNet
    ``fashion-convnet-bn``; every other benchmark names the architecture itself."""
    model = str(row.get("model", "?"))
    if row.get("dataset") == "fashion-mnist" and model.startswith("fashion-"):
        return model.removeprefix("fashion-")
    return model


def selected(
    rows: list[dict[str, Any]], accuracy: Callable[[dict[str, Any]], float]
) -> dict[str, Any] | None:
    """The row of fewest steps whose SNN is within ``WITHIN_POINTS`` of ``accuracy(row)``,
    else the most accurate row (fewest steps on ties)."""
    if not rows:
        return None
    good = [r for r in rows if 100 * (accuracy(r) - r["snn_accuracy"]) <= WITHIN_POINTS]
    if good:
        return min(good, key=lambda r: (r["steps"], r.get("mean_latency_steps") or 0))
    return max(rows, key=lambda r: (r["snn_accuracy"], -r["steps"]))


def _ann(r: dict[str, Any]) -> float:
    """The accuracy a row is compared with: its own ANN's."""
    return float(r["ann_accuracy"])


def spiking_cells(r: dict[str, Any], *, mean_latency: bool = False) -> list[str]:
    """T, accuracies, latency, spikes, synops, MACs, energy of a summarize() row."""
    latency = r.get("mean_latency_steps") if mean_latency else r.get("latency_steps")
    return [
        str(r["steps"]),
        pct(r.get("ann_accuracy")),
        pct(r.get("snn_accuracy")),
        steps_cell(latency),
        num(r.get("spikes_per_neuron")),
        count(r.get("synops")),
        count(r.get("snn_macs")),
        num(r.get("energy_ratio_vs_ann")),
    ]


def comparison_rows(found: dict[str, Result]) -> tuple[list[list[str]], list[str]]:
    """One table of every method per (dataset, architecture), each on one trained network.

    ``rate.py``'s full-precision networks are the ones ``hybrid.py`` converts; ``deep.py``
    records the SHA-256 of its weights in every row, and a row on other weights than its
    network's ANN row is left out. Rows on other trainings (``ttfs.py``, ``ttfs_optimise.py``
    and ``hardware.py``, which prices ``ttfs.py``'s, and the binary-weight networks) are named
    in the notes, not listed.
    """
    groups: dict[tuple[str, str], list[list[str]]] = {}
    seen: dict[tuple[str, str], set[str]] = {}
    notes: list[str] = []

    def add(row: dict[str, Any], script: str, cells: list[str]) -> None:
        key = (str(row.get("dataset")), architecture(row))
        groups.setdefault(key, []).append([key[0], key[1], *cells, count(row.get("samples"))])
        seen.setdefault(key, set()).add(script)

    def ann_cells(row: dict[str, Any], network: str) -> list[str]:
        accuracy = pct(row["ann_accuracy"])
        macs = count(row.get("ann_macs"))
        return ["ANN (fp32)", network, "-", accuracy, accuracy, "1 pass", "-", "0", macs, "1.000"]

    def from_rate(rate: Result) -> None:
        mine = [r for r in rate.rows if r.get("method") == "rate" and not r["binary"]]
        for dataset, model in dict.fromkeys((r["dataset"], r["model"]) for r in mine):
            fp = [r for r in mine if (r["dataset"], r["model"]) == (dataset, model)]
            add(fp[0], "rate.py", ann_cells(fp[0], "rate.py's"))
            for variant in ("plain", "optimised"):
                row = selected([r for r in fp if r.get("variant") == variant], _ann)
                if row is not None:
                    cells = spiking_cells(row, mean_latency=bool(row.get("early_exit")))
                    add(row, "rate.py", [f"rate, {variant}", "rate.py's", *cells])
        if any(r.get("binary") for r in rate.rows if r.get("method") == "rate"):
            notes.append(
                "rate.py's binary-weight rows: other weights (a binary training of each "
                "architecture), in its own section"
            )

    def from_hybrid(hybrid: Result) -> None:
        tuned = [r for r in hybrid.rows if r.get("finetuned")]
        for dataset in dict.fromkeys(r["dataset"] for r in tuned):
            rows = [r for r in tuned if r["dataset"] == dataset]
            best = selected(rows, _ann)
            marked = [r for r in rows if r.get("marked") and r is not best]
            for pick in [best, *marked] if best is not None else marked:
                cells = spiking_cells(pick)
                cells[4] = num(pick.get("hidden_spikes_per_neuron"))
                add(
                    pick,
                    "hybrid.py",
                    [
                        "hybrid + STDB" + (" (marked T)" if pick.get("marked") else ""),
                        "rate.py's",
                        *cells,
                    ],
                )

    def from_deep(deep: Result) -> None:
        for dataset, model in dict.fromkeys(
            (r["dataset"], r["model"]) for r in deep.rows if r.get("method") == "ann"
        ):
            mine = [
                r
                for r in deep.rows
                if (r["dataset"], r["model"]) == (dataset, model) and not r.get("binary")
            ]
            ann = next(r for r in mine if r["method"] == "ann")
            network = f"deep.py's ({str(ann.get('weights', ''))[:8]})"
            other = [r for r in mine if r.get("weights") != ann.get("weights")]
            if other:
                notes.append(
                    f"deep.py {dataset} / {model}: {len(other)} rows on other weights than its "
                    "ANN row, left out"
                )
            mine = [r for r in mine if r.get("weights") == ann.get("weights")]
            add(ann, "deep.py", ann_cells(ann, network))
            picks: list[tuple[str, list[dict[str, Any]]]] = [
                ("TTFS, no rectifier", [r for r in mine if r["method"] == "ttfs"]),
                ("TTFS-aware fine-tuned", [r for r in mine if r["method"] == "ttfs-aware"]),
                *(
                    (
                        f"rate, {variant}",
                        [r for r in mine if r["method"] == "rate" and r["variant"] == variant],
                    )
                    for variant in ("plain", "optimised")
                ),
                (
                    "hybrid + STDB (marked T)",
                    [r for r in mine if r["method"] == "hybrid" and r.get("finetuned")],
                ),
            ]
            for label, rows in picks:
                row = selected(rows, _ann)
                if row is None:
                    continue
                cells = spiking_cells(row, mean_latency=bool(row.get("early_exit")))
                if row["method"] == "hybrid":
                    cells[4] = num(row.get("hidden_spikes_per_neuron"))
                if row.get("decision_steps_mean") is not None:
                    cells[3] += f" (decision {row['decision_steps_mean']:.0f})"
                add(row, "deep.py", [label, network, *cells])

    builders: dict[str, Callable[[Result], None]] = {
        "rate": from_rate,
        "hybrid": from_hybrid,
        "deep": from_deep,
    }
    for stem, build in builders.items():
        result = found.get(stem)
        if result is None or not result.ok:
            continue
        try:
            build(result)
        except (KeyError, TypeError, ValueError, ZeroDivisionError, StopIteration) as exc:
            notes.append(f"{result.script}: rows without the expected fields ({exc!r})")
    for stem, script in (
        ("ttfs", "ttfs.py"),
        ("ttfs_optimise", "ttfs_optimise.py"),
        ("hardware", "hardware.py"),
    ):
        result = found.get(stem)
        if result is not None and result.ok and result.rows:
            notes.append(f"{script}: other weights (its own trainings), in its own section")
    body: list[list[str]] = []
    datasets = list(dict.fromkeys(d for d, _ in groups))
    models = list(dict.fromkeys(m for _, m in groups))
    for key in sorted(groups, key=lambda k: (datasets.index(k[0]), models.index(k[1]))):
        body += groups[key]
        if "deep.py" not in seen[key]:
            notes.append(
                f"{key[0]} / {key[1]}: no TTFS or TTFS-aware rows on this network (rate.py's); "
                "not run on shared weights yet"
            )
    return body, notes


def comparison_section(found: dict[str, Result]) -> list[str]:
    """The table of every method on one trained network per architecture."""
    head = [
        "dataset",
        "architecture",
        "method",
        "network",
        "T",
        "ANN acc.",
        "SNN acc.",
        "latency (steps)",
        "spikes/neuron",
        "synops",
        "MACs",
        "energy vs ANN (45 nm)",
        "test images",
    ]
    body, notes = comparison_rows(found)
    missing = [f"`{r.stem}.json` ({r.script}): {r.problem}" for r in found.values() if not r.ok]
    lines = [
        "## All methods on the same networks",
        "",
        "Every row of a (dataset, architecture) group comes from one trained network: "
        "`rate.py`'s (the training set less a held-out validation split; `hybrid.py` converts "
        "the same ConvNets) or `deep.py`'s (the same split; every row records the SHA-256 of "
        "the weights it ran on, the first 8 hex digits are in the network column, and a row "
        "on other weights is left out). Rows on other trainings are not in this table (see the "
        "notes). The last column gives the test images behind each row. Each method's row is "
        "its run of fewest time steps (among the T it recorded) whose SNN comes within "
        f"{WITHIN_POINTS:g} point of its own ANN (else its most accurate run): TTFS without "
        "rectifier events (same accuracy, fewer spikes; latency is the whole inference, the "
        "mean step of the first output spike in brackets), TTFS-aware fine-tuning, rate "
        "coding with onespike's default conversion (`plain`) and with threshold scaling and "
        "early exit (`optimised`, latency = mean steps), hybrid after STDB fine-tuning (plus "
        "the paper's marked T). For hybrid rows, spikes/neuron counts hidden neurons. Energy "
        "vs ANN: compute energy at 45 nm (Horowitz, ISSCC 2014) of the SNN over that of its "
        "ANN.",
        "",
        *table(head, body),
    ]
    if notes or missing:
        lines += ["", "Not in this table:", "", *bullets(notes), *bullets(missing)]
    return lines


# one section per method ------------------------------------------------------------------------
def decision_cell(x: dict[str, Any]) -> str:
    """TTFS decision time (first output spike): mean / max steps, ``-`` where not recorded."""
    mean, largest = x.get("decision_steps_mean"), x.get("decision_steps_max")
    if _missing(mean) or _missing(largest):
        return "-"
    return f"{mean:.1f} / {largest:g}"


def ttfs_section(r: Result) -> list[str]:
    """Every row of ``ttfs.py``."""
    head = [
        "model",
        "T",
        "rectifier",
        "ANN acc.",
        "SNN acc.",
        "spikes/neuron",
        "synops",
        "ANN MACs",
        "energy vs ANN",
        "latency (steps)",
        "decision mean / max (steps)",
        "sim. throughput vs ANN",
        "stepped = closed form",
    ]
    body = []
    for x in r.rows:
        check = x.get("stepped_check") or {}
        same = check.get("identical_spikes", check.get("identical_spike_times"))
        body.append(
            [
                x["model"],
                str(x["steps"]),
                "on" if x.get("rectifier") else "off",
                pct(x["ann_accuracy"]),
                pct(x["snn_accuracy"]),
                num(x["spikes_per_neuron"]),
                count(x["synops"]),
                count(x["ann_macs"]),
                num(x["energy_ratio_vs_ann"]),
                steps_cell(x["latency_steps"]),
                decision_cell(x),
                f"{num(x.get('sim_throughput_ratio_vs_ann'), 2)}x",
                f"{pct(same, 1)} of spikes ({check.get('samples', '-')} images)",
            ]
        )
    return table(head, body)


def ttfs_optimise_section(r: Result) -> list[str]:
    """Every row of ``ttfs_optimise.py``."""
    head = [
        "dataset",
        "model",
        "method",
        "T",
        "ANN acc.",
        "fine-tuned ANN",
        "SNN acc.",
        "clipped",
        "spikes/neuron",
        "energy vs ANN",
        "latency (steps)",
        "decision mean / max (steps)",
    ]
    body = [
        [
            x["dataset"],
            x["model"],
            x["method"],
            str(x["steps"]),
            pct(x["ann_accuracy"]),
            pct(x.get("finetuned_ann_accuracy")),
            pct(x["snn_accuracy"]),
            pct(x.get("early_spike_fraction"), 3),
            num(x["spikes_per_neuron"]),
            num(x["energy_ratio_vs_ann"]),
            steps_cell(x["latency_steps"]),
            decision_cell(x),
        ]
        for x in r.rows
    ]
    return table(head, body)


def rate_section(r: Result) -> list[str]:
    """Steps to within 1 point per variant, then every variant and peer at a few T."""
    variants = ("plain-max", "plain", "threshold-scale", "early-exit", "optimised")
    summaries = r.meta.get("summaries") or []
    lines = []
    if summaries:
        head = [
            "dataset",
            "model",
            "weights",
            "ANN acc.",
            *variants,
            "speed-up vs plain-max",
        ]
        body = [
            [
                s["dataset"],
                s["model"],
                "binary" if s["binary"] else "fp32",
                pct(s["ann_accuracy"]),
                *(
                    "not reached"
                    if s["steps_within_1pt"].get(v) is None
                    else steps_cell(s["steps_within_1pt"][v])
                    for v in variants
                ),
                "-"
                if s.get("speedup_vs_plain_max") is None
                else f"{s['speedup_vs_plain_max']:.1f}x",
            ]
            for s in summaries
        ]
        lines += [
            "Time steps for each variant to come within 1 point of the ANN (early exit: mean "
            "steps), on the test subsets recorded in the meta file's summaries.",
            "",
            *table(head, body),
            "",
        ]
    present = sorted({x["steps"] for x in r.rows})
    shown = [t for t in present if t in (8, 32, 128)] or present
    middle = shown[len(shown) // 2]
    keys = dict.fromkeys(
        (x["dataset"], x["model"], bool(x["binary"]), str(x.get("variant", x["method"])))
        for x in r.rows
    )
    by_key = {
        (
            x["dataset"],
            x["model"],
            bool(x["binary"]),
            str(x.get("variant", x["method"])),
            x["steps"],
        ): x
        for x in r.rows
    }
    head = [
        "dataset",
        "model",
        "weights",
        "variant / peer",
        *(f"acc. T={t}" for t in shown),
        f"mean latency (T={middle})",
        f"spikes/neuron (T={middle})",
        f"synops (T={middle})",
        f"energy vs ANN (T={middle})",
    ]
    body = []
    for key in keys:
        at = by_key.get((*key, middle), {})
        body.append(
            [
                key[0],
                key[1],
                "binary" if key[2] else "fp32",
                key[3],
                *(pct(by_key.get((*key, t), {}).get("snn_accuracy")) for t in shown),
                steps_cell(at.get("mean_latency_steps")),
                num(at.get("spikes_per_neuron")),
                count(at.get("synops")),
                num(at.get("energy_ratio_vs_ann")),
            ]
        )
    lines += [
        f"Every variant and peer at T in {', '.join(map(str, shown))} (every T is in the "
        "JSON); peers report accuracy only.",
        "",
        *table(head, body),
    ]
    return lines + peers_not_run(r)


def hybrid_section(r: Result) -> list[str]:
    """The rows of ``hybrid.py`` before and after STDB, its converted sweep and STDB curves."""
    head = [
        "dataset",
        "T",
        "STDB",
        "ANN acc.",
        "SNN acc.",
        "spikes/hidden neuron",
        "max spikes/neuron",
        "SNN MACs",
        "synops",
        "energy vs ANN",
        "energy vs ANN, MACs + acc. only",
    ]
    body = [
        [
            x["dataset"],
            f"**{x['steps']}**" if x.get("marked") else str(x["steps"]),
            "after" if x.get("finetuned") else "before",
            pct(x["ann_accuracy"]),
            pct(x["snn_accuracy"]),
            num(x.get("hidden_spikes_per_neuron")),
            str(x.get("max_spikes_per_neuron", "-")),
            count(x.get("snn_macs")),
            count(x.get("synops")),
            num(x.get("energy_ratio_vs_ann")),
            num(x.get("energy_ratio_macs_accumulates")),
        ]
        for x in r.rows
    ]
    lines = ["The marked T (bold) is the paper's setting.", "", *table(head, body)]
    for x in r.rows:
        sweep = x.get("converted_sweep")
        if x.get("finetuned") or not sweep:
            continue
        steps = x.get("sweep_steps", [])
        lines += [
            "",
            f"Converted, before STDB, {x['dataset']} ({x.get('sweep_test_images')} test images):",
            "",
            *table(
                ["conversion", *(f"T={t}" for t in steps)],
                [[name, *(pct(a) for a in accs)] for name, accs in sweep.items()],
            ),
        ]
    for x in r.rows:
        stdb = x.get("stdb")
        if not x.get("finetuned") or not stdb:
            continue
        curve = ", ".join(pct(h["val_accuracy"]) for h in stdb.get("history", []))
        lines += [
            "",
            f"STDB {x['dataset']} T={x['steps']}, validation accuracy per epoch "
            f"({stdb.get('validation_images')} held-out images, best epoch "
            f"{stdb.get('best_epoch')}): {curve}",
        ]
    return lines


def hardware_section(r: Result) -> list[str]:
    """The budget and every architecture's row of ``hardware.py``."""
    head = [
        "model",
        "architecture",
        "acc.",
        "T",
        "time steps",
        "energy/inf. (uJ)",
        "latency (us)",
        "avg. power (mW)",
        "EDP (J s)",
        "utilisation",
        "bottleneck",
    ]
    body = [
        [
            x["model"],
            x["architecture"],
            pct(x["snn_accuracy"]),
            str(x["steps"] or "-"),
            steps_cell(x["latency_steps"])
            + ("" if decision_cell(x) == "-" else f" (decision {decision_cell(x)})"),
            f"{1e6 * x['energy_per_inference_j']:,.2f}",
            f"{1e6 * x['latency_s']:,.2f}",
            f"{1e3 * x['average_power_w']:.1f}",
            f"{x['edp_js']:.3e}",
            pct(x["utilisation"], 0),
            str(x["bottleneck"]),
        ]
        for x in r.rows
    ]
    config = r.meta.get("config") or {}
    budget = (
        f"Budget: {config['cores']} cores x {config['pes']} PEs at "
        f"{config['clock_hz'] / 1e6:g} MHz, technology {config.get('tech', '-')} "
        f"({r.meta.get('tech_source', '-')})."
        if {"cores", "pes", "clock_hz"} <= set(config)
        else "Budget: not recorded in the meta file."
    )
    return [budget, "", *table(head, body)]


def quartz_section(r: Result) -> list[str]:
    """Quartz's results file beside onespike's counts, in Quartz's conventions and onespike's."""
    head = [
        "percentile",
        "acc. Quartz",
        "acc. onespike",
        "time steps Quartz",
        "onespike (Quartz's formula)",
        "decision mean / p99 / max",
        "synops Quartz (last 200)",
        "synops onespike (all / last 200)",
        "ops Quartz",
        "ops onespike",
        "reads Quartz / onespike",
        "writes Quartz / onespike",
    ]
    body = []
    for x in r.rows:
        q = x["quartz_reported"]
        body.append(
            [
                f"{x['percentile']:g}",
                pct(q["accuracy"]),
                pct(x["snn_accuracy"]),
                str(q["time_steps"]),
                f"{x['quartz_formula_time_steps']:.1f}",
                f"{x['decision_steps_mean']:.1f} / {x['decision_steps_p99']:g} / "
                f"{x['decision_steps_max']:g}",
                count(q["synops"]),
                f"{count(x['quartz_synops'])} / {count(x['quartz_synops_last_batch'])}",
                count(q["ops"]),
                count(x["quartz_ops"]),
                f"{count(q['reads'])} / {count(x['quartz_reads'])}",
                f"{count(q['writes'])} / {count(x['quartz_writes'])}",
            ]
        )
    meta = r.meta
    intro = (
        f"{meta.get('model', 'the reference ConvNet')} (ANN {pct(meta.get('ann_accuracy'))}), "
        f"converted at T = 16 with the rectifier, {count(meta.get('test_samples'))} test "
        "images, beside Quartz's results file (github.com/biphasic/Quartz "
        "evaluation/mnist/mnist-results.pkl). Quartz-convention counts: "
        '`count_ops(..., convention="quartz")`; decision: onespike\'s first output spike, '
        "counted from the first input step. onespike's own counts (synops, energy to the "
        "decision) are in the linked `quartz.md`."
    )
    return [intro, "", *table(head, body)]


def hardware_sweep_section(r: Result) -> list[str]:
    """How many budgets each network's TTFS accelerator wins, and the Pareto fronts' sizes."""
    head = [
        "model",
        "budgets compared",
        "TTFS lower energy",
        "dense / TTFS energy",
        "lowest TTFS (uJ)",
        "lowest dense (uJ)",
        "Pareto front (TTFS / dense points)",
    ]
    body = []
    for x in r.rows:
        low = x["lowest_energy"]
        front = x["pareto_front"]
        ttfs = sum(1 for p in front if p["architecture"] == "ttfs-accelerator")
        body.append(
            [
                x["model"],
                str(x["budgets_compared"]),
                str(x["budgets_ttfs_lower_energy"]),
                f"{num(x['dense_over_ttfs_energy_min'], 2)} .. "
                f"{num(x['dense_over_ttfs_energy_max'], 2)}",
                f"{1e6 * low['ttfs-accelerator']['energy_per_inference_j']:,.3f}",
                f"{1e6 * low['dense-ann']['energy_per_inference_j']:,.3f}",
                f"{ttfs} / {len(front) - ttfs}",
            ]
        )
    return [
        "Every budget of the sweep (cores, PEs, SRAM macros, weight dataflow, PE buffers) with "
        "each architecture's best free options (events batched, sized codes); the fronts are "
        "listed in the linked `hardware.md`.",
        "",
        *table(head, body),
    ]


def hardware_binary_section(r: Result) -> list[str]:
    """Every architecture's energy for the binary rate networks, default and tuned budgets."""
    head = ["model", "budget", "architecture", "acc.", "T", "energy/inf. (uJ)", "latency (us)"]
    body = [
        [
            x["model"],
            x["budget"],
            x["architecture"],
            pct(x["snn_accuracy"]),
            str(x["steps"] or "-"),
            f"{1e6 * x['energy_per_inference_j']:,.3f}",
            f"{1e6 * x['latency_s']:,.2f}",
        ]
        for x in r.rows
    ]
    return table(head, body)


def rate_peers_section(r: Result) -> list[str]:
    """onespike's default rate conversion and every peer at every T, with the paired test."""
    peers = list(dict.fromkeys(str(x["method"]) for x in r.rows if x["method"] != "rate"))
    ours = {
        (x["dataset"], x["model"], bool(x["binary"]), x["steps"]): x
        for x in r.rows
        if x["method"] == "rate" and x.get("variant") == "plain"
    }
    theirs = {
        (x["dataset"], x["model"], bool(x["binary"]), x["steps"], x["method"]): x
        for x in r.rows
        if x["method"] != "rate"
    }

    def peer_cell(key: tuple[Any, ...], peer: str) -> str:
        row = theirs.get((*key, peer))
        if row is None:
            return "not run"
        paired = row.get("paired_vs_plain") or {}
        p = paired.get("p_value")
        return pct(row["snn_accuracy"]) + ("" if p is None else f" (p={p:.2g})")

    head = ["dataset", "model", "weights", "T", "test images", "ANN", "onespike plain", *peers]
    body = [
        [
            key[0],
            key[1],
            "binary" if key[2] else "fp32",
            str(key[3]),
            count(row.get("samples")),
            pct(row.get("ann_accuracy")),
            pct(row["snn_accuracy"]),
            *(peer_cell(key, peer) for peer in peers),
        ]
        for key, row in ours.items()
    ]
    return [
        "onespike's default conversion (`plain`) and each peer at every T on the same test "
        "images; p is the exact McNemar test of the two on those images.",
        "",
        *table(head, body),
        *peers_not_run(r),
    ]


def extract_section(r: Result) -> list[str]:
    """Extraction and normalisation time against the ANN forward, per network."""
    head = ["model", "graph nodes", "extract / forward", "normalize / forward", "vs ResNet-18"]
    keys = ("extract_vs_forward", "normalize_vs_forward", "deep_vs_resnet18")
    body = [
        [x["model"], str(x["nodes"]), *(f"{x[k]:.2f}x" if k in x else "-" for k in keys)]
        for x in r.rows
    ]
    load = r.meta.get("load_average_before")
    note = (
        f"Medians of {r.meta.get('repeats', '-')} interleaved repeats on "
        f"{r.meta.get('torch_threads', '-')} thread(s); forward: one ANN pass of "
        f"{r.meta.get('batch', '-')} images; normalize against the forward over the same "
        f"{r.meta.get('calibration_images', '-')} calibration images; load average before the "
        f"run {', '.join(f'{v:.2f}' for v in load) if load else '-'}."
    )
    return [note, "", *table(head, body)]


def speed_section(r: Result) -> list[str]:
    """Every measurement of ``speed.py``: medians of interleaved repeats, ratios, targets."""
    head = ["part", "network", "simulator", "B", "T", "what", "median", "ratio", "target"]

    def median(x: dict[str, Any]) -> str:
        if "bytes" in x:
            return f"{x['bytes'] / 2**20:.2f} MiB"
        if "allocations_per_step" in x:
            return f"{x['allocations_per_step']:g} ({x['large_allocations_per_step']:g} >= 1 KiB)"
        return f"{1e3 * x['median_s']:.1f} ms"

    def target(x: dict[str, Any]) -> str:
        if not x.get("target"):
            return ""
        return f"{x['target']}: {'met' if x.get('met') else 'NOT met'}"

    body = [
        [
            x["part"],
            x["network"],
            x["simulator"],
            str(x["batch"]),
            str(x["steps"]),
            x["what"],
            median(x),
            f"{x['ratio']:.2f}x {x.get('ratio_to', '')}" if x.get("ratio") is not None else "",
            target(x),
        ]
        for x in r.rows
    ]
    m = r.meta
    note = (
        f"Medians of {m.get('repeats', '-')} interleaved repeats in one process on "
        f"{m.get('torch_threads', '-')} thread(s), networks with seeded random weights; load "
        f"average {_load(m.get('load_average_start'))} at the start and "
        f"{_load(m.get('load_average_end'))} at the end; peers installed: "
        f"{', '.join(m.get('peers_installed') or []) or 'none'}."
    )
    return [note, "", *table(head, body)]


def _load(values: Any) -> str:
    """A load average triple as its 1-minute figure."""
    return "-" if not values else f"{float(values[0]):.1f}"


def deep_section(r: Result) -> list[str]:
    """The networks, the rate summaries, a selection of rows, and the parts of ``deep.py``."""
    anns = [x for x in r.rows if x.get("method") == "ann"]
    head = [
        "dataset",
        "architecture",
        "weights",
        "depth",
        "parameters",
        "ANN MACs",
        "epochs",
        "training (min)",
        "held-out acc.",
        "test acc.",
        "SHA-256",
    ]
    body = [
        [
            x["dataset"],
            x["model"],
            "binary" if x.get("binary") else "fp32",
            str(x.get("depth", "-")),
            count(x.get("parameters")),
            count(x.get("ann_macs")),
            str(x.get("train_epochs", "-")),
            num((x.get("train_seconds") or float("nan")) / 60, 1),
            pct(x.get("held_out_accuracy")),
            pct(x.get("ann_accuracy")),
            f"`{str(x.get('weights', ''))[:12]}`",
        ]
        for x in anns
    ]
    lines = [
        "One network per dataset and architecture, trained on 55,000 training images (5,000 "
        "held out choose every option); its weights are in `benchmarks/weights/`. Training "
        "ran on one torch thread of a shared 2-core machine (epochs, seconds, threads and load "
        "are in each weights directory's `model.json`).",
        "",
        *table(head, body),
        "",
    ]
    summaries = [x for x in r.rows if x.get("method") == "rate-summary"]
    if summaries:
        variants = ("plain-max", "plain", "optimised")
        head = [
            "dataset",
            "architecture",
            "weights",
            "ANN acc. (subset)",
            *variants,
            "speed-up vs plain-max",
            "threshold scale / patience",
            "test images",
        ]
        body = []
        for x in summaries:
            reached = x.get("steps_within_1pt") or {}
            scale = (x.get("chosen_threshold_scale") or {}).get("threshold_scale")
            patience = (x.get("chosen_early_exit") or {}).get("early_exit")
            speed = x.get("speedup_vs_plain_max")
            body.append(
                [
                    x["dataset"],
                    x["model"],
                    "binary" if x.get("binary") else "fp32",
                    pct(x.get("ann_accuracy")),
                    *(
                        ("not run" if v not in reached else "not reached")
                        if reached.get(v) is None
                        else steps_cell(reached[v])
                        for v in variants
                    ),
                    "-" if speed is None else f"{speed:.1f}x",
                    f"{scale if scale is not None else '-'} / {patience or '-'}",
                    count(x.get("samples")),
                ]
            )
        lines += [
            "Rate coding: time steps to come within 1 point of the ANN (optimised: mean "
            f"steps with early exit), up to T = {summaries[0].get('max_steps', '-')}.",
            "",
            *table(head, body),
            "",
        ]
    present = {x["steps"] for x in r.rows if x.get("method") == "rate"}
    shown_rate = tuple(t for t in (8, 32, 128, 256) if t in present) or tuple(sorted(present))
    present = {x["steps"] for x in r.rows if x.get("method") == "hybrid"}
    shown_hybrid = tuple(t for t in (1, 2, 5, 8) if t in present) or tuple(sorted(present))
    head = [
        "dataset",
        "architecture",
        "method",
        "weights",
        "T",
        "ANN acc.",
        "SNN acc.",
        "latency (steps)",
        "decision (mean / p99 / max)",
        "spikes/neuron",
        "synops",
        "MACs",
        "energy vs ANN",
        "sim. time vs ANN",
        "test images",
    ]
    body = []
    for x in r.rows:
        method = x.get("method")
        if method in ("ann", "rate-summary"):
            continue
        if method == "rate" and x["steps"] not in shown_rate:
            continue
        if method == "hybrid" and x["steps"] not in shown_hybrid:
            continue
        label = {
            "rate": f"rate {x.get('variant')}",
            "hybrid": "hybrid + STDB" if x.get("finetuned") else "hybrid",
        }.get(method, method)
        decision = (
            f"{x['decision_steps_mean']:.1f} / {steps_cell(x.get('decision_steps_p99'))} / "
            f"{x['decision_steps_max']:.0f}"
            if x.get("decision_steps_mean") is not None
            else "-"
        )
        latency = x.get("mean_latency_steps") if x.get("early_exit") else x.get("latency_steps")
        body.append(
            [
                x["dataset"],
                x["model"],
                label,
                "binary" if x.get("binary") else "fp32",
                str(x["steps"]),
                pct(x.get("ann_accuracy")),
                pct(x.get("snn_accuracy")),
                steps_cell(latency),
                decision,
                num(x.get("spikes_per_neuron")),
                count(x.get("synops")),
                count(x.get("snn_macs")),
                num(x.get("energy_ratio_vs_ann")),
                num(x.get("sim_time_vs_ann"), 2),
                count(x.get("samples")),
            ]
        )
    lines += [
        "Every method at a selection of T (rate: "
        f"{', '.join(map(str, shown_rate))}; hybrid: {', '.join(map(str, shown_hybrid))}; "
        "every row is in the JSON and `deep.md`). ANN acc. is the ANN on the same test "
        "images. Latency: time steps of one inference (TTFS: the whole inference, "
        "`L (depth + 1) + 1`; decision: the step of the first output spike). Sim. time vs ANN: "
        "the closed-form simulation's seconds per image over the ANN forward pass's, measured "
        "in the same run (rate: one run to the largest T, scaled by T; TTFS-aware in "
        "float64).",
        "",
        *table(head, body),
    ]
    parts = r.meta.get("parts") or []
    if parts:
        head = ["part", "date (UTC)", "minutes", "torch threads", "load at start / end"]
        body = [
            [
                str(m.get("part", "-")),
                str(m.get("date", "-")),
                num((m.get("seconds") or float("nan")) / 60, 1),
                str(m.get("torch_threads", "-")),
                f"{_load(m.get('loadavg_start'))} / {_load(m.get('loadavg_end'))}",
            ]
            for m in parts
        ]
        lines += [
            "",
            "The parts, each run on its own (1-minute load average of the shared machine, 2 "
            "cores):",
            "",
            *table(head, body),
        ]
    return lines


SECTIONS: dict[str, Callable[[Result], list[str]]] = {
    "ttfs": ttfs_section,
    "ttfs_optimise": ttfs_optimise_section,
    "rate": rate_section,
    "rate-peers": rate_peers_section,
    "hybrid": hybrid_section,
    **dict.fromkeys(FULL_ONLY, hybrid_section),
    "quartz": quartz_section,
    "hardware": hardware_section,
    "hardware-sweep": hardware_sweep_section,
    "hardware-binary": hardware_binary_section,
    "deep": deep_section,
    "extract": extract_section,
    "speed": speed_section,
}


# benchmarks that also draw one figure per dataset (NAME-<dataset>.png)
PER_DATASET_FIGURES = {"deep": ("fashion-mnist", "mnist")}


def method_section(r: Result, page_dir: Path) -> list[str]:
    """The section of one benchmark: where its numbers come from, its table, its verdicts."""
    lines = [f"## {r.title}", ""]
    if not r.ok or r.path is None:
        return [*lines, f"`{r.stem}.json` {r.problem}; run `python benchmarks/{r.script}`."]
    figures = [
        r.path.with_name(f"{r.path.stem}-{d}.png") for d in PER_DATASET_FIGURES.get(r.stem, ())
    ]
    extras = [
        p for p in (r.path.with_suffix(".md"), r.path.with_suffix(".png"), *figures) if p.exists()
    ]
    source = f"From [{r.path.name}]({link(r.path, page_dir)}) (`benchmarks/{r.script}`)"
    if extras:
        source += "; see also " + ", ".join(f"[{p.name}]({link(p, page_dir)})" for p in extras)
    lines += [source + ".", ""]
    try:
        lines += SECTIONS[r.stem](r)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        lines += [f"The rows do not have the expected fields ({exc!r}): no table."]
    return lines + verdicts(r)


def render(results_dir: Path, page: Path) -> str:
    """The whole page for the results in ``results_dir``, with links relative to ``page``."""
    found = {stem: load(results_dir, stem, title, script) for stem, title, script in BENCHMARKS}
    page_dir = page.resolve().parent
    quick = any(r.meta.get("quick") for r in found.values()) or any(
        r.path is not None and r.path.stem.endswith("-quick") for r in found.values()
    )
    if quick:
        found = {k: v for k, v in found.items() if k not in FULL_ONLY or v.ok}
    lines = [
        "# Benchmarks",
        "",
        "Generated by `benchmarks/summary.py` from the JSON files "
        + (
            "in this directory"
            if results_dir.resolve() == page_dir
            else f"in `{link(results_dir.resolve(), page_dir)}`"
        )
        + "; every number below is read from them. `make bench` reruns every "
        "benchmark and regenerates this page; `make bench-quick` does a CI-sized run into "
        "`runs/bench-quick/`.",
    ]
    if quick:
        lines += [
            "",
            "**Quick (CI-sized) results**: one-epoch models, small test subsets, few T. They "
            "check that every benchmark runs end to end; their numbers say nothing about the "
            "methods.",
        ]
    lines += ["", *runs_section(list(found.values()), page_dir), ""]
    try:
        lines += comparison_section(found)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        lines += ["## All methods on the same networks", "", f"Not built: {exc!r}."]
    for r in found.values():
        lines += ["", *method_section(r, page_dir)]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Parse the arguments and write the page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--out", type=Path, default=PAGE, help="the page to write")
    args = parser.parse_args()
    atomic_write_text(args.out, render(args.results, args.out))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
