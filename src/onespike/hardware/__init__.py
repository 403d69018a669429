"""Hardware models: what one inference of a network costs on an accelerator.

Parametric cycle and energy models of four architectures on one silicon budget
(:class:`AcceleratorConfig`: PEs, cores, SRAM, clock, a cited :class:`TechnologyTable`),
fed by the same operation counts as :func:`onespike.count_ops`:

- ``"ttfs-accelerator"``: event-driven, one spike per neuron, in the spirit of YOSO
  (Srivatsa et al., arXiv 2006.09982);
- ``"rate-core"``: a time-stepped neuromorphic core (every step updates every neuron);
- ``"dense-ann"``: a dense MAC array for the ANN;
- ``"in-memory"``: binary-weight layers of a rate network on crossbars of binary cells (a
  column sum per evaluation, ADC included), the other layers on digital PEs, for the binary
  networks of Lu & Sengupta (doi 10.3389/fnins.2020.00535).

Dataflow options of the budget (weight-stationary PE buffers, events batched per time step,
codes only as wide as they need) are swept with :func:`sweep`; :func:`pareto_front` keeps the
configurations no other beats on energy, latency, SRAM and PEs.

::

    result = onespike.simulate(net, images)
    report = onespike.hardware.run(net, result, AcceleratorConfig(pes=16))
    ann = onespike.hardware.run(graph, len(images), architecture="dense-ann")
    report.energy_j, report.latency_s, report.average_power_w, report.edp_js

The equations are in :mod:`onespike.hardware.models`; the cited numbers in
:mod:`onespike.hardware.config` and :mod:`onespike.hardware.loihi`.
"""

from onespike.hardware.config import (
    ARCHITECTURES,
    HOROWITZ_45NM_TECH,
    JOUPPI_7NM_TECH,
    TECHNOLOGIES,
    XNOR_SRAM_COLUMN_PJ,
    XNOR_SRAM_ROWS,
    AcceleratorConfig,
    TechnologyTable,
)
from onespike.hardware.loihi import (
    QUARTZ_LOIHI_MNIST,
    QUARTZ_MNIST_EDP_UJS,
    LoihiEstimate,
    QuartzLoihiRun,
    loihi_estimate,
)
from onespike.hardware.models import (
    OBJECTIVES,
    default_architecture,
    pareto_front,
    run,
    scale,
    sweep,
)
from onespike.hardware.plot import plot_energy_breakdown
from onespike.hardware.report import COMPONENTS, HardwareReport, LayerCost
from onespike.hardware.workload import LayerLoad, Workload, profile

__all__ = [
    "ARCHITECTURES",
    "COMPONENTS",
    "HOROWITZ_45NM_TECH",
    "JOUPPI_7NM_TECH",
    "OBJECTIVES",
    "QUARTZ_LOIHI_MNIST",
    "QUARTZ_MNIST_EDP_UJS",
    "TECHNOLOGIES",
    "XNOR_SRAM_COLUMN_PJ",
    "XNOR_SRAM_ROWS",
    "AcceleratorConfig",
    "HardwareReport",
    "LayerCost",
    "LayerLoad",
    "LoihiEstimate",
    "QuartzLoihiRun",
    "TechnologyTable",
    "Workload",
    "default_architecture",
    "loihi_estimate",
    "pareto_front",
    "plot_energy_breakdown",
    "profile",
    "run",
    "scale",
    "sweep",
]
