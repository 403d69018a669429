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
  Inference runs it over chunks of samples (:func:`chunk_size`), so that the ``T``-fold
  trains stay near the CPU caches, and overwrites each layer's fresh currents with its
  membrane instead of copying them.

Spike times are step indices ``0 .. T-1``; ``inf`` means never fired. The input population's
times are those of the temporal code (its analog step 0 is not a spike).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

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
    "bias_scale",
    "chunk_size",
    "encode_input",
    "fire_train",
    "first_only",
    "input_train",
    "input_values",
    "membrane",
    "not_fired_before",
    "predict",
    "run_layers",
    "simulate_closed_form",
    "simulate_stepped",
    "step_currents",
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


def input_values(x: Tensor, times: Tensor, t: int, config: HybridConfig) -> Tensor:
    """The input population's value at step ``t``: the analog part at 0, spikes after.

    With ``input_code="split"`` a spike at step ``t`` carries its level ``(T - t) / (T - 1)``
    and the analog step the rest of the pixel, ``x - k / (T - 1)``; otherwise the analog step
    carries ``x`` and a spike 1.
    """
    levels = config.steps - 1
    split = config.input_code == "split" and levels > 0
    if t == 0:
        if not split:
            return x
        codes = torch.where(torch.isfinite(times), config.steps - times, torch.zeros_like(x))
        return x - codes / levels
    spikes = (times == t).to(x.dtype)
    return spikes * ((config.steps - t) / levels) if split else spikes


def input_train(x: Tensor, times: Tensor, config: HybridConfig) -> Tensor:
    """The input population's values at every step, ``(T, B, ...)``."""
    return torch.stack([input_values(x, times, t, config) for t in range(config.steps)])


def bias_scale(config: HybridConfig, t: int) -> float:
    """The multiple of the bias ``b`` that enters the membrane at step ``t``."""
    if config.bias == "spread":
        return 1.0 / config.steps
    if config.bias == "first_step":
        return 1.0 if t == 0 else 0.0
    return 1.0


def step_currents(pop: Population, inputs: dict[str, Tensor], config: HybridConfig) -> Tensor:
    """The currents of all ``T`` steps, ``(T, B, ...)``, from the sources' ``(T, B, ...)``."""
    steps, batch = config.steps, next(iter(inputs.values())).shape[1]
    flat = {name: train.flatten(0, 1) for name, train in inputs.items()}
    if pop.bias is None or config.bias != "first_step":
        scale = 1.0 if pop.bias is None else bias_scale(config, 0)
        return pre_activation(pop, flat, bias_scale=scale).unflatten(0, (steps, batch))
    z = pre_activation(replace(pop, bias=None), flat).unflatten(0, (steps, batch))
    first = z[0] + pop.bias.to(device=z.device, dtype=z.dtype)
    return torch.cat([first.unsqueeze(0), z[1:]]) if steps > 1 else first.unsqueeze(0)


def _recur_(v: Tensor, factor: float, plain: bool) -> Tensor:
    """``v_t <- factor v_(t-1) + v_t`` over dimension 0, in place (``plain``: factor 1, no
    multiply); the currents become the membrane."""
    for t in range(1, v.shape[0]):
        v[t].add_(v[t - 1] if plain else v[t - 1] * factor)
    return v


class _Membrane(torch.autograd.Function):
    """``v_t = leak v_(t-1) + z_t`` over the first dimension of ``z`` seen as ``shape``.

    The same float operations as the stepped simulator (not ``cumsum``, whose CPU kernel
    accumulates in double); backward is the reverse recursion ``g_t += leak g_(t+1)``, one
    full-size gradient in all (indexing ``z[t]`` would zero-fill a full-size one per step).
    In place on ``z`` when it requires grad and is not a view (a layer's fresh currents),
    else on a copy: marking a view dirty would make autograd rebuild its base's history
    (CopySlices), full-size copies in every backward pass.
    """

    @staticmethod
    def forward(ctx: Any, z: Tensor, leak: Tensor, plain: bool, shape: tuple[int, ...]) -> Tensor:
        in_place = ctx.needs_input_grad[0] and z._base is None
        out = z if in_place else z.clone()
        if in_place:
            ctx.mark_dirty(z)  # the currents are a fresh tensor nothing else reads
        factor = float(leak)
        _recur_(out.view(shape), factor, plain)
        ctx.factor, ctx.plain, ctx.leak_dtype, ctx.shape = factor, plain, leak.dtype, shape
        ctx.save_for_backward(out if ctx.needs_input_grad[1] else None)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor | None, None, None]:
        flat = grad.clone()
        g = flat.view(ctx.shape)
        for t in range(g.shape[0] - 2, -1, -1):
            g[t].add_(g[t + 1] if ctx.plain else g[t + 1] * ctx.factor)
        grad_leak = None
        if ctx.needs_input_grad[1]:
            (saved,) = ctx.saved_tensors
            v = saved.view(ctx.shape)
            dot = torch.dot(g[1:].reshape(-1), v[:-1].reshape(-1))
            grad_leak = dot.reshape(()).to(ctx.leak_dtype)
        return flat, grad_leak, None, None


