"""Evaluate a spiking network on a dataset, in bounded-memory batches, and summarise it.

:func:`evaluate_snn` streams a dataset through :func:`onespike.simulate`, accumulating
accuracy, the operation report and clipping counts, so memory stays bounded by one batch.
:func:`summarize` turns an evaluation and the ANN's figures into one flat record: the row
the CLI prints and the benchmarks write.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from onespike._progress import Stage
from onespike.convert import RateConfig, TTFSConfig, convert
from onespike.data import Dataset, batches
from onespike.errors import ConfigError, ShapeError
from onespike.graph import Graph
from onespike.metrics import EnergyModel, OpsReport, count_ops, estimate_energy
from onespike.network import SpikingNetwork, forward_populations
from onespike.simulate import Method, SimResult, simulate
from onespike.simulate.rate import simulate_checkpoints
from onespike.simulate.ttfs import codes_from_times, stop_at_decision

__all__ = [
    "DECISION_KEYS",
    "LayerDiagnostics",
    "PairedTest",
    "SNNEvaluation",
    "agreement",
    "decision_summary",
    "evaluate_snn",
    "evaluate_snn_steps",
    "paired_test",
    "smallest_steps",
    "summarize",
    "ttfs_diagnostics",
]


@dataclass
class SNNEvaluation:
    """Accuracy and counts of a spiking network over a dataset.

    Attributes:
        correct: correctly classified samples.
        samples: samples evaluated.
        ops: operation report summed over all samples.
        steps: time steps per inference (the most any sample ran).
        clipped: per population, values clipped to the code range (summed).
        total_steps: time steps summed over samples (less than ``steps * samples`` when
            samples exit early).
        step_correct: for methods that record a prediction after every step, the number of
            correct predictions after each step ``1 .. steps`` (``None`` otherwise).
        hits: whether each sample was classified correctly, in dataset order (boolean, one
            entry per sample): what :func:`paired_test` compares.
        decision_steps: TTFS: every sample's decision time (``SimResult.decision_steps``),
            in dataset order; ``None`` for other methods.
        decision_ops: TTFS: the operation report had every sample stopped at its decision
            (:func:`onespike.simulate.ttfs.stop_at_decision`); ``None`` for other methods.
    """

    correct: int
    samples: int
    ops: OpsReport
    steps: int
    clipped: dict[str, int] = field(default_factory=dict)
    total_steps: int = 0
    step_correct: torch.Tensor | None = None
    hits: torch.Tensor | None = None
    decision_steps: torch.Tensor | None = None
    decision_ops: OpsReport | None = None

    @property
    def accuracy(self) -> float:
        return self.correct / self.samples

    @property
    def mean_latency_steps(self) -> float:
        """Mean time steps per sample."""
        return self.total_steps / self.samples

    def accuracy_by_steps(self) -> list[float]:
        """Accuracy had every sample stopped after step ``t``, for ``t = 1 .. steps``."""
        if self.step_correct is None:
            raise ConfigError("this method records no prediction per time step")
        return [int(c) / self.samples for c in self.step_correct]


def evaluate_snn(
    net: SpikingNetwork,
    dataset: Dataset,
    *,
    batch_size: int = 500,
    method: Method = "closed_form",
    progress: bool = False,
) -> SNNEvaluation:
    """Simulate ``net`` on every sample of ``dataset``.

    Args:
        net: the spiking network; it runs on its own device (``net.to("cuda")``), each
            batch moved there.
        dataset: images and labels.
        batch_size: samples simulated at once (bounds memory).
        method: simulator.
        progress: show a progress bar (off a terminal: one summary line at the end).

    Returns:
        The accumulated evaluation (its per-sample tensors on the CPU).
    """
    total = _Totals()
    with Stage(f"simulate ({method})", total=len(dataset), unit="img", enabled=progress) as bar:
        for images, labels in _batches(dataset, batch_size):
            total.add(net, simulate(net, images, method=method), labels)
            bar.update(int(labels.shape[0]))
        evaluation = total.evaluation(dataset)
        bar.close(f"SNN accuracy {evaluation.accuracy:.4f}")
    return evaluation


def evaluate_snn_steps(
    net: SpikingNetwork,
    dataset: Dataset,
    steps: tuple[int, ...],
    *,
    batch_size: int = 500,
    method: Method = "closed_form",
    progress: bool = False,
) -> dict[int, SNNEvaluation]:
    """Evaluate a rate-coded network at several run lengths from one simulation per batch.

    Args:
        net: a network converted with :class:`~onespike.convert.config.RateConfig`.
        dataset: images and labels.
        steps: run lengths ``T`` (see :func:`onespike.simulate.rate.simulate_checkpoints`).
        batch_size: samples simulated at once (bounds memory).
        method: simulator.
        progress: show a progress bar (off a terminal: one summary line at the end).

    Returns:
        ``T`` to the evaluation the network would get with ``RateConfig(steps=T)``.
    """
    if not isinstance(net.config, RateConfig):
        raise ConfigError("evaluate_snn_steps needs a network converted with RateConfig")
    totals = {t: _Totals() for t in steps}
    with Stage(f"simulate ({method})", total=len(dataset), unit="img", enabled=progress) as bar:
        for images, labels in _batches(dataset, batch_size):
            results = simulate_checkpoints(net, images, steps, method=method)
            for t, result in zip(steps, results, strict=True):
                totals[t].add(net, result, labels)
            bar.update(int(labels.shape[0]))
        evaluations = {t: total.evaluation(dataset) for t, total in totals.items()}
        bar.close(f"T = {min(steps)}..{max(steps)}")
    return evaluations


def _batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if len(dataset) == 0:
        raise ConfigError(f"dataset {dataset.name!r} ({dataset.split}) is empty")
    return iter(batches(dataset, batch_size))


@dataclass
class _Totals:
    """Sums of the per-batch results of one network."""

    correct: int = 0
    ops: OpsReport | None = None
    clipped: dict[str, int] = field(default_factory=dict)
    steps: int = 0
    total_steps: int = 0
    step_correct: torch.Tensor | None = None
    hits: list[torch.Tensor] = field(default_factory=list)
    decisions: list[torch.Tensor] = field(default_factory=list)
    decision_ops: OpsReport | None = None

    def add(self, net: SpikingNetwork, result: SimResult, labels: torch.Tensor) -> None:
        # the result lies on the network's device; what is kept across batches, on the CPU
        labels = labels.to(result.predictions.device)
        hits = result.predictions == labels
        self.hits.append(hits.cpu())
        self.correct += int(hits.sum())
        batch_ops = count_ops(net, result)
        self.ops = batch_ops if self.ops is None else self.ops + batch_ops
        if result.decision_steps is not None:
            self.decisions.append(result.decision_steps.cpu())
            stopped = result if result.sample_steps is not None else stop_at_decision(net, result)
            part = batch_ops if stopped is result else count_ops(net, stopped)
            self.decision_ops = part if self.decision_ops is None else self.decision_ops + part
        for name, count in result.clipped.items():
            self.clipped[name] = self.clipped.get(name, 0) + count
        self.steps = result.steps
        self.total_steps += result.total_steps()
        if result.step_predictions is not None:
            per_step = (result.step_predictions == labels.unsqueeze(0)).sum(dim=1).cpu()
            self.step_correct = (
                per_step if self.step_correct is None else self.step_correct + per_step
            )

    def evaluation(self, dataset: Dataset) -> SNNEvaluation:
        if self.ops is None:
            raise ConfigError(f"dataset {dataset.name!r} ({dataset.split}) is empty")
        return SNNEvaluation(
            self.correct,
            self.ops.samples,
            self.ops,
            self.steps,
            self.clipped,
            self.total_steps,
            self.step_correct,
            torch.cat(self.hits),
            torch.cat(self.decisions) if self.decisions else None,
            self.decision_ops,
        )


@dataclass(frozen=True)
class PairedTest:
    """Two classifiers compared on the same samples (exact McNemar test).

    Attributes:
        only_first: samples the first classifier gets right and the second wrong.
        only_second: samples the second gets right and the first wrong.
        p_value: two-sided exact p-value of "both are equally accurate": the probability, if
            each discordant sample were a fair coin, of a split at least as uneven.
    """

    only_first: int
    only_second: int
    p_value: float


def paired_test(first: torch.Tensor, second: torch.Tensor) -> PairedTest:
    """Whether two classifiers' accuracies on the same samples differ beyond chance.

    Only the samples on which they disagree carry information: with ``b`` of them won by the
    first and ``c`` by the second, the exact McNemar test (McNemar, Psychometrika 1947, doi
    10.1007/BF02295996) takes ``b ~ Binomial(b + c, 1/2)`` under equal accuracy and returns
    ``min(1, 2 P(X <= min(b, c)))``. A deficit of a few samples on a test set of thousands
    usually has ``p`` far above 0.05: it is not evidence that one is less accurate.

    Args:
        first: per-sample correctness of the first classifier (boolean, one entry per sample,
            e.g. :attr:`SNNEvaluation.hits`).
        second: the same for the second, on the same samples in the same order.

    Returns:
        The discordant counts and the p-value.

    Raises:
        ShapeError: the two do not hold one entry per sample of the same samples.
    """
    if first.shape != second.shape or first.dim() != 1:
        raise ShapeError(
            f"paired_test needs two 1-D per-sample correctness vectors of one length, got "
            f"shapes {tuple(first.shape)} and {tuple(second.shape)}; compare results on the "
            "same test samples"
        )
    a, b = first.bool(), second.bool()
    only_first, only_second = int((a & ~b).sum()), int((b & ~a).sum())
    n, k = only_first + only_second, min(only_first, only_second)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n if n else 1.0
    return PairedTest(only_first, only_second, min(1.0, 2 * tail))


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of p-values tested together (one family of comparisons).

    Testing one difference at many points (every network and every T) at p < 0.05 each finds
    some by chance: at 56 points about 3 are expected even when nothing differs. Holm's
    procedure (Holm, Scand. J. Statist. 1979, https://www.jstor.org/stable/4615733) keeps the
    chance of any false finding in the family below the level: with the ``m`` p-values sorted
    ascending, the ``i``-th (from 1) becomes ``max over j <= i of min(1, (m - j + 1) p_(j))``.
    A comparison is significant at level ``alpha`` for the family when its adjusted value is
    below ``alpha``.

    Args:
        p_values: the family's p-values, in any order.

    Returns:
        The adjusted p-values, in the order given.

    Raises:
        ConfigError: a value is not a number in [0, 1].
    """
    values = [float(p) for p in p_values]
    bad = [p for p in values if not 0.0 <= p <= 1.0]  # also catches NaN
    if bad:
        raise ConfigError(f"p-values must lie in [0, 1], got {bad[:3]}; pass test results as given")
    m = len(values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(sorted(range(m), key=values.__getitem__)):
        running = max(running, min(1.0, (m - rank) * values[index]))
        adjusted[index] = running
    return adjusted


def agreement(net: SpikingNetwork, images: torch.Tensor) -> dict[str, Any]:
    """Run both simulators on ``images`` and report how far they agree.

    Returns:
        ``samples``, ``identical_spikes`` (fraction of neurons, all populations, whose spike
        times agree for single-spike codes, or spike counts for rate codes) and
        ``identical_predictions`` (fraction of samples).
    """
    fast = simulate(net, images, method="closed_form")
    ref = simulate(net, images, method="stepped")
    same = total = 0
    for pop in net.populations:
        if ref.spike_times:
            ours, theirs = fast.spike_times[pop.name], ref.spike_times[pop.name]
        else:
            ours, theirs = fast.spikes(pop.name), ref.spikes(pop.name)
        same += int((ours == theirs).sum())
        total += theirs.numel()
    return {
        "samples": int(images.shape[0]),
        "identical_spikes": same / total,
        "identical_predictions": float((fast.predictions == ref.predictions).float().mean()),
    }


def summarize(
    *,
    dataset: str,
    model: str,
    method: str,
    steps: int,
    ann_accuracy: float | None,
    evaluation: SNNEvaluation,
    ann_graph: Graph | None,
    energy_model: EnergyModel | str,
) -> dict[str, Any]:
    """One flat record comparing a spiking network with its ANN.

    Args:
        dataset: dataset name.
        model: architecture name.
        method: spiking method (e.g. ``"ttfs"``).
        steps: the method's T.
        ann_accuracy: the float ANN's test accuracy (``None``: a network with no ANN, e.g.
            one imported from another tool's NIR file).
        evaluation: from :func:`evaluate_snn` on the same test set.
        ann_graph: the ANN's graph, for its MAC count (``None`` with ``ann_accuracy``: every
            ANN field of the record is then ``None``).
        energy_model: prices the counts of both networks.

    Returns:
        A JSON-ready dict; counts are per inference. ``energy_counts`` says what the energy
        figures price (``"compute only"`` or ``"compute + memory"``). TTFS rows add the
        decision time (``decision_steps_mean``, ``_max``, ``_p50``, ``_p90``, ``_p99``: the
        steps each sample ran to its first output spike) and what an inference stopped at
        its decision spends (``spikes_to_decision``, ``synaptic_events_to_decision``,
        ``snn_energy_to_decision_pj``); other methods have ``None`` there.
    """
    if (ann_graph is None) != (ann_accuracy is None):
        raise ConfigError("summarize takes ann_accuracy and ann_graph together, or neither")
    snn_energy = estimate_energy(evaluation.ops, energy_model)
    ann_macs = ann_energy_pj = ratio = None
    if ann_graph is not None:
        ann_ops = count_ops(ann_graph, evaluation.samples)
        ann_macs = ann_ops.per_sample("macs")
        ann_energy_pj = estimate_energy(ann_ops, energy_model).per_sample_pj
        ratio = snn_energy.per_sample_pj / ann_energy_pj
    ops = evaluation.ops
    return {
        "dataset": dataset,
        "model": model,
        "method": method,
        "steps": steps,
        "ann_accuracy": ann_accuracy,
        "snn_accuracy": evaluation.accuracy,
        "spikes_per_neuron": ops.spikes_per_neuron(),
        "spikes": ops.per_sample("spikes"),
        "synops": ops.per_sample("synops"),
        "synaptic_events": ops.per_sample("synaptic_events"),
        "snn_macs": ops.per_sample("macs"),
        "ann_macs": ann_macs,
        "snn_energy_pj": snn_energy.per_sample_pj,
        "ann_energy_pj": ann_energy_pj,
        "energy_ratio_vs_ann": ratio,
        "energy_model": snn_energy.model.name,
        "energy_counts": snn_energy.model.counts,
        "latency_steps": evaluation.steps,
        "mean_latency_steps": evaluation.mean_latency_steps,
        **_decision_fields(evaluation, energy_model),
        "clipped_per_sample": sum(evaluation.clipped.values()) / evaluation.samples,
        "early_spike_fraction": _clipped_share(evaluation),
        "samples": evaluation.samples,
    }


DECISION_KEYS = (
    "decision_steps_mean",
    "decision_steps_max",
    "decision_steps_p50",
    "decision_steps_p90",
    "decision_steps_p99",
    "spikes_to_decision",
    "synaptic_events_to_decision",
    "snn_energy_to_decision_pj",
)


def decision_summary(decisions: torch.Tensor) -> dict[str, float]:
    """Mean, max and percentiles (50, 90, 99: the nearest-rank values) of decision times."""
    ordered = decisions.flatten().sort().values
    n = ordered.numel()
    if n == 0:
        raise ConfigError("decision_summary needs at least one decision time")

    def rank(p: float) -> float:  # nearest rank: the smallest value with >= p% at or below
        return float(ordered[max(0, math.ceil(p / 100 * n) - 1)])

    return {
        "decision_steps_mean": float(ordered.double().mean()),
        "decision_steps_max": float(ordered[-1]),
        "decision_steps_p50": rank(50),
        "decision_steps_p90": rank(90),
        "decision_steps_p99": rank(99),
    }


def _decision_fields(
    evaluation: SNNEvaluation, energy_model: EnergyModel | str
) -> dict[str, float | None]:
    if evaluation.decision_steps is None or evaluation.decision_ops is None:
        return dict.fromkeys(DECISION_KEYS)
    ops = evaluation.decision_ops
    return {
        **decision_summary(evaluation.decision_steps),
        "spikes_to_decision": ops.per_sample("spikes"),
        "synaptic_events_to_decision": ops.per_sample("synaptic_events"),
        "snn_energy_to_decision_pj": estimate_energy(ops, energy_model).per_sample_pj,
    }


def _clipped_share(evaluation: SNNEvaluation) -> float:
    """Share of neuron-population values above the code range (they spike at the readout)."""
    neurons = [layer for layer in evaluation.ops.layers if layer.kind == "neuron"]
    clipped = sum(evaluation.clipped.get(layer.name, 0) for layer in neurons)
    return clipped / (evaluation.samples * sum(layer.neurons for layer in neurons))


@dataclass(frozen=True)
class LayerDiagnostics:
    """How far one TTFS population departs from the float ANN on a batch.

    Attributes:
        name: population name.
        clipped_fraction: share of values above the code range. The neuron fires at its
            readout time, the earliest it may (an "early spike"), and carries the top code.
        mean_abs_error: mean ``|decoded SNN value - float ANN activation|``, in units of the
            population's scale (1 = the whole code range); includes every upstream error.
        max_abs_error: the largest such difference.
    """

    name: str
    clipped_fraction: float
    mean_abs_error: float
    max_abs_error: float


def ttfs_diagnostics(net: SpikingNetwork, x: torch.Tensor) -> list[LayerDiagnostics]:
    """Per neuron population: clipped (early-spiking) share and error against the float ANN.

    Args:
        net: a TTFS network.
        x: input batch.

    Returns:
        One entry per neuron population, in topological order.
    """
    config = net.config
    if not isinstance(config, TTFSConfig):
        raise ConfigError("ttfs_diagnostics needs a network converted with TTFSConfig")
    result = simulate(net, x)
    codes = codes_from_times(net, result)
    with torch.no_grad():
        ann = forward_populations(list(net.populations), x.to(torch.float64))
    out = []
    for pop in net.populations:
        if pop.kind != "neuron":
            continue
        error = (codes[pop.name].double() / config.levels - torch.relu(ann[pop.name])).abs()
        count = result.batch_size * pop.size
        out.append(
            LayerDiagnostics(
                name=pop.name,
                clipped_fraction=result.clipped[pop.name] / count,
                mean_abs_error=float(error.mean()),
                max_abs_error=float(error.max()),
            )
        )
    return out


def smallest_steps(
    graph: Graph,
    validation: Dataset,
    target_accuracy: float,
    *,
    candidates: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32, 48, 64),
    rectifier: bool = True,
) -> tuple[int | None, list[tuple[int, float]]]:
    """The smallest T whose TTFS network reaches ``target_accuracy`` on ``validation``.

    Args:
        graph: normalised graph.
        validation: held-out data (not the test set).
        target_accuracy: in ``(0, 1]``.
        candidates: T values to try, in increasing order.
        rectifier: passed to :class:`TTFSConfig`.

    Returns:
        ``(T or None, [(T, validation accuracy), ...])`` for every T tried; ``None`` when no
        candidate reaches the target.
    """
    if not 0.0 < target_accuracy <= 1.0:
        raise ConfigError(f"target accuracy must be in (0, 1], got {target_accuracy}")
    tried: list[tuple[int, float]] = []
    for steps in sorted(candidates):
        net = convert(graph, TTFSConfig(steps=steps, rectifier=rectifier))
        accuracy = evaluate_snn(net, validation).accuracy
        tried.append((steps, accuracy))
        if accuracy >= target_accuracy:
            return steps, tried
    return None, tried
