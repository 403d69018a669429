"""Hybrid single-spike simulators: the stepped reference and the layer-major fast path.

The dynamics are stated once in :mod:`onespike.convert.hybrid`. Both simulators call
:func:`onespike.neurons.single_spike_step` and :func:`onespike.neurons.fire_once`; they differ
only in the order of the loops:

- ``stepped`` (the reference) is time-major: for each step, every population in topological
  order, each projection applied to that step's spikes of its source. Every spike is counted
  as it happens, so "at most one spike per neuron" is observed, not assumed.
- ``closed_form`` is layer-major: for each population, the currents of all ``T`` steps come
  from one call of each projection on the source's whole spike train (time folded into the
  batch), then the step function runs over the ``T`` currents. Nothing in a population's input
  depends on its own spikes, so the order changes no value; the tests hold the two to identical
  spike times, membranes and predictions. The same layer-major pass, with a surrogate gradient
  in the crossing function, is the forward pass of STDB fine-tuning (:mod:`onespike.stdb`).

Spike times are step indices ``0 .. T-1``; ``inf`` means never fired. The input population's
times are those of the temporal code (its analog step 0 is not a spike).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from onespike.convert.config import HybridConfig
from onespike.graph import max_pool
from onespike.network import Population, SpikingNetwork, pre_activation
from onespike.neurons import (
    SingleSpikeParams,
    fire_once,
    single_spike_initial_state,
    single_spike_step,
)
from onespike.simulate._input import check_unit_input
from onespike.simulate.result import SimResult

__all__ = [
    "LayerRun",
    "encode_input",
    "input_values",
    "predict",
    "run_layers",
    "simulate_closed_form",
    "simulate_stepped",
]

Crossing = Callable[[Tensor, "float | Tensor"], Tensor]


def _config(net: SpikingNetwork) -> HybridConfig:
    assert isinstance(net.config, HybridConfig)
    return net.config


def encode_input(x: Tensor, config: HybridConfig) -> tuple[Tensor, Tensor, int]:
    """Check the input and compute its temporal code.

    Args:
        x: input batch.
        config: the hybrid options.

    Returns:
        ``(x, times, clipped)``: the analog input (clipped to ``[0, 1]`` with
        ``input_range="clip"``), the step of each pixel's spike (``inf``: no spike), and how
        many values were clipped.

    Raises:
        CodeRangeError: a value is NaN/infinite, or outside ``[0, 1]`` with
            ``input_range="error"``.
    """
    x, clipped = check_unit_input(
        x,
        config.input_range,
        reason="the hybrid code's temporal part represents [0, 1]",
        fix="Scale the input to [0, 1] (fold any normalisation into the model) or pass "
        "HybridConfig(input_range='clip').",
    )
    levels = config.steps - 1
    if config.input_code == "none" or levels == 0:
        return x, torch.full_like(x, math.inf), clipped
    codes = torch.floor(x * levels + 0.5)
    times = torch.where(codes > 0, config.steps - codes, torch.full_like(x, math.inf))
    return x, times, clipped


def input_values(x: Tensor, times: Tensor, t: int) -> Tensor:
    """The input population's value at step ``t``: the analog image at 0, spikes after."""
    return x if t == 0 else (times == t).to(x.dtype)


def predict(times: Tensor, membrane: Tensor, readout: str) -> Tensor:
    """The predicted class from the output spike times and membrane.

    Args:
        times: ``(B, *out_shape)`` output spike times so far (``inf``: not fired).
        membrane: ``(B, *out_shape)`` output membrane.
        readout: ``"membrane"`` or ``"first_spike"``.

    Returns:
        ``(B,)`` class indices; ``argmax`` ties go to the lower index.
    """
    score = membrane.flatten(1)
    by_membrane = score.argmax(dim=1)
    if readout == "membrane":
        return by_membrane
    flat = times.flatten(1)
    first = flat.min(dim=1, keepdim=True).values
    earliest = flat == first
    by_spike = torch.where(earliest, score, torch.full_like(score, -math.inf)).argmax(dim=1)
    return torch.where(torch.isfinite(first.squeeze(1)), by_spike, by_membrane)


def _threshold(pop: Population, dtype: torch.dtype) -> float | Tensor:
    threshold = pop.threshold
    return threshold.to(dtype) if isinstance(threshold, Tensor) else threshold


def _first_times(train: Tensor) -> Tensor:
    """Spike step of each neuron from its 0/1 train ``(T, B, ...)`` (at most one spike)."""
    steps = torch.arange(train.shape[0], dtype=train.dtype).view(-1, *([1] * (train.ndim - 1)))
    fired = train.sum(dim=0) > 0
    return torch.where(fired, (train * steps).sum(dim=0), torch.full_like(train[0], math.inf))


class LayerRun(NamedTuple):
    """What the layer-major pass computed.

    Attributes:
        times: per population, first-spike steps ``(B, *shape)`` (empty unless requested).
        output_spikes: ``(T, B, *out_shape)`` 0/1 spikes of the output population.
        membrane: ``(T, B, *out_shape)`` output membrane after every step.
    """

    times: dict[str, Tensor]
    output_spikes: Tensor
    membrane: Tensor


