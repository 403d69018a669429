"""Single-spike hybrid input encoding (Datta, Kundu, Beerel, arXiv 2107.12374), onespike's reading.

Only the paper's abstract is public here; everything below that it does not state is onespike's
choice, and ``docs/hybrid.md`` lists each one with its reason.

**Time.** One inference runs ``T`` steps, ``t = 0 .. T-1``. Within a step the populations update
in topological order and a spike reaches the next layer in the same step (no synaptic delay),
so even ``T = 1`` carries the input through the whole network.

**Input** (the hybrid code). At ``t = 0`` the first layer receives the analog image ``x``: its
current is ``W x``, multiply-accumulates counted as such. From ``t = 1`` on the input is a
temporal code with ``L = T - 1`` levels: pixel ``x`` has the code ``k = floor(L x + 1/2)`` and
spikes once, at step ``T - k`` (``k = L`` at step 1, ``k = 1`` at step ``T - 1``); ``k = 0``
never spikes. Its spike adds ``w`` to each target's current at that step (an accumulate).

**Neurons.** Every neuron population, the output included, is single-spike integrate-and-fire
(:func:`onespike.neurons.single_spike_step`)::

    z_t = sum over projections of W s_t  +  b          (s_t: the source's spikes at t, 0/1)
    v_t = leak * v_(t-1) + z_t                          (v_(-1) = 0)
    s_t = [v_t >= theta] and the neuron has not fired before t

The bias ``b`` is a constant current, added at every step. There is no reset: a neuron that has
fired is silent for the rest of the inference. Max pooling is "first spike wins": a pooling
window fires once, at the first step a neuron in it fires.

**Readout.** The output population's membrane after the last step, ``v_(T-1)``, is the
prediction's score (``readout="membrane"``); with ``readout="first_spike"`` the class is the
earliest output spike, ties and silent samples decided by that membrane.

**Conversion** gives the starting point for STDB fine-tuning (:mod:`onespike.stdb`): the
weights and biases of the normalised graph (:func:`onespike.normalize`: activations of every
population lie in ``[0, 1]`` on the calibration data) and one threshold per population,
``theta = threshold_scale`` in those units, stored in :attr:`Population.threshold`.
"""

from __future__ import annotations

from dataclasses import replace

from onespike.convert.config import HybridConfig
from onespike.graph import Graph
from onespike.network import SpikingNetwork, build_network, populations

__all__ = ["convert_hybrid"]


def convert_hybrid(graph: Graph, config: HybridConfig) -> SpikingNetwork:
    """Convert ``graph`` to a single-spike hybrid-input network.

    Args:
        graph: extracted graph, normalised so activations fit ``[0, 1]``.
        config: the hybrid-code options.

    Returns:
        The spiking network; simulate it with :func:`onespike.simulate`, fine-tune it with
        :func:`onespike.finetune_stdb`.
    """
    threshold = float(config.threshold_scale)
    pops = [
        replace(pop, threshold=threshold) if pop.kind == "neuron" else pop
        for pop in populations(graph)
    ]
    return build_network(pops, config, lambda source, target: 0)
