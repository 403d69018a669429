"""Exact TTFS conversion (Quartz: Lenz, Orchard, Sheik, arXiv 2309.16795), onespike's timing.

Let ``L = T - 1``. A value ``x`` in ``[0, 1]`` is carried by one spike and the integer code
``k = floor(L x + 1/2)``. Every population has a readout time ``r = L * depth`` and an output
window ``[r, r + L]``; a neuron with code ``k`` fires at ``r + L - k`` (the input population
has depth 0, so pixel ``x`` fires at ``L - k``). A neuron population of depth ``d`` receives its
inputs in ``[r - L, r]``: a projection from a population of depth ``d'`` carries a synaptic
delay of ``L (d - 1 - d')`` steps, zero between consecutive layers and a multiple of ``L`` on
residual (skip) connections.

With the neuron of :mod:`onespike.neurons`, an input spike of code ``k_j`` and weight ``w_j``
contributes ``w_j k_j`` to the membrane at the readout time, and the bias arrives as one event of
weight ``b`` at ``r - L``, contributing ``b L``. So ``v(r) = V = sum_j w_j k_j + L b``. The counter
synapse then sets the current to 1, the membrane rises by 1 per step, and the neuron fires at
the first ``m >= 0`` with ``V + m >= L - 1/2``, i.e. with code::

    k = clamp(floor(V + 1/2), 0, L)                 (round half up, clipped)

The rectifier event at ``r + L`` makes every silent neuron fire (code 0): that is the ReLU.
Max pooling is "first spike wins": ``k = max`` over the window, with no delay. Average pooling,
flattening and residual additions are linear and live inside projections.

The network therefore computes exactly the quantised ANN
``x_out = clamp(floor(L a + 1/2), 0, L) / L`` with ``a`` the normalised pre-activation computed
from quantised inputs. The output population follows the same rule; the class is the earliest
output spike, ties broken by the larger membrane at the spike step (equivalently the larger
``V``: the finer, sub-step spike time), then by the lower index.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from onespike.convert.config import TTFSConfig
from onespike.graph import Graph, MaxPool2d
from onespike.network import (
    Population,
    SpikingNetwork,
    build_network,
    populations,
)

__all__ = [
    "code_dtype",
    "convert_ttfs",
    "pool_windows",
    "quantized_codes",
    "quantized_codes_batched",
    "readout_time",
    "to_codes",
    "ttfs_steps",
]


def code_dtype(levels: int) -> torch.dtype:
    """The smallest integer dtype that holds every code ``0..L``.

    ``uint8`` up to ``L = 255`` (``T <= 256``), ``int16`` up to 32767, else ``int32``.
    """
    if levels <= 255:
        return torch.uint8
    return torch.int16 if levels <= 32767 else torch.int32


def _work_dtype(levels: int) -> torch.dtype:
    """A signed integer dtype that holds ``0..L + 1`` (``L + 1`` marks a clipped value).

    Signed, because CPU conversions from float to ``int8``/``int16`` are vectorised where the
    one to ``uint8`` is not; codes up to 126 are stored as that ``int8`` viewed as ``uint8``.
    """
    if levels + 1 <= 127:
        return torch.int8
    return torch.int16 if levels + 1 <= 32767 else torch.int32


def _stored(codes: Tensor, levels: int) -> Tensor:
    """``codes`` (values ``0..L`` in :func:`_work_dtype`) in :func:`code_dtype`."""
    if codes.dtype == torch.int8:
        return codes.view(torch.uint8)  # the same bits: every code is non-negative
    wanted = code_dtype(levels)
    return codes if codes.dtype == wanted else codes.to(wanted)


def to_codes(values: Tensor, levels: int) -> Tensor:
    """Integer-valued floats in ``[0, L]`` (e.g. input codes) as :func:`code_dtype` codes."""
    return _stored(values.to(_work_dtype(levels)), levels)


def _fire(raw: Tensor, levels: int) -> tuple[Tensor, Tensor]:
    """Codes ``clamp(floor(raw), 0, L)``, and ``L n + c`` (a 0-d integer tensor) where ``c`` of
    the ``n`` values had ``floor(raw) > L``.

    ``raw`` (``V + 1/2``) is clamped to ``[0, L + 1]`` in place first: clamping to integer
    bounds commutes with ``floor``, and converting a non-negative float to an integer type
    truncates, which is ``floor``; ``L + 1`` then marks exactly the clipped values, and the
    integer sum of ``max(k, L)`` counts them in one pass (a float comparison would cost more).
    """
    raw.clamp_(0, levels + 1)
    codes = raw.to(_work_dtype(levels))
    wide = torch.int32 if codes.numel() * (levels + 1) < 2**31 else torch.int64
    marked = codes.clamp(min=levels).sum(dtype=wide)
    return _stored(codes.clamp_(max=levels), levels), marked


def pool_windows(
    pool: MaxPool2d, x: Tensor, fill: float, reduce: Callable[[Tensor, Tensor], Tensor]
) -> Tensor:
    """Pool ``x`` (``(..., H, W)``) with ``reduce`` (``torch.maximum``, ``torch.minimum``)
    over the windows of ``pool``; padded positions hold ``fill``.

    Separable: the rows of each window first, then its columns, each as element-wise
    ``reduce`` of strided views (``kh + kw - 2`` calls, exact for a maximum or minimum).
    On the CPU this is many times faster than ``F.max_pool2d``, which also finds indices.
    A window has at least one position inside the input (PyTorch requires
    ``padding <= kernel / 2``), so a ``fill`` that never wins leaves the result exact.
    """
    (kh, kw), (sh, sw), (ph, pw) = pool.kernel_size, pool.stride, pool.padding
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph), value=fill)
    height, width = x.shape[-2:]
    rows, cols = (height - kh) // sh + 1, (width - kw) // sw + 1
    out = x[..., 0 : sh * (rows - 1) + 1 : sh, :]
    for i in range(1, kh):
        out = reduce(out, x[..., i : i + sh * (rows - 1) + 1 : sh, :])
    x = out
    out = x[..., 0 : sw * (cols - 1) + 1 : sw]
    for j in range(1, kw):
        out = reduce(out, x[..., j : j + sw * (cols - 1) + 1 : sw])
    return out.clone() if kh == kw == 1 else out


def _max_pool_codes(pool: MaxPool2d, codes: Tensor) -> Tensor:
    """Max pooling of codes (``>= 0``, so zero padding never wins)."""
    return pool_windows(pool, codes, 0, torch.maximum)


def quantized_codes(
    pops: list[Population] | tuple[Population, ...], input_codes: Tensor, levels: int
) -> tuple[dict[str, Tensor], Tensor, dict[str, Tensor]]:
    """The quantised ANN that a TTFS network computes, on integer codes.

    Every neuron population maps ``V = sum_j w_j k_j + L b`` to
    ``clamp(floor(V + 1/2), 0, L)``; max pooling takes the largest code. Decoded values
    are ``k * scale / L``.

    Each projection's factor lives in its weights and a hidden population's constant
    ``L b + 1/2`` in its last layer's bias (:meth:`~onespike.network.Projection.apply_fused`);
    rounding, clipping, the clipping count and the conversion to integers take a few passes
    over the potential, in place where they can.

    Args:
        pops: populations of the (normalised) network.
        input_codes: integer codes of the input, ``floor(L x + 1/2)`` (a float tensor).
        levels: ``L = T - 1``.

    Returns:
        ``(codes, potential, clipped)``: per population its codes, in :func:`code_dtype`;
        the output population's membrane potential at its readout time ``V`` (before
        rounding and clipping, in ``input_codes``'s dtype); per neuron population the
        number of values above the code range (0-d tensors).
    """
    codes, potential, counts = quantized_codes_batched(tuple(pops), input_codes, levels)
    return codes, potential, {name: torch.tensor(count) for name, count in counts.items()}


def quantized_codes_batched(
    pops: tuple[Population, ...], input_codes: Tensor, levels: int
) -> tuple[dict[str, Tensor], Tensor, dict[str, int]]:
    """:func:`quantized_codes` with the clipping counts as integers, read in one go."""
    # float codes are kept only until their last reader
    last_read: dict[str, int] = {}
    for index, pop in enumerate(pops):
        if pop.kind == "neuron":
            for proj in pop.projections:
                last_read[proj.source] = index
    free_after: dict[int, list[str]] = {}
    for name, index in last_read.items():
        free_after.setdefault(index, []).append(name)
    values: dict[str, Tensor] = {}
    codes: dict[str, Tensor] = {}
    names: list[str] = []
    marked: list[Tensor] = []
    offsets: list[int] = []
    potential: Tensor | None = None
    for index, pop in enumerate(pops):
        if pop.kind == "input":
            codes[pop.name] = to_codes(input_codes, levels)
            value: Tensor | None = input_codes
        elif pop.kind == "maxpool":
            assert pop.pool is not None
            codes[pop.name] = _max_pool_codes(pop.pool, codes[pop.sources[0]])
            value = None
        else:
            first, *rest = pop.projections
            shift = 0.0 if pop.is_output else 0.5  # the output keeps V itself
            raw = first.apply_fused(
                values[first.source], pop.bias, bias_scale=float(levels), shift=shift
            )
            for proj in rest:
                proj.accumulate(raw, values[proj.source])
            if pop.is_output:
                potential = raw
                raw = raw + 0.5
            codes[pop.name], count = _fire(raw, levels)
            names.append(pop.name)
            marked.append(count)
            offsets.append(levels * raw.numel())
            value = raw
        if pop.name in last_read:  # read by a projection: float codes
            if value is None:
                value = codes[pop.name].to(input_codes.dtype)
            elif value is not input_codes:
                value = value.copy_(codes[pop.name])  # the potential's memory, reused
            values[pop.name] = value
        for name in free_after.get(index, ()):
            del values[name]
    assert potential is not None
    counts = [m - o for m, o in zip(torch.stack(marked).tolist(), offsets, strict=True)]
    return codes, potential, dict(zip(names, counts, strict=True))


def readout_time(pop: Population, config: TTFSConfig) -> int:
    """The step at which ``pop``'s output window opens (``L * depth``)."""
    return config.levels * pop.depth


def ttfs_steps(net: SpikingNetwork) -> int:
    """Time steps one inference takes: from the first input spike to the output window's end."""
    config = net.config
    assert isinstance(config, TTFSConfig)
    return config.levels * (net.depth + 1) + 1


def convert_ttfs(graph: Graph, config: TTFSConfig) -> SpikingNetwork:
    """Convert ``graph`` to an exact TTFS network.

    Args:
        graph: extracted graph, normalised so activations fit ``[0, 1]``.
        config: the TTFS options.

    Returns:
        The spiking network; simulate it with :func:`onespike.simulate`.
    """
    levels = config.levels

    def delay(source: Population, target: Population) -> int:
        return levels * (target.depth - 1 - source.depth)

    return build_network(populations(graph), config, delay)
