"""Exact operation counts and energy estimates, for spiking networks and their ANNs alike.

Counting conventions (the same for every method, so that ratios are honest):

- **spikes**: spikes emitted by a population.
- **synops** (synaptic operations, accumulates): every spike times its real fan-out: the
  number of synapses leaving that neuron, convolution borders, strides and dilation included
  (:func:`onespike.network.projection_fanout`). Spikes routed into a max-pooling population
  count one event per pooling window that contains the neuron.
- **bias/counter/rectifier events**: the extra synapse events of a TTFS neuron, one each per
  neuron per inference (a bias event only where the bias is non-zero; a rectifier event only
  with ``rectifier=True``).
- **macs**: multiply-accumulates where an analog value meets a weight. For the ANN: one per
  real connection (padding excluded). For TTFS: none (every input is a spike). For rate codes
  with analog input: one per connection of the first layer per sample (the constant current
  is computed once, then added at every step as part of the neuron update).
- **bias events** of rate codes: one per biased neuron per step run (the bias is a constant
  current), except in a layer whose whole current is the constant analog input, where the
  bias joins that current once per sample.
- **hybrid code**: the analog input of step 0 is one MAC per connection of the first layer per
  sample; the temporal input spikes of later steps are synops like any other spikes (with
  ``input_code="split"`` each code step's summed input current is multiplied by its level:
  one MAC per first-layer neuron per code step); the bias is one bias event per biased neuron
  per step (``bias="spread"`` or ``"every_step"``) or per sample (``"first_step"``); every
  neuron population (the output included) is updated at every step.
- **comparisons**: ANN max pooling, ``window size - 1`` per output.
- **neuron_updates**: state updates of a time-stepped implementation: a TTFS neuron is updated
  at each of the ``2L + 1`` steps of its window; a rate-coded neuron at every step its sample
  runs (fewer with early exit); an ANN neuron once (bias add and ReLU).
- **memory_reads / memory_writes**: each synaptic event (synop or extra event) reads its weight
  and reads and writes the target neuron's state; each neuron update reads and writes the
  neuron's state. An ANN MAC reads a weight and an input activation; each ANN neuron writes
  its output once.

Those are onespike's own counts (``convention="onespike"``, the default). :func:`count_ops`
also counts a spiking network the way two published tools do, so that its figures can be set
beside theirs (docs/accounting.md states each once, with its source):

- ``convention="quartz"`` (TTFS only): the reference code of Quartz (Lenz, Orchard, Sheik,
  arXiv 2309.16795; github.com/biphasic/Quartz, ``quartz/utils.py`` and ``quartz/layer.py``).
  **synops** are the (neuron, time step) pairs at which the neuron's input is non-zero: the
  synaptic input of that step (all spikes arriving then, summed), the bias event, the counter
  event (which makes the current 1) all fold into one entry per step. With ``N`` neurons
  (the neuron populations, output included) and ``t_max = T``, Quartz's formulas give
  ``ops = synops + 2 N t_max``, ``reads = synops + 4 N t_max``, ``writes = synops + N t_max``;
  here ``neuron_updates`` holds the ``2 N t_max`` term, ``memory_reads`` and
  ``memory_writes`` the other two, and the other counts are 0.
- ``convention="sinabs"`` (any method): synops are the spikes entering a weighted layer
  times their real fan-out, as sinabs' synops hooks count them (``sinabs.synopcounter``:
  input spikes times a connection map, a transposed convolution of ones). Spikes routed into
  max pooling, bias, counter and rectifier events, neuron updates and memory are not
  counted; MACs of an analog input are kept apart in ``macs``, as NeuroBench keeps its
  ``Effective_MACs`` apart from ``Effective_ACs``.

Every report has ``total("operations")``: synaptic events, MACs, comparisons and neuron
updates together (Quartz's ``ops`` in its convention; synops plus MACs, NeuroBench's
effective synaptic operations, in sinabs').

Energy (:func:`estimate_energy`) prices these counts with an :class:`EnergyModel`. Totals are
per batch; ``per_sample`` divides by the number of samples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

import torch
from torch import Tensor

from onespike.convert.config import HybridConfig, RateConfig, TTFSConfig
from onespike.convert.ttfs import readout_time
from onespike.errors import ConfigError, ShapeError
from onespike.graph import Graph
from onespike.network import (
    Population,
    SpikingNetwork,
    population_fanout,
    populations,
    projection_fanout,
)
from onespike.simulate.result import SimResult

__all__ = [
    "CONVENTIONS",
    "ENERGY_MODELS",
    "HOROWITZ_45NM",
    "HOROWITZ_45NM_SRAM",
    "Convention",
    "EnergyModel",
    "EnergyReport",
    "LayerEnergy",
    "LayerOps",
    "OpsReport",
    "count_ops",
    "estimate_energy",
]


@dataclass(frozen=True)
class LayerOps:
    """Operation counts of one population, summed over the samples of a batch."""

    name: str
    kind: str
    neurons: int
    spikes: int = 0
    synops: int = 0
    macs: int = 0
    comparisons: int = 0
    bias_events: int = 0
    counter_events: int = 0
    rectifier_events: int = 0
    neuron_updates: int = 0
    memory_reads: int = 0
    memory_writes: int = 0

    @property
    def synaptic_events(self) -> int:
        """Accumulates of any kind: synops plus bias, counter and rectifier events."""
        return self.synops + self.bias_events + self.counter_events + self.rectifier_events

    @property
    def operations(self) -> int:
        """Every operation counted: synaptic events, MACs, comparisons and neuron updates."""
        return self.synaptic_events + self.macs + self.comparisons + self.neuron_updates

    def __add__(self, other: LayerOps) -> LayerOps:
        if (self.name, self.kind, self.neurons) != (other.name, other.kind, other.neurons):
            raise ConfigError(f"cannot add counts of layers {self.name!r} and {other.name!r}")
        summed = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name not in ("name", "kind", "neurons")
        }
        return replace(self, **summed)


_COUNT_FIELDS = tuple(f.name for f in fields(LayerOps) if f.name not in ("name", "kind", "neurons"))
_DERIVED = ("synaptic_events", "operations")

Convention = Literal["onespike", "quartz", "sinabs"]
CONVENTIONS: tuple[str, ...] = ("onespike", "quartz", "sinabs")


@dataclass(frozen=True)
class OpsReport:
    """Per-layer operation counts of a network over ``samples`` inferences.

    Attributes:
        network: ``"ann"`` or the spiking method (``"ttfs"``).
        samples: number of inferences counted.
        layers: one entry per population, in topological order.
        convention: what the counts mean (``"onespike"``, ``"quartz"``, ``"sinabs"``; see
            the module docstring).
    """

    network: str
    samples: int
    layers: tuple[LayerOps, ...]
    convention: str = "onespike"

    def total(self, field_name: str) -> int:
        """Sum of one count over all layers (e.g. ``"synops"``, ``"operations"``)."""
        if field_name in _DERIVED:
            return sum(int(getattr(layer, field_name)) for layer in self.layers)
        if field_name not in _COUNT_FIELDS and field_name != "neurons":
            raise ConfigError(
                f"unknown count {field_name!r}; use one of {(*_COUNT_FIELDS, *_DERIVED)}"
            )
        return sum(int(getattr(layer, field_name)) for layer in self.layers)

    def per_sample(self, field_name: str) -> float:
        """Mean of one count per inference."""
        return self.total(field_name) / self.samples

    def spikes_per_neuron(self) -> float:
        """Mean spikes per neuron per inference, over the neuron populations."""
        neurons = sum(layer.neurons for layer in self.layers if layer.kind == "neuron")
        spikes = sum(layer.spikes for layer in self.layers if layer.kind == "neuron")
        return spikes / (neurons * self.samples) if neurons else 0.0

    def __add__(self, other: OpsReport) -> OpsReport:
        if self.network != other.network or len(self.layers) != len(other.layers):
            raise ConfigError("cannot add reports of different networks")
        if self.convention != other.convention:
            raise ConfigError(
                f"cannot add counts of the {self.convention!r} and {other.convention!r} "
                "conventions; count both batches with the same convention"
            )
        layers = tuple(a + b for a, b in zip(self.layers, other.layers, strict=True))
        return OpsReport(self.network, self.samples + other.samples, layers, self.convention)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON."""
        return {
            "network": self.network,
            "convention": self.convention,
            "samples": self.samples,
            "layers": [
                {f.name: getattr(layer, f.name) for f in fields(layer)} for layer in self.layers
            ],
        }