def run_layers(
    pops: Sequence[Population],
    x: Tensor,
    input_times: Tensor,
    config: HybridConfig,
    *,
    crossing: Crossing | None = None,
    record_times: bool = True,
) -> LayerRun:
    """Run every population over all ``T`` steps, one population at a time.

    Args:
        pops: the network's populations in topological order (the first is the input).
        x: analog input (already checked, see :func:`encode_input`).
        input_times: the temporal code's spike steps.
        config: the hybrid options.
        crossing: the threshold-crossing function passed to the step function (``None``: the
            plain comparison; STDB passes one with a surrogate gradient).
        record_times: also return every population's spike times.

    Returns:
        Spike times, output spikes and output membrane trajectory.
    """
    steps = config.steps
    batch = x.shape[0]
    dtype = x.dtype
    later = [input_values(x, input_times, t) for t in range(1, steps)]
    trains: dict[str, Tensor] = {pops[0].name: torch.stack([x, *later])}
    readers = {pop.name: 0 for pop in pops}
    for pop in pops[1:]:
        for source in pop.sources:
            readers[source] += 1
    times: dict[str, Tensor] = {}
    if record_times:
        times[pops[0].name] = input_times
    membranes: list[Tensor] = []
    output: Tensor | None = None
    for pop in pops[1:]:
        spikes: list[Tensor] = []
        if pop.kind == "maxpool":
            assert pop.pool is not None
            pooled = trains[pop.sources[0]].flatten(0, 1)
            candidates = max_pool(pop.pool, pooled).unflatten(0, (steps, batch))
            fired = torch.zeros_like(candidates[0])
            for t in range(steps):
                s, fired = fire_once(candidates[t], fired)
                spikes.append(s)
        else:
            flat = {source: trains[source].flatten(0, 1) for source in pop.sources}
            z = pre_activation(pop, flat).unflatten(0, (steps, batch))
            params = SingleSpikeParams(_threshold(pop, dtype), float(config.leak), crossing)
            state = single_spike_initial_state((batch, *pop.shape), dtype)
            for t in range(steps):
                s, state = single_spike_step(z[t], state, params)
                spikes.append(s)
                if pop.is_output:
                    membranes.append(state.v)
        train = torch.stack(spikes)
        trains[pop.name] = train
        if record_times:
            times[pop.name] = _first_times(train.detach())
        if pop.is_output:
            output = train
        for source in pop.sources:  # free what no later population reads
            readers[source] -= 1
            if readers[source] == 0:
                del trains[source]
    assert output is not None
    return LayerRun(times, output, torch.stack(membranes))


def _result(
    method: str,
    net: SpikingNetwork,
    config: HybridConfig,
    times: dict[str, Tensor],
    membrane: Tensor,
    clipped: int,
    spike_counts: dict[str, Tensor] | None = None,
) -> SimResult:
    out = net.output
    out_times = times[out.name]
    step_predictions = torch.stack(
        [
            predict(
                torch.where(out_times <= t, out_times, torch.full_like(out_times, math.inf)),
                membrane[t],
                config.readout,
            )
            for t in range(config.steps)
        ]
    )
    return SimResult(
        method=method,
        spike_times=times,
        predictions=step_predictions[-1],
        outputs=membrane[-1] * out.scale,
        steps=config.steps,
        clipped={net.input.name: clipped},
        spike_counts=spike_counts or {},
        step_predictions=step_predictions,
    )


def simulate_closed_form(net: SpikingNetwork, x: Tensor) -> SimResult:
    """Simulate layer by layer, each projection applied once to a whole spike train.

    Args:
        net: a hybrid network.
        x: input batch in ``[0, 1]``, ``(B, *net.input_shape)``.

    Returns:
        The simulation result (spike times, output membrane, predictions after every step).
    """
    config = _config(net)
    with torch.no_grad():
        x, input_times, clipped = encode_input(x, config)
        run = run_layers(net.populations, x, input_times, config)
    return _result("closed_form", net, config, run.times, run.membrane, clipped)


def simulate_stepped(net: SpikingNetwork, x: Tensor) -> SimResult:
    """Run the neuron dynamics one time step at a time (the reference).

    Args:
        net: a hybrid network.
        x: input batch in ``[0, 1]``, ``(B, *net.input_shape)``.

    Returns:
        The simulation result, with every population's spike counts as they happened.
    """
    config = _config(net)
    batch = x.shape[0]
    dtype = x.dtype
    inp, out = net.input, net.output
    with torch.no_grad():
        x, input_times, clipped = encode_input(x, config)
        times = {inp.name: input_times}
        counts = {inp.name: torch.zeros(x.shape, dtype=torch.int32)}
        states = {}
        params = {}
        fired = {}
        for pop in net.populations[1:]:
            shape = (batch, *pop.shape)
            times[pop.name] = torch.full(shape, math.inf, dtype=dtype)
            counts[pop.name] = torch.zeros(shape, dtype=torch.int32)
            if pop.kind == "maxpool":
                fired[pop.name] = torch.zeros(shape, dtype=dtype)
            else:
                states[pop.name] = single_spike_initial_state(shape, dtype)
                params[pop.name] = SingleSpikeParams(_threshold(pop, dtype), float(config.leak))
        membranes: list[Tensor] = []
        for t in range(config.steps):
            values = {inp.name: input_values(x, input_times, t)}
            if t > 0:
                counts[inp.name] += values[inp.name].to(torch.int32)
            for pop in net.populations[1:]:
                if pop.kind == "maxpool":
                    assert pop.pool is not None
                    candidates = max_pool(pop.pool, values[pop.sources[0]])
                    spikes, fired[pop.name] = fire_once(candidates, fired[pop.name])
                else:
                    spikes, states[pop.name] = single_spike_step(
                        pre_activation(pop, values), states[pop.name], params[pop.name]
                    )
                values[pop.name] = spikes
                happened = spikes > 0
                times[pop.name][happened] = float(t)
                counts[pop.name] += happened.to(torch.int32)
            membranes.append(states[out.name].v)
    return _result("stepped", net, config, times, torch.stack(membranes), clipped, counts)
