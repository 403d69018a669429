"""NIR export and import: :func:`to_nir` and :func:`from_nir`.

NIR (the Neuromorphic Intermediate Representation, package ``nir``, Pedersen et al., Nature
Communications 2024, doi 10.1038/s41467-024-52259-9) describes a network as nodes (small
dataclasses: ``Affine``, ``Conv2d``, ``IF``, ...) and identity edges; the inputs of a node are
summed. onespike writes a :class:`~onespike.network.SpikingNetwork` as such a graph and reads it
back with every number intact: :func:`from_nir` of :func:`to_nir` simulates identically (spike
counts, spike times, outputs, predictions), also through ``nir.write`` / ``nir.read``.

**Synapses.** A projection's chain of linear nodes maps node for node: Linear to
``nir.Linear`` (or ``nir.Affine`` where it carries the population's bias), Conv2d to
``nir.Conv2d``, AvgPool2d to ``nir.AvgPool2d``, Flatten to ``nir.Flatten`` (``start_dim=0``:
NIR shapes exclude the batch), an un-folded per-channel Affine to ``nir.Scale``. The
projection's normalisation factor is folded into its last Linear/Conv2d (``nir.Scale`` where
the chain has none), so that the NIR weights are the network's effective weights; because
``(f W) x`` and ``f (W x)`` may round differently, the unscaled weight rides along in the node's
metadata and the importer uses it when it still matches the node. A synaptic delay becomes a
``nir.Delay`` in front of the chain. The constant input of a population (its bias) is the
``bias`` of the chain's last Linear (``nir.Affine``) or Conv2d, or of an exact identity node
(``nir.Affine`` with an identity matrix, a 1x1 ``nir.Conv2d``) where no chain ends in one; a
bias that varies within a convolution channel has no NIR form and is refused.

**Thresholds.** NIR's neurons fire when ``v > v_threshold``; onespike's when
``v >= threshold``. The exported ``v_threshold`` is the largest float32 below the float32
threshold (``numpy.nextafter``), which makes the strict comparison identical to onespike's for
float32 membranes; the original threshold is kept in the metadata.

**Rate coding, reset to zero** (``RateConfig(reset="zero", initial_membrane=0.0)``) is
exactly NIR: each hidden population is an ``nir.IF`` (``r = 1``, ``v_reset = 0``), time step
``dt = 1``. The output population does not spike: it has no neuron node, the graph's output is
its input current at every step, and its membrane (onespike's readout) is the running sum of
that output over time. (NIR's integrator ``nir.I`` would put the sum inside the graph, but
peer frameworks such as Norse 1.1 cannot load it.) The input is what onespike feeds: the
analog image at every step, or Poisson spikes.

**Refused, with the reason and the fix:**

- ``reset="subtract"``: ``nir.IF`` resets to ``v_reset``; a reader would silently simulate
  reset to zero, a different network. Convert with ``RateConfig(reset="zero")``.
- ``initial_membrane != 0``: NIR has no initial state; every reader starts at 0. Convert with
  ``RateConfig(initial_membrane=0.0)``.
- max pooling (any method): NIR 1.0 has no max-pooling node (only ``AvgPool2d`` and
  ``SumPool2d``), and onespike's spiking max pooling (rate: a window spikes when its largest
  count grows; TTFS: first spike wins) has no NIR form. Use average pooling or strided
  convolutions.

**TTFS** (Quartz) has no NIR neuron. It is exported in a documented pattern: each population
``P`` is ``P.current`` (``nir.I``: the synaptic current integrates weighted spikes),
``P.membrane`` (``nir.I``: the membrane integrates the current, no leak) and ``P``
(``nir.Threshold`` at ``L - 1/2``: its output is ``P``'s spikes). Skip connections carry
``nir.Delay`` nodes of ``L`` steps per layer skipped. What NIR cannot express is stated in the
graph's metadata (``onespike_not_expressible``) and in ``docs/nir.md``: the input code, one
spike per neuron, the output window, the bias as one event at the window's start, the counter
and rectifier synapses, and the readout (earliest output spike). The bias lives in the current
node's metadata. Only onespike simulates such a graph as intended.

**Hybrid single-spike** networks use the same pattern without the current node: ``P.membrane``
(``nir.I``, or ``nir.LI`` with ``tau = r = 1 / (1 - leak)``, which forward Euler with
``dt = 1`` turns into ``v <- leak * v + z``) and ``P`` (``nir.Threshold``); the bias is the
constant current of its ``nir.Affine`` / ``nir.Conv2d``. Not expressible, and stated in the
metadata: the analog first step and temporal input code, one spike per neuron (no reset), and
the readout (the output membrane, or the earliest output spike).

**Metadata.** The graph's metadata holds ``onespike_network``: a JSON record (format name and
version, the configuration, and per population its name, kind, shape, scale, depth, flags,
threshold, bias carrier and the names of its nodes), plus ``onespike_method`` and
``onespike_not_expressible`` in words. Node metadata holds exact originals the NIR fields
transform (unscaled weights, thresholds, TTFS biases). :func:`from_nir` reads graphs written
by :func:`to_nir`; NIR node values stay authoritative: metadata refines a node only where it
agrees with it. A graph without the record comes from another tool and is imported by
:mod:`onespike.nir_foreign` after the graph checks below (layer 1).

**Validation on import.** :func:`from_nir` checks a graph before it uses any of it, in three
layers, each refusing with an :class:`~onespike.errors.InvalidGraphError` that names the node,
the parameter or the edge: (1) the graph itself: node types onespike reads, edges between
existing nodes, no duplicate edge, no cycle, every parameter numeric and finite, integer fields
whole and in range, at most :data:`MAX_VALUES` values per array and per population (the bound
is checked in the HDF5 file before ``nir.read`` loads it; ``from_nir(..., max_values=n)`` raises
it); (2) the ``onespike_network`` record: the type, range and size of every field; (3) the two
together: the topology is the graph's, so its nodes, node types and edges must be exactly those
the record describes (an edited graph is refused with the added, missing or changed nodes and
edges listed), the values the record also fixes (delays, factors, neuron constants, the TTFS
threshold, depths, shapes) must agree, and the shapes must chain from the input to the output.

``nir`` is optional (the ``nir`` extra): it is imported when one of these functions runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from onespike._fs import atomic_write
from onespike.convert.config import HybridConfig, RateConfig, TTFSConfig
from onespike.errors import (
    ConfigError,
    CorruptFileError,
    InvalidGraphError,
    MissingFileError,
    OnespikeError,
    UnsupportedLayerError,
)
from onespike.graph import (
    AdaptiveAvgPool2d,
    Affine,
    AvgPool2d,
    Conv2d,
    Flatten,
    Linear,
    Node,
    PadChannels,
    apply_linear,
)
from onespike.network import Population, Projection, SpikingNetwork, build_network

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "MAX_RECORD_CHARS",
    "MAX_VALUES",
    "check_config",
    "from_nir",
    "to_nir",
    "write_nir",
]

FORMAT_NAME = "onespike.nir"
FORMAT_VERSION = 1
_RECORD_KEY = "onespike_network"
_CONFIGS: dict[str, type] = {
    "TTFSConfig": TTFSConfig,
    "RateConfig": RateConfig,
    "HybridConfig": HybridConfig,
}
_METHODS = {TTFSConfig: "ttfs", RateConfig: "rate", HybridConfig: "hybrid"}

_NOT_EXPRESSIBLE = {
    "rate": [
        "time is discrete: one NIR time unit is one step (dt = 1), and a spike reaches the "
        "next layer in the same step",
        "input: the analog image is the input at every step (a constant current into the "
        "first layer), or, with input='poisson', pixel x spikes with probability x per step",
        "readout: the output population does not spike; the graph's output is its input "
        "current per step, and its membrane is the sum of that output over the steps; the "
        "class is the argmax of that sum",
        "early exit (RateConfig.early_exit), a run-time rule, is recorded in the configuration "
        "only",
    ],
    "ttfs": [
        "time is discrete (dt = 1); L = steps - 1; pixel x spikes once, at L - k with "
        "k = floor(L x + 1/2)",
        "every neuron fires at most once: nir.Threshold marks the first crossing only",
        "a population of depth d receives spikes in [L (d - 1), L d] and may fire only in its "
        "output window [L d, L (d + 1)]",
        "the bias is one event of weight b into the current at L (d - 1), not a constant "
        "current (kept in the current node's metadata 'onespike_bias')",
        "the counter synapse sets the current to 1 at L d; the rectifier (if enabled) forces "
        "every silent neuron to fire at L (d + 1)",
        "nir.I integrates in continuous time; onespike's step adds the previous step's current "
        "to the membrane before this step's events reach the current",
        "the class is the earliest output spike (ties: the larger membrane, then the lower index)",
    ],
    "hybrid": [
        "time is discrete (dt = 1); a spike reaches the next layer in the same step",
        "input: the analog image at step 0, then pixel x spikes once at T - k with "
        "k = floor((T - 1) x + 1/2) (input_code='ttfs'), or nothing (input_code='none'); "
        "input_code='split': the spike carries k / (T - 1), the analog step x - k / (T - 1)",
        "the bias b of the Affine/Conv node enters as b / T at every step (bias='spread'), "
        "b at step 0 only ('first_step') or b at every step ('every_step'): see the config",
        "every neuron fires at most once and is never reset: nir.Threshold marks the first "
        "crossing only",
        "nir.LI stands for v <- leak * v + z under forward Euler with dt = 1",
        "readout: the output population's membrane (node '<output>.membrane') after the last "
        "step, or with readout='first_spike' its earliest spike",
    ],
}


def _import_nir() -> Any:
    try:
        import nir
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "NIR export and import need the package 'nir', which is in the 'nir' extra: "
            "pip install 'onespike[nir]'"
        ) from exc
    return nir


def _strict_threshold(threshold: float | Tensor, shape: tuple[int, ...]) -> np.ndarray:
    """NIR ``v_threshold`` for a ``v >= threshold`` rule: the largest float32 below it."""
    values = torch.as_tensor(threshold).detach().cpu().to(torch.float32).expand(shape).numpy()
    return np.nextafter(values, np.float32(-np.inf)).astype(np.float32)


def _array(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().contiguous().numpy().copy()


def _shape_after(op: Node, shape: tuple[int, ...]) -> tuple[int, ...]:
    with torch.no_grad():
        return tuple(apply_linear(op, torch.zeros((1, *shape)), bias=False).shape[1:])


def _channel_uniform(bias: Tensor) -> bool:
    return bias.ndim == 3 and bool((bias == bias[:, :1, :1]).all())


class _Exporter:
    """Builds the NIR nodes, edges and JSON record of one network."""

    def __init__(self, nir: Any, net: SpikingNetwork, method: str) -> None:
        self.nir = nir
        self.net = net
        self.method = method
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []
        self.emits: dict[str, str] = {}  # population -> node whose output is its value
        self.reserved = {p.name for p in net.populations}
        self.output_name = "output"

    def add(self, wanted: str, node: Any, *, own: bool = False) -> str:
        """Add ``node`` under ``wanted`` (made unique); only ``own`` nodes take a population's
        name."""
        name = wanted
        while name in self.nodes or (not own and name in self.reserved):
            name += "_"
        self.nodes[name] = node
        return name

    def edge(self, source: str, target: str) -> None:
        self.edges.append((source, target))

    # synapses ---------------------------------------------------------------------------
    def op_node(
        self,
        op: Node,
        shape: tuple[int, ...],
        factor: float,
        bias: Tensor | None,
    ) -> Any:
        """The NIR node of ``op``; ``factor`` multiplies a weight, ``bias`` is carried."""
        nir = self.nir
        metadata: dict[str, Any] = {}
        if isinstance(op, (Linear, Conv2d)):
            weight = op.weight
            if factor != 1.0:
                weight = weight * factor
                metadata["onespike_weight"] = _array(op.weight)
            if isinstance(op, Linear):
                if bias is None:
                    return nir.Linear(weight=_array(weight), metadata=metadata)
                return nir.Affine(weight=_array(weight), bias=_array(bias), metadata=metadata)
            channels = op.weight.shape[0]
            channel_bias = (
                bias[:, 0, 0] if bias is not None else torch.zeros(channels, dtype=weight.dtype)
            )
            conv = nir.Conv2d(
                input_shape=(int(shape[1]), int(shape[2])),
                weight=_array(weight),
                stride=op.stride,
                padding=op.padding,
                dilation=op.dilation,
                groups=op.groups,
                bias=_array(channel_bias),
                metadata=metadata,
            )
            # nir 1.0 takes the input channels from the weight alone (C_in / groups)
            conv.input_type = {"input": np.array([int(shape[0]), int(shape[1]), int(shape[2])])}
            return conv
        if isinstance(op, AvgPool2d):
            return nir.AvgPool2d(
                kernel_size=np.array(op.kernel_size),
                stride=np.array(op.stride),
                padding=np.array(op.padding),
            )
        if isinstance(op, Flatten):
            return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
        if isinstance(op, Affine):
            view = (-1,) + (1,) * (len(shape) - 1)
            scale = op.scale.view(view).expand(shape)
            return nir.Scale(
                scale=_array(scale),
                metadata={"onespike_role": "affine", "onespike_shift": _array(op.shift)},
            )
        if isinstance(op, PadChannels):
            raise UnsupportedLayerError(
                "a concatenation read by a population without a weighted layer between them "
                "(e.g. BatchNorm and ReLU of a DenseNet concatenation) has no NIR node: NIR 1.0 "
                "cannot place channels; convert to onespike's own formats instead"
            )
        if isinstance(op, AdaptiveAvgPool2d):
            raise UnsupportedLayerError(
                f"adaptive average pooling to {op.output_size} with irregular windows has no "
                "NIR node (NIR's AvgPool2d is regular); choose an output size that divides the "
                "input"
            )
        raise UnsupportedLayerError(f"{type(op).__name__} has no NIR node")  # pragma: no cover

    def projection(
        self, pop: Population, index: int, proj: Projection, bias: Tensor | None
    ) -> tuple[dict[str, Any], str | None]:
        """Add the nodes of one projection; returns its record and its last node (or None)."""
        shape = self.net[proj.source].shape
        names: list[str] = []
        record: dict[str, Any] = {
            "source": proj.source,
            "factor": proj.factor,
            "delay": proj.delay,
            "ops": [],
            "fold_op": None,
            "factor_node": None,
            "delay_node": None,
        }
        prefix = (
            f"{pop.name}.synapses{index}" if len(pop.projections) > 1 else f"{pop.name}.synapses"
        )
        if proj.delay:
            delay = self.nir.Delay(delay=np.full(shape, float(proj.delay), dtype=np.float32))
            record["delay_node"] = self.add(f"{prefix}.delay", delay)
            names.append(record["delay_node"])
        weighted = [j for j, op in enumerate(proj.ops) if isinstance(op, (Linear, Conv2d))]
        fold_at = weighted[-1] if weighted else None
        record["fold_op"] = fold_at
        for j, op in enumerate(proj.ops):
            last = j == len(proj.ops) - 1
            node = self.op_node(
                op,
                shape,
                proj.factor if j == fold_at else 1.0,
                bias if last else None,
            )
            suffix = "" if len(proj.ops) == 1 else f".{j}"
            name = self.add(prefix + suffix, node)
            record["ops"].append(name)
            names.append(name)
            shape = _shape_after(op, shape)
        if fold_at is None and proj.factor != 1.0:
            scale = self.nir.Scale(
                scale=np.full(shape, proj.factor, dtype=np.float32),
                metadata={"onespike_role": "factor"},
            )
            record["factor_node"] = self.add(f"{prefix}.factor", scale)
            names.append(record["factor_node"])
        previous = self.emits[proj.source]
        for name in names:
            self.edge(previous, name)
            previous = name
        return record, (names[-1] if names else None)

    def bias_plan(self, pop: Population) -> tuple[int | None, str | None]:
        """Which projection's last node carries the bias (index), or which identity node."""
        if pop.bias is None or self.method == "ttfs":
            return None, None
        for index, proj in enumerate(pop.projections):
            if proj.ops and isinstance(proj.ops[-1], Linear):
                return index, "affine"
            if proj.ops and isinstance(proj.ops[-1], Conv2d) and _channel_uniform(pop.bias):
                return index, "conv"
        if pop.bias.ndim == 1:
            return None, "identity_affine"
        if _channel_uniform(pop.bias):
            return None, "identity_conv"
        raise UnsupportedLayerError(
            f"population '{pop.name}' has a bias that varies within a channel (a constant "
            "term passed through a padded convolution or average pooling); NIR's Conv2d bias "
            "is one value per channel. Fold the constant into an unpadded layer (e.g. "
            "BatchNorm directly after its convolution, input normalisation before an unpadded "
            "convolution) to export this network to NIR."
        )

    def identity_bias(self, pop: Population, kind: str) -> Any:
        assert pop.bias is not None
        bias = pop.bias
        if kind == "identity_affine":
            eye = torch.eye(bias.shape[0], dtype=bias.dtype)
            return self.nir.Affine(weight=_array(eye), bias=_array(bias))
        channels = bias.shape[0]
        eye = torch.eye(channels, dtype=bias.dtype).view(channels, channels, 1, 1)
        return self.nir.Conv2d(
            input_shape=(int(bias.shape[1]), int(bias.shape[2])),
            weight=_array(eye),
            stride=1,
            padding=0,
            dilation=1,
            groups=1,
            bias=_array(bias[:, 0, 0]),
        )

    # neurons ----------------------------------------------------------------------------
    def neuron(self, pop: Population, record: dict[str, Any]) -> tuple[str, str | None]:
        """Add ``pop``'s neuron nodes; returns (entry node, node emitting its spikes)."""
        nir = self.nir
        shape = pop.shape
        ones = np.ones(shape, dtype=np.float32)
        nodes: dict[str, str] = {}
        if self.method == "rate":
            if pop.is_output:
                return self.output_name, None
            metadata = self.threshold_metadata(pop, record)
            node = nir.IF(
                r=ones,
                v_threshold=_strict_threshold(pop.threshold, shape),
                v_reset=np.zeros(shape, dtype=np.float32),
                metadata=metadata,
            )
            name = self.add(pop.name, node, own=True)
            record["nodes"] = {"neuron": name}
            return name, name
        config = self.net.config
        if isinstance(config, TTFSConfig):
            metadata = {}
            if pop.bias is not None:
                metadata["onespike_bias"] = _array(pop.bias)
            nodes["current"] = self.add(f"{pop.name}.current", nir.I(r=ones, metadata=metadata))
            nodes["membrane"] = self.add(f"{pop.name}.membrane", nir.I(r=ones))
            threshold: float | Tensor = config.levels - 0.5
            spike_metadata: dict[str, Any] = {}
        else:
            assert isinstance(config, HybridConfig)
            if config.leak == 1.0:
                membrane = nir.I(r=ones)
            else:
                tau = 1.0 / (1.0 - float(config.leak))
                membrane = nir.LI(
                    tau=np.full(shape, tau, dtype=np.float32),
                    r=np.full(shape, tau, dtype=np.float32),
                    v_leak=np.zeros(shape, dtype=np.float32),
                )
            nodes["membrane"] = self.add(f"{pop.name}.membrane", membrane)
            threshold = pop.threshold
            spike_metadata = self.threshold_metadata(pop, record)
        nodes["spikes"] = self.add(
            pop.name,
            nir.Threshold(threshold=_strict_threshold(threshold, shape), metadata=spike_metadata),
            own=True,
        )
        chain = list(nodes.values())
        for source, target in itertools.pairwise(chain):
            self.edge(source, target)
        record["nodes"] = nodes
        return chain[0], nodes["spikes"]

    def threshold_metadata(self, pop: Population, record: dict[str, Any]) -> dict[str, Any]:
        threshold = pop.threshold
        if isinstance(threshold, Tensor):
            record["threshold"] = {"shape": list(threshold.shape)}
            return {"onespike_threshold": _array(threshold.reshape(-1))}
        record["threshold"] = float(threshold)
        return {}

    # the whole network ------------------------------------------------------------------
    def run(self) -> Any:
        nir = self.nir
        net = self.net
        inp = net.input
        self.nodes[inp.name] = nir.Input(input_type={"input": np.array(inp.shape)})
        self.emits[inp.name] = inp.name
        while self.output_name in self.reserved:
            self.output_name += "_"
        self.reserved.add(self.output_name)
        pops: list[dict[str, Any]] = [_population_record(inp)]
        for pop in net.populations[1:]:
            record = _population_record(pop)
            carrier, kind = self.bias_plan(pop)
            ends: list[str | None] = []
            projections = []
            for index, proj in enumerate(pop.projections):
                proj_record, end = self.projection(
                    pop, index, proj, pop.bias if index == carrier else None
                )
                projections.append(proj_record)
                ends.append(end)
            record["projections"] = projections
            entry, spikes = self.neuron(pop, record)
            targets = entry
            if kind is None:
                if pop.bias is not None:  # TTFS: one event into the current, in metadata
                    record["bias"] = {"kind": "event", "node": record["nodes"]["current"]}
            elif carrier is None:
                targets = self.add(f"{pop.name}.bias", self.identity_bias(pop, kind))
                record["bias"] = {"kind": kind, "node": targets}
                self.edge(targets, entry)
            else:
                record["bias"] = {"kind": kind, "node": projections[carrier]["ops"][-1]}
            for index, end in enumerate(ends):
                if end is None:  # identity projection: an edge straight from the source
                    source = self.emits[pop.projections[index].source]
                    if (source, targets) in self.edges:
                        raise UnsupportedLayerError(
                            f"population '{pop.name}' reads '{pop.projections[index].source}' "
                            "twice without weights; NIR cannot hold two identical edges"
                        )
                    self.edge(source, targets)
                else:
                    self.edge(end, targets)
            if spikes is not None:
                self.emits[pop.name] = spikes
            pops.append(record)
        out = net.output
        self.nodes[self.output_name] = nir.Output(output_type={"output": np.array(out.shape)})
        if self.method != "rate":
            self.edge(self.emits[out.name], self.output_name)
        config = net.config
        record = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "config_type": type(config).__name__,
            "config": dataclasses.asdict(config),
            "output_node": self.output_name,
            "populations": pops,
            "not_expressible": _NOT_EXPRESSIBLE[self.method],
        }
        metadata = {
            _RECORD_KEY: json.dumps(record, allow_nan=False),
            "onespike_method": self.method,
            "onespike_not_expressible": "\n".join(_NOT_EXPRESSIBLE[self.method]),
        }
        return nir.NIRGraph(nodes=self.nodes, edges=self.edges, metadata=metadata)


