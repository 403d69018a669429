"""What one network asks of the hardware: its operation counts plus the shape of its events.

The architectures of :mod:`onespike.hardware` price a :class:`Workload`. Most of it is the
:class:`~onespike.metrics.OpsReport` that :func:`onespike.count_ops` returns. What the counts
alone cannot say, and cycle models need, is how the synaptic events arrive: a spike with
fan-out ``F`` keeps ``P`` processing elements busy for ``ceil(F / P)`` cycles, so each layer
carries a histogram of the fan-outs of the spikes it received (fan-out value -> number of
spikes, summed over the samples). Histograms, counts and step totals all add, so a workload
accumulates over the batches of a dataset with ``+`` and memory stays bounded.

:func:`profile` builds a workload from a spiking network and its
:class:`~onespike.simulate.SimResult`, or from an ANN :class:`~onespike.graph.Graph` and a
sample count.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace

import torch
from torch import Tensor

from onespike.convert.config import TTFSConfig
from onespike.errors import ConfigError
from onespike.graph import Conv2d, Graph, Linear
from onespike.metrics import OpsReport, count_ops
from onespike.network import Population, SpikingNetwork, populations
from onespike.simulate.result import SimResult

__all__ = ["LayerLoad", "Workload", "profile"]


@dataclass(frozen=True)
class LayerLoad:
    """How the synaptic events of one population arrive, and where its spikes go.

    Attributes:
        name: population name (as in the :class:`OpsReport`).
        kind: ``"input"``, ``"neuron"`` or ``"maxpool"``.
        neurons: neurons per sample.
        fanouts: ``((fan_out, spikes), ...)`` ascending in fan-out: spikes received from the
            source populations, grouped by the number of this population's neurons each one
            reaches; summed over the samples.
        routed: its spikes travel to another population (false for the output).
        window_steps: time steps of its input window per inference on an event-driven TTFS
            accelerator (``L + 1`` for a TTFS neuron population, else 0).
    """

    name: str
    kind: str
    neurons: int
    fanouts: tuple[tuple[int, int], ...] = ()
    routed: bool = True
    window_steps: int = 0

    def __post_init__(self) -> None:
        if self.neurons < 1:
            raise ConfigError(f"LayerLoad {self.name!r}: neurons must be >= 1")
        if any(f < 0 or n < 0 for f, n in self.fanouts):
            raise ConfigError(f"LayerLoad {self.name!r}: fan-outs and spike counts must be >= 0")
        if self.window_steps < 0:
            raise ConfigError(f"LayerLoad {self.name!r}: window_steps must be >= 0")

    def __add__(self, other: LayerLoad) -> LayerLoad:
        if (self.name, self.kind, self.neurons) != (other.name, other.kind, other.neurons):
            raise ConfigError(f"cannot add loads of layers {self.name!r} and {other.name!r}")
        merged: Counter[int] = Counter(dict(self.fanouts))
        merged.update(dict(other.fanouts))
        return replace(self, fanouts=tuple(sorted(merged.items())))


@dataclass(frozen=True)
class Workload:
    """Counts and event shapes of one network over ``samples`` inferences.

    Attributes:
        method: ``"ann"`` or the spiking method (``"ttfs"``, ``"rate"``, ...).
        ops: per-layer operation counts, summed over the samples.
        layers: one :class:`LayerLoad` per population, in the order of ``ops.layers``.
        total_steps: time steps summed over the samples (0 for an ANN).
        weights: weights the network stores (shared weights once), biases included.
    """

    method: str
    ops: OpsReport
    layers: tuple[LayerLoad, ...]
    total_steps: int
    weights: int

    def __post_init__(self) -> None:
        names = [layer.name for layer in self.layers]
        if names != [layer.name for layer in self.ops.layers]:
            raise ConfigError(
                f"Workload layers {names} do not match the OpsReport's "
                f"{[layer.name for layer in self.ops.layers]}"
            )
        if self.ops.samples < 1:
            raise ConfigError("a Workload needs at least one sample")
        if self.total_steps < 0 or self.weights < 0:
            raise ConfigError("Workload.total_steps and Workload.weights must be >= 0")
        if self.method != self.ops.network:
            raise ConfigError(
                f"Workload.method={self.method!r} but the OpsReport is of {self.ops.network!r}"
            )

    @property
    def samples(self) -> int:
        """Inferences counted."""
        return self.ops.samples

    @property
    def steps_per_inference(self) -> float:
        """Mean time steps per inference."""
        return self.total_steps / self.samples

    @property
    def neurons(self) -> int:
        """State-holding neurons per sample (neuron and maxpool populations)."""
        return sum(layer.neurons for layer in self.layers if layer.kind != "input")

    def __add__(self, other: Workload) -> Workload:
        if self.method != other.method or self.weights != other.weights:
            raise ConfigError("cannot add workloads of different networks")
        if len(self.layers) != len(other.layers):
            raise ConfigError("cannot add workloads of different networks")
        return Workload(
            self.method,
            self.ops + other.ops,
            tuple(a + b for a, b in zip(self.layers, other.layers, strict=True)),
            self.total_steps + other.total_steps,
            self.weights,
        )


def _histogram(spikes: Tensor, fanout: Tensor) -> Counter[int]:
    """Spikes per fan-out value; ``spikes`` is ``(B, *shape)``, ``fanout`` is ``shape``."""
    per_neuron = spikes.double().sum(0)
    values, inverse = torch.unique(fanout.double().round(), return_inverse=True)
    totals = torch.zeros(values.numel(), dtype=torch.float64)
    totals.index_add_(0, inverse.flatten(), per_neuron.flatten())
    return Counter(
        {
            int(v): round(float(n))
            for v, n in zip(values.tolist(), totals.tolist(), strict=True)
            if n
        }
    )


def _stored_weights(pops: list[Population] | tuple[Population, ...]) -> int:
    seen: dict[int, Linear | Conv2d] = {}
    for pop in pops:
        for proj in pop.projections:
            for op in proj.ops:
                if isinstance(op, (Linear, Conv2d)):
                    seen[id(op)] = op
    weights = sum(int(op.weight.numel()) for op in seen.values())
    biases = sum(int((p.bias != 0).sum()) for p in pops if p.bias is not None)
    return weights + biases


def _routed(pops: list[Population] | tuple[Population, ...]) -> set[str]:
    return {source for pop in pops for source in pop.sources}


def _profile_snn(net: SpikingNetwork, result: SimResult) -> Workload:
    ops = count_ops(net, result)
    routed = _routed(net.populations)
    ttfs = isinstance(net.config, TTFSConfig)
    layers = []
    for pop in net.populations:
        hist: Counter[int] = Counter()
        if pop.kind != "input":
            for source, fan in zip(pop.sources, net.fanouts[pop.name], strict=True):
                hist.update(_histogram(result.spikes(source), fan))
        window = net.config.levels + 1 if ttfs and pop.kind == "neuron" else 0
        layers.append(
            LayerLoad(
                pop.name,
                pop.kind,
                pop.size,
                tuple(sorted(hist.items())),
                routed=pop.name in routed,
                window_steps=window,
            )
        )
    return Workload(
        ops.network, ops, tuple(layers), result.total_steps(), _stored_weights(net.populations)
    )


def _profile_ann(graph: Graph, data: Tensor | int) -> Workload:
    ops = count_ops(graph, data)
    pops = populations(graph)
    routed = _routed(pops)
    layers = tuple(LayerLoad(p.name, p.kind, p.size, routed=p.name in routed) for p in pops)
    return Workload("ann", ops, layers, 0, _stored_weights(pops))


def profile(network: SpikingNetwork | Graph, data: SimResult | Tensor | int) -> Workload:
    """The workload a network puts on hardware.

    Args:
        network: a spiking network (then ``data`` is its :class:`SimResult`) or an ANN graph
            (then ``data`` is the input batch or the number of samples, as for
            :func:`onespike.count_ops`).
        data: see ``network``.

    Returns:
        Counts, fan-out histograms and step totals, summed over the samples.
    """
    if isinstance(network, SpikingNetwork):
        if not isinstance(data, SimResult):
            raise ConfigError("profile(spiking_network, ...) needs the SimResult of simulate()")
        return _profile_snn(network, data)
    if isinstance(network, Graph):
        if isinstance(data, SimResult):
            raise ConfigError("profile(graph, ...) needs the input batch or a sample count")
        return _profile_ann(network, data)
    raise ConfigError(f"profile expects a SpikingNetwork or Graph, got {type(network).__name__}")
