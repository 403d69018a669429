"""Cycle and energy models of four architectures on one silicon budget.

Notation, per layer and per inference: ``P`` PEs (all ``pes * cores`` in the tiled mapping,
``pes`` times the layer's cores in the pipelined one), ``n`` neurons, ``S`` samples; a
histogram ``{F: s_F}`` of received spikes by fan-out (:class:`~onespike.hardware.LayerLoad`);
counts from the :class:`~onespike.metrics.OpsReport` divided by ``S``. Unit energies come from
the :class:`~onespike.hardware.AcceleratorConfig`: ``e_add`` (accumulator precision),
``e_mul`` (operand precision), and SRAM accesses priced per bit at the macro's size
(``E_sram(size) / word_bits``; writes cost what reads cost, the only figure published):
``e_w`` per weight, ``e_s`` per neuron-state read or write, ``e_a`` per activation read or
write, ``e_r = 2 * event_bits * E_sram(event) / word_bits`` per routed spike (one write into
the event queue, one read out of it).

**Event-driven TTFS accelerator** (``"ttfs-accelerator"``, TTFS networks; in the spirit of
YOSO, Srivatsa et al., arXiv 2006.09982, whose design details are not public; these are
onespike's). Spikes are processed in time order. Each spike reads its weight row and
accumulates into the states of its ``F`` targets, which are spread over the PEs: ``ceil(F/P)``
cycles. A layer sweeps its input window of ``L + 1`` steps at ``step_cycles`` each. Each
neuron's counter event is one *fire evaluation*: after it, the membrane rises with slope 1,
so the spike time follows in closed form from the membrane ``V`` at the readout,
``r + clamp(ceil(L - 1/2 - V), 0, L)``, and is written into the time-ordered event queue;
the ``2L + 1`` time-stepped updates of the window are never done. A rectifier event is the
clamp of that evaluation (one comparison, no memory access)::

    cycles = sum_F s_F ceil(F/P) + ceil(bias/P) + ceil(counter/P) + (L + 1) step_cycles
    E      = (synops + bias) (e_add + e_w + 2 e_s) + rectifier e_add
             + counter (2 e_add + 2 e_s) + spikes_out e_r

**Time-stepped rate core** (``"rate-core"``, any spiking network). At every step every
neuron is updated (integrate, compare with the threshold: two adds, one state read and one
write) in a sweep of ``ceil(n/P)`` cycles; every spike reads its fan-out as above; bias,
counter and rectifier events are accumulates like synaptic events. An analog first layer
(``macs``) is a dense layer computed once per sample (below)::

    cycles = sum_F s_F ceil(F/P) + ceil(events/P) + T ceil(n/P) + T step_cycles [+ dense]
    E      = synaptic_events (e_add + e_w + 2 e_s) + n T (2 e_add + 2 e_s)
             + spikes_out e_r [+ dense]

**Dense MAC array** (``"dense-ann"``, ANN graphs). Output-stationary: ``P`` PEs compute ``P``
output neurons at once, each one MAC per cycle over its fan-in ``f = macs / n``; partial sums
stay in PE registers; one input activation read per cycle is broadcast to all PEs; each
output is written once after bias and ReLU. Max pooling: one comparison per PE-cycle::

    cycles = ceil(n/P) ceil(f) + ceil(n/P)
    E      = macs (e_mul + e_add + e_w) + bias e_add + ceil(n/P) ceil(f) e_a
             + n (e_add + e_a)

Maxpool populations of spiking networks ("first spike wins") cost ``ceil(F/P)`` cycles per
received spike, one comparison and a 1-bit read and write each. Input populations only route
their spikes.

**In-memory crossbars** (``"in-memory"``, rate networks with binary layers; the accelerators
Lu & Sengupta (doi 10.3389/fnins.2020.00535) point to for binary-weight SNNs). A binary layer
(``LayerLoad.binary``: synapses of exactly +-1) is stored in tiles of ``R x C`` binary cells,
rows the fan-in ``f``, columns the output channels ``c``: ``ceil(f/R) x ceil(c/C)`` tiles. At
every step and output position every tile evaluates all its columns (the spikes on its rows
are the inputs; a column sum and its ADC conversion cost ``e_col``, ``crossbar_column_pj``),
row tiles' partial sums are added digitally, and every neuron adds its column sum at its
update. onespike does not record which rows spike at which step of a rate code, so no tile
evaluation is skipped: an upper bound for sparse inputs, close for the rates these networks
run with 256-row tiles. Other layers run on the PEs as on the rate core::

    cycles = T (positions + ceil(n/P) + step_cycles)
    E      = T positions ceil(f/R) ceil(c/C) C e_col + T positions (ceil(f/R) - 1) c e_add
             + n T (3 e_add + 2 e_s) + routed spikes e_r

**Dataflow options** (fields of :class:`~onespike.hardware.AcceleratorConfig`):

- ``weight_dataflow="stationary"``: each PE keeps a tile of weights in a local buffer of
  ``pe_buffer_kb``; a synaptic event or MAC reads its weight there (``e_w`` priced at the
  buffer's size). With the tiled mapping the weights stay resident when the whole network
  fits in all PE buffers; otherwise (and in a pipeline, when a layer does not fit its own
  cores' buffers) every layer is loaded once per inference (a weight-SRAM read and a buffer
  write per weight, ``ceil(weights/P)`` cycles) in ``ceil(layer bits / buffer bits)`` tiles,
  its received spikes replayed from the event queue for every tile after the first (one
  event read and one cycle each).
- ``event_batching`` (TTFS accelerator): the events reaching a neuron in one step are summed
  in a PE register; the neuron's state is read and written once per (neuron, step) with
  input (``LayerLoad.input_steps``) instead of once per synaptic event.
- ``sized_codes`` (TTFS accelerator, dense array): a TTFS state holds
  ``|V| <= (f + 1)(2^(w-1) - 1) L`` and the dense partial sums
  ``(f + 1)(2^(w-1) - 1)(2^a - 1)`` (``f`` the layer's fan-in, ``w`` weight bits, ``a``
  activation bits): states and adds only as wide as that (two's complement), adds priced by
  width with :meth:`~onespike.hardware.TechnologyTable.int_add_pj`.

**Mapping.** Tiled: layers run one after the other on all PEs; latency = interval = the sum of
the layers' cycles. Pipelined: each layer gets whole cores (at least one; spare cores go, one
at a time, to the layer that is slowest then); the TTFS accelerator and the dense array
overlap layers across a stream of inferences (latency = sum, interval = the slowest layer);
the rate core advances all layers together at every step, so latency = interval = the slowest
layer's cycles (a lower bound: it assumes one layer is the slowest at every step). Static
energy is leakage power times the interval; average power is energy per inference over the
interval.

**Rounding.** Synaptic cycles are exact per spike (``ceil(F/P)``, which assumes a spike's
targets spread evenly over the PEs); per-neuron work (bias, counter, sweeps, dense rows) is
rounded up to whole cycles per inference (per step for sweeps) on its mean count. Doubling
``P`` therefore halves a layer's cycles up to these ceilings.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from torch import Tensor

from onespike.errors import ConfigError
from onespike.graph import Graph
from onespike.hardware.config import ARCHITECTURES, AcceleratorConfig
from onespike.hardware.report import HardwareReport, LayerCost
from onespike.hardware.workload import LayerLoad, Workload, profile
from onespike.metrics import LayerOps
from onespike.network import SpikingNetwork
from onespike.simulate.result import SimResult

__all__ = ["OBJECTIVES", "default_architecture", "pareto_front", "run", "scale", "sweep"]


@dataclass(frozen=True)
class _Unit:
    """Unit energies (pJ) of one layer, derived from a config (and the layer, for the
    dataflow options)."""

    add: float
    mul: float
    weight: float
    state: float
    flag: float
    activation: float
    route: float
    event_read: float

    @classmethod
    def of(cls, config: AcceleratorConfig) -> _Unit:
        tech = config.tech
        per_bit = tech.sram_word_bits
        weight_bit = tech.sram_access_pj(config.weight_sram_kb) / per_bit
        state_bit = tech.sram_access_pj(config.state_sram_kb) / per_bit
        event_bit = tech.sram_access_pj(config.event_sram_kb) / per_bit
        return cls(
            add=tech.add_pj[config.accumulator],
            mul=tech.mult_pj[config.operand],
            weight=config.weight_bits * weight_bit,
            state=config.state_bits * state_bit,
            flag=state_bit,
            activation=config.activation_bits * state_bit,
            route=2 * config.event_bits * event_bit,
            event_read=config.event_bits * event_bit,
        )


def _bits(bound: int) -> int:
    """Two's-complement width that holds every integer in ``[-bound, bound]``."""
    return max(1, bound).bit_length() + 1


