"""Hostile NIR input: every case is a named OnespikeError whose message names the problem.

Each case edits a graph that onespike.to_nir wrote (or a file that nir.write wrote) in one
way and asserts the error class and a fragment of the message that names the node, the
parameter or the edge. The graphs are tiny (an MLP 8-16-12-4, a small CNN, a network with a
skip connection), so that the whole file runs in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import onespike
from onespike.network import SpikingNetwork
from onespike.nir_io import MAX_VALUES, write_nir

nir = pytest.importorskip(
    "nir", reason="NIR support is the 'nir' extra: pip install 'onespike[nir]'"
)

ZERO_RESET = {"reset": "zero", "initial_membrane": 0.0}


class Skip(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 10)
        self.fc2 = nn.Linear(10, 10)
        self.fc3 = nn.Linear(10, 10)
        self.out = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = torch.relu(self.fc1(x))
        h2 = torch.relu(self.fc2(h1))
        h3 = torch.relu(self.fc3(h2) + h1)
        return self.out(h3)


def _network(kind: str, config: Any) -> SpikingNetwork:
    torch.manual_seed(3)
    if kind == "mlp":
        model: nn.Module = nn.Sequential(
            nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 4)
        )
        shape: tuple[int, ...] = (8,)
    elif kind == "cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(4, 6, 3, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(6, 3),
        )
        shape = (1, 8, 8)
    else:
        model, shape = Skip(), (6,)
    x = torch.rand((32, *shape), generator=torch.Generator().manual_seed(5))
    graph = onespike.normalize(onespike.extract(model, x[:2]), [x])
    return onespike.convert(graph, config)


RATE = onespike.RateConfig(steps=8, **ZERO_RESET)  # type: ignore[arg-type]
TTFS = onespike.TTFSConfig(steps=6)
HYBRID = onespike.HybridConfig(steps=4, leak=0.875)

_NETS: dict[tuple[str, str], SpikingNetwork] = {}


def _graph(kind: str = "mlp", method: str = "rate") -> Any:
    """A fresh NIR graph of one of the test networks (the networks are built once)."""
    key = (kind, method)
    if key not in _NETS:
        _NETS[key] = _network(kind, {"rate": RATE, "ttfs": TTFS, "hybrid": HYBRID}[method])
    return onespike.to_nir(_NETS[key])


def _set(name: str, field: str, value: Callable[[Any], Any]) -> Callable[[Any], None]:
    def edit(graph: Any) -> None:
        node = graph.nodes[name]
        setattr(node, field, value(getattr(node, field)))

    return edit


def _nan_at_0(array: Any) -> Any:
    out = np.array(array, dtype=np.float32, copy=True)
    out.reshape(-1)[0] = np.nan
    return out


def _inf_at_last(array: Any) -> Any:
    out = np.array(array, dtype=np.float32, copy=True)
    out.reshape(-1)[-1] = np.inf
    return out


def _meta(name: str, key: str, value: Callable[[Any], Any]) -> Callable[[Any], None]:
    def edit(graph: Any) -> None:
        metadata = graph.nodes[name].metadata
        metadata[key] = value(metadata[key])

    return edit


def _replace_node(name: str, make: Callable[[Any], Any]) -> Callable[[Any], None]:
    def edit(graph: Any) -> None:
        graph.nodes[name] = make(graph.nodes[name])

    return edit


def _add_edge(source: str, target: str) -> Callable[[Any], None]:
    def edit(graph: Any) -> None:
        graph.edges.append((source, target))

    return edit


# (id, network, method, edit, error class, message fragment)
PARAMETER_CASES: list[tuple[str, str, str, Callable[[Any], object], type, str]] = [
    (
        "nan-weight",
        "mlp",
        "rate",
        _set("1.synapses", "weight", _nan_at_0),
        onespike.InvalidGraphError,
        r"node '1\.synapses' \(nir\.Affine\) parameter 'weight' holds 1 non-finite",
    ),
    (
        "inf-bias",
        "mlp",
        "rate",
        _set("3.synapses", "bias", _inf_at_last),
        onespike.InvalidGraphError,
        r"'3\.synapses' \(nir\.Affine\) parameter 'bias' holds 1 non-finite value\(s\) "
        r"\(NaN or Inf\), the first at index \(11,\)",
    ),
    (
        "nan-threshold",
        "mlp",
        "rate",
        _set("1", "v_threshold", _nan_at_0),
        onespike.InvalidGraphError,
        r"node '1' \(nir\.IF\) parameter 'v_threshold' holds 1 non-finite",
    ),
    (
        "nan-reset",
        "mlp",
        "rate",
        _set("1", "v_reset", _nan_at_0),
        onespike.InvalidGraphError,
        r"'v_reset' holds 1 non-finite",
    ),
    (
        "nan-conv-weight",
        "cnn",
        "rate",
        _set("1.synapses", "weight", _nan_at_0),
        onespike.InvalidGraphError,
        r"'1\.synapses' \(nir\.Conv2d\) parameter 'weight' holds 1 non-finite.*\(0, 0, 0, 0\)",
    ),
    (
        "inf-ttfs-threshold",
        "mlp",
        "ttfs",
        _set("1", "threshold", _inf_at_last),
        onespike.InvalidGraphError,
        r"node '1' \(nir\.Threshold\) parameter 'threshold' holds 1 non-finite",
    ),
    (
        "nan-ttfs-bias-metadata",
        "mlp",
        "ttfs",
        _meta("1.current", "onespike_bias", _nan_at_0),
        onespike.InvalidGraphError,
        r"node '1\.current' \(nir\.I\) metadata 'onespike_bias' holds 1 non-finite",
    ),
    (
        "nan-unscaled-weight-metadata",
        "mlp",
        "rate",
        _meta("1.synapses", "onespike_weight", _nan_at_0),
        onespike.InvalidGraphError,
        r"metadata 'onespike_weight' holds 1 non-finite",
    ),
    (
        "nan-hybrid-leak-tau",
        "mlp",
        "hybrid",
        _set("1.membrane", "tau", _nan_at_0),
        onespike.InvalidGraphError,
        r"node '1\.membrane' \(nir\.LI\) parameter 'tau' holds 1 non-finite",
    ),
    (
        "nan-delay",
        "skip",
        "ttfs",
        _set("relu_2.synapses1.delay", "delay", _nan_at_0),
        onespike.InvalidGraphError,
        r"'relu_2\.synapses1\.delay' \(nir\.Delay\) parameter 'delay' holds 1 non-finite",
    ),
    (
        "string-weight",
        "mlp",
        "rate",
        _set("1.synapses", "weight", lambda w: np.full(w.shape, "0.5")),
        onespike.InvalidGraphError,
        r"'1\.synapses' \(nir\.Affine\) parameter 'weight' is not numeric \(ndarray",
    ),
    (
        "none-bias",
        "mlp",
        "rate",
        _set("1.synapses", "bias", lambda _: None),
        onespike.InvalidGraphError,
        r"parameter 'bias' is not numeric \(NoneType None\)",
    ),
    (
        "object-threshold",
        "mlp",
        "rate",
        _set("1", "v_threshold", lambda t: np.array([{"x": 1}] * t.size, dtype=object)),
        onespike.InvalidGraphError,
        r"node '1' \(nir\.IF\) parameter 'v_threshold' is not numeric",
    ),
    (
        "integer-weight",
        "mlp",
        "rate",
        _set("1.synapses", "weight", lambda w: np.ones(w.shape, dtype=np.int64)),
        onespike.InvalidGraphError,
        r"parameter 'weight' has dtype int64; onespike reads floating-point parameters",
    ),
    (
        "padding-same",
        "cnn",
        "rate",
        _set("1.synapses", "padding", lambda _: "same"),
        onespike.InvalidGraphError,
        r"parameter 'padding' is 'same'; onespike reads explicit integers",
    ),
    (
        "stride-zero",
        "cnn",
        "rate",
        _set("4.synapses.1", "stride", lambda _: np.array([0, 0])),
        onespike.InvalidGraphError,
        r"'4\.synapses\.1' \(nir\.Conv2d\) parameter 'stride' is \[0, 0\]; it must be at least 1",
    ),
    (
        "fractional-kernel",
        "cnn",
        "rate",
        _set("4.synapses.0", "kernel_size", lambda _: np.array([1.5, 2.0])),
        onespike.InvalidGraphError,
        r"'4\.synapses\.0' \(nir\.AvgPool2d\) parameter 'kernel_size' is \[1\.5, 2\.0\]; "
        r"give whole numbers",
    ),
    (
        "three-strides",
        "cnn",
        "rate",
        _set("1.synapses", "stride", lambda _: np.array([1, 1, 1])),
        onespike.InvalidGraphError,
        r"parameter 'stride' has 3 values; give one value or one per spatial dimension",
    ),
    (
        "negative-input-shape",
        "mlp",
        "rate",
        _set("input", "input_type", lambda _: {"input": np.array([-8])}),
        onespike.InvalidGraphError,
        r"node 'input' \(nir\.Input\) shape is \[-8\]; a shape is a list of positive integers",
    ),
]

STRUCTURE_CASES: list[tuple[str, str, str, Callable[[Any], object], type, str]] = [
    (
        "unknown-node-type",
        "mlp",
        "rate",
        _replace_node(
            "1",
            lambda n: nir.CubaLI(tau_syn=n.r, tau_mem=n.r, r=n.r, v_leak=n.v_reset),
        ),
        onespike.InvalidGraphError,
        r"node '1' is a nir\.CubaLI, which onespike does not read",
    ),
    (
        "foreign-object-node",
        "mlp",
        "rate",
        _replace_node("1", lambda n: {"type": "IF"}),
        onespike.InvalidGraphError,
        r"node '1' is a dict, which onespike does not read",
    ),
    (
        "nested-graph-node",
        "mlp",
        "rate",
        _replace_node(
            "1", lambda n: nir.NIRGraph.from_list(nir.Affine(np.ones((2, 2)), np.zeros(2)))
        ),
        onespike.InvalidGraphError,
        r"node '1' is a nir\.NIRGraph, which onespike does not read",
    ),
    (
        "edge-to-missing-node",
        "mlp",
        "rate",
        _add_edge("1", "ghost"),
        onespike.InvalidGraphError,
        r"edge '1' -> 'ghost' names node 'ghost', which the graph lacks",
    ),
    (
        "edge-from-missing-node",
        "mlp",
        "rate",
        _add_edge("ghost", "3"),
        onespike.InvalidGraphError,
        r"edge 'ghost' -> '3' names node 'ghost', which the graph lacks",
    ),
    (
        "duplicate-edge",
        "mlp",
        "rate",
        _add_edge("1", "3.synapses"),
        onespike.InvalidGraphError,
        r"edge '1' -> '3\.synapses' appears twice",
    ),
    (
        "cycle",
        "mlp",
        "rate",
        _add_edge("3", "1.synapses"),
        onespike.InvalidGraphError,
        r"cycle: 3\.synapses -> 3 -> 1\.synapses -> 1 -> 3\.synapses",
    ),
    (
        "self-loop",
        "mlp",
        "ttfs",
        _add_edge("1.membrane", "1.membrane"),
        onespike.InvalidGraphError,
        r"cycle: 1\.membrane -> 1\.membrane",
    ),
    (
        "edge-not-a-pair",
        "mlp",
        "rate",
        lambda g: g.edges.append(("input", "1.synapses", "3")),
        onespike.InvalidGraphError,
        r"edge \('input', '1\.synapses', '3'\) is not a pair of node names",
    ),
    (
        "non-string-node-name",
        "mlp",
        "rate",
        lambda g: g.nodes.update({7: nir.Input(input_type={"input": np.array([8])})}),
        onespike.InvalidGraphError,
        r"node name 7 is not a non-empty string",
    ),
]


def _check(kind: str, method: str, edit: Callable[[Any], object], error: type, match: str) -> None:
    graph = _graph(kind, method)
    edit(graph)
    with pytest.raises(error, match=match):
        onespike.from_nir(graph)


@pytest.mark.parametrize(
    ("kind", "method", "edit", "error", "match"),
    [case[1:] for case in PARAMETER_CASES],
    ids=[case[0] for case in PARAMETER_CASES],
)
def test_bad_parameters_are_named(
    kind: str, method: str, edit: Callable[[Any], object], error: type, match: str
) -> None:
    _check(kind, method, edit, error, match)


@pytest.mark.parametrize(
    ("kind", "method", "edit", "error", "match"),
    [case[1:] for case in STRUCTURE_CASES],
    ids=[case[0] for case in STRUCTURE_CASES],
)
def test_bad_structure_is_named(
    kind: str, method: str, edit: Callable[[Any], object], error: type, match: str
) -> None:
    _check(kind, method, edit, error, match)


def test_the_unedited_graphs_load() -> None:
    """The baseline of every case above: the same graphs without the edit load."""
    for kind, method in [("mlp", m) for m in ("rate", "ttfs", "hybrid")] + [
        ("cnn", "rate"),
        ("skip", "ttfs"),
    ]:
        net = onespike.from_nir(_graph(kind, method))
        assert [p.name for p in net.populations] == [
            p.name for p in _NETS[kind, method].populations
        ]


# Sizes ----------------------------------------------------------------------------------------
def test_size_bound_is_a_documented_constant_with_an_override() -> None:
    assert MAX_VALUES == 2**28
    graph = _graph("mlp", "rate")  # the largest array: 16 x 12 = 192 weights
    with pytest.raises(
        onespike.InvalidGraphError,
        match=r"'3\.synapses' \(nir\.Affine\) parameter 'weight' has 192 values, above the "
        r"bound of 191 per array.*max_values=192",
    ):
        onespike.from_nir(graph, max_values=191)
    net = onespike.from_nir(graph, max_values=192)
    assert net["3"].shape == (12,)


def test_population_above_the_bound_is_refused() -> None:
    graph = _graph("mlp", "rate")
    graph.nodes["input"].input_type = {"input": np.array([2**14, 2**15])}
    with pytest.raises(
        onespike.InvalidGraphError,
        match=r"node 'input' \(nir\.Input\) shape \(16384, 32768\) has 536870912 values, above "
        r"the bound of 268435456 per population",
    ):
        onespike.from_nir(graph)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_max_values_must_be_a_positive_integer(bad: Any) -> None:
    with pytest.raises(onespike.ConfigError, match="max_values must be a positive integer"):
        onespike.from_nir(_graph("mlp", "rate"), max_values=bad)


def test_file_with_an_oversized_array_is_refused_before_it_is_read(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "big.nir"
    write_nir(path, _NETS.get(("mlp", "rate")) or _network("mlp", RATE))
    with h5py.File(path, "a") as handle:
        # 2**29 float32 values declared, none stored: the file stays small, reading it would
        # allocate 2 GiB.
        handle["node/nodes/1.synapses"].create_dataset(
            "extra", shape=(2**29,), dtype="f4", chunks=(2**16,)
        )
    assert path.stat().st_size < 1_000_000
    with pytest.raises(
        onespike.InvalidGraphError,
        match=r"array 'node/nodes/1\.synapses/extra' has 536870912 values, above the bound",
    ):
        onespike.from_nir(path)


def test_metadata_record_above_its_bound_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import onespike.nir_io as nir_io

    graph = _graph("mlp", "rate")
    size = len(graph.metadata["onespike_network"])
    monkeypatch.setattr(nir_io, "MAX_RECORD_CHARS", size - 1)
    with pytest.raises(
        onespike.InvalidGraphError, match=rf"metadata has {size} characters, above the bound"
    ):
        onespike.from_nir(graph)


# Files ----------------------------------------------------------------------------------------
def test_hdf5_file_that_is_not_nir_is_corrupt(tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "other.nir"
    with h5py.File(path, "w") as handle:
        handle["data"] = np.arange(4)
    with pytest.raises(onespike.CorruptFileError, match=r"other\.nir is not a readable NIR file"):
        onespike.from_nir(path)


def test_file_with_nan_weight_is_refused(tmp_path: Path) -> None:
    graph = _graph("mlp", "rate")
    _set("1.synapses", "weight", _nan_at_0)(graph)
    path = tmp_path / "nan.nir"
    nir.write(path, graph)
    with pytest.raises(onespike.InvalidGraphError, match=r"'1\.synapses'.*'weight'.*non-finite"):
        onespike.from_nir(path)


# Topology: the graph's edges against onespike's record ------------------------------------------
def _remove_edge(source: str, target: str) -> Callable[[Any], None]:
    def edit(graph: Any) -> None:
        graph.edges.remove((source, target))

    return edit


def _remove_path(*names: str) -> Callable[[Any], None]:
    """Delete nodes and every edge that touches them (a clean edit of the graph)."""

    def edit(graph: Any) -> None:
        for name in names:
            del graph.nodes[name]
        graph.edges[:] = [e for e in graph.edges if e[0] not in names and e[1] not in names]

    return edit


def _insert_scale(source: str, target: str) -> Callable[[Any], None]:
    def edit(graph: Any) -> None:
        graph.edges.remove((source, target))
        graph.nodes["extra"] = nir.Scale(scale=np.full((16,), 2.0, dtype=np.float32))
        graph.edges.extend([(source, "extra"), ("extra", target)])

    return edit


TOPOLOGY_CASES: list[tuple[str, str, str, Callable[[Any], object], type, str]] = [
    (
        "added-edge",
        "mlp",
        "rate",
        _add_edge("input", "3.synapses"),
        onespike.InvalidGraphError,
        r"disagree with its onespike record: edge\(s\) in the graph but not in the record: "
        r"'input' -> '3\.synapses'\. the graph was changed after onespike\.to_nir wrote it",
    ),
    (
        "removed-edge",
        "mlp",
        "rate",
        _remove_edge("1", "3.synapses"),
        onespike.InvalidGraphError,
        r"edge\(s\) in the record but not in the graph: '1' -> '3\.synapses'",
    ),
    (
        "rewired-edge",
        "skip",
        "ttfs",
        lambda g: (
            g.edges.remove(("relu", "relu_2.synapses1.delay")),
            g.edges.append(("relu_1", "relu_2.synapses1.delay")),
        ),
        onespike.InvalidGraphError,
        r"in the graph but not in the record: 'relu_1' -> 'relu_2\.synapses1\.delay'; edge\(s\) "
        r"in the record but not in the graph: 'relu' -> 'relu_2\.synapses1\.delay'",
    ),
    (
        "skip-path-removed",
        "skip",
        "ttfs",
        _remove_path("relu_2.synapses1.delay", "relu_2.synapses1.factor"),
        onespike.InvalidGraphError,
        r"node\(s\) in the record but not in the graph: 'relu_2\.synapses1\.delay', "
        r"'relu_2\.synapses1\.factor'",
    ),
    (
        "node-inserted",
        "mlp",
        "rate",
        _insert_scale("1", "3.synapses"),
        onespike.InvalidGraphError,
        r"node\(s\) in the graph but not in the record: 'extra'; edge\(s\) in the graph but not "
        r"in the record: '1' -> 'extra', 'extra' -> '3\.synapses'",
    ),
    (
        "unconnected-node-added",
        "mlp",
        "rate",
        lambda g: g.nodes.update({"spare": nir.Scale(scale=np.ones(3, dtype=np.float32))}),
        onespike.InvalidGraphError,
        r"node\(s\) in the graph but not in the record: 'spare'",
    ),
    (
        "node-retyped",
        "mlp",
        "rate",
        _replace_node("1", lambda n: nir.Threshold(threshold=n.v_threshold)),
        onespike.InvalidGraphError,
        r"node '1' is a nir\.Threshold where the record has a nir\.IF",
    ),
    (
        "leaky-membrane-made-plain",
        "mlp",
        "hybrid",
        _replace_node("3.membrane", lambda n: nir.I(r=n.r)),
        onespike.InvalidGraphError,
        r"node '3\.membrane' is a nir\.I where the record has a nir\.LI",
    ),
]

# Parameters the record also fixes, and shapes ---------------------------------------------------
AGREEMENT_CASES: list[tuple[str, str, str, Callable[[Any], object], type, str]] = [
    (
        "delay-changed",
        "skip",
        "ttfs",
        _set("relu_2.synapses1.delay", "delay", lambda d: d + 1),
        onespike.InvalidGraphError,
        r"node 'relu_2\.synapses1\.delay' \(nir\.Delay\) parameter 'delay' is 6\.0 where its "
        r"delay in the onespike record .* has 5\.0",
    ),
    (
        "factor-changed",
        "skip",
        "ttfs",
        _set("relu_2.synapses1.factor", "scale", lambda s: s * 2),
        onespike.InvalidGraphError,
        r"'relu_2\.synapses1\.factor' \(nir\.Scale\) parameter 'scale' is 1\.49137.* where the "
        r"factor of the projection from 'relu' into 'relu_2' has 0\.745686",
    ),
    (
        "if-resistance",
        "mlp",
        "rate",
        _set("1", "r", lambda r: r * 2),
        onespike.InvalidGraphError,
        r"node '1' \(nir\.IF\) parameter 'r' is 2\.0 where onespike's neuron model for "
        r"population '1' has 1\.0",
    ),
    (
        "if-reset-level",
        "mlp",
        "rate",
        _set("3", "v_reset", lambda v: v + 0.5),
        onespike.InvalidGraphError,
        r"node '3' \(nir\.IF\) parameter 'v_reset' is 0\.5 where",
    ),
    (
        "current-resistance",
        "mlp",
        "ttfs",
        _set("1.current", "r", lambda r: r * 3),
        onespike.InvalidGraphError,
        r"node '1\.current' \(nir\.I\) parameter 'r' is 3\.0 where onespike's neuron model",
    ),
    (
        "leak-tau",
        "mlp",
        "hybrid",
        _set("1.membrane", "tau", lambda t: t * 0 + 4.0),
        onespike.InvalidGraphError,
        r"node '1\.membrane' \(nir\.LI\) parameter 'tau' is 4\.0 where onespike's neuron model "
        r"for population '1' \(leak 0\.875 of the configuration\) has 8\.0",
    ),
    (
        "leak-v-leak",
        "mlp",
        "hybrid",
        _set("1.membrane", "v_leak", lambda v: v + 0.25),
        onespike.InvalidGraphError,
        r"'1\.membrane' \(nir\.LI\) parameter 'v_leak' is 0\.25",
    ),
    (
        "ttfs-threshold",
        "mlp",
        "ttfs",
        _set("3", "threshold", lambda t: t * 0 + 1.0),
        onespike.InvalidGraphError,
        r"node '3' \(nir\.Threshold\) parameter 'threshold' is 1\.0 where the TTFS code "
        r"\(steps=6, .*gives 4\.4999",
    ),
    (
        "stray-conv-bias",
        "cnn",
        "ttfs",
        _set("4.synapses.1", "bias", lambda b: b + 0.5),
        onespike.InvalidGraphError,
        r"node '4\.synapses\.1' \(nir\.Conv2d\) has a non-zero bias, but the onespike record "
        r"gives it no population's bias",
    ),
    (
        "partial-flatten",
        "cnn",
        "rate",
        _set("6.synapses.0", "start_dim", lambda _: 1),
        onespike.InvalidGraphError,
        r"'6\.synapses\.0' \(nir\.Flatten\) of the projection from '4' into '6' flattens "
        r"dimensions 1 to -1 of an input of shape \(6, 1, 1\)",
    ),
    (
        "weight-shape",
        "mlp",
        "rate",
        _set("3.synapses", "weight", lambda w: np.ones((12, 15), dtype=np.float32)),
        onespike.InvalidGraphError,
        r"node '3\.synapses' \(nir\.Affine\) of the projection from '1' into '3' has a weight "
        r"of shape \(12, 15\), which cannot take an input of shape \(16,\)",
    ),
    (
        "output-size",
        "mlp",
        "rate",
        lambda g: (
            _set("4.synapses", "weight", lambda w: np.ones((5, 12), dtype=np.float32))(g),
            _set("4.synapses", "bias", lambda b: np.zeros(5, dtype=np.float32))(g),
        ),
        onespike.InvalidGraphError,
        r"the projection from '3' into '4' ends in shape \(5,\), but population '4' has "
        r"shape \(4,\)",
    ),
    (
        "conv-channels",
        "cnn",
        "rate",
        _set("4.synapses.1", "weight", lambda w: np.ones((6, 3, 3, 3), dtype=np.float32)),
        onespike.InvalidGraphError,
        r"'4\.synapses\.1' \(nir\.Conv2d\) .* has a weight of shape \(6, 3, 3, 3\) with "
        r"groups=1, which cannot take an input of shape \(4, 4, 4\)",
    ),
    (
        "conv-weight-rank",
        "cnn",
        "rate",
        _set("1.synapses", "weight", lambda w: w.reshape(4, 9)),
        onespike.InvalidGraphError,
        r"'1\.synapses' \(nir\.Conv2d\) .* has a weight of shape \(4, 9\); it needs 4 dimensions",
    ),
    (
        "pool-too-large",
        "cnn",
        "rate",
        _set("4.synapses.0", "kernel_size", lambda _: np.array([16, 16])),
        onespike.InvalidGraphError,
        r"'4\.synapses\.0' \(nir\.AvgPool2d\) .* leaves no output from an input of shape "
        r"\(4, 8, 8\)",
    ),
    (
        "threshold-shape",
        "mlp",
        "rate",
        _set("1", "v_threshold", lambda t: t[:3]),
        onespike.InvalidGraphError,
        r"node '1' \(nir\.IF\) parameter 'v_threshold' has shape \(3,\), which does not fit "
        r"population '1' of shape \(16,\)",
    ),
    (
        "input-shape",
        "mlp",
        "rate",
        _set("input", "input_type", lambda _: {"input": np.array([9])}),
        onespike.InvalidGraphError,
        r"node 'input' \(nir\.Input\) has shape \(9,\), the onespike record \(8,\)",
    ),
    (
        "output-shape",
        "mlp",
        "ttfs",
        _set("output", "output_type", lambda _: {"output": np.array([7])}),
        onespike.InvalidGraphError,
        r"node 'output' \(nir\.Output\) has shape \(7,\), but the output population '4' has "
        r"shape \(4,\)",
    ),
    (
        "ttfs-bias-size",
        "mlp",
        "ttfs",
        _meta("1.current", "onespike_bias", lambda b: b[:5]),
        onespike.InvalidGraphError,
        r"the bias of population '1' \(node '1\.current', nir\.I\) has 5 values for a "
        r"population of shape \(16,\)",
    ),
    (
        "ttfs-bias-lost",
        "mlp",
        "ttfs",
        lambda g: g.nodes["3.current"].metadata.pop("onespike_bias"),
        onespike.InvalidGraphError,
        r"the bias of population '3' \(node '3\.current', nir\.I\) lacks its metadata "
        r"'onespike_bias'",
    ),
]


def _edit_record(change: Callable[[dict[str, Any]], Any]) -> Callable[[Any], None]:
    def edit(graph: Any) -> None:
        record = json.loads(graph.metadata["onespike_network"])
        change(record)
        graph.metadata["onespike_network"] = json.dumps(record)

    return edit


def _pop_field(index: int, key: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda r: r["populations"][index].__setitem__(key, value)


RECORD_CASES: list[tuple[str, str, str, Callable[[Any], object], type, str]] = [
    (
        "record-depth",
        "mlp",
        "ttfs",
        _edit_record(_pop_field(2, "depth", 5)),
        onespike.InvalidGraphError,
        r"population '3' has depth 5 in the onespike record, but its sources make it 2",
    ),
    (
        "record-scale-nan",
        "mlp",
        "rate",
        _edit_record(_pop_field(1, "scale", float("nan"))),
        onespike.InvalidGraphError,
        r"record: population '1' field 'scale' is nan, not a finite number > 0",
    ),
    (
        "record-threshold-string",
        "mlp",
        "rate",
        _edit_record(_pop_field(3, "threshold", "NaN")),
        onespike.InvalidGraphError,
        r"population '4' field 'threshold' is 'NaN', not a finite number",
    ),
    (
        "record-shape-string",
        "mlp",
        "rate",
        _edit_record(_pop_field(1, "shape", ["16"])),
        onespike.InvalidGraphError,
        r"population '1' field 'shape' is \['16'\], not a list of positive integers",
    ),
    (
        "record-shape-huge",
        "mlp",
        "rate",
        _edit_record(_pop_field(1, "shape", [2**20, 2**20])),
        onespike.InvalidGraphError,
        r"population '1' field 'shape' \(1048576, 1048576\) has 1099511627776 values, above "
        r"the bound",
    ),
    (
        "record-kind-maxpool",
        "mlp",
        "rate",
        _edit_record(_pop_field(1, "kind", "maxpool")),
        onespike.InvalidGraphError,
        r"population '1' field 'kind' is 'maxpool', not 'neuron'",
    ),
    (
        "record-two-outputs",
        "mlp",
        "ttfs",
        _edit_record(_pop_field(1, "is_output", True)),
        onespike.InvalidGraphError,
        r"field 'populations' marks 2 outputs \(is_output\), not 1",
    ),
    (
        "record-unknown-source",
        "mlp",
        "rate",
        _edit_record(lambda r: r["populations"][2]["projections"][0].__setitem__("source", "x")),
        onespike.InvalidGraphError,
        r"population '3' projection 0 field 'source' names 'x', which is not an earlier "
        r"population",
    ),
    (
        "record-missing-field",
        "mlp",
        "rate",
        _edit_record(lambda r: r["populations"][1].pop("scale")),
        onespike.InvalidGraphError,
        r"population '1' lacks the field 'scale'",
    ),
    (
        "record-config-type",
        "mlp",
        "rate",
        _edit_record(lambda r: r.__setitem__("config_type", "Evil")),
        onespike.InvalidGraphError,
        r"field 'config_type' is 'Evil', not one of TTFSConfig, RateConfig, HybridConfig",
    ),
    (
        "record-config-value",
        "mlp",
        "rate",
        _edit_record(lambda r: r["config"].__setitem__("steps", 0)),
        onespike.InvalidGraphError,
        r"field 'config' does not make a RateConfig: .*steps",
    ),
    (
        "record-config-unknown-option",
        "mlp",
        "rate",
        _edit_record(lambda r: r["config"].__setitem__("turbo", True)),
        onespike.InvalidGraphError,
        r"field 'config' does not make a RateConfig: .*turbo",
    ),
    (
        "record-delay-negative",
        "skip",
        "ttfs",
        _edit_record(lambda r: r["populations"][3]["projections"][1].__setitem__("delay", -5)),
        onespike.InvalidGraphError,
        r"population 'relu_2' projection 1 field 'delay' is -5, not an integer >= 0",
    ),
    (
        "record-delay-disagrees",
        "skip",
        "ttfs",
        _edit_record(lambda r: r["populations"][3]["projections"][1].__setitem__("delay", 2)),
        onespike.InvalidGraphError,
        r"'relu_2\.synapses1\.delay' \(nir\.Delay\) parameter 'delay' is 5\.0 where its delay in "
        r"the onespike record .* has 2\.0",
    ),
    (
        "record-names-other-node",
        "mlp",
        "ttfs",
        _edit_record(lambda r: r["populations"][2]["projections"][0]["ops"].__setitem__(0, "q")),
        onespike.InvalidGraphError,
        r"node\(s\) in the graph but not in the record: '3\.synapses'; node\(s\) in the record "
        r"but not in the graph: 'q'",
    ),
    (
        "record-node-twice",
        "mlp",
        "rate",
        _edit_record(lambda r: r["populations"][2]["nodes"].__setitem__("neuron", "1")),
        onespike.InvalidGraphError,
        r"population '3' names node '1', which the record already uses",
    ),
    (
        "record-not-json",
        "mlp",
        "rate",
        lambda g: g.metadata.__setitem__("onespike_network", "{not json"),
        onespike.InvalidGraphError,
        r"'onespike_network' metadata is not valid JSON",
    ),
    (
        "record-format-version",
        "mlp",
        "rate",
        _edit_record(lambda r: r.__setitem__("format_version", 99)),
        onespike.InvalidGraphError,
        r"format_version 99; this onespike reads 1",
    ),
]


@pytest.mark.parametrize(
    ("kind", "method", "edit", "error", "match"),
    [case[1:] for case in TOPOLOGY_CASES + AGREEMENT_CASES + RECORD_CASES],
    ids=[case[0] for case in TOPOLOGY_CASES + AGREEMENT_CASES + RECORD_CASES],
)
def test_graph_and_record_must_agree(
    kind: str, method: str, edit: Callable[[Any], object], error: type, match: str
) -> None:
    _check(kind, method, edit, error, match)


def test_edited_graph_written_to_a_file_is_refused_with_the_difference(tmp_path: Path) -> None:
    graph = _graph("mlp", "rate")
    _add_edge("input", "3.synapses")(graph)
    path = tmp_path / "edited.nir"
    nir.write(path, graph)
    with pytest.raises(onespike.InvalidGraphError, match=r"'input' -> '3\.synapses'"):
        onespike.from_nir(path)


def test_foreign_graph_without_record_imports_with_the_same_checks() -> None:
    """A graph without onespike's record is another tool's: it imports (tests/test_nir_foreign.py)
    after the same graph checks as onespike's own."""
    foreign = nir.NIRGraph.from_list(
        nir.Affine(weight=np.ones((2, 3), dtype=np.float32), bias=np.zeros(2, dtype=np.float32)),
        nir.IF(r=np.ones(2), v_threshold=np.ones(2), v_reset=np.zeros(2)),
    )
    config = onespike.RateConfig(steps=4, reset="zero", initial_membrane=0.0)
    net = onespike.from_nir(foreign, config=config)
    result = onespike.simulate(net, torch.full((1, 3), 0.25))
    # z = 0.75 per step: v = 0.75, 1.5 fires -> 0, 0.75, 1.5 fires: 2 spikes per neuron
    assert result.spike_counts["if"].tolist() == [[2.0, 2.0]]
    foreign.nodes["affine"].weight[0, 0] = np.nan
    with pytest.raises(onespike.InvalidGraphError, match=r"node 'affine' .*'weight'"):
        onespike.from_nir(foreign)
