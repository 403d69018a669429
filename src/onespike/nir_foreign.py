"""Networks from other tools' NIR graphs: :func:`from_foreign_nir`.

A NIR graph without onespike's ``onespike_network`` record (written by Norse, snnTorch, sinabs,
or by hand with the ``nir`` package) becomes a rate-coded
:class:`~onespike.network.SpikingNetwork` whose populations carry their own neuron constants
(:attr:`~onespike.network.Population.neuron`); the rate simulator steps them with
:func:`onespike.neurons.lif_step`, and everything after this door (``count_ops``,
``hardware.run``, reports) is the code every converted network goes through.

**Nodes.** The inputs of a node are summed (NIR's rule). Linear nodes fold into the synapses
of the next neuron population: ``nir.Linear`` / ``nir.Affine`` (its bias is a constant input
current), ``nir.Conv2d``, ``nir.AvgPool2d``, ``nir.SumPool2d`` (average pooling times the
window's area, as ``torch.nn.LPPool2d(1, ...)`` computes it), ``nir.Flatten`` (to one
dimension; NIR dimensions exclude the batch) and ``nir.Scale`` (one factor per channel). Each of
``nir.IF``, ``nir.LIF``, ``nir.CubaLIF`` and ``nir.Threshold`` makes a neuron population named
after its node; ``nir.LI``, a leaky integrator that never fires, is accepted as the readout (the
node the output reads). Any other node, and an ``nir.LI`` elsewhere, is refused with its name and
type; a cycle (a recurrent edge) is refused by the graph check before this module runs.

**Parameters** (forward Euler at time step ``dt``; see :mod:`onespike.neurons`):

============  ==========================================================================
NIR node      onespike :class:`~onespike.neurons.LIFParams`
============  ==========================================================================
IF            ``r``, ``v_reset``; no leak: ``v <- v + r z``
LIF           ``alpha = dt / tau``, ``r``, ``v_leak``, ``v_reset``
CubaLIF       ``alpha = dt / tau_mem``, ``beta = dt / tau_syn``, ``w_in``, ``r``, ``v_leak``,
              ``v_reset``
LI            ``alpha = dt / tau``, ``r``, ``v_leak``; never fires (readout)
Threshold     ``v <- z`` (no memory)
============  ==========================================================================

Every threshold: NIR fires when ``v > v_threshold``; onespike when ``v >= threshold``, with
``threshold`` the smallest float32 above ``v_threshold`` (``numpy.nextafter``): the same rule
for float32 membranes. A missing ``v_reset`` is 0.

**Readout.** Where the graph's output is a linear expression (as in onespike's own rate graphs),
the output population accumulates it; where it is a spiking population, a readout population
``<node>.count`` accumulates its spikes (one synapse per neuron, counted as synaptic
operations), so the class is the neuron with the most spikes; where it is an ``nir.LI``, its
membrane after the last step is the output.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from onespike.convert.config import RateConfig
from onespike.errors import ConfigError, InvalidGraphError, UnsupportedLayerError
from onespike.graph import Affine, AvgPool2d, Conv2d, Flatten, Linear, Node, apply_linear
from onespike.network import Population, Projection, SpikingNetwork, build_network
from onespike.neurons import LIFParams

__all__ = ["FOREIGN_NODES", "from_foreign_nir"]

FOREIGN_NODES = (
    "Input",
    "Output",
    "Affine",
    "Linear",
    "Conv2d",
    "Flatten",
    "SumPool2d",
    "AvgPool2d",
    "Scale",
    "IF",
    "LIF",
    "CubaLIF",
    "LI",
    "Threshold",
)
_LINEAR = ("Affine", "Linear", "Conv2d", "Flatten", "SumPool2d", "AvgPool2d", "Scale")
_SPIKING = ("IF", "LIF", "CubaLIF", "Threshold")


class _Expr:
    """A weighted sum: terms ``(source population, linear ops)`` plus a constant."""

    def __init__(
        self,
        terms: list[tuple[str, tuple[Node, ...]]],
        const: Tensor | None,
        shape: tuple[int, ...],
    ) -> None:
        self.terms = terms
        self.const = const
        self.shape = shape


def _tensor(value: Any) -> Tensor:
    return torch.as_tensor(np.asarray(value, dtype=np.float32).copy())


def _pair(value: Any, where: str) -> tuple[int, int]:
    values = [int(v) for v in np.atleast_1d(np.asarray(value)).reshape(-1)]
    if len(values) == 1:
        values = values * 2
    if len(values) != 2:
        raise InvalidGraphError(f"{where} has {len(values)} values; a 2-D setting has 1 or 2")
    return values[0], values[1]


def _where(name: str, node: Any) -> str:
    return f"node {name!r} (nir.{type(node).__name__})"


def _shape_after(op: Node, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    try:
        with torch.no_grad():
            return tuple(apply_linear(op, torch.zeros((1, *shape)), bias=False).shape[1:])
    except RuntimeError as exc:
        raise InvalidGraphError(
            f"{where} does not apply to its input of shape {shape}: {exc}"
        ) from exc


def _linear_op(name: str, kind: str, node: Any, shape: tuple[int, ...]) -> list[Node]:
    """onespike's graph nodes computing NIR node ``node`` on per-sample ``shape``."""
    where = _where(name, node)
    if kind in ("Linear", "Affine"):
        weight = _tensor(node.weight)
        if weight.ndim != 2 or shape[-1:] != (weight.shape[1],):
            raise InvalidGraphError(
                f"{where} has weight shape {tuple(weight.shape)} for an input of shape {shape}"
            )
        bias = _tensor(node.bias).reshape(-1) if kind == "Affine" else None
        if bias is not None and bias.shape != (weight.shape[0],):
            raise InvalidGraphError(
                f"{where} has {bias.numel()} bias values for {weight.shape[0]} outputs"
            )
        if len(shape) != 1:
            raise UnsupportedLayerError(
                f"{where} reads an input of shape {shape}; onespike applies nir.{kind} to "
                "vectors: put a nir.Flatten in front of it"
            )
        return [Linear(weight, bias)]
    if kind == "Conv2d":
        weight = _tensor(node.weight)
        if weight.ndim != 4 or len(shape) != 3:
            raise InvalidGraphError(
                f"{where} has weight shape {tuple(weight.shape)} for an input of shape {shape}; "
                "onespike reads 2-D convolutions of (C, H, W) inputs"
            )
        bias = _tensor(node.bias).reshape(-1) if node.bias is not None else None
        if bias is not None and bias.numel() == 1 and weight.shape[0] > 1:
            bias = bias.expand(weight.shape[0]).clone()
        if isinstance(node.padding, str):
            raise UnsupportedLayerError(
                f"{where} has padding {node.padding!r}; onespike reads numeric padding"
            )
        return [
            Conv2d(
                weight,
                bias,
                stride=_pair(node.stride, f"{where} stride"),
                padding=_pair(node.padding, f"{where} padding"),
                dilation=_pair(node.dilation, f"{where} dilation"),
                groups=int(np.asarray(node.groups).reshape(-1)[0]),
            )
        ]
    if kind in ("AvgPool2d", "SumPool2d"):
        kernel = _pair(node.kernel_size, f"{where} kernel_size")
        pool = AvgPool2d(
            kernel,
            _pair(node.stride, f"{where} stride"),
            _pair(node.padding, f"{where} padding"),
        )
        if kind == "AvgPool2d":
            return [pool]
        if len(shape) != 3:
            raise InvalidGraphError(f"{where} needs a (C, H, W) input, got shape {shape}")
        area = torch.full((shape[0],), float(kernel[0] * kernel[1]))
        return [pool, Affine(area, torch.zeros(shape[0]))]
    if kind == "Flatten":
        start, end = int(node.start_dim), int(node.end_dim)
        dims = len(shape)
        start, end = start % dims if dims else 0, end % dims if dims else 0
        if len(shape) <= 1:
            return []
        if start != 0 or end != dims - 1:
            raise UnsupportedLayerError(
                f"{where} flattens dimensions {start}..{end} of shape {shape} (batch excluded); "
                "onespike flattens whole samples only (start_dim=0, end_dim=-1)"
            )
        return [Flatten()]
    if kind == "Scale":
        scale = np.asarray(node.scale, dtype=np.float32)
        channels = shape[0] if shape else 1
        if scale.size == 1:
            per_channel = np.full(channels, float(scale.reshape(-1)[0]), dtype=np.float32)
        elif scale.size == channels:
            per_channel = scale.reshape(-1)
        elif scale.size == math.prod(shape):
            grid = scale.reshape(shape)
            if not bool(
                (
                    grid
                    == grid.reshape(channels, -1)[:, :1].reshape(
                        (channels,) + (1,) * (len(shape) - 1)
                    )
                ).all()
            ):
                raise UnsupportedLayerError(
                    f"{where} scales the neurons of a channel differently; onespike's scaling "
                    "is per channel (dimension 0)"
                )
            per_channel = grid.reshape(channels, -1)[:, 0]
        else:
            raise InvalidGraphError(
                f"{where} has {scale.size} scale values for an input of shape {shape}"
            )
        factors = torch.as_tensor(per_channel.copy())
        return [Affine(factors, torch.zeros_like(factors))]
    raise AssertionError(kind)  # pragma: no cover - callers pass _LINEAR kinds


