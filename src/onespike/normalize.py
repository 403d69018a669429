"""Data-based normalisation: one activation scale per population.

For every neuron population the scale ``lambda`` is the maximum, or a high percentile, of its
ANN activations over calibration data (Rueckauer et al. 2017, "Conversion of
Continuous-Valued Deep Networks to Efficient Event-Driven Networks for Image Classification",
doi 10.3389/fnins.2017.00682). A percentile below 100 ignores rare outliers: it clips a few
activations but gives every other value a finer place on the spike code's grid. All scales
come from one pass of the un-normalised ANN (:func:`onespike.graph.run_graph`, recording every
node); because positive scaling commutes with ReLU and max pooling, this equals the
layer-by-layer procedure in which each layer is measured with its sources already normalised.
A neuron population is named after the graph node whose rectified value it carries (its ReLU,
or the layer before a max pooling or the output), so its activations are read off that node.

The output population's scale uses the positive part of its logits: a spike code can only
represent non-negative values, and the class is read from the largest one.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

from onespike._progress import Stage
from onespike.errors import CalibrationWarning, ConfigError, ShapeError
from onespike.graph import Graph, first_tensor, run_graph
from onespike.network import populations

__all__ = ["activation_scales", "normalize"]

# Block size of the bound on a batch's k-th largest value (see _top_values).
_BLOCK = 64


def _as_input(item: Tensor | tuple[Tensor, ...] | list[Tensor]) -> Tensor:
    if isinstance(item, Tensor):
        return item
    if isinstance(item, (tuple, list)) and item and isinstance(item[0], Tensor):
        return item[0]
    raise ShapeError(
        "normalize expects batches of input tensors or (input, label) pairs, got "
        f"{type(item).__name__}"
    )


def _top_values(values: Tensor, k: int, above: float) -> Tensor:
    """The values greater than ``above`` that can be among the ``k`` largest of ``values``.

    The ``k`` largest maxima of blocks of ``_BLOCK`` values are ``k`` actual values, so the
    ``k``-th largest value is at least the smallest of them: only blocks whose maximum reaches
    that bound are looked at, one cheap reduction instead of a selection over every value.
    """
    flat = values.reshape(-1)
    whole = flat.numel() - flat.numel() % _BLOCK
    if whole >= _BLOCK * k:
        blocks = flat[:whole].view(-1, _BLOCK)
        maxima = blocks.amax(dim=1)
        bound = torch.topk(maxima, k, sorted=False).values.min()
        keep = (maxima >= bound) & (maxima > above)
        flat = torch.cat([blocks[keep].reshape(-1), flat[whole:]])
        flat = flat[(flat >= bound) & (flat > above)]
    else:
        flat = flat[flat > above]
    return flat


def _percentile(top: Tensor, count: int, percentile: float) -> float:
    """``np.percentile(values, percentile)`` (linear interpolation) of ``count`` rectified
    values whose largest are ``top``; the others are 0 or below the two order statistics it
    interpolates between.

    The arithmetic is numpy's own (index ``(n - 1) * (p / 100)``; ``a + (b - a) g`` below the
    midpoint, ``b - (b - a)(1 - g)`` from it, in float32), so the result equals np.percentile
    of all the values (the tests hold it to that), without building them.
    """
    virtual = _virtual_index(count, percentile)
    ordered = np.sort(top.cpu().numpy().astype(np.float32))[::-1]  # descending

    def at(position: int) -> np.float32:
        rank = count - 1 - position  # counted from the largest
        return ordered[rank] if rank < ordered.size else np.float32(0.0)

    if virtual >= count - 1:
        return float(at(count - 1))
    low = int(np.floor(virtual))
    gamma = float(virtual - low)  # a Python float: numpy then interpolates in float32
    a, b = at(low), at(low + 1)
    diff = b - a
    value = b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma
    return float(value)


def _virtual_index(count: int, percentile: float) -> float:
    """numpy's position of the percentile among ``count`` sorted values (linear method)."""
    return float((count - 1) * np.true_divide(percentile, 100))


