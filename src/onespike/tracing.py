"""``extract``: from a traced ``nn.Module`` to a :class:`~onespike.graph.Graph`.

``extract`` traces a module with ``torch.fx``, propagates the example input's shapes through
the trace, and maps each call to graph nodes; modules and their functional spellings map alike:

========================================================  =======================================
PyTorch                                                   graph
========================================================  =======================================
``nn.Linear``, ``nn.Conv2d`` (grouped, depthwise,         :class:`Linear`, :class:`Conv2d`
no bias)
``nn.ReLU``, ``F.relu``, ``torch.relu``, ``x.relu()``,    :class:`ReLU`
``clamp(x, min=0)``
``nn.ReLU6``, ``F.relu6``, ``nn.Hardtanh(0, c)``,         :class:`ReLU` with ``max_value``
``F.hardtanh(x, 0, c)``, ``clamp(x, 0, c)``
``nn.AvgPool2d``, ``F.avg_pool2d``, ``x.mean((2, 3))``,   :class:`AvgPool2d` (regular windows),
``nn.AdaptiveAvgPool2d``, ``F.adaptive_avg_pool2d``       else :class:`AdaptiveAvgPool2d`
``nn.MaxPool2d``, ``F.max_pool2d``, adaptive max          :class:`MaxPool2d`
pooling with regular windows
``nn.Flatten``, ``torch.flatten(x, 1)``,                  :class:`Flatten` (a reshape that keeps
``x.view(x.size(0), -1)``, ``x.reshape(N, -1)``           the shape is dropped)
``+``, ``torch.add``, ``x.add(y)`` of two tensors         :class:`Add`
``torch.cat(..., dim=1)``                                 :class:`Concat`
``nn.BatchNorm1d/2d``, :class:`onespike.models.Normalize` :class:`Affine`, folded where exact
``nn.Dropout*``, ``nn.Identity``, ``F.dropout``,          nothing (inference is the identity)
``x.contiguous()``
a final ``nn.Softmax`` / ``nn.LogSoftmax`` (dim 1)        nothing: the class is the argmax of the
                                                          logits either way (a warning says so)
========================================================  =======================================

Anything else (LeakyReLU, GELU, LayerNorm, a Softmax inside the network, recurrent layers,
data-dependent control flow, ...) is collected, and one :class:`UnsupportedLayerError` lists
**every** unsupported place at once, each with its module path, type and, where one exists,
the fix. BatchNorm is folded into the neighbouring Linear/Conv2d by
:func:`onespike.graph.fold_affines` in one pass.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from onespike.binary import binary_weight, is_binary
from onespike.errors import ShapeError, UnsupportedLayerError
from onespike.graph import (
    AdaptiveAvgPool2d,
    Add,
    Affine,
    AvgPool2d,
    Concat,
    Conv2d,
    Flatten,
    Graph,
    GraphNet,
    Input,
    Linear,
    MaxPool2d,
    Node,
    Output,
    ReLU,
    fold_affines,
)

__all__ = ["extract"]

Shape = tuple[int, ...]

_IDENTITY_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)
_RELU_FUNCTIONS: set[Any] = {F.relu, torch.relu, torch.relu_}
_ADD_FUNCTIONS: set[Any] = {operator.add, torch.add, operator.iadd}
_DROPOUT_FUNCTIONS: set[Any] = {F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout}
_CLAMP_FUNCTIONS: set[Any] = {torch.clamp, torch.clip}
_RESHAPE_FUNCTIONS: set[Any] = {torch.flatten, torch.reshape, torch.squeeze}
_RESHAPE_METHODS = {"flatten", "view", "reshape", "squeeze", "unsqueeze"}
_SOFTMAX_MODULES = (nn.Softmax, nn.LogSoftmax)
_SOFTMAX_FUNCTIONS: set[Any] = {F.softmax, F.log_softmax, torch.softmax, torch.log_softmax}

# The fix for layers that have a supported relative.
_ACTIVATION_FIX = (
    "replace it with nn.ReLU (or nn.ReLU6) and fine-tune: a spike code carries only "
    "non-negative values"
)
_FIXES: dict[type, str] = {
    nn.LeakyReLU: _ACTIVATION_FIX,
    nn.PReLU: _ACTIVATION_FIX,
    nn.ELU: _ACTIVATION_FIX,
    nn.SELU: _ACTIVATION_FIX,
    nn.CELU: _ACTIVATION_FIX,
    nn.GELU: _ACTIVATION_FIX,
    nn.SiLU: _ACTIVATION_FIX,
    nn.Mish: _ACTIVATION_FIX,
    nn.Hardswish: _ACTIVATION_FIX,
    nn.Hardsigmoid: _ACTIVATION_FIX,
    nn.Sigmoid: _ACTIVATION_FIX,
    nn.Tanh: _ACTIVATION_FIX,
    nn.Softplus: _ACTIVATION_FIX,
    nn.LayerNorm: "use BatchNorm, which folds into the neighbouring layer",
    nn.GroupNorm: "use BatchNorm, which folds into the neighbouring layer",
    nn.InstanceNorm2d: "use BatchNorm, which folds into the neighbouring layer",
    nn.Softmax: "remove it from inside the network (only a final softmax is dropped)",
    nn.LogSoftmax: "remove it from inside the network (only a final softmax is dropped)",
    nn.LSTM: "recurrent layers have no feed-forward spiking equivalent in onespike",
    nn.GRU: "recurrent layers have no feed-forward spiking equivalent in onespike",
    nn.RNN: "recurrent layers have no feed-forward spiking equivalent in onespike",
}
_FUNCTION_FIXES: dict[Any, str] = {
    F.leaky_relu: _ACTIVATION_FIX,
    F.gelu: _ACTIVATION_FIX,
    F.silu: _ACTIVATION_FIX,
    F.elu: _ACTIVATION_FIX,
    F.hardswish: _ACTIVATION_FIX,
    torch.sigmoid: _ACTIVATION_FIX,
    torch.tanh: _ACTIVATION_FIX,
    F.layer_norm: "use BatchNorm, which folds into the neighbouring layer",
    F.linear: "use an nn.Linear module, whose weights the tracer can read",
    F.conv2d: "use an nn.Conv2d module, whose weights the tracer can read",
}


class _Unsupported(Exception):
    """One place of the traced network that has no spiking equivalent (collected, not raised)."""


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    items = tuple(int(v) for v in value)
    if len(items) == 1:
        return (items[0], items[0])
    if len(items) != 2:
        raise _Unsupported(f"expected an int or a pair, got {value!r}")
    return (items[0], items[1])


def _where(node: fx.Node) -> str:
    """The module path an fx node sits in, for messages."""
    stack = node.meta.get("nn_module_stack")
    if stack:
        path, _ = list(stack.values())[-1]
        return f" inside module '{path}'"
    return ""


def _tensor(t: Tensor) -> Tensor:
    """A detached copy owned by the graph; float64 stays float64, other types become float32."""
    t = t.detach().clone()
    return t if t.dtype == torch.float64 else t.float()


def _bound(node: fx.Node, names: Sequence[str], defaults: dict[str, Any]) -> dict[str, Any]:
    """The call's arguments after the input tensor, by name (positional or keyword)."""
    values = dict(defaults)
    values.update(zip(names, node.args[1:], strict=False))
    values.update(node.kwargs)
    return values


