"""TTFS simulators: the stepped reference and the closed-form fast path.

The stepped simulator runs :func:`onespike.neurons.ttfs_step` for every population at every
time step of its window; every spike and synaptic event is real. The closed-form simulator
computes the same codes in one pass, with the rule derived in :mod:`onespike.convert.ttfs`:
``k = clamp(floor(V + 1/2), 0, L)`` with ``V = sum_j w_j k_j + L b``. Both return the same
:class:`~onespike.simulate.result.SimResult`, and the tests hold them to identical spike times.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import replace

import torch
from torch import Tensor

from onespike.convert.config import TTFSConfig
from onespike.convert.ttfs import quantized_codes, readout_time, ttfs_steps
from onespike.errors import ConfigError
from onespike.graph import max_pool
from onespike.network import Population, SpikingNetwork
from onespike.neurons import TTFSParams, ttfs_initial_state, ttfs_step
from onespike.simulate._input import check_unit_input
from onespike.simulate.result import SimResult

__all__ = [
    "codes_from_times",
    "decision_steps",
    "encode_input",
    "simulate_closed_form",
    "simulate_stepped",
    "stop_at_decision",
]


def _config(net: SpikingNetwork) -> TTFSConfig:
    assert isinstance(net.config, TTFSConfig)
    return net.config


def encode_input(x: Tensor, config: TTFSConfig) -> tuple[Tensor, int]:
    """Integer codes ``floor(L x + 1/2)`` of the input, and how many values were clipped.

    Raises:
        CodeRangeError: a value is NaN/infinite, or outside ``[0, 1]`` with
            ``input_range="error"``.
    """
    x, clipped = check_unit_input(
        x,
        config.input_range,
        reason="a time-to-first-spike code represents [0, 1]",
        fix="Scale the input to [0, 1] (fold any normalisation into the model) or pass "
        "TTFSConfig(input_range='clip').",
    )
    codes = x * config.levels
    return codes.add_(0.5).floor_(), clipped


def _offset(pop: Population, config: TTFSConfig) -> int:
    """``r + L``: the step at which code 0 fires; code ``k`` fires ``k`` steps earlier."""
    return readout_time(pop, config) + config.levels


def _codes(times: Tensor, offset: int) -> Tensor:
    """Inverse of :func:`_times`: ``k = r + L - t``, and 0 for a neuron that never fired."""
    return torch.where(torch.isfinite(times), offset - times, torch.zeros_like(times))


def _times(codes: Tensor, offset: int, rectifier: bool) -> Tensor:
    times = offset - codes
    if not rectifier:
        times = times.masked_fill_(codes == 0, math.inf)
    return times


class CodeTimes(Mapping[str, Tensor]):
    """Spike times derived on access from integer codes: ``t = r + L - k``.

    The map from code to time is a bijection, so the closed-form simulator keeps the codes
    and leaves the (cheap) conversion to whoever reads a population's times.
    """

    def __init__(self, codes: dict[str, Tensor], net: SpikingNetwork, config: TTFSConfig) -> None:
        self._codes = codes
        self._offsets = {p.name: _offset(p, config) for p in net.populations}
        self._rectifier = config.rectifier
        self._cache: dict[str, Tensor] = {}

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._cache:
            self._cache[name] = _times(self._codes[name], self._offsets[name], self._rectifier)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._codes)

    def __len__(self) -> int:
        return len(self._codes)


def codes_from_times(net: SpikingNetwork, result: SimResult) -> dict[str, Tensor]:
    """Integer codes ``k = r + L - t`` of every population (0 for a neuron that never fired)."""
    config = _config(net)
    return {
        pop.name: _codes(result.spike_times[pop.name], _offset(pop, config))
        for pop in net.populations
    }


def _decode(codes: Tensor, pop: Population, config: TTFSConfig) -> Tensor:
    return codes * (pop.scale / config.levels)


def simulate_closed_form(net: SpikingNetwork, x: Tensor) -> SimResult:
    """Compute every spike time in one pass (no time loop).

    Args:
        net: a TTFS network.
        x: input batch in ``[0, 1]``, ``(B, *net.input_shape)``.

    Returns:
        The simulation result.
    """
    config = _config(net)
    levels = config.levels
    with torch.no_grad():
        input_codes, input_clipped = encode_input(x, config)
        codes, potential, clipped_counts = quantized_codes(net.populations, input_codes, levels)
        out = net.output
        predictions = potential.flatten(1).argmax(dim=1)
    clipped = {net.input.name: input_clipped}
    clipped.update({name: int(count) for name, count in clipped_counts.items()})
    times = CodeTimes(codes, net, config)
    steps = ttfs_steps(net)
    result = SimResult(
        method="closed_form",
        spike_times=times,
        predictions=predictions,
        outputs=_decode(codes[out.name], out, config),
        steps=steps,
        clipped=clipped,
        decision_steps=decision_steps(times[out.name], steps),
        logits=potential * (out.scale / levels),
    )
    return stop_at_decision(net, result) if config.stop_at_decision else result


def simulate_stepped(net: SpikingNetwork, x: Tensor) -> SimResult:
    """Run the neuron dynamics literally, one time step at a time.

    Args:
        net: a TTFS network.
        x: input batch in ``[0, 1]``, ``(B, *net.input_shape)``.

    Returns:
        The simulation result.
    """
    config = _config(net)
    levels = config.levels
    threshold = levels - 0.5
    steps = ttfs_steps(net)
    batch = x.shape[0]
    dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    input_codes, input_clipped = encode_input(x.to(dtype), config)
    times: dict[str, Tensor] = {
        net.input.name: _times(input_codes, _offset(net.input, config), config.rectifier)
    }
    clipped: dict[str, int] = {net.input.name: input_clipped}
    states = {}
    # Every spike event is counted as it happens, so that "at most one spike per neuron" is
    # observed, not assumed.
    counts = {net.input.name: torch.isfinite(times[net.input.name]).to(torch.int32)}
    for pop in net.populations[1:]:
        counts[pop.name] = torch.zeros((batch, *pop.shape), dtype=torch.int32, device=x.device)
        times[pop.name] = torch.full((batch, *pop.shape), math.inf, dtype=dtype, device=x.device)
        if pop.kind == "neuron":
            states[pop.name] = ttfs_initial_state((batch, *pop.shape), dtype, x.device)
            clipped[pop.name] = 0
    out = net.output
    recorded = x.new_zeros((batch, *out.shape), dtype=dtype)  # membrane at spike / window end
    at_readout = x.new_zeros((batch, *out.shape), dtype=dtype)  # V: the logits, unclipped
    with torch.no_grad():
        for t in range(steps):
            for pop in net.populations[1:]:
                if pop.kind == "maxpool":
                    assert pop.pool is not None
                    arriving = (times[pop.sources[0]] == t).to(dtype)
                    fired_now = (max_pool(pop.pool, arriving) > 0) & torch.isinf(times[pop.name])
                    times[pop.name][fired_now] = float(t)
                    counts[pop.name] += fired_now
                    continue
                readout = readout_time(pop, config)
                close = readout + levels if config.rectifier else readout + levels - 1
                if t < readout - levels or t > close:
                    continue  # no event can reach the neuron outside its window
                d = x.new_zeros((batch, *pop.shape), dtype=dtype)
                for proj in pop.projections:
                    arriving = times[proj.source] + proj.delay == t
                    if bool(arriving.any()):
                        d = d + proj.apply(arriving.to(dtype))
                if pop.bias is not None and t == readout - levels:
                    d = d + pop.bias.to(dtype)
                params = TTFSParams(
                    threshold=threshold,
                    counter=t == readout,
                    enabled=t >= readout,
                    force=config.rectifier and t == readout + levels,
                )
                spikes, states[pop.name] = ttfs_step(d, states[pop.name], params)
                times[pop.name][spikes] = float(t)
                counts[pop.name] += spikes
                state = states[pop.name]
                if t == readout:
                    clipped[pop.name] = int((state.v >= levels + 0.5).sum())
                    if pop.is_output:
                        at_readout = state.v.clone()
                if pop.is_output:
                    recorded = torch.where(spikes, state.v, recorded)
                    if t == close:
                        recorded = torch.where(state.fired, recorded, state.v)
    out_times = times[out.name].flatten(1)
    earliest = out_times == out_times.min(dim=1, keepdim=True).values
    membrane = recorded.flatten(1)
    score = torch.where(earliest, membrane, torch.full_like(membrane, -math.inf))
    predictions = score.argmax(dim=1)
    out_codes = _codes(times[out.name], _offset(out, config))
    result = SimResult(
        method="stepped",
        spike_times=times,
        predictions=predictions,
        outputs=_decode(out_codes, out, config),
        steps=steps,
        clipped=clipped,
        spike_counts=counts,
        decision_steps=decision_steps(times[out.name], steps),
        logits=at_readout * (out.scale / levels),
    )
    return stop_at_decision(net, result) if config.stop_at_decision else result


def decision_steps(output_times: Tensor, steps: int) -> Tensor:
    """Time steps each sample runs until its class is known: its first output spike.

    Args:
        output_times: ``(B, *shape)`` spike times of the output population (``inf``: silent).
        steps: time steps of the whole inference, the decision of a silent output.

    Returns:
        ``(B,)`` int64: the earliest output spike time plus one (times count from step 0),
        or ``steps`` for a sample whose output never fires.
    """
    first = output_times.flatten(1).min(dim=1).values
    decided = torch.where(torch.isfinite(first), first + 1, torch.full_like(first, steps))
    return decided.to(torch.int64)


class _Stopped(Mapping[str, Tensor]):
    """Spike times with every spike at or after its sample's stop step removed (``inf``)."""

    def __init__(self, times: Mapping[str, Tensor], stop: Tensor) -> None:
        self._times = times
        self._stop = stop
        self._cache: dict[str, Tensor] = {}

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._cache:
            times = self._times[name]
            stop = self._stop.to(times.dtype).view(-1, *([1] * (times.ndim - 1)))
            self._cache[name] = times.masked_fill(times >= stop, math.inf)
        return self._cache[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._times)

    def __len__(self) -> int:
        return len(self._times)


