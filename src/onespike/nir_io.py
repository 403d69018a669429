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
agrees with it.

``nir`` is optional (the ``nir`` extra): it is imported when one of these functions runs.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
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

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "check_config", "from_nir", "to_nir", "write_nir"]

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
    values = torch.as_tensor(threshold).to(torch.float32).expand(shape).numpy()
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
def _tensor(value: Any) -> Tensor:
    return torch.from_numpy(np.array(value, copy=True))


def _pair(value: Any) -> tuple[int, int]:
    items = [int(v) for v in np.atleast_1d(np.asarray(value))]
    return (items[0], items[-1])


def _node(nodes: dict[str, Any], name: str) -> Any:
    if name not in nodes:
        raise InvalidGraphError(f"the onespike metadata names node '{name}', which the graph lacks")
    return nodes[name]


def _weight(node: Any, factor: float) -> tuple[Tensor, float]:
    """A node's weight without ``factor``, and the factor left to apply.

    The unscaled weight in the node's metadata is used only where ``factor`` times it is
    exactly the node's weight; otherwise (the graph was edited) the node's weight is taken as
    it stands, with factor 1.
    """
    weight = _tensor(node.weight)
    raw = node.metadata.get("onespike_weight") if node.metadata else None
    if factor != 1.0 and raw is not None:
        unscaled = _tensor(raw)
        if unscaled.shape == weight.shape and torch.equal(unscaled * factor, weight):
            return unscaled, factor
    return weight, 1.0


def _op(nir: Any, node: Any, factor: float) -> tuple[Node, float]:
    """The onespike op of an exported node, and the factor left to apply after it."""
    if isinstance(node, (nir.Linear, nir.Affine)):
        weight, factor = _weight(node, factor)
        return Linear(weight), factor
    if isinstance(node, nir.Conv2d):
        weight, factor = _weight(node, factor)
        if isinstance(node.padding, str):
            raise InvalidGraphError(f"Conv2d padding {node.padding!r}: give integers")
        stride, padding, dilation = (_pair(v) for v in (node.stride, node.padding, node.dilation))
        return Conv2d(weight, None, stride, padding, dilation, int(node.groups)), factor
    if isinstance(node, nir.AvgPool2d):
        pool = AvgPool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding))
        return pool, factor
    if isinstance(node, nir.Flatten):
        return Flatten(), factor
    if isinstance(node, nir.Scale):
        scale = _tensor(node.scale)
        channels = scale.reshape(scale.shape[0], -1)[:, 0].contiguous()
        shift = node.metadata.get("onespike_shift") if node.metadata else None
        return Affine(channels, _tensor(shift) if shift is not None else channels * 0), factor
    raise InvalidGraphError(f"a node of type {type(node).__name__} is not a synapse onespike reads")


def _projection(nir: Any, nodes: dict[str, Any], proj: dict[str, Any]) -> Projection:
    factor = float(proj["factor"])
    if proj["factor_node"] is not None:
        scale = np.asarray(_node(nodes, proj["factor_node"]).scale)
        if not bool((scale == np.float32(factor)).all()):
            raise InvalidGraphError(
                f"node '{proj['factor_node']}' no longer holds the factor {factor} of the "
                "onespike metadata"
            )
    ops: list[Node] = []
    left = factor
    for index, name in enumerate(proj["ops"]):
        folded = index == proj["fold_op"]
        op, kept = _op(nir, _node(nodes, name), factor if folded else 1.0)
        if folded:
            left = kept
        ops.append(op)
    return Projection(str(proj["source"]), tuple(ops), left)


def _bias(nodes: dict[str, Any], entry: dict[str, Any]) -> Tensor | None:
    spec = entry["bias"]
    if spec is None:
        return None
    shape = tuple(int(s) for s in entry["shape"])
    node = _node(nodes, spec["node"])
    if spec["kind"] == "event":
        return _tensor(node.metadata["onespike_bias"]).reshape(shape)
    bias = _tensor(node.bias)
    if spec["kind"] in ("conv", "identity_conv"):
        return bias.view(-1, 1, 1).expand(shape).contiguous()
    return bias.reshape(shape)