def _population_record(pop: Population) -> dict[str, Any]:
    return {
        "name": pop.name,
        "kind": pop.kind,
        "shape": list(pop.shape),
        "scale": pop.scale,
        "depth": pop.depth,
        "is_output": pop.is_output,
        "ann_relu": pop.ann_relu,
        "threshold": float(pop.threshold) if not isinstance(pop.threshold, Tensor) else None,
        "bias": None,
        "projections": [],
        "nodes": {},
    }


def check_config(config: Any) -> str:
    """Raise the error :func:`to_nir` raises for a network converted with ``config``.

    Args:
        config: a conversion configuration.

    Returns:
        The method's name: ``"ttfs"``, ``"rate"`` or ``"hybrid"``.

    Raises:
        ConfigError: NIR cannot express networks of this configuration.
    """
    method = _METHODS.get(type(config))
    if method is None:
        raise ConfigError(
            f"to_nir exports TTFSConfig, RateConfig and HybridConfig networks, got "
            f"{type(config).__name__}"
        )
    if isinstance(config, RateConfig):
        if config.reset != "zero":
            raise ConfigError(
                "this rate network resets by subtraction (RateConfig(reset='subtract')); NIR 1.0's "
                "IF neuron resets to v_reset, so any reader would silently simulate reset to zero, "
                "a different network. Convert with RateConfig(reset='zero', initial_membrane=0.0) "
                "to export it (it may need more steps for the same accuracy)."
            )
        if config.initial_membrane != 0:
            raise ConfigError(
                f"this rate network starts every membrane at {config.initial_membrane} of its "
                "threshold (RateConfig.initial_membrane); NIR has no initial state, so any "
                "reader would start at 0, a different network. Convert with "
                "RateConfig(initial_membrane=0.0) to export it."
            )
    return method