def _sized_ttfs(unit: _Unit, load: LayerLoad, config: AcceleratorConfig) -> _Unit:
    """``sized_codes``: a TTFS membrane as wide as ``(fan-in + 1) (2^(w-1) - 1) L`` needs."""
    if not config.sized_codes or load.kind != "neuron" or not load.window_steps:
        return unit
    levels = load.window_steps - 1
    bits = _bits((load.fan_in + 1) * (2 ** (config.weight_bits - 1) - 1) * levels)
    state_bit = config.tech.sram_access_pj(config.state_sram_kb) / config.tech.sram_word_bits
    return replace(unit, add=config.tech.int_add_pj(bits), state=bits * state_bit)


def _sized_dense(unit: _Unit, load: LayerLoad, config: AcceleratorConfig) -> _Unit:
    """``sized_codes``: partial sums as wide as ``(fan-in + 1) (2^(w-1) - 1) (2^a - 1)``."""
    if not config.sized_codes or load.kind != "neuron":
        return unit
    bound = (load.fan_in + 1) * (2 ** (config.weight_bits - 1) - 1)
    return replace(unit, add=config.tech.int_add_pj(_bits(bound * (2**config.activation_bits - 1))))


@dataclass(frozen=True)
class _Weights:
    """A layer's weight traffic under the config's dataflow, per inference."""

    read_pj: float  # one weight read by a synaptic event or a MAC
    load_pj: float = 0.0  # loading the layer's weights into the PE buffers
    load_cycles: int = 0
    tiles: int = 1  # passes over the layer's inputs (stationary weights larger than buffers)


