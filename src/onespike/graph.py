"""The framework-free network graph, and ``extract``: from a traced ``nn.Module`` to a ``Graph``.

A :class:`Graph` is data: ``nodes`` (name to a small frozen dataclass) and ``edges`` (pairs of
names, in argument order). Weights are detached CPU float32 tensors owned by the graph; nothing
refers back to the user's module. Every later stage (normalisation, conversion, operation
counting, export) reads this one representation.

``extract`` traces a module with ``torch.fx`` and maps each call to a node. Dropout and identity
are removed. BatchNorm directly after a Linear/Conv2d is folded into it with
``torch.nn.utils.fusion``; other BatchNorm layers and :class:`onespike.models.Normalize` become
per-channel :class:`Affine` nodes, folded into the following Linear/Conv2d where that is exact
(a convolution with zero padding changes the meaning of a shifted input at the borders, so a
shift is only folded into an unpadded convolution; otherwise the Affine node stays, and the
converters treat it exactly as a linear map plus a constant).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from onespike.binary import binary_weight, is_binary
from onespike.errors import InvalidGraphError, ShapeError, UnsupportedLayerError

__all__ = [
    "Add",
    "Affine",
    "AvgPool2d",
    "Conv2d",
    "Flatten",
    "Graph",
    "Input",
    "Linear",
    "MaxPool2d",
    "Node",
    "Output",
    "ReLU",
    "apply_linear",
    "extract",
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
        if tensor is not None and not bool(torch.isfinite(tensor).all()):
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
    """Rectified linear unit."""


@dataclass(frozen=True, eq=False)
class Add:
    """Element-wise sum of all inputs (residual connection)."""


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
    Input | Linear | Conv2d | AvgPool2d | MaxPool2d | Flatten | ReLU | Add | Affine | Output
)
LINEAR_NODES = (Linear, Conv2d, AvgPool2d, Flatten, Affine)


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
        return [src for src, dst in self.edges if dst == name]

    def consumers_of(self, name: str) -> list[str]:
        """Names of the nodes reading ``name``'s output."""
        return [dst for src, dst in self.edges if src == name]

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
        indegree = dict.fromkeys(self.nodes, 0)
        for _, dst in self.edges:
            indegree[dst] += 1
        ready = [name for name, deg in indegree.items() if deg == 0]
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for dst in self.consumers_of(name):
                indegree[dst] -= 1
                if indegree[dst] == 0:
                    ready.append(dst)
        if len(order) != len(self.nodes):
            raise InvalidGraphError("the graph has a cycle; onespike handles feed-forward networks")
        return order

    def _validate(self) -> None:
        for src, dst in self.edges:
            for end in (src, dst):
                if end not in self.nodes:
                    raise InvalidGraphError(f"edge ({src!r}, {dst!r}) names unknown node {end!r}")
        kinds = [type(node) for node in self.nodes.values()]
        if kinds.count(Input) != 1 or kinds.count(Output) != 1:
            raise InvalidGraphError("a graph needs exactly one Input and one Output node")
        for name, node in self.nodes.items():
            arity = len(self.inputs_of(name))
            if isinstance(node, Input) and arity:
                raise InvalidGraphError(f"Input node {name!r} cannot have inputs")
            if isinstance(node, Add) and arity < 2:
                raise InvalidGraphError(f"Add node {name!r} needs at least two inputs")
            if not isinstance(node, (Input, Add)) and arity != 1:
                raise InvalidGraphError(f"node {name!r} needs exactly one input, has {arity}")
            if isinstance(node, (Linear, Conv2d)):
                _check_finite(name, weight=node.weight, bias=node.bias)
            if isinstance(node, Affine):
                _check_finite(name, scale=node.scale, shift=node.shift)
        self.topological_order()

    def _infer_shapes(self) -> dict[str, tuple[int, ...]]:
        with torch.no_grad():
            example = torch.zeros((1, *self.input_shape))
            _, values = run_graph(self, example, record=True)
        return {name: tuple(value.shape[1:]) for name, value in values.items()}

    def with_scales(self, scales: dict[str, float]) -> Graph:
        """A copy of this graph with ``scales`` (population name to activation scale)."""
        return replace(self, scales=dict(scales))


