"""The framework-free network graph: nodes, edges, evaluation and exact BatchNorm folding.

A :class:`Graph` is data: ``nodes`` (name to a small frozen dataclass) and ``edges`` (pairs of
names, in argument order). Weights are detached CPU float32 tensors owned by the graph; nothing
refers back to the user's module. Every later stage (normalisation, conversion, operation
counting, export) reads this one representation. Graphs come from
:func:`onespike.tracing.extract` (a PyTorch module), :func:`onespike.onnx_io.from_onnx` (an
ONNX file) or are built by hand.

:func:`fold_affines` folds per-channel :class:`Affine` nodes (BatchNorm, input normalisation)
into the neighbouring Linear/Conv2d where that is exact, in one pass over the nodes (a
convolution with zero padding changes the meaning of a shifted input at the borders, so a shift
is only folded into an unpadded convolution; otherwise the Affine node stays, and the
converters treat it exactly as a linear map plus a constant).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from onespike.errors import InvalidGraphError, ShapeError

__all__ = [
    "AdaptiveAvgPool2d",
    "Add",
    "Affine",
    "AvgPool2d",
    "Concat",
    "Conv2d",
    "Flatten",
    "Graph",
    "GraphNet",
    "Input",
    "Linear",
    "MaxPool2d",
    "Node",
    "Output",
    "PadChannels",
    "ReLU",
    "apply_linear",
    "evaluate_node",
    "fold_affines",
    "run_graph",
]

Pair: TypeAlias = tuple[int, int]


def _pair(value: int | Sequence[int]) -> Pair:
    if isinstance(value, int):
        return (value, value)
    items = tuple(int(v) for v in value)
    if len(items) != 2:
        raise InvalidGraphError(f"expected an int or a pair, got {value!r}")
    return (items[0], items[1])


def _check_finite(name: str, **tensors: Tensor | None) -> None:
    for key, tensor in tensors.items():
        # A NaN or an infinity anywhere makes the sum non-finite; only then (or on an overflow
        # of the sum itself) is every element looked at.
        if tensor is None or bool(torch.isfinite(tensor.sum())):
            continue
        if not bool(torch.isfinite(tensor).all()):
            raise InvalidGraphError(
                f"node '{name}': {key} contains NaN or infinite values; a spiking network cannot "
                "represent them. Check the training run that produced these weights."
            )


@dataclass(frozen=True, eq=False)
class Input:
    """The network input; ``shape`` excludes the batch dimension."""

    shape: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class Linear:
    """``y = x @ weight.T + bias`` on the last dimension."""

    weight: Tensor
    bias: Tensor | None = None

    def __post_init__(self) -> None:
        if self.weight.ndim != 2:
            raise InvalidGraphError(f"Linear weight must be 2-D, got {tuple(self.weight.shape)}")
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            raise InvalidGraphError("Linear bias must have one entry per output feature")


@dataclass(frozen=True, eq=False)
class Conv2d:
    """2-D convolution with zero padding."""

    weight: Tensor
    bias: Tensor | None = None
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1

    def __post_init__(self) -> None:
        if self.weight.ndim != 4:
            raise InvalidGraphError(f"Conv2d weight must be 4-D, got {tuple(self.weight.shape)}")
        if self.bias is not None and self.bias.shape != (self.weight.shape[0],):
            raise InvalidGraphError("Conv2d bias must have one entry per output channel")
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise InvalidGraphError("Conv2d stride/dilation must be >= 1 and padding >= 0")


@dataclass(frozen=True, eq=False)
class AvgPool2d:
    """Average pooling; padded positions count in the divisor (PyTorch's default)."""

    kernel_size: Pair
    stride: Pair
    padding: Pair = (0, 0)


@dataclass(frozen=True, eq=False)
class AdaptiveAvgPool2d:
    """Average pooling to ``output_size`` with PyTorch's adaptive windows: output row ``i`` of
    ``h`` averages input rows ``floor(i H / h)`` to ``ceil((i + 1) H / h) - 1`` (columns alike).

    Linear, so it folds into the synapses like :class:`AvgPool2d`; extraction uses
    :class:`AvgPool2d` instead wherever the windows are regular (``H`` divisible by ``h``).
    """

    output_size: Pair

    def __post_init__(self) -> None:
        if min(self.output_size) < 1:
            raise InvalidGraphError(
                f"AdaptiveAvgPool2d output size must be >= 1, got {self.output_size}"
            )


@dataclass(frozen=True, eq=False)
class MaxPool2d:
    """Max pooling; padded positions never win."""

    kernel_size: Pair
    stride: Pair
    padding: Pair = (0, 0)


@dataclass(frozen=True, eq=False)
class Flatten:
    """Flatten every dimension after the batch dimension."""


@dataclass(frozen=True, eq=False)
class ReLU:
    """Rectified linear unit; with ``max_value`` the clipped ReLU ``min(max(x, 0), max_value)``
    (``nn.ReLU6`` is ``max_value=6``, ``nn.Hardtanh(0, c)`` is ``max_value=c``)."""

    max_value: float | None = None

    def __post_init__(self) -> None:
        value = self.max_value
        if value is None:
            return
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise InvalidGraphError(
                f"ReLU max_value must be a finite number > 0 (or None), got {value!r}"
            )
        object.__setattr__(self, "max_value", float(value))


@dataclass(frozen=True, eq=False)
class Add:
    """Element-wise sum of all inputs (residual connection)."""


@dataclass(frozen=True, eq=False)
class Concat:
    """Concatenation of all inputs, in argument order, along dimension 1 (channels, or the
    features of flat inputs): DenseNet and Inception blocks."""


@dataclass(frozen=True, eq=False)
class PadChannels:
    """Zeros around the input on dimension 1: ``before`` zero channels, the input, ``after``.

    Linear and without a constant. :func:`onespike.network.populations` expresses a
    :class:`Concat` as one such padding per input inside the projections, and folds it into a
    following Linear/Conv2d (a slice of its weights) wherever it can.
    """

    before: int
    after: int

    def __post_init__(self) -> None:
        if self.before < 0 or self.after < 0:
            raise InvalidGraphError(
                f"PadChannels needs before, after >= 0, got {self.before}, {self.after}"
            )


@dataclass(frozen=True, eq=False)
class Affine:
    """Per-channel ``y = x * scale + shift`` on dimension 1 (BatchNorm, input normalisation)."""

    scale: Tensor
    shift: Tensor

    def __post_init__(self) -> None:
        if self.scale.ndim != 1 or self.scale.shape != self.shift.shape:
            raise InvalidGraphError("Affine scale and shift must be 1-D and of equal length")


@dataclass(frozen=True, eq=False)
class Output:
    """The network output (logits)."""


Node: TypeAlias = (
    Input
    | Linear
    | Conv2d
    | AvgPool2d
    | AdaptiveAvgPool2d
    | MaxPool2d
    | Flatten
    | ReLU
    | Add
    | Concat
    | Affine
    | PadChannels
    | Output
)
LINEAR_NODES = (Linear, Conv2d, AvgPool2d, AdaptiveAvgPool2d, Flatten, Affine, PadChannels)
"""Nodes that compute a linear map plus (Linear, Conv2d, Affine) a constant."""
_MULTI_INPUT = (Add, Concat)


@dataclass(frozen=True, eq=False)
class Graph:
    """A network as data: named nodes and directed edges in argument order.

    Attributes:
        nodes: node name to node.
        edges: ``(source, target)`` pairs; a node's inputs are its incoming edges in list order.
        scales: per-population activation scales set by :func:`onespike.normalize`
            (population name to scale); empty until then.
        shapes: per-sample output shape of every node, filled by :func:`extract` or
            :meth:`infer_shapes`.
    """

    nodes: dict[str, Node]
    edges: list[tuple[str, str]]
    scales: dict[str, float] = field(default_factory=dict)
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # Adjacency, derived once from ``edges`` so that structural queries cost O(degree).
    _inputs: dict[str, list[str]] = field(init=False, repr=False, compare=False)
    _consumers: dict[str, list[str]] = field(init=False, repr=False, compare=False)
    _order: list[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._validate()
        if not self.shapes:
            object.__setattr__(self, "shapes", self._infer_shapes())

    @staticmethod
    def sequential(input_shape: Sequence[int], layers: Iterable[Node]) -> Graph:
        """Build a chain ``input -> layers... -> output`` with names ``"0"``, ``"1"``, ..."""
        nodes: dict[str, Node] = {"input": Input(tuple(int(s) for s in input_shape))}
        edges: list[tuple[str, str]] = []
        previous = "input"
        for index, layer in enumerate(layers):
            name = str(index)
            nodes[name] = layer
            edges.append((previous, name))
            previous = name
        nodes["output"] = Output()
        edges.append((previous, "output"))
        return Graph(nodes, edges)

    # structure -----------------------------------------------------------------------------
    def inputs_of(self, name: str) -> list[str]:
        """Names of the nodes feeding ``name``, in argument order."""
        return list(self._inputs[name])

    def consumers_of(self, name: str) -> list[str]:
        """Names of the nodes reading ``name``'s output."""
        return list(self._consumers[name])

    @property
    def input_name(self) -> str:
        return next(n for n, node in self.nodes.items() if isinstance(node, Input))

    @property
    def output_name(self) -> str:
        return next(n for n, node in self.nodes.items() if isinstance(node, Output))

    @property
    def input_shape(self) -> tuple[int, ...]:
        node = self.nodes[self.input_name]
        assert isinstance(node, Input)
        return node.shape

    def topological_order(self) -> list[str]:
        """Node names so that every node comes after its inputs."""
        return list(self._order)

    def _sort(self) -> list[str]:
        """Kahn's algorithm, first-in first-out, consumers in edge order."""
        indegree = {name: len(srcs) for name, srcs in self._inputs.items()}
        ready = deque(name for name, deg in indegree.items() if deg == 0)
        order: list[str] = []
        while ready:
            name = ready.popleft()
            order.append(name)
            for dst in self._consumers[name]:
                indegree[dst] -= 1
                if indegree[dst] == 0:
                    ready.append(dst)
        if len(order) != len(self.nodes):
            raise InvalidGraphError("the graph has a cycle; onespike handles feed-forward networks")
        return order

    def _validate(self) -> None:
        inputs: dict[str, list[str]] = {name: [] for name in self.nodes}
        consumers: dict[str, list[str]] = {name: [] for name in self.nodes}
        for src, dst in self.edges:
            for end in (src, dst):
                if end not in self.nodes:
                    raise InvalidGraphError(f"edge ({src!r}, {dst!r}) names unknown node {end!r}")
            inputs[dst].append(src)
            consumers[src].append(dst)
        object.__setattr__(self, "_inputs", inputs)
        object.__setattr__(self, "_consumers", consumers)
        kinds = [type(node) for node in self.nodes.values()]
        if kinds.count(Input) != 1 or kinds.count(Output) != 1:
            raise InvalidGraphError("a graph needs exactly one Input and one Output node")
        for name, node in self.nodes.items():
            arity = len(inputs[name])
            if isinstance(node, Input) and arity:
                raise InvalidGraphError(f"Input node {name!r} cannot have inputs")
            if isinstance(node, Add) and arity < 2:
                raise InvalidGraphError(f"Add node {name!r} needs at least two inputs")
            if isinstance(node, Concat) and arity < 1:
                raise InvalidGraphError(f"Concat node {name!r} needs at least one input")
            if not isinstance(node, (Input, *_MULTI_INPUT)) and arity != 1:
                raise InvalidGraphError(f"node {name!r} needs exactly one input, has {arity}")
            if isinstance(node, (Linear, Conv2d)):
                _check_finite(name, weight=node.weight, bias=node.bias)
            if isinstance(node, Affine):
                _check_finite(name, scale=node.scale, shift=node.shift)
        object.__setattr__(self, "_order", self._sort())

    def _infer_shapes(self) -> dict[str, tuple[int, ...]]:
        with torch.no_grad():
            like = first_tensor(self)
            example = torch.zeros(
                (1, *self.input_shape),
                device=None if like is None else like.device,
                dtype=like.dtype if like is not None and like.is_floating_point() else None,
            )
            _, values = run_graph(self, example, record=True)
        return {name: tuple(value.shape[1:]) for name, value in values.items()}

    def with_scales(self, scales: dict[str, float]) -> Graph:
        """A copy of this graph with ``scales`` (population name to activation scale)."""
        return replace(self, scales=dict(scales))


class GraphNet(nn.Module):
    """The ANN a :class:`Graph` describes, as an ``nn.Module`` (its forward is
    :func:`run_graph`).

    This is how a network imported as a graph (an ONNX file) enters the code that expects a
    module: :func:`onespike.tracing.extract` returns ``graph`` itself, and evaluating the ANN
    runs the graph. It has no trainable parameters.
    """

    def __init__(self, graph: Graph) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: Tensor) -> Tensor:
        """The graph's output (logits) for the batch ``x``."""
        out: Tensor = run_graph(self.graph, x)
        return out


# evaluation ------------------------------------------------------------------------------------
def first_tensor(graph: Graph) -> Tensor | None:
    """The first weight (or affine scale) of ``graph``, in node order: its device and dtype are
    the graph's; None for a graph without weights."""
    for node in graph.nodes.values():
        for key in ("weight", "scale"):
            value = getattr(node, key, None)
            if isinstance(value, Tensor):
                return value
    return None


def apply_linear(node: Node, x: Tensor, *, bias: bool = True) -> Tensor:
    """Apply a linear node to ``x`` (batch first); ``bias=False`` drops its constant term.

    Args:
        node: one of :data:`LINEAR_NODES`.
        x: input tensor with a leading batch dimension.
        bias: include the node's bias (Linear/Conv2d) or shift (Affine).

    Returns:
        The node's output.
    """
    if isinstance(node, Linear):
        return F.linear(x, node.weight.to(x.dtype), _maybe(node.bias, bias, x))
    if isinstance(node, Conv2d):
        return F.conv2d(
            x,
            node.weight.to(x.dtype),
            _maybe(node.bias, bias, x),
            node.stride,
            node.padding,
            node.dilation,
            node.groups,
        )
    if isinstance(node, AvgPool2d):
        return F.avg_pool2d(x, node.kernel_size, node.stride, node.padding)
    if isinstance(node, AdaptiveAvgPool2d):
        return F.adaptive_avg_pool2d(x, node.output_size)
    if isinstance(node, Flatten):
        return x.flatten(1)
    if isinstance(node, Affine):
        view = (1, -1) + (1,) * (x.ndim - 2)
        out = x * node.scale.to(x.dtype).view(view)
        return out + node.shift.to(x.dtype).view(view) if bias else out
    if isinstance(node, PadChannels):
        return F.pad(x, (0, 0) * (x.ndim - 2) + (node.before, node.after))
    raise TypeError(f"{type(node).__name__} is not a linear node")


def _maybe(bias: Tensor | None, keep: bool, like: Tensor) -> Tensor | None:
    return bias.to(like.dtype) if (keep and bias is not None) else None


def max_pool(node: MaxPool2d, x: Tensor) -> Tensor:
    """Max pooling as the graph defines it (padded positions never win)."""
    return F.max_pool2d(x, node.kernel_size, node.stride, node.padding)


def run_graph(
    graph: Graph,
    x: Tensor,
    *,
    record: bool = False,
    activation: Callable[[str, Tensor], Tensor] | None = None,
) -> Any:
    """Evaluate the graph as the ANN it describes.

    Args:
        graph: the network.
        x: input batch ``(B, *graph.input_shape)``.
        record: also return every node's output.
        activation: replaces ``relu`` at each ReLU node: called as ``activation(name, pre)``.

    Returns:
        The output tensor, or ``(output, {name: value})`` when ``record`` is set.
    """
    if tuple(x.shape[1:]) != graph.input_shape:
        raise ShapeError(
            f"input has per-sample shape {tuple(x.shape[1:])}, the network expects "
            f"{graph.input_shape} (batch first)"
        )
    values: dict[str, Tensor] = {}
    for name in graph.topological_order():
        node = graph.nodes[name]
        args = [values[src] for src in graph.inputs_of(name)]
        try:
            out = evaluate_node(node, name, args, x, activation)
        except RuntimeError as exc:  # torch's shape errors: name the node that failed
            raise ShapeError(
                f"node {name!r} ({type(node).__name__}) cannot take inputs of per-sample shapes "
                f"{[tuple(a.shape[1:]) for a in args]}: {exc}"
            ) from exc
        values[name] = out
    result = values[graph.output_name]
    return (result, values) if record else result


def evaluate_node(
    node: Node,
    name: str,
    args: list[Tensor],
    x: Tensor,
    activation: Callable[[str, Tensor], Tensor] | None = None,
) -> Tensor:
    """One node of :func:`run_graph`: ``args`` are its inputs' values, ``x`` the graph input."""
    if isinstance(node, Input):
        return x
    if isinstance(node, ReLU):
        if activation is not None:
            return activation(name, args[0])
        if node.max_value is not None:
            return args[0].clamp(0.0, node.max_value)
        return torch.relu(args[0])
    if isinstance(node, Add):
        out = args[0]
        for other in args[1:]:
            out = out + other
        return out
    if isinstance(node, Concat):
        return torch.cat(args, dim=1)
    if isinstance(node, MaxPool2d):
        return max_pool(node, args[0])
    if isinstance(node, Output):
        return args[0]
    return apply_linear(node, args[0])


def fold_affines(graph: Graph) -> Graph:
    """Fold Affine nodes into an adjacent Linear/Conv2d where the result is exactly equal.

    An Affine after a Linear/Conv2d (BatchNorm) is folded when that layer feeds nothing else.
    An Affine before a Linear/Conv2d (input normalisation) is folded when it feeds nothing else
    and, for a convolution, either the shift is zero or the convolution has no padding.

    One pass in topological order folds every Affine into the layer before it, then one pass in
    reverse order folds the rest into the layer after it (so chains of Affine nodes fold in
    either direction); the cost is linear in the number of nodes.

    Args:
        graph: the graph to simplify.

    Returns:
        A new graph; unfoldable Affine nodes are kept.
    """
    nodes = dict(graph.nodes)
    inputs = {name: graph.inputs_of(name) for name in nodes}
    consumers = {name: graph.consumers_of(name) for name in nodes}
    removed: dict[str, str] = {}  # folded Affine -> the node its readers now read

    def bypass(name: str) -> None:
        (src,) = inputs[name]
        for reader in consumers[name]:
            inputs[reader] = [src if i == name else i for i in inputs[reader]]
        consumers[src] = [c for c in consumers[src] if c != name] + consumers[name]
        del nodes[name]
        removed[name] = src

    order = graph.topological_order()
    for name in order:
        affine = nodes[name]
        if not isinstance(affine, Affine):
            continue
        (src,) = inputs[name]
        before = nodes[src]
        if isinstance(before, (Linear, Conv2d)) and consumers[src] == [name]:
            nodes[src] = _fold_after(before, affine)
            bypass(name)
    for name in reversed(order):
        node = nodes.get(name)
        if not isinstance(node, Affine) or len(consumers[name]) != 1:
            continue
        after = nodes[consumers[name][0]]
        if isinstance(after, (Linear, Conv2d)):
            folded = _fold_before(node, after)
            if folded is not None:
                nodes[consumers[name][0]] = folded
                bypass(name)

    def resolve(name: str) -> str:
        while name in removed:
            name = removed[name]
        return name

    edges = [(resolve(a), b) for a, b in graph.edges if b not in removed]
    shapes = {name: shape for name, shape in graph.shapes.items() if name in nodes}
    return Graph(nodes, edges, scales=dict(graph.scales), shapes=shapes)


def _fold_after(layer: Linear | Conv2d, affine: Affine) -> Linear | Conv2d:
    view = (-1,) + (1,) * (layer.weight.ndim - 1)
    weight = layer.weight * affine.scale.view(view)
    bias = layer.bias if layer.bias is not None else layer.weight.new_zeros(layer.weight.shape[0])
    bias = bias * affine.scale + affine.shift
    return replace(layer, weight=weight, bias=bias)


def _fold_before(affine: Affine, layer: Linear | Conv2d) -> Linear | Conv2d | None:
    fan_in = layer.weight.shape[1]
    if isinstance(layer, Conv2d):
        if layer.groups != 1 or affine.scale.numel() != fan_in:
            return None
        if bool((affine.shift != 0).any()) and max(layer.padding) > 0:
            return None
        weight = layer.weight * affine.scale.view(1, -1, 1, 1)
        shift_term = (layer.weight * affine.shift.view(1, -1, 1, 1)).sum(dim=(1, 2, 3))
    else:
        if affine.scale.numel() != fan_in:
            return None
        weight = layer.weight * affine.scale.view(1, -1)
        shift_term = layer.weight @ affine.shift
    bias = layer.bias if layer.bias is not None else layer.weight.new_zeros(layer.weight.shape[0])
    return replace(layer, weight=weight, bias=bias + shift_term)
