"""Neuron dynamics as pure step functions: ``step(input, state, params) -> (spikes, state)``.

Each equation is written once here; the stepped simulators loop over these functions and the
closed-form simulators are tested against them.

TTFS neuron (Quartz, arXiv 2309.16795, as onespike implements it). State: current ``i`` and
membrane ``v``, no leak. At every step, in this order::

    v <- v + i                  # integrate the current of the previous step
    i <- i + d                  # synaptic events arriving now (sum of weights)
    i <- 1          if counter  # counter synapse at the readout time: adds 1 - i
    spike           if enabled and not fired and (v >= threshold or force)

An input spike arriving at time ``t_j`` therefore contributes ``w_j * (t - t_j)`` to ``v(t)``.
Spiking is enabled from the readout time on (the counter event opens the output phase; before
it, the neuron only integrates). This is onespike's choice where Quartz leaves a neuron free to
fire during its input phase: with it, a value above the code range is clipped to the top of
the range instead of firing at a time that decodes to a wrong value, and the network computes
the clipped, quantised ANN for every input. ``force`` is the rectifier event.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = [
    "IFParams",
    "IFState",
    "LIFParams",
    "LIFState",
    "SingleSpikeParams",
    "SingleSpikeState",
    "TTFSParams",
    "TTFSState",
    "accumulate_step",
    "fire_once",
    "if_step",
    "lif_initial_state",
    "lif_step",
    "single_spike_initial_state",
    "single_spike_step",
    "ttfs_initial_state",
    "ttfs_step",
]


class TTFSState(NamedTuple):
    """State of a TTFS population: current, membrane, and whether each neuron has fired."""

    i: Tensor
    v: Tensor
    fired: Tensor


class TTFSParams(NamedTuple):
    """Per-step parameters of a TTFS population.

    Attributes:
        threshold: firing threshold (``L - 1/2`` for round-half-up decoding).
        counter: the counter synapse event arrives at this step (readout time).
        enabled: the output phase is open at this step.
        force: the rectifier event arrives at this step.
    """

    threshold: float
    counter: bool = False
    enabled: bool = False
    force: bool = False


def ttfs_initial_state(
    shape: tuple[int, ...],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> TTFSState:
    """All-zero state for a population of ``shape`` (batch included), on ``device``."""
    return TTFSState(
        torch.zeros(shape, dtype=dtype, device=device),
        torch.zeros(shape, dtype=dtype, device=device),
        torch.zeros(shape, dtype=torch.bool, device=device),
    )


def ttfs_step(d: Tensor | None, state: TTFSState, params: TTFSParams) -> tuple[Tensor, TTFSState]:
    """Advance a TTFS population by one time step.

    Args:
        d: summed weights of the synaptic events arriving at this step, or None when no event
            arrives (the current stays as it is, as with ``d = 0``, without a pass over it).
        state: state after the previous step.
        params: this step's threshold and event flags.

    Returns:
        ``(spikes, new_state)``, ``spikes`` a bool tensor: neurons firing at this step (while
        spiking is not enabled, an all-False view that takes no memory per neuron).
    """
    v = state.v + state.i
    i = state.i if d is None else state.i + d
    if params.counter:
        i = torch.ones_like(i)
    if not params.enabled:
        silent = torch.zeros((), dtype=torch.bool, device=state.fired.device)
        return silent.expand_as(state.fired), TTFSState(i, v, state.fired)
    crossing = torch.ones_like(state.fired) if params.force else v >= params.threshold
    spikes = crossing & ~state.fired
    return spikes, TTFSState(i, v, state.fired | spikes)


# Integrate-and-fire, for rate codes --------------------------------------------------------
#
# State: membrane ``v``, no leak, no refractory period. At every step::
#
#     v <- v + z                      # z: this step's input current (weighted spikes + bias)
#     spike  if v >= threshold
#     v <- v - threshold  (spiked)    # reset by subtraction, or
#     v <- 0              (spiked)    # reset to zero
#
# A neuron emits at most one spike per step. The non-spiking output layer only integrates.


class IFState(NamedTuple):
    """State of an integrate-and-fire population: the membrane potential."""

    v: Tensor


class IFParams(NamedTuple):
    """Parameters of an integrate-and-fire population.

    Attributes:
        threshold: firing threshold, a float or a tensor broadcastable to the membrane.
        reset: ``"subtract"`` or ``"zero"``.
    """

    threshold: float | Tensor
    reset: str = "subtract"


def if_step(
    z: Tensor, state: IFState, params: IFParams, *, out: Tensor | None = None
) -> tuple[Tensor, IFState]:
    """Advance an integrate-and-fire population by one time step.

    Args:
        z: input current arriving at this step.
        state: state after the previous step.
        params: threshold and reset rule.
        out: a spike buffer shaped like the membrane. Given, the step runs in place: the
            membrane of ``state`` is updated, the spikes are written into ``out``, and both
            are returned (nothing is allocated, except a 0/1 mask with ``reset="zero"``).
            ``None``: ``state`` is left untouched and new tensors are returned.

    Returns:
        ``(spikes, new_state)``, ``spikes`` a float tensor of zeros and ones.
    """
    if out is None:
        v = state.v + z
        out = torch.empty_like(v)
    else:
        v = state.v.add_(z)
    spikes = torch.ge(v, params.threshold, out=out)
    if params.reset != "subtract":
        v.masked_fill_(spikes.bool(), 0.0)
    elif isinstance(params.threshold, Tensor):
        # spikes are 0 or 1, so spikes * threshold is exact: v - spikes * threshold
        v.addcmul_(spikes, params.threshold, value=-1.0)
    else:
        v.sub_(spikes, alpha=params.threshold)
    return spikes, IFState(v)


def accumulate_step(z: Tensor, state: IFState, *, out: Tensor | None = None) -> IFState:
    """A non-spiking readout neuron: the membrane sums its input current, ``v <- v + z``.

    ``out`` receives the new membrane (``state.v`` itself: an update in place); ``None``: a
    new tensor.
    """
    return IFState(torch.add(state.v, z, out=out))


# Single-spike integrate-and-fire, for the hybrid code --------------------------------------
#
# State: membrane ``v`` and a 0/1 flag ``fired``. At every step::
#
#     v <- leak * v + z                    # z: this step's input current (weighted inputs + bias)
#     spike  if v >= threshold and not fired
#     fired <- fired or spike
#
# No reset: after its spike a neuron is silent for the rest of the inference, so a reset would
# change nothing it emits, and without one the membrane stays a linear function of the inputs
# (the output population's membrane is the hybrid code's readout). Max pooling of such spikes
# is "first spike wins": a window fires once, at the first step any of its neurons fires.


class SingleSpikeState(NamedTuple):
    """State of a single-spike population: membrane and a 0/1 float "has fired" flag."""

    v: Tensor
    fired: Tensor


class SingleSpikeParams(NamedTuple):
    """Parameters of a single-spike integrate-and-fire population.

    Attributes:
        threshold: firing threshold, a float or a tensor broadcastable to the membrane.
        leak: membrane decay per step in ``(0, 1]`` (1: integrate-and-fire without leak).
        crossing: computes the 0/1 threshold crossing ``H(v - threshold)`` as
            ``crossing(v, threshold)``; ``None`` is the plain comparison. Training passes a
            function with the same forward value and a surrogate gradient.
    """

    threshold: float | Tensor
    leak: float = 1.0
    crossing: Callable[[Tensor, float | Tensor], Tensor] | None = None


def single_spike_initial_state(
    shape: tuple[int, ...],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> SingleSpikeState:
    """Membrane 0 and nothing fired, for a population of ``shape`` (batch included)."""
    return SingleSpikeState(
        torch.zeros(shape, dtype=dtype, device=device),
        torch.zeros(shape, dtype=dtype, device=device),
    )


def fire_once(candidates: Tensor, fired: Tensor) -> tuple[Tensor, Tensor]:
    """Let through the 0/1 ``candidates`` of neurons that have not fired yet.

    Args:
        candidates: 0/1 float tensor, the neurons that would fire at this step.
        fired: 0/1 float tensor, the neurons that fired at an earlier step.

    Returns:
        ``(spikes, fired)``: this step's spikes and the updated flag. The flag is a constant
        for autograd: a gradient never flows through "has already fired".
    """
    spikes = candidates * (1.0 - fired)
    return spikes, fired + spikes.detach()


def single_spike_step(
    z: Tensor, state: SingleSpikeState, params: SingleSpikeParams
) -> tuple[Tensor, SingleSpikeState]:
    """Advance a single-spike integrate-and-fire population by one time step.

    Args:
        z: input current arriving at this step.
        state: state after the previous step.
        params: threshold, leak and crossing function.

    Returns:
        ``(spikes, new_state)``, ``spikes`` a float tensor of zeros and ones; a neuron spikes
        at most once per inference.
    """
    v = state.v + z if params.leak == 1.0 else params.leak * state.v + z
    if params.crossing is None:
        crossing = (v >= params.threshold).to(v.dtype)
    else:
        crossing = params.crossing(v, params.threshold)
    spikes, fired = fire_once(crossing, state.fired)
    return spikes, SingleSpikeState(v, fired)


# Leaky integrate-and-fire, for networks imported from NIR ------------------------------------
#
# NIR's neurons (Pedersen et al., Nature Communications 2024, doi 10.1038/s41467-024-52259-9)
# stepped with forward Euler at time step ``dt``; ``alpha = dt / tau_mem``, ``beta = dt / tau_syn``
# and ``z`` is this step's input (weighted spikes plus bias). At every step::
#
#     i <- i + beta * (w_in * z - i)              # CubaLIF only: the synaptic current
#     x <- i (CubaLIF) or z (otherwise)
#     v <- v + alpha * ((r * x + v_leak) - v)     # LIF, CubaLIF, LI
#     v <- v + r * x                              # IF (alpha None): no leak, no dt
#     v <- r * x                                  # Threshold (stateless): no memory
#     spike  if v >= threshold                    # (the importer rounds NIR's v > v_th up)
#     v <- v_reset        (spiked)
#
# IF takes each step's input as already integrated over the step (a spike is an impulse), as
# onespike's own rate networks, Norse and sinabs do; the leaky models apply the step to the
# whole right-hand side of the ODE, as Norse's LIFBox and LIBox cells do (same operation order).
# A neuron emits at most one spike per step; LI only integrates (``spiking=False``).


class LIFState(NamedTuple):
    """State of a leaky integrate-and-fire population: membrane ``v`` and current ``i``."""

    v: Tensor
    i: Tensor


class LIFParams(NamedTuple):
    """Parameters of a leaky integrate-and-fire population (scalars or broadcastable tensors).

    Attributes:
        threshold: a neuron fires when ``v >= threshold``.
        alpha: ``dt / tau_mem``; ``None``: no leak (integrate-and-fire).
        v_leak: resting potential.
        r: input resistance.
        v_reset: membrane after a spike.
        beta: ``dt / tau_syn`` of a current-based synapse (CubaLIF); ``None``: none.
        w_in: input weight of the current-based synapse.
        spiking: False for a leaky integrator (LI) that never fires.
        stateless: True for a threshold unit whose membrane is its input (no memory).
    """

    threshold: float | Tensor
    alpha: float | Tensor | None = None
    v_leak: float | Tensor = 0.0
    r: float | Tensor = 1.0
    v_reset: float | Tensor = 0.0
    beta: float | Tensor | None = None
    w_in: float | Tensor = 1.0
    spiking: bool = True
    stateless: bool = False


def lif_initial_state(
    shape: tuple[int, ...],
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> LIFState:
    """Membrane and current 0 for a population of ``shape`` (batch included)."""
    return LIFState(
        torch.zeros(shape, dtype=dtype, device=device),
        torch.zeros(shape, dtype=dtype, device=device),
    )


def _times(a: float | Tensor, x: Tensor) -> Tensor:
    return x if isinstance(a, float) and a == 1.0 else a * x


def lif_step(z: Tensor, state: LIFState, params: LIFParams) -> tuple[Tensor, LIFState]:
    """Advance a leaky (or current-based, or non-leaky) integrate-and-fire population.

    Args:
        z: input current arriving at this step.
        state: state after the previous step.
        params: the neuron constants.

    Returns:
        ``(spikes, new_state)``, ``spikes`` a float tensor of zeros and ones (all zero when
        ``params.spiking`` is False).
    """
    i = state.i
    x = z
    if params.beta is not None:
        i = i + params.beta * (_times(params.w_in, z) - i)
        x = i
    x = _times(params.r, x)
    if params.stateless:
        v = x
    elif params.alpha is None:
        v = state.v + x
    else:
        v = state.v + params.alpha * ((x + params.v_leak) - state.v)
    if not params.spiking:
        return torch.zeros_like(v), LIFState(v, i)
    fired = v >= params.threshold
    spikes = fired.to(v.dtype)
    reset = torch.as_tensor(params.v_reset, dtype=v.dtype, device=v.device)
    return spikes, LIFState(torch.where(fired, reset, v), i)