# evaluation ------------------------------------------------------------------------------------
def apply_linear(node: Node, x: Tensor, *, bias: bool = True) -> Tensor:
    """Apply a linear node to ``x`` (batch first); ``bias=False`` drops its constant term.

    Args:
        node: a Linear, Conv2d, AvgPool2d, Flatten or Affine node.
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
    if isinstance(node, Flatten):
        return x.flatten(1)
    if isinstance(node, Affine):
        view = (1, -1) + (1,) * (x.ndim - 2)
        out = x * node.scale.to(x.dtype).view(view)
        return out + node.shift.to(x.dtype).view(view) if bias else out
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
        if isinstance(node, Input):
            out = x
        elif isinstance(node, ReLU):
            out = activation(name, args[0]) if activation is not None else torch.relu(args[0])
        elif isinstance(node, Add):
            out = args[0]
            for other in args[1:]:
                out = out + other
        elif isinstance(node, MaxPool2d):
            out = max_pool(node, args[0])
        elif isinstance(node, Output):
            out = args[0]
        else:
            out = apply_linear(node, args[0])
        values[name] = out
    result = values[graph.output_name]
    return (result, values) if record else result


# extraction ------------------------------------------------------------------------------------
_IDENTITY_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
_RELU_FUNCTIONS: set[Any] = {F.relu, torch.relu}
_ADD_FUNCTIONS: set[Any] = {operator.add, torch.add, operator.iadd}
_DROPOUT_FUNCTIONS: set[Any] = {F.dropout, F.dropout1d, F.dropout2d}


def _describe(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack")
    where = ""
    if stack:
        path, _ = list(stack.values())[-1]
        where = f" inside module '{path}'"
    return f"'{node.name}'{where}"


def _tensor(t: Tensor) -> Tensor:
    """A detached copy owned by the graph; float64 stays float64, other types become float32."""
    t = t.detach().clone()
    return t if t.dtype == torch.float64 else t.float()


def _norm_to_affine(module: nn.Module, name: str) -> Affine:
    from onespike.models import Normalize  # local: models imports torch layers only

    if isinstance(module, Normalize):
        std = _tensor(module.std).flatten()
        mean = _tensor(module.mean).flatten()
        return Affine(scale=1.0 / std, shift=-mean / std)
    assert isinstance(module, nn.modules.batchnorm._BatchNorm)
    if module.running_mean is None or module.running_var is None:
        raise UnsupportedLayerError(
            f"BatchNorm '{name}' has no running statistics (track_running_stats=False); "
            "onespike needs inference-time statistics to fold it"
        )
    inv = torch.rsqrt(_tensor(module.running_var) + module.eps)
    gamma = _tensor(module.weight) if module.weight is not None else torch.ones_like(inv)
    beta = _tensor(module.bias) if module.bias is not None else torch.zeros_like(inv)
    scale = gamma * inv
    return Affine(scale=scale, shift=beta - _tensor(module.running_mean) * scale)


def _module_node(module: nn.Module, name: str) -> Node | None:
    """Map a leaf module to a node; ``None`` means 'pass the input through'."""
    from onespike.models import Normalize
    from onespike.optimize import InputQuant, TTFSQuant

    # The spike encoder rounds the input exactly as InputQuant does; a TTFSQuant is the ReLU
    # of a TTFS population whose scale the caller records.
    if isinstance(module, (*_IDENTITY_MODULES, InputQuant)):
        return None
    if isinstance(module, (nn.ReLU, TTFSQuant)):
        return ReLU()
    bias: Tensor | None
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        # A binary layer computes with sign(W) * alpha: that is its weight in the graph.
        weight = binary_weight(module.weight) if is_binary(module) else module.weight
    if isinstance(module, nn.Linear):
        bias = _tensor(module.bias) if module.bias is not None else None
        return Linear(_tensor(weight), bias)
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros":
            raise UnsupportedLayerError(
                f"Conv2d '{name}' uses padding_mode={module.padding_mode!r}; only zero padding "
                "is supported"
            )
        if isinstance(module.padding, str):
            raise UnsupportedLayerError(
                f"Conv2d '{name}' uses padding={module.padding!r}; give the padding as integers"
            )
        bias = _tensor(module.bias) if module.bias is not None else None
        return Conv2d(
            _tensor(weight),
            bias,
            _pair(module.stride),
            _pair(module.padding),
            _pair(module.dilation),
            module.groups,
        )
    if isinstance(module, nn.AvgPool2d):
        if module.ceil_mode or module.divisor_override is not None or not module.count_include_pad:
            raise UnsupportedLayerError(
                f"AvgPool2d '{name}': ceil_mode, divisor_override and count_include_pad=False are "
                "not supported"
            )
        stride = module.stride if module.stride is not None else module.kernel_size
        return AvgPool2d(_pair(module.kernel_size), _pair(stride), _pair(module.padding))
    if isinstance(module, nn.MaxPool2d):
        if module.ceil_mode or _pair(module.dilation) != (1, 1) or module.return_indices:
            raise UnsupportedLayerError(
                f"MaxPool2d '{name}': ceil_mode, dilation and return_indices are not supported"
            )
        stride = module.stride if module.stride is not None else module.kernel_size
        return MaxPool2d(_pair(module.kernel_size), _pair(stride), _pair(module.padding))
    if isinstance(module, nn.Flatten):
        if module.start_dim != 1 or module.end_dim != -1:
            raise UnsupportedLayerError(
                f"Flatten '{name}' must flatten every non-batch dimension (start_dim=1)"
            )
        return Flatten()
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, Normalize)):
        return _norm_to_affine(module, name)
    raise UnsupportedLayerError(
        f"module '{name}' of type {type(module).__module__}.{type(module).__name__} has no "
        "spiking equivalent in onespike; supported: Linear, Conv2d, AvgPool2d, MaxPool2d, "
        "Flatten, ReLU, BatchNorm, Dropout, residual add, onespike.models.Normalize"
    )


def _function_node(node: fx.Node, shapes: dict[str, tuple[int, ...]]) -> Node | str | None:
    """Map a call_function/call_method node; returns ``"skip"`` for non-tensor helpers."""
    target = node.target
    if node.op == "call_function":
        if target in _RELU_FUNCTIONS:
            return ReLU()
        if target in _ADD_FUNCTIONS:
            if len(node.args) != 2 or node.kwargs.get("alpha", 1) != 1:
                raise UnsupportedLayerError(f"add {_describe(node)} must add exactly two tensors")
            if not all(isinstance(a, fx.Node) for a in node.args):
                raise UnsupportedLayerError(
                    f"add {_describe(node)} adds a constant; fold it into a layer bias instead"
                )
            return Add()
        if target in _DROPOUT_FUNCTIONS:
            return None
        if target is torch.flatten:
            start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 0)
            if start != 1:
                raise UnsupportedLayerError(f"flatten {_describe(node)} must use start_dim=1")
            return Flatten()
        if target is F.max_pool2d or target is F.avg_pool2d:
            raise UnsupportedLayerError(
                f"functional pooling {_describe(node)}: use nn.MaxPool2d/nn.AvgPool2d modules so "
                "their parameters are visible to the tracer"
            )
        if target is getattr:
            return "skip"
    if node.op == "call_method":
        if target == "relu":
            return ReLU()
        if target == "size":
            return "skip"
        if target in ("flatten", "view", "reshape"):
            source = node.args[0]
            assert isinstance(source, fx.Node)
            in_shape = shapes[source.name]
            out_shape = shapes[node.name]
            if out_shape == (math.prod(in_shape),):
                return Flatten()
            raise UnsupportedLayerError(
                f"{target} {_describe(node)} reshapes {in_shape} to {out_shape}; only flattening "
                "all non-batch dimensions is supported"
            )
        if target == "contiguous":
            return None
    raise UnsupportedLayerError(
        f"operation {getattr(target, '__name__', target)!r} at {_describe(node)} has no spiking "
        "equivalent in onespike"
    )


class _Tracer(fx.Tracer):
    """Keeps onespike's own Normalize module a leaf, so it maps to one Affine node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        from onespike.models import Normalize
        from onespike.optimize import InputQuant, TTFSQuant

        if isinstance(m, (Normalize, InputQuant, TTFSQuant)) or is_binary(m):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def extract(module: nn.Module, example_input: Tensor) -> Graph:
    """Trace ``module`` with torch.fx into a :class:`Graph`, folding BatchNorm and normalisation.

    Args:
        module: the trained network (evaluated in eval mode; the module is not modified).
        example_input: a batch ``(B, ...)`` used to infer shapes.

    Returns:
        The graph, with BatchNorm folded into the preceding Linear/Conv2d where there is one.

    Raises:
        UnsupportedLayerError: a module or operation has no spiking equivalent; the message
            names its qualified path and type.
        InvalidGraphError: weights are NaN or infinite.
    """
    was_training = module.training
    module.eval()
    try:
        try:
            traced = fx.GraphModule(module, _Tracer().trace(module))
        except Exception as exc:  # torch.fx raises several types for untraceable code
            raise UnsupportedLayerError(
                f"torch.fx could not trace {type(module).__name__}: {exc}. Data-dependent control "
                "flow cannot be converted; express the network with modules and tensor ops"
            ) from exc
        dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
        example = example_input.detach().to(dtype or torch.float32)
        with torch.no_grad():
            ShapeProp(traced).propagate(example)
        shapes: dict[str, tuple[int, ...]] = {}
        for node in traced.graph.nodes:
            meta = node.meta.get("tensor_meta")
            if meta is not None and hasattr(meta, "shape"):
                shapes[node.name] = tuple(int(s) for s in meta.shape[1:])
        graph = _build(traced, shapes)
    finally:
        module.train(was_training)
    return fold_affines(graph)