def _field(node: Any, name: str, field: str, shape: tuple[int, ...], default: float) -> Any:
    """A neuron parameter as a float or a float32 tensor of ``shape``."""
    value = getattr(node, field, None)
    if value is None:
        return default
    array = np.asarray(value, dtype=np.float32)
    if array.size == 1:
        return float(array.reshape(-1)[0])
    if array.size == math.prod(shape):
        return torch.as_tensor(array.reshape(shape).copy())
    try:
        return torch.as_tensor(np.broadcast_to(array, shape).copy())
    except ValueError:
        raise InvalidGraphError(
            f"{_where(name, node)} parameter {field!r} has shape {array.shape}, which does not "
            f"fit its input of shape {shape}"
        ) from None


def _strictly_above(value: Any) -> float | Tensor:
    """The smallest float32 above ``value``: ``v >= it`` is NIR's ``v > value``."""
    up = np.nextafter(np.asarray(value, dtype=np.float32), np.float32(np.inf))
    if isinstance(value, Tensor):
        return torch.as_tensor(np.asarray(up, dtype=np.float32))
    return float(up)


def _rate(node: Any, name: str, field: str, shape: tuple[int, ...], dt: float) -> Any:
    """``dt / tau`` in float32, as ``dt * (1 / tau)`` (Norse's operation order)."""
    tau = _field(node, name, field, shape, 1.0)
    values = np.asarray(tau if not isinstance(tau, Tensor) else tau.numpy())
    if not bool((values > 0).all()):
        raise InvalidGraphError(
            f"{_where(name, node)} parameter {field!r} must be > 0 (a time constant), got "
            f"{float(values.min())!r}"
        )
    inverse = 1 / torch.as_tensor(tau, dtype=torch.float32)
    alpha = dt * inverse
    return float(alpha) if alpha.ndim == 0 else alpha


