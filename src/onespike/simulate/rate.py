"""Rate-code simulators: the stepped reference and the fast path with a cached input current.

Both loop over time steps and call :func:`onespike.neurons.if_step` /
:func:`~onespike.neurons.accumulate_step`; within a step, populations update in topological
order and a spike reaches the next layer in the same step (no synaptic delay). Per step:

- **input**: ``"analog"``: the image itself is the input population's value at every step (a
  constant current into the first layer; no input spikes). ``"poisson"``: pixel ``x`` spikes
  with probability ``x``, from ``torch.rand`` on a generator seeded with ``RateConfig.seed``
  (one draw of the whole batch per step, so a seed reproduces the spikes exactly).
- **neuron population**: current ``z = sum of projections of this step's source values +
  bias``; integrate-and-fire with the configured reset; membranes start at
  ``initial_membrane * threshold``, plus, in the populations the input drives, a fixed offset
  per neuron uniform in ``[-dither, dither] * threshold`` drawn from ``RateConfig.seed``
  (by default only in convolutions: :meth:`RateConfig.dither_for`).
- **max pooling** (onespike's rule): a window spikes whenever the largest spike count among
  its neurons grows, so its count equals that largest count after every step and the pooled
  rate is exactly the maximum rate. (Gating the spikes of the neuron with the largest count,
  Rueckauer et al. 2017, doi 10.3389/fnins.2017.00682, lags behind it while counts are tied.)
- **imported neuron models**: a population that carries its own constants
  (:attr:`Population.neuron`, from another tool's NIR graph) steps with
  :func:`onespike.neurons.lif_step` instead, its membranes from 0; a leaky-integrator output
  (``spiking=False``) is read as its membrane after the last step, not divided by the steps.
- **output population**: accumulates its current without spiking; the prediction after step
  ``t`` is the argmax of its membrane (ties to the lower index), and the decoded output is
  ``membrane / t * scale`` (the mean current, in the ANN's units).

**Early exit** (``RateConfig.early_exit = k``, the run-time latency optimisation). A sample's
prediction counts as settled once it has been the same for ``k`` consecutive steps, counting
from the first step at which the output layer receives a spike (before that the membrane holds
only biases). The sample then stops: its prediction and latency are those of that step, and
no later spike of it is counted. :attr:`SimResult.sample_steps` holds the latencies.

``closed_form`` computes each projection of the (constant) analog input once per sample and
reuses it at every step, so the first layer's multiply-accumulates happen once; ``stepped``
recomputes every projection at every step. Everything else is shared, and the tests hold the
two to identical spike counts and predictions.

Both update their state in place: membranes, spike buffers, counts and each pooling window's
count are allocated once (:func:`~onespike.neurons.if_step` with ``out=``), a current is summed
into the tensor its first projection has just made, and a step allocates little beyond the
projections' outputs and one max-pool.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from onespike.convert.config import RateConfig
from onespike.errors import ConfigError
from onespike.graph import Conv2d, MaxPool2d, max_pool
from onespike.network import Population, Projection, SpikingNetwork
from onespike.neurons import (
    IFParams,
    IFState,
    LIFParams,
    LIFState,
    accumulate_step,
    if_step,
    lif_initial_state,
    lif_step,
)
from onespike.simulate._input import check_unit_input
from onespike.simulate.result import SimResult

__all__ = [
    "pool_spikes",
    "simulate_checkpoints",
    "simulate_closed_form",
    "simulate_stepped",
]


def _config(net: SpikingNetwork) -> RateConfig:
    assert isinstance(net.config, RateConfig)
    return net.config


def _check_input(x: Tensor, config: RateConfig) -> tuple[Tensor, int]:
    return check_unit_input(
        x,
        None if config.input == "analog" else config.input_range,
        reason="Poisson input reads each value as a spike probability",
        fix="Scale the input to [0, 1], use input='analog', or pass "
        "RateConfig(input_range='clip').",
    )


def pool_spikes(
    pool: MaxPool2d, spikes: Tensor, counts: Tensor, *, pooled: Tensor | None = None
) -> Tensor:
    """Max pooling of spikes: a window spikes whenever its largest spike count grows.

    A neuron spikes at most once per step, so the largest count of a window grows by 0 or 1
    per step, and the window's own count equals the largest count of its neurons after every
    step: the pooled rate is exactly the maximum rate.

    Args:
        pool: the pooling node.
        spikes: this step's spikes of the source population, ``(B, C, H, W)``.
        counts: the source's spike counts so far, this step included.
        pooled: the windows' counts before this step, ``max_pool(counts - spikes)``. Given,
            it stands in for that second max-pool (one per step instead of two) and is
            advanced in place to ``max_pool(counts)``.

    Returns:
        The pooled spikes.
    """
    now = max_pool(pool, counts)
    if pooled is None:
        return now - max_pool(pool, counts - spikes)
    # Counts are whole numbers, so the difference and the sum below are exact.
    grown = now.sub_(pooled)
    pooled.add_(grown)
    return grown


def _params(
    pop: Population, config: RateConfig, dtype: torch.dtype, device: torch.device
) -> IFParams | LIFParams:
    if pop.neuron is not None:
        fields = pop.neuron._asdict()
        for key, value in fields.items():
            if isinstance(value, Tensor):
                fields[key] = value.to(device=device, dtype=dtype)
        return LIFParams(**fields)
    threshold = pop.threshold
    if isinstance(threshold, Tensor):
        threshold = threshold.to(device=device, dtype=dtype)
    return IFParams(threshold, config.reset)


def input_dither(pop: Population, config: RateConfig, input_name: str) -> float:
    """The amplitude of ``pop``'s fixed offsets on its initial membranes, in thresholds.

    Non-zero only for a spiking population the input ``input_name`` drives, when membranes do
    not start at 0; :meth:`RateConfig.dither_for` resolves the default by whether the input
    reaches it through a convolution.
    """
    from_input = [p for p in pop.projections if p.source == input_name]
    if not from_input or not config.initial_membrane or pop.is_output:
        return 0.0
    return config.dither_for(any(isinstance(op, Conv2d) for p in from_input for op in p.ops))


def _initial_state(
    pop: Population,
    params: IFParams | LIFParams,
    batch: int,
    config: RateConfig,
    dtype: torch.dtype,
    input_name: str,
    device: torch.device | None = None,
) -> IFState | LIFState:
    if isinstance(params, LIFParams):
        return lif_initial_state((batch, *pop.shape), dtype, device)
    v = torch.zeros((batch, *pop.shape), dtype=dtype, device=device)
    if config.initial_membrane and not pop.is_output:
        start: float | Tensor = config.initial_membrane
        dither = input_dither(pop, config, input_name)
        if dither:
            # Offsets drawn per population from its own seeded generator, so every simulator,
            # batch and population order gives the same ones; drawn on the CPU, so that every
            # device gets them too.
            generator = torch.Generator().manual_seed(config.seed)
            u = torch.rand(pop.shape, generator=generator, dtype=torch.float64, device="cpu")
            start = config.initial_membrane + (2 * u - 1).to(device=device, dtype=dtype) * dither
        v = v + params.threshold * start
    return IFState(v)


def _shares_memory(a: Tensor, b: Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _current(
    parts: Sequence[tuple[Projection, Tensor | None]],
    bias: Tensor | None,
    values: dict[str, Tensor],
) -> Tensor:
    """``z = sum of the projections' parts, in order, + bias``, added in place where it may be.

    A part is the projection of this step's source values, or its cached (constant) value; the
    sum is built in a part the projection has just made (never in a cached part or in a view
    of a source), so the sums are the same additions in the same order as ``z = z + part``.
    """
    z: Tensor | None = None
    owned = False
    for proj, cached in parts:
        source = values[proj.source]
        part = proj.apply(source) if cached is None else cached
        fresh = cached is None and not _shares_memory(part, source)
        if z is None:
            z, owned = part, fresh
        elif owned:
            z.add_(part)
        elif fresh:  # z is still the first part alone, and addition commutes exactly
            z, owned = part.add_(z), True
        else:
            z, owned = z + part, True
    assert z is not None
    if bias is not None:
        z = z.add_(bias) if owned else z + bias
    return z


def _run(
    net: SpikingNetwork,
    x: Tensor,
    checkpoints: Sequence[int],
    *,
    cache_input: bool,
    method: str,
) -> list[SimResult]:
    config = _config(net)
    x, input_clipped = _check_input(x, config)
    dtype, device = x.dtype, x.device
    batch = x.shape[0]
    inp, out = net.input, net.output
    early_exit = config.early_exit
    generator = torch.Generator().manual_seed(config.seed) if config.input == "poisson" else None
    params = {
        p.name: _params(p, config, dtype, device) for p in net.populations if p.kind == "neuron"
    }
    states = {
        name: _initial_state(net[name], par, batch, config, dtype, inp.name, device)
        for name, par in params.items()
    }
    biases = {
        p.name: p.bias.to(device=device, dtype=dtype)
        for p in net.populations
        if p.kind == "neuron" and p.bias is not None
    }
    # The output population never spikes; analog input neither. Their counts stay zero.
    counts = {p.name: x.new_zeros((batch, *p.shape)) for p in net.populations}
    # Pooling needs every spike of its source; without early exit, those are its counts.
    running = {
        name: x.new_zeros((batch, *net[name].shape)) if early_exit else counts[name]
        for name in {p.sources[0] for p in net.populations if p.kind == "maxpool"}
    }
    windows = {  # each pooling window's count: the largest count of its neurons so far
        p.name: x.new_zeros((batch, *p.shape)) for p in net.populations if p.kind == "maxpool"
    }
    # Spike buffers, written in place at every step: a step's spikes are read within it.
    spike_buffers = {
        name: x.new_empty((batch, *net[name].shape))
        for name, par in params.items()
        if isinstance(par, IFParams) and not net[name].is_output
    }
    values: dict[str, Tensor] = {inp.name: x}
    uniform: Tensor | None = None  # the Poisson input's draws
    if generator is not None:
        values[inp.name] = x.new_empty(x.shape)
    # The currents of the analog input, computed once: each projection of it is constant, and
    # so is the whole current of a population that only the input drives.
    cache = cache_input and generator is None
    currents: dict[str, list[tuple[Projection, Tensor | None]]] = {}
    constant: dict[str, Tensor] = {}
    with torch.no_grad():
        for pop in net.populations:
            if pop.kind != "neuron":
                continue
            currents[pop.name] = [
                (proj, proj.apply(x) if cache and proj.source == inp.name else None)
                for proj in pop.projections
            ]
            if all(cached is not None for _, cached in currents[pop.name]):
                constant[pop.name] = _current(currents[pop.name], biases.get(pop.name), values)
    reads_spikes = [
        proj.source != inp.name or config.input == "poisson" for proj in out.projections
    ]

    steps = max(checkpoints)
    wanted = set(checkpoints)
    results: dict[int, SimResult] = {}
    step_predictions = torch.zeros((steps, batch), dtype=torch.int64, device=device)
    active = torch.ones(batch, dtype=torch.bool, device=device)
    active_float = x.new_ones(batch)  # active as 0/1 multipliers of the counts
    sample_steps = torch.zeros(batch, dtype=torch.int64, device=device)
    predictions = torch.zeros(batch, dtype=torch.int64, device=device)
    final_membrane = x.new_zeros((batch, *out.shape))
    run_length = torch.zeros(batch, dtype=torch.int64, device=device)
    started = torch.zeros(batch, dtype=torch.bool, device=device)
    previous = torch.full((batch,), -1, dtype=torch.int64, device=device)
    view = (-1, *([1] * len(out.shape)))

    def snapshot(ran: int, prediction: Tensor, membrane: Tensor) -> SimResult:
        """The result had the run stopped after ``ran`` steps: active samples stop now."""
        steps_run = torch.where(active, ran, sample_steps)
        final = torch.where(active.view(view), membrane, final_membrane)
        if out.neuron is None:
            final = final / steps_run.to(dtype).view(view)
        return SimResult(
            method=method,
            spike_times={},
            predictions=torch.where(active, prediction, predictions),
            outputs=final * out.scale,
            steps=ran,
            clipped={inp.name: input_clipped},
            spike_counts={name: count.clone() for name, count in counts.items()},
            sample_steps=steps_run if early_exit else None,
            step_predictions=step_predictions[:ran].clone(),
        )

    def count(name: str, spikes: Tensor) -> None:
        if not early_exit:
            counts[name].add_(spikes)  # also the running count of a pooled source
            return
        counts[name].addcmul_(spikes, active_float.view(-1, *([1] * (spikes.ndim - 1))))
        if name in running:
            running[name].add_(spikes)

    with torch.no_grad():
        for t in range(steps):
            if generator is not None:
                # drawn on the CPU from the seeded generator: the same spikes on every device;
                # later draws refill the first one's tensor (uniform_ is torch.rand's draw)
                if uniform is None:
                    uniform = torch.rand(x.shape, generator=generator, device="cpu")
                else:
                    uniform.uniform_(generator=generator)
                torch.lt(uniform.to(device), x, out=values[inp.name])
                count(inp.name, values[inp.name])
            received = torch.zeros(batch, dtype=torch.bool, device=device) if early_exit else None
            for pop in net.populations[1:]:
                name = pop.name
                if pop.kind == "maxpool":
                    assert pop.pool is not None
                    source = pop.sources[0]
                    values[name] = pool_spikes(
                        pop.pool, values[source], running[source], pooled=windows[name]
                    )
                    count(name, values[name])
                    continue
                z = constant.get(name)
                if z is None:
                    z = _current(currents[name], biases.get(name), values)
                par, state = params[name], states[name]
                if pop.is_output:
                    if isinstance(par, LIFParams):
                        assert isinstance(state, LIFState)
                        states[name] = lif_step(z, state, par)[1]
                    else:
                        assert isinstance(state, IFState)
                        states[name] = accumulate_step(z, state, out=state.v)
                    if received is not None:
                        for proj, spiking in zip(pop.projections, reads_spikes, strict=True):
                            if spiking:
                                received |= values[proj.source].flatten(1).any(dim=1)
                            else:
                                received[:] = True
                    continue
                if isinstance(par, LIFParams):
                    assert isinstance(state, LIFState)
                    values[name], states[name] = lif_step(z, state, par)
                else:
                    assert isinstance(state, IFState)
                    values[name], states[name] = if_step(z, state, par, out=spike_buffers[name])
                count(name, values[name])
            membrane = states[out.name].v
            if received is None:
                prediction = torch.argmax(membrane.flatten(1), dim=1, out=step_predictions[t])
            else:
                prediction = membrane.flatten(1).argmax(dim=1)
                started_before = started.clone()
                started |= received
                same = started_before & (prediction == previous)
                run_length = torch.where(same, run_length + 1, started.long())
                leaving = active & (run_length >= early_exit)
                if bool(leaving.any()):
                    sample_steps[leaving] = t + 1
                    predictions[leaving] = prediction[leaving]
                    final_membrane[leaving] = membrane[leaving]
                    active &= ~leaving
                    active_float.copy_(active)
                torch.where(active, prediction, predictions, out=step_predictions[t])
                previous = prediction
            if t + 1 in wanted:
                results[t + 1] = snapshot(t + 1, prediction, membrane)
            if early_exit and not bool(active.any()):
                step_predictions[t + 1 :] = predictions
                for later in wanted:
                    if later > t + 1:
                        results[later] = snapshot(later, prediction, membrane)
                break
    return [results[t] for t in checkpoints]


def simulate_closed_form(net: SpikingNetwork, x: Tensor) -> SimResult:
    """Simulate with the analog input's projections computed once per sample.

    Args:
        net: a rate-coded network.
        x: input batch, ``(B, *net.input_shape)``.

    Returns:
        The simulation result (spike counts per population, predictions after every step).
    """
    return _run(net, x, (_config(net).steps,), cache_input=True, method="closed_form")[0]


def simulate_stepped(net: SpikingNetwork, x: Tensor) -> SimResult:
    """Simulate with every projection recomputed at every step (the reference).

    Args:
        net: a rate-coded network.
        x: input batch, ``(B, *net.input_shape)``.

    Returns:
        The simulation result.
    """
    return _run(net, x, (_config(net).steps,), cache_input=False, method="stepped")[0]


def simulate_checkpoints(
    net: SpikingNetwork, x: Tensor, steps: Sequence[int], *, method: str = "closed_form"
) -> list[SimResult]:
    """Simulate once up to ``max(steps)`` and return the result of every run length in ``steps``.

    The result for ``t`` is the one a network converted with ``RateConfig(steps=t)`` (and
    otherwise the same options) gives: samples still running after step ``t`` stop there,
    and spike counts, latencies and predictions are those of step ``t``. Accuracy, spikes and
    operations against time steps therefore cost one simulation.

    Args:
        net: a rate-coded network (its own ``steps`` is ignored).
        x: input batch, ``(B, *net.input_shape)``.
        steps: run lengths, each >= 1.
        method: ``"closed_form"`` or ``"stepped"``.

    Returns:
        One result per entry of ``steps``, in that order.
    """
    _config(net)  # a rate network
    checkpoints = tuple(steps)
    if not checkpoints or any(
        isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in checkpoints
    ):
        raise ConfigError(f"steps must be a non-empty sequence of integers >= 1, got {steps!r}")
    if method not in ("closed_form", "stepped"):
        raise ConfigError(f"method={method!r} is not one of 'closed_form', 'stepped'")
    if x.device != net.device:
        x = x.to(net.device)
    return _run(net, x, checkpoints, cache_input=method == "closed_form", method=method)
