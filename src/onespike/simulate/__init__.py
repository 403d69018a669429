"""``simulate(net, x, method)``: run a spiking network on a batch.

``method="stepped"`` is the reference: it loops over time steps and calls the neuron step
functions. ``method="closed_form"`` is the fast path that computes the same spikes without a
time loop. Both return a :class:`SimResult` and are tested to agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Literal

from torch import Tensor

from onespike.convert.config import HybridConfig, RateConfig, TTFSConfig
from onespike.errors import ConfigError, ShapeError
from onespike.network import SpikingNetwork
from onespike.simulate import hybrid, rate, ttfs
from onespike.simulate.result import SimResult

__all__ = ["SimResult", "simulate"]

Method = Literal["closed_form", "stepped"]
_SIMULATORS: dict[type, dict[str, Callable[[SpikingNetwork, Tensor], SimResult]]] = {
    TTFSConfig: {"closed_form": ttfs.simulate_closed_form, "stepped": ttfs.simulate_stepped},
    RateConfig: {"closed_form": rate.simulate_closed_form, "stepped": rate.simulate_stepped},
    HybridConfig: {
        "closed_form": hybrid.simulate_closed_form,
        "stepped": hybrid.simulate_stepped,
    },
}


def simulate(net: SpikingNetwork, x: Tensor, method: Method = "closed_form") -> SimResult:
    """Simulate ``net`` on the input batch ``x``.

    Args:
        net: from :func:`onespike.convert`.
        x: ``(B, *net.input_shape)`` input batch; moved to ``net.device`` when it lies elsewhere.
            Every tensor the simulation creates is on that device and of ``x``'s dtype.
        method: ``"closed_form"`` (fast) or ``"stepped"`` (reference, every event real).

    Returns:
        Spike times, decoded outputs and predictions.
    """
    handlers = _SIMULATORS.get(type(net.config))
    if handlers is None:
        raise ConfigError(f"no simulator for {type(net.config).__name__}")
    if method not in handlers:
        raise ConfigError(f"method={method!r} is not one of {', '.join(map(repr, handlers))}")
    if not isinstance(x, Tensor):
        raise ShapeError(
            f"simulate needs the input batch as a torch.Tensor, got {type(x).__name__}; "
            "e.g. torch.stack(images) or torch.as_tensor(array)"
        )
    if x.ndim != len(net.input_shape) + 1 or tuple(x.shape[1:]) != net.input_shape:
        raise ShapeError(
            f"input of shape {tuple(x.shape)} does not match the network: expected "
            f"(batch, {', '.join(map(str, net.input_shape))})"
        )
    if x.shape[0] == 0:
        raise ShapeError("simulate received an empty batch (0 samples); pass at least one")
    if not x.is_floating_point():
        x = x.float()
    device = net.device
    if x.device != device:
        x = x.to(device)  # e.g. a CPU dataset batch for a network on a GPU
    result = handlers[method](net, x.detach())
    logits = result.logits if result.logits is not None else result.outputs
    return replace(result, logits=logits, config=net.config)