# ---- the shape-dependent mappings shared by modules and functions ----------------------------
def _pool_output(size: int, kernel: int, stride: int, padding: int, ceil: bool) -> int:
    span = size + 2 * padding - kernel
    return (-(-span // stride) if ceil else span // stride) + 1


def _regular_pool(
    kind: str, in_shape: Shape, kernel: Any, stride: Any, padding: Any, ceil_mode: bool
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Kernel, stride and padding of a pooling; ``ceil_mode`` only where it changes nothing."""
    k = _pair(kernel)
    s = _pair(stride) if stride not in (None, ()) and stride != [] else k
    p = _pair(padding)
    if ceil_mode and len(in_shape) == 3:
        h, w = in_shape[1:]
        floor = [_pool_output(n, k[i], s[i], p[i], False) for i, n in enumerate((h, w))]
        ceil = [_pool_output(n, k[i], s[i], p[i], True) for i, n in enumerate((h, w))]
        if floor != ceil:
            raise _Unsupported(
                f"{kind} with ceil_mode=True adds a partial window at this input size "
                f"{in_shape}; use ceil_mode=False or pad the input"
            )
    return k, s, p


def _adaptive_size(in_shape: Shape, output_size: Any) -> tuple[int, int]:
    h, w = in_shape[-2:]
    if isinstance(output_size, int):
        return (output_size, output_size)
    out = tuple(output_size)
    if len(out) == 1:
        out = (out[0], out[0])
    return (h if out[0] is None else int(out[0]), w if out[1] is None else int(out[1]))


def _adaptive_avg(in_shape: Shape, output_size: Any) -> Node:
    oh, ow = _adaptive_size(in_shape, output_size)
    h, w = in_shape[-2:]
    if h % oh == 0 and w % ow == 0:  # regular windows: PyTorch's adaptive pooling is this
        kernel = (h // oh, w // ow)
        return AvgPool2d(kernel, kernel)
    return AdaptiveAvgPool2d((oh, ow))


def _adaptive_max(in_shape: Shape, output_size: Any) -> Node:
    oh, ow = _adaptive_size(in_shape, output_size)
    h, w = in_shape[-2:]
    if h % oh or w % ow:
        raise _Unsupported(
            f"adaptive max pooling from {in_shape[-2:]} to {(oh, ow)} has irregular windows; "
            "choose an output size that divides the input, or use adaptive average pooling"
        )
    kernel = (h // oh, w // ow)
    return MaxPool2d(kernel, kernel)


def _clipped_relu(low: Any, high: Any, what: str) -> Node:
    """``clamp(x, low, high)`` as a (clipped) ReLU: ``low`` must be 0."""
    if low is None or float(low) != 0.0:
        raise _Unsupported(
            f"{what} clamps below at {low!r}; only a lower bound of 0 (a ReLU) has a spike code: "
            "use clamp(x, 0, c), nn.ReLU6 or nn.Hardtanh(0, c)"
        )
    if high is None or (isinstance(high, float) and math.isinf(high)):
        return ReLU()
    if float(high) <= 0:
        raise _Unsupported(f"{what} clamps to [0, {high}], which is zero everywhere")
    return ReLU(max_value=float(high))


def _reshape(in_shape: Shape, out_shape: Shape, what: str) -> Node | None:
    if out_shape == in_shape:
        return None
    if out_shape == (math.prod(in_shape),):
        return Flatten()
    raise _Unsupported(
        f"{what} reshapes {in_shape} to {out_shape}; only flattening every non-batch "
        "dimension is supported (x.view(x.size(0), -1), torch.flatten(x, 1))"
    )


def _mean(in_shape: Shape, out_shape: Shape, dims: Any) -> tuple[Node, ...]:
    rank = len(in_shape) + 1
    wanted = {d % rank for d in ((dims,) if isinstance(dims, int) else tuple(dims))}
    if rank != 4 or wanted != {2, 3}:
        raise _Unsupported(
            f"mean over dimensions {dims} of a {rank}-D tensor; only the spatial mean of "
            "(N, C, H, W), x.mean((2, 3)), is global average pooling"
        )
    kernel = (in_shape[1], in_shape[2])
    pool = AvgPool2d(kernel, kernel)
    return (pool,) if len(out_shape) == 3 else (pool, Flatten())


# ---- modules -------------------------------------------------------------------------------
def _norm_to_affine(module: nn.Module, name: str) -> Affine:
    from onespike.models import Normalize  # local: models imports torch layers only

    if isinstance(module, Normalize):
        std = _tensor(module.std).flatten()
        mean = _tensor(module.mean).flatten()
        return Affine(scale=1.0 / std, shift=-mean / std)
    assert isinstance(module, nn.modules.batchnorm._BatchNorm)
    if module.running_mean is None or module.running_var is None:
        raise _Unsupported(
            f"BatchNorm '{name}' has no running statistics (track_running_stats=False); "
            "onespike needs inference-time statistics to fold it"
        )
    inv = torch.rsqrt(_tensor(module.running_var) + module.eps)
    gamma = _tensor(module.weight) if module.weight is not None else torch.ones_like(inv)
    beta = _tensor(module.bias) if module.bias is not None else torch.zeros_like(inv)
    scale = gamma * inv
    return Affine(scale=scale, shift=beta - _tensor(module.running_mean) * scale)


def _module_node(module: nn.Module, name: str, in_shape: Shape) -> Node | None:
    """Map a leaf module to a node; ``None`` means 'pass the input through'."""
    from onespike.models import Normalize
    from onespike.optimize import InputQuant, TTFSQuant

    what = f"{type(module).__name__} '{name}'"
    # The spike encoder rounds the input exactly as InputQuant does; a TTFSQuant is the ReLU
    # of a TTFS population whose scale the caller records.
    if isinstance(module, (*_IDENTITY_MODULES, InputQuant)):
        return None
    if isinstance(module, (nn.ReLU, TTFSQuant)):
        return ReLU()
    if isinstance(module, nn.ReLU6):
        return ReLU(max_value=6.0)
    if isinstance(module, nn.Hardtanh):
        return _clipped_relu(module.min_val, module.max_val, what)
    if isinstance(module, (nn.Linear, nn.Conv2d)):
        # A binary layer computes with sign(W) * alpha: that is its weight in the graph.
        weight = binary_weight(module.weight) if is_binary(module) else module.weight
        bias = _tensor(module.bias) if module.bias is not None else None
        if isinstance(module, nn.Linear):
            return Linear(_tensor(weight), bias)
        if module.padding_mode != "zeros":
            raise _Unsupported(
                f"{what} uses padding_mode={module.padding_mode!r}; only zero padding is supported"
            )
        if isinstance(module.padding, str):
            if module.padding == "valid":
                padding: tuple[int, int] = (0, 0)
            else:
                kernel = _pair(module.kernel_size)
                dilation = _pair(module.dilation)
                spans = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
                if any(span % 2 for span in spans):
                    raise _Unsupported(
                        f"{what} uses padding='same' with an even kernel (asymmetric padding); "
                        "give the padding as integers"
                    )
                padding = (spans[0] // 2, spans[1] // 2)
        else:
            padding = _pair(module.padding)
        return Conv2d(
            _tensor(weight),
            bias,
            _pair(module.stride),
            padding,
            _pair(module.dilation),
            module.groups,
        )
    if isinstance(module, nn.AvgPool2d):
        if module.divisor_override is not None:
            raise _Unsupported(f"{what}: divisor_override is not supported")
        if not module.count_include_pad and _pair(module.padding) != (0, 0):
            raise _Unsupported(
                f"{what}: count_include_pad=False with padding averages border windows over "
                "fewer values; use count_include_pad=True or no padding"
            )
        kernel, stride, pad = _regular_pool(
            what, in_shape, module.kernel_size, module.stride, module.padding, module.ceil_mode
        )
        return AvgPool2d(kernel, stride, pad)
    if isinstance(module, nn.MaxPool2d):
        if _pair(module.dilation) != (1, 1) or module.return_indices:
            raise _Unsupported(f"{what}: dilation and return_indices are not supported")
        kernel, stride, pad = _regular_pool(
            what, in_shape, module.kernel_size, module.stride, module.padding, module.ceil_mode
        )
        return MaxPool2d(kernel, stride, pad)
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return _adaptive_avg(in_shape, module.output_size)
    if isinstance(module, nn.AdaptiveMaxPool2d):
        if module.return_indices:
            raise _Unsupported(f"{what}: return_indices is not supported")
        return _adaptive_max(in_shape, module.output_size)
    if isinstance(module, nn.Flatten):
        rank = len(in_shape) + 1
        if module.start_dim % rank != 1 or module.end_dim % rank != rank - 1:
            raise _Unsupported(f"{what} must flatten every non-batch dimension (start_dim=1)")
        return Flatten()
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d, Normalize)):
        return _norm_to_affine(module, name)
    fix = next((text for kind, text in _FIXES.items() if isinstance(module, kind)), None)
    raise _Unsupported(
        f"module '{name}' of type {type(module).__module__}.{type(module).__name__} has no "
        "spiking equivalent in onespike" + (f"; {fix}" if fix else "")
    )


# ---- functions and methods -----------------------------------------------------------------
def _function_node(node: fx.Node, shape_of: dict[str, Shape]) -> Node | tuple[Node, ...] | None:
    """Map a call_function/call_method node; ``None`` means 'pass the input through'."""
    target = node.target
    source = node.args[0] if node.args else None
    in_shape = shape_of[source.name] if isinstance(source, fx.Node) else ()
    out_shape = shape_of[node.name]
    label = getattr(target, "__name__", str(target))
    what = f"{label} '{node.name}'{_where(node)}"
    method = node.op == "call_method"
    if (not method and target in _RELU_FUNCTIONS) or (method and target in ("relu", "relu_")):
        return ReLU()
    if not method and target is F.relu6:
        return ReLU(max_value=6.0)
    if not method and target is F.hardtanh:
        args = _bound(node, ("min_val", "max_val"), {"min_val": -1.0, "max_val": 1.0})
        return _clipped_relu(args["min_val"], args["max_val"], what)
    if (not method and target in _CLAMP_FUNCTIONS) or (method and target in ("clamp", "clip")):
        args = _bound(node, ("min", "max"), {"min": None, "max": None})
        if any(isinstance(v, fx.Node) for v in args.values()):
            raise _Unsupported(f"{what} clamps to tensor bounds; use constant bounds")
        return _clipped_relu(args["min"], args["max"], what)
    if (not method and target in _ADD_FUNCTIONS) or (method and target in ("add", "add_")):
        operands = [node.args[0], node.args[1] if len(node.args) > 1 else node.kwargs.get("other")]
        if node.kwargs.get("alpha", 1) != 1:
            raise _Unsupported(f"{what} adds with alpha != 1; scale the branch in a layer instead")
        if not all(isinstance(a, fx.Node) and a.name in shape_of for a in operands):
            raise _Unsupported(f"{what} adds a constant; fold it into a layer bias instead")
        return Add()
    if not method and target is torch.cat:
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not isinstance(dim, int) or dim % (len(out_shape) + 1) != 1:
            raise _Unsupported(
                f"{what} concatenates along dimension {dim}; only dimension 1 (channels) is "
                "supported"
            )
        return Concat()
    if not method and target in _DROPOUT_FUNCTIONS:
        return None
    if method and target == "contiguous":
        return None
    if not method and target is F.max_pool2d:
        args = _bound(
            node,
            ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
            {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
        )
        if _pair(args["dilation"]) != (1, 1) or args.get("return_indices"):
            raise _Unsupported(f"{what}: dilation and return_indices are not supported")
        kernel, stride, pad = _regular_pool(
            what, in_shape, args["kernel_size"], args["stride"], args["padding"], args["ceil_mode"]
        )
        return MaxPool2d(kernel, stride, pad)
    if not method and target is F.avg_pool2d:
        args = _bound(
            node,
            (
                "kernel_size",
                "stride",
                "padding",
                "ceil_mode",
                "count_include_pad",
                "divisor_override",
            ),
            {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True},
        )
        if args.get("divisor_override") is not None:
            raise _Unsupported(f"{what}: divisor_override is not supported")
        if not args["count_include_pad"] and _pair(args["padding"]) != (0, 0):
            raise _Unsupported(
                f"{what}: count_include_pad=False with padding is not supported; use "
                "count_include_pad=True or no padding"
            )
        kernel, stride, pad = _regular_pool(
            what, in_shape, args["kernel_size"], args["stride"], args["padding"], args["ceil_mode"]
        )
        return AvgPool2d(kernel, stride, pad)
    if not method and target is F.adaptive_avg_pool2d:
        return _adaptive_avg(in_shape, _bound(node, ("output_size",), {})["output_size"])
    if not method and target is F.adaptive_max_pool2d:
        args = _bound(node, ("output_size", "return_indices"), {"return_indices": False})
        if args["return_indices"]:
            raise _Unsupported(f"{what}: return_indices is not supported")
        return _adaptive_max(in_shape, args["output_size"])
    if (not method and target is torch.mean) or (method and target == "mean"):
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if dims is None:
            raise _Unsupported(f"{what} averages every dimension, the batch included")
        return _mean(in_shape, out_shape, dims)
    if (not method and target in _RESHAPE_FUNCTIONS) or (method and target in _RESHAPE_METHODS):
        return _reshape(in_shape, out_shape, what)
    fix = _FUNCTION_FIXES.get(target)
    raise _Unsupported(
        f"operation {label!r} at '{node.name}'{_where(node)} has no spiking equivalent in "
        "onespike" + (f"; {fix}" if fix else "")
    )


def _is_final_softmax(fx_node: fx.Node, module: nn.Module | None) -> bool:
    """A softmax over the classes whose only reader is the network's output."""
    if module is not None:
        dim = getattr(module, "dim", None)
    elif fx_node.target in _SOFTMAX_FUNCTIONS:
        dim = fx_node.args[1] if len(fx_node.args) > 1 else fx_node.kwargs.get("dim")
    else:
        return False
    users = list(fx_node.users)
    return dim in (1, -1) and len(users) == 1 and users[0].op == "output"


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
        example_input: a batch ``(B, ...)`` used to infer shapes; moved to the module's device.

    Returns:
        The graph (its tensors on the module's device), with BatchNorm folded into the
        neighbouring Linear/Conv2d where exact.

    Raises:
        UnsupportedLayerError: modules or operations without a spiking equivalent; the message
            lists every one, with its qualified path, type and, where one exists, the fix
            (also in the error's ``places``).
        ShapeError: ``example_input`` is not a tensor the module accepts.
        InvalidGraphError: weights are NaN or infinite.
    """
    if not isinstance(example_input, Tensor):
        raise ShapeError(
            f"extract needs an example input tensor (a batch of samples), got "
            f"{type(example_input).__name__}"
        )
    if example_input.ndim < 2 or example_input.shape[0] < 1:
        raise ShapeError(
            f"extract needs a batch (B, ...) with B >= 1, got shape {tuple(example_input.shape)}"
        )
    if isinstance(module, GraphNet):  # an imported graph (ONNX) is already a graph
        if tuple(example_input.shape[1:]) != module.graph.input_shape:
            raise ShapeError(
                f"example input has per-sample shape {tuple(example_input.shape[1:])}, the "
                f"network expects {module.graph.input_shape}"
            )
        return module.graph
    if not isinstance(module, nn.Module):
        raise UnsupportedLayerError(f"extract needs a torch.nn.Module, got {type(module).__name__}")
    weight = next((t for t in (*module.parameters(), *module.buffers())), None)
    if weight is not None and example_input.device != weight.device:
        example_input = example_input.to(weight.device)  # e.g. a CPU batch, a model on a GPU
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
        traced.graph.eliminate_dead_code()
        dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), None)
        example = example_input.detach().to(dtype or torch.float32)
        try:
            with torch.no_grad():
                ShapeProp(traced).propagate(example)
        except Exception as exc:  # the module's own error for an input it cannot take
            raise ShapeError(
                f"{type(module).__name__} fails on an input of per-sample shape "
                f"{tuple(example.shape[1:])}: {exc}. Pass an example input of the shape the "
                "model was built for"
            ) from exc
        graph = _build(traced, type(module).__name__)
    finally:
        module.train(was_training)
    return fold_affines(graph)


def _build(traced: fx.GraphModule, model_name: str) -> Graph:
    from onespike.optimize import TTFSQuant

    shape_of: dict[str, Shape] = {}
    several: set[str] = set()
    for fx_node in traced.graph.nodes:
        meta = fx_node.meta.get("tensor_meta")
        if hasattr(meta, "shape"):
            shape_of[fx_node.name] = tuple(int(s) for s in meta.shape[1:])
        elif isinstance(meta, (tuple, list)):
            several.add(fx_node.name)
    problems: list[str] = []
    scales: dict[str, float] = {}  # learned scales of TTFS-aware activations
    nodes: dict[str, Node] = {}
    edges: list[tuple[str, str]] = []
    alias: dict[str, str] = {}  # fx node name -> graph node name carrying its value

    def tensor_args(fx_node: fx.Node) -> list[fx.Node]:
        found: list[fx.Node] = []
        for arg in (*fx_node.args, *fx_node.kwargs.values()):
            items = arg if isinstance(arg, (list, tuple)) else (arg,)
            found += [a for a in items if isinstance(a, fx.Node) and a.name in shape_of]
        return found

    for fx_node in traced.graph.nodes:
        if fx_node.op == "placeholder":
            if nodes:
                problems.append(f"the network takes several inputs ('{fx_node.name}')")
                continue
            nodes["input"] = Input(shape_of[fx_node.name])
            alias[fx_node.name] = "input"
            continue
        if fx_node.op == "output":
            (result,) = fx_node.args
            if not isinstance(result, fx.Node) or result.name not in alias:
                problems.append("the network must return a single tensor (the logits)")
                continue
            nodes["output"] = Output()
            edges.append((alias[result.name], "output"))
            continue
        sources = tensor_args(fx_node)
        parent = fx_node.args[0] if fx_node.args else None
        multi = isinstance(parent, fx.Node) and parent.name in several
        if fx_node.target is operator.getitem and multi:
            alias[fx_node.name] = "input"  # a part of a multi-output op, reported once there
            continue
        if fx_node.name in several:
            problems.append(
                f"operation {getattr(fx_node.target, '__name__', fx_node.target)!r} at "
                f"'{fx_node.name}'{_where(fx_node)} returns several tensors; onespike handles "
                "single-tensor layers"
            )
        elif fx_node.name not in shape_of:
            continue  # a size, a shape or other non-tensor helper value
        submodule = (
            traced.get_submodule(str(fx_node.target)) if fx_node.op == "call_module" else None
        )
        name = str(fx_node.target) if submodule is not None else fx_node.name
        mapped: Node | tuple[Node, ...] | None
        try:
            if fx_node.op == "get_attr":
                raise _Unsupported(
                    f"parameter access '{fx_node.target}'{_where(fx_node)}: use tensors only "
                    "through modules"
                )
            if fx_node.name in several:
                raise _Unsupported("")
            if (submodule is not None and isinstance(submodule, _SOFTMAX_MODULES)) or (
                submodule is None and fx_node.target in _SOFTMAX_FUNCTIONS
            ):
                if not _is_final_softmax(fx_node, submodule):
                    raise _Unsupported(
                        f"softmax '{name}'{_where(fx_node)} inside the network; remove it (only "
                        "a final softmax over the classes is dropped)"
                    )
                warnings.warn(
                    f"the final softmax '{name}' is dropped: the spiking network's outputs are "
                    "the logits, and the class is their argmax either way",
                    stacklevel=3,
                )
                mapped = None
            elif submodule is not None:
                in_shape = shape_of[sources[0].name] if sources else ()
                mapped = _module_node(submodule, name, in_shape)
            else:
                mapped = _function_node(fx_node, shape_of)
        except _Unsupported as exc:
            if str(exc):
                problems.append(str(exc))
            mapped = None
        if mapped is None:
            alias[fx_node.name] = alias[sources[0].name] if sources else "input"
            continue
        chain = mapped if isinstance(mapped, tuple) else (mapped,)
        if name in nodes:
            name = fx_node.name
        inputs = [alias[a.name] for a in sources]
        for index, graph_node in enumerate(chain):
            node_name = name if index == 0 else f"{name}.{index}"
            nodes[node_name] = graph_node
            wired = inputs if isinstance(graph_node, (Add, Concat)) else inputs[:1]
            edges.extend((src, node_name) for src in wired)
            inputs = [node_name]
        alias[fx_node.name] = inputs[0]
        if submodule is not None and isinstance(submodule, TTFSQuant):
            scales[name] = float(submodule.scale.detach().clamp(min=1e-6))
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise UnsupportedLayerError(
            f"{len(problems)} place(s) in {model_name} have no spiking equivalent in "
            f"onespike:\n{listed}",
            places=problems,
        )
    return Graph(nodes, edges, scales=scales)
