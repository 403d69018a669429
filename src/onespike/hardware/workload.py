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

from onespike.convert.config import RateConfig, TTFSConfig
from onespike.convert.ttfs import readout_time
from onespike.errors import ConfigError
from onespike.graph import Conv2d, Graph, Linear
from onespike.metrics import OpsReport, count_ops

# _structural: a linear node with its weights as ones (written once, in onespike.network).
from onespike.network import (
    Population,
    Projection,
    SpikingNetwork,
    _structural,
    populations,
    tensors_of,
)
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
        input_steps: TTFS neuron populations: the (neuron, time step) pairs, summed over the
            samples, at which at least one synaptic or bias event reaches the neuron: the
            state accesses of an accelerator that batches the events of one step (0 where
            not profiled).
        fan_in: the most synapses that reach one neuron of the population (bias excluded).
        weights: weights its projections store (a shared weight once) plus its non-zero
            biases.
        channels: output channels (the first dimension of a convolutional population's
            shape; the neuron count of a flat one): neurons per output position.
        binary: its synapses are +-1 (a binary-weight hidden layer of a rate network), so
            a crossbar of binary cells can hold them.
    """

    name: str
    kind: str
    neurons: int
    fanouts: tuple[tuple[int, int], ...] = ()
    routed: bool = True
    window_steps: int = 0
    input_steps: int = 0
    fan_in: int = 0
    weights: int = 0
    channels: int = 0
    binary: bool = False

    def __post_init__(self) -> None:
        if self.neurons < 1:
            raise ConfigError(f"LayerLoad {self.name!r}: neurons must be >= 1")
        if any(f < 0 or n < 0 for f, n in self.fanouts):
            raise ConfigError(f"LayerLoad {self.name!r}: fan-outs and spike counts must be >= 0")
        counts = (self.window_steps, self.input_steps, self.fan_in, self.weights, self.channels)
        if min(counts) < 0:
            raise ConfigError(
                f"LayerLoad {self.name!r}: window_steps, input_steps, fan_in, weights and "
                "channels must be >= 0"
            )

    def __add__(self, other: LayerLoad) -> LayerLoad:
        if (self.name, self.kind, self.neurons) != (other.name, other.kind, other.neurons):
            raise ConfigError(f"cannot add loads of layers {self.name!r} and {other.name!r}")
        merged: Counter[int] = Counter(dict(self.fanouts))
        merged.update(dict(other.fanouts))
        return replace(
            self,
            fanouts=tuple(sorted(merged.items())),
            input_steps=self.input_steps + other.input_steps,
            fan_in=max(self.fan_in, other.fan_in),
        )


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
    totals = torch.zeros(values.numel(), dtype=torch.float64, device=per_neuron.device)
    totals.index_add_(0, inverse.flatten(), per_neuron.flatten())
    return Counter(
        {
            int(v): round(float(n))
            for v, n in zip(values.tolist(), totals.tolist(), strict=True)
            if n
        }
    )


def _structure(pop: Population, shapes: dict[str, tuple[int, ...]]) -> LayerLoad:
    """A load holding only the fan-in, stored weights and channels of one population."""
    return LayerLoad(
        pop.name,
        pop.kind,
        pop.size,
        fan_in=_fan_in(pop, shapes),
        weights=_stored_weights((pop,)),
        channels=pop.shape[0] if pop.shape else 1,
    )


def _binary(pop: Population, net: SpikingNetwork) -> bool:
    """A rate network's population whose synapses a binary conversion stored as +-1."""
    if not isinstance(net.config, RateConfig) or not net.config.binary:
        return False
    if pop.kind != "neuron" or pop.is_output or len(pop.projections) != 1:
        return False
    proj = pop.projections[0]
    weighted = [op for op in proj.ops if isinstance(op, (Linear, Conv2d))]
    return len(weighted) == 1 and proj.factor == 1.0 and bool((weighted[0].weight.abs() == 1).all())


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


def _reach(proj: Projection, x: Tensor) -> Tensor:
    """How many of ``x``'s events reach each target through ``proj`` (weights as ones)."""
    for op in proj.ops:
        x = _structural(op, x)
    return x


def _fan_in(pop: Population, shapes: dict[str, tuple[int, ...]]) -> int:
    """The most synapses into one neuron of ``pop`` (every source neuron active once)."""
    if pop.kind != "neuron":
        return 0
    if not pop.projections:
        return 0
    like = next((t for t in tensors_of(pop) if t.is_floating_point()), None)
    device = torch.device("cpu") if like is None else like.device
    dtype = torch.float32 if like is None else like.dtype
    reached = [
        _reach(proj, torch.ones((1, *shapes[proj.source]), device=device, dtype=dtype))
        for proj in pop.projections
    ]
    total = reached[0]
    for part in reached[1:]:
        total = total + part
    return round(float(total.max()))


def _input_steps(pop: Population, net: SpikingNetwork, result: SimResult) -> int:
    """(neuron, step) pairs receiving at least one synaptic or bias event (TTFS)."""
    config = net.config
    assert isinstance(config, TTFSConfig)
    levels, readout = config.levels, readout_time(pop, config)
    biased = pop.bias is not None and bool((pop.bias != 0).any())
    count = 0
    for t in range(readout - levels, readout + 1):
        device = result.spike_times[pop.name].device
        hit = torch.zeros((result.batch_size, *pop.shape), dtype=torch.bool, device=device)
        for proj in pop.projections:
            arriving = result.spike_times[proj.source] + proj.delay == t
            if bool(arriving.any()):
                hit |= _reach(proj, arriving.to(torch.float32)) > 0
        if biased and t == readout - levels:
            assert pop.bias is not None
            hit |= (pop.bias != 0).expand_as(hit)
        if result.sample_steps is not None:
            hit &= (result.sample_steps > t).view(-1, *([1] * len(pop.shape)))
        count += int(hit.sum())
    return count


def _profile_snn(net: SpikingNetwork, result: SimResult) -> Workload:
    ops = count_ops(net, result)
    routed = _routed(net.populations)
    ttfs = isinstance(net.config, TTFSConfig)
    shapes = {p.name: p.shape for p in net.populations}
    layers = []
    for pop in net.populations:
        hist: Counter[int] = Counter()
        if pop.kind != "input":
            for source, fan in zip(pop.sources, net.fanouts[pop.name], strict=True):
                hist.update(_histogram(result.spikes(source), fan))
        neuron = pop.kind == "neuron"
        layers.append(
            replace(
                _structure(pop, shapes),
                fanouts=tuple(sorted(hist.items())),
                routed=pop.name in routed,
                window_steps=net.config.levels + 1 if ttfs and neuron else 0,
                input_steps=_input_steps(pop, net, result) if ttfs and neuron else 0,
                binary=_binary(pop, net),
            )
        )
    return Workload(
        ops.network, ops, tuple(layers), result.total_steps(), _stored_weights(net.populations)
    )


def _profile_ann(graph: Graph, data: Tensor | int) -> Workload:
    ops = count_ops(graph, data)
    pops = populations(graph)
    routed = _routed(pops)
    shapes = {p.name: p.shape for p in pops}
    layers = tuple(replace(_structure(p, shapes), routed=p.name in routed) for p in pops)
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