def _check_exportable(net: SpikingNetwork) -> str:
    method = check_config(net.config)
    for pop in net.populations:
        if pop.neuron is not None:
            raise UnsupportedLayerError(
                f"population '{pop.name}' has the neuron model of an imported NIR graph "
                "(Population.neuron); to_nir writes onespike's own neuron models only, and "
                "would change its dynamics. Keep the NIR graph it was imported from."
            )
        if pop.kind == "maxpool":
            raise UnsupportedLayerError(
                f"population '{pop.name}' is a max pooling; NIR 1.0 has no max-pooling node "
                "(only AvgPool2d and SumPool2d), and onespike's spiking max pooling (rate: a "
                "window spikes when its largest count grows; TTFS and hybrid: first spike wins) "
                "has no NIR form. Use average pooling (nn.AvgPool2d) or strided convolutions in "
                "the model to export it to NIR."
            )
        if "/" in pop.name:
            raise InvalidGraphError(
                f"population name '{pop.name}' contains '/', which NIR's HDF5 files read as a "
                "path; rename the module"
            )
    return method


def to_nir(net: SpikingNetwork) -> Any:
    """Describe ``net`` as a NIR graph (see the module docstring for the mapping).

    Args:
        net: a network from :func:`onespike.convert` (TTFS, rate with reset to zero and
            initial membrane 0, or hybrid), without max pooling.

    Returns:
        A ``nir.NIRGraph``; write it with ``nir.write(path, graph)`` or :func:`write_nir`.

    Raises:
        ConfigError: a rate network resets by subtraction or starts its membranes above 0.
        UnsupportedLayerError: the network max-pools, or has a bias NIR cannot hold.
        ImportError: the package ``nir`` is not installed.
    """
    nir = _import_nir()
    method = _check_exportable(net)
    return _Exporter(nir, net, method).run()


def write_nir(path: str | os.PathLike[str], net: SpikingNetwork) -> Path:
    """Write ``net`` as a NIR (HDF5) file, atomically.

    Args:
        path: destination file, conventionally ``*.nir``.
        net: the network, as for :func:`to_nir`.

    Returns:
        The path written.
    """
    nir = _import_nir()
    graph = to_nir(net)

    def write(tmp: Path) -> None:
        nir.write(tmp, graph)

    return atomic_write(path, write)


# import --------------------------------------------------------------------------------------
MAX_VALUES = 2**28
"""Upper bound on the values in one parameter array or one population of a graph that
:func:`from_nir` reads (2**28 float32 values are 1 GiB); ``from_nir(..., max_values=n)`` raises
it for a really large model. A hostile file cannot make onespike allocate more than this per
array or population."""

MAX_RECORD_CHARS = 2**26
"""Upper bound on the length of the ``onespike_network`` metadata record (64 Mi characters)."""

