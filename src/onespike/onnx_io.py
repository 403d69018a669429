"""ONNX import: an ONNX classifier read straight into onespike's :class:`~onespike.graph.Graph`.

:func:`from_onnx` reads the file with the ``onnx`` package (protobuf only: reading runs no
code, and onnxruntime is never needed) and maps every node of the default domain, opset 13 or
later:

=======================================================  ==========================================
ONNX                                                     graph
=======================================================  ==========================================
``Conv`` (groups, dilations, symmetric pads)             :class:`Conv2d`
``Gemm``; ``MatMul`` by a constant matrix                :class:`Linear`
``Relu``; ``Clip(0, c)``                                 :class:`ReLU` (``max_value=c``)
``MaxPool``, ``GlobalMaxPool``                           :class:`MaxPool2d`
``AveragePool``, ``GlobalAveragePool``                   :class:`AvgPool2d`
``BatchNormalization``; ``Add``/``Sub``/``Mul``/``Div``  :class:`Affine` (folded where exact)
by a per-channel constant
``Add``/``Sum`` of tensors; ``Concat`` on axis 1         :class:`Add`; :class:`Concat`
``Flatten`` (axis 1); ``Reshape`` to ``(N, -1)``         :class:`Flatten`
``Dropout``, ``Identity``, a final ``Softmax``           nothing
=======================================================  ==========================================

Shape arithmetic on constants (``Shape``, ``Gather``, ``Unsqueeze``, ``Squeeze``, ``Slice``,
``Concat``, ``Cast`` and the four arithmetic operators), as exporters write for
``x.view(x.size(0), -1)``, is evaluated at import, with the batch dimension taken as 1 (a
``Reshape`` to two dimensions keeps the batch dimension and flattens the rest). Everything else
is collected and refused at once in one :class:`~onespike.errors.UnsupportedLayerError`, each
place with its node name and operator type.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from onespike.errors import CorruptFileError, MissingFileError, ShapeError, UnsupportedLayerError
from onespike.graph import (
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
    ReLU,
    evaluate_node,
    fold_affines,
)

__all__ = ["MIN_OPSET", "from_onnx"]

MIN_OPSET = 13
"""The oldest opset of the default domain :func:`from_onnx` reads."""


class _Refused(Exception):
    """One node that has no spiking equivalent (collected, not raised)."""


class _Tensor:
    """A value of the network: a graph node, its per-sample shape and a batch-of-one probe."""

    def __init__(self, name: str, shape: tuple[int, ...], probe: Tensor) -> None:
        self.name, self.shape, self.probe = name, shape, probe


def _attributes(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class _Importer:
    def __init__(self, model: Any, input_shape: tuple[int, ...] | None) -> None:
        from onnx import numpy_helper

        self.model = model
        graph = model.graph
        self.static: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in graph.initializer
        }
        self.values: dict[str, _Tensor] = {}
        self.nodes: dict[str, Node] = {}
        self.edges: list[tuple[str, str]] = []
        self.problems: list[str] = []
        self.uses = Counter(name for node in graph.node for name in node.input if name)
        self.outputs = {out.name for out in graph.output}
        inputs = [i for i in graph.input if i.name not in self.static]
        if len(inputs) != 1:
            raise UnsupportedLayerError(
                f"the ONNX graph has {len(inputs)} inputs ({[i.name for i in inputs]}); onespike "
                "converts classifiers with one input tensor"
            )
        if len(graph.output) != 1:
            raise UnsupportedLayerError(
                f"the ONNX graph has {len(graph.output)} outputs; onespike converts classifiers "
                "with one output (the logits)"
            )
        shape = self._input_shape(inputs[0], input_shape)
        self.nodes["input"] = Input(shape)
        self.values[inputs[0].name] = _Tensor("input", shape, torch.zeros((1, *shape)))

    @staticmethod
    def _input_shape(value: Any, given: tuple[int, ...] | None) -> tuple[int, ...]:
        dims = value.type.tensor_type.shape.dim
        sizes = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]
        declared = sizes[1:]
        if given is not None:
            wanted = tuple(int(s) for s in given)
            if len(declared) != len(wanted) or any(
                d is not None and d != w for d, w in zip(declared, wanted, strict=True)
            ):
                raise ShapeError(
                    f"the ONNX input {value.name!r} takes per-sample shape {declared} (None: "
                    f"symbolic), not {wanted}"
                )
            return wanted
        if len(sizes) < 2 or any(s is None for s in declared):
            raise ShapeError(
                f"the ONNX input {value.name!r} has shape {sizes} (None: symbolic); onespike "
                "needs every dimension after the batch fixed. Pass input_shape=(C, H, W) (the "
                "command line takes it from the dataset)"
            )
        return tuple(int(s) for s in declared)  # type: ignore[arg-type]

    # ---- helpers ------------------------------------------------------------------------
    def _unique(self, node: Any) -> str:
        base = node.name or node.output[0] or node.op_type
        base = re.sub(r"[^A-Za-z0-9_.-]+", "_", base).strip("_.") or node.op_type
        name, index = base, 1
        while name in self.nodes:
            index += 1
            name = f"{base}_{index}"
        return name

    def _add(self, onnx_node: Any, node: Node, sources: list[_Tensor]) -> _Tensor:
        name = self._unique(onnx_node)
        args = [s.probe for s in sources]
        try:
            probe = evaluate_node(node, name, args, args[0])
        except RuntimeError as exc:
            raise _Refused(
                f"{onnx_node.op_type} node {name!r}: inputs of shapes "
                f"{[s.shape for s in sources]} do not fit: {exc}"
            ) from exc
        self.nodes[name] = node
        wired = sources if isinstance(node, (Add, Concat)) else sources[:1]
        self.edges.extend((s.name, name) for s in wired)
        return _Tensor(name, tuple(probe.shape[1:]), probe)

    def _tensor(self, name: str, what: str) -> _Tensor:
        if name not in self.values:
            kind = "a constant" if name in self.static else "not computed by a supported node"
            raise _Refused(f"{what}: input {name!r} is {kind}; it must be the network's tensor")
        return self.values[name]

    def _const(self, name: str, what: str) -> np.ndarray:
        if name not in self.static:
            raise _Refused(f"{what}: input {name!r} must be a constant (an initializer)")
        return self.static[name]

    # ---- the walk -------------------------------------------------------------------------
    def run(self) -> Graph:
        graph = self.model.graph
        for node in graph.node:
            what = f"{node.op_type} node {node.name or node.output[0]!r}"
            if node.domain not in ("", "ai.onnx"):
                self.problems.append(f"{what}: operator domain {node.domain!r} is not supported")
                continue
            inputs = list(node.input)
            try:
                if (
                    inputs
                    and all(i == "" or i in self.static for i in inputs)
                    and node.op_type in _STATIC
                ):
                    results = _STATIC[node.op_type](self, node, inputs)
                    for out, value in zip(node.output, results, strict=False):
                        self.static[out] = value
                    continue
                if node.op_type == "Constant":
                    self.static[node.output[0]] = self._constant(node)
                    continue
                if node.op_type == "Shape" and inputs[0] in self.values:
                    self.static[node.output[0]] = self._shape(node, self.values[inputs[0]])
                    continue
                handler = _HANDLERS.get(node.op_type)
                if handler is None:
                    raise _Refused(f"{what}: operator {node.op_type} has no spiking equivalent")
                result = handler(self, node, what)
            except _Refused as exc:
                self.problems.append(str(exc))
                # keep walking: the value passes through so that later problems are found too
                passing = next((self.values[i] for i in inputs if i in self.values), None)
                if passing is not None:
                    for out in node.output:
                        self.values[out] = passing
                continue
            if result is not None:
                self.values[node.output[0]] = result
        output = graph.output[0].name
        if not self.problems and output not in self.values:
            self.problems.append(f"the output {output!r} is not computed from the input tensor")
        if self.problems:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            raise UnsupportedLayerError(
                f"{len(self.problems)} place(s) of the ONNX graph have no spiking equivalent in "
                f"onespike:\n{listed}",
                places=self.problems,
            )
        self.nodes["output"] = Output()
        self.edges.append((self.values[output].name, "output"))
        return fold_affines(Graph(self.nodes, self.edges))

    def _constant(self, node: Any) -> np.ndarray:
        from onnx import numpy_helper

        attrs = _attributes(node)
        if "value" in attrs:
            return numpy_helper.to_array(attrs["value"])
        for key in ("value_float", "value_int", "value_floats", "value_ints"):
            if key in attrs:
                return np.asarray(attrs[key])
        raise _Refused(f"Constant node {node.name!r}: unsupported constant kind {sorted(attrs)}")

    @staticmethod
    def _shape(node: Any, value: _Tensor) -> np.ndarray:
        shape = np.asarray((1, *value.shape), dtype=np.int64)  # the batch taken as 1
        attrs = _attributes(node)
        start, end = attrs.get("start", 0), attrs.get("end", None)
        return shape[start:end]


# ---- static (shape) arithmetic --------------------------------------------------------------
def _static_unary(
    fn: Callable[..., np.ndarray],
) -> Callable[[_Importer, Any, list[str]], list[np.ndarray]]:
    def run(imp: _Importer, node: Any, inputs: list[str]) -> list[np.ndarray]:
        args = [imp.static[i] if i else None for i in inputs]
        try:
            return [np.asarray(fn(imp, node, args, _attributes(node)))]
        except (ValueError, IndexError, TypeError, KeyError) as exc:
            raise _Refused(
                f"{node.op_type} node {node.name or node.output[0]!r}: constant inputs of shapes "
                f"{[None if a is None else a.shape for a in args]} do not fit: {exc}"
            ) from exc

    return run


def _slice(_: _Importer, node: Any, args: list[Any], attrs: dict[str, Any]) -> np.ndarray:
    data, starts, ends = args[0], args[1], args[2]
    axes = args[3] if len(args) > 3 and args[3] is not None else np.arange(len(starts))
    steps = args[4] if len(args) > 4 and args[4] is not None else np.ones(len(starts), np.int64)
    index = [slice(None)] * data.ndim
    for s, e, a, k in zip(starts, ends, axes, steps, strict=True):
        index[int(a)] = slice(int(s), int(e), int(k))
    return data[tuple(index)]


def _squeeze(_: _Importer, node: Any, args: list[Any], attrs: dict[str, Any]) -> np.ndarray:
    axes = args[1] if len(args) > 1 and args[1] is not None else None
    return np.squeeze(args[0], axis=None if axes is None else tuple(int(a) for a in axes))


def _unsqueeze(_: _Importer, node: Any, args: list[Any], attrs: dict[str, Any]) -> np.ndarray:
    out = args[0]
    for axis in sorted(int(a) % (out.ndim + len(args[1])) for a in args[1]):
        out = np.expand_dims(out, axis)
    return out


_STATIC: dict[str, Callable[[_Importer, Any, list[str]], list[np.ndarray]]] = {
    "Identity": _static_unary(lambda _i, _n, a, _t: a[0]),
    "Cast": _static_unary(lambda _i, _n, a, _t: a[0]),
    "Gather": _static_unary(
        lambda _i, _n, a, t: np.take(a[0], a[1].astype(np.int64), axis=int(t.get("axis", 0)))
    ),
    "Concat": _static_unary(lambda _i, _n, a, t: np.concatenate(a, axis=int(t["axis"]))),
    "Unsqueeze": _static_unary(_unsqueeze),
    "Squeeze": _static_unary(_squeeze),
    "Slice": _static_unary(_slice),
    "Add": _static_unary(lambda _i, _n, a, _t: a[0] + a[1]),
    "Sub": _static_unary(lambda _i, _n, a, _t: a[0] - a[1]),
    "Mul": _static_unary(lambda _i, _n, a, _t: a[0] * a[1]),
    "Div": _static_unary(
        lambda _i, _n, a, _t: a[0] // a[1] if a[0].dtype.kind in "iu" else a[0] / a[1]
    ),
}


# ---- tensor operators -----------------------------------------------------------------------
def _pads(
    attrs: dict[str, Any],
    what: str,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
) -> tuple[int, int]:
    auto = _decode(attrs.get("auto_pad", "NOTSET"))
    if auto == "VALID":
        return (0, 0)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        spans = [d * (k - 1) for k, d in zip(kernel, dilations, strict=True)]
        if strides != (1, 1) or any(span % 2 for span in spans):
            raise _Refused(
                f"{what}: auto_pad={auto} pads asymmetrically here; export explicit pads"
            )
        return (spans[0] // 2, spans[1] // 2)
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
        raise _Refused(f"{what}: pads {pads} are not symmetric; onespike pads both sides alike")
    return (int(pads[0]), int(pads[1]))


def _two(values: Any, default: int, what: str, key: str) -> tuple[int, int]:
    items = list(values) if values is not None else [default, default]
    if len(items) != 2:
        raise _Refused(f"{what}: {key} {items} is not two-dimensional")
    return (int(items[0]), int(items[1]))


def _conv(imp: _Importer, node: Any, what: str) -> _Tensor:
    x = imp._tensor(node.input[0], what)
    weight = torch.from_numpy(np.array(imp._const(node.input[1], what), dtype=np.float32))
    if weight.ndim != 4:
        raise _Refused(
            f"{what}: only 2-D convolutions are supported (weight {tuple(weight.shape)})"
        )
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = torch.from_numpy(np.array(imp._const(node.input[2], what), dtype=np.float32))
    attrs = _attributes(node)
    kernel = (int(weight.shape[2]), int(weight.shape[3]))
    strides = _two(attrs.get("strides"), 1, what, "strides")
    dilations = _two(attrs.get("dilations"), 1, what, "dilations")
    padding = _pads(attrs, what, kernel, strides, dilations)
    conv = Conv2d(weight, bias, strides, padding, dilations, int(attrs.get("group", 1)))
    return imp._add(node, conv, [x])


def _gemm(imp: _Importer, node: Any, what: str) -> _Tensor:
    attrs = _attributes(node)
    if attrs.get("transA", 0):
        raise _Refused(f"{what}: transA=1 is not supported")
    x = imp._tensor(node.input[0], what)
    b = np.array(imp._const(node.input[1], what), dtype=np.float32)
    b = b if attrs.get("transB", 0) else b.T  # (out, in)
    weight = torch.from_numpy(np.ascontiguousarray(b * float(attrs.get("alpha", 1.0))))
    bias = None
    if len(node.input) > 2 and node.input[2]:
        c = np.array(imp._const(node.input[2], what), dtype=np.float32) * float(
            attrs.get("beta", 1.0)
        )
        bias = torch.from_numpy(np.array(np.broadcast_to(c, (weight.shape[0],))))
    return imp._add(node, Linear(weight, bias), [x])


def _matmul(imp: _Importer, node: Any, what: str) -> _Tensor:
    x = imp._tensor(node.input[0], what)
    b = np.array(imp._const(node.input[1], what), dtype=np.float32)
    if b.ndim != 2 or len(x.shape) != 1:
        raise _Refused(f"{what}: only a flat input times a constant matrix is supported")
    return imp._add(node, Linear(torch.from_numpy(np.ascontiguousarray(b.T))), [x])


def _relu(imp: _Importer, node: Any, what: str) -> _Tensor:
    return imp._add(node, ReLU(), [imp._tensor(node.input[0], what)])


def _clip(imp: _Importer, node: Any, what: str) -> _Tensor:
    x = imp._tensor(node.input[0], what)
    low = float(imp._const(node.input[1], what)) if len(node.input) > 1 and node.input[1] else None
    high = float(imp._const(node.input[2], what)) if len(node.input) > 2 and node.input[2] else None
    if low != 0.0:
        raise _Refused(f"{what}: Clip with min {low} is not a ReLU; only Clip(0, c) converts")
    if high is not None and high <= 0:
        raise _Refused(f"{what}: Clip to [0, {high}] is zero everywhere")
    relu = ReLU() if high is None or math.isinf(high) else ReLU(max_value=high)
    return imp._add(node, relu, [x])


def _pool(imp: _Importer, node: Any, what: str) -> _Tensor:
    x = imp._tensor(node.input[0], what)
    attrs = _attributes(node)
    kernel = _two(attrs.get("kernel_shape"), 1, what, "kernel_shape")
    strides = _two(attrs.get("strides"), 1, what, "strides")
    dilations = _two(attrs.get("dilations"), 1, what, "dilations")
    if dilations != (1, 1):
        raise _Refused(f"{what}: dilated pooling is not supported")
    padding = _pads(attrs, what, kernel, strides, dilations)
    if attrs.get("ceil_mode", 0):
        sizes = x.shape[1:]
        for n, k, s, p in zip(sizes, kernel, strides, padding, strict=True):
            if (n + 2 * p - k) % s:
                raise _Refused(f"{what}: ceil_mode=1 adds a partial window at this input size")
    if node.op_type == "MaxPool":
        if len(node.output) > 1 and node.output[1]:
            raise _Refused(f"{what}: the Indices output is not supported")
        return imp._add(node, MaxPool2d(kernel, strides, padding), [x])
    if padding != (0, 0) and not attrs.get("count_include_pad", 0):
        raise _Refused(
            f"{what}: count_include_pad=0 with padding averages border windows over fewer "
            "values; export with count_include_pad=True or without padding"
        )
    return imp._add(node, AvgPool2d(kernel, strides, padding), [x])


def _global_pool(imp: _Importer, node: Any, what: str) -> _Tensor:
    x = imp._tensor(node.input[0], what)
    if len(x.shape) != 3:
        raise _Refused(f"{what}: global pooling needs a (C, H, W) input, got {x.shape}")
    kernel = (x.shape[1], x.shape[2])
    kind = MaxPool2d if node.op_type == "GlobalMaxPool" else AvgPool2d
    return imp._add(node, kind(kernel, kernel), [x])


def _batchnorm(imp: _Importer, node: Any, what: str) -> _Tensor:
    attrs = _attributes(node)
    if attrs.get("training_mode", 0):
        raise _Refused(f"{what}: training_mode=1; export the model in eval mode")
    x = imp._tensor(node.input[0], what)
    gamma, beta, mean, var = (
        torch.from_numpy(np.array(imp._const(n, what), dtype=np.float32)) for n in node.input[1:5]
    )
    scale = gamma * torch.rsqrt(var + float(attrs.get("epsilon", 1e-5)))
    return imp._add(node, Affine(scale, beta - mean * scale), [x])


def _channel_vector(const: np.ndarray, shape: tuple[int, ...], what: str) -> Tensor:
    """A constant that broadcasts over a ``(1, *shape)`` value and varies along dim 1 only."""
    try:
        full = np.broadcast_to(np.asarray(const, dtype=np.float32), (1, *shape))
    except ValueError as exc:
        raise _Refused(f"{what}: a constant of shape {const.shape} does not fit {shape}") from exc
    vector = full[(0, slice(None)) + (0,) * (len(shape) - 1)]
    if not np.array_equal(
        full, np.broadcast_to(vector.reshape((1, -1) + (1,) * (len(shape) - 1)), full.shape)
    ):
        raise _Refused(
            f"{what}: the constant varies along the spatial dimensions; only per-channel "
            "constants (BatchNorm-like) fold into the synapses"
        )
    return torch.from_numpy(np.array(vector))


def _arithmetic(imp: _Importer, node: Any, what: str) -> _Tensor:
    a, b = node.input[0], node.input[1]
    if node.op_type in ("Add", "Sum") and all(n in imp.values for n in node.input):
        return imp._add(node, Add(), [imp.values[n] for n in node.input])
    if node.op_type == "Sum":
        raise _Refused(f"{what}: Sum of a constant; fold it into a layer bias")
    tensor_first = a in imp.values
    x = imp._tensor(a if tensor_first else b, what)
    const = imp._const(b if tensor_first else a, what)
    c = _channel_vector(const, x.shape, what)
    ones, zeros = torch.ones_like(c), torch.zeros_like(c)
    if node.op_type == "Add":
        affine = Affine(ones, c)
    elif node.op_type == "Mul":
        affine = Affine(c, zeros)
    elif node.op_type == "Sub":
        affine = Affine(ones, -c) if tensor_first else Affine(-ones, c)
    elif node.op_type == "Div" and tensor_first:
        if bool((c == 0).any()):
            raise _Refused(f"{what}: division by zero")
        affine = Affine(1.0 / c, zeros)
    else:
        raise _Refused(f"{what}: dividing a constant by the network's tensor is not linear")
    return imp._add(node, affine, [x])


def _concat(imp: _Importer, node: Any, what: str) -> _Tensor:
    sources = [imp._tensor(n, what) for n in node.input]
    axis = int(_attributes(node).get("axis", 1))
    if axis % (len(sources[0].shape) + 1) != 1:
        raise _Refused(f"{what}: Concat along axis {axis}; only axis 1 (channels) is supported")
    return imp._add(node, Concat(), sources)


def _flatten(imp: _Importer, node: Any, what: str) -> _Tensor | None:
    x = imp._tensor(node.input[0], what)
    axis = int(_attributes(node).get("axis", 1))
    if axis % (len(x.shape) + 1) != 1:
        raise _Refused(f"{what}: Flatten with axis={axis}; only axis 1 keeps the batch apart")
    if len(x.shape) == 1:
        imp.values[node.output[0]] = x
        return None
    return imp._add(node, Flatten(), [x])


def _reshape(imp: _Importer, node: Any, what: str) -> _Tensor | None:
    x = imp._tensor(node.input[0], what)
    target = [int(t) for t in imp._const(node.input[1], what).reshape(-1)]
    size = math.prod(x.shape)
    flat = len(target) == 2 and target[1] in (-1, size) and not (target[0] == -1 == target[1])
    same = len(target) == len(x.shape) + 1 and all(
        t in (0, s) for t, s in zip(target[1:], x.shape, strict=True)
    )
    if flat and len(x.shape) > 1:
        return imp._add(node, Flatten(), [x])
    if flat or same:
        imp.values[node.output[0]] = x
        return None
    raise _Refused(
        f"{what}: Reshape of {x.shape} to {target}; only flattening every dimension after the "
        "batch, (N, -1), is supported"
    )


def _passthrough(imp: _Importer, node: Any, what: str) -> None:
    training = node.op_type == "Dropout" and len(node.input) > 2 and node.input[2]
    if training and bool(imp._const(node.input[2], what)):
        raise _Refused(f"{what}: Dropout in training mode; export the model in eval mode")
    imp.values[node.output[0]] = imp._tensor(node.input[0], what)


def _softmax(imp: _Importer, node: Any, what: str) -> None:
    x = imp._tensor(node.input[0], what)
    axis = int(_attributes(node).get("axis", -1))
    final = node.output[0] in imp.outputs and imp.uses[node.output[0]] == 0
    if not final or axis % (len(x.shape) + 1) != 1:
        raise _Refused(f"{what}: softmax inside the network; only a final softmax is dropped")
    warnings.warn(
        f"the final {node.op_type} is dropped: the spiking network's outputs are the logits, and "
        "the class is their argmax either way",
        stacklevel=4,
    )
    imp.values[node.output[0]] = x


_HANDLERS: dict[str, Callable[[_Importer, Any, str], _Tensor | None]] = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Relu": _relu,
    "Clip": _clip,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global_pool,
    "GlobalMaxPool": _global_pool,
    "BatchNormalization": _batchnorm,
    "Add": _arithmetic,
    "Sub": _arithmetic,
    "Mul": _arithmetic,
    "Div": _arithmetic,
    "Sum": _arithmetic,
    "Concat": _concat,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Dropout": _passthrough,
    "Identity": _passthrough,
    "Softmax": _softmax,
    "LogSoftmax": _softmax,
}


def _load_external(model: Any, file: Path) -> None:
    """Read tensors stored beside the file (external data), each from a file inside the
    model's directory: no absolute paths, no ``..``."""
    import onnx
    from onnx.external_data_helper import load_external_data_for_model

    folder = file.resolve().parent
    external = False
    for init in model.graph.initializer:
        if init.data_location != onnx.TensorProto.EXTERNAL:
            continue
        external = True
        entries = {e.key: e.value for e in init.external_data}
        location = Path(entries.get("location", ""))
        target = (folder / location).resolve()
        if location.is_absolute() or ".." in location.parts or folder not in target.parents:
            raise CorruptFileError(
                f"{file}: tensor {init.name!r} points outside the model's directory "
                f"({location}); external data must sit beside the .onnx file"
            )
        if not target.is_file():
            raise MissingFileError(
                f"{file}: tensor {init.name!r} is stored in {target}, which does not exist; "
                "keep the .onnx file and its data file together"
            )
    if external:
        try:
            load_external_data_for_model(model, str(folder))
        except Exception as exc:  # truncated or unreadable data file
            raise CorruptFileError(
                f"{file}: its external tensor data cannot be read: {exc}"
            ) from exc


