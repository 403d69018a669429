"""``onespike report``: one self-contained HTML page comparing every method run into a directory.

Two halves, joined by plain JSON files:

- **record** (:func:`save_run_record`, called by ``onespike run``): next to ``results.json``,
  each run also writes ``RUN_DIR/runs/<name>.json`` (:func:`run_name`: the method, T and every
  option that changed the network, e.g. ``ttfs-T8-no-rectifier.json``) holding the summary row that
  ``results.json`` holds, the accuracy after every time step (rate and hybrid codes), the
  per-layer counts of the spiking network and of its ANN, the energy split by kind, and a
  spike raster of the first test sample. Running ``onespike run`` with ``--method ttfs``,
  ``rate`` and ``hybrid`` into one ``--out`` leaves three records there; only a later run
  with the same method, T and options replaces a record.
- **report** (:func:`write_report`): reads every record (and ``hardware.json`` when
  ``onespike hardware`` wrote one into the same directory), draws the figures with matplotlib
  (the ``plot`` extra, imported only here and only when drawing), writes them as PNG files in
  ``RUN_DIR/report/`` and embeds the same bytes as base64 data URIs in
  ``RUN_DIR/report/report.html``, so the page needs no other file.

The raster is a fresh simulation of one sample with the reference (``stepped``) simulator,
so every dot is an event that happened:

- TTFS and hybrid codes: each neuron fires at most once; a dot is a neuron's spike at its
  time step (``SimResult.spike_times``). TTFS times are on the network's global clock (each
  layer's window follows the previous one); hybrid times are steps ``0 .. T-1`` (the analog
  image at step 0 is a current, not spikes; the input's dots are its temporal code).
- rate codes: :class:`~onespike.simulate.result.SimResult` holds only spike counts, so the
  sample is run once with :func:`onespike.simulate.rate.simulate_checkpoints` at every step
  ``1 .. T`` and each step's spikes are the growth of the counts (an integrate-and-fire
  neuron fires at most once per step). With analog input the input never spikes and the
  output layer only accumulates its membrane, so both rows are empty. Poisson input draws its
  spikes for a batch of one here, so they are not those of the full-test-set run.

Sizes are capped (:data:`RASTER_NEURONS` neurons per population, evenly spaced by index in
C-major order; :data:`RASTER_SPIKES` spikes per population, the earliest; rate codes:
:data:`RASTER_STEPS` steps) and the record says what was left out.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import io
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from onespike._fs import atomic_write_bytes, atomic_write_text, read_json
from onespike.convert.config import RateConfig
from onespike.errors import ConfigError, CorruptFileError, MissingFileError, ShapeError
from onespike.evaluate import SNNEvaluation
from onespike.graph import Graph
from onespike.hardware.report import COMPONENTS
from onespike.metrics import EnergyReport, count_ops, estimate_energy
from onespike.network import SpikingNetwork
from onespike.simulate import simulate
from onespike.simulate.rate import simulate_checkpoints

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "RASTER_NEURONS",
    "RASTER_SPIKES",
    "RASTER_STEPS",
    "RECORD_FORMAT",
    "RECORD_VERSION",
    "fine_tuning_problems",
    "load_records",
    "record_path",
    "run_name",
    "save_run_record",
    "spike_raster",
    "write_report",
]

RECORD_FORMAT = "onespike-run-record"
RECORD_VERSION = 1
RASTER_NEURONS = 128
RASTER_SPIKES = 3000
RASTER_STEPS = 256

_METHOD_ORDER = {"ttfs": 0, "rate": 1, "hybrid": 2}
_METHOD_COLORS = {"ttfs": "#1f77b4", "rate": "#ff7f0e", "hybrid": "#2ca02c"}
_ANN_COLOR = "#444444"
_RASTER_BAND = 24
_SUMMARY_KEYS = ("dataset", "model", "method", "steps", "ann_accuracy", "snn_accuracy")


# recording -------------------------------------------------------------------------------------
def run_name(method: str, steps: int, options: Sequence[tuple[str, Any]] = ()) -> tuple[str, str]:
    """The file stem and the report label of one run, from every option that changed its
    network (and only those: an option left at its default is not passed).

    Args:
        method: the spiking method.
        steps: T.
        options: ``(name, value)`` pairs in the order they are to be named: ``True`` names a
            flag (``("no rectifier", True)`` -> ``no rectifier``), any other value is named
            with it (``("reset", "zero")`` -> ``reset zero``).

    Returns:
        ``(stem, label)``, e.g. ``("ttfs-T8-no-rectifier", "ttfs T=8, no rectifier")``. Two
        runs share a stem only when their method, T and options are all the same; a value
        with characters a file name should not carry is named by its characters that can be,
        plus a short hash of the whole value, so two different values never share a stem.
    """
    stem = [f"{method}-T{steps}"]
    label = [f"{method} T={steps}"]
    for name, value in options:
        if value is False or value is None:
            raise ConfigError(f"option {name!r} is at its default ({value!r}); leave it out")
        text = name if value is True else f"{name} {value}"
        label.append(text)
        safe = "".join(c if c.isalnum() or c in "._" else "-" for c in text.lower())
        safe = "-".join(part for part in safe.split("-") if part)
        if value is not True and not str(value).replace(".", "").replace("_", "").isalnum():
            digest = hashlib.sha256(str(value).encode()).hexdigest()[:8]
            safe = f"{safe[:40]}-{digest}"
        stem.append(safe)
    return "-".join(stem), ", ".join(label)


def record_path(
    run_dir: str | os.PathLike[str], method: str, steps: int, stem: str | None = None
) -> Path:
    """Where the record of one run lives: ``RUN_DIR/runs/<stem>.json``, the stem from
    :func:`run_name` (default ``<method>-T<steps>``, a run with every option at its
    default)."""
    return Path(run_dir) / "runs" / f"{stem or f'{method}-T{steps}'}.json"


def spike_raster(
    net: SpikingNetwork,
    sample: Tensor,
    *,
    label: int | None = None,
    max_neurons: int = RASTER_NEURONS,
    max_spikes: int = RASTER_SPIKES,
    max_steps: int = RASTER_STEPS,
) -> dict[str, Any]:
    """Every spike of one sample, per population, from the stepped reference simulator.

    Args:
        net: a converted network (any method).
        sample: ``(1, *net.input_shape)``: one input.
        label: the sample's true class, recorded beside the prediction.
        max_neurons: neurons kept per population (evenly spaced over the flat index).
        max_spikes: spikes kept per population (the earliest).
        max_steps: rate codes: steps recorded (the simulation still runs to T for the
            prediction).

    Returns:
        JSON-ready dict: ``prediction``, ``label``, ``steps`` (of one inference),
        ``steps_shown`` and ``populations``: per population ``name``, ``kind``, ``neurons``,
        ``shown`` (flat indices kept), ``neuron`` and ``step`` (one entry per kept spike),
        ``spikes`` (all spikes of the population), ``truncated`` and ``note`` (why a
        population cannot spike, else ``None``).
    """
    if sample.ndim < 1 or sample.shape[0] != 1:
        raise ShapeError(
            f"spike_raster takes one sample, shape (1, ...); got {tuple(sample.shape)}"
        )
    if min(max_neurons, max_spikes, max_steps) < 1:
        raise ConfigError("max_neurons, max_spikes and max_steps must be >= 1")
    events: dict[str, tuple[Tensor, Tensor]] = {}  # population -> (flat neuron, step)
    config = net.config
    if isinstance(config, RateConfig):
        shown_steps = min(config.steps, max_steps)
        checkpoints = [*range(1, shown_steps + 1)]
        if config.steps > shown_steps:
            checkpoints.append(config.steps)
        results = simulate_checkpoints(net, sample, checkpoints, method="stepped")
        prediction = int(results[-1].predictions[0])
        steps = results[-1].steps
        for pop in net.populations:
            counts = torch.stack(
                [r.spike_counts[pop.name][0].flatten() for r in results[:shown_steps]]
            )
            grown = torch.diff(counts, dim=0, prepend=torch.zeros_like(counts[:1]))
            step, neuron = torch.nonzero(grown > 0, as_tuple=True)
            events[pop.name] = (neuron, step)
    else:
        result = simulate(net, sample, method="stepped")
        prediction = int(result.predictions[0])
        steps = shown_steps = result.steps
        for pop in net.populations:
            times = result.spike_times[pop.name][0].flatten()
            (neuron,) = torch.nonzero(torch.isfinite(times), as_tuple=True)
            events[pop.name] = (neuron, times[neuron].long())
    populations = []
    for pop in net.populations:
        note = None
        if isinstance(config, RateConfig) and pop.kind == "input" and config.input == "analog":
            note = "analog input current"
        elif isinstance(config, RateConfig) and pop.is_output:
            note = "membrane readout"
        neuron, step = events[pop.name]
        size = pop.size
        if size > max_neurons:
            shown = torch.linspace(0, size - 1, max_neurons).round().long().unique()
        else:
            shown = torch.arange(size)
        keep = torch.isin(neuron, shown)
        neuron, step = neuron[keep], step[keep]
        order = torch.argsort(step * size + neuron)  # by time, then neuron
        kept = order[:max_spikes]
        populations.append(
            {
                "name": pop.name,
                "kind": pop.kind,
                "neurons": size,
                "shown": shown.tolist(),
                "neuron": neuron[kept].tolist(),
                "step": step[kept].tolist(),
                "spikes": int(events[pop.name][0].numel()),
                "truncated": bool(size > max_neurons or order.numel() > max_spikes),
                "note": note,
            }
        )
    return {
        "sample": 0,
        "label": label,
        "prediction": prediction,
        "simulator": "stepped",
        "steps": steps,
        "steps_shown": shown_steps,
        "populations": populations,
    }


def _energy_split(report: EnergyReport) -> dict[str, float]:
    per = report.samples
    return {
        "compute_pj": sum(layer.compute_pj for layer in report.layers) / per,
        "neuron_pj": sum(layer.neuron_pj for layer in report.layers) / per,
        "memory_pj": sum(layer.memory_pj for layer in report.layers) / per,
    }


def save_run_record(
    run_dir: str | os.PathLike[str],
    row: dict[str, Any],
    *,
    net: SpikingNetwork,
    evaluation: SNNEvaluation,
    ann_graph: Graph | None,
    sample: Tensor,
    label: int | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> Path:
    """Write what the report needs about one run to :func:`record_path` (atomically),
    named by :func:`run_name` from ``options``; a record of the same name (an identical
    run) is replaced.

    Args:
        run_dir: the run directory (``onespike run --out``).
        row: the :func:`onespike.evaluate.summarize` row (as written to ``results.json``).
        net: the simulated network.
        evaluation: its evaluation on the test set.
        ann_graph: the ANN's graph, for per-layer MACs; ``None`` for a network with no ANN
            (imported from NIR: ``row`` from :func:`onespike.evaluate.summarize` without an ANN).
        sample: ``(1, *input_shape)``: the first test sample, for the raster.
        label: its true class.
        options: ``(name, value)`` of every option that changed the network from the
            defaults (see :func:`run_name`); recorded, and named in the file and the label.

    Returns:
        The record's path.
    """
    for key in _SUMMARY_KEYS:
        if key not in row:
            raise ConfigError(f"the summary row lacks {key!r}; pass the row of summarize()")
    ops = evaluation.ops
    ann_ops = None if ann_graph is None else count_ops(ann_graph, ops.samples)
    model = str(row.get("energy_model", "45nm"))
    layers = [
        {
            "name": layer.name,
            "kind": layer.kind,
            "neurons": layer.neurons,
            "spikes_per_neuron": layer.spikes / (layer.neurons * ops.samples),
            "spikes": layer.spikes / ops.samples,
            "synops": layer.synops / ops.samples,
            "synaptic_events": layer.synaptic_events / ops.samples,
            "macs": layer.macs / ops.samples,
        }
        for layer in ops.layers
    ]
    ann_layers = [
        {
            "name": layer.name,
            "kind": layer.kind,
            "neurons": layer.neurons,
            "macs": layer.macs / ops.samples,  # count_ops(ann_graph, ops.samples)
        }
        for layer in (ann_ops.layers if ann_ops is not None else [])
    ]
    stem, run_label = run_name(str(row["method"]), int(row["steps"]), options)
    record = {
        "format": RECORD_FORMAT,
        "version": RECORD_VERSION,
        "method": row["method"],
        "steps": row["steps"],
        "label": run_label,
        "options": [[name, value] for name, value in options],
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "summary": row,
        "accuracy_by_steps": (
            evaluation.accuracy_by_steps() if evaluation.step_correct is not None else None
        ),
        "layers": layers,
        "ann_layers": ann_layers,
        "energy": {
            "snn": _energy_split(estimate_energy(ops, model)),
            "ann": None if ann_ops is None else _energy_split(estimate_energy(ann_ops, model)),
        },
        "raster": spike_raster(net, sample, label=label),
    }
    path = record_path(run_dir, str(row["method"]), int(row["steps"]), stem)
    atomic_write_text(path, json.dumps(record, separators=(",", ":")) + "\n")
    return path


def _ann_record(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The first record with an ANN (imported networks have none), the figures' reference."""
    return next((r for r in records if r["summary"].get("ann_accuracy") is not None), None)