def _ttfs_extras(pop: Population, net: SpikingNetwork, result: SimResult) -> dict[str, int]:
    config = net.config
    assert isinstance(config, TTFSConfig)
    batch, levels = result.batch_size, config.levels
    biased = int((pop.bias != 0).sum()) if pop.bias is not None else 0
    start = readout_time(pop, config) - levels  # the window: steps start .. start + 2L
    window = 2 * levels + 1
    if result.sample_steps is None:
        return {
            "bias_events": biased * batch,
            "counter_events": pop.size * batch,
            "rectifier_events": pop.size * batch if config.rectifier else 0,
            "neuron_updates": pop.size * batch * window,
        }
    # A sample stopped after sample_steps steps (at its decision) spends no event of a later
    # step: the bias at the window's start, the counter at the readout, the rectifier at its
    # end, one neuron update per window step run.
    stop = result.sample_steps

    def ran(step: int) -> int:
        return int((stop > step).sum())

    updates = int((stop - start).clamp(0, window).sum())
    return {
        "bias_events": biased * ran(start),
        "counter_events": pop.size * ran(start + levels),
        "rectifier_events": pop.size * ran(start + 2 * levels) if config.rectifier else 0,
        "neuron_updates": pop.size * updates,
    }


# Per method: the counts of a neuron population beyond its spikes and synops (bias, counter
# and rectifier events, MACs of analog input, neuron updates), from the network and result.
def _rate_extras(pop: Population, net: SpikingNetwork, result: SimResult) -> dict[str, int]:
    config = net.config
    assert isinstance(config, RateConfig)
    batch, steps = result.batch_size, result.total_steps()
    fans = net.fanouts[pop.name]
    analog = (
        [i for i, p in enumerate(pop.projections) if p.source == net.input.name]
        if config.input == "analog"
        else []
    )
    connections = sum(int(float(fans[i].sum())) for i in analog)
    # A current that is constant over time (analog input only) includes its bias once.
    constant = bool(analog) and len(analog) == len(pop.projections)
    biased = int((pop.bias != 0).sum()) if pop.bias is not None else 0
    return {
        "macs": connections * batch,
        "bias_events": biased * (batch if constant else steps),
        "neuron_updates": pop.size * steps,
    }


