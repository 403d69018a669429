"""Rate-coded conversion with integrate-and-fire neurons (Lu & Sengupta, Front. Neurosci. 2020,
doi 10.3389/fnins.2020.00535), onespike's reading.

After :func:`onespike.normalize`, every population's activations lie in ``[0, 1]`` for the
calibration data (threshold balancing: Rueckauer et al. 2017, doi 10.3389/fnins.2017.00682).
An integrate-and-fire neuron with threshold ``theta`` driven by a current ``z`` per step fires
at the rate ``z / theta`` (clipped to one spike per step), so with ``theta = 1`` its rate
approximates its normalised ANN activation ``a = relu(sum_j w_j r_j + b)``.

**Threshold scaling** (the design-time latency optimisation). ``RateConfig.threshold_scale = s``
sets every hidden threshold to ``s`` and lets each of that neuron's spikes carry ``s`` to the
next layer (the outgoing projections are multiplied by ``s``), so the rate of a neuron is
``a / s``. The network still computes the ANN, each spike now resolves ``s`` instead of 1 of
the activation range, and activations above ``s`` are clipped (a neuron cannot fire more than
once per step). This is onespike's choice of how to scale: scaling only the thresholds would
amplify every layer by ``1 / s`` relative to its bias.

**Binary weights.** A hidden layer trained with binary weights (:mod:`onespike.binary`) has,
after BatchNorm folding and normalisation, weights ``+-m_c`` per output channel ``c``. With
``binary=True`` such a population stores synapses of exactly ``sign(w) = +-1``; its threshold
becomes ``s / m_c`` and its bias ``b / m_c``. Dividing a neuron's membrane equation by
``m_c > 0`` changes no spike, so the SNN is the same network with +-1 synapses. A population
qualifies when it has one projection whose chain holds exactly one Linear/Conv2d (and
otherwise only Flatten) with per-channel constant nonzero ``|w|``. The output population is
never rescaled (its membrane is the prediction).

The output population does not spike: it accumulates its input current, and the prediction is
the argmax of its membrane (see :mod:`onespike.simulate.rate`).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from onespike.convert.config import RateConfig
from onespike.errors import ConfigError
from onespike.graph import Conv2d, Flatten, Graph, Linear
from onespike.network import Population, SpikingNetwork, build_network, populations

__all__ = ["binary_populations", "convert_rate"]


def _channel_view(pop: Population, values: Tensor) -> Tensor:
    """Per-output-channel ``values`` shaped to broadcast over ``pop.shape``."""
    return values.view(-1, *([1] * (len(pop.shape) - 1)))


def _as_binary(pop: Population) -> Population | None:
    """``pop`` with +-1 synapses and the weight magnitude folded into threshold and bias."""
    if pop.is_output or len(pop.projections) != 1:
        return None
    proj = pop.projections[0]
    weighted = [op for op in proj.ops if isinstance(op, (Linear, Conv2d))]
    if len(weighted) != 1 or not all(isinstance(op, (Linear, Conv2d, Flatten)) for op in proj.ops):
        return None
    layer = weighted[0]
    magnitude = layer.weight.abs().flatten(1)
    per_channel = magnitude[:, 0]
    if not bool((per_channel > 0).all()) or not bool((magnitude == per_channel[:, None]).all()):
        return None
    scale = _channel_view(pop, per_channel.double() * proj.factor)
    signs = replace(layer, weight=torch.sign(layer.weight), bias=None)
    ops = tuple(signs if op is layer else op for op in proj.ops)
    bias = pop.bias / scale.to(pop.bias.dtype) if pop.bias is not None else None
    threshold = torch.as_tensor(pop.threshold, dtype=torch.float64, device=scale.device) / scale
    return replace(
        pop,
        projections=(replace(proj, ops=ops, factor=1.0),),
        bias=bias,
        threshold=threshold,
    )


def binary_populations(pops: list[Population]) -> list[str]:
    """Names of the populations whose synapses a binary conversion stores as +-1."""
    return [p.name for p in pops if p.kind == "neuron" and _as_binary(p) is not None]


def convert_rate(graph: Graph, config: RateConfig) -> SpikingNetwork:
    """Convert ``graph`` to a rate-coded integrate-and-fire network.

    Args:
        graph: extracted graph, normalised so activations fit ``[0, 1]``.
        config: the rate-coding options.

    Returns:
        The spiking network; simulate it with :func:`onespike.simulate`.

    Raises:
        ConfigError: ``binary=True`` but no hidden layer has binary weights.
    """
    scale = float(config.threshold_scale)
    carried: dict[str, float] = {}  # the value one spike of each population carries
    pops: list[Population] = []
    for pop in populations(graph):
        if pop.kind == "input":
            carried[pop.name] = 1.0
        elif pop.kind == "maxpool":
            carried[pop.name] = carried[pop.sources[0]]
        else:
            projections = tuple(
                replace(p, factor=p.factor * carried[p.source]) for p in pop.projections
            )
            pop = replace(pop, projections=projections, threshold=scale)
            carried[pop.name] = scale
        pops.append(pop)
    if config.binary:
        binary = {p.name: _as_binary(p) for p in pops}
        found = [p for p in binary.values() if p is not None]
        if not found:
            raise ConfigError(
                "RateConfig(binary=True) found no hidden layer with binary weights "
                "(sign(W) * alpha per output channel); train one with `onespike train --binary` "
                "or onespike.models.build_model(..., binary=True)"
            )
        pops = [binary[p.name] or p for p in pops]
    return build_network(pops, config, lambda source, target: 0)
