"""NIR export and import: round trips of every supported kind, refusals, Norse interop, CLI."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import onespike
from onespike.cli import main
from onespike.graph import Affine, Graph
from onespike.io import save_model
from onespike.models import build_model
from onespike.network import SpikingNetwork
from onespike.nir_io import write_nir
from onespike.simulate import SimResult
from tests.helpers import run_norse

nir = pytest.importorskip(
    "nir", reason="NIR support is the 'nir' extra: pip install 'onespike[nir]'"
)

ZERO_RESET = {"reset": "zero", "initial_membrane": 0.0}


class Skip(nn.Module):
    """Three hidden layers and a skip connection across one of them (a TTFS delay of L)."""

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


def _model(kind: str) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(3)
    if kind == "mlp":
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU())
        return nn.Sequential(*model, nn.Linear(12, 4)), (8,)
    if kind == "cnn":
        layers = [
            nn.Conv2d(1, 4, 3, padding=1),
            nn.ReLU(),
            nn.AvgPool2d(2),
            nn.Conv2d(4, 6, 3, stride=2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(6, 3),
        ]
        return nn.Sequential(*layers), (1, 8, 8)
    return Skip(), (6,)


def _convert(kind: str, config: Any) -> tuple[SpikingNetwork, torch.Tensor]:
    model, shape = _model(kind)
    gen = torch.Generator().manual_seed(5)
    calibration = torch.rand((64, *shape), generator=gen)
    graph = onespike.normalize(onespike.extract(model, calibration[:2]), [calibration])
    return onespike.convert(graph, config), torch.rand((8, *shape), generator=gen)


def _round_trip(net: SpikingNetwork, tmp_path: Path) -> SpikingNetwork:
    path = tmp_path / "net.nir"
    nir.write(path, onespike.to_nir(net))
    return onespike.from_nir(nir.read(path))


def _assert_same(a: SimResult, b: SimResult) -> None:
    assert torch.equal(a.predictions, b.predictions)
    assert torch.equal(a.outputs, b.outputs)
    assert a.steps == b.steps
    assert a.spike_counts.keys() == b.spike_counts.keys()
    for name, counts in a.spike_counts.items():
        assert torch.equal(counts, b.spike_counts[name]), name
    assert set(a.spike_times) == set(b.spike_times)
    for name in a.spike_times:
        assert torch.equal(a.spike_times[name], b.spike_times[name]), name


CONFIGS = [
    onespike.RateConfig(steps=16, **ZERO_RESET),  # type: ignore[arg-type]
    onespike.RateConfig(steps=12, input="poisson", threshold_scale=0.75, **ZERO_RESET),  # type: ignore[arg-type]
    onespike.TTFSConfig(steps=8),
    onespike.TTFSConfig(steps=5, rectifier=False),
    onespike.HybridConfig(steps=4),
    onespike.HybridConfig(steps=5, leak=0.875, readout="first_spike"),
]


@pytest.mark.parametrize("kind", ["mlp", "cnn", "skip"])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: repr(c)[:40])
def test_round_trip_through_a_file_simulates_identically(
    kind: str, config: Any, tmp_path: Path
) -> None:
    net, x = _convert(kind, config)
    back = _round_trip(net, tmp_path)
    assert back.config == net.config
    assert [p.name for p in back.populations] == [p.name for p in net.populations]
    for old, new in zip(net.populations, back.populations, strict=True):
        assert new.scale == old.scale
        assert new.depth == old.depth
        assert [p.factor for p in new.projections] == [p.factor for p in old.projections]
        assert [p.delay for p in new.projections] == [p.delay for p in old.projections]
    for method in ("stepped", "closed_form"):
        _assert_same(onespike.simulate(net, x, method), onespike.simulate(back, x, method))


def test_bias_after_pooling_gets_an_exact_identity_node(tmp_path: Path) -> None:
    # conv -> avg pool -> ReLU: the chain ends in the pooling, so the bias (one value per
    # channel) rides on a 1x1 identity convolution in front of the neurons.
    layers = [nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3)]
    torch.manual_seed(4)
    model = nn.Sequential(*layers)
    x = torch.rand(32, 1, 8, 8)
    graph = onespike.normalize(onespike.extract(model, x[:2]), [x])
    for config in (onespike.RateConfig(steps=8, **ZERO_RESET), onespike.HybridConfig(steps=4)):  # type: ignore[arg-type]
        net = onespike.convert(graph, config)
        nir_graph = onespike.to_nir(net)
        bias = nir_graph.nodes["2.bias"]
        assert isinstance(bias, nir.Conv2d)
        assert np.array_equal(bias.weight[:, :, 0, 0], np.eye(2, dtype=np.float32))
        back = _round_trip(net, tmp_path)
        _assert_same(
            onespike.simulate(net, x[:8], "stepped"), onespike.simulate(back, x[:8], "stepped")
        )


def test_skip_connection_of_ttfs_is_a_nir_delay(tmp_path: Path) -> None:
    net, _ = _convert("skip", onespike.TTFSConfig(steps=8))
    graph = onespike.to_nir(net)
    delays = [node for node in graph.nodes.values() if isinstance(node, nir.Delay)]
    assert len(delays) == 1
    assert np.all(delays[0].delay == 7)  # L steps: one layer skipped
    assert net["relu_2"].projections[1].delay == 7


def test_binary_rate_network_keeps_its_per_channel_thresholds(tmp_path: Path) -> None:
    model, shape = _model("mlp")
    with torch.no_grad():  # a hidden layer of sign(W) * alpha per output channel
        hidden = model[2]
        hidden.weight.copy_(torch.sign(hidden.weight) * torch.rand(12, 1) + 0.0)
    gen = torch.Generator().manual_seed(5)
    x = torch.rand((64, *shape), generator=gen)
    graph = onespike.normalize(onespike.extract(model, x[:2]), [x])
    net = onespike.convert(graph, onespike.RateConfig(steps=10, binary=True, **ZERO_RESET))  # type: ignore[arg-type]
    assert isinstance(net["3"].threshold, torch.Tensor)
    back = _round_trip(net, tmp_path)
    assert torch.equal(back["3"].threshold, net["3"].threshold)
    assert back["3"].threshold.dtype == net["3"].threshold.dtype
    _assert_same(onespike.simulate(net, x[:8]), onespike.simulate(back, x[:8]))


def test_hybrid_tensor_thresholds_round_trip(tmp_path: Path) -> None:
    net, x = _convert("cnn", onespike.HybridConfig(steps=4))
    pops = list(net.populations)
    pops[1] = replace(pops[1], threshold=torch.tensor([0.25, 0.3, 0.35, 0.4]).view(4, 1, 1))
    pops[2] = replace(pops[2], threshold=torch.tensor(0.2))  # 0-d, as a trained scalar
    net = replace(net, populations=tuple(pops))
    back = _round_trip(net, tmp_path)
    for old, new in zip(net.populations[1:3], back.populations[1:3], strict=True):
        assert isinstance(new.threshold, torch.Tensor)
        assert torch.equal(new.threshold, old.threshold)
    _assert_same(onespike.simulate(net, x, "stepped"), onespike.simulate(back, x, "stepped"))


def test_rate_graph_is_plain_nir_if_with_effective_weights() -> None:
    net, _ = _convert("mlp", onespike.RateConfig(steps=8, **ZERO_RESET))  # type: ignore[arg-type]
    graph = onespike.to_nir(net)
    hidden, head = net["1"], net["4"]
    neuron = graph.nodes["1"]
    assert isinstance(neuron, nir.IF)
    assert np.all(neuron.v_reset == 0)
    assert np.all(neuron.r == 1)
    # v > v_threshold (NIR) is v >= threshold (onespike) for float32 membranes.
    theta = np.float32(hidden.threshold)
    assert np.all(neuron.v_threshold < theta)
    assert np.all(np.nextafter(neuron.v_threshold, np.float32(np.inf)) == theta)
    synapses = graph.nodes["1.synapses"]
    assert isinstance(synapses, nir.Affine)
    (proj,) = hidden.projections
    assert proj.factor != 1.0
    assert np.array_equal(synapses.weight, (proj.ops[0].weight * proj.factor).numpy())
    assert hidden.bias is not None
    assert np.array_equal(synapses.bias, hidden.bias.numpy())
    # The non-spiking readout has no neuron node: its synapses feed the graph's output.
    assert ("4.synapses", "output") in graph.edges
    assert isinstance(graph.nodes["4.synapses"], nir.Affine)
    assert head.is_output
    assert "sum of that output" in graph.metadata["onespike_not_expressible"]


def test_ttfs_metadata_states_what_nir_cannot_express(tmp_path: Path) -> None:
    net, _ = _convert("mlp", onespike.TTFSConfig(steps=8))
    path = tmp_path / "ttfs.nir"
    write_nir(path, net)
    graph = nir.read(path)
    text = graph.metadata["onespike_not_expressible"]
    for phrase in ("at most once", "output window", "counter synapse", "rectifier", "earliest"):
        assert phrase in text
    assert graph.metadata["onespike_method"] == "ttfs"
    assert isinstance(graph.nodes["1.current"], nir.I)
    assert isinstance(graph.nodes["1.membrane"], nir.I)
    assert isinstance(graph.nodes["1"], nir.Threshold)
    bias = net["1"].bias
    assert bias is not None
    assert np.array_equal(graph.nodes["1.current"].metadata["onespike_bias"], bias.numpy())
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_edited_weights_win_over_the_metadata() -> None:
    net, _ = _convert("mlp", onespike.RateConfig(steps=8, **ZERO_RESET))  # type: ignore[arg-type]
    graph = onespike.to_nir(net)
    graph.nodes["1.synapses"].weight = graph.nodes["1.synapses"].weight * 2
    back = onespike.from_nir(graph)
    (proj,) = back["1"].projections
    assert proj.factor == 1.0
    assert np.array_equal(proj.ops[0].weight.numpy(), graph.nodes["1.synapses"].weight)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"reset": "subtract", "initial_membrane": 0.0}, r"reset='zero'"),
        ({"reset": "zero", "initial_membrane": 0.5}, r"initial_membrane=0\.0"),
    ],
)
def test_rate_dynamics_nir_cannot_hold_are_refused(options: dict[str, Any], match: str) -> None:
    net, _ = _convert("mlp", onespike.RateConfig(steps=8, **options))
    with pytest.raises(onespike.ConfigError, match=match):
        onespike.to_nir(net)


def test_max_pooling_is_refused() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2 * 3 * 3, 2)
    )
    x = torch.rand(16, 1, 8, 8)
    graph = onespike.normalize(onespike.extract(model, x[:2]), [x])
    for config in (onespike.TTFSConfig(steps=4), onespike.RateConfig(steps=4, **ZERO_RESET)):  # type: ignore[arg-type]
        net = onespike.convert(graph, config)
        with pytest.raises(onespike.UnsupportedLayerError, match="no max-pooling node"):
            onespike.to_nir(net)


def test_bias_varying_within_a_channel_is_refused() -> None:
    # A shifted input into a padded convolution: the constant differs at the borders.
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32, 2))
    x = torch.rand(16, 1, 4, 4)
    graph = onespike.extract(model, x[:2])
    nodes = {"norm": Affine(torch.tensor([2.0]), torch.tensor([-1.0])), **graph.nodes}
    edges = [("input", "norm"), *[("norm", b) if a == "input" else (a, b) for a, b in graph.edges]]
    net = onespike.convert(
        Graph(nodes, edges), onespike.RateConfig(steps=4, **ZERO_RESET), normalized=False
    )  # type: ignore[arg-type]
    with pytest.raises(onespike.UnsupportedLayerError, match="varies within a channel"):
        onespike.to_nir(net)


def test_foreign_and_broken_inputs_are_clear_errors(tmp_path: Path) -> None:
    foreign = nir.NIRGraph.from_list(nir.Affine(weight=np.ones((2, 3)), bias=np.zeros(2)))
    foreign.nodes["integrator"] = nir.I(r=np.ones(2))
    foreign.edges = [("input", "affine"), ("affine", "integrator"), ("integrator", "output")]
    with pytest.raises(onespike.UnsupportedLayerError, match=r"node 'integrator' is a nir\.I\b"):
        onespike.from_nir(foreign)
    with pytest.raises(onespike.MissingFileError):
        onespike.from_nir(tmp_path / "absent.nir")
    garbage = tmp_path / "garbage.nir"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(onespike.CorruptFileError):
        onespike.from_nir(garbage)
    net, _ = _convert("mlp", onespike.TTFSConfig(steps=4))
    graph = onespike.to_nir(net)
    del graph.nodes["1.current"]
    with pytest.raises(onespike.InvalidGraphError, match=r"1\.current"):
        onespike.from_nir(graph)


# Interop with Norse ---------------------------------------------------------------------------
def _dyadic_network(steps: int) -> SpikingNetwork:
    """Weights in multiples of 1/8 and power-of-two scales: every sum is exact in float32."""
    model, _ = _model("mlp")
    gen = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for layer in (model[0], model[2], model[4]):
            layer.weight.copy_(torch.randint(-4, 5, layer.weight.shape, generator=gen) / 8)
            layer.bias.copy_(torch.randint(-2, 3, layer.bias.shape, generator=gen) / 8)
    graph = onespike.extract(model, torch.zeros(2, 8))
    graph = graph.with_scales({"1": 2.0, "3": 4.0, "4": 8.0})
    return onespike.convert(graph, onespike.RateConfig(steps=steps, **ZERO_RESET))  # type: ignore[arg-type]


def _norse_matches(
    net: SpikingNetwork,
    x: torch.Tensor,
    tmp_path: Path,
    *,
    exact_membrane: bool = True,
    batched: bool = True,
) -> SimResult:
    steps = net.config.steps
    path = tmp_path / "rate.nir"
    write_nir(path, net)
    membrane, counts = run_norse(path, x, steps, batched=batched)
    result = onespike.simulate(net, x, "stepped")
    hidden = [p.name for p in net.populations if p.kind == "neuron" and not p.is_output]
    assert sorted(counts) == sorted(hidden)  # nirtorch keeps these names (no dots in them)
    for name in hidden:
        assert torch.equal(counts[name], result.spike_counts[name]), name
    assert torch.equal(membrane.flatten(1).argmax(dim=1), result.predictions)
    outputs = membrane / steps * net.output.scale
    if exact_membrane:
        assert torch.equal(outputs, result.outputs)
    else:
        torch.testing.assert_close(outputs, result.outputs, rtol=1e-5, atol=1e-6)
    return result


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_norse_runs_the_exported_rate_network_with_identical_spike_counts(
    tmp_path: Path,
) -> None:
    """Exact equality, by construction: Norse's IAF integrates ``v + z``, fires at
    ``v - v_th > 0`` and resets to 0, which is onespike's reset-to-zero neuron given the strict
    threshold; the weights, factors, inputs and biases are multiples of powers of two, so every
    sum is exact in float32 whatever order Norse's ``addmm`` adds it in."""
    net = _dyadic_network(steps=24)
    x = torch.randint(0, 9, (32, 8), generator=torch.Generator().manual_seed(2)) / 8
    result = _norse_matches(net, x, tmp_path)
    assert float(result.spike_counts["1"].sum()) > 100  # the test exercises real spiking
    # Ties: with these values membranes hit the threshold exactly, where "v > v_th" with
    # v_th = threshold would differ from onespike's "v >= threshold".
    assert net["1"].threshold == 1.0


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_norse_agrees_on_a_normalised_network(tmp_path: Path) -> None:
    """A network normalised on random data: general float weights. Norse computes
    ``(f W) x + b`` in one ``addmm``, onespike ``f (W x) + b``; the two round differently in
    the last bits. That shows in the readout membranes (compared to float32 precision), and it
    would change a spike only where a membrane lies within those bits of the threshold: on this
    seeded network none does, and spike counts and predictions are equal exactly."""
    net, x = _convert("mlp", onespike.RateConfig(steps=32, **ZERO_RESET))  # type: ignore[arg-type]
    _norse_matches(net, x, tmp_path, exact_membrane=False)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_norse_runs_an_exported_convolutional_network_sample_by_sample(tmp_path: Path) -> None:
    """Convolutions, a strided convolution, Flatten and Linear, no pooling (Norse 1.1 has no
    AvgPool2d mapping). Samples go in without a batch dimension (see
    :func:`tests.helpers.run_norse`).
    Counts and predictions must be equal; the membranes to float32 precision, for the reason
    given in :func:`test_norse_agrees_on_a_normalised_network`."""
    layers = [
        nn.Conv2d(1, 3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(3, 4, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(36, 3),
    ]
    torch.manual_seed(6)
    model = nn.Sequential(*layers)
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    graph = onespike.normalize(onespike.extract(model, x[:2]), [x])
    net = onespike.convert(graph, onespike.RateConfig(steps=16, **ZERO_RESET))  # type: ignore[arg-type]
    result = _norse_matches(net, x[:6], tmp_path, exact_membrane=False, batched=False)
    assert float(result.spike_counts["3"].sum()) > 0


# CLI ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model, spec = build_model("mlp", (1, 8, 8), 10)  # untrained: export needs no accuracy
    save_model(out / "model", model, spec, dataset="digits")
    args = [
        "export",
        "--format",
        "nir",
        "--dataset",
        "digits",
        "--model-file",
        str(out / "model"),
        "--limit",
        "50",
        "--method",
        "rate",
        "--steps",
        "8",
        "--output",
        str(out / "net.nir"),
    ]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output
    return out


def test_cli_export_writes_a_nir_file_that_round_trips(exported: Path) -> None:
    net = onespike.from_nir(exported / "net.nir")
    assert net.config == onespike.RateConfig(steps=8, **ZERO_RESET)  # type: ignore[arg-type]
    assert net.input_shape == (1, 8, 8)
    assert net.output.shape == (10,)
    assert onespike.simulate(net, torch.rand(4, 1, 8, 8)).predictions.shape == (4,)


def test_cli_export_refuses_reset_by_subtraction(exported: Path, tmp_path: Path) -> None:
    args = [
        "export",
        "--model-file",
        str(exported / "model"),
        "--limit",
        "20",
        "--method",
        "rate",
        "--reset",
        "subtract",
        "--output",
        str(tmp_path / "net.nir"),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "reset='zero'" in result.output
    assert not (tmp_path / "net.nir").exists()
