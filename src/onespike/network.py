"""Populations and projections: the shape every spiking method gives a graph.

A spiking network is a set of *populations* (groups of neurons with one shape) connected by
*projections*. A projection is a chain of linear graph nodes (Linear, Conv2d, AvgPool2d,
Flatten, Affine) applied to a source population's output, without their constant terms; the
constants of every chain feeding a population sum into one per-neuron ``bias``. This is how
average pooling, flattening, un-folded normalisation and residual additions "fold into the
synapses": ``W(h + x) + b`` becomes two projections (``W`` from ``h``, ``W`` from ``x``) and a
bias, exactly.

:func:`populations` derives this structure from a :class:`~onespike.graph.Graph`:

- the graph input is the ``input`` population;
- a ReLU applied to a linear expression makes a ``neuron`` population named after the ReLU;
- a MaxPool2d applied to a population makes a ``maxpool`` population; a MaxPool2d applied to a
  linear expression is accepted when every reader of the pool is a ReLU (``relu`` and ``max``
  commute), and then the expression becomes a neuron population named after its producer;
- the graph output, if it is a linear expression (logits), becomes the output neuron
  population named after its producer; it has no ReLU in the ANN;
- a Concat of inputs along dimension 1 becomes, for each input, a :class:`PadChannels` that
  places it among the output channels; a following Linear/Conv2d/Affine/average pooling
  absorbs the padding (it reads its slice of the weights), so a concatenation costs nothing
  beyond the synapses it feeds; max pooling of a concatenation of populations pools each part;
- a clipped ReLU (``ReLU(max_value=c)``, e.g. ReLU6) bounds the population's scale by ``c``:
  ``scale = min(calibrated scale, c)``. A spike code clips its values at the scale already
  (the top of the code range), so with ``scale = c`` the spiking network clips exactly where
  the ANN does.

With normalisation scales ``lambda`` (see :func:`onespike.normalize`), a projection from ``P``
into ``Q`` is multiplied by ``lambda_P / lambda_Q`` and ``Q``'s bias is divided by
``lambda_Q`` (Rueckauer et al. 2017, doi 10.3389/fnins.2017.00682), so that activations of
every population lie in ``[0, 1]`` for the calibration data.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from onespike.errors import UnsupportedLayerError
from onespike.graph import (
    LINEAR_NODES,
    AdaptiveAvgPool2d,
    Add,
    Affine,
    AvgPool2d,
    Concat,
    Conv2d,
    Flatten,
    Graph,
    Input,
    Linear,
    MaxPool2d,
    Node,
    Output,
    PadChannels,
    ReLU,
    apply_linear,
    max_pool,
)
from onespike.neurons import LIFParams

__all__ = [
    "Population",
    "Projection",
    "SpikingNetwork",
    "build_network",
    "forward_populations",
    "population_fanout",
    "populations",
    "projection_fanout",
]

PopulationKind = Literal["input", "neuron", "maxpool"]


@dataclass(frozen=True, eq=False)
class Projection:
    """Synapses from population ``source``: a chain of linear nodes, a factor and a delay.

    Attributes:
        source: name of the source population.
        ops: linear nodes applied in order, without their bias/shift.
        factor: multiplies the chain's output (normalisation ratio).
        delay: synaptic delay in time steps (set by converters that need one).
    """

    source: str
    ops: tuple[Node, ...]
    factor: float = 1.0
    delay: int = 0
    # Per (dtype, device): the chain with ``factor`` folded into its weights, and constants
    # prepared for :meth:`apply_fused`. Not an init field, so ``replace`` and
    # :meth:`SpikingNetwork.to` start a new projection with an empty cache.
    _cache: dict[tuple[Any, ...], Any] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def apply(self, x: Tensor) -> Tensor:
        """Weights times ``x`` (batch first), without constants; always a new tensor."""
        if not self.ops and self.factor == 1.0:
            return x.clone()
        for op in self.ops:
            x = apply_linear(op, x, bias=False)
        return x * self.factor if self.factor != 1.0 else x

    def fused_ops(self, dtype: torch.dtype, device: torch.device) -> tuple[tuple[Node, ...], float]:
        """The chain with ``factor`` folded into the weights of its first weighted node.

        The weights are cast to ``dtype`` on ``device`` once and cached. Folding rounds
        ``weight * factor`` once (in float64, then to ``dtype``) where :meth:`apply` rounds
        the chain's output times ``factor``: the two agree exactly when the factor is a
        power of two, and otherwise to the last bit of ``dtype``.

        Returns:
            ``(ops, rest)``: the nodes (without constants) and the factor still to apply,
            1.0 unless no node of the chain has weights.
        """
        key = ("ops", dtype, device)
        found = self._cache.get(key)
        if found is None:
            found = _fold_factor(self.ops, self.factor, dtype, device)
            self._cache[key] = found
        return found

    def apply_fused(
        self, x: Tensor, bias: Tensor | None = None, *, bias_scale: float = 1.0, shift: float = 0.0
    ) -> Tensor:
        """``factor`` times the chain applied to ``x``, plus ``bias_scale * bias + shift``.

        The fast form of :meth:`apply` followed by the addition of a population's bias: the
        factor lives in the weights (:meth:`fused_ops`), and a constant that is the same at
        every position of a channel goes to the last Linear/Conv2d as its bias argument, so
        no pass over the output is spent on either. ``bias`` (per-neuron, the shape of the
        output of one sample) is prepared once per dtype and device and cached while it is
        the same tensor object.

        Returns:
            A new tensor.
        """
        ops, rest = self.fused_ops(x.dtype, x.device)
        vector, full = self._constant(ops, bias, bias_scale, shift, x.dtype, x.device)
        y, fresh = _run_fused(ops, x, vector)
        if rest != 1.0:
            y, fresh = (y.mul_(rest) if fresh else y * rest), True
        if full is not None:
            y, fresh = (y.add_(full) if fresh else y + full), True
        return y if fresh else y.clone()

    def accumulate(self, total: Tensor, x: Tensor) -> Tensor:
        """``total += factor * chain(x)``, in place (the factor folded as in :meth:`apply_fused`).

        Returns:
            ``total``.
        """
        ops, rest = self.fused_ops(x.dtype, x.device)
        y, _ = _run_fused(ops, x, None)
        # a chain without weights (e.g. an identity skip connection): one multiply-add
        return total.add_(y, alpha=rest) if rest != 1.0 else total.add_(y)

    def _constant(
        self,
        ops: tuple[Node, ...],
        bias: Tensor | None,
        bias_scale: float,
        shift: float,
        dtype: torch.dtype,
        device: torch.device,
    ) -> tuple[Tensor | None, Tensor | None]:
        """``bias_scale * bias + shift`` as a per-channel vector for the last node's bias
        argument when it is uniform over each channel, else as a full tensor (cached)."""
        if bias is None and shift == 0.0:
            return None, None
        key = ("constant", dtype, device, bias_scale, shift)
        found = self._cache.get(key)
        if found is not None and found[0] is bias:
            return found[1], found[2]
        last = ops[-1] if ops else None
        vector: Tensor | None = None
        full: Tensor | None = None
        if bias is None:
            if isinstance(last, (Linear, Conv2d)):
                vector = torch.full((last.weight.shape[0],), shift, dtype=dtype, device=device)
            else:
                full = torch.tensor(shift, dtype=dtype, device=device)
        else:
            full = bias.to(device=device, dtype=dtype) * bias_scale
            if shift != 0.0:
                full = full + shift
            if isinstance(last, Linear) and full.ndim == 1:
                vector, full = full, None
            elif isinstance(last, Conv2d) and full.ndim == 3:
                channel = full[:, :1, :1]
                if torch.equal(full, channel.expand_as(full)):
                    vector, full = channel.flatten().clone(), None
        self._cache[key] = (bias, vector, full)
        return vector, full


def _run_fused(ops: tuple[Node, ...], x: Tensor, bias: Tensor | None) -> tuple[Tensor, bool]:
    """Apply prepared nodes (``bias`` to the last one, a Linear/Conv2d when given).

    Returns:
        ``(y, fresh)``: the output, and whether it is a new tensor (not ``x`` or a view of it).
    """
    fresh = False
    last = len(ops) - 1
    for index, op in enumerate(ops):
        b = bias if index == last else None
        if isinstance(op, Linear):
            x = F.linear(x, op.weight, b)
        elif isinstance(op, Conv2d):
            x = F.conv2d(x, op.weight, b, op.stride, op.padding, op.dilation, op.groups)
        else:
            x = apply_linear(op, x, bias=False)
            fresh = fresh or not isinstance(op, Flatten)
            continue
        fresh = True
    return x, fresh


def _fold_factor(
    ops: tuple[Node, ...], factor: float, dtype: torch.dtype, device: torch.device
) -> tuple[tuple[Node, ...], float]:
    """``ops`` on ``device`` in ``dtype``, constants dropped, ``factor`` in the first weights."""

    def cast(tensor: Tensor, scale: float) -> Tensor:
        if scale == 1.0:
            return tensor.to(device=device, dtype=dtype)
        return (tensor.to(device=device, dtype=torch.float64) * scale).to(dtype)

    out: list[Node] = []
    rest = factor
    for op in ops:
        if isinstance(op, (Linear, Conv2d)):
            op = replace(op, weight=cast(op.weight, rest), bias=None)
            rest = 1.0
        elif isinstance(op, Affine):
            op = Affine(
                cast(op.scale, rest), torch.zeros_like(op.shift, device=device, dtype=dtype)
            )
            rest = 1.0
        out.append(op)
    return tuple(out), rest


@dataclass(frozen=True, eq=False)
class Population:
    """A group of neurons of one shape.

    Attributes:
        name: unique name (the graph node it comes from).
        kind: ``"input"``, ``"neuron"`` or ``"maxpool"``.
        shape: per-sample shape.
        projections: incoming synapses (neuron populations).
        bias: per-neuron constant input in normalised units, shape ``shape`` (or None).
        pool: the pooling of a maxpool population; its source is ``projections[0].source``.
        scale: activation scale ``lambda`` from normalisation (1 without it).
        depth: longest path in neuron layers from the input (input and pools add none).
        is_output: the network's output population.
        ann_relu: whether the ANN applies a ReLU here (False for raw logits).
        ann_max: the clipping value of a clipped ReLU (ReLU6: 6), in the graph's units, or
            None; ``scale`` is at most this value.
        threshold: firing threshold of integrate-and-fire neurons, in normalised units: a
            float, or a tensor broadcastable to ``shape`` (per channel or per neuron). Set by
            the rate and hybrid converters; TTFS neurons derive theirs from the code.
        neuron: the constants of a leaky integrate-and-fire neuron model, for a population
            imported from another tool's NIR graph (:mod:`onespike.nir_foreign`); None: the
            method's own neuron.
    """

    name: str
    kind: PopulationKind
    shape: tuple[int, ...]
    projections: tuple[Projection, ...] = ()
    bias: Tensor | None = None
    pool: MaxPool2d | None = None
    scale: float = 1.0
    depth: int = 0
    is_output: bool = False
    ann_relu: bool = True
    ann_max: float | None = None
    threshold: float | Tensor = 1.0
    neuron: LIFParams | None = None

    @property
    def sources(self) -> tuple[str, ...]:
        """Names of the source populations, one per projection."""
        return tuple(p.source for p in self.projections)

    @property
    def size(self) -> int:
        """Number of neurons per sample."""
        return math.prod(self.shape)


@dataclass
class _Expr:
    terms: list[tuple[str, tuple[Node, ...]]]
    const: Tensor | None
    shape: tuple[int, ...]


def _as_expr(value: str | _Expr, shape: tuple[int, ...]) -> _Expr:
    return _Expr([(value, ())], None, shape) if isinstance(value, str) else value


def _has_constant(node: Node) -> bool:
    if isinstance(node, (Linear, Conv2d)):
        return node.bias is not None
    if isinstance(node, Affine):
        return bool((node.shift != 0).any())
    return False


def _pad_shape(pad: PadChannels, shape: tuple[int, ...]) -> tuple[int, ...]:
    return (pad.before + shape[0] + pad.after, *shape[1:])


def _absorb_pads(ops: tuple[Node, ...], shape: tuple[int, ...]) -> tuple[Node, ...]:
    """``ops`` with every PadChannels moved as far right as it goes and folded into a weighted
    layer where one follows: the same linear map (the constants are kept elsewhere), without
    computing on the zero channels. ``shape`` is the per-sample shape ``ops`` start from."""
    out: list[Node] = []
    pending: PadChannels | None = None
    for op in ops:
        if isinstance(op, PadChannels):
            pending = (
                op
                if pending is None
                else PadChannels(pending.before + op.before, pending.after + op.after)
            )
            continue
        if pending is not None:
            first, width = pending.before, shape[0]
            part = slice(first, first + width)
            if isinstance(op, Affine):
                op = Affine(op.scale[part].clone(), op.shift[part].clone())
                out.append(op)
                shape = _op_shape(op, shape)
                continue
            if isinstance(op, (AvgPool2d, AdaptiveAvgPool2d)):
                out.append(op)
                shape = _op_shape(op, shape)
                continue
            if isinstance(op, Flatten) and len(shape) > 1:
                area = math.prod(shape[1:])
                out.append(op)
                shape = (math.prod(shape),)
                pending = PadChannels(pending.before * area, pending.after * area)
                continue
            flat_linear = isinstance(op, Linear) and len(shape) == 1
            if isinstance(op, (Linear, Conv2d)) and (
                flat_linear or (isinstance(op, Conv2d) and op.groups == 1)
            ):
                op = replace(op, weight=op.weight[:, part].clone(), bias=None)
                pending = None
            else:
                out.append(pending)
                shape = _pad_shape(pending, shape)
                pending = None
        out.append(op)
        shape = _op_shape(op, shape)
    if pending is not None:
        out.append(pending)
    return tuple(out)


def _op_shape(op: Node, shape: tuple[int, ...]) -> tuple[int, ...]:
    if isinstance(op, PadChannels):
        return _pad_shape(op, shape)
    if isinstance(op, Affine):
        return shape
    if isinstance(op, Flatten):
        return (math.prod(shape),)
    probe = torch.zeros((1, *shape), device="meta")
    return tuple(apply_linear(op, probe, bias=False).shape[1:])


def _bare_concat(expr: _Expr) -> bool:
    """``expr`` only places populations side by side (non-negative, no constant)."""
    return expr.const is None and all(
        len(ops) == 1 and isinstance(ops[0], PadChannels) for _, ops in expr.terms
    )


def populations(graph: Graph) -> list[Population]:
    """Derive the populations of ``graph``, in topological order, with normalisation applied.

    Args:
        graph: an extracted (and optionally normalised) graph.

    Returns:
        The populations; the first is the input, exactly one has ``is_output``.

    Raises:
        UnsupportedLayerError: the graph cannot be expressed as populations (e.g. max pooling
            of a value that is not rectified, or an output that computes nothing).
    """
    values: dict[str, str | _Expr] = {}
    raw: dict[str, Population] = {}

    def make_neuron(
        name: str, expr: _Expr, *, is_output: bool, relu: bool, ann_max: float | None = None
    ) -> str:
        projections = tuple(
            Projection(src, _absorb_pads(ops, raw[src].shape)) for src, ops in expr.terms
        )
        raw[name] = Population(
            name,
            "neuron",
            expr.shape,
            projections,
            bias=expr.const,
            is_output=is_output,
            ann_relu=relu,
            ann_max=ann_max,
        )
        return name

    def ceiling(name: str) -> float | None:
        """The clipping value a population's activations already respect, if any."""
        pop = raw[name]
        return ceiling(pop.sources[0]) if pop.kind == "maxpool" else pop.ann_max

    def pool(name: str, node: MaxPool2d, source: str, shape: tuple[int, ...]) -> str:
        if raw[source].kind == "input":
            raise UnsupportedLayerError(
                f"max pooling '{name}' of the raw input: pool inside the first layer instead"
            )
        raw[name] = Population(name, "maxpool", shape, (Projection(source, ()),), pool=node)
        return name

    for name in graph.topological_order():
        node = graph.nodes[name]
        srcs = graph.inputs_of(name)
        shape = graph.shapes[name]
        if isinstance(node, Input):
            raw[name] = Population(name, "input", node.shape)
            values[name] = name
        elif isinstance(node, LINEAR_NODES):
            expr = _as_expr(values[srcs[0]], graph.shapes[srcs[0]])
            const = None
            if expr.const is not None or _has_constant(node):
                base = expr.const
                if base is None:
                    like = getattr(node, "weight", getattr(node, "scale", None))
                    dtype = like.dtype if isinstance(like, Tensor) else torch.float32
                    device = like.device if isinstance(like, Tensor) else None
                    base = torch.zeros(expr.shape, dtype=dtype, device=device)
                with torch.no_grad():
                    const = apply_linear(node, base.unsqueeze(0))[0]
            values[name] = _Expr([(p, (*ops, node)) for p, ops in expr.terms], const, shape)
        elif isinstance(node, ReLU):
            value = values[srcs[0]]
            bound = ceiling(value) if isinstance(value, str) else None
            if node.max_value is not None and bound is not None and bound <= node.max_value:
                values[name] = value  # already clipped at or below max_value
            elif node.max_value is not None:
                values[name] = make_neuron(
                    name,
                    _as_expr(value, graph.shapes[srcs[0]]),
                    is_output=False,
                    relu=True,
                    ann_max=node.max_value,
                )
            elif isinstance(value, str) or _bare_concat(value):
                values[name] = value  # already non-negative: the ReLU changes nothing
            else:
                values[name] = make_neuron(name, value, is_output=False, relu=True)
        elif isinstance(node, MaxPool2d):
            value = values[srcs[0]]
            if isinstance(value, _Expr) and _bare_concat(value):
                # max pooling acts channel by channel: pool each concatenated part
                terms = []
                for index, (source, ops) in enumerate(value.terms):
                    part = f"{name}.{index}"
                    pooled = (raw[source].shape[0], *shape[1:])
                    terms.append((pool(part, node, source, pooled), ops))
                values[name] = _Expr(terms, None, shape)
                continue
            if not isinstance(value, str):
                # relu (clipped or not) is monotone, so it commutes with max pooling
                readers = [graph.nodes[c] for c in graph.consumers_of(name)]
                limits = {r.max_value for r in readers if isinstance(r, ReLU)}
                if not readers or not all(isinstance(r, ReLU) for r in readers) or len(limits) > 1:
                    raise UnsupportedLayerError(
                        f"max pooling '{name}' reads a value that is not rectified and is not "
                        "followed by ReLU; spike codes carry only non-negative values. Apply "
                        "ReLU before the pooling."
                    )
                value = make_neuron(
                    srcs[0], value, is_output=False, relu=True, ann_max=limits.pop()
                )
            values[name] = pool(name, node, value, shape)
        elif isinstance(node, Add):
            exprs = [_as_expr(values[s], graph.shapes[s]) for s in srcs]
            terms = [t for e in exprs for t in e.terms]
            consts = [e.const for e in exprs if e.const is not None]
            const = None
            if consts:
                const = consts[0]
                for c in consts[1:]:
                    const = const + c
            values[name] = _Expr(terms, const, shape)
        elif isinstance(node, Concat):
            exprs = [_as_expr(values[s], graph.shapes[s]) for s in srcs]
            total = shape[0]
            terms = []
            offset = 0
            for expr in exprs:
                width = expr.shape[0]
                pad = PadChannels(offset, total - offset - width)
                terms += [(p, (*ops, pad)) for p, ops in expr.terms]
                offset += width
            const = None
            if any(e.const is not None for e in exprs):
                known = next(e.const for e in exprs if e.const is not None)
                parts = [
                    e.const.to(known.device, known.dtype)
                    if e.const is not None
                    else known.new_zeros(e.shape)
                    for e in exprs
                ]
                const = torch.cat(parts, dim=0)
            values[name] = _Expr(terms, const, shape)
        elif isinstance(node, Output):
            value = values[srcs[0]]
            if isinstance(value, str):
                if raw[value].kind != "neuron":
                    raise UnsupportedLayerError(
                        "the network output must come from a layer with weights"
                    )
                raw[value] = replace(raw[value], is_output=True)
            else:
                make_neuron(srcs[0], value, is_output=True, relu=False)
    return _finish(graph, raw)