# What from_nir reads, per NIR node type: floating-point array fields and integer fields.
_FLOAT_FIELDS: dict[str, tuple[str, ...]] = {
    "Input": (),
    "Output": (),
    "Linear": ("weight",),
    "Affine": ("weight", "bias"),
    "Conv2d": ("weight", "bias"),
    "AvgPool2d": (),
    "Flatten": (),
    "Scale": ("scale",),
    "Delay": ("delay",),
    "IF": ("r", "v_threshold", "v_reset"),
    "I": ("r",),
    "LI": ("tau", "r", "v_leak"),
    "Threshold": ("threshold",),
    # read in graphs from other tools (onespike.nir_foreign)
    "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
    "CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
    "SumPool2d": (),
}
# field -> smallest allowed value
_INT_FIELDS: dict[str, dict[str, int | None]] = {
    "Conv2d": {"stride": 1, "padding": 0, "dilation": 1, "groups": 1},
    "AvgPool2d": {"kernel_size": 1, "stride": 1, "padding": 0},
    "SumPool2d": {"kernel_size": 1, "stride": 1, "padding": 0},
    "Flatten": {"start_dim": None, "end_dim": None},
}
_METADATA_ARRAYS = ("onespike_weight", "onespike_shift", "onespike_threshold", "onespike_bias")
_SHAPE_FIELDS = {"Input": ("input_type", "input"), "Output": ("output_type", "output")}


def _type_name(node: Any) -> str:
    module = type(node).__module__ or ""
    prefix = "nir." if module.split(".")[0] == "nir" else ""
    return prefix + type(node).__name__


def _kind(nir: Any, node: Any) -> str | None:
    """The NIR type name of ``node`` if from_nir reads that type (exact type, no subclasses)."""
    for name in _FLOAT_FIELDS:
        if type(node) is getattr(nir, name, None):
            return name
    return None


def _non_numeric(where: str, value: Any) -> InvalidGraphError:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return InvalidGraphError(
        f"{where} is not numeric ({type(value).__name__} {shown}); NIR parameters are arrays of "
        "numbers. Write the graph again with numeric parameters (onespike.to_nir does)."
    )


def _numeric(where: str, value: Any, max_values: int, *, integer: bool = False) -> np.ndarray:
    """``value`` as a numpy array after checking type, size and finiteness."""
    if isinstance(value, (str, bytes)) or value is None:
        raise _non_numeric(where, value)
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise _non_numeric(where, value) from exc
    kinds = "iuf" if integer else "f"
    if array.dtype.kind not in kinds:
        if array.dtype.kind in "iub":
            raise InvalidGraphError(
                f"{where} has dtype {array.dtype}; onespike reads floating-point parameters. "
                "Write it as float32."
            )
        raise _non_numeric(where, value)
    if array.size > max_values:
        raise InvalidGraphError(
            f"{where} has {array.size} values, above the bound of {max_values} per array "
            f"(onespike.nir_io.MAX_VALUES = 2**28); for a model this large, pass "
            f"from_nir(..., max_values={array.size})"
        )
    finite = np.isfinite(array)
    if not bool(finite.all()):
        bad = int(array.size - int(finite.sum()))
        first = tuple(int(i) for i in np.argwhere(~finite)[0]) if array.ndim else ()
        raise InvalidGraphError(
            f"{where} holds {bad} non-finite value(s) (NaN or Inf), the first at index "
            f"{first}: a network with one computes garbage (e.g. every prediction the same "
            "class). Export it again from a network with finite parameters, or correct the "
            "value in the graph."
        )
    if integer and not bool((array == np.round(array)).all()):
        raise InvalidGraphError(f"{where} is {array.tolist()!r}; give whole numbers")
    return array


def _check_integers(where: str, value: Any, smallest: int | None, max_values: int) -> np.ndarray:
    if isinstance(value, str):
        raise InvalidGraphError(
            f"{where} is {value!r}; onespike reads explicit integers (e.g. padding=1 instead of "
            "'same'). Write the node with integers."
        )
    array = _numeric(where, value, max_values, integer=True)
    if array.size not in (1, 2):
        raise InvalidGraphError(
            f"{where} has {array.size} values; give one value or one per spatial dimension (2)"
        )
    if smallest is not None and bool((array < smallest).any()):
        raise InvalidGraphError(f"{where} is {array.tolist()!r}; it must be at least {smallest}")
    if bool((np.abs(array) > max_values).any()):
        raise InvalidGraphError(f"{where} is {array.tolist()!r}, above the bound {max_values}")
    return array


def _check_shape(where: str, value: Any, max_values: int) -> tuple[int, ...]:
    array = _numeric(where, value, max_values, integer=True)
    if array.ndim > 1 or array.size == 0 or bool((array < 1).any()):
        raise InvalidGraphError(
            f"{where} is {array.tolist()!r}; a shape is a list of positive integers"
        )
    shape = tuple(int(v) for v in np.atleast_1d(array))
    _check_size(where, shape, max_values)
    return shape


def _check_size(where: str, shape: tuple[int, ...], max_values: int) -> None:
    size = 1
    for dim in shape:
        size *= dim
    if size > max_values:
        raise InvalidGraphError(
            f"{where} {shape} has {size} values, above the bound of {max_values} per "
            f"population (onespike.nir_io.MAX_VALUES = 2**28); for a model this large, pass "
            f"from_nir(..., max_values={size})"
        )


def _check_parameters(name: str, kind: str, node: Any, max_values: int) -> None:
    for field in _FLOAT_FIELDS[kind]:
        _numeric(
            f"node {name!r} ({_type_name(node)}) parameter {field!r}",
            getattr(node, field, None),
            max_values,
        )
    for field, smallest in _INT_FIELDS.get(kind, {}).items():
        where = f"node {name!r} ({_type_name(node)}) parameter {field!r}"
        _check_integers(where, getattr(node, field, None), smallest, max_values)
    if kind in _SHAPE_FIELDS:
        attribute, key = _SHAPE_FIELDS[kind]
        types = getattr(node, attribute, None)
        value = types.get(key) if isinstance(types, dict) else None
        _check_shape(f"node {name!r} ({_type_name(node)}) shape", value, max_values)
    metadata = getattr(node, "metadata", None)
    if isinstance(metadata, dict):
        for key in _METADATA_ARRAYS:
            if key in metadata:
                where = f"node {name!r} ({_type_name(node)}) metadata {key!r}"
                _numeric(where, metadata[key], max_values)


def _find_cycle(left: set[str], preds: dict[str, list[str]]) -> list[str]:
    """One cycle among ``left`` (nodes Kahn's algorithm could not order), in edge order."""
    node = min(left)
    seen: dict[str, int] = {}
    path: list[str] = []
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(p for p in preds[node] if p in left)
    cycle = path[seen[node] :]
    return cycle[::-1]


def _check_graph(nir: Any, graph: Any, max_values: int) -> dict[str, str]:
    """Validate a graph's structure and parameters before anything reads them.

    Returns:
        The NIR type name of each node.
    """
    nodes = graph.nodes
    if not isinstance(nodes, dict):
        raise InvalidGraphError(
            f"the graph's nodes are a {type(nodes).__name__}; NIR graphs map names to nodes"
        )
    kinds: dict[str, str] = {}
    for name, node in nodes.items():
        if not isinstance(name, str) or not name:
            raise InvalidGraphError(f"node name {name!r} is not a non-empty string")
        kind = _kind(nir, node)
        if kind is None:
            raise InvalidGraphError(
                f"node {name!r} is a {_type_name(node)}, which onespike does not read; from_nir "
                f"reads the node types {', '.join(_FLOAT_FIELDS)}. Export the network with "
                "onespike.to_nir, or build it from those nodes."
            )
        kinds[name] = kind
    try:
        edges = [tuple(edge) for edge in graph.edges]
    except TypeError as exc:
        raise InvalidGraphError(
            f"the graph's edges are not a list of (source, target) pairs: {graph.edges!r:.80}"
        ) from exc
    seen: set[tuple[Any, ...]] = set()
    preds: dict[str, list[str]] = {name: [] for name in nodes}
    succs: dict[str, list[str]] = {name: [] for name in nodes}
    for edge in edges:
        if len(edge) != 2 or not all(isinstance(end, str) for end in edge):
            raise InvalidGraphError(f"edge {edge!r:.80} is not a pair of node names")
        source, target = edge
        for end in edge:
            if end not in nodes:
                raise InvalidGraphError(
                    f"edge {source!r} -> {target!r} names node {end!r}, which the graph lacks; "
                    "add the node or remove the edge"
                )
        if edge in seen:
            raise InvalidGraphError(
                f"edge {source!r} -> {target!r} appears twice; NIR edges are a set"
            )
        seen.add(edge)
        preds[target].append(source)
        succs[source].append(target)
    indegree = {name: len(p) for name, p in preds.items()}
    ready = [name for name, d in indegree.items() if d == 0]
    ordered = 0
    while ready:
        name = ready.pop()
        ordered += 1
        for target in succs[name]:
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    if ordered < len(nodes):
        left = {name for name, d in indegree.items() if d > 0}
        cycle = _find_cycle(left, preds)
        raise InvalidGraphError(
            f"the graph has a cycle: {' -> '.join([*cycle, cycle[0]])}; onespike reads "
            "feed-forward networks (NIR graphs from onespike.to_nir have no cycles). Remove "
            "the edge that closes it."
        )
    for name, node in nodes.items():
        _check_parameters(name, kinds[name], node, max_values)
    return kinds


