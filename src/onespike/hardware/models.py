"""Cycle and energy models of three architectures on one silicon budget.

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from torch import Tensor

from onespike.errors import ConfigError
from onespike.graph import Graph
from onespike.hardware.config import ARCHITECTURES, AcceleratorConfig
from onespike.hardware.report import HardwareReport, LayerCost
from onespike.hardware.workload import LayerLoad, Workload, profile
from onespike.metrics import LayerOps
from onespike.network import SpikingNetwork
from onespike.simulate.result import SimResult

__all__ = ["default_architecture", "run", "scale"]


@dataclass(frozen=True)
class _Unit:
    """Unit energies (pJ) derived from a config."""

    add: float
    mul: float
    weight: float
    state: float
    flag: float
    activation: float
    route: float

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
        )


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


def _analog_layer(ops: LayerOps, unit: _Unit, samples: int, pes: int) -> tuple[int, float, float]:
    """Cycles, compute and state energy per inference of an analog (MAC) input layer."""
    cycles = _dense_cycles(ops.macs, samples, ops.neurons, pes)
    if not cycles:
        return 0, 0.0, 0.0
    compute = ops.macs * (unit.mul + unit.add) / samples
    state = cycles * unit.activation + ops.neurons * unit.state
    return cycles, compute, state


def _ttfs_layer(
    ops: LayerOps, load: LayerLoad, wl: Workload, config: AcceleratorConfig, pes: int
) -> LayerCost:
    unit, samples = _Unit.of(config), wl.samples
    if ops.kind == "input":
        return _input_cost(ops, load, unit, samples, pes)
    if ops.kind == "maxpool":
        return _spiking_maxpool(ops, load, unit, samples, pes)
    mac_cycles, mac_compute, mac_state = _analog_layer(ops, unit, samples, pes)
    events = ops.synops + ops.bias_events
    cycles = (
        _synaptic_cycles(load, pes) / samples
        + _ceil_mean(ops.bias_events, samples, pes)
        + _ceil_mean(ops.counter_events, samples, pes)
        + mac_cycles
        + load.window_steps * config.step_cycles
    )
    return LayerCost(
        ops.name,
        ops.kind,
        pes,
        cycles=cycles,
        busy_pe_cycles=(events + ops.counter_events + ops.macs) / samples,
        compute_pj=(events + ops.rectifier_events) * unit.add / samples + mac_compute,
        weight_reads_pj=(events + ops.macs) * unit.weight / samples,
        state_reads_writes_pj=events * 2 * unit.state / samples + mac_state,
        neuron_updates_pj=ops.counter_events * (2 * unit.add + 2 * unit.state) / samples,
        spike_routing_pj=_routing(ops, load, unit, samples),
    )


def _rate_layer(
    ops: LayerOps, load: LayerLoad, wl: Workload, config: AcceleratorConfig, pes: int
) -> LayerCost:
    unit, samples = _Unit.of(config), wl.samples
    if ops.kind == "input":
        return _input_cost(ops, load, unit, samples, pes)
    if ops.kind == "maxpool":
        return _spiking_maxpool(ops, load, unit, samples, pes)
    mac_cycles, mac_compute, mac_state = _analog_layer(ops, unit, samples, pes)
    events = ops.synaptic_events
    other = events - ops.synops
    updates = ops.neurons * wl.total_steps
    cycles = (
        _synaptic_cycles(load, pes) / samples
        + _ceil_mean(other, samples, pes)
        + wl.total_steps * -(-ops.neurons // pes) / samples
        + mac_cycles
        + wl.steps_per_inference * config.step_cycles
    )
    return LayerCost(
        ops.name,
        ops.kind,
        pes,
        cycles=cycles,
        busy_pe_cycles=(events + ops.macs + updates) / samples,
        compute_pj=events * unit.add / samples + mac_compute,
        weight_reads_pj=(events + ops.macs) * unit.weight / samples,
        state_reads_writes_pj=events * 2 * unit.state / samples + mac_state,
        neuron_updates_pj=updates * (2 * unit.add + 2 * unit.state) / samples,
        spike_routing_pj=_routing(ops, load, unit, samples),
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
    mac_cycles = _dense_cycles(ops.macs, samples, n, pes)
    return LayerCost(
        ops.name,
        ops.kind,
        pes,
        cycles=float(mac_cycles + -(-n // pes)),
        busy_pe_cycles=(ops.macs + ops.neuron_updates) / samples,
        compute_pj=(ops.macs * (unit.mul + unit.add) + ops.bias_events * unit.add) / samples,
        weight_reads_pj=ops.macs * unit.weight / samples,
        state_reads_writes_pj=mac_cycles * unit.activation,
        neuron_updates_pj=ops.neuron_updates * (unit.add + unit.activation) / samples,
    )


_LayerModel = Callable[[LayerOps, LayerLoad, Workload, AcceleratorConfig, int], LayerCost]
_MODELS: dict[str, _LayerModel] = {
    "ttfs-accelerator": _ttfs_layer,
    "rate-core": _rate_layer,
    "dense-ann": _dense_layer,
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
