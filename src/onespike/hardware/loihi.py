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
"Ultra-low-power Image Classification on Neuromorphic Hardware", arXiv 2309.16795) on the
MNIST ConvNet, as they appear in the authors' public code: the nxSDK energy probes
``probe_3`` .. ``probe_6`` (``t_max`` = 8, 16, 32, 64) of ``CNN/mnist-EDP-plot.ipynb`` in
github.com/biphasic/Quartz-on-Loihi, with the notebook's ``steps_per_sample``,
``first_output_spike`` and ``classif_error`` lists (the probe values last changed on
2021-05-19/20, commits 98204f4 and 93a8f11; later commits only relabel the plot). Times per
step are in microseconds and powers in milliwatts, as the notebook's own arithmetic reads
them. The paper's text and tables could not be read here; these are the numbers behind its
plots, not quotations of it.

``QUARTZ_MNIST_EDP_UJS`` holds the MNIST bars of ``evaluation/plotting/EDP.ipynb`` in
github.com/biphasic/Quartz. Its "rate code on Loihi" bar (4.38 uJ s, 0.79% error in the
notebook's scatter plot, labelled "Rate (Rueckauer et al., 2021)") is not a rate code Quartz
ran: it is the result of NxTF (Rueckauer et al., "NxTF: An API and Compiler for Deep Spiking
Neural Networks on Intel Loihi", arXiv 2101.04261), whose energy accounting (cores and x86
cores, over all time steps) the Quartz notebook's ``edp_bodo`` copies.
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
        first_output_step: step of the first output spike (the decision), averaged.
        time_per_step_us: measured wall time per time step (``timePerTimestep``).
        core_dynamic_mw: dynamic power of the neuromorphic cores.
        core_static_mw: static power of the neuromorphic cores.
        x86_dynamic_mw: dynamic power of the embedded x86 (Lakemont) cores.
        x86_static_mw: static power of the x86 cores.
        error_percent: MNIST test error.
    """

    t_max: int
    steps_per_sample: int
    first_output_step: int
    time_per_step_us: float
    core_dynamic_mw: float
    core_static_mw: float
    x86_dynamic_mw: float
    x86_static_mw: float
    error_percent: float

    @property
    def latency_s(self) -> float:
        """Time per step times steps per sample (the notebook's latency)."""
        return self.time_per_step_us * self.steps_per_sample * 1e-6

    @property
    def decision_s(self) -> float:
        """Time per step times the steps to the first output spike."""
        return self.time_per_step_us * self.first_output_step * 1e-6

    @property
    def dynamic_energy_j(self) -> float:
        """Core dynamic power over the steps up to the decision (``dynamic_energy_cores_
        decision``)."""
        return self.core_dynamic_mw * 1e-3 * self.decision_s

    @property
    def core_energy_j(self) -> float:
        """Core dynamic plus static power up to the decision (``total_energy_cores_
        decision``)."""
        return (self.core_dynamic_mw + self.core_static_mw) * 1e-3 * self.decision_s

    @property
    def system_energy_j(self) -> float:
        """Cores and x86 cores, dynamic and static, over every step of the sample
        (``total_energy``: the accounting of NxTF, Rueckauer et al. 2021, that the
        notebook's EDP plot uses)."""
        power_mw = (
            self.core_dynamic_mw + self.core_static_mw + self.x86_dynamic_mw + self.x86_static_mw
        )
        return power_mw * 1e-3 * self.latency_s

    @property
    def edp_js(self) -> float:
        """System energy times latency (the notebook's ``edp_bodo``, the one it plots)."""
        return self.system_energy_j * self.latency_s


# biphasic/Quartz-on-Loihi, CNN/mnist-EDP-plot.ipynb (probes last changed 2021-05-20):
# probe_3 .. probe_6 (timePerTimestep; power.core.dynamic, .static; power.lakemont.dynamic,
# .static), steps_per_sample [51, 91, 171, 331], first_output_spike [37, 65, 126, 247],
# classif_error [34.86, 0.77, 0.75, 0.74].
QUARTZ_LOIHI_MNIST: tuple[QuartzLoihiRun, ...] = (
    QuartzLoihiRun(
        8, 51, 37, 96.0412123605112, 6.894343652866383, 4.2201995806399175,
        22.930969357476556, 0.1136065699311255, 34.86,
    ),
    QuartzLoihiRun(
        16, 91, 65, 53.925088205570354, 9.2911773343235, 5.093776017934353,
        22.660455804331143, 0.13712299864908323, 0.77,
    ),
    QuartzLoihiRun(
        32, 171, 126, 28.809999362250384, 17.408785953116336, 4.402233107876229,
        22.108158161033515, 0.11850686060378737, 0.75,
    ),
    QuartzLoihiRun(
        64, 331, 247, 17.4405661815458, 24.13730858748026, 4.852638699458545,
        21.298599064405227, 0.1306316507611542, 0.74,
    ),
)  # fmt: skip

# biphasic/Quartz, evaluation/plotting/EDP.ipynb: MNIST energy-delay products (uJ s) of its
# bars. The rate-code bar is NxTF's Loihi result (Rueckauer et al., arXiv 2101.04261).
QUARTZ_MNIST_EDP_UJS: dict[str, float] = {
    "ANN on GPU (unbatched)": 222.0,
    "Rate code on Loihi (NxTF, Rueckauer et al. 2021)": 4.38,
    "Quartz on Loihi": 0.9,
}
