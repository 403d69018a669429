"""What one inference costs on an architecture: cycles, time, energy by component, power."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from onespike.hardware.config import AcceleratorConfig

__all__ = ["COMPONENTS", "HardwareReport", "LayerCost"]

# Dynamic-energy components, in the order plots and tables show them.
COMPONENTS: tuple[str, ...] = (
    "compute",
    "weight_reads",
    "state_reads_writes",
    "neuron_updates",
    "spike_routing",
    "crossbar",
)


@dataclass(frozen=True)
class LayerCost:
    """Cost of one population per inference (means over the samples).

    Attributes:
        name: population name.
        kind: ``"input"``, ``"neuron"`` or ``"maxpool"``.
        pes: PEs the layer runs on.
        cycles: clock cycles the layer takes.
        busy_pe_cycles: PE-cycles doing useful work (one per accumulate, MAC, comparison or
            neuron update).
        compute_pj: adds and multiplies of synaptic events, MACs and comparisons.
        weight_reads_pj: weight SRAM reads.
        state_reads_writes_pj: neuron-state (or ANN activation) SRAM reads and writes of
            synaptic events and MACs.
        neuron_updates_pj: neuron updates: their arithmetic and their state reads and writes.
        spike_routing_pj: writing and reading spike events in the event queue.
        crossbar_pj: column evaluations of the in-memory architecture's binary crossbars
            (bitcells and ADC).
    """

    name: str
    kind: str
    pes: int
    cycles: float
    busy_pe_cycles: float
    compute_pj: float = 0.0
    weight_reads_pj: float = 0.0
    state_reads_writes_pj: float = 0.0
    neuron_updates_pj: float = 0.0
    spike_routing_pj: float = 0.0
    crossbar_pj: float = 0.0

    @property
    def dynamic_pj(self) -> float:
        """Dynamic energy of the layer."""
        return sum(getattr(self, f"{c}_pj") for c in COMPONENTS)

    @property
    def utilisation(self) -> float:
        """Busy PE-cycles over available PE-cycles (0 when the layer takes no cycles)."""
        return self.busy_pe_cycles / (self.pes * self.cycles) if self.cycles else 0.0


@dataclass(frozen=True)
class HardwareReport:
    """Cost of one inference of a network on one architecture and silicon budget.

    Attributes:
        architecture: ``"ttfs-accelerator"``, ``"rate-core"``, ``"dense-ann"`` or
            ``"in-memory"``.
        method: the network's method (``"ttfs"``, ``"rate"``, ``"ann"``).
        config: the silicon budget.
        samples: inferences the counts were taken over.
        steps: mean time steps per inference of the network (0 for the ANN).
        layers: per population, in topological order.
        latency_cycles: cycles from input to output of one inference.
        interval_cycles: cycles between successive inferences in a stream (the latency,
            or less when layers are pipelined across cores).
    """

    architecture: str
    method: str
    config: AcceleratorConfig
    samples: int
    steps: float
    layers: tuple[LayerCost, ...]
    latency_cycles: float
    interval_cycles: float

    @property
    def latency_s(self) -> float:
        """Seconds from input to output."""
        return self.latency_cycles / self.config.clock_hz

    @property
    def interval_s(self) -> float:
        """Seconds between inferences in a stream."""
        return self.interval_cycles / self.config.clock_hz

    @property
    def throughput_per_s(self) -> float:
        """Inferences per second in a stream."""
        return 1.0 / self.interval_s if self.interval_cycles else float("inf")

    def component_pj(self, component: str) -> float:
        """Dynamic energy of one component (see :data:`COMPONENTS`) over all layers."""
        if component not in COMPONENTS:
            raise KeyError(f"unknown component {component!r}; use one of {COMPONENTS}")
        return sum(getattr(layer, f"{component}_pj") for layer in self.layers)

    @property
    def dynamic_pj(self) -> float:
        """Dynamic energy per inference."""
        return sum(layer.dynamic_pj for layer in self.layers)

    @property
    def static_pj(self) -> float:
        """Leakage energy per inference: leakage power times the interval between inferences
        (the latency itself unless layers are pipelined)."""
        return self.config.leakage_w * self.interval_s * 1e12

    @property
    def energy_pj(self) -> float:
        """Dynamic plus static energy per inference."""
        return self.dynamic_pj + self.static_pj

    @property
    def energy_j(self) -> float:
        return self.energy_pj * 1e-12

    @property
    def average_power_w(self) -> float:
        """Energy per inference over the interval between inferences."""
        return self.energy_j / self.interval_s if self.interval_cycles else 0.0

    @property
    def edp_js(self) -> float:
        """Energy-delay product: energy per inference times latency."""
        return self.energy_j * self.latency_s

    @property
    def utilisation(self) -> float:
        """Busy PE-cycles of all layers over all PEs times the interval."""
        available = self.config.total_pes * self.interval_cycles
        return sum(layer.busy_pe_cycles for layer in self.layers) / available if available else 0.0

    @property
    def bottleneck(self) -> str:
        """The layer that takes the most cycles."""
        return max(self.layers, key=lambda layer: layer.cycles).name

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for JSON (energies in joules and picojoules, times in seconds)."""
        config = asdict(self.config)
        config["tech"] = self.config.tech.name
        return {
            "architecture": self.architecture,
            "method": self.method,
            "samples": self.samples,
            "steps": self.steps,
            "pes": self.config.pes,
            "cores": self.config.cores,
            "tech": self.config.tech.name,
            "sram_kb": self.config.sram_kb,
            "total_pes": self.config.total_pes,
            "config": config,
            "latency_cycles": self.latency_cycles,
            "interval_cycles": self.interval_cycles,
            "latency_s": self.latency_s,
            "throughput_per_s": self.throughput_per_s,
            "energy_per_inference_j": self.energy_j,
            "dynamic_energy_j": self.dynamic_pj * 1e-12,
            "static_energy_j": self.static_pj * 1e-12,
            "energy_by_component_j": {c: self.component_pj(c) * 1e-12 for c in COMPONENTS},
            "average_power_w": self.average_power_w,
            "leakage_power_w": self.config.leakage_w,
            "edp_js": self.edp_js,
            "utilisation": self.utilisation,
            "bottleneck": self.bottleneck,
            "layers": [
                {
                    **asdict(layer),
                    "dynamic_pj": layer.dynamic_pj,
                    "utilisation": layer.utilisation,
                }
                for layer in self.layers
            ],
        }