def _check_max_values(max_values: Any) -> int:
    if isinstance(max_values, bool) or not isinstance(max_values, int) or max_values < 1:
        raise ConfigError(f"max_values must be a positive integer, got {max_values!r}")
    return max_values


def _check_file_sizes(path: str | os.PathLike[str], max_values: int) -> None:
    """Refuse an HDF5 file holding an array above the bound before nir.read loads it."""
    import h5py

    too_large: list[tuple[str, int]] = []

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Dataset) and item.size is not None and item.size > max_values:
            too_large.append((name, int(item.size)))

    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    if too_large:
        name, size = too_large[0]
        raise InvalidGraphError(
            f"{path}: array {name!r} has {size} values, above the bound of {max_values} per "
            f"array (onespike.nir_io.MAX_VALUES = 2**28); for a model this large, pass "
            f"from_nir(..., max_values={size})"
        )


def _tensor(value: Any) -> Tensor:
    return torch.from_numpy(np.array(value, copy=True))


def _pair(value: Any) -> tuple[int, int]:
    items = [int(v) for v in np.atleast_1d(np.asarray(value))]
    return (items[0], items[-1])


_EDITED = (
    "the graph was changed after onespike.to_nir wrote it, and its onespike record no longer "
    "describes it. Make the change on the SpikingNetwork and export it again with "
    "onespike.to_nir"
)


def _bad_record(where: str, problem: str) -> InvalidGraphError:
    return InvalidGraphError(
        f"the graph's '{_RECORD_KEY}' record: {where} {problem}. The record is written by "
        "onespike.to_nir; export the network again"
    )


def _get(entry: Any, key: str, where: str) -> Any:
    if not isinstance(entry, dict):
        raise _bad_record(where, f"is a {type(entry).__name__}, not an object")
    if key not in entry:
        raise _bad_record(where, f"lacks the field '{key}'")
    return entry[key]


def _rec_str(entry: Any, key: str, where: str, *, optional: bool = False) -> str | None:
    value = _get(entry, key, where)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise _bad_record(f"{where} field '{key}'", f"is {value!r}, not a name")
    return value


def _rec_int(entry: Any, key: str, where: str, smallest: int) -> int:
    value = _get(entry, key, where)
    if isinstance(value, bool) or not isinstance(value, int) or value < smallest:
        raise _bad_record(f"{where} field '{key}'", f"is {value!r}, not an integer >= {smallest}")
    return value


def _rec_float(entry: Any, key: str, where: str, *, positive: bool = False) -> float:
    value = _get(entry, key, where)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not np.isfinite(value) or (positive and value <= 0):
        wanted = "a finite number > 0" if positive else "a finite number"
        raise _bad_record(f"{where} field '{key}'", f"is {value!r}, not {wanted}")
    return float(value)


def _rec_bool(entry: Any, key: str, where: str) -> bool:
    value = _get(entry, key, where)
    if not isinstance(value, bool):
        raise _bad_record(f"{where} field '{key}'", f"is {value!r}, not true or false")
    return value


def _rec_list(entry: Any, key: str, where: str) -> list[Any]:
    value = _get(entry, key, where)
    if not isinstance(value, list):
        raise _bad_record(f"{where} field '{key}'", f"is {value!r:.60}, not a list")
    return value


def _rec_shape(value: Any, where: str, max_values: int, *, scalar: bool = False) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or (not value and not scalar)
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    ):
        raise _bad_record(where, f"is {value!r:.60}, not a list of positive integers")
    shape = tuple(value)
    _check_size(f"the onespike record's {where}", shape, max_values)
    return shape


_NEURON_NODES = {
    "rate": ("neuron",),
    "rate_output": (),
    "ttfs": ("current", "membrane", "spikes"),
    "hybrid": ("membrane", "spikes"),
}
_BIAS_KINDS = {
    "affine": "Affine",
    "conv": "Conv2d",
    "identity_affine": "Affine",
    "identity_conv": "Conv2d",
    "event": "I",
}
_OP_KINDS = ("Linear", "Affine", "Conv2d", "AvgPool2d", "Flatten", "Scale")


def _check_record(record: dict[str, Any], max_values: int) -> None:
    """Types, ranges and sizes of every field of the record :func:`_rebuild` reads."""
    config_type = _get(record, "config_type", "the top level")
    if config_type not in _CONFIGS:
        raise _bad_record(
            "field 'config_type'", f"is {config_type!r}, not one of {', '.join(_CONFIGS)}"
        )
    method = _METHODS[_CONFIGS[config_type]]
    if not isinstance(_get(record, "config", "the top level"), dict):
        raise _bad_record("field 'config'", "is not an object")
    _rec_str(record, "output_node", "the top level")
    pops = _rec_list(record, "populations", "the top level")
    if len(pops) < 2:
        raise _bad_record("field 'populations'", "needs an input and at least one population")
    names: set[str] = set()
    outputs = 0
    for index, entry in enumerate(pops):
        where = f"population {index}"
        name = _rec_str(entry, "name", where) or ""
        where = f"population {name!r}"
        if name in names:
            raise _bad_record(where, "appears twice")
        kind = _get(entry, "kind", where)
        if kind != ("input" if index == 0 else "neuron"):
            wanted = "'input'" if index == 0 else "'neuron' (to_nir writes no other kind here)"
            raise _bad_record(f"{where} field 'kind'", f"is {kind!r}, not {wanted}")
        _rec_shape(_get(entry, "shape", where), f"{where} field 'shape'", max_values)
        _rec_float(entry, "scale", where, positive=True)
        _rec_int(entry, "depth", where, 0)
        outputs += _rec_bool(entry, "is_output", where)
        _rec_bool(entry, "ann_relu", where)
        threshold = _get(entry, "threshold", where)
        if isinstance(threshold, dict):
            _rec_shape(
                _get(threshold, "shape", f"{where} field 'threshold'"),
                f"{where} threshold shape",
                max_values,
                scalar=True,
            )
        elif threshold is not None:
            _rec_float(entry, "threshold", where)
        bias = _get(entry, "bias", where)
        if bias is not None:
            if _get(bias, "kind", f"{where} field 'bias'") not in _BIAS_KINDS:
                raise _bad_record(
                    f"{where} bias kind", f"is {bias['kind']!r}, not one of {list(_BIAS_KINDS)}"
                )
            _rec_str(bias, "node", f"{where} field 'bias'")
        projections = _rec_list(entry, "projections", where)
        if (index == 0) != (not projections):
            raise _bad_record(
                f"{where} field 'projections'",
                "must be empty for the input and non-empty for every other population",
            )
        for number, proj in enumerate(projections):
            at = f"{where} projection {number}"
            source = _rec_str(proj, "source", at)
            if source not in names:
                raise _bad_record(
                    f"{at} field 'source'", f"names {source!r}, which is not an earlier population"
                )
            _rec_float(proj, "factor", at)
            _rec_int(proj, "delay", at, 0)
            ops = _rec_list(proj, "ops", at)
            if not all(isinstance(op, str) and op for op in ops):
                raise _bad_record(f"{at} field 'ops'", f"is {ops!r:.60}, not a list of names")
            fold = _get(proj, "fold_op", at)
            if fold is not None and (
                isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < len(ops)
            ):
                raise _bad_record(f"{at} field 'fold_op'", f"is {fold!r}, not an index of 'ops'")
            _rec_str(proj, "factor_node", at, optional=True)
            _rec_str(proj, "delay_node", at, optional=True)
        nodes = _get(entry, "nodes", where)
        if index > 0:
            role = "rate_output" if method == "rate" and entry["is_output"] else method
            if not isinstance(nodes, dict) or sorted(nodes) != sorted(_NEURON_NODES[role]):
                raise _bad_record(
                    f"{where} field 'nodes'",
                    f"is {nodes!r:.80}; a {method} population names its nodes "
                    f"{list(_NEURON_NODES[role])}",
                )
            for key in nodes:
                _rec_str(nodes, key, f"{where} field 'nodes'")
        names.add(name)
    if outputs != 1:
        raise _bad_record("field 'populations'", f"marks {outputs} outputs (is_output), not 1")


def _config(record: dict[str, Any]) -> Any:
    config_type = _CONFIGS[record["config_type"]]
    try:
        return config_type(**record["config"])
    except (TypeError, OnespikeError, ValueError) as exc:
        raise _bad_record(
            "field 'config'", f"does not make a {config_type.__name__}: {exc}"
        ) from exc


