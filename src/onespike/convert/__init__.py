"""``convert(graph, config)``: one verb, dispatching on the configuration's type."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from onespike.convert.config import HybridConfig, RateConfig, TTFSConfig
from onespike.convert.hybrid import convert_hybrid
from onespike.convert.rate import convert_rate
from onespike.convert.ttfs import convert_ttfs
from onespike.errors import ConfigError
from onespike.graph import Graph
from onespike.network import SpikingNetwork

__all__ = ["HybridConfig", "RateConfig", "TTFSConfig", "convert"]

_CONVERTERS: dict[type, Callable[[Graph, Any], SpikingNetwork]] = {
    TTFSConfig: convert_ttfs,
    RateConfig: convert_rate,
    HybridConfig: convert_hybrid,
}


def convert(graph: Graph, config: Any, *, calibration: Tensor | None = None) -> SpikingNetwork:
    """Convert an extracted graph to a spiking network with the method ``config`` names.

    Args:
        graph: from :func:`onespike.extract` (and usually :func:`onespike.normalize`).
        config: a method configuration, e.g. :class:`TTFSConfig`.
        calibration: hybrid only: images in ``[0, 1]`` that set the per-layer thresholds and
            spike values (:func:`onespike.convert.hybrid.calibrate`).

    Returns:
        The spiking network.
    """
    if not isinstance(graph, Graph):
        raise ConfigError(
            f"convert expects a onespike Graph, got {type(graph).__name__}; call "
            "onespike.extract(model, example_input) first"
        )
    handler = _CONVERTERS.get(type(config))
    if handler is None:
        names = ", ".join(t.__name__ for t in _CONVERTERS)
        raise ConfigError(f"unknown conversion config {type(config).__name__}; use one of {names}")
    if isinstance(config, HybridConfig):
        return convert_hybrid(graph, config, calibration)
    if calibration is not None:
        raise ConfigError(
            f"calibration= sets the thresholds of hybrid networks; a {type(config).__name__} "
            "network is calibrated by onespike.normalize: drop calibration="
        )
    return handler(graph, config)
