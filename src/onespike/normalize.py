"""Data-based normalisation: one activation scale per population.

For every neuron population the scale ``lambda`` is the maximum, or a high percentile, of its
ANN activations over calibration data (Rueckauer et al. 2017, "Conversion of
Continuous-Valued Deep Networks to Efficient Event-Driven Networks for Image Classification",
doi 10.3389/fnins.2017.00682). A percentile below 100 ignores rare outliers: it clips a few
activations but gives every other value a finer place on the spike code's grid. All scales
come from one pass of the un-normalised ANN; because positive scaling commutes with ReLU and
max pooling, this equals the layer-by-layer procedure in which each layer is measured with
its sources already normalised.

The output population's scale uses the positive part of its logits: a spike code can only
represent non-negative values, and the class is read from the largest one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from onespike.errors import ConfigError, ShapeError
from onespike.graph import Graph
from onespike.network import forward_populations, populations

__all__ = ["activation_scales", "normalize"]

# Values kept per population for percentile estimation; beyond this, a seeded uniform
# subsample is kept (the estimate of a 99.99th percentile from 4M values is stable).
_MAX_SAMPLES = 4_000_000


def _as_input(item: Tensor | tuple[Tensor, ...] | list[Tensor]) -> Tensor:
    if isinstance(item, Tensor):
        return item
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        return item[0]
    raise ShapeError(
        "normalize expects batches of input tensors or (input, label) pairs, got "
        f"{type(item).__name__}"
    )


def activation_scales(
    graph: Graph,
    batches: Iterable[Tensor | tuple[Tensor, ...]],
    *,
    percentile: float = 99.99,
    seed: int = 0,
) -> dict[str, float]:
    """Measure per-population activation scales of the ANN described by ``graph``.

    Args:
        graph: extracted graph (any existing scales are ignored).
        batches: input tensors or ``(input, label)`` pairs.
        percentile: in ``(0, 100]``; 100 takes the maximum.
        seed: seed of the subsample used when there are very many activations.

    Returns:
        Population name to scale (strictly positive).
    """
    if not 0.0 < percentile <= 100.0:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
    all_pops = populations(graph.with_scales({}))
    pops = [p for p in all_pops if p.kind == "neuron"]
    samples: dict[str, list[np.ndarray]] = {p.name: [] for p in pops}
    kept = dict.fromkeys(samples, 0)
    maxima = dict.fromkeys(samples, 0.0)
    rng = np.random.default_rng(seed)
    seen = 0
    with torch.no_grad():
        for item in batches:
            x = _as_input(item).float()
            seen += int(x.shape[0])
            acts = forward_populations(all_pops, x)
            for pop in pops:
                values = torch.relu(acts[pop.name]).flatten()
                maxima[pop.name] = max(maxima[pop.name], float(values.max()))
                if percentile < 100.0:
                    arr = values.numpy()
                    budget = _MAX_SAMPLES // 8
                    if arr.size > budget:
                        arr = rng.choice(arr, size=budget, replace=False)
                    if kept[pop.name] < _MAX_SAMPLES:
                        samples[pop.name].append(arr.astype(np.float32, copy=False))
                        kept[pop.name] += arr.size
    if seen == 0:
        raise ShapeError("normalize received no batches; pass calibration data")
    scales: dict[str, float] = {}
    for pop in pops:
        if percentile < 100.0 and samples[pop.name]:
            value = float(np.percentile(np.concatenate(samples[pop.name]), percentile))
        else:
            value = maxima[pop.name]
        # A population that never activates keeps scale 1: any positive value is exact for it.
        scales[pop.name] = value if value > 0.0 else 1.0
    return scales


def normalize(
    graph: Graph,
    batches: Iterable[Tensor | tuple[Tensor, ...]],
    *,
    percentile: float = 99.99,
    seed: int = 0,
) -> Graph:
    """Return ``graph`` with per-population activation scales from data.

    Args:
        graph: extracted graph.
        batches: calibration inputs, as tensors or ``(input, label)`` pairs.
        percentile: in ``(0, 100]``; 100 uses the maximum (Rueckauer et al. 2017).
        seed: seed of the subsample used for very large activation sets.

    Returns:
        A new graph whose ``scales`` hold one entry per neuron population.
    """
    return graph.with_scales(activation_scales(graph, batches, percentile=percentile, seed=seed))