def activation_scales(
    graph: Graph,
    batches: Iterable[Tensor | tuple[Tensor, ...]],
    *,
    percentile: float = 99.99,
    progress: bool = False,
    strict: bool = False,
) -> dict[str, float]:
    """Measure per-population activation scales of the ANN described by ``graph``.

    The percentile is exact, over every activation of every calibration sample: one pass of
    the ANN keeps, per population, only the largest ``(1 - percentile / 100)`` share of the
    values (plus one), which is all the percentile depends on. The number of values must be
    known before the pass, so an iterator of batches is first collected into a list (the
    batches are held in memory; pass a list to decide that yourself).

    Args:
        graph: extracted graph (any existing scales are ignored).
        batches: input tensors or ``(input, label)`` pairs.
        percentile: in ``(0, 100]``; 100 takes the maximum.
        progress: show a progress bar over the batches.
        strict: refuse calibration data on which a population never activates, instead of
            warning.

    Returns:
        Population name to scale (strictly positive). A population that never activates on
        the data gets scale 1 (any positive scale is exact for values that are all 0), and a
        :class:`~onespike.errors.CalibrationWarning` names it: on other inputs it may well
        activate, and its code's range is then a guess.

    Raises:
        ShapeError: no samples, or a batch holds NaN or infinite values.
        ConfigError: ``strict`` and some population never activated.
    """
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)):
        raise ConfigError(f"percentile must be a number in (0, 100], got {percentile!r}")
    if not 0.0 < percentile <= 100.0:
        raise ConfigError(f"percentile must be in (0, 100], got {percentile}")
    items = batches if isinstance(batches, Sequence) else list(batches)
    inputs = [_as_input(item) for item in items]
    for index, x in enumerate(inputs):
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            bad = int((~torch.isfinite(x)).sum())
            raise ShapeError(
                f"calibration batch {index} holds {bad} NaN or infinite value(s); every scale "
                "would be wrong. Clean the data (e.g. torch.nan_to_num) or drop those samples"
            )
    samples = sum(int(x.shape[0]) for x in inputs)
    if samples == 0:
        raise ShapeError("normalize received no batches; pass calibration data")
    pops = [p for p in populations(graph.with_scales({})) if p.kind == "neuron"]
    counts = {p.name: samples * p.size for p in pops}
    # the percentile interpolates between positions floor(i) and floor(i) + 1 from the bottom,
    # i = (count - 1) p / 100: those, and every value above them, are the top `need` values
    need = {
        name: count - int(np.floor((count - 1) * percentile / 100.0))
        for name, count in counts.items()
    }
    like = first_tensor(graph)
    device = torch.device("cpu") if like is None else like.device
    dtype = like.dtype if like is not None and like.is_floating_point() else torch.float32
    top = {p.name: torch.empty(0, device=device) for p in pops}
    bar = Stage("normalize", total=len(inputs), unit="batch", enabled=progress)
    with bar, torch.no_grad():
        for x in inputs:
            bar.update(1)
            _, acts = run_graph(graph, x.to(device=device, dtype=dtype), record=True)
            for pop in pops:
                k, kept = need[pop.name], top[pop.name]
                above = float(kept.min()) if kept.numel() >= k else 0.0
                values = _top_values(acts[pop.name].float(), k, above)
                merged = torch.cat([kept, values])
                if merged.numel() > k:
                    merged = torch.topk(merged, k, sorted=False).values
                top[pop.name] = merged
        bar.close(f"{samples:,} calibration samples")
    scales: dict[str, float] = {}
    silent = []
    for pop in pops:
        value = _percentile(top[pop.name], counts[pop.name], percentile)
        if not value > 0.0:
            silent.append(pop.name)
        scales[pop.name] = value if value > 0.0 else 1.0
    if silent:
        text = (
            f"{len(silent)} of {len(pops)} populations never activate on the calibration data "
            f"({samples} samples), so their scale is set to 1, a guess: "
            + ", ".join(silent[:10])
            + (f" and {len(silent) - 10} more" if len(silent) > 10 else "")
        )
        if strict:
            raise ConfigError(text + "; calibrate with more (or more varied) data")
        warnings.warn(text, CalibrationWarning, stacklevel=3)
    return scales


def normalize(
    graph: Graph,
    batches: Iterable[Tensor | tuple[Tensor, ...]],
    *,
    percentile: float = 99.99,
    progress: bool = False,
    strict: bool = False,
) -> Graph:
    """Return ``graph`` with per-population activation scales from data.

    Args:
        graph: extracted graph.
        batches: calibration inputs, as tensors or ``(input, label)`` pairs (an iterator is
            collected into a list first: see :func:`activation_scales`).
        percentile: in ``(0, 100]``; 100 uses the maximum (Rueckauer et al. 2017).
        progress: show a progress bar over the calibration batches.
        strict: refuse data on which some population never activates (by default a
            :class:`~onespike.errors.CalibrationWarning` names them).

    Returns:
        A new graph whose ``scales`` hold one entry per neuron population.
    """
    scales = activation_scales(
        graph, batches, percentile=percentile, progress=progress, strict=strict
    )
    return graph.with_scales(scales)
