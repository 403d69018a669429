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
from onespike.network import SpikingNetwork, populations

__all__ = ["HybridConfig", "RateConfig", "TTFSConfig", "convert"]

_CONVERTERS: dict[type, Callable[[Graph, Any], SpikingNetwork]] = {
    TTFSConfig: convert_ttfs,
    RateConfig: convert_rate,
    HybridConfig: convert_hybrid,
}


def convert(
    graph: Graph,
    config: Any,
    *,
    normalized: bool = True,
    calibration: Tensor | None = None,
) -> SpikingNetwork:
    """Convert an extracted graph to a spiking network with the method ``config`` names.

    Args:
        graph: from :func:`onespike.normalize` (an extracted graph with activation scales).
        config: a method configuration, e.g. :class:`TTFSConfig`.
        normalized: the graph must carry a scale for every neuron population (the default);
            a graph that was never normalised would quietly run with scale 1 everywhere,
            clipping every activation above 1. Pass ``normalized=False`` to convert such a
            graph on purpose (scale 1 where none is set).
        calibration: hybrid only: images in ``[0, 1]`` that set the per-layer thresholds and
            spike values (:func:`onespike.convert.hybrid.calibrate`).

    Returns:
        The spiking network.

    Raises:
        ConfigError: an unknown config, or ``normalized`` and populations without a scale.
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
    if normalized:
        missing = [
            p.name
            for p in populations(graph.with_scales({}))
            if p.kind == "neuron" and p.name not in graph.scales
        ]
        if missing:
            listed = ", ".join(missing[:8]) + (
                f" and {len(missing) - 8} more" if len(missing) > 8 else ""
            )
            raise ConfigError(
                f"the graph has no activation scale for {len(missing)} population(s) ({listed}): "
                "it was not normalised. Call onespike.normalize(graph, calibration_batches) "
                "first, or pass normalized=False to convert with scale 1 where none is set"
            )
    if isinstance(config, HybridConfig):
        return convert_hybrid(graph, config, calibration)
    if calibration is not None:
        raise ConfigError(
            f"calibration= sets the thresholds of hybrid networks; a {type(config).__name__} "
            "network is calibrated by onespike.normalize: drop calibration="
        )
    return handler(graph, config)