def _finish(graph: Graph, raw: dict[str, Population]) -> list[Population]:
    finished: dict[str, Population] = {}
    for name, pop in raw.items():  # insertion order is topological
        if pop.kind == "input":
            finished[name] = pop
            continue
        if pop.kind == "maxpool":
            src = finished[pop.sources[0]]
            finished[name] = replace(pop, scale=src.scale, depth=src.depth)
            continue
        scale = float(graph.scales.get(name, 1.0))
        if pop.ann_max is not None:
            scale = min(scale, pop.ann_max)
        projections = tuple(
            replace(p, factor=finished[p.source].scale / scale) for p in pop.projections
        )
        bias = pop.bias / scale if pop.bias is not None else None
        depth = 1 + max(finished[p.source].depth for p in projections)
        finished[name] = replace(pop, projections=projections, bias=bias, scale=scale, depth=depth)
    return list(finished.values())


def forward_populations(
    pops: list[Population],
    x: Tensor,
    *,
    activation: Callable[[Population, Tensor], Tensor] | None = None,
    bias_scale: float = 1.0,
) -> dict[str, Tensor]:
    """Evaluate populations as the (normalised) ANN: ``relu(sum of projections + bias)``.

    Args:
        pops: populations from :func:`populations`.
        x: input batch.
        activation: replaces the ReLU of neuron populations, called as
            ``activation(population, pre_activation)``.
        bias_scale: multiplies every bias (to evaluate the network on values scaled by a
            constant, e.g. integer spike codes).

    Returns:
        Population name to its activation (normalised units); the output population holds
        raw logits when the ANN has no ReLU there and no ``activation`` is given.
    """
    out: dict[str, Tensor] = {}
    for pop in pops:
        if pop.kind == "input":
            out[pop.name] = x
        elif pop.kind == "maxpool":
            assert pop.pool is not None
            out[pop.name] = max_pool(pop.pool, out[pop.sources[0]])
        else:
            pre = pre_activation(pop, out, bias_scale=bias_scale)
            if activation is not None:
                out[pop.name] = activation(pop, pre)
            elif pop.ann_max is not None:
                out[pop.name] = pre.clamp(0.0, pop.ann_max / pop.scale)
            else:
                out[pop.name] = torch.relu(pre) if pop.ann_relu else pre
    return out


