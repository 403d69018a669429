"""A Loihi-style energy estimate from published per-operation energies, and Quartz's Loihi data.

Davies et al., "Loihi: A Neuromorphic Manycore Processor with On-Chip Learning", IEEE Micro
38(1), 2018, doi 10.1109/MM.2018.112130359, Table 2 ("pre-silicon SDF and SPICE simulations,
consistent with early post-silicon characterization", at 0.75 V), gives:

- energy per synaptic spike operation (min): 23.6 pJ (time, max: 3.5 ns);
- energy per neuron update, active / inactive: 81 pJ / 52 pJ (time 8.4 / 5.3 ns);
- within-tile spike energy: 1.7 pJ; energy per tile hop: 3.0 pJ (east-west) / 4.0 pJ
  (north-south);
- energy per synaptic update (pairwise STDP, learning only): 120 pJ, not used here. (1.7 pJ is
  the within-tile *spike* energy, not a synaptic-update energy.)

These were read from a public transcription that quotes Table 2 verbatim; the paper itself
was not available here. :func:`loihi_estimate` prices a :class:`~onespike.hardware.Workload`
with them the way Loihi runs a network: time-stepped, every compartment updated at every step
(active while the method's own count says its state changes, inactive otherwise), every
synaptic event one synaptic operation, every spike delivered within its tile. Tile hops
depend on the placement of layers on cores and are left out, so the estimate is a lower
bound on dynamic energy; Loihi's static power and its management cores are not in it.

``QUARTZ_LOIHI_MNIST`` holds the Loihi measurements of Quartz (Lenz, Orchard, Sheik,
arXiv 2309.16795) on the MNIST ConvNet, as they appear in the authors' public code: the
nxSDK energy probes in ``CNN/mnist-EDP-plot.ipynb`` of github.com/biphasic/Quartz-on-Loihi
(``timePerTimestep`` in microseconds, core powers in milliwatts, as that notebook's own
arithmetic reads them) and the EDP bars of ``evaluation/plotting/EDP.ipynb`` of
github.com/biphasic/Quartz. The paper's own text and tables could not be read here; these are
the numbers behind its plots, not quotations of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from onespike.errors import ConfigError
from onespike.hardware.workload import Workload

__all__ = [
    "LOIHI_NEURON_ACTIVE_PJ",
    "LOIHI_NEURON_INACTIVE_PJ",
    "LOIHI_SPIKE_WITHIN_TILE_PJ",
    "LOIHI_SYNOP_PJ",
    "LOIHI_TILE_HOP_PJ",
    "QUARTZ_LOIHI_MNIST",
    "QUARTZ_MNIST_EDP_UJS",
    "LoihiEstimate",
    "QuartzLoihiRun",
    "loihi_estimate",
]

# Davies et al., IEEE Micro 2018, Table 2 (0.75 V).
LOIHI_SYNOP_PJ = 23.6
LOIHI_NEURON_ACTIVE_PJ = 81.0
LOIHI_NEURON_INACTIVE_PJ = 52.0
LOIHI_SPIKE_WITHIN_TILE_PJ = 1.7
LOIHI_TILE_HOP_PJ = (3.0, 4.0)


@dataclass(frozen=True)
class LoihiEstimate:
    """Dynamic energy of one inference on Loihi from Davies et al.'s per-operation energies.

    Attributes:
        synaptic_ops: synaptic operations per inference (synaptic events and MACs).
        active_updates: neuron updates while the neuron's state changes.
        inactive_updates: the other compartment updates of the time-stepped chip.
        spikes: spikes delivered per inference.
        steps: time steps per inference.
    """

    synaptic_ops: float
    active_updates: float
    inactive_updates: float
    spikes: float
    steps: float

    @property
    def synaptic_pj(self) -> float:
        return self.synaptic_ops * LOIHI_SYNOP_PJ

    @property
    def neuron_pj(self) -> float:
        return (
            self.active_updates * LOIHI_NEURON_ACTIVE_PJ
            + self.inactive_updates * LOIHI_NEURON_INACTIVE_PJ
        )

    @property
    def spike_pj(self) -> float:
        return self.spikes * LOIHI_SPIKE_WITHIN_TILE_PJ

    @property
    def dynamic_pj(self) -> float:
        """Synaptic, neuron and within-tile spike energy per inference."""
        return self.synaptic_pj + self.neuron_pj + self.spike_pj


def loihi_estimate(workload: Workload) -> LoihiEstimate:
    """Price a spiking workload with Loihi's published per-operation energies.

    Args:
        workload: from :func:`onespike.hardware.profile` of a spiking network.

    Returns:
        Per-inference counts and energies (a lower bound: no tile hops, no static power).
    """
    if workload.method == "ann":
        raise ConfigError("loihi_estimate prices spiking networks; got an ANN workload")
    ops, samples = workload.ops, workload.samples
    compartments = workload.neurons * workload.total_steps
    active = min(ops.total("neuron_updates"), compartments)
    spikes = sum(
        o.spikes for o, load in zip(ops.layers, workload.layers, strict=True) if load.routed
    )
    return LoihiEstimate(
        synaptic_ops=(ops.total("synaptic_events") + ops.total("macs")) / samples,
        active_updates=active / samples,
        inactive_updates=(compartments - active) / samples,
        spikes=spikes / samples,
        steps=workload.steps_per_inference,
    )


@dataclass(frozen=True)
class QuartzLoihiRun:
    """One Loihi measurement of Quartz on MNIST (authors' public notebook, see module doc).

    Attributes:
        t_max: Quartz's time resolution (steps per value window).
        steps_per_sample: time steps one sample was run for.
        first_output_step: step of the first output spike (the decision).
        time_per_step_us: measured wall time per time step.
        core_dynamic_mw: dynamic power of the neuromorphic cores.
        core_static_mw: static power of the neuromorphic cores.
        error_percent: MNIST test error.
    """

    t_max: int
    steps_per_sample: int
    first_output_step: int
    time_per_step_us: float
    core_dynamic_mw: float
    core_static_mw: float
    error_percent: float

    @property
    def latency_s(self) -> float:
        """Time per step times steps per sample (the notebook's latency)."""
        return self.time_per_step_us * self.steps_per_sample * 1e-6

    @property
    def dynamic_energy_j(self) -> float:
        """Core dynamic power over the steps up to the decision (the notebook's formula)."""
        return self.time_per_step_us * 1e-6 * self.core_dynamic_mw * 1e-3 * self.first_output_step

    @property
    def total_energy_j(self) -> float:
        """Core dynamic plus static power over the steps up to the decision."""
        power_w = (self.core_dynamic_mw + self.core_static_mw) * 1e-3
        return self.time_per_step_us * 1e-6 * power_w * self.first_output_step

    @property
    def edp_js(self) -> float:
        """Total energy times latency, as the notebook computes its EDP."""
        return self.total_energy_j * self.latency_s


# biphasic/Quartz-on-Loihi, CNN/mnist-EDP-plot.ipynb: probes 3-6 (the ones the notebook plots),
# steps_per_sample, first_output_spike and classif_error as listed there.
QUARTZ_LOIHI_MNIST: tuple[QuartzLoihiRun, ...] = (
    QuartzLoihiRun(8, 50, 38, 120.23220652079236, 6.3148084466367225, 8.01443096373756, 38.79),
    QuartzLoihiRun(16, 90, 67, 70.23910319961186, 8.381188354488149, 8.712786553627767, 0.9),
    QuartzLoihiRun(32, 170, 129, 40.75025925550233, 11.528620719196972, 8.482912519716095, 0.81),
    QuartzLoihiRun(64, 330, 253, 24.664729801336872, 16.991139894095024, 9.091237707018916, 0.79),
)

# biphasic/Quartz, evaluation/plotting/EDP.ipynb: MNIST energy-delay products (uJ s) of the bars
# "ANN on GPU (unbatched)", "Rate code on Loihi" and "Quartz on Loihi".
QUARTZ_MNIST_EDP_UJS: dict[str, float] = {
    "ANN on GPU (unbatched)": 222.0,
    "Rate code on Loihi": 4.38,
    "Quartz on Loihi": 0.9,
}