def _neuron(kind: str, name: str, node: Any, shape: tuple[int, ...], dt: float) -> LIFParams:
    def get(field: str, default: float) -> Any:
        return _field(node, name, field, shape, default)

    if kind == "Threshold":
        return LIFParams(_strictly_above(get("threshold", 0.0)), stateless=True)
    if kind == "LI":
        return LIFParams(
            0.0,
            alpha=_rate(node, name, "tau", shape, dt),
            v_leak=get("v_leak", 0.0),
            r=get("r", 1.0),
            spiking=False,
        )
    threshold = _strictly_above(get("v_threshold", 1.0))
    if kind == "IF":
        return LIFParams(threshold, r=get("r", 1.0), v_reset=get("v_reset", 0.0))
    if kind == "LIF":
        return LIFParams(
            threshold,
            alpha=_rate(node, name, "tau", shape, dt),
            v_leak=get("v_leak", 0.0),
            r=get("r", 1.0),
            v_reset=get("v_reset", 0.0),
        )
    return LIFParams(  # CubaLIF
        threshold,
        alpha=_rate(node, name, "tau_mem", shape, dt),
        v_leak=get("v_leak", 0.0),
        r=get("r", 1.0),
        v_reset=get("v_reset", 0.0),
        beta=_rate(node, name, "tau_syn", shape, dt),
        w_in=get("w_in", 1.0),
    )


