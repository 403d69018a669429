"""TTFS simulators: the stepped reference and the closed-form fast path.

The stepped simulator runs :func:`onespike.neurons.ttfs_step` for every population over its
window, skipping only what cannot change a state (steps before a population's first event,
and the weights of spikes that arrive at the readout step, where the counter synapse sets
the current anyway); every spike and synaptic event is real. The closed-form simulator
computes the same codes in one pass, with the rule derived in :mod:`onespike.convert.ttfs`:
``k = clamp(floor(V + 1/2), 0, L)`` with ``V = sum_j w_j k_j + L b``. Both return the same
:class:`~onespike.simulate.result.SimResult`, with spike times derived on access from integer
codes (:class:`CodeTimes`), and the tests hold them to identical spike times.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import replace

import torch
from torch import Tensor

from onespike.convert.config import TTFSConfig
from onespike.convert.ttfs import (
    pool_windows,
    quantized_codes_batched,
    readout_time,
    to_codes,
    ttfs_steps,
)
from onespike.errors import ConfigError
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


def _times(codes: Tensor, offset: int, rectifier: bool, dtype: torch.dtype) -> Tensor:
    """Spike times ``r + L - k`` (``dtype``) of codes of any dtype; ``inf`` for code 0 without
    the rectifier."""
    times = offset - codes.to(dtype)
    if not rectifier:
        times = times.masked_fill_(codes == 0, math.inf)
    return times


class CodeTimes(Mapping[str, Tensor]):
    """Spike times derived on access from integer codes: ``t = r + L - k``.

    The map from code to time is a bijection, so the closed-form simulator keeps the codes,
    in the smallest integer dtype that holds them (:func:`~onespike.convert.ttfs.code_dtype`:
    a quarter of the float times' memory for ``T <= 256``), and leaves the (cheap) conversion
    to whoever reads a population's times.
    """

    def __init__(
        self,
        codes: dict[str, Tensor],
        net: SpikingNetwork,
        config: TTFSConfig,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self._codes = codes
        self._net = net
        self._config = config
        self._rectifier = config.rectifier
        self._dtype = dtype
        self._cache: dict[str, Tensor] = {}

    @property
    def codes(self) -> Mapping[str, Tensor]:
        """The integer codes of every population, ``(B, *shape)``."""
        return self._codes

    def __getitem__(self, name: str) -> Tensor:
        if name not in self._cache:
            offset = _offset(self._net[name], self._config)
            self._cache[name] = _times(self._codes[name], offset, self._rectifier, self._dtype)
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


def _decode(codes: Tensor, pop: Population, config: TTFSConfig, dtype: torch.dtype) -> Tensor:
    return codes.to(dtype) * (pop.scale / config.levels)


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
    out = net.output
    with torch.no_grad():
        input_codes, input_clipped = encode_input(x, config)
        codes, potential, counts = quantized_codes_batched(net.populations, input_codes, levels)
        predictions = potential.flatten(1).argmax(dim=1)
    clipped = {net.input.name: input_clipped, **counts}
    steps = ttfs_steps(net)
    result = SimResult(
        method="closed_form",
        spike_times=CodeTimes(codes, net, config, x.dtype),
        predictions=predictions,
        outputs=_decode(codes[out.name], out, config, x.dtype),
        steps=steps,
        clipped=clipped,
        decision_steps=_decisions(codes[out.name], _offset(out, config), steps, config),
        logits=potential * (out.scale / levels),
    )
    return stop_at_decision(net, result) if config.stop_at_decision else result


def _decisions(codes: Tensor, offset: int, steps: int, config: TTFSConfig) -> Tensor:
    """:func:`decision_steps` from the output's codes: the largest code fires first, at
    ``r + L - k``; without the rectifier, code 0 is silence."""
    largest = codes.flatten(1).amax(dim=1).to(torch.int64)
    decided = (offset + 1) - largest
    if not config.rectifier:
        decided = decided.masked_fill_(largest == 0, steps)
    return decided


def simulate_stepped(net: SpikingNetwork, x: Tensor) -> SimResult:
    """Run the neuron dynamics literally, one time step at a time.

    Populations are simulated one after the other over their windows (a population's input
    comes only from earlier ones, so this is the same run as stepping every population at
    each global step), and only where something happens:

    - the synaptic input of a step is computed only for the steps at which spikes arrive,
      for all of them with one call per projection (the arriving spikes of each step are a
      frame of a batch of frames);
    - spikes that arrive at the readout step are not summed: the counter synapse sets the
      current to 1 at that step whatever else arrives, so their weight never reaches the
      membrane (``ttfs_step`` receives zero, with the same result bit for bit);
    - steps before the first event of a population are skipped: its state is still zero
      and stays zero;
    - max pooling is "first spike wins": the earliest spike of each window.

    Every other step of a population's window runs :func:`onespike.neurons.ttfs_step`.

    Args:
        net: a TTFS network.
        x: input batch in ``[0, 1]``, ``(B, *net.input_shape)``.

    Returns:
        The simulation result.
    """
    config = _config(net)
    steps = ttfs_steps(net)
    dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    input_codes, input_clipped = encode_input(x.to(dtype), config)
    first = _times(input_codes, _offset(net.input, config), config.rectifier, dtype)
    times: dict[str, Tensor] = {net.input.name: first}
    clipped: dict[str, int] = {net.input.name: input_clipped}
    # Every spike event is counted as it happens, so that "at most one spike per neuron" is
    # observed, not assumed.
    counts = {net.input.name: torch.isfinite(first).to(torch.uint8)}
    out = net.output
    with torch.no_grad():
        for pop in net.populations[1:]:
            if pop.kind == "maxpool":
                assert pop.pool is not None
                earliest = pool_windows(pop.pool, times[pop.sources[0]], math.inf, torch.minimum)
                times[pop.name] = earliest
                counts[pop.name] = torch.isfinite(earliest).to(torch.uint8)
                continue
            run = _run_population(pop, times, config)
            times[pop.name], counts[pop.name], clipped[pop.name] = run[:3]
            if pop.is_output:
                recorded, at_readout = run[3], run[4]
    out_times = times[out.name].flatten(1)
    earliest = out_times == out_times.min(dim=1, keepdim=True).values
    membrane = recorded.flatten(1)
    score = torch.where(earliest, membrane, torch.full_like(membrane, -math.inf))
    predictions = score.argmax(dim=1)
    out_codes = _codes(times[out.name], _offset(out, config))
    decided = decision_steps(times[out.name], steps)
    # kept as integer codes, like the closed form's: a quarter of the float times' memory
    codes = {p.name: _observed_codes(times.pop(p.name), p, config) for p in net.populations}
    result = SimResult(
        method="stepped",
        spike_times=CodeTimes(codes, net, config, dtype),
        predictions=predictions,
        outputs=_decode(out_codes, out, config, dtype),
        steps=steps,
        clipped=clipped,
        spike_counts=counts,
        decision_steps=decided,
        logits=at_readout * (out.scale / config.levels),
    )
    return stop_at_decision(net, result) if config.stop_at_decision else result


def _observed_codes(times: Tensor, pop: Population, config: TTFSConfig) -> Tensor:
    """The codes ``r + L - t`` of spike times a simulation observed, in
    :func:`~onespike.convert.ttfs.code_dtype` (0 for a neuron that never fired).

    Raises:
        RuntimeError: a spike lies outside its population's output window (a simulator bug:
            the times would not be codes).
    """
    codes = _codes(times, _offset(pop, config))
    low, high = (float(v) for v in torch.aminmax(codes))
    if low < 0 or high > config.levels:
        raise RuntimeError(
            f"population {pop.name!r} fired outside its output window (codes {low:g} to "
            f"{high:g}, expected 0 to {config.levels}); this is a bug in the simulator"
        )
    return to_codes(codes, config.levels)


# the frames of arriving spikes convolved in one call take at most this much memory
_FRAME_BYTES = 1 << 26
# and go through a projection in calls of at most this much input
_CALL_BYTES = 1 << 22


def _run_population(
    pop: Population, times: dict[str, Tensor], config: TTFSConfig
) -> tuple[Tensor, Tensor, int, Tensor, Tensor]:
    """Step one neuron population through its window ``[r - L, close]``.

    Returns:
        ``(times, counts, clipped, recorded, at_readout)``: its spike times and counts, the
        values above the code range, and (for the output) the membrane at each neuron's
        spike (or at the window's end) and at the readout.
    """
    levels = config.levels
    readout = readout_time(pop, config)
    start = readout - levels
    close = readout + levels if config.rectifier else readout + levels - 1
    like = times[pop.sources[0]]
    batch, dtype, device = like.shape[0], like.dtype, like.device
    shape = (batch, *pop.shape)
    state = ttfs_initial_state(shape, dtype, device)
    # Spikes are counted, and their steps after the readout summed, in integers: adding a
    # byte mask is many times cheaper than writing a time through a boolean mask. A neuron
    # that fires once fires at ``r + late``; a count above one is still seen as such.
    narrow = close - readout + 1 <= 255  # a uint8 count cannot overflow in the window
    counter_dtype = torch.uint8 if narrow else torch.int32
    counts = torch.zeros(shape, dtype=counter_dtype, device=device)
    late = torch.zeros(shape, dtype=counter_dtype, device=device)
    recorded = at_readout = state.v
    clipped = 0
    threshold = levels - 0.5
    started = pop.bias is not None  # the bias event arrives at r - L
    largest = max([pop.size, *(math.prod(times[p.source].shape[1:]) for p in pop.projections)])
    chunk = max(1, min(levels, _FRAME_BYTES // (batch * largest * like.element_size()) - 2))
    inputs: dict[int, Tensor] = {}
    for t in range(start, close + 1):
        if t < readout and (t - start) % chunk == 0:
            inputs = _synaptic_input(pop, times, range(t, min(t + chunk, readout)))
        d = inputs.get(t)
        started = started or d is not None or t >= readout
        if not started:
            continue  # nothing has arrived yet: the state is zero and stays zero
        if pop.bias is not None and t == start:
            bias = pop.bias.to(dtype)
            d = bias if d is None else d + bias
        params = TTFSParams(
            threshold=threshold,
            counter=t == readout,
            enabled=t >= readout,
            force=config.rectifier and t == readout + levels,
        )
        spikes, state = ttfs_step(d, state, params)
        if t >= readout:  # spiking is enabled only from the readout on
            mask = spikes.view(torch.uint8) if narrow else spikes
            counts.add_(mask)
            if t > readout:
                late.add_(mask, alpha=t - readout)
        if t == readout:
            clipped = int((state.v >= levels + 0.5).sum())
            if pop.is_output:
                at_readout = state.v.clone()
        if pop.is_output:
            recorded = torch.where(spikes, state.v, recorded)
            if t == close:
                recorded = torch.where(state.fired, recorded, state.v)
    spike_times = late.to(dtype).add_(readout).masked_fill_(counts == 0, math.inf)
    return spike_times, counts, clipped, recorded, at_readout


def _synaptic_input(pop: Population, times: dict[str, Tensor], window: range) -> dict[int, Tensor]:
    """The summed weights of the spikes arriving at each step of ``window`` (all before the
    readout), by step; steps at which nothing arrives are left out.

    The arriving spikes of each step form one frame; the frames of all busy steps pass
    through a projection in one call, as one batch.
    """
    n = len(window)
    total: dict[int, Tensor] = {}
    for proj in pop.projections:
        arriving = times[proj.source]
        batch, shape = arriving.shape[0], arriving.shape[1:]
        # row 1 + j: arrives at window[j]; row 0: earlier; row n + 1: later or never (inf)
        rows = (arriving + (proj.delay - window.start + 1)).clamp_(0, n + 1).to(torch.int64)
        busy = torch.bincount(rows.flatten(), minlength=n + 2)[1 : n + 1].tolist()
        active = [j for j, events in enumerate(busy) if events]
        if not active:
            continue
        frames = arriving.new_zeros((n + 2, arriving.numel()))
        frames.scatter_(0, rows.view(1, -1), 1.0)
        if len(active) == n:
            frames = frames[1 : n + 1]
        else:
            frames = frames[torch.tensor(active, device=frames.device) + 1]
        # a few frames per call: a convolution of a very large batch runs slower per sample
        group = max(1, _CALL_BYTES // (frames.shape[1] * frames.element_size()))
        for first in range(0, len(active), group):
            some = frames[first : first + group]
            part = proj.apply_fused(some.reshape(some.shape[0] * batch, *shape))
            part = part.unflatten(0, (some.shape[0], batch))
            for row, j in enumerate(active[first : first + group]):
                t = window[j]
                total[t] = total[t] + part[row] if t in total else part[row]
    return total


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
    counts = {name: torch.isfinite(times[name]).to(torch.uint8) for name in result.spike_counts}
    out = net.output
    out_codes = _codes(times[out.name], _offset(out, config))
    return replace(
        result,
        spike_times=times,
        spike_counts=counts,
        outputs=_decode(out_codes, out, config, result.outputs.dtype),
        sample_steps=stop.clone(),
    )