# loading ---------------------------------------------------------------------------------------
def _first_run_hint(run_dir: Path) -> str:
    return (
        f"run `onespike run --out {run_dir}` first (once per method, --method ttfs/rate/hybrid, "
        "to compare them)"
    )


def _check_record(data: Any, path: Path, run_dir: Path) -> dict[str, Any]:
    fix = f"delete it or rewrite it with `onespike run --out {run_dir}`"
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        raise CorruptFileError(f"{path} is not an onespike run record; {fix}")
    if data.get("version") != RECORD_VERSION:
        raise CorruptFileError(
            f"{path} is a run record of version {data.get('version')!r}, this onespike reads "
            f"version {RECORD_VERSION}; {fix}"
        )
    summary = data.get("summary")
    problems = [
        *(() if isinstance(summary, dict) else ("'summary' is not an object",)),
        *(
            f"'summary' lacks {k!r}"
            for k in _SUMMARY_KEYS
            if isinstance(summary, dict) and k not in summary
        ),
        *(
            f"{k!r} is not a list"
            for k in ("layers", "ann_layers")
            if not isinstance(data.get(k), list)
        ),
        *(() if isinstance(data.get("raster"), dict) else ("'raster' is not an object",)),
        *(() if isinstance(data.get("energy"), dict) else ("'energy' is not an object",)),
    ]
    if isinstance(summary, dict) and "fine_tuning" in summary:
        problems += fine_tuning_problems(summary["fine_tuning"])
    acc = data.get("accuracy_by_steps")
    if acc is not None and not (
        isinstance(acc, list) and all(isinstance(a, int | float) for a in acc)
    ):
        problems.append("'accuracy_by_steps' is not a list of numbers")
    if problems:
        raise CorruptFileError(f"{path}: {'; '.join(problems)}; {fix}")
    return data