def _weights(
    load: LayerLoad, wl: Workload, config: AcceleratorConfig, pes: int, unit: _Unit
) -> _Weights:
    if config.weight_dataflow == "streamed" or load.weights == 0:
        return _Weights(unit.weight)
    tech = config.tech
    local = config.weight_bits * tech.sram_access_pj(config.pe_buffer_kb) / tech.sram_word_bits
    buffer_bits = pes * config.pe_buffer_kb * 8192
    layer_bits = load.weights * config.weight_bits
    if config.mapping == "tiled":  # layers take turns on every PE: all must fit to stay
        resident = wl.weights * config.weight_bits <= config.total_pes * config.pe_buffer_kb * 8192
    else:  # each layer keeps its own cores
        resident = layer_bits <= buffer_bits
    if resident:
        return _Weights(local)
    tiles = max(1, -(-layer_bits // int(buffer_bits)))
    return _Weights(
        local,
        load_pj=load.weights * (unit.weight + local),
        load_cycles=-(-load.weights // pes),
        tiles=tiles,
    )


def _replays(load: LayerLoad, weights: _Weights, unit: _Unit, samples: int) -> tuple[float, float]:
    """Cycles and event-read energy of replaying the received spikes for every extra tile."""
    if weights.tiles == 1:
        return 0.0, 0.0
    received = sum(spikes for _, spikes in load.fanouts) / samples
    extra = (weights.tiles - 1) * received
    return extra, extra * unit.event_read


def _ceil_mean(count: int, samples: int, pes: int) -> int:
    """``ceil(count / samples / pes)`` in exact integer arithmetic."""
    return -(-count // (samples * pes))


def _synaptic_cycles(load: LayerLoad, pes: int) -> int:
    """Cycles of all received spikes over the batch: ``sum_F s_F ceil(F / P)``."""
    return sum(spikes * -(-fan // pes) for fan, spikes in load.fanouts)


def _dense_cycles(macs: int, samples: int, neurons: int, pes: int) -> int:
    """Output-stationary rows: ``ceil(n/P) * ceil(mean fan-in)`` per inference."""
    if macs == 0:
        return 0
    return -(-neurons // pes) * -(-macs // (samples * neurons))


def _routing(ops: LayerOps, load: LayerLoad, unit: _Unit, samples: int) -> float:
    return ops.spikes * unit.route / samples if load.routed else 0.0


def _input_cost(ops: LayerOps, load: LayerLoad, unit: _Unit, samples: int, pes: int) -> LayerCost:
    return LayerCost(
        ops.name, ops.kind, pes, 0.0, 0.0, spike_routing_pj=_routing(ops, load, unit, samples)
    )


def _spiking_maxpool(
    ops: LayerOps, load: LayerLoad, unit: _Unit, samples: int, pes: int
) -> LayerCost:
    return LayerCost(
        ops.name,
        ops.kind,
        pes,
        cycles=_synaptic_cycles(load, pes) / samples,
        busy_pe_cycles=ops.synops / samples,
        compute_pj=ops.synops * unit.add / samples,
        state_reads_writes_pj=ops.synops * 2 * unit.flag / samples,
        spike_routing_pj=_routing(ops, load, unit, samples),
    )


def _analog_layer(
    ops: LayerOps, unit: _Unit, samples: int, pes: int, weight_pj: float
) -> tuple[int, float, float, float]:
    """Cycles, compute, weight and state energy per inference of an analog (MAC) layer."""
    cycles = _dense_cycles(ops.macs, samples, ops.neurons, pes)
    if not cycles:
        return 0, 0.0, 0.0, 0.0
    compute = ops.macs * (unit.mul + unit.add) / samples
    state = cycles * unit.activation + ops.neurons * unit.state
    return cycles, compute, ops.macs * weight_pj / samples, state


def _ttfs_layer(
    ops: LayerOps, load: LayerLoad, wl: Workload, config: AcceleratorConfig, pes: int
) -> LayerCost:
    unit, samples = _Unit.of(config), wl.samples
    if ops.kind == "input":
        return _input_cost(ops, load, unit, samples, pes)
    if ops.kind == "maxpool":
        return _spiking_maxpool(ops, load, unit, samples, pes)
    unit = _sized_ttfs(unit, load, config)
    weights = _weights(load, wl, config, pes, unit)
    replay_cycles, replay_pj = _replays(load, weights, unit, samples)
    mac_cycles, mac_compute, mac_weights, mac_state = _analog_layer(
        ops, unit, samples, pes, weights.read_pj
    )
    events = ops.synops + ops.bias_events
    # Batched: one state read and write per (neuron, step) with input; else per event.
    accesses = load.input_steps if config.event_batching else events
    cycles = (
        _synaptic_cycles(load, pes) / samples
        + _ceil_mean(ops.bias_events, samples, pes)
        + _ceil_mean(ops.counter_events, samples, pes)
        + mac_cycles
        + load.window_steps * config.step_cycles
        + weights.load_cycles
        + replay_cycles
    )
    return LayerCost(
        ops.name,
        ops.kind,
        pes,
        cycles=cycles,
        busy_pe_cycles=(events + ops.counter_events + ops.macs) / samples,
        compute_pj=(events + ops.rectifier_events) * unit.add / samples + mac_compute,
        weight_reads_pj=events * weights.read_pj / samples + mac_weights + weights.load_pj,
        state_reads_writes_pj=accesses * 2 * unit.state / samples + mac_state,
        neuron_updates_pj=ops.counter_events * (2 * unit.add + 2 * unit.state) / samples,
        spike_routing_pj=_routing(ops, load, unit, samples) + replay_pj,
    )


def _rate_layer(
    ops: LayerOps, load: LayerLoad, wl: Workload, config: AcceleratorConfig, pes: int
) -> LayerCost:
    unit, samples = _Unit.of(config), wl.samples
    if ops.kind == "input":
        return _input_cost(ops, load, unit, samples, pes)
    if ops.kind == "maxpool":
        return _spiking_maxpool(ops, load, unit, samples, pes)
    weights = _weights(load, wl, config, pes, unit)
    replay_cycles, replay_pj = _replays(load, weights, unit, samples)
    mac_cycles, mac_compute, mac_weights, mac_state = _analog_layer(
        ops, unit, samples, pes, weights.read_pj
    )
    events = ops.synaptic_events
    other = events - ops.synops
    updates = ops.neurons * wl.total_steps
    cycles = (
        _synaptic_cycles(load, pes) / samples
        + _ceil_mean(other, samples, pes)
        + wl.total_steps * -(-ops.neurons // pes) / samples
        + mac_cycles
        + wl.steps_per_inference * config.step_cycles
        + weights.load_cycles
        + replay_cycles
    )
    return LayerCost(
        ops.name,
        ops.kind,
        pes,
        cycles=cycles,
        busy_pe_cycles=(events + ops.macs + updates) / samples,
        compute_pj=events * unit.add / samples + mac_compute,
        weight_reads_pj=events * weights.read_pj / samples + mac_weights + weights.load_pj,
        state_reads_writes_pj=events * 2 * unit.state / samples + mac_state,
        neuron_updates_pj=updates * (2 * unit.add + 2 * unit.state) / samples,
        spike_routing_pj=_routing(ops, load, unit, samples) + replay_pj,
    )


def _dense_layer(
    ops: LayerOps, load: LayerLoad, wl: Workload, config: AcceleratorConfig, pes: int
) -> LayerCost:
    unit, samples = _Unit.of(config), wl.samples
    n = ops.neurons
    if ops.kind == "input":
        return LayerCost(ops.name, ops.kind, pes, 0.0, 0.0)
    if ops.kind == "maxpool":
        comparisons = ops.comparisons / samples
        return LayerCost(
            ops.name,
            ops.kind,
            pes,
            cycles=float(_ceil_mean(ops.comparisons, samples, pes)),
            busy_pe_cycles=comparisons,
            compute_pj=comparisons * unit.add,
            state_reads_writes_pj=(comparisons + 2 * n) * unit.activation,
        )
    unit = _sized_dense(unit, load, config)
    weights = _weights(load, wl, config, pes, unit)
    mac_cycles = _dense_cycles(ops.macs, samples, n, pes)
    return LayerCost(
        ops.name,
        ops.kind,
        pes,
        cycles=float(mac_cycles + -(-n // pes) + weights.load_cycles),
        busy_pe_cycles=(ops.macs + ops.neuron_updates) / samples,
        compute_pj=(ops.macs * (unit.mul + unit.add) + ops.bias_events * unit.add) / samples,
        weight_reads_pj=ops.macs * weights.read_pj / samples + weights.load_pj,
        state_reads_writes_pj=mac_cycles * unit.activation,
        neuron_updates_pj=ops.neuron_updates * (unit.add + unit.activation) / samples,
    )


def _crossbar_tiles(load: LayerLoad, config: AcceleratorConfig) -> tuple[int, int]:
    """Row and column tiles of a binary layer's crossbar (rows: fan-in; columns: channels)."""
    rows = -(-load.fan_in // config.crossbar_rows)
    cols = -(-load.channels // config.crossbar_cols)
    return rows, cols


def _in_memory_layer(
    ops: LayerOps, load: LayerLoad, wl: Workload, config: AcceleratorConfig, pes: int
) -> LayerCost:
    if not load.binary:  # full-precision layers run on the digital PEs, as on the rate core
        return _rate_layer(ops, load, wl, config, pes)
    unit, samples = _Unit.of(config), wl.samples
    steps = wl.steps_per_inference
    positions = load.neurons // load.channels
    row_tiles, col_tiles = _crossbar_tiles(load, config)
    # Every tile is evaluated at every step and output position: all its columns convert.
    conversions = steps * positions * row_tiles * col_tiles * config.crossbar_cols
    partial_sums = steps * positions * (row_tiles - 1) * load.channels
    bias = ops.bias_events / samples
    updates = ops.neurons * steps
    return LayerCost(
        ops.name,
        ops.kind,
        pes,
        cycles=steps * (positions + -(-ops.neurons // pes) + config.step_cycles),
        busy_pe_cycles=updates + partial_sums + bias,
        compute_pj=(partial_sums + bias) * unit.add,
        # The column sum joins the membrane at the neuron's update: one add more.
        neuron_updates_pj=updates * (3 * unit.add + 2 * unit.state),
        spike_routing_pj=_routing(ops, load, unit, samples),
        crossbar_pj=conversions * config.crossbar_column_pj,
    )


_LayerModel = Callable[[LayerOps, LayerLoad, Workload, AcceleratorConfig, int], LayerCost]
_MODELS: dict[str, _LayerModel] = {
    "ttfs-accelerator": _ttfs_layer,
    "rate-core": _rate_layer,
    "dense-ann": _dense_layer,
    "in-memory": _in_memory_layer,
}


def default_architecture(method: str) -> str:
    """The architecture a network of ``method`` runs on by default."""
    if method == "ann":
        return "dense-ann"
    return "ttfs-accelerator" if method == "ttfs" else "rate-core"


def _check(workload: Workload, config: AcceleratorConfig, architecture: str) -> None:
    if architecture not in ARCHITECTURES:
        raise ConfigError(
            f"architecture={architecture!r} is not one of {', '.join(map(repr, ARCHITECTURES))}"
        )
    method = workload.method
    if architecture == "dense-ann" and method != "ann":
        raise ConfigError(
            f"the dense MAC array runs ANNs; this is a {method!r} spiking network: pass its "
            "Graph and a sample count, or use architecture='rate-core'"
        )
    if architecture != "dense-ann" and method == "ann":
        raise ConfigError(
            f"architecture={architecture!r} runs spiking networks; an ANN runs on 'dense-ann'"
        )
    if architecture == "ttfs-accelerator" and method != "ttfs":
        raise ConfigError(
            f"the event-driven TTFS accelerator needs a single-spike TTFS network, got a "
            f"{method!r} network; use architecture='rate-core'"
        )
    weight_bits = workload.weights * config.weight_bits
    if architecture == "in-memory":  # binary layers take whole crossbar tiles of 1-bit cells
        tile = config.crossbar_rows * config.crossbar_cols
        binary = [layer for layer in workload.layers if layer.binary]
        weight_bits += sum(
            math.prod(_crossbar_tiles(layer, config)) * tile - layer.weights * config.weight_bits
            for layer in binary
        )
    weight_capacity = config.cores * config.weight_sram_kb * 8192
    if weight_bits > weight_capacity:
        raise ConfigError(
            f"the network's {workload.weights:,} weights ({weight_bits / 8192:,.0f} KB at "
            f"{config.weight_bits} bits) do not fit in {config.cores} cores x "
            f"{config.weight_sram_kb:g} KB of weight SRAM; raise cores or weight_sram_kb"
        )
    width = config.activation_bits if method == "ann" else config.state_bits
    state_bits = workload.neurons * width
    state_capacity = config.cores * config.state_sram_kb * 8192
    if state_bits > state_capacity:
        raise ConfigError(
            f"the network's {workload.neurons:,} neurons ({state_bits / 8192:,.0f} KB at "
            f"{width} bits) do not fit in {config.cores} cores x {config.state_sram_kb:g} KB of "
            "state SRAM; raise cores or state_sram_kb"
        )


def _price(workload: Workload, config: AcceleratorConfig, architecture: str) -> HardwareReport:
    _check(workload, config, architecture)
    model = _MODELS[architecture]
    pairs = list(zip(workload.ops.layers, workload.layers, strict=True))
    stages = [i for i, (ops, _) in enumerate(pairs) if ops.kind != "input"]
    cores = dict.fromkeys(range(len(pairs)), config.cores)
    if config.mapping == "pipelined":
        if config.cores < len(stages):
            raise ConfigError(
                f"a pipelined mapping needs a core per layer: {len(stages)} layers, "
                f"{config.cores} cores; raise cores or use mapping='tiled'"
            )
        cores = dict.fromkeys(range(len(pairs)), 1)

        def cost(i: int) -> float:
            ops, load = pairs[i]
            return model(ops, load, workload, config, cores[i] * config.pes).cycles

        for _ in range(config.cores - len(stages)):
            slowest = max(stages, key=cost)
            cores[slowest] += 1
    layers = tuple(
        model(ops, load, workload, config, cores[i] * config.pes)
        for i, (ops, load) in enumerate(pairs)
    )
    cycles = [layers[i].cycles for i in stages]
    total, slowest_cycles = float(sum(cycles)), float(max(cycles, default=0.0))
    if config.mapping == "tiled":
        latency = interval = total
    elif architecture == "rate-core":
        latency = interval = slowest_cycles
    else:
        latency, interval = total, slowest_cycles
    return HardwareReport(
        architecture=architecture,
        method=workload.method,
        config=config,
        samples=workload.samples,
        steps=workload.steps_per_inference,
        layers=layers,
        latency_cycles=latency,
        interval_cycles=interval,
    )


def _workload(
    network: SpikingNetwork | Graph | Workload, data: SimResult | Tensor | int | None
) -> Workload:
    if isinstance(network, Workload):
        if data is not None:
            raise ConfigError("run(workload, ...) takes no data: the workload holds the counts")
        return network
    if data is None:
        raise ConfigError(
            "run(network, data, ...) needs the SimResult of a spiking network, or the input "
            "batch or sample count of an ANN graph"
        )
    return profile(network, data)


def run(
    network: SpikingNetwork | Graph | Workload,
    data: SimResult | Tensor | int | None = None,
    config: AcceleratorConfig | None = None,
    *,
    architecture: str | None = None,
) -> HardwareReport:
    """What one inference costs on an accelerator.

    Args:
        network: a spiking network (then ``data`` is its :class:`SimResult`), an ANN graph
            (then ``data`` is the input batch or a sample count), or a :class:`Workload`
            already profiled (then ``data`` is None), e.g. summed over a dataset.
        data: see ``network``.
        config: the silicon budget (default :class:`AcceleratorConfig()`).
        architecture: ``"ttfs-accelerator"``, ``"rate-core"`` or ``"dense-ann"``; default:
            the TTFS accelerator for TTFS networks, the rate core for other spiking
            networks, the dense array for ANNs.

    Returns:
        Cycles, latency, throughput, energy by component and layer, power.
    """
    workload = _workload(network, data)
    config = AcceleratorConfig() if config is None else config
    if not isinstance(config, AcceleratorConfig):
        raise ConfigError(f"config must be an AcceleratorConfig, got {type(config).__name__}")
    return _price(workload, config, architecture or default_architecture(workload.method))


def scale(
    network: SpikingNetwork | Graph | Workload,
    data: SimResult | Tensor | int | None = None,
    config: AcceleratorConfig | None = None,
    *,
    pes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64),
    cores: Sequence[int] | None = None,
    architecture: str | None = None,
) -> list[HardwareReport]:
    """Reports for every PE count (and core count) on otherwise the same budget.

    Args:
        network: as for :func:`run`.
        data: as for :func:`run`.
        config: the budget to vary.
        pes: PEs per core to try.
        cores: core counts to try (default: the config's only).
        architecture: as for :func:`run`.

    Returns:
        One report per ``(cores, pes)`` pair, cores outer.
    """
    workload = _workload(network, data)
    config = AcceleratorConfig() if config is None else config
    if not pes:
        raise ConfigError("scale needs at least one PE count")
    core_counts = tuple(cores) if cores is not None else (config.cores,)
    return [
        run(workload, None, replace(config, pes=p, cores=c), architecture=architecture)
        for c in core_counts
        for p in pes
    ]


def sweep(
    network: SpikingNetwork | Graph | Workload,
    data: SimResult | Tensor | int | None = None,
    config: AcceleratorConfig | None = None,
    *,
    axes: Mapping[str, Sequence[Any]],
    architecture: str | None = None,
) -> tuple[list[HardwareReport], list[tuple[AcceleratorConfig, str]]]:
    """Reports for every combination of values of some :class:`AcceleratorConfig` fields.

    ``sweep(net, result, axes={"pes": (4, 16), "weight_dataflow": ("streamed",
    "stationary")})`` prices the four configs that differ from ``config`` in those two
    fields, in the order of the product (the first axis outermost).

    Args:
        network: as for :func:`run`.
        data: as for :func:`run`.
        config: the budget the axes vary (default :class:`AcceleratorConfig()`).
        axes: field name to the values to try.
        architecture: as for :func:`run`.

    Returns:
        ``(reports, refused)``: a report per config the network fits and runs on, and for
        every other config the reason (the :class:`ConfigError` message: a memory too small,
        too few cores for a pipeline, an option the technology table cannot price).
    """
    workload = _workload(network, data)
    base = AcceleratorConfig() if config is None else config
    known = {f.name for f in fields(AcceleratorConfig)}
    unknown = sorted(set(axes) - known)
    if unknown:
        raise ConfigError(f"sweep axes {unknown} are not AcceleratorConfig fields: {sorted(known)}")
    empty = [name for name, values in axes.items() if not values]
    if empty:
        raise ConfigError(f"sweep axes {empty} have no values to try")
    reports: list[HardwareReport] = []
    refused: list[tuple[AcceleratorConfig, str]] = []
    names = list(axes)
    for values in itertools.product(*(axes[name] for name in names)):
        try:
            candidate = replace(base, **dict(zip(names, values, strict=True)))
            reports.append(run(workload, None, candidate, architecture=architecture))
        except ConfigError as exc:
            refused.append((base, f"{dict(zip(names, values, strict=True))}: {exc}"))
    return reports, refused


# Objectives of pareto_front: what each report costs, all to be minimised.
OBJECTIVES: dict[str, Callable[[HardwareReport], float]] = {
    "energy_j": lambda r: r.energy_j,
    "latency_s": lambda r: r.latency_s,
    "sram_kb": lambda r: r.config.sram_kb,
    "total_pes": lambda r: float(r.config.total_pes),
}


def pareto_front(
    reports: Sequence[HardwareReport], objectives: Sequence[str] = tuple(OBJECTIVES)
) -> list[HardwareReport]:
    """The reports no other report beats on every objective (all minimised).

    The default objectives are energy per inference, latency and an area proxy in two parts,
    on-chip SRAM and PE count: there is no cited area per PE to add them into one figure.
    A report is dominated when another is at most as costly on every objective and cheaper
    on one.

    Args:
        reports: e.g. the reports of :func:`sweep`, of any architectures.
        objectives: names in :data:`OBJECTIVES`.

    Returns:
        The non-dominated reports, in the order given.
    """
    bad = [name for name in objectives if name not in OBJECTIVES]
    if bad:
        raise ConfigError(f"unknown objectives {bad}; use some of {list(OBJECTIVES)}")
    costs = [tuple(OBJECTIVES[name](r) for name in objectives) for r in reports]

    def dominated(i: int) -> bool:
        return any(
            all(o <= c for o, c in zip(other, costs[i], strict=True)) and other != costs[i]
            for j, other in enumerate(costs)
            if j != i
        )

    return [r for i, r in enumerate(reports) if not dominated(i)]