def membrane(z: Tensor, leak: float | Tensor) -> Tensor:
    """The membrane after every step, ``(T, B, ...)``, from the currents ``z`` (``v_(-1) = 0``).

    Args:
        z: currents ``(T, B, ...)``; one that requires grad (a layer's fresh currents in
            training, read by nothing else) is overwritten in place, or the fresh tensor it
            is a reshaped view of (the currents of all steps folded into the batch).
        leak: decay per step; a tensor that requires grad receives one.
    """
    plain = not isinstance(leak, Tensor) and leak == 1.0
    factor = (
        leak
        if isinstance(leak, Tensor)
        else torch.tensor(float(leak), dtype=z.dtype, device=z.device)
    )
    base = z._base
    if (
        z.requires_grad
        and base is not None  # (a view's base is never a view itself)
        and not base.is_leaf
        and base.numel() == z.numel()
        and base.is_contiguous()
        and z.is_contiguous()
        and base.data_ptr() == z.data_ptr()
    ):
        whole: Tensor = _Membrane.apply(base, factor, plain, tuple(z.shape))
        return whole.view(z.shape)
    out: Tensor = _Membrane.apply(z, factor, plain, tuple(z.shape))
    return out


def not_fired_before(crossed: Tensor) -> Tensor:
    """``(T, B, ...)`` bool: no crossing at an earlier step, from the bool crossings."""
    out = torch.empty_like(crossed)
    out[0] = True
    for t in range(1, crossed.shape[0]):
        torch.logical_and(out[t - 1], ~crossed[t - 1], out=out[t])
    return out


def fire_train(
    z: Tensor,
    threshold: float | Tensor,
    leak: float | Tensor,
    crossing: Crossing | None = None,
    fire: Crossing | None = None,
    *,
    overwrite: bool = False,
) -> tuple[Tensor, Tensor]:
    """Single-spike integrate-and-fire over all steps at once.

    The same dynamics as :func:`onespike.neurons.single_spike_step` applied ``T`` times
    (``v_t = leak v_(t-1) + z_t``, a spike at the first step with ``v_t >= theta``), with the
    crossing computed once on the whole ``(T, B, ...)`` membrane; "has fired before ``t``" is
    a constant for autograd, as in :func:`onespike.neurons.fire_once`.

    Args:
        z: currents ``(T, B, ...)``.
        threshold: firing threshold.
        leak: membrane decay per step (a tensor when it is trained).
        crossing: a crossing function ``H(v - theta)`` (``None``: the plain comparison).
        fire: computes the whole single-spike train from the membrane and threshold (first
            crossing only); replaces ``crossing`` (STDB passes one with a surrogate gradient).
        overwrite: ``z`` is a fresh tensor nothing else reads; without autograd it becomes
            the membrane in place (no copy of the whole ``(T, B, ...)`` currents).

    Returns:
        ``(spikes, v)``, both ``(T, B, ...)``.
    """
    if overwrite and not torch.is_grad_enabled():
        v = _recur_(z, float(leak), float(leak) == 1.0)  # membrane()'s operations, no copy
    else:
        v = membrane(z, leak)
    if fire is not None:
        return fire(v, threshold), v
    if crossing is None:
        crossed = v >= threshold
        return (crossed & not_fired_before(crossed)).to(v.dtype), v
    return first_only(crossing(v, threshold)), v


def first_only(crossed: Tensor) -> Tensor:
    """Keep, along time (dimension 0), only the first 1 of every neuron's 0/1 train."""
    mask = not_fired_before(crossed.detach() > 0)
    if not crossed.requires_grad:
        return (crossed > 0).logical_and_(mask).to(crossed.dtype)
    return crossed * mask


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


def _threshold(
    pop: Population, dtype: torch.dtype, device: torch.device | None = None
) -> float | Tensor:
    threshold = pop.threshold
    if isinstance(threshold, Tensor):
        return threshold.to(device=threshold.device if device is None else device, dtype=dtype)
    return threshold


def _first_times(train: Tensor) -> Tensor:
    """Spike step of each neuron from its 0/1 train ``(T, B, ...)`` (at most one spike).

    One product with ``[1, ..., 1]`` and ``[0, 1, ..., T-1]`` gives each neuron's spike count
    and its spike's step (small integers, exact in floating point) in one pass over the train.
    """
    steps = train.shape[0]
    weights = torch.stack(
        [
            torch.ones(steps, dtype=train.dtype, device=train.device),
            torch.arange(steps, dtype=train.dtype, device=train.device),
        ]
    )
    count, step = (weights @ train.reshape(steps, -1)).view(2, *train.shape[1:])
    return torch.where(count > 0, step, torch.full_like(step, math.inf))


