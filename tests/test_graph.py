"""Graph extraction: equality with the module, folding, and clear refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import onespike
from onespike.graph import Add, Affine, Conv2d, Graph, Linear
from onespike.models import Normalize


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, stride=2, padding=1)
        self.block = nn.Conv2d(4, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.stem(x))
        h = torch.relu(self.bn(self.block(h)) + h)
        h = self.drop(h)
        return self.head(h.view(h.size(0), -1))


def _randomise_bn(model: nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen))
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.randn(n, generator=gen))
            module.bias.data.copy_(torch.randn(n, generator=gen))


def test_residual_network_with_batchnorm_matches_module() -> None:
    torch.manual_seed(0)
    model = Residual().eval()
    _randomise_bn(model)
    x = torch.rand(8, 2, 8, 8)
    graph = onespike.extract(model, x)
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert "Affine" not in kinds  # BatchNorm folded into the preceding convolution
    assert kinds.count("Add") == 1
    assert "Dropout" not in kinds
    assert torch.allclose(onespike.run_graph(graph, x), model(x), atol=1e-5)
    assert graph.shapes["head"] == (3,)


def test_batchnorm_after_linear_folds_within_tolerance() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 2)
    ).eval()
    _randomise_bn(model)
    x = torch.rand(5, 3, 4)
    graph = onespike.extract(model, x)
    assert not any(isinstance(n, Affine) for n in graph.nodes.values())
    assert torch.allclose(onespike.run_graph(graph, x), model(x), atol=1e-5)


def test_input_normalisation_folds_only_where_exact() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 2, 6, 6)
    unpadded = nn.Sequential(Normalize([0.5, 0.25], [0.2, 0.4]), nn.Conv2d(2, 3, 3), nn.ReLU())
    graph = onespike.extract(unpadded.eval(), x)
    assert not any(isinstance(n, Affine) for n in graph.nodes.values())
    assert torch.allclose(onespike.run_graph(graph, x), unpadded(x), atol=1e-5)

    padded = nn.Sequential(
        Normalize([0.5, 0.25], [0.2, 0.4]),
        nn.Conv2d(2, 3, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(108, 2),
    )
    graph = onespike.extract(padded.eval(), x)
    assert any(isinstance(n, Affine) for n in graph.nodes.values())  # a shift cannot fold
    assert torch.allclose(onespike.run_graph(graph, x), padded(x), atol=1e-5)
    # The converter still treats the kept Affine exactly (as weights plus a bias map).
    scaled = onespike.normalize(graph, [x], percentile=100.0)
    net = onespike.convert(scaled, onespike.TTFSConfig(steps=2**12))
    out = onespike.simulate(net, x).outputs
    assert torch.allclose(out, padded(x).clamp(min=0), atol=0.02)


def test_unsupported_layer_names_path_and_type() -> None:
    model = nn.Sequential()
    model.add_module("features", nn.Sequential(nn.Linear(4, 4), nn.Sigmoid()))
    with pytest.raises(onespike.UnsupportedLayerError, match=r"features\.1.*Sigmoid"):
        onespike.extract(model, torch.rand(2, 4))


def test_unsupported_function_is_named() -> None:
    class Tanh(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(self.fc(x))

    with pytest.raises(onespike.UnsupportedLayerError, match="tanh"):
        onespike.extract(Tanh(), torch.rand(2, 3))


def test_untraceable_control_flow_is_refused() -> None:
    class Branchy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x if x.sum() > 0 else -x

    with pytest.raises(onespike.UnsupportedLayerError, match="trace"):
        onespike.extract(Branchy(), torch.rand(2, 3))


def test_non_finite_weights_are_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    model[0].weight.data[0, 0] = float("nan")
    with pytest.raises(onespike.InvalidGraphError, match="NaN"):
        onespike.extract(model, torch.rand(1, 3))
    with pytest.raises(onespike.InvalidGraphError, match="infinite"):
        Graph.sequential((2,), [Linear(torch.tensor([[float("inf"), 0.0]]))])


def test_malformed_graphs_are_refused() -> None:
    with pytest.raises(onespike.InvalidGraphError, match="unknown node"):
        Graph(
            {"input": onespike.graph.Input((2,)), "output": onespike.graph.Output()},
            [("input", "nowhere")],
        )
    weight = torch.ones(1, 1, 1, 1)
    nodes = {
        "input": onespike.graph.Input((1, 2, 2)),
        "a": Conv2d(weight),
        "sum": Add(),
        "output": onespike.graph.Output(),
    }
    with pytest.raises(onespike.InvalidGraphError, match="at least two"):
        Graph(nodes, [("input", "a"), ("a", "sum"), ("sum", "output")])


def test_wrong_input_shape_is_refused() -> None:
    graph = Graph.sequential((3,), [Linear(torch.ones(2, 3))])
    with pytest.raises(onespike.ShapeError, match=r"\(4,\)"):
        onespike.run_graph(graph, torch.zeros(1, 4))


def test_max_pool_before_relu_commutes() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)
    ).eval()
    x = torch.rand(3, 1, 6, 6)
    graph = onespike.extract(model, x)
    scaled = onespike.normalize(graph, [x], percentile=100.0)
    net = onespike.convert(scaled, onespike.TTFSConfig(steps=2**14))
    kinds = [p.kind for p in net.populations]
    assert kinds == ["input", "neuron", "maxpool", "neuron"]
    assert torch.allclose(onespike.simulate(net, x).outputs, model(x).clamp(min=0), atol=0.01)

    bad = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(onespike.UnsupportedLayerError, match="ReLU before the pooling"):
        onespike.convert(onespike.extract(bad, x), onespike.TTFSConfig())
