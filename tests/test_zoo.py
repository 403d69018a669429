"""The model zoo: real classifier code, extracted, converted exactly and simulated three ways.

For each model: the graph computes the module (within float tolerance); its TTFS network's
stepped and closed-form simulations agree spike for spike, and both equal a quantised ANN
computed independently on the graph (every ReLU replaced by ``scale * clamp(floor(L a / scale +
1/2), 0, L) / L``, in float64); the rate and hybrid networks convert and their two simulators
agree on every spike count.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

import onespike
from onespike.graph import AdaptiveAvgPool2d, Concat, Conv2d, Graph, MaxPool2d, ReLU
from onespike.network import SpikingNetwork
from onespike.simulate.ttfs import codes_from_times
from tests import zoo

ZOO: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "resnet18": (lambda: zoo.ResNet18(width=4), (3, 32, 32)),
    "vgg11": (lambda: zoo.VGG("vgg11", width=1 / 16, hidden=16), (3, 32, 32)),
    "vgg16": (lambda: zoo.VGG("vgg16", width=1 / 16, hidden=16), (3, 32, 32)),
    "mobilenetv2": (lambda: zoo.MobileNetV2(width=0.25), (3, 32, 32)),
    "densenet": (lambda: zoo.DenseNet(growth=4, layers=3), (3, 16, 16)),
    "inception": (lambda: zoo.Inception(), (3, 16, 16)),
    "mixed-cnn": (lambda: zoo.MixedCNN(), (1, 28, 28)),
}


def _model(name: str) -> tuple[nn.Module, torch.Tensor, Graph]:
    build, shape = ZOO[name]
    torch.manual_seed(0)
    model = zoo.randomise_batchnorm(build()).double()
    x = torch.rand((12, *shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    graph = onespike.extract(model, x[:2])
    return model, x, onespike.normalize(graph, [x], percentile=99.9)


def _quantised_reference(
    graph: Graph, net: SpikingNetwork, x: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per graph node, the value of the quantised ANN; written on the graph, not on populations."""
    levels = net.config.levels
    pops = {p.name: p for p in net.populations}

    def quant(pre: torch.Tensor, scale: float) -> torch.Tensor:
        return (pre * levels / scale + 0.5).floor().clamp(0, levels) * scale / levels

    def activation(name: str, pre: torch.Tensor) -> torch.Tensor:
        if name in pops:
            return quant(pre, pops[name].scale)
        (source,) = graph.inputs_of(name)
        if isinstance(graph.nodes[source], MaxPool2d):  # relu(max(a)) = max(relu(a))
            (producer,) = graph.inputs_of(source)
            if producer in pops:
                return quant(pre, pops[producer].scale)
        node = graph.nodes[name]
        assert isinstance(node, ReLU)
        return pre.clamp(0, node.max_value) if node.max_value else torch.relu(pre)

    x_codes = (x * levels + 0.5).floor() / levels
    _, values = onespike.run_graph(graph, x_codes, record=True, activation=activation)
    out = net.output
    values["output"] = quant(values[out.name], out.scale)  # the output population's values
    return values


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_converts_exactly(name: str) -> None:
    model, x, graph = _model(name)
    with torch.no_grad():
        expected = model(x)
    assert torch.allclose(onespike.run_graph(graph, x), expected, atol=1e-9, rtol=1e-9)

    net = onespike.convert(graph, onespike.TTFSConfig(steps=6))
    fast = onespike.simulate(net, x)
    ref = onespike.simulate(net, x[:2], method="stepped")
    for pop in net.populations:
        assert torch.equal(fast.spike_times[pop.name][:2], ref.spike_times[pop.name]), pop.name
    assert torch.equal(fast.predictions[:2], ref.predictions)

    reference = _quantised_reference(graph, net, x)
    levels = net.config.levels
    codes = codes_from_times(net, fast)
    out = net.output
    assert torch.equal(codes[out.name], (reference["output"] * levels / out.scale).round())
    assert torch.allclose(fast.outputs, reference["output"], rtol=1e-12, atol=0)
    checked = 0
    for pop in net.populations:
        node = graph.nodes.get(pop.name)
        if pop.kind == "neuron" and isinstance(node, ReLU):
            want = (reference[pop.name] * levels / pop.scale).round()
            assert torch.equal(codes[pop.name], want), pop.name
            checked += 1
    assert checked >= 2

    for config, steps in ((onespike.RateConfig(steps=6), 6), (onespike.HybridConfig(steps=4), 4)):
        spiking = onespike.convert(graph, config)
        quick = onespike.simulate(spiking, x[:2])
        literal = onespike.simulate(spiking, x[:2], method="stepped")
        assert torch.equal(quick.predictions, literal.predictions)
        for pop in spiking.populations:
            assert torch.equal(quick.spikes(pop.name), literal.spikes(pop.name)), pop.name
        assert quick.steps == steps
        assert onespike.count_ops(spiking, quick).total("synops") > 0