def _build(traced: fx.GraphModule, shapes: dict[str, tuple[int, ...]]) -> Graph:
    from onespike.optimize import TTFSQuant

    scales: dict[str, float] = {}  # learned scales of TTFS-aware activations
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str]] = []
    alias: dict[str, str] = {}  # fx node name -> graph node name carrying its value
    for fx_node in traced.graph.nodes:
        if fx_node.op == "placeholder":
            nodes["input"] = Input(shapes[fx_node.name])
            alias[fx_node.name] = "input"
            continue
        if fx_node.op == "output":
            (result,) = fx_node.args
            if not isinstance(result, fx.Node):
                raise UnsupportedLayerError("the network must return a single tensor")
            nodes["output"] = Output()
            edges.append((alias[result.name], "output"))
            continue
        if fx_node.op == "get_attr":
            raise UnsupportedLayerError(
                f"parameter access {_describe(fx_node)}: use tensors only through modules"
            )
        mapped: Node | str | None
        if fx_node.op == "call_module":
            name = str(fx_node.target)
            submodule = traced.get_submodule(name)
            mapped = _module_node(submodule, name)
        else:
            name = fx_node.name
            mapped = _function_node(fx_node, shapes)
        if mapped == "skip":
            continue
        tensor_args = [a for a in fx_node.args if isinstance(a, fx.Node)]
        if mapped is None:
            alias[fx_node.name] = alias[tensor_args[0].name]
            continue
        if name in nodes:
            name = fx_node.name
        assert not isinstance(mapped, str)
        nodes[name] = mapped
        alias[fx_node.name] = name
        if fx_node.op == "call_module" and isinstance(submodule, TTFSQuant):
            scales[name] = float(submodule.scale.detach().clamp(min=1e-6))
        sources = tensor_args if isinstance(mapped, Add) else tensor_args[:1]
        for arg in sources:
            if arg.name not in alias:
                raise UnsupportedLayerError(f"{_describe(fx_node)} reads a non-tensor value")
            edges.append((alias[arg.name], name))
    return Graph(nodes, edges, scales=scales)