def fine_tuning_problems(curve: Any) -> list[str]:
    """What is wrong with the record of a fine-tuning run (a run record's
    ``summary.fine_tuning``, or ``model.json``'s ``extra.hybrid`` / ``extra.ttfs_aware``):
    its ``history`` must be a non-empty list of per-epoch ``epoch``, ``loss``,
    ``train_accuracy`` (numbers) and ``val_accuracy`` (a number or null); ``[]`` when
    nothing is."""

    def number(value: Any) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    history = curve.get("history") if isinstance(curve, dict) else None
    if not isinstance(history, list) or not history:
        return ["'summary.fine_tuning.history' is not a non-empty list"]
    for h in history:
        if not (
            isinstance(h, dict)
            and all(number(h.get(k)) for k in ("epoch", "loss", "train_accuracy"))
            and (h.get("val_accuracy") is None or number(h["val_accuracy"]))
        ):
            return [
                "'summary.fine_tuning.history' holds an epoch without numeric 'epoch', 'loss' "
                "and 'train_accuracy'"
            ]
    return []


def load_records(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read and check every run record of ``run_dir``, ordered by method then T.

    Raises:
        MissingFileError: ``run_dir`` does not exist or holds no record.
        CorruptFileError: a record is not valid JSON or lacks a field.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is not a directory" if run_dir.exists() else "does not exist"
        raise MissingFileError(f"run directory {run_dir} {what}; {_first_run_hint(run_dir)}")
    paths = sorted((run_dir / "runs").glob("*.json"))
    if not paths:
        older = (
            " (its results.json alone, from an older onespike, lacks the per-step, per-layer "
            "and raster data)"
            if (run_dir / "results.json").exists()
            else ""
        )
        raise MissingFileError(
            f"{run_dir} holds no run records ({run_dir / 'runs'}/*.json){older}; "
            f"{_first_run_hint(run_dir)}"
        )
    records = []
    for path in paths:
        data = read_json(path, f"delete it or rewrite it with `onespike run --out {run_dir}`")
        records.append(_check_record(data, path, run_dir))
    records.sort(
        key=lambda r: (_METHOD_ORDER.get(str(r["method"]), 9), r["method"], r["steps"], _label(r))
    )
    return records


def _load_hardware(run_dir: Path) -> dict[str, Any] | None:
    path = run_dir / "hardware.json"
    if not path.exists():
        return None
    fix = f"delete it or rewrite it with `onespike hardware --out {run_dir}`"
    data = read_json(path, fix)
    parts = data.get("energy_by_component_j") if isinstance(data, dict) else None
    if not isinstance(parts, dict) or "static_energy_j" not in data:
        raise CorruptFileError(f"{path} lacks the energy breakdown of a hardware report; {fix}")
    return data


# figures ---------------------------------------------------------------------------------------
def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "the report draws its figures with matplotlib, which is in the 'plot' extra: "
            "pip install 'onespike[plot]'"
        ) from exc
    return plt


def _literal_text(draw: Callable[..., Any]) -> Callable[..., Any]:
    """Draw with matplotlib's mathtext off, so that a ``$`` in a record's method, a population
    name or any label is drawn as itself rather than parsed (and possibly refused) as TeX."""

    @functools.wraps(draw)
    def wrapper(plt: Any, *args: Any, **kwargs: Any) -> Any:
        with plt.rc_context({"text.parse_math": False}):
            return draw(plt, *args, **kwargs)

    return wrapper