def _order(nodes: dict[str, Any], edges: list[tuple[str, str]]) -> list[str]:
    """Nodes in topological order (the graph check has refused cycles already)."""
    indegree = dict.fromkeys(nodes, 0)
    succs: dict[str, list[str]] = {name: [] for name in nodes}
    for source, target in edges:
        indegree[target] += 1
        succs[source].append(target)
    ready = [name for name in nodes if indegree[name] == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for target in succs[name]:
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return order


def _input_shape(name: str, node: Any) -> tuple[int, ...]:
    types = node.input_type if isinstance(node.input_type, dict) else {}
    value = types.get("input")
    if value is None:
        raise InvalidGraphError(f"{_where(name, node)} has no input shape")
    return tuple(int(v) for v in np.atleast_1d(np.asarray(value)))


def _declared(node: Any) -> tuple[int, ...] | None:
    """The input shape a node declares (``input_type``), if it declares one."""
    types = getattr(node, "input_type", None)
    value = types.get("input") if isinstance(types, dict) else None
    if value is None or np.asarray(value).size == 0:
        return None
    return tuple(int(v) for v in np.atleast_1d(np.asarray(value)))


def _check_dt(dt: Any) -> float:
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt):
        raise ConfigError(f"dt must be a finite number > 0, got {dt!r}")
    if not dt > 0:
        raise ConfigError(f"dt must be a finite number > 0, got {dt!r}")
    return float(dt)