def _hybrid_extras(pop: Population, net: SpikingNetwork, result: SimResult) -> dict[str, int]:
    assert isinstance(net.config, HybridConfig)
    batch, steps = result.batch_size, result.total_steps()
    fans = net.fanouts[pop.name]
    analog = sum(
        int(float(fan.sum()))
        for proj, fan in zip(pop.projections, fans, strict=True)
        if proj.source == net.input.name
    )
    biased = int((pop.bias != 0).sum()) if pop.bias is not None else 0
    levels = net.config.steps - 1
    weighted = net.config.input_code == "split" and levels > 0 and analog > 0
    return {
        # split code: the spikes of each code step carry one level, one multiply per neuron
        "macs": (analog + (pop.size * levels if weighted else 0)) * batch,
        "bias_events": biased * (batch if net.config.bias == "first_step" else steps),
        "neuron_updates": pop.size * steps,
    }


_EXTRAS: dict[type, Callable[[Population, SpikingNetwork, SimResult], dict[str, int]]] = {
    TTFSConfig: _ttfs_extras,
    RateConfig: _rate_extras,
    HybridConfig: _hybrid_extras,
}
_METHOD_NAMES: dict[type, str] = {TTFSConfig: "ttfs", RateConfig: "rate", HybridConfig: "hybrid"}


def _with_memory(ops: LayerOps, *, ann: bool) -> LayerOps:
    if ann:
        reads = 2 * ops.macs + ops.comparisons
        writes = ops.neuron_updates
    else:
        reads = 2 * ops.synaptic_events + ops.neuron_updates
        writes = ops.synaptic_events + ops.neuron_updates
    return replace(ops, memory_reads=reads, memory_writes=writes)