# Elements of all populations' spike trains, ``(T, chunk, ...)`` summed, that one chunk of the
# layer-major pass may hold (2**23 float32: 32 MiB). Folding time into the batch makes every
# intermediate ``T`` times the size of a stepped one; past the CPU caches the pass becomes
# memory-bound: at B = 1000, T = 5 the whole-batch pass of benchmarks/speed.py's ConvNet took
# 1.3x the stepped simulator's time, in chunks 0.45x. Of 2**20 .. 2**24, 2**23 was fastest
# for its ConvNet and VGG-11 (B = 500, one thread; 48 to 71 samples a chunk). Its
# 784-500-500-10 MLP, whose samples are small, ran fastest in chunks of 116 to 233 samples
# (B = 1000; 935 took 1.4x as long), hence also at most CHUNK_SAMPLES. Samples never interact,
# so the chunks change no value.
CHUNK_ELEMENTS = 2**23
CHUNK_SAMPLES = 128


def chunk_size(pops: Sequence[Population], steps: int) -> int:
    """Samples per chunk of the closed-form pass: :data:`CHUNK_ELEMENTS` over a sample's trains,
    at most :data:`CHUNK_SAMPLES`."""
    per_sample = steps * sum(math.prod(pop.shape) for pop in pops)
    return max(1, min(CHUNK_SAMPLES, CHUNK_ELEMENTS // per_sample))


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
    leak: float | Tensor | None = None,
    fire: Crossing | None = None,
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
        leak: the membrane decay (``None``: ``config.leak``; STDB passes a trained tensor).
        fire: the whole-train firing function of :func:`fire_train` (STDB's surrogate).

    Returns:
        Spike times, output spikes and output membrane trajectory.
    """
    steps = config.steps
    batch = x.shape[0]
    dtype = x.dtype
    trains: dict[str, Tensor] = {pops[0].name: input_train(x, input_times, config)}
    readers = {pop.name: 0 for pop in pops}
    for pop in pops[1:]:
        for source in pop.sources:
            readers[source] += 1
    times: dict[str, Tensor] = {}
    if record_times:
        times[pops[0].name] = input_times
    membrane: Tensor | None = None
    output: Tensor | None = None
    leak = config.leak if leak is None else leak
    for pop in pops[1:]:
        if pop.kind == "maxpool":
            assert pop.pool is not None
            pooled = trains[pop.sources[0]].flatten(0, 1)
            train = first_only(max_pool(pop.pool, pooled).unflatten(0, (steps, batch)))
        else:
            z = step_currents(pop, {source: trains[source] for source in pop.sources}, config)
            threshold = _threshold(pop, dtype, z.device)
            train, v = fire_train(z, threshold, leak, crossing, fire, overwrite=True)
            if pop.is_output:
                membrane = v
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
    assert membrane is not None
    return LayerRun(times, output, membrane)


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
        size = chunk_size(net.populations, config.steps)
        if size >= x.shape[0]:
            run = run_layers(net.populations, x, input_times, config)
            times, membrane = run.times, run.membrane
        else:
            runs = [
                run_layers(net.populations, x[i : i + size], input_times[i : i + size], config)
                for i in range(0, x.shape[0], size)
            ]
            times = {name: torch.cat([r.times[name] for r in runs]) for name in runs[0].times}
            membrane = torch.cat([r.membrane for r in runs], dim=1)
    return _result("closed_form", net, config, times, membrane, clipped)


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
        counts = {inp.name: torch.zeros(x.shape, dtype=torch.int32, device=x.device)}
        states = {}
        params = {}
        fired = {}
        for pop in net.populations[1:]:
            shape = (batch, *pop.shape)
            times[pop.name] = torch.full(shape, math.inf, dtype=dtype, device=x.device)
            counts[pop.name] = torch.zeros(shape, dtype=torch.int32, device=x.device)
            if pop.kind == "maxpool":
                fired[pop.name] = x.new_zeros(shape, dtype=dtype)
            else:
                states[pop.name] = single_spike_initial_state(shape, dtype, x.device)
                threshold = _threshold(pop, dtype, x.device)
                params[pop.name] = SingleSpikeParams(threshold, float(config.leak))
        membranes: list[Tensor] = []
        for t in range(config.steps):
            values = {inp.name: input_values(x, input_times, t, config)}
            if t > 0:
                counts[inp.name] += (input_times == t).to(torch.int32)
            for pop in net.populations[1:]:
                if pop.kind == "maxpool":
                    assert pop.pool is not None
                    candidates = max_pool(pop.pool, values[pop.sources[0]])
                    spikes, fired[pop.name] = fire_once(candidates, fired[pop.name])
                else:
                    current = pre_activation(pop, values, bias_scale=bias_scale(config, t))
                    spikes, states[pop.name] = single_spike_step(
                        current, states[pop.name], params[pop.name]
                    )
                values[pop.name] = spikes
                happened = spikes > 0
                times[pop.name][happened] = float(t)
                counts[pop.name] += happened.to(torch.int32)
            membranes.append(states[out.name].v)
    return _result("stepped", net, config, times, torch.stack(membranes), clipped, counts)