def fold_affines(graph: Graph) -> Graph:
    """Fold Affine nodes into an adjacent Linear/Conv2d where the result is exactly equal.

    An Affine after a Linear/Conv2d (BatchNorm) is folded when that layer feeds nothing else.
    An Affine before a Linear/Conv2d (input normalisation) is folded when it feeds nothing else
    and, for a convolution, either the shift is zero or the convolution has no padding.

    Args:
        graph: the graph to simplify.

    Returns:
        A new graph; unfoldable Affine nodes are kept.
    """
    nodes = dict(graph.nodes)
    edges = list(graph.edges)
    changed = True
    while changed:
        changed = False
        current = Graph(nodes, edges)
        for name, node in nodes.items():
            if not isinstance(node, Affine):
                continue
            (src,) = current.inputs_of(name)
            consumers = current.consumers_of(name)
            before = nodes[src]
            if isinstance(before, (Linear, Conv2d)) and current.consumers_of(src) == [name]:
                nodes[src] = _fold_after(before, node)
                _bypass(nodes, edges, name, src)
                changed = True
                break
            if len(consumers) == 1 and isinstance(nodes[consumers[0]], (Linear, Conv2d)):
                after = nodes[consumers[0]]
                folded = _fold_before(node, after)  # type: ignore[arg-type]
                if folded is not None:
                    nodes[consumers[0]] = folded
                    _bypass(nodes, edges, name, src)
                    changed = True
                    break
    return Graph(nodes, edges, scales=dict(graph.scales))


def _bypass(nodes: dict[str, Node], edges: list[tuple[str, str]], name: str, src: str) -> None:
    del nodes[name]
    edges[:] = [(src if a == name else a, b) for a, b in edges if b != name]


def _fold_after(layer: Linear | Conv2d, affine: Affine) -> Linear | Conv2d:
    view = (-1,) + (1,) * (layer.weight.ndim - 1)
    weight = layer.weight * affine.scale.view(view)
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.weight.shape[0])
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
    bias = layer.bias if layer.bias is not None else torch.zeros(layer.weight.shape[0])
    return replace(layer, weight=weight, bias=bias + shift_term)