def pre_activation(
    pop: Population, inputs: dict[str, Tensor], *, bias_scale: float = 1.0
) -> Tensor:
    """Sum of ``pop``'s projections applied to ``inputs`` plus its bias (times ``bias_scale``)."""
    total: Tensor | None = None
    for proj in pop.projections:
        part = proj.apply(inputs[proj.source])
        total = part if total is None else total + part
    assert total is not None
    if pop.bias is not None:
        bias = pop.bias.to(device=total.device, dtype=total.dtype)
        total = total + (bias * bias_scale if bias_scale != 1.0 else bias)
    return total


def _structural(op: Node, x: Tensor) -> Tensor:
    """The op with every stored weight replaced by one: counts connections, not values."""
    if isinstance(op, Linear):
        return F.linear(x, torch.ones_like(op.weight, dtype=x.dtype))
    if isinstance(op, Conv2d):
        return F.conv2d(
            x,
            torch.ones_like(op.weight, dtype=x.dtype),
            None,
            op.stride,
            op.padding,
            op.dilation,
            op.groups,
        )
    if isinstance(op, AvgPool2d):
        area = op.kernel_size[0] * op.kernel_size[1]
        return F.avg_pool2d(x, op.kernel_size, op.stride, op.padding) * area
    if isinstance(op, AdaptiveAvgPool2d):
        areas = _window_areas(op, x.shape[-2:], x.device).to(x.dtype)
        return F.adaptive_avg_pool2d(x, op.output_size) * areas
    if isinstance(op, Affine):
        view = (1, -1) + (1,) * (x.ndim - 2)
        return x * (op.scale != 0).to(x.dtype).view(view)
    if isinstance(op, (Flatten, PadChannels)):
        return apply_linear(op, x)
    raise TypeError(f"{type(op).__name__} is not a linear node")