def _count_snn(net: SpikingNetwork, result: SimResult, convention: str) -> OpsReport:
    extras = _EXTRAS.get(type(net.config))
    if extras is None:
        raise ConfigError(f"no operation counting for {type(net.config).__name__}")
    if convention == "quartz":
        return _count_quartz(net, result)
    if convention == "sinabs":
        return _count_sinabs(net, result, extras)
    batch = result.batch_size
    layers: list[LayerOps] = []
    for pop in net.populations:
        spikes = int(result.spikes(pop.name).sum())
        if pop.kind == "input":
            layers.append(LayerOps(pop.name, "input", pop.size, spikes=spikes))
            continue
        fans = net.fanouts[pop.name]
        if pop.kind == "maxpool":
            routed = _weighted(result.spikes(pop.sources[0]), fans[0])
            ops = LayerOps(pop.name, "maxpool", pop.size, spikes=spikes, synops=routed)
        else:
            synops = sum(
                _weighted(result.spikes(proj.source), fan)
                for proj, fan in zip(pop.projections, fans, strict=True)
            )
            ops = LayerOps(
                pop.name,
                "neuron",
                pop.size,
                spikes=spikes,
                synops=synops,
                **extras(pop, net, result),
            )
        layers.append(_with_memory(ops, ann=False))
    return OpsReport(_METHOD_NAMES[type(net.config)], batch, tuple(layers))


def _count_sinabs(
    net: SpikingNetwork,
    result: SimResult,
    extras: Callable[[Population, SpikingNetwork, SimResult], dict[str, int]],
) -> OpsReport:
    """Spikes into weighted layers times their fan-out; MACs of analog input apart."""
    layers: list[LayerOps] = []
    for pop in net.populations:
        spikes = int(result.spikes(pop.name).sum())
        if pop.kind != "neuron":
            layers.append(LayerOps(pop.name, pop.kind, pop.size, spikes=spikes))
            continue
        fans = net.fanouts[pop.name]
        synops = sum(
            _weighted(result.spikes(proj.source), fan)
            for proj, fan in zip(pop.projections, fans, strict=True)
        )
        macs = extras(pop, net, result).get("macs", 0)
        layers.append(
            LayerOps(pop.name, "neuron", pop.size, spikes=spikes, synops=synops, macs=macs)
        )
    return OpsReport(_METHOD_NAMES[type(net.config)], result.batch_size, tuple(layers), "sinabs")


def _quartz_input_steps(pop: Population, net: SpikingNetwork, result: SimResult) -> int:
    """(neuron, step) pairs, summed over the batch, at which the neuron's input is non-zero.

    Quartz's IF layer (``quartz/layer.py``) adds the counter weight ``1 - sum(inputs)`` into
    the input tensor at the readout step and counts its non-zero entries. In onespike's
    timing the inputs arrive in the window ``[r - L, r]``: the synaptic input of each step
    (every spike arriving then, through every projection, summed), the bias event at
    ``r - L``, and at ``r`` the counter, which makes the current 1: its entry is
    ``1 - i(r - 1)``, the current before it subtracted, whatever arrives at ``r`` itself.
    """
    config = net.config
    assert isinstance(config, TTFSConfig)
    levels, readout = config.levels, readout_time(pop, config)
    shape = (result.batch_size, *pop.shape)
    device = result.spike_times[pop.name].device
    current = torch.zeros(shape, dtype=torch.float64, device=device)
    stop = result.sample_steps
    count = 0
    for t in range(readout - levels, readout + 1):
        entry = torch.zeros(shape, dtype=torch.float64, device=device)
        for proj in pop.projections:
            arriving = result.spike_times[proj.source] + proj.delay == t
            if bool(arriving.any()):
                entry += proj.apply(arriving.to(torch.float64))
        if pop.bias is not None and t == readout - levels:
            entry += pop.bias.to(device=device, dtype=torch.float64)
        if t == readout:
            entry = 1.0 - current
        current += entry
        nonzero = entry != 0
        if stop is not None:  # a stopped sample receives nothing at or after its stop
            nonzero &= (stop > t).view(-1, *([1] * len(pop.shape)))
        count += int(nonzero.sum())
    return count


def _count_quartz(net: SpikingNetwork, result: SimResult) -> OpsReport:
    config = net.config
    if not isinstance(config, TTFSConfig):
        raise ConfigError(
            f"the 'quartz' convention counts TTFS networks (Quartz's formulas need t_max); "
            f"this is a {_METHOD_NAMES[type(config)]!r} network: use convention='onespike' "
            "or 'sinabs'"
        )
    batch, t_max = result.batch_size, config.steps
    layers: list[LayerOps] = []
    for pop in net.populations:
        spikes = int(result.spikes(pop.name).sum())
        if pop.kind != "neuron":
            layers.append(LayerOps(pop.name, pop.kind, pop.size, spikes=spikes))
            continue
        synops = _quartz_input_steps(pop, net, result)
        neuron_steps = pop.size * t_max * batch  # N t_max, summed over the batch
        layers.append(
            LayerOps(
                pop.name,
                "neuron",
                pop.size,
                spikes=spikes,
                synops=synops,
                neuron_updates=2 * neuron_steps,
                memory_reads=synops + 4 * neuron_steps,
                memory_writes=synops + neuron_steps,
            )
        )
    return OpsReport("ttfs", batch, tuple(layers), "quartz")


