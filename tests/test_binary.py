"""Binary-weight layers, their training gradient, and their +-1 synapses after conversion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import onespike
from onespike.binary import BinaryConv2d, BinaryLinear, binarize, binary_weight
from onespike.convert.rate import binary_populations
from onespike.graph import Conv2d, Linear
from onespike.io import load_model, save_model
from onespike.models import build_model


def test_binary_weight_is_sign_times_channel_mean() -> None:
    w = torch.tensor([[0.5, -2.0, 0.0, 1.5], [0.25, 0.25, -0.25, 0.25]])
    # sign(0) is +1; alpha = mean |w| of each row: 1.0 and 0.25.
    assert binary_weight(w).tolist() == [[1.0, -1.0, 1.0, 1.0], [0.25, 0.25, -0.25, 0.25]]


def test_straight_through_gradient_by_hand() -> None:
    w = torch.tensor([[0.5, -2.0]], requires_grad=True)
    (binary_weight(w) * torch.tensor([[1.0, 0.0]])).sum().backward()
    # alpha = 1.25. Through sign: 1 * alpha where |w| <= 1, 0 where |w| > 1. Through alpha:
    # d alpha / dw = sign(w) / 2, times sum(g * sign(w)) = 1.
    assert w.grad is not None
    assert w.grad.tolist() == [[1.25 + 0.5, -0.5]]


def test_binarize_keeps_first_and_last_layers() -> None:
    model, _ = build_model("mlp", (1, 8, 8), 10, hidden=[16, 16, 16])
    before = model(torch.ones(1, 1, 8, 8))
    binarize(model)
    layers = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [type(m) for m in layers] == [nn.Linear, BinaryLinear, BinaryLinear, nn.Linear]
    assert not torch.equal(model(torch.ones(1, 1, 8, 8)), before)
    with pytest.raises(onespike.ConfigError, match="at least 3 weight layers"):
        binarize(nn.Sequential(nn.Flatten(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))


def test_binary_model_round_trips_through_save_and_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, spec = build_model("convnet-bn", (1, 28, 28), 10, widths=[4, 8], hidden=16, binary=True)
    assert any(isinstance(m, BinaryConv2d) for m in model.modules())
    save_model(tmp_path / "m", model, spec, dataset="mnist", accuracy=0.5)
    loaded, meta = load_model(tmp_path / "m")
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model.eval()(x), loaded.eval()(x))
    assert meta["spec"]["kwargs"]["binary"] is True


def _binary_convnet() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(1)
    model, _ = build_model("convnet-bn", (1, 28, 28), 10, widths=[4, 8], hidden=16, binary=True)
    for module in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(-1.5, 1.5)
    return model.eval(), torch.rand(64, 1, 28, 28)


def test_binary_snn_synapses_are_plus_minus_one() -> None:
    model, x = _binary_convnet()
    graph = onespike.normalize(onespike.extract(model, x[:2]), [x])
    net = onespike.convert(graph, onespike.RateConfig(steps=32, binary=True))
    names = binary_populations(list(net.populations))
    assert len(names) == 2  # the second convolution and the hidden fully connected layer
    for name in names:
        pop = net[name]
        (proj,) = pop.projections
        assert proj.factor == 1.0
        (layer,) = [op for op in proj.ops if isinstance(op, (Linear, Conv2d))]
        assert set(layer.weight.unique().tolist()) == {-1.0, 1.0}
        assert isinstance(pop.threshold, torch.Tensor)
        assert bool((pop.threshold > 0).all())
    # First and last layers keep real weights.
    first = net.populations[1]
    assert first.name not in names
    assert net.output.name not in names
    # Dividing a membrane equation by a positive constant changes no spike: the +-1 network
    # fires like the one with real weights (up to float rounding at exact threshold ties).
    plain = onespike.simulate(onespike.convert(graph, onespike.RateConfig(steps=32)), x)
    ones = onespike.simulate(net, x)
    for name in names:
        same = (plain.spike_counts[name] == ones.spike_counts[name]).float().mean()
        assert float(same) > 0.99, name
    assert float((plain.predictions == ones.predictions).float().mean()) > 0.95


def test_binary_conversion_needs_binary_layers() -> None:
    model, _ = build_model("mlp", (1, 8, 8), 10, hidden=[16, 16])
    graph = onespike.extract(model.eval(), torch.rand(2, 1, 8, 8))
    with pytest.raises(onespike.ConfigError, match="no hidden layer with binary weights"):
        onespike.convert(graph, onespike.RateConfig(binary=True), normalized=False)