def _window_areas(
    op: AdaptiveAvgPool2d, size: Sequence[int], device: torch.device | None = None
) -> Tensor:
    """Inputs in each adaptive pooling window: ``(ceil((i+1)H/h) - floor(iH/h))`` per axis."""

    def lengths(n: int, out: int) -> Tensor:
        return torch.tensor(
            [-(-(i + 1) * n // out) - (i * n) // out for i in range(out)],
            dtype=torch.float64,
            device=device,
        )

    rows, cols = (lengths(int(n), o) for n, o in zip(size, op.output_size, strict=True))
    return rows[:, None] * cols[None, :]


def projection_fanout(
    proj: Projection, source_shape: tuple[int, ...], like: Tensor | None = None
) -> Tensor:
    """Number of synapses leaving each source neuron through ``proj``.

    The count is the gradient of the summed structural output (weights set to one) with
    respect to the source: for a single layer it is the number of target neurons each source
    neuron reaches, convolution borders, strides and dilation included. Through an overlapping
    average pooling it counts paths (each pooled connection stays a separate synapse).

    Returns:
        A float tensor of shape ``source_shape``, on the device and of the dtype of ``like``
        (default: the CPU, float32).
    """

    def structural(x: Tensor) -> Tensor:
        for op in proj.ops:
            x = _structural(op, x)
        return x

    return _fanout(structural, (1, *source_shape), like)


def _fanout(
    structural: Callable[[Tensor], Tensor], shape: tuple[int, ...], like: Tensor | None
) -> Tensor:
    """The gradient of ``structural(ones).sum()`` with respect to the ones of ``shape``, on
    ``like``'s device and dtype: the fan-out of each source neuron. Gradients are switched on
    here, so that a conversion inside ``torch.no_grad()`` or ``torch.inference_mode()``
    counts the same synapses."""
    with torch.inference_mode(False), torch.enable_grad():
        if like is None:
            x = torch.ones(shape, requires_grad=True, device="cpu")
        else:
            x = torch.ones(shape, requires_grad=True, device=like.device, dtype=like.dtype)
        structural(x).sum().backward()
    assert x.grad is not None
    return x.grad[0].detach()


def population_fanout(
    pop: Population, source_shape: tuple[int, ...], like: Tensor | None = None
) -> Tensor:
    """Fan-out of each source neuron into a maxpool population (windows that contain it)."""
    assert pop.pool is not None
    pool = pop.pool
    area = pool.kernel_size[0] * pool.kernel_size[1]
    return _fanout(
        lambda x: F.avg_pool2d(x, pool.kernel_size, pool.stride, pool.padding) * area,
        (1, *source_shape),
        like,
    )


@dataclass(frozen=True, eq=False)
class SpikingNetwork:
    """A converted network: populations, their synapses, and the method's configuration.

    Attributes:
        config: the conversion configuration (its type names the method).
        populations: in topological order; the first is the input.
        fanouts: per population, the synapse count leaving each source neuron, one tensor per
            projection (for a maxpool population: per pooling window), computed once.
    """

    config: Any
    populations: tuple[Population, ...]
    fanouts: dict[str, tuple[Tensor, ...]]

    def __getitem__(self, name: str) -> Population:
        for pop in self.populations:
            if pop.name == name:
                return pop
        raise KeyError(name)

    @property
    def input(self) -> Population:
        return self.populations[0]

    @property
    def output(self) -> Population:
        return next(p for p in self.populations if p.is_output)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.input.shape

    @property
    def depth(self) -> int:
        """Neuron layers on the longest path from input to output."""
        return self.output.depth

    @property
    def device(self) -> torch.device:
        """The device of the network's tensors (weights, biases, thresholds, fan-outs).

        A network with no tensor at all (no weights) reports the CPU. Simulators run on this
        device; :func:`onespike.simulate` moves an input batch from elsewhere onto it.
        """
        # the fan-outs live with the weights (build_network, to): a look-up, not a walk of
        # every tensor (which a network without neuron populations still needs)
        first = next((f[0] for f in self.fanouts.values() if f), None)
        if first is None:
            first = next(iter(tensors_of(self)), None)
        return torch.device("cpu") if first is None else first.device

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> SpikingNetwork:
        """A copy of the network with every tensor on ``device`` and, if given, of ``dtype``.

        Every tensor moves: the weights and constants of each projection's nodes, biases,
        per-neuron thresholds, imported neuron constants and fan-outs. ``dtype`` applies to
        floating-point tensors only. The network itself is unchanged (it is immutable).

        Args:
            device: e.g. ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or a :class:`torch.device`.
            dtype: a floating-point dtype (e.g. ``torch.float64``); None keeps each one's.

        Returns:
            The moved network (``self`` when nothing changes).
        """
        target = None if device is None else torch.device(device)

        def move(tensor: Tensor) -> Tensor:
            wanted = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
            return tensor.to(device=tensor.device if target is None else target, dtype=wanted)

        moved: SpikingNetwork = _map_tensors(self, move)
        return moved


def _map_tensors(value: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """``value`` with ``fn`` applied to every tensor inside it (dataclasses, named tuples,
    tuples, lists and dicts are rebuilt; anything unchanged is returned as it is)."""
    if isinstance(value, Tensor):
        return fn(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {}
        for field in dataclasses.fields(value):
            if not field.init:
                continue
            old = getattr(value, field.name)
            new = _map_tensors(old, fn)
            if new is not old:
                changes[field.name] = new
        return replace(value, **changes) if changes else value
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
        named: Any = value
        fields = {k: _map_tensors(v, fn) for k, v in named._asdict().items()}
        changed = any(fields[k] is not v for k, v in named._asdict().items())
        return named._replace(**fields) if changed else value
    if isinstance(value, (tuple, list)):
        items = [_map_tensors(v, fn) for v in value]
        if all(new is old for new, old in zip(items, value, strict=True)):
            return value
        return type(value)(items)
    if isinstance(value, dict):
        mapped = {k: _map_tensors(v, fn) for k, v in value.items()}
        return mapped if any(mapped[k] is not v for k, v in value.items()) else value
    return value


def tensors_of(value: Any) -> list[Tensor]:
    """Every tensor inside ``value``, in the order :func:`_map_tensors` visits them."""
    found: list[Tensor] = []

    def record(tensor: Tensor) -> Tensor:
        found.append(tensor)
        return tensor

    _map_tensors(value, record)
    return found


def build_network(
    pops: list[Population], config: Any, delay: Callable[[Population, Population], int]
) -> SpikingNetwork:
    """Attach delays and synapse counts to ``pops``.

    Args:
        pops: populations from :func:`populations`.
        config: the method's configuration.
        delay: ``delay(source, target)`` in time steps for each projection.

    Returns:
        The spiking network.
    """
    by_name = {p.name: p for p in pops}
    finished: list[Population] = []
    fanouts: dict[str, tuple[Tensor, ...]] = {}
    # the fan-outs live where the network's tensors do, in their dtype
    like = next((t for t in tensors_of(pops) if t.is_floating_point()), None)
    for pop in pops:
        if pop.kind == "neuron":
            projections = tuple(
                replace(proj, delay=delay(by_name[proj.source], pop)) for proj in pop.projections
            )
            pop = replace(pop, projections=projections)
            fanouts[pop.name] = tuple(
                projection_fanout(proj, by_name[proj.source].shape, like) for proj in projections
            )
        elif pop.kind == "maxpool":
            fanouts[pop.name] = (population_fanout(pop, by_name[pop.sources[0]].shape, like),)
        finished.append(pop)
    return SpikingNetwork(config, tuple(finished), fanouts)