def _expected_graph(
    record: dict[str, Any], config: Any
) -> tuple[dict[str, tuple[str, ...]], list[tuple[str, str]]]:
    """The nodes (name -> allowed NIR types) and edges that :func:`to_nir` writes for
    ``record``, in the exporter's order."""
    method = _METHODS[type(config)]
    pops = record["populations"]
    expected: dict[str, tuple[str, ...]] = {}
    edges: list[tuple[str, str]] = []

    def add(name: str, types: tuple[str, ...], role: str) -> None:
        if name in expected:
            raise _bad_record(role, f"names node {name!r}, which the record already uses")
        expected[name] = types

    add(pops[0]["name"], ("Input",), "the input population")
    emits = {pops[0]["name"]: pops[0]["name"]}
    output = record["output_node"]
    for entry in pops[1:]:
        name, nodes = entry["name"], entry["nodes"]
        where = f"population {name!r}"
        ends: list[str | None] = []
        for number, proj in enumerate(entry["projections"]):
            at = f"{where} projection {number}"
            chain: list[str] = []
            if proj["delay_node"] is not None:
                add(proj["delay_node"], ("Delay",), at)
                chain.append(proj["delay_node"])
            for op in proj["ops"]:
                add(op, _OP_KINDS, at)
                chain.append(op)
            if proj["factor_node"] is not None:
                add(proj["factor_node"], ("Scale",), at)
                chain.append(proj["factor_node"])
            previous = emits[proj["source"]]
            for node in chain:
                edges.append((previous, node))
                previous = node
            ends.append(chain[-1] if chain else None)
        if method == "rate":
            if entry["is_output"]:
                entry_node, spikes = output, None
            else:
                add(nodes["neuron"], ("IF",), where)
                entry_node = spikes = nodes["neuron"]
        else:
            chain = [nodes[key] for key in _NEURON_NODES[method]]
            membrane = "I" if method == "ttfs" or config.leak == 1.0 else "LI"
            types = {"current": ("I",), "membrane": (membrane,), "spikes": ("Threshold",)}
            for key in _NEURON_NODES[method]:
                add(nodes[key], types[key], where)
            edges.extend(itertools.pairwise(chain))
            entry_node, spikes = chain[0], nodes["spikes"]
        targets = entry_node
        bias = entry["bias"]
        if bias is not None:
            kind = bias["kind"]
            if kind.startswith("identity"):
                add(bias["node"], (_BIAS_KINDS[kind],), f"{where} bias")
                targets = bias["node"]
                edges.append((targets, entry_node))
            elif kind == "event":
                if method != "ttfs" or bias["node"] != nodes["current"]:
                    raise _bad_record(f"{where} bias", "is an event, which only a TTFS current has")
            else:
                carriers = [proj["ops"][-1] for proj in entry["projections"] if proj["ops"]]
                if bias["node"] not in carriers:
                    raise _bad_record(
                        f"{where} bias", f"names {bias['node']!r}, which ends none of its synapses"
                    )
        for number, end in enumerate(ends):
            edges.append(
                (end if end is not None else emits[entry["projections"][number]["source"]], targets)
            )
        if spikes is not None:
            emits[name] = spikes
    add(output, ("Output",), "field 'output_node'")
    if method != "rate":
        out = next(entry for entry in pops if entry["is_output"])
        edges.append((emits[out["name"]], output))
    return expected, edges