def _metadata_dt(given: Any) -> float:
    try:
        values = np.asarray(given, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if values.size != 1 or not math.isfinite(values[0]) or not values[0] > 0:
        raise InvalidGraphError(
            f"the graph's metadata 'dt' is {given!r:.40}; a time step is one number > 0. Pass "
            "from_nir(..., dt=step) to set it"
        )
    return float(values[0])


def _check_config(config: Any) -> RateConfig:
    if config is None:
        return RateConfig(reset="zero", initial_membrane=0.0)
    if not isinstance(config, RateConfig):
        raise ConfigError(
            f"config must be a RateConfig for an imported NIR graph, got {type(config).__name__}"
        )
    if config.initial_membrane != 0.0:
        raise ConfigError(
            f"config.initial_membrane={config.initial_membrane} cannot apply to an imported NIR "
            "graph: NIR has no initial state, its membranes start at 0. Pass "
            "RateConfig(initial_membrane=0.0, reset='zero', ...)"
        )
    if config.reset != "zero":
        raise ConfigError(
            f"config.reset={config.reset!r} cannot apply to an imported NIR graph: each NIR neuron "
            "resets to its own v_reset. Pass RateConfig(reset='zero', initial_membrane=0.0, ...)"
        )
    if config.binary:
        raise ConfigError("config.binary=True cannot apply to an imported NIR graph's weights")
    return config


def from_foreign_nir(
    graph: Any, kinds: dict[str, str], *, dt: float | None = None, config: RateConfig | None = None
) -> SpikingNetwork:
    """The rate-coded network of a NIR graph written by another tool.

    Args:
        graph: a ``nir.NIRGraph`` that :func:`onespike.nir_io.from_nir` has checked (node types,
            edges, no cycle, numeric parameters); ``kinds`` gives each node's NIR type.
        kinds: node name to NIR type name.
        dt: the time step, in the graph's time unit (the ``tau`` of its neurons): a number,
            or None for the graph's metadata ``dt`` where it has one, else 1.
        config: the rate simulation's options (steps, input, seed, early exit); default
            ``RateConfig(reset="zero", initial_membrane=0.0)``.

    Returns:
        The network; its populations carry the neurons' constants.

    Raises:
        UnsupportedLayerError: a node onespike cannot express (named with its type).
        InvalidGraphError: the graph has no single input and output, or shapes do not chain.
        ConfigError: ``dt`` or ``config`` is invalid.
    """
    config = _check_config(config)
    if dt is None:
        metadata = graph.metadata if isinstance(graph.metadata, dict) else {}
        dt = _metadata_dt(metadata.get("dt", 1.0))
    else:
        dt = _check_dt(dt)
    nodes: dict[str, Any] = graph.nodes
    edges = [(str(s), str(t)) for s, t in graph.edges]
    unsupported = [
        f"node {name!r} is a nir.{kind}, which onespike cannot express in an imported network"
        for name, kind in kinds.items()
        if kind not in FOREIGN_NODES
    ]
    if unsupported:
        raise UnsupportedLayerError(
            "; ".join(unsupported)
            + f". onespike imports networks of {', '.join('nir.' + k for k in FOREIGN_NODES)}",
            places=unsupported,
        )
    inputs = [name for name, kind in kinds.items() if kind == "Input"]
    outputs = [name for name, kind in kinds.items() if kind == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise InvalidGraphError(
            f"the graph has {len(inputs)} nir.Input and {len(outputs)} nir.Output nodes; "
            "onespike imports networks with exactly one of each"
        )
    preds: dict[str, list[str]] = {name: [] for name in nodes}
    for source, target in edges:
        preds[target].append(source)
    consumers = {name: [t for s, t in edges if s == name] for name in nodes}

    pops: dict[str, Population] = {}
    values: dict[str, str | _Expr] = {}
    readout: Population | None = None

    def expr_of(value: str | _Expr) -> _Expr:
        return _Expr([(value, ())], None, pops[value].shape) if isinstance(value, str) else value

    def summed(name: str) -> _Expr:
        if not preds[name]:
            raise InvalidGraphError(
                f"{_where(name, nodes[name])} has no input edge; every node but the input "
                "reads another"
            )
        exprs = [expr_of(values[source]) for source in preds[name]]
        shape = exprs[0].shape
        for source, expr in zip(preds[name], exprs, strict=True):
            if expr.shape != shape:
                raise InvalidGraphError(
                    f"{_where(name, nodes[name])} sums inputs of shapes {shape} and "
                    f"{expr.shape} (from {source!r}); NIR sums a node's inputs, so they must "
                    "agree"
                )
        const: Tensor | None = None
        for expr in exprs:
            if expr.const is not None:
                const = expr.const if const is None else const + expr.const
        return _Expr([t for e in exprs for t in e.terms], const, shape)

    def population(name: str, expr: _Expr, *, neuron: LIFParams | None, output: bool) -> None:
        projections = tuple(Projection(source, ops) for source, ops in expr.terms)
        depth = 1 + max(pops[source].depth for source, _ in expr.terms)
        pops[name] = Population(
            name,
            "neuron",
            expr.shape,
            projections,
            bias=expr.const,
            depth=depth,
            is_output=output,
            ann_relu=not output,
            threshold=neuron.threshold if neuron is not None and neuron.spiking else 1.0,
            neuron=neuron,
        )

    for name in _order(nodes, edges):
        node, kind = nodes[name], kinds[name]
        if kind == "Input":
            shape = _input_shape(name, node)
            # nirtorch (Norse's exporter) writes the sample's shape with its batch of 1, where
            # NIR shapes exclude the batch; the readers of the input say which it is
            given = [_declared(nodes[c]) for c in consumers[name]]
            if len(shape) > 1 and shape[0] == 1 and shape[1:] in given and shape not in given:
                shape = shape[1:]
            pops[name] = Population(name, "input", shape)
            values[name] = name
        elif kind in _LINEAR:
            expr = summed(name)
            ops = _linear_op(name, kind, node, expr.shape)
            shape = expr.shape
            const = expr.const
            for op in ops:
                if const is not None or getattr(op, "bias", None) is not None:
                    base = const if const is not None else torch.zeros(shape)
                    with torch.no_grad():
                        const = apply_linear(op, base.unsqueeze(0))[0]
                shape = _shape_after(op, shape, _where(name, node))
            terms = [(source, (*chain, *ops)) for source, chain in expr.terms]
            values[name] = _Expr(terms, const, shape)
        elif kind in _SPIKING:
            expr = summed(name)
            population(name, expr, neuron=_neuron(kind, name, node, expr.shape, dt), output=False)
            values[name] = name
        elif kind == "LI":
            if [kinds[c] for c in consumers[name]] != ["Output"]:
                raise UnsupportedLayerError(
                    f"{_where(name, node)} feeds {consumers[name]}; onespike reads a leaky "
                    "integrator (nir.LI, a neuron that never fires) only as the readout, the "
                    "node the nir.Output reads"
                )
            expr = summed(name)
            population(name, expr, neuron=_neuron(kind, name, node, expr.shape, dt), output=True)
            values[name] = name
            readout = pops[name]
        else:  # Output
            if len(preds[name]) != 1:
                raise InvalidGraphError(
                    f"{_where(name, node)} reads {len(preds[name])} nodes; onespike reads "
                    "graphs whose output reads one"
                )
            (source,) = preds[name]
            value = values[source]
            if isinstance(value, _Expr):
                population(source, value, neuron=None, output=True)
                readout = pops[source]
            elif readout is None or readout.name != value:
                count = f"{value}.count"
                while count in nodes or count in pops:
                    count += "_"
                population(count, expr_of(value), neuron=None, output=True)
                readout = pops[count]
    assert readout is not None
    order = list(pops.values())
    return build_network(order, config, lambda source, target: 0)