def _weighted(spikes: Tensor, fanout: Tensor) -> int:
    # float64: counts stay exact integers far beyond what float32 could hold.
    return round(float((spikes.double() * fanout.double()).sum()))


def _count_ann(graph: Graph, batch: int) -> OpsReport:
    pops = populations(graph)
    shapes = {p.name: p.shape for p in pops}
    layers: list[LayerOps] = []
    for pop in pops:
        if pop.kind == "input":
            layers.append(LayerOps(pop.name, "input", pop.size))
            continue
        if pop.kind == "maxpool":
            windows = float(population_fanout(pop, shapes[pop.sources[0]]).sum())
            comparisons = int(windows) - pop.size
            ops = LayerOps(pop.name, "maxpool", pop.size, comparisons=comparisons * batch)
        else:
            connections = sum(
                int(float(projection_fanout(proj, shapes[proj.source]).sum()))
                for proj in pop.projections
            )
            biased = int((pop.bias != 0).sum()) if pop.bias is not None else 0
            ops = LayerOps(
                pop.name,
                "neuron",
                pop.size,
                macs=connections * batch,
                bias_events=biased * batch,
                neuron_updates=pop.size * batch,
            )
        layers.append(_with_memory(ops, ann=True))
    return OpsReport("ann", batch, tuple(layers))


def _check_result(net: SpikingNetwork, result: SimResult) -> None:
    """Refuse a result that another network produced (another method, options or layers)."""
    if result.config is not None and result.config != net.config:
        raise ConfigError(
            f"this SimResult comes from a network converted with {result.config!r}, not with "
            f"{net.config!r}; count the network that produced it"
        )
    names = set(result.spike_times) | set(result.spike_counts)
    missing = [p.name for p in net.populations if p.name not in names]
    if missing or names - {p.name for p in net.populations}:
        raise ConfigError(
            "this SimResult does not belong to the network: its populations "
            f"{sorted(names)[:6]} differ from the network's "
            f"{[p.name for p in net.populations][:6]}; count the network that produced it"
        )
    for pop in net.populations:
        shape = tuple(result.spikes(pop.name).shape[1:])
        if shape != pop.shape:
            raise ConfigError(
                f"population {pop.name!r} has shape {shape} in the SimResult but {pop.shape} "
                "in the network; count the network that produced it"
            )


def count_ops(
    network: SpikingNetwork | Graph,
    data: SimResult | Tensor | int,
    convention: Convention = "onespike",
) -> OpsReport:
    """Count operations exactly, per layer.

    Args:
        network: a spiking network (then ``data`` is its :class:`SimResult`) or an ANN graph
            (then ``data`` is the input batch, or just the number of samples: ANN counts do
            not depend on the data).
        data: see ``network``.
        convention: ``"onespike"`` (its own exact counts), ``"quartz"`` (Quartz's reference
            code; TTFS networks) or ``"sinabs"`` (spikes times fan-out into weighted
            layers); see the module docstring. An ANN is counted in onespike's convention.

    Returns:
        The per-layer report, summed over the batch.
    """
    if convention not in CONVENTIONS:
        raise ConfigError(
            f"convention={convention!r} is not one of {', '.join(map(repr, CONVENTIONS))}"
        )
    if isinstance(network, SpikingNetwork):
        if not isinstance(data, SimResult):
            raise ConfigError("count_ops(spiking_network, ...) needs the SimResult of simulate()")
        _check_result(network, data)
        return _count_snn(network, data, convention)
    if isinstance(network, Graph):
        if convention != "onespike":
            raise ConfigError(
                f"convention={convention!r} counts spiking networks; an ANN's MACs are the same "
                "in every convention: use count_ops(graph, data)"
            )
        if isinstance(data, Tensor):
            if tuple(data.shape[1:]) != network.input_shape:
                raise ShapeError(
                    f"input of shape {tuple(data.shape)} does not match the graph's input "
                    f"{network.input_shape}"
                )
            batch = int(data.shape[0])
        elif isinstance(data, int) and not isinstance(data, bool) and data > 0:
            batch = data
        else:
            raise ConfigError("count_ops(graph, ...) needs the input batch or a sample count")
        return _count_ann(network, batch)
    raise ConfigError(f"count_ops expects a SpikingNetwork or Graph, got {type(network).__name__}")