def _listed(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _compare_topology(
    graph: Any, kinds: dict[str, str], record: dict[str, Any], config: Any
) -> None:
    """Refuse a graph whose nodes or edges are not those its onespike record describes."""
    expected, edges = _expected_graph(record, config)
    problems: list[str] = []
    added = [repr(name) for name in graph.nodes if name not in expected]
    missing = [repr(name) for name in expected if name not in graph.nodes]
    if added:
        problems.append(f"node(s) in the graph but not in the record: {_listed(added)}")
    if missing:
        problems.append(f"node(s) in the record but not in the graph: {_listed(missing)}")
    for name, types in expected.items():
        if name in kinds and kinds[name] not in types:
            wanted = " or ".join(f"nir.{t}" for t in types)
            problems.append(f"node {name!r} is a nir.{kinds[name]} where the record has a {wanted}")
    have = {tuple(edge) for edge in graph.edges}
    want = set(edges)
    extra = [f"{a!r} -> {b!r}" for a, b in (tuple(e) for e in graph.edges) if (a, b) not in want]
    lost = [f"{a!r} -> {b!r}" for a, b in edges if (a, b) not in have]
    if extra:
        problems.append(f"edge(s) in the graph but not in the record: {_listed(extra)}")
    if lost:
        problems.append(f"edge(s) in the record but not in the graph: {_listed(lost)}")
    if problems:
        raise InvalidGraphError(
            "the graph's nodes and edges disagree with its onespike record: "
            + "; ".join(problems)
            + f". {_EDITED}."
        )


def _summary(array: np.ndarray) -> str:
    values = np.asarray(array).reshape(-1)
    if values.size and bool((values == values[0]).all()):
        return repr(float(values[0]))
    return f"between {float(values.min())!r} and {float(values.max())!r}"


def _fits(array: np.ndarray, shape: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(array.shape, shape) == shape
    except ValueError:
        return False


def _expect_shape(
    name: str, node: Any, field: str, shape: tuple[int, ...], what: str
) -> np.ndarray:
    array = np.asarray(getattr(node, field))
    if not _fits(array, shape):
        raise InvalidGraphError(
            f"node {name!r} ({_type_name(node)}) parameter {field!r} has shape "
            f"{tuple(array.shape)}, which does not fit {what} of shape {shape}. {_EDITED}."
        )
    return array


def _expect_value(
    name: str, node: Any, field: str, shape: tuple[int, ...], value: float, what: str
) -> None:
    array = _expect_shape(name, node, field, shape, what)
    if not bool((array == np.float32(value)).all()):
        raise InvalidGraphError(
            f"node {name!r} ({_type_name(node)}) parameter {field!r} is {_summary(array)} "
            f"where {what} has {float(np.float32(value))!r} (onespike reads no other value "
            f"here, so the graph would not simulate as written). {_EDITED}."
        )


def _out_shape(op: Node, shape: tuple[int, ...], where: str, max_values: int) -> tuple[int, ...]:
    """The shape after ``op``, computed from the sizes alone (nothing is allocated)."""

    def refuse(problem: str) -> InvalidGraphError:
        return InvalidGraphError(f"{where} {problem}. {_EDITED}.")

    out: tuple[int, ...]
    if isinstance(op, Linear):
        if len(shape) != 1 or op.weight.shape[1] != shape[0]:
            raise refuse(
                f"has a weight of shape {tuple(op.weight.shape)}, which cannot take an input "
                f"of shape {shape}"
            )
        out = (int(op.weight.shape[0]),)
    elif isinstance(op, (Conv2d, AvgPool2d)):
        if len(shape) != 3:
            raise refuse(f"needs an input of shape (channels, height, width), got {shape}")
        if isinstance(op, Conv2d):
            weight = op.weight
            if weight.shape[1] * op.groups != shape[0] or weight.shape[0] % op.groups:
                raise refuse(
                    f"has a weight of shape {tuple(weight.shape)} with groups={op.groups}, "
                    f"which cannot take an input of shape {shape}"
                )
            kernel = (int(weight.shape[2]), int(weight.shape[3]))
            dilation, channels = op.dilation, int(weight.shape[0])
        else:
            kernel, dilation, channels = op.kernel_size, (1, 1), shape[0]
            if any(2 * p > k for p, k in zip(op.padding, kernel, strict=True)):
                raise refuse(f"has padding {op.padding} above half its kernel {kernel}")
        sizes = [
            (n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, p, d, k, s in zip(
                shape[1:], op.padding, dilation, kernel, op.stride, strict=True
            )
        ]
        if min(sizes) < 1:
            raise refuse(f"leaves no output from an input of shape {shape}")
        out = (channels, *sizes)
    elif isinstance(op, Flatten):
        out = (math.prod(shape),)
    elif isinstance(op, Affine):
        if op.scale.shape[0] != shape[0]:
            raise refuse(f"scales {op.scale.shape[0]} channels, its input has shape {shape}")
        out = shape
    else:  # pragma: no cover - _op makes no other node
        raise refuse("is not a synapse onespike reads")
    _check_size(f"the output of {where}, shape", out, max_values)
    return out


def _weight(node: Any, factor: float, ndim: int, where: str) -> tuple[Tensor, float]:
    """A node's weight without ``factor``, and the factor left to apply.

    The unscaled weight in the node's metadata is used only where ``factor`` times it is
    exactly the node's weight; otherwise (the graph was edited) the node's weight is taken as
    it stands, with factor 1.
    """
    weight = _tensor(node.weight)
    if weight.ndim != ndim:
        raise InvalidGraphError(
            f"{where} has a weight of shape {tuple(weight.shape)}; it needs {ndim} dimensions"
        )
    raw = node.metadata.get("onespike_weight") if node.metadata else None
    if factor != 1.0 and raw is not None:
        unscaled = _tensor(raw)
        if unscaled.shape == weight.shape and torch.equal(unscaled * factor, weight):
            return unscaled, factor
    return weight, 1.0


def _op(
    nir: Any, node: Any, factor: float, shape: tuple[int, ...], where: str
) -> tuple[Node, float]:
    """The onespike op of an exported node, and the factor left to apply after it."""
    if isinstance(node, (nir.Linear, nir.Affine)):
        weight, factor = _weight(node, factor, 2, where)
        return Linear(weight), factor
    if isinstance(node, nir.Conv2d):
        weight, factor = _weight(node, factor, 4, where)
        stride, padding, dilation = (_pair(v) for v in (node.stride, node.padding, node.dilation))
        groups = int(np.asarray(node.groups).reshape(-1)[0])
        return Conv2d(weight, None, stride, padding, dilation, groups), factor
    if isinstance(node, nir.AvgPool2d):
        pool = AvgPool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding))
        return pool, factor
    if isinstance(node, nir.Flatten):
        start, end = (int(np.asarray(v).reshape(-1)[0]) for v in (node.start_dim, node.end_dim))
        if start != 0 or end not in (-1, len(shape) - 1):
            raise InvalidGraphError(
                f"{where} flattens dimensions {start} to {end} of an input of shape {shape}; "
                "onespike flattens the whole sample (start_dim=0, end_dim=-1; NIR shapes "
                f"exclude the batch). {_EDITED}."
            )
        return Flatten(), factor
    if isinstance(node, nir.Scale):
        scale = np.asarray(node.scale)
        if not _fits(scale, shape):
            raise InvalidGraphError(
                f"{where} has a scale of shape {tuple(scale.shape)}, which does not fit its "
                f"input of shape {shape}. {_EDITED}."
            )
        full = np.broadcast_to(scale, shape).reshape(shape[0], -1)
        if not bool((full == full[:, :1]).all()):
            raise InvalidGraphError(
                f"{where} scales neurons of one channel differently; onespike's Scale is one "
                f"value per channel (axis 0 of {shape}). {_EDITED}."
            )
        channels = torch.from_numpy(full[:, 0].copy())
        shift = node.metadata.get("onespike_shift") if node.metadata else None
        if shift is not None and np.asarray(shift).size != shape[0]:
            raise InvalidGraphError(
                f"{where} metadata 'onespike_shift' has {np.asarray(shift).size} values for "
                f"{shape[0]} channels. {_EDITED}."
            )
        shifts = _tensor(shift).reshape(-1) if shift is not None else channels * 0
        return Affine(channels, shifts), factor
    raise InvalidGraphError(  # pragma: no cover - the topology check admits no other type
        f"{where} is not a synapse onespike reads"
    )


def _no_bias(name: str, node: Any) -> None:
    """A weighted node that carries no population's bias must have a zero bias."""
    bias = getattr(node, "bias", None)
    if bias is not None and bool((np.asarray(bias) != 0).any()):
        raise InvalidGraphError(
            f"node {name!r} ({_type_name(node)}) has a non-zero bias, but the onespike record "
            f"gives it no population's bias, so it would be dropped. {_EDITED}."
        )


def _projection(
    nir: Any,
    nodes: dict[str, Any],
    proj: dict[str, Any],
    source_shape: tuple[int, ...],
    target: dict[str, Any],
    max_values: int,
) -> Projection:
    factor = float(proj["factor"])
    where = f"the projection from {proj['source']!r} into {target['name']!r}"
    delay = int(proj["delay"])
    if (proj["delay_node"] is None) != (delay == 0):
        raise _bad_record(where, f"has delay {delay} and delay node {proj['delay_node']!r}")
    if proj["delay_node"] is not None:
        name = proj["delay_node"]
        what = f"its delay in the onespike record ({where})"
        _expect_value(name, nodes[name], "delay", source_shape, float(delay), what)
    ops: list[Node] = []
    left = factor
    shape = source_shape
    bias = target["bias"]
    for index, name in enumerate(proj["ops"]):
        node = nodes[name]
        folded = index == proj["fold_op"]
        at = f"node {name!r} ({_type_name(node)}) of {where}"
        op, kept = _op(nir, node, factor if folded else 1.0, shape, at)
        if folded:
            left = kept
        if bias is None or bias["node"] != name:
            _no_bias(name, node)
        ops.append(op)
        shape = _out_shape(op, shape, at, max_values)
    if proj["fold_op"] is None and factor != 1.0 and proj["factor_node"] is None:
        raise _bad_record(
            where, f"has factor {factor} but neither a weighted node nor a factor node"
        )
    if proj["factor_node"] is not None:
        name = proj["factor_node"]
        _expect_value(name, nodes[name], "scale", shape, factor, f"the factor of {where}")
    wanted = tuple(target["shape"])
    if shape != wanted:
        raise InvalidGraphError(
            f"{where} ends in shape {shape}, but population {target['name']!r} has shape "
            f"{wanted} (nodes {proj['ops']}). {_EDITED}."
        )
    return Projection(str(proj["source"]), tuple(ops), left)


def _bias(nodes: dict[str, Any], entry: dict[str, Any]) -> Tensor | None:
    spec = entry["bias"]
    if spec is None:
        return None
    shape = tuple(int(s) for s in entry["shape"])
    name = spec["node"]
    node = nodes[name]
    where = f"the bias of population {entry['name']!r} (node {name!r}, {_type_name(node)})"
    size = math.prod(shape)
    if spec["kind"] == "event":
        metadata = node.metadata if isinstance(node.metadata, dict) else {}
        if "onespike_bias" not in metadata:
            raise InvalidGraphError(f"{where} lacks its metadata 'onespike_bias'. {_EDITED}.")
        values = np.asarray(metadata["onespike_bias"])
        if values.size != size:
            raise InvalidGraphError(
                f"{where} has {values.size} values for a population of shape {shape}. {_EDITED}."
            )
        return _tensor(values).reshape(shape)
    values = np.asarray(node.bias)
    conv = spec["kind"] in ("conv", "identity_conv")
    if conv and (len(shape) != 3 or values.size != shape[0]):
        raise InvalidGraphError(
            f"{where} has {values.size} values for a population of shape {shape}; a "
            f"convolution's bias is one value per channel. {_EDITED}."
        )
    if not conv and values.size != size:
        raise InvalidGraphError(
            f"{where} has {values.size} values for a population of shape {shape}. {_EDITED}."
        )
    if spec["kind"].startswith("identity"):
        weight = np.asarray(node.weight)
        channels = shape[0] if conv else size
        eye = np.eye(channels, dtype=weight.dtype)
        identity = weight.shape == ((channels, channels, 1, 1) if conv else (channels, channels))
        identity = identity and bool((weight.reshape(channels, channels) == eye).all())
        if conv:
            settings = [
                np.asarray(getattr(node, f)).reshape(-1) for f in ("stride", "dilation", "groups")
            ]
            identity = identity and all(bool((v == 1).all()) for v in settings)
            identity = identity and bool((np.asarray(node.padding).reshape(-1) == 0).all())
        if not identity:
            raise InvalidGraphError(
                f"{where} is not an identity node (weight, stride, padding); onespike reads "
                f"only its bias, so its weights would be dropped. {_EDITED}."
            )
    bias = _tensor(values)
    if conv:
        return bias.view(-1, 1, 1).expand(shape).contiguous()
    return bias.reshape(shape)


def _neuron(nodes: dict[str, Any], entry: dict[str, Any], config: Any) -> None:
    """The neuron model's constants in the nodes must be the ones onespike simulates."""
    shape = tuple(int(s) for s in entry["shape"])
    roles = entry["nodes"]
    what = f"onespike's neuron model for population {entry['name']!r}"
    if "neuron" in roles:  # rate: nir.IF with r = 1, v_reset = 0
        name = roles["neuron"]
        _expect_value(name, nodes[name], "r", shape, 1.0, what)
        _expect_value(name, nodes[name], "v_reset", shape, 0.0, what)
    for key in ("current", "membrane"):
        if key not in roles:
            continue
        name = roles[key]
        node = nodes[name]
        if isinstance(config, HybridConfig) and key == "membrane" and config.leak != 1.0:
            tau = 1.0 / (1.0 - float(config.leak))
            what_leak = f"{what} (leak {config.leak} of the configuration)"
            _expect_value(name, node, "tau", shape, tau, what_leak)
            _expect_value(name, node, "r", shape, tau, what_leak)
            _expect_value(name, node, "v_leak", shape, 0.0, what_leak)
        else:
            _expect_value(name, node, "r", shape, 1.0, what)


def _threshold(
    nir: Any, nodes: dict[str, Any], entry: dict[str, Any], config: Any
) -> float | Tensor:
    """The population's threshold: the metadata's where it agrees with the node."""
    stored = entry["threshold"]
    shape = tuple(int(s) for s in entry["shape"])
    name = entry["nodes"].get("neuron", entry["nodes"].get("spikes"))
    if isinstance(config, TTFSConfig):
        # TTFS thresholds derive from the code: the node must hold L - 1/2
        what = f"the TTFS code (steps={config.steps}, threshold L - 1/2 below float32)"
        field = _expect_shape(name, nodes[name], "threshold", shape, what)
        if not np.array_equal(
            _strict_threshold(config.levels - 0.5, shape), np.broadcast_to(field, shape)
        ):
            raise InvalidGraphError(
                f"node {name!r} (nir.Threshold) parameter 'threshold' is {_summary(field)} "
                f"where {what} gives {float(_strict_threshold(config.levels - 0.5, (1,))[0])!r}; "
                f"onespike's TTFS neurons fire at no other threshold. {_EDITED}."
            )
        return float(stored) if stored is not None and not isinstance(stored, dict) else 1.0
    if not isinstance(stored, dict):
        stored = float(stored) if stored is not None else 1.0
        if name is None:
            return stored  # the rate readout has none
    node = nodes[name]
    attribute = "v_threshold" if isinstance(node, nir.IF) else "threshold"
    field = _expect_shape(name, node, attribute, shape, f"population {entry['name']!r}")
    value: float | Tensor = stored
    if isinstance(stored, dict):
        metadata = node.metadata if isinstance(node.metadata, dict) else {}
        raw = metadata.get("onespike_threshold")
        wanted = tuple(stored["shape"])
        if (
            raw is None
            or np.asarray(raw).size != math.prod(wanted)
            or not _fits(np.zeros(wanted), shape)
        ):
            raise InvalidGraphError(
                f"node {name!r} metadata 'onespike_threshold' is missing or does not hold a "
                f"threshold of shape {wanted} for population {entry['name']!r} of shape "
                f"{shape}. {_EDITED}."
            )
        value = _tensor(raw).reshape(wanted)
    if np.array_equal(_strict_threshold(value, shape), np.broadcast_to(field, shape)):
        return value
    return _tensor(np.nextafter(field.astype(np.float32), np.float32(np.inf)))


def _record(graph: Any) -> dict[str, Any]:
    metadata = graph.metadata if isinstance(graph.metadata, dict) else {}
    text = metadata.get(_RECORD_KEY)
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if isinstance(text, str) and len(text) > MAX_RECORD_CHARS:
        raise InvalidGraphError(
            f"the '{_RECORD_KEY}' metadata has {len(text)} characters, above the bound of "
            f"{MAX_RECORD_CHARS} (onespike.nir_io.MAX_RECORD_CHARS); onespike.to_nir writes "
            "records of a few kilobytes"
        )
    if not isinstance(text, str):
        raise InvalidGraphError(
            f"this NIR graph has no '{_RECORD_KEY}' metadata: onespike.from_nir rebuilds networks "
            "written by onespike.to_nir (it needs their calibration scales, configuration and "
            "the meaning of what NIR cannot express)"
        )
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidGraphError(f"the '{_RECORD_KEY}' metadata is not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise InvalidGraphError(f"the '{_RECORD_KEY}' metadata is not a {FORMAT_NAME} record")
    if record.get("format_version") != FORMAT_VERSION:
        raise InvalidGraphError(
            f"the graph's onespike record has format_version {record.get('format_version')!r}; "
            f"this onespike reads {FORMAT_VERSION}"
        )
    return record


def _read(nir: Any, path: str | os.PathLike[str], max_values: int) -> Any:
    if not Path(path).is_file():
        raise MissingFileError(
            f"{path} does not exist; write one with onespike.nir_io.write_nir(path, net) or "
            "`onespike export --format nir`"
        )
    try:
        _check_file_sizes(path, max_values)
        # onespike checks types and shapes itself, naming the node (see _check_graph)
        return nir.read(path, type_check=False)
    except OnespikeError:
        raise
    except Exception as exc:  # any failure of the reader means a bad file
        raise CorruptFileError(
            f"{path} is not a readable NIR file ({exc!r}); write it with "
            "onespike.nir_io.write_nir or nir.write"
        ) from exc


def from_nir(
    graph: Any,
    *,
    max_values: int = MAX_VALUES,
    dt: float | None = None,
    config: RateConfig | None = None,
) -> SpikingNetwork:
    """Rebuild the spiking network a graph from :func:`to_nir` (or another tool) describes.

    A graph without onespike's ``onespike_network`` record (from Norse, snnTorch, sinabs, or
    built by hand) is imported by :func:`onespike.nir_foreign.from_foreign_nir` after the same
    graph checks: a rate-coded network whose populations carry their NIR neurons' constants.

    The graph is validated before use: node types, edges (no missing node, no duplicate, no
    cycle), parameters (numeric, finite, at most ``max_values`` values per array and per
    population), then its ``onespike_network`` record (types, ranges, sizes). The topology is
    the graph's own: its nodes and edges must be exactly those the record describes (a graph
    edited after export, with an edge or node added, removed or retyped, is refused with the
    difference named), every parameter the record also fixes (shapes, delays, factors, the
    neuron model's constants) must agree with it, and the shapes must chain from the input to
    the output. Weights, biases and thresholds are taken from the nodes.

    Args:
        graph: a ``nir.NIRGraph`` (e.g. from ``nir.read``) or the path of a NIR file.
        max_values: the largest number of values one parameter array or one population may
            hold (default :data:`MAX_VALUES`, 2**28).
        dt: another tool's graph only: the time step in the unit of its time constants
            (default: the graph's metadata ``dt``, else 1).
        config: another tool's graph only: the ``RateConfig`` to simulate it with (steps,
            input, seed, early exit; ``reset="zero"`` and ``initial_membrane=0``).

    Returns:
        The network; it simulates exactly as the exported one.

    Raises:
        InvalidGraphError: the graph is malformed (unknown node type, missing node,
            cycle, non-numeric or non-finite parameter, shapes that do not chain, a size above
            ``max_values``), was not written by :func:`to_nir`, or its onespike metadata does
            not match its nodes and edges.
        ConfigError: ``max_values`` is not a positive integer, or ``dt`` / ``config`` is
            given for a graph of onespike's own (its time step and configuration are its own).
        UnsupportedLayerError: another tool's graph holds a node onespike cannot express.
        MissingFileError: the path does not exist.
        CorruptFileError: the file is not a readable NIR file.
        ImportError: the package ``nir`` is not installed.
    """
    nir = _import_nir()
    max_values = _check_max_values(max_values)
    if isinstance(graph, (str, os.PathLike)):
        graph = _read(nir, graph, max_values)
    if not isinstance(graph, nir.NIRGraph):
        raise InvalidGraphError(
            f"from_nir expects a nir.NIRGraph or a path, got {type(graph).__name__}"
        )
    kinds = _check_graph(nir, graph, max_values)
    metadata = graph.metadata if isinstance(graph.metadata, dict) else {}
    if _RECORD_KEY not in metadata:
        from onespike.nir_foreign import from_foreign_nir

        return from_foreign_nir(graph, kinds, dt=dt, config=config)
    if dt is not None or config is not None:
        raise ConfigError(
            "dt and config apply to NIR graphs from other tools; this graph was written by "
            "onespike.to_nir and carries its own time step (1) and configuration. Leave them out."
        )
    record = _record(graph)
    _check_record(record, max_values)
    config = _config(record)
    _compare_topology(graph, kinds, record, config)
    try:
        return _rebuild(nir, graph.nodes, record, config, max_values)
    except OnespikeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        # a last resort: every check above should have named the problem already
        raise InvalidGraphError(
            f"the graph's onespike metadata does not match its nodes: {exc!r}; export the "
            "network again with onespike.to_nir"
        ) from exc


def _rebuild(
    nir: Any, nodes: dict[str, Any], record: dict[str, Any], config: Any, max_values: int
) -> SpikingNetwork:
    """The network of a graph whose nodes and edges :func:`_compare_topology` matched."""
    pops: list[Population] = []
    shapes: dict[str, tuple[int, ...]] = {}
    depths: dict[str, int] = {}
    delays: dict[tuple[str, str], int] = {}  # (target, source) -> delay in steps
    first = record["populations"][0]
    shape = tuple(int(s) for s in first["shape"])
    given = tuple(int(v) for v in np.atleast_1d(nodes[first["name"]].input_type["input"]))
    if given != shape:
        raise InvalidGraphError(
            f"node {first['name']!r} (nir.Input) has shape {given}, the onespike record "
            f"{shape}. {_EDITED}."
        )
    for entry in record["populations"]:
        name = str(entry["name"])
        shape = tuple(int(s) for s in entry["shape"])
        projections = tuple(
            _projection(nir, nodes, proj, shapes[proj["source"]], entry, max_values)
            for proj in entry["projections"]
        )
        depth = (
            1 + max(depths[proj["source"]] for proj in entry["projections"]) if projections else 0
        )
        if depth != entry["depth"]:
            raise InvalidGraphError(
                f"population {name!r} has depth {entry['depth']} in the onespike record, but "
                f"its sources make it {depth} (layers from the input). {_EDITED}."
            )
        for proj in entry["projections"]:
            delays[(name, str(proj["source"]))] = int(proj["delay"])
        if projections:
            _neuron(nodes, entry, config)
        shapes[name], depths[name] = shape, depth
        pops.append(
            Population(
                name=name,
                kind=entry["kind"],
                shape=shape,
                projections=projections,
                bias=_bias(nodes, entry),
                scale=float(entry["scale"]),
                depth=depth,
                is_output=bool(entry["is_output"]),
                ann_relu=bool(entry["ann_relu"]),
                threshold=(
                    _threshold(nir, nodes, entry, config)
                    if projections
                    else float(entry["threshold"] or 1.0)
                ),
            )
        )
    out = next(entry for entry in record["populations"] if entry["is_output"])
    output = nodes[record["output_node"]]
    given = tuple(int(v) for v in np.atleast_1d(output.output_type["output"]))
    if given != tuple(out["shape"]):
        raise InvalidGraphError(
            f"node {record['output_node']!r} (nir.Output) has shape {given}, but the output "
            f"population {out['name']!r} has shape {tuple(out['shape'])}. {_EDITED}."
        )

    def delay(source: Population, target: Population) -> int:
        return delays[(target.name, source.name)]

    return build_network(pops, config, delay)