def from_onnx(path: str | os.PathLike[str], *, input_shape: tuple[int, ...] | None = None) -> Graph:
    """Import an ONNX classifier as a :class:`~onespike.graph.Graph`.

    Args:
        path: the ``.onnx`` file (weights inside the file; external data is refused).
        input_shape: per-sample input shape, needed when the file leaves a dimension after the
            batch symbolic; when both are given they must agree.

    Returns:
        The graph, BatchNorm folded as :func:`onespike.extract` folds it.

    Raises:
        MissingFileError: the file does not exist.
        CorruptFileError: the file is not a readable ONNX model.
        UnsupportedLayerError: the opset is older than 13, or nodes have no spiking
            equivalent (all listed at once).
        ShapeError: the input shape is unknown or disagrees with ``input_shape``.
    """
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - the extra is installed by make test
        raise UnsupportedLayerError(
            "reading ONNX needs the onnx package: pip install 'onespike[onnx]'"
        ) from exc
    file = Path(path)
    if not file.is_file():
        raise MissingFileError(f"ONNX file {file} does not exist")
    try:
        model = onnx.load(str(file), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise CorruptFileError(f"{file} is not a readable ONNX model: {exc}") from exc
    graph = model.graph
    if not graph.node:
        raise CorruptFileError(f"{file} holds no ONNX graph nodes; is it an ONNX model?")
    _load_external(model, file)
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    version = opsets.get("ai.onnx")
    if version is None or version < MIN_OPSET:
        raise UnsupportedLayerError(
            f"{file} uses opset {version} of the default domain; onespike reads opset "
            f"{MIN_OPSET} and later: re-export with torch.onnx.export(..., opset_version=17)"
        )
    return _Importer(model, input_shape).run()