# energy ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnergyModel:
    """Energy per operation, in picojoules.

    Attributes:
        name: short identifier.
        mac_pj: one multiply-accumulate.
        add_pj: one accumulate (a synaptic event, a bias add, a comparison).
        neuron_update_pj: one neuron state update.
        memory_access_pj: one memory read or write (0 for compute-only estimates).
        source: where the numbers come from.
    """

    name: str
    mac_pj: float
    add_pj: float
    neuron_update_pj: float
    memory_access_pj: float
    source: str

    @property
    def counts(self) -> str:
        """What the model prices: ``"compute only"`` or ``"compute + memory"``."""
        return "compute + memory" if self.memory_access_pj > 0 else "compute only"

    def __post_init__(self) -> None:
        for f in ("mac_pj", "add_pj", "neuron_update_pj", "memory_access_pj"):
            value = getattr(self, f)
            if not value >= 0.0:
                raise ConfigError(f"EnergyModel.{f} must be >= 0, got {value}")


# Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014,
# doi 10.1109/ISSCC.2014.6757323: 45 nm, 0.9 V. 32-bit float add 0.9 pJ, 32-bit float multiply
# 3.7 pJ (so a MAC is 4.6 pJ). A neuron update is one 32-bit add (membrane += current).
HOROWITZ_45NM = EnergyModel(
    name="45nm",
    mac_pj=4.6,
    add_pj=0.9,
    neuron_update_pj=0.9,
    memory_access_pj=0.0,
    source="Horowitz, ISSCC 2014 (45 nm): fp32 MAC 4.6 pJ, fp32 add 0.9 pJ; compute only",
)
# Same source: reading 64 bits from an 8 KB SRAM costs 10 pJ; charged per access here.
HOROWITZ_45NM_SRAM = replace(
    HOROWITZ_45NM,
    name="45nm-sram",
    memory_access_pj=10.0,
    source="Horowitz, ISSCC 2014 (45 nm): fp32 MAC 4.6 pJ, add 0.9 pJ, 8 KB SRAM access 10 pJ",
)
ENERGY_MODELS: dict[str, EnergyModel] = {m.name: m for m in (HOROWITZ_45NM, HOROWITZ_45NM_SRAM)}


@dataclass(frozen=True)
class LayerEnergy:
    """Energy of one layer, summed over the samples, in picojoules."""

    name: str
    compute_pj: float
    neuron_pj: float
    memory_pj: float

    @property
    def total_pj(self) -> float:
        return self.compute_pj + self.neuron_pj + self.memory_pj


@dataclass(frozen=True)
class EnergyReport:
    """Energy of a network over ``samples`` inferences under ``model``."""

    model: EnergyModel
    samples: int
    layers: tuple[LayerEnergy, ...]

    @property
    def total_pj(self) -> float:
        return sum(layer.total_pj for layer in self.layers)

    @property
    def per_sample_pj(self) -> float:
        return self.total_pj / self.samples

    @property
    def compute_pj(self) -> float:
        return sum(layer.compute_pj for layer in self.layers)


def estimate_energy(report: OpsReport, model: EnergyModel | str = HOROWITZ_45NM) -> EnergyReport:
    """Price an operation report with an energy model.

    Args:
        report: from :func:`count_ops`.
        model: an :class:`EnergyModel` or the name of a built-in one (``ENERGY_MODELS``).

    Returns:
        Per-layer energy: compute (MACs, accumulates, comparisons), neuron updates, memory.
    """
    if isinstance(model, str):
        if model not in ENERGY_MODELS:
            raise ConfigError(f"unknown energy model {model!r}; use one of {list(ENERGY_MODELS)}")
        model = ENERGY_MODELS[model]
    layers = tuple(
        LayerEnergy(
            name=layer.name,
            compute_pj=layer.macs * model.mac_pj
            + (layer.synaptic_events + layer.comparisons) * model.add_pj,
            neuron_pj=layer.neuron_updates * model.neuron_update_pj,
            memory_pj=(layer.memory_reads + layer.memory_writes) * model.memory_access_pj,
        )
        for layer in report.layers
    )
    return EnergyReport(model, report.samples, layers)