def _threshold(nir: Any, nodes: dict[str, Any], entry: dict[str, Any]) -> float | Tensor:
    """The population's threshold: the metadata's where it agrees with the node."""
    stored = entry["threshold"]
    name = entry["nodes"].get("neuron", entry["nodes"].get("spikes"))
    if not isinstance(stored, dict):
        stored = float(stored) if stored is not None else 1.0
        if name is None or "current" in entry["nodes"]:
            return stored  # TTFS thresholds derive from the code; the rate readout has none
    node = _node(nodes, name)
    field = np.asarray(node.v_threshold if isinstance(node, nir.IF) else node.threshold)
    shape = tuple(int(s) for s in entry["shape"])
    value: float | Tensor = stored
    if isinstance(stored, dict):
        value = _tensor(node.metadata["onespike_threshold"]).reshape(stored["shape"])
    if np.array_equal(_strict_threshold(value, shape), field):
        return value
    return _tensor(np.nextafter(field.astype(np.float32), np.float32(np.inf)))


def _record(graph: Any) -> dict[str, Any]:
    metadata = graph.metadata if isinstance(graph.metadata, dict) else {}
    text = metadata.get(_RECORD_KEY)
    if isinstance(text, bytes):
        text = text.decode("utf-8")
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


def _read(nir: Any, path: str | os.PathLike[str]) -> Any:
    if not Path(path).is_file():
        raise MissingFileError(
            f"{path} does not exist; write one with onespike.nir_io.write_nir(path, net) or "
            "`onespike export --format nir`"
        )
    try:
        return nir.read(path)
    except (OSError, KeyError, ValueError, TypeError, AssertionError) as exc:
        raise CorruptFileError(f"{path} is not a readable NIR file: {exc!r}") from exc


def from_nir(graph: Any) -> SpikingNetwork:
    """Rebuild the spiking network a graph from :func:`to_nir` describes.

    Args:
        graph: a ``nir.NIRGraph`` (e.g. from ``nir.read``) or the path of a NIR file.

    Returns:
        The network; it simulates exactly as the exported one.

    Raises:
        InvalidGraphError: the graph was not written by :func:`to_nir`, or its onespike
            metadata does not match its nodes.
        MissingFileError: the path does not exist.
        CorruptFileError: the file is not a readable NIR file.
        ImportError: the package ``nir`` is not installed.
    """
    nir = _import_nir()
    if isinstance(graph, (str, os.PathLike)):
        graph = _read(nir, graph)
    if not isinstance(graph, nir.NIRGraph):
        raise InvalidGraphError(
            f"from_nir expects a nir.NIRGraph or a path, got {type(graph).__name__}"
        )
    record = _record(graph)
    try:
        return _rebuild(nir, graph.nodes, record)
    except InvalidGraphError:
        raise
    except (OnespikeError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise InvalidGraphError(
            f"the graph's onespike metadata does not match its nodes: {exc!r}"
        ) from exc


def _rebuild(nir: Any, nodes: dict[str, Any], record: dict[str, Any]) -> SpikingNetwork:
    config_type = _CONFIGS.get(record["config_type"])
    if config_type is None:
        raise InvalidGraphError(f"unknown configuration type {record['config_type']!r}")
    config = config_type(**record["config"])
    pops: list[Population] = []
    delays: dict[tuple[str, str], int] = {}  # (target, source) -> delay in steps
    for entry in record["populations"]:
        name = str(entry["name"])
        projections = tuple(_projection(nir, nodes, proj) for proj in entry["projections"])
        for proj in entry["projections"]:
            delays[(name, str(proj["source"]))] = int(proj["delay"])
        pops.append(
            Population(
                name=name,
                kind=entry["kind"],
                shape=tuple(int(s) for s in entry["shape"]),
                projections=projections,
                bias=_bias(nodes, entry),
                scale=float(entry["scale"]),
                depth=int(entry["depth"]),
                is_output=bool(entry["is_output"]),
                ann_relu=bool(entry["ann_relu"]),
                threshold=_threshold(nir, nodes, entry),
            )
        )

    def delay(source: Population, target: Population) -> int:
        return delays[(target.name, source.name)]

    return build_network(pops, config, delay)