def _label(record: dict[str, Any]) -> str:
    """The run's label (records older than labels: method and T)."""
    label = record.get("label")
    return label if isinstance(label, str) else f"{record['method']} T={record['steps']}"


def _color(record: dict[str, Any], records: Sequence[dict[str, Any]]) -> str:
    """The method's colour; runs of one method at several T (or options) get lighter shades as
    T grows."""
    base = _METHOD_COLORS.get(str(record["method"]), "#9467bd")
    group = sorted((int(r["steps"]), _label(r)) for r in records if r["method"] == record["method"])
    if len(group) < 2:
        return base
    white = 0.6 * group.index((int(record["steps"]), _label(record))) / (len(group) - 1)
    rgb = [int(base[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * white):02x}" for c in rgb)


def _ann_accuracies(records: Sequence[dict[str, Any]]) -> list[float]:
    return sorted(
        {
            round(float(r["summary"]["ann_accuracy"]), 6)
            for r in records
            if r["summary"]["ann_accuracy"] is not None
        }
    )


@_literal_text
def _figure_accuracy(plt: Any, records: Sequence[dict[str, Any]]) -> Figure:
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(8.5, 4.8))
    steps_seen: list[int] = []
    by_method: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_method.setdefault(str(record["method"]), []).append(record)
    for method, group in by_method.items():
        color = _METHOD_COLORS.get(method, "#9467bd")
        curves = [r for r in group if r["accuracy_by_steps"]]
        points = [r for r in group if not r["accuracy_by_steps"]]
        for i, record in enumerate(curves):
            acc = [100 * a for a in record["accuracy_by_steps"]]
            x = list(range(1, len(acc) + 1))
            steps_seen += x
            ax.plot(
                x,
                acc,
                color=_color(record, records),
                linestyle=("-", "--", ":", "-.")[i % 4],
                marker="o" if len(x) <= 16 else None,
                markersize=4,
                label=f"{_label(record)}: accuracy after each step",
            )
        if points:
            points.sort(key=lambda r: int(r["summary"]["latency_steps"]))
            x = [int(r["summary"]["latency_steps"]) for r in points]
            y = [100 * float(r["summary"]["snn_accuracy"]) for r in points]
            steps_seen += x
            ax.plot(
                x,
                y,
                color=color,
                linestyle="--" if len(points) > 1 else "none",
                marker="D",
                markersize=7,
                label=f"{method}: accuracy when the output window closes",
            )
            for record, xi, yi in zip(points, x, y, strict=True):
                ax.annotate(
                    f"T={record['steps']}\n({xi} steps)",
                    (xi, yi),
                    textcoords="offset points",
                    xytext=(0, 9),
                    ha="center",
                    fontsize=8,
                    color=color,
                )
    for i, ann in enumerate(_ann_accuracies(records)):
        ax.axhline(
            100 * ann,
            color=_ANN_COLOR,
            linestyle=(0, (4, 2 + 2 * i)),
            linewidth=1.2,
            label=f"ANN (float, same test samples): {100 * ann:.2f} %",
        )
    log = bool(steps_seen) and max(steps_seen) / max(1, min(steps_seen)) > 8
    if log:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlabel("time steps run per inference" + (" (log scale)" if log else ""))
    ax.set_ylabel("test accuracy (%)")
    low, high = ax.get_ylim()
    ax.set_ylim(low, min(104.0, high + 4))
    ax.set_title("Accuracy against time steps")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _layer_names(records: Sequence[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for record in records:
        for layer in record["layers"]:
            if layer["name"] not in names:
                names.append(layer["name"])
    return names


@_literal_text
def _figure_layers(plt: Any, records: Sequence[dict[str, Any]]) -> Figure:
    names = _layer_names(records)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9.0, 7.0), sharex=True)
    width = 0.8 / (len(records) + 1)
    positions = range(len(names))
    macs_labelled = False
    for i, record in enumerate(records):
        layers = {layer["name"]: layer for layer in record["layers"]}
        x = [p - 0.4 + width * (i + 0.5) for p in positions]

        def value(name: str, key: str, layers: dict[str, Any] = layers) -> float:
            return float(layers[name][key]) if name in layers else 0.0

        spikes = [value(n, "spikes_per_neuron") for n in names]
        macs = [value(n, "macs") for n in names]
        synops = [value(n, "synops") for n in names]
        top.bar(x, spikes, width, color=_color(record, records), label=_label(record))
        if any(macs):
            bottom.bar(
                x,
                macs,
                width,
                color="white",
                edgecolor=_color(record, records),
                hatch="///",
                label=None if macs_labelled else "hatched: MACs of the analog input",
            )
            macs_labelled = True
        bottom.bar(
            x,
            synops,
            width,
            bottom=macs,
            color=_color(record, records),
            label=f"{_label(record)}: synops",
        )
    reference = _ann_record(records)
    if reference is not None:
        ann = {layer["name"]: float(layer["macs"]) for layer in reference["ann_layers"]}
        x_ann = [p - 0.4 + width * (len(records) + 0.5) for p in positions]
        bottom.bar(
            x_ann, [ann.get(n, 0.0) for n in names], width, color=_ANN_COLOR, label="ANN: MACs"
        )
    top.set_ylabel("spikes per neuron\nper inference")
    top.set_title("Spikes per neuron, per layer (mean over the test samples)")
    top.legend(fontsize=8)
    top.grid(True, axis="y", alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_ylabel("operations per inference\n(log scale)")
    bottom.set_title("Operations each layer receives: synops (and MACs) against the ANN's MACs")
    bottom.legend(fontsize=8)
    bottom.grid(True, axis="y", alpha=0.3)
    kinds = {layer["name"]: layer["kind"] for r in records for layer in r["layers"]}
    bottom.set_xticks(list(positions), [f"{n}\n({kinds[n]})" for n in names], fontsize=8)
    bottom.set_xlabel("population (in network order)")
    fig.tight_layout()
    return fig


@_literal_text
def _figure_raster(plt: Any, records: Sequence[dict[str, Any]]) -> Figure:
    fig, axes = plt.subplots(
        len(records), 1, figsize=(9.0, 3.3 * len(records) + 0.4), squeeze=False
    )
    for ax, record in zip(axes[:, 0], records, strict=True):
        raster = record["raster"]
        steps_shown = int(raster["steps_shown"])
        offset = 0
        ticks, tick_labels = [], []
        total = 0
        for i, pop in enumerate(raster["populations"]):
            # Small populations (the output) get a band of at least _RASTER_BAND rows.
            count = len(pop["shown"])
            height = max(count, _RASTER_BAND)
            rows = {n: (r + 0.5) * height / count - 0.5 for r, n in enumerate(pop["shown"])}
            y = [offset + rows[n] for n in pop["neuron"]]
            ax.scatter(pop["step"], y, marker="|", s=14, linewidths=0.8, color=f"C{i % 10}")
            ticks.append(offset + (height - 1) / 2)
            shown = f"{count} of {pop['neurons']}" if count < pop["neurons"] else f"{count}"
            tick_labels.append(f"{pop['name']}\n{shown} neurons, {pop['spikes']:,} spikes")
            if int(pop["spikes"]) == 0:
                why = f" ({pop['note']})" if pop.get("note") else ""
                ax.text(
                    (steps_shown - 1) / 2,
                    offset + (height - 1) / 2,
                    f"no spikes{why}",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="#777777",
                )
            if offset:
                ax.axhline(offset - 0.5, color="#999999", linewidth=0.6)
            offset += height
            total += int(pop["spikes"])
        ax.set_ylim(-0.5, offset - 0.5)
        ax.set_xlim(-0.5, steps_shown - 0.5)
        ax.set_yticks(ticks, tick_labels, fontsize=7)
        ax.invert_yaxis()
        cut = (
            f", first {steps_shown} of {raster['steps']} steps"
            if steps_shown < int(raster["steps"])
            else ""
        )
        ax.set_title(
            f"{_label(record)}: test sample {raster['sample']} (label {raster['label']}, "
            f"predicted {raster['prediction']}), {total:,} spikes{cut}",
            fontsize=10,
        )
        ax.set_xlabel("time step")
        ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


@_literal_text
def _figure_cost(plt: Any, records: Sequence[dict[str, Any]]) -> Figure:
    from matplotlib.ticker import EngFormatter

    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.8))
    reference = _ann_record(records)  # None: only imported networks, no ANN to draw
    ann = (reference or records[0])["summary"]
    first = [] if reference is None else ["ANN"]
    labels = [*first, *(_label(r) for r in records)]
    macs = [
        *([float(ann["ann_macs"])] if reference else []),
        *(float(r["summary"]["snn_macs"]) for r in records),
    ]
    synops = [*([0.0] if reference else []), *(float(r["summary"]["synops"]) for r in records)]
    extra = [
        *([0.0] if reference else []),
        *(float(r["summary"]["synaptic_events"]) - float(r["summary"]["synops"]) for r in records),
    ]
    left.bar(labels, macs, color="#7f7f7f", label="MACs (multiply-accumulates)")
    left.bar(labels, synops, bottom=macs, color="#1f77b4", label="synops (spike x fan-out)")
    tops = [a + b for a, b in zip(macs, synops, strict=True)]
    left.bar(labels, extra, bottom=tops, color="#aec7e8", label="bias / counter / rectifier events")
    tops = [a + b for a, b in zip(tops, extra, strict=True)]
    if reference is not None:
        left.axhline(
            float(ann["ann_macs"]), color=_ANN_COLOR, linestyle="--", linewidth=1, label="ANN"
        )
    left.yaxis.set_major_formatter(EngFormatter())
    left.set_ylabel("operations per inference")
    left.set_title("Operations per inference")
    left.set_ylim(0, max(tops) * 1.45)
    left.legend(fontsize=8, loc="upper left")

    energy = [r["energy"]["snn"] for r in records]
    if reference is not None:
        energy.insert(0, reference["energy"]["ann"])
    bottom = [0.0] * len(labels)
    for key, name, color in (
        ("compute_pj", "compute (MACs, adds)", "#d62728"),
        ("neuron_pj", "neuron updates", "#ff9896"),
        ("memory_pj", "memory accesses", "#9467bd"),
    ):
        values = [float(e[key]) * 1e-12 for e in energy]
        if not any(values):
            continue
        right.bar(labels, values, bottom=bottom, color=color, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    if reference is not None:
        ann_energy = float(ann["ann_energy_pj"])
        right.axhline(
            ann_energy * 1e-12, color=_ANN_COLOR, linestyle="--", linewidth=1, label="ANN"
        )
    for i, record in enumerate(records, start=len(first)):
        if reference is None or record["summary"]["ann_accuracy"] is None:
            continue  # no ANN of its own (imported): no ratio
        ratio = float(record["summary"]["snn_energy_pj"]) / ann_energy
        right.annotate(
            f"{ratio:.2f}x ANN",
            (i, bottom[i]),
            textcoords="offset points",
            xytext=(0, 3),
            ha="center",
            fontsize=8,
        )
    right.yaxis.set_major_formatter(EngFormatter(unit="J"))
    right.set_ylabel("energy per inference")
    right.set_title(f"Energy per inference ({ann['energy_model']} energy model)")
    right.set_ylim(0, max(bottom) * 1.45)
    right.legend(fontsize=8, loc="upper left")
    for ax in (left, right):
        ax.tick_params(axis="x", labelrotation=20, labelsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def _fine_tuned(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of fine-tuned networks (STDB or TTFS-aware) that carry the training curve."""
    return [r for r in records if isinstance(r["summary"].get("fine_tuning"), dict)]


@_literal_text
def _figure_fine_tuning(plt: Any, records: Sequence[dict[str, Any]]) -> Figure:
    from matplotlib.ticker import MaxNLocator

    tuned = _fine_tuned(records)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.4))
    converted_drawn = False
    for record in tuned:
        curve = record["summary"]["fine_tuning"]
        history = curve["history"]
        epochs = [int(h["epoch"]) for h in history]
        color = _color(record, records)
        name = _label(record) if len(tuned) > 1 else str(curve.get("method", "fine-tuning"))
        left.plot(
            epochs,
            [100 * float(h["train_accuracy"]) for h in history],
            color=color,
            linestyle=":",
            marker=".",
            label=f"{name}: training images",
        )
        held = {
            e: 100 * float(h["val_accuracy"])
            for e, h in zip(epochs, history, strict=True)
            if h["val_accuracy"] is not None
        }
        if held:
            left.plot(
                list(held),
                list(held.values()),
                color=color,
                marker="o",
                label=f"{name}: held-out images ({curve.get('validation_images')})",
            )
        best = curve.get("best_epoch")
        if isinstance(best, int) and best in held:
            left.plot([best], [held[best]], marker="*", markersize=14, color=color, linestyle="")
        converted = curve.get("converted_snn_accuracy")
        if isinstance(converted, int | float):
            converted_drawn = True
            left.plot(
                [0],
                [100 * float(converted)],
                marker="s",
                color=color,
                linestyle="",
                label=f"{name}: converted, before fine-tuning (test)",
            )
        right.plot(epochs, [float(h["loss"]) for h in history], color=color, marker=".", label=name)
    left.set_xlabel("epoch (0: the converted network)" if converted_drawn else "epoch")
    left.set_ylabel("accuracy (%)")
    left.set_title("Accuracy after every fine-tuning epoch (star: the epoch kept)", fontsize=10)
    right.set_xlabel("epoch")
    right.set_ylabel("mean training loss")
    right.set_title("Fine-tuning loss per epoch (colours as on the left)")
    for ax in (left, right):
        ax.grid(True, alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(tuned) == 1:
        fig.suptitle(_label(tuned[0]), fontsize=9)
    # one legend under both panels: run labels are long, and inside an axis they cover it
    handles, labels = left.get_legend_handles_labels()
    columns = 1 if len(tuned) > 1 else len(labels)
    rows = -(-len(labels) // columns)
    legend_inches = 0.25 * rows + 0.15
    fig.set_size_inches(10.5, 4.4 + legend_inches)
    fig.legend(handles, labels, loc="lower center", ncol=columns, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0.0, legend_inches / (4.4 + legend_inches), 1.0, 1.0))
    return fig


def _fine_tuning_table(records: Sequence[dict[str, Any]]) -> str:
    def pct(value: Any) -> str:
        return "-" if value is None else f"{100 * float(value):.2f} %"

    rows = []
    for record in _fine_tuned(records):
        curve = record["summary"]["fine_tuning"]
        for h in curve["history"]:
            kept = " (kept)" if curve.get("best_epoch") == h["epoch"] else ""
            seconds = h.get("seconds")
            rows.append(
                [
                    _label(record),
                    f"{h['epoch']}{kept}",
                    f"{float(h['loss']):.4f}",
                    pct(h["train_accuracy"]),
                    pct(h.get("val_accuracy")),
                    "-" if not isinstance(seconds, int | float) else f"{float(seconds):.1f}",
                ]
            )
    return _table(
        ["run", "epoch", "loss", "training accuracy", "held-out accuracy", "seconds"], rows
    )


def _hardware_parts(hardware: dict[str, Any]) -> list[tuple[str, float]]:
    """``(component, joules per inference)``: the dynamic components, then static energy."""
    parts = [(c, float(hardware["energy_by_component_j"].get(c, 0.0))) for c in COMPONENTS]
    return [*parts, ("static (leakage)", float(hardware["static_energy_j"]))]


@_literal_text
def _figure_hardware(plt: Any, hardware: dict[str, Any]) -> Figure:
    from matplotlib.ticker import EngFormatter

    fig, ax = plt.subplots(figsize=(7.0, 4.4))
    label = f"{hardware.get('architecture', '?')}\n({hardware.get('method', '?')})"
    bottom = 0.0
    for i, (part, value) in enumerate(_hardware_parts(hardware)):
        ax.bar(
            [label], [value], bottom=bottom, width=0.5, color=f"C{i}", label=part.replace("_", " ")
        )
        bottom += value
    ax.yaxis.set_major_formatter(EngFormatter(unit="J"))
    ax.set_ylabel("energy per inference")
    ax.set_title("Accelerator energy per inference, by component")
    ax.legend(fontsize=8, bbox_to_anchor=(1.02, 1.0), loc="upper left")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


# page ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Section:
    key: str
    title: str
    text: str
    png: bytes | None = None
    table: str = ""


@_literal_text
def _png(plt: Any, fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()


def _eng(value: float, unit: str = "") -> str:
    """``value`` with an SI prefix, e.g. ``274.7 nJ``, ``1.32 M``."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g} {unit}".strip()
    prefixes = {-4: "p", -3: "n", -2: "µ", -1: "m", 0: "", 1: "k", 2: "M", 3: "G", 4: "T"}
    power = max(-4, min(4, math.floor(math.log10(abs(value)) / 3)))
    scaled = value / 1000.0**power
    return f"{scaled:.4g} {prefixes[power]}{unit}".strip()


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _decision(summary: dict[str, Any]) -> str:
    """TTFS: mean and largest decision time; other methods decide when the run ends."""
    mean, largest = summary.get("decision_steps_mean"), summary.get("decision_steps_max")
    if mean is None or largest is None:
        return "- (read at the end of the run)"
    return f"{float(mean):.1f} / {float(largest):g}"


def _summary_table(records: Sequence[dict[str, Any]]) -> str:
    def row(name: str, cell: Any) -> list[str]:
        return [name, *(cell(r["summary"]) for r in records)]

    def pct(key: str) -> Any:
        return lambda s: "-" if s[key] is None else f"{100 * float(s[key]):.2f} %"

    def eng(key: str, scale: float = 1.0, unit: str = "") -> Any:
        return lambda s: "-" if s[key] is None else _eng(float(s[key]) * scale, unit)

    def no_ann(cell: Any) -> Any:  # an imported network has no ANN: "-"
        return lambda s: "-" if s.get("ann_accuracy") is None else cell(s)

    def check(s: dict[str, Any]) -> str:
        c = s.get("stepped_check")
        if not isinstance(c, dict):
            return "-"
        return f"{100 * float(c['identical_spikes']):.2f} % ({c['samples']} samples)"

    rows = [
        row("dataset / model", lambda s: f"{s['dataset']} / {s['model']}"),
        row("SNN test accuracy", pct("snn_accuracy")),
        row("ANN test accuracy (float)", pct("ann_accuracy")),
        row(
            "SNN - ANN (points)",
            no_ann(lambda s: f"{100 * (float(s['snn_accuracy']) - float(s['ann_accuracy'])):+.2f}"),
        ),
        row("latency (time steps)", lambda s: f"{s['latency_steps']}"),
        row("decision: first output spike (mean / max steps)", _decision),
        row("spikes per neuron", lambda s: f"{float(s['spikes_per_neuron']):.3f}"),
        row("synops / inference", eng("synops")),
        row("all synaptic events / inference", eng("synaptic_events")),
        row("SNN MACs / inference", eng("snn_macs")),
        row("ANN MACs / inference", eng("ann_macs")),
        row("SNN energy / inference", eng("snn_energy_pj", 1e-12, "J")),
        row("ANN energy / inference", eng("ann_energy_pj", 1e-12, "J")),
        row(
            "SNN energy / ANN energy",
            no_ann(lambda s: f"{float(s['energy_ratio_vs_ann']):.3f}x"),
        ),
        row(
            "energy model (what it counts)",
            lambda s: f"{s.get('energy_model', '?')} ({s.get('energy_counts', 'compute only')})",
        ),
        row("test samples", lambda s: f"{s['samples']}"),
        row("stepped = closed-form spikes", check),
    ]
    return _table(["quantity", *(_label(r) for r in records)], rows)


def _layer_tables(records: Sequence[dict[str, Any]]) -> str:
    names = _layer_names(records)
    reference = _ann_record(records)
    ann = {layer["name"]: float(layer["macs"]) for layer in (reference or {}).get("ann_layers", [])}
    kinds = {
        layer["name"]: (layer["kind"], int(layer["neurons"]))
        for r in records
        for layer in r["layers"]
    }
    layers = [{layer["name"]: layer for layer in r["layers"]} for r in records]
    spikes, ops = [], []
    for name in names:
        kind, neurons = kinds[name]
        spikes.append(
            [
                name,
                kind,
                f"{neurons:,}",
                *(
                    f"{float(lay[name]['spikes_per_neuron']):.3f}" if name in lay else "-"
                    for lay in layers
                ),
            ]
        )
        cells = []
        for lay in layers:
            if name not in lay:
                cells.append("-")
                continue
            macs = float(lay[name]["macs"])
            cell = _eng(float(lay[name]["synops"]))
            cells.append(f"{cell} + {_eng(macs)} MACs" if macs else cell)
        ops.append([name, _eng(ann[name]) if name in ann else "-", *cells])
    labels = [_label(r) for r in records]
    return (
        "<p><b>Spikes per neuron per inference</b></p>"
        + _table(["population", "kind", "neurons", *labels], spikes)
        + "<p><b>Operations received per inference</b> (synops, plus MACs where an analog "
        "value enters)</p>" + _table(["population", "ANN MACs", *labels], ops)
    )


def _hardware_table(hardware: dict[str, Any]) -> str:
    def number(key: str, unit: str) -> str:
        return _eng(float(hardware[key]), unit) if key in hardware else "-"

    rows = [
        ["architecture", f"{hardware.get('architecture', '?')} ({hardware.get('method', '?')})"],
        ["dataset / model", f"{hardware.get('dataset', '?')} / {hardware.get('model', '?')}"],
        [
            "PEs x cores, technology",
            f"{hardware.get('pes', '?')} x {hardware.get('cores', '?')}, "
            f"{hardware.get('tech', '?')}",
        ],
        ["energy per inference", number("energy_per_inference_j", "J")],
        *(
            [f"· {part.replace('_', ' ')}", _eng(value, "J")]
            for part, value in _hardware_parts(hardware)
        ),
        ["latency", number("latency_s", "s")],
        ["average power", number("average_power_w", "W")],
    ]
    if "snn_accuracy" in hardware:
        rows.append(["accuracy", f"{100 * float(hardware['snn_accuracy']):.2f} %"])
    return _table(["quantity", "value"], rows)


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
.meta{color:#666;font-size:.9em}img{max-width:100%;height:auto;display:block;margin:.6em 0}
table{border-collapse:collapse;font-size:.85em;margin:.8em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
p.note{color:#444}p.warn{color:#a00}code{background:#f3f3f3;padding:0 .2em}
"""


def _page(run_dir: Path, records: Sequence[dict[str, Any]], sections: Sequence[_Section]) -> str:
    datasets = sorted({f"{r['summary']['dataset']} / {r['summary']['model']}" for r in records})
    anns = {
        (r["summary"]["ann_accuracy"], r["summary"]["ann_macs"])
        for r in records
        if r["summary"]["ann_accuracy"] is not None
    }
    warning = (
        '<p class="warn">The runs in this directory come from different ANNs (dataset, model '
        "or training differ); the figures compare each with the ANN of the first run.</p>"
        if len(datasets) > 1 or len(anns) > 1
        else ""
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>onespike report: {html.escape(run_dir.name or str(run_dir))}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>onespike report: {html.escape(str(run_dir))}</h1>",
        f'<p class="meta">dataset / model: {html.escape(", ".join(datasets))}; '
        f"{len(records)} run(s): {html.escape(', '.join(_label(r) for r in records))}; "
        f"generated {datetime.now(timezone.utc).isoformat(timespec='seconds')}</p>",
        warning,
    ]
    for section in sections:
        parts.append(f'<h2 id="{section.key}">{html.escape(section.title)}</h2>')
        parts.append(f'<p class="note">{section.text}</p>')
        if section.png is not None:
            data = base64.b64encode(section.png).decode("ascii")
            parts.append(
                f'<img alt="{html.escape(section.title)}" src="data:image/png;base64,{data}">'
            )
        parts.append(section.table)
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_report(
    run_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Draw every record of ``run_dir`` and write the HTML page and its PNG figures.

    Args:
        run_dir: a directory ``onespike run --out`` wrote into (once per method to compare).
        out: the HTML file (default ``RUN_DIR/report/report.html``). The PNG files always go
            to ``RUN_DIR/report/``.

    Returns:
        The HTML file's path.

    Raises:
        MissingFileError: ``run_dir`` is missing or holds no run record.
        CorruptFileError: a record or ``hardware.json`` is unreadable.
        ImportError: matplotlib is not installed (``pip install 'onespike[plot]'``).
    """
    run_dir = Path(run_dir)
    records = load_records(run_dir)
    hardware = _load_hardware(run_dir)
    plt = _pyplot()
    sections = [
        _Section(
            "summary",
            "Summary",
            "One column per run recorded in this directory (<code>runs/*.json</code>, one per "
            "method, T and options that changed the network; only a later run with the same "
            "method, T and options replaces its column). Counts "
            "and energies are means per inference over the test samples; the energy model "
            "prices both networks' counts the same way. <i>All synaptic events</i> adds the "
            "bias, counter and rectifier events of TTFS neurons and the bias currents to the "
            "spike-driven synops. The last row compares the fast simulator with the stepped "
            "reference on a few samples.",
            table=_summary_table(records),
        ),
        _Section(
            "accuracy",
            "Accuracy against time steps",
            "Test accuracy had every sample stopped after each time step. Rate and hybrid "
            "codes decide a class at every step, so they draw a curve; a TTFS network decides "
            "only when its output window closes, so each TTFS run is one diamond at its latency "
            "(run it at several <code>--steps</code> into this directory for a curve). The dashed "
            "line is the float ANN's accuracy on the same test samples.",
            _png(plt, _figure_accuracy(plt, records)),
        ),
        _Section(
            "layers",
            "Spikes per neuron, per layer",
            "Top: mean spikes each neuron of a population emits per inference (a TTFS neuron "
            "with the rectifier fires exactly once; a rate-coded neuron up to T times; the "
            "rate output layer and an analog input never spike). Bottom, log scale: the "
            "operations each population receives per inference: synops (every arriving spike "
            "times its fan-out into this population; solid) stacked on the multiply-accumulates "
            "of an analog input (hatched: the first layer of rate codes with analog input and of "
            "hybrid codes), beside the ANN's multiply-accumulates for the same layer (dark grey). "
            "The input population receives nothing.",
            _png(plt, _figure_layers(plt, records)),
            _layer_tables(records),
        ),
        _Section(
            "raster",
            "Spike raster of one test sample",
            "Every spike of the first test sample, simulated again with the stepped reference "
            "simulator: one row per neuron, one tick per spike, populations stacked top to "
            "bottom in network order. TTFS times are on the network's global clock, each "
            "layer firing in its own window (the column of ticks at a window's last step is "
            "the rectifier forcing every neuron whose value is 0 to fire); hybrid input ticks "
            "are its temporal code (the analog image at step 0 is a current); a rate-coded run "
            "shows the spikes of every step. "
            f"Large populations show {RASTER_NEURONS} neurons evenly spaced by index; at most "
            f"{RASTER_SPIKES:,} spikes per population are drawn (the counts on the left are "
            "all of them).",
            _png(plt, _figure_raster(plt, records)),
        ),
        _Section(
            "cost",
            "Synaptic operations and energy against the ANN",
            "Left: operations per inference; the ANN multiplies every activation by every "
            "weight (MACs), a spiking network adds a weight per synaptic event (synops) and "
            "multiplies only where an analog value enters (the first layer of analog or hybrid "
            "input). Right: energy per inference from those counts (in the built-in 45 nm "
            "models, after Horowitz, ISSCC 2014, an add costs 0.9 pJ and a MAC 4.6 pJ); the "
            "label on each bar is its ratio to the ANN. The dashed line marks the ANN. The "
            "summary's <i>energy model</i> row says what these figures count: <code>45nm"
            "</code> prices compute only, <code>45nm-sram</code> every memory access too.",
            _png(plt, _figure_cost(plt, records)),
        ),
    ]
    if _fine_tuned(records):
        sections.append(
            _Section(
                "fine-tuning",
                "Fine-tuning, epoch by epoch",
                "The training that made each fine-tuned model, read from its model.json: STDB "
                "of a hybrid network (<code>onespike train --method hybrid</code>) or "
                "TTFS-aware fine-tuning through the exact T-step function (<code>onespike "
                "train --ttfs-aware</code>). After every epoch, the accuracy on the training "
                "images as they were fed (with any augmentation; dotted) and on the images the "
                "model was trained without (its held-out split; solid), and the mean loss. "
                "For STDB the square at epoch 0 is the converted network on the test set, "
                "before fine-tuning, and with early stopping the star marks the epoch whose "
                "network was kept (otherwise the last one is). The summary's test accuracy is "
                "that network's.",
                _png(plt, _figure_fine_tuning(plt, records)),
                _fine_tuning_table(records),
            )
        )
    if hardware is not None:
        sections.append(
            _Section(
                "hardware",
                "Hardware energy breakdown",
                "From <code>hardware.json</code> (<code>onespike hardware --out</code> this "
                "directory): dynamic energy of one inference on the accelerator model by "
                "component, plus static (leakage) energy over its latency. Why this and the "
                "operation count above disagree: the count prices compute only, where a "
                "spiking network's accumulates are cheap beside the ANN's MACs; the "
                "accelerator model also prices every weight read and every neuron-state read "
                "and write in SRAM, and with streamed weights and one state access per "
                "synaptic event those dominate (the weight-reads and state bars). A dense "
                "array keeps partial sums in registers and, with stationary weights, reuses "
                "each weight across positions; a TTFS design batches the events of a step and "
                "keeps weights stationary too (<code>AcceleratorConfig(weight_dataflow="
                "'stationary', event_batching=True, sized_codes=True)</code>). docs/hardware.md "
                "gives the sweep and where TTFS wins.",
                _png(plt, _figure_hardware(plt, hardware)),
                _hardware_table(hardware),
            )
        )
    else:
        sections.append(
            _Section(
                "hardware",
                "Hardware energy breakdown",
                "No <code>hardware.json</code> here; run <code>onespike hardware --out "
                f"{html.escape(str(run_dir))}</code> to add the accelerator's energy breakdown.",
            )
        )
    figures = run_dir / "report"
    for section in sections:
        if section.png is not None:
            atomic_write_bytes(figures / f"{section.key}.png", section.png)
    path = Path(out) if out is not None else figures / "report.html"
    atomic_write_text(path, _page(run_dir, records, sections))
    return path
