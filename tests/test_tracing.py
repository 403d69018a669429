"""extract: every module and functional spelling of the supported layers, and one error that
lists every unsupported place."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import onespike
from onespike.graph import (
    AdaptiveAvgPool2d,
    Add,
    AvgPool2d,
    Concat,
    Conv2d,
    Flatten,
    Graph,
    GraphNet,
    Linear,
    MaxPool2d,
    ReLU,
)


class Wrap(nn.Module):
    """conv (4 channels, 8x8) -> ``body`` -> flatten -> linear, so each spelling sits in a real
    network."""

    def __init__(self, body: Callable[[torch.Tensor], torch.Tensor], features: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.body = body
        self.fc = nn.Linear(features, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.body(self.conv(x)), 1))


class Lambda(nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


# spelling -> (body, features after it, node types expected in the graph besides conv/linear)
SPELLINGS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor] | nn.Module, int, set[type]]] = {
    "F.relu": (F.relu, 256, {ReLU}),
    "torch.relu": (torch.relu, 256, {ReLU}),
    "x.relu()": (lambda x: x.relu(), 256, {ReLU}),
    "clamp(min=0)": (lambda x: x.clamp(min=0), 256, {ReLU}),
    "nn.ReLU6": (nn.ReLU6(), 256, {ReLU}),
    "F.relu6": (F.relu6, 256, {ReLU}),
    "nn.Hardtanh(0, 2)": (nn.Hardtanh(0.0, 2.0), 256, {ReLU}),
    "F.hardtanh": (lambda x: F.hardtanh(x, 0.0, 0.5), 256, {ReLU}),
    "torch.clamp(0, 3)": (lambda x: torch.clamp(x, 0, 3), 256, {ReLU}),
    "torch.clip": (lambda x: torch.clip(x, 0.0, 1.5), 256, {ReLU}),
    "F.avg_pool2d": (lambda x: F.avg_pool2d(F.relu(x), 2), 64, {ReLU, AvgPool2d}),
    "F.avg_pool2d stride pad": (
        lambda x: F.avg_pool2d(F.relu(x), 3, stride=2, padding=1),
        64,
        {ReLU, AvgPool2d},
    ),
    "F.max_pool2d": (lambda x: F.max_pool2d(F.relu(x), 2), 64, {ReLU, MaxPool2d}),
    "F.max_pool2d kwargs": (
        lambda x: F.max_pool2d(F.relu(x), kernel_size=3, stride=2, padding=1),
        64,
        {ReLU, MaxPool2d},
    ),
    "nn.AdaptiveAvgPool2d(1)": (
        nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1))),
        4,
        {ReLU, AvgPool2d},
    ),
    "nn.AdaptiveAvgPool2d(3)": (
        nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(3)),
        36,
        {ReLU, AdaptiveAvgPool2d},
    ),
    "F.adaptive_avg_pool2d(None, 2)": (
        lambda x: F.adaptive_avg_pool2d(F.relu(x), (None, 2)),
        64,
        {ReLU, AvgPool2d},
    ),
    "F.adaptive_max_pool2d": (
        lambda x: F.adaptive_max_pool2d(F.relu(x), 2),
        16,
        {ReLU, MaxPool2d},
    ),
    "x.mean((2, 3))": (lambda x: F.relu(x).mean((2, 3)), 4, {ReLU, AvgPool2d, Flatten}),
    "x.mean(keepdim)": (lambda x: F.relu(x).mean([-2, -1], keepdim=True), 4, {ReLU, AvgPool2d}),
    "view(size(0), -1)": (lambda x: F.relu(x).view(x.size(0), -1), 256, {ReLU, Flatten}),
    "reshape(N, -1)": (lambda x: F.relu(x).reshape(x.shape[0], -1), 256, {ReLU, Flatten}),
    "torch.cat": (
        lambda x: torch.cat([F.relu(x), F.max_pool2d(F.relu(x), 3, 1, 1)], dim=1),
        512,
        {ReLU, Concat, MaxPool2d},
    ),
    "residual +": (lambda x: F.relu(x + F.relu(x)), 256, {ReLU, Add}),
    "x.add(y)": (lambda x: F.relu(x.add(F.relu(x))), 256, {ReLU, Add}),
    "dropout, identity, contiguous": (
        lambda x: F.dropout(F.relu(x), 0.5, training=False).contiguous(),
        256,
        {ReLU},
    ),
    "BatchNorm after ReLU": (nn.Sequential(nn.ReLU(), nn.BatchNorm2d(4)), 256, {ReLU}),
}


@pytest.mark.parametrize("spelling", sorted(SPELLINGS))
def test_every_spelling_extracts_to_the_module(spelling: str) -> None:
    body, features, kinds = SPELLINGS[spelling]
    torch.manual_seed(0)
    module = body if isinstance(body, nn.Module) else Lambda(body)
    for sub in module.modules():
        if isinstance(sub, nn.BatchNorm2d):
            sub.running_mean.uniform_(-0.5, 0.5)
            sub.running_var.uniform_(0.5, 2.0)
    model = Wrap(module, features).eval()
    x = torch.rand(5, 2, 8, 8)
    graph = onespike.extract(model, x)
    found = {type(n) for n in graph.nodes.values()}
    assert kinds <= found, found
    assert torch.allclose(onespike.run_graph(graph, x), model(x), atol=1e-5)
    # and it converts: the TTFS network runs and both simulators agree
    net = onespike.convert(onespike.normalize(graph, [x]), onespike.TTFSConfig(steps=4))
    fast, ref = onespike.simulate(net, x[:2]), onespike.simulate(net, x[:2], method="stepped")
    assert torch.equal(fast.predictions, ref.predictions)


def test_clipped_relu_values_are_recorded() -> None:
    graph = onespike.extract(Wrap(nn.ReLU6(), 256).eval(), torch.rand(2, 2, 8, 8))
    assert [n.max_value for n in graph.nodes.values() if isinstance(n, ReLU)] == [6.0]
    graph = onespike.extract(Wrap(lambda x: x.clamp(0, 2.5), 256).eval(), torch.rand(2, 2, 8, 8))
    assert [n.max_value for n in graph.nodes.values() if isinstance(n, ReLU)] == [2.5]


def test_depthwise_grouped_and_biasless_convolutions() -> None:
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding="same", groups=4),
        nn.ReLU(),
        nn.Conv2d(4, 6, 1, groups=2, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(6 * 64, 2, bias=False),
    ).eval()
    x = torch.rand(3, 2, 8, 8)
    graph = onespike.extract(model, x)
    groups = [n.groups for n in graph.nodes.values() if isinstance(n, Conv2d)]
    assert groups == [1, 4, 2]
    assert torch.allclose(onespike.run_graph(graph, x), model(x), atol=1e-5)


def test_batchnorm_folds_in_one_pass_wherever_exact() -> None:
    """BatchNorm after a convolution folds into it; after a ReLU (before a conv with padding) it
    stays an Affine node that the converters apply as a linear map plus a constant."""
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.BatchNorm2d(3),
        nn.Conv2d(3, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
        nn.BatchNorm1d(48), nn.Linear(48, 2),
    ).eval()  # fmt: skip
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    x = torch.rand(4, 1, 6, 6)
    graph = onespike.extract(model, x)
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert kinds.count("Affine") == 1  # only the BatchNorm before the padded convolution stays
    assert torch.allclose(onespike.run_graph(graph, x), model(x), atol=1e-5)


def test_final_softmax_is_dropped_with_a_warning() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Softmax(dim=1)).eval()
    with pytest.warns(UserWarning, match="final softmax"):
        graph = onespike.extract(model, torch.rand(2, 4))
    assert [type(n) for n in graph.nodes.values()].count(Linear) == 1
    inside = nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1), nn.Linear(3, 2)).eval()
    with pytest.raises(onespike.UnsupportedLayerError, match="inside the network"):
        onespike.extract(inside, torch.rand(2, 4))


class EverythingWrong(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.act = nn.LeakyReLU()
        self.norm = nn.LayerNorm([4, 6, 6])
        self.fc = nn.Linear(4 * 36, 5)
        self.gelu = nn.GELU()
        self.rnn_free = nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.act(self.conv(x)))
        h = torch.sigmoid(h) * 2  # two unsupported operations
        h = self.gelu(self.fc(h.flatten(1)))
        return F.softmax(self.rnn_free(h), dim=1) + 1  # softmax inside (something follows)


def test_one_error_lists_every_unsupported_place() -> None:
    with pytest.raises(onespike.UnsupportedLayerError) as info:
        onespike.extract(EverythingWrong(), torch.rand(2, 1, 8, 8))
    places = info.value.places
    text = str(info.value)
    for expected in ("'act'", "LeakyReLU", "'norm'", "LayerNorm", "sigmoid", "'gelu'", "GELU"):
        assert expected in text, expected
    assert "mul" in text  # h * 2
    assert "softmax" in text
    assert "add" in text  # + 1: a constant
    assert len(places) == 7
    assert "replace it with nn.ReLU" in text  # the fix for the activations
    assert "BatchNorm" in text  # the fix for LayerNorm


def test_refusals_name_the_problem() -> None:
    with pytest.raises(onespike.UnsupportedLayerError, match="lower bound of 0"):
        onespike.extract(Wrap(nn.Hardtanh(), 256).eval(), torch.rand(2, 2, 8, 8))
    with pytest.raises(onespike.UnsupportedLayerError, match="dimension 1"):
        onespike.extract(Wrap(lambda x: torch.cat([x, x], 2), 512).eval(), torch.rand(2, 2, 8, 8))
    with pytest.raises(onespike.UnsupportedLayerError, match="irregular windows"):
        onespike.extract(
            Wrap(lambda x: F.adaptive_max_pool2d(F.relu(x), 3), 36).eval(), torch.rand(2, 2, 8, 8)
        )
    with pytest.raises(onespike.UnsupportedLayerError, match="only flattening"):
        onespike.extract(
            Wrap(lambda x: x.view(x.size(0), 4, -1).flatten(1), 256).eval(), torch.rand(2, 2, 8, 8)
        )
    with pytest.raises(onespike.ShapeError, match="fails on an input"):
        onespike.extract(Wrap(F.relu, 256).eval(), torch.rand(2, 3, 8, 8))
    with pytest.raises(onespike.ShapeError, match="example input tensor"):
        onespike.extract(Wrap(F.relu, 256).eval(), [torch.rand(2, 2, 8, 8)])  # type: ignore[arg-type]


def test_graph_net_passes_through_extract() -> None:
    graph = Graph.sequential((3,), [Linear(torch.ones(2, 3))])
    module = GraphNet(graph)
    assert onespike.extract(module, torch.rand(2, 3)) is graph
    assert torch.equal(module(torch.ones(1, 3)), torch.full((1, 2), 3.0))
    with pytest.raises(onespike.ShapeError, match="expects"):
        onespike.extract(module, torch.rand(2, 4))


def test_extraction_is_linear_in_depth() -> None:
    """Extraction of a 60-block residual network builds and validates its graph once: the
    number of Graph constructions does not grow with depth (the old folding rebuilt it once
    per BatchNorm)."""
    from tests.zoo import randomise_batchnorm, resnet_deep

    built = []
    original = Graph.__post_init__

    def counting(self: Graph) -> None:
        built.append(1)
        original(self)

    model = randomise_batchnorm(resnet_deep(blocks=60, width=2))
    x = torch.rand(1, 3, 32, 32)
    Graph.__post_init__ = counting  # type: ignore[method-assign]
    try:
        graph = onespike.extract(model, x)
    finally:
        Graph.__post_init__ = original  # type: ignore[method-assign]
    assert len(built) == 2  # the traced graph, then the folded one
    assert sum(isinstance(n, Add) for n in graph.nodes.values()) == 60
    assert torch.allclose(onespike.run_graph(graph, x), model(x), atol=1e-4)
