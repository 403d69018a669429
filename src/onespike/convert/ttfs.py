"""Exact TTFS conversion (Quartz: Lenz, Orchard, Sheik, arXiv 2309.16795), onespike's timing.

Let ``L = T - 1``. A value ``x`` in ``[0, 1]`` is carried by one spike and the integer code
``k = floor(L x + 1/2)``. Every population has a readout time ``r = L * depth`` and an output
window ``[r, r + L]``; a neuron with code ``k`` fires at ``r + L - k`` (the input population
has depth 0, so pixel ``x`` fires at ``L - k``). A neuron population of depth ``d`` receives its
inputs in ``[r - L, r]``: a projection from a population of depth ``d'`` carries a synaptic
delay of ``L (d - 1 - d')`` steps, zero between consecutive layers and a multiple of ``L`` on
residual (skip) connections.

With the neuron of :mod:`onespike.neurons`, an input spike of code ``k_j`` and weight ``w_j``
contributes ``w_j k_j`` to the membrane at the readout time, and the bias arrives as one event of
weight ``b`` at ``r - L``, contributing ``b L``. So ``v(r) = V = sum_j w_j k_j + L b``. The counter
synapse then sets the current to 1, the membrane rises by 1 per step, and the neuron fires at
the first ``m >= 0`` with ``V + m >= L - 1/2``, i.e. with code::

    k = clamp(floor(V + 1/2), 0, L)                 (round half up, clipped)

The rectifier event at ``r + L`` makes every silent neuron fire (code 0): that is the ReLU.
Max pooling is "first spike wins": ``k = max`` over the window, with no delay. Average pooling,
flattening and residual additions are linear and live inside projections.

The network therefore computes exactly the quantised ANN
``x_out = clamp(floor(L a + 1/2), 0, L) / L`` with ``a`` the normalised pre-activation computed
from quantised inputs. The output population follows the same rule; the class is the earliest
output spike, ties broken by the larger membrane at the spike step (equivalently the larger
``V``: the finer, sub-step spike time), then by the lower index.
"""

from __future__ import annotations

from torch import Tensor

from onespike.convert.config import TTFSConfig
from onespike.graph import Graph
from onespike.network import (
    Population,
    SpikingNetwork,
    build_network,
    forward_populations,
    populations,
)

__all__ = ["convert_ttfs", "quantized_codes", "readout_time", "ttfs_steps"]


def quantized_codes(
    pops: list[Population] | tuple[Population, ...], input_codes: Tensor, levels: int
) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
    """The quantised ANN that a TTFS network computes, on integer codes.

    Every neuron population maps ``V = sum_j w_j k_j + L b`` to
    ``clamp(floor(V + 1/2), 0, L)``; max pooling takes the largest code. Decoded values
    are ``k * scale / L``.

    Args:
        pops: populations of the (normalised) network.
        input_codes: integer codes of the input, ``floor(L x + 1/2)``.
        levels: ``L = T - 1``.

    Returns:
        ``(codes, potential, clipped)``: per population its codes; the output population's
        membrane potential at its readout time ``V`` (before rounding and clipping); per
        neuron population the number of values above the code range (0-d tensors).
    """
    clipped: dict[str, Tensor] = {}
    output: list[Tensor] = []

    def fire(pop: Population, potential: Tensor) -> Tensor:
        if pop.is_output:
            output.append(potential)
            raw = potential + 0.5
        else:
            raw = potential.add_(0.5)  # the potential of a hidden population is not kept
        raw.floor_()
        clipped[pop.name] = (raw > levels).sum()
        return raw.clamp_(0, levels)

    codes = forward_populations(list(pops), input_codes, activation=fire, bias_scale=levels)
    return codes, output[0], clipped


def readout_time(pop: Population, config: TTFSConfig) -> int:
    """The step at which ``pop``'s output window opens (``L * depth``)."""
    return config.levels * pop.depth


def ttfs_steps(net: SpikingNetwork) -> int:
    """Time steps one inference takes: from the first input spike to the output window's end."""
    config = net.config
    assert isinstance(config, TTFSConfig)
    return config.levels * (net.depth + 1) + 1


def convert_ttfs(graph: Graph, config: TTFSConfig) -> SpikingNetwork:
    """Convert ``graph`` to an exact TTFS network.

    Args:
        graph: extracted graph, normalised so activations fit ``[0, 1]``.
        config: the TTFS options.

    Returns:
        The spiking network; simulate it with :func:`onespike.simulate`.
    """
    levels = config.levels

    def delay(source: Population, target: Population) -> int:
        return levels * (target.depth - 1 - source.depth)

    return build_network(populations(graph), config, delay)