def stop_at_decision(net: SpikingNetwork, result: SimResult) -> SimResult:
    """The result had each sample stopped at its decision (its first output spike).

    Every spike at a step after the decision is removed; the output spikes of the decision
    step itself are kept, so the class does not change; ``outputs`` decode only the output
    spikes that happened (0 for an output neuron that would have fired later).
    ``sample_steps`` becomes the decision time, which :func:`onespike.count_ops` reads to
    leave out the rectifier events and neuron updates the stopped sample never spends. Only
    the output population fires that late (every other population's window closes by the
    output's readout time), so the saving is the output's late spikes and events, and the
    latency.

    Args:
        net: the TTFS network that produced ``result``.
        result: a TTFS simulation result (with ``decision_steps``).

    Returns:
        A new result; ``result`` itself is unchanged.
    """
    config = _config(net)
    if result.decision_steps is None:
        raise ConfigError(
            "stop_at_decision needs a TTFS result with decision_steps; simulate the network "
            "with onespike.simulate"
        )
    stop = result.decision_steps
    times = _Stopped(result.spike_times, stop)
    counts = {name: torch.isfinite(times[name]).to(torch.int32) for name in result.spike_counts}
    out = net.output
    out_codes = _codes(times[out.name], _offset(out, config))
    return replace(
        result,
        spike_times=times,
        spike_counts=counts,
        outputs=_decode(out_codes, out, config),
        sample_steps=stop.clone(),
    )