def test_zoo_uses_every_new_layer() -> None:
    """The zoo exercises what it is there for: irregular adaptive pooling, concatenation,
    clipped ReLUs, depthwise convolutions and max pooling of a concatenation."""
    kinds: dict[str, set[str]] = {}
    for name in ("vgg11", "densenet", "inception", "mobilenetv2", "mixed-cnn"):
        _, _, graph = _model(name)
        kinds[name] = {type(n).__name__ for n in graph.nodes.values()}
        if name == "mobilenetv2":
            assert any(isinstance(n, Conv2d) and n.groups > 1 for n in graph.nodes.values())
            assert any(isinstance(n, ReLU) and n.max_value == 6 for n in graph.nodes.values())
        if name == "mixed-cnn":
            maxima = {n.max_value for n in graph.nodes.values() if isinstance(n, ReLU)}
            assert maxima == {None, 6.0, 4.0}
    assert AdaptiveAvgPool2d.__name__ in kinds["vgg11"]  # 1x1 -> 7x7
    assert AdaptiveAvgPool2d.__name__ in kinds["mixed-cnn"]  # 7x7 -> 3x3
    assert Concat.__name__ in kinds["densenet"]
    assert Concat.__name__ in kinds["inception"]
    _, _, graph = _model("inception")
    net = onespike.convert(graph, onespike.TTFSConfig(steps=4))
    pooled = [p for p in net.populations if p.kind == "maxpool"]
    assert len(pooled) >= 3  # the pooled concatenation became one pooling per branch


def test_concat_costs_only_its_synapses() -> None:
    """A concatenation feeding a convolution becomes sliced weights: the operation counts equal
    the convolution's connections, as if the inputs had never been padded."""

    class CatConv(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 1), nn.Conv2d(1, 3, 1)
            self.conv = nn.Conv2d(5, 4, 3)  # 6x6 -> 4x4
            self.fc = nn.Linear(4 * 16, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.cat([torch.relu(self.a(x)), torch.relu(self.b(x))], dim=1)
            return self.fc(torch.relu(self.conv(h)).flatten(1))

    x = torch.rand(2, 1, 6, 6)
    graph = onespike.normalize(onespike.extract(CatConv(), x), [x])
    net = onespike.convert(graph, onespike.TTFSConfig(steps=4))
    conv = net["relu_2"]
    assert [type(op).__name__ for proj in conv.projections for op in proj.ops] == ["Conv2d"] * 2
    assert [proj.ops[0].weight.shape[1] for proj in conv.projections] == [2, 3]
    ann = onespike.count_ops(graph, 1)
    by_layer = {layer.name: layer.macs for layer in ann.layers}
    # 16 outputs x 4 channels x (5 channels x 9 taps): one convolution, not two padded ones
    assert by_layer["relu_2"] == 16 * 4 * 5 * 9
    # every padding left in the DenseNet sits at the end of its chain (pre-activation BN-ReLU
    # of a concatenation is a population of the full width)
    _, _, dense = _model("densenet")
    for pop in onespike.convert(dense, onespike.TTFSConfig(steps=4)).populations:
        for proj in pop.projections:
            names = [type(op).__name__ for op in proj.ops]
            assert "PadChannels" not in names[:-1], (pop.name, names)


def test_clipped_relu_bounds_the_scale_and_converts_exactly() -> None:
    """ReLU6 after a layer whose calibrated activations exceed 6: the scale becomes 6 and the
    TTFS network clips exactly where the ANN does."""
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU6(), nn.Linear(4, 2)).double()
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[8.0, 0, 0], [0, 4.0, 0], [0, 0, 2.0], [1, 1, 1]]))
        model[0].bias.zero_()
        model[2].weight.copy_(torch.eye(2, 4))
        model[2].bias.zero_()
    x = torch.tensor([[1.0, 1.0, 1.0], [0.5, 0.25, 0.75]], dtype=torch.float64)
    graph = onespike.normalize(onespike.extract(model, x), [x], percentile=100.0)
    net = onespike.convert(graph, onespike.TTFSConfig(steps=2**10 + 1))
    hidden = next(p for p in net.populations if p.kind == "neuron" and not p.is_output)
    assert hidden.ann_max == 6.0
    assert hidden.scale == 6.0  # min(calibrated 8, 6)
    result = onespike.simulate(net, x)
    ann = model(x).detach()
    # first row: relu6(8) = 6 and relu6(4) = 4 pass through the output layer unchanged
    assert torch.allclose(result.outputs, ann.clamp(min=0), atol=2 * net.output.scale / 2**10)
