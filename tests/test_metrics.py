"""Operation counts on hand-worked networks, and energy arithmetic."""

from __future__ import annotations

import pytest
import torch

import onespike
from onespike.graph import AvgPool2d, Conv2d, Flatten, Graph, Linear, MaxPool2d
from onespike.graph import ReLU as ReLUNode
from onespike.metrics import HOROWITZ_45NM, HOROWITZ_45NM_SRAM, LayerOps, OpsReport


def _conv_net() -> Graph:
    # 3x3 convolution, stride 2, padding 1, 1 -> 2 channels, on a 5x5 input: 2x3x3 outputs.
    conv = Conv2d(torch.full((2, 1, 3, 3), 0.125), torch.tensor([0.25, 0.0]), (2, 2), (1, 1))
    head = Linear(torch.full((3, 18), 0.125), torch.tensor([0.5, -0.5, 0.0]))
    return Graph.sequential((1, 5, 5), [conv, ReLUNode(), Flatten(), head])


def test_convolution_fanout_borders_and_stride() -> None:
    graph = _conv_net()
    x = torch.zeros(1, 1, 5, 5)
    # Rows (and columns) 0..4 reach 1, 2, 1, 2, 1 output rows: border and stride effects.
    x[0, 0, 0, 0] = 1.0  # 1 x 1 positions x 2 channels = 2 synapses
    x[0, 0, 1, 1] = 1.0  # 2 x 2 x 2 = 8
    x[0, 0, 2, 3] = 1.0  # 1 x 2 x 2 = 4
    x[0, 0, 4, 4] = 1.0  # 1 x 1 x 2 = 2
    net = onespike.convert(graph, onespike.TTFSConfig(steps=4, rectifier=False))
    for method in ("closed_form", "stepped"):
        result = onespike.simulate(net, x, method=method)
        report = onespike.count_ops(net, result)
        conv, head = report.layers[1], report.layers[2]
        assert report.layers[0].spikes == 4
        assert conv.synops == 16
        assert conv.bias_events == 9  # channel 1 has a zero bias: no event
        assert conv.counter_events == 18
        assert conv.rectifier_events == 0
        assert conv.neuron_updates == 18 * 7  # 2L + 1 steps, L = 3
        assert conv.macs == 0
        spikes = int(result.spikes(conv.name).sum())
        assert head.synops == 3 * spikes
        assert conv.memory_reads == 2 * (16 + 9 + 18) + 18 * 7
        assert conv.memory_writes == (16 + 9 + 18) + 18 * 7


def test_rectifier_adds_its_events_and_spikes() -> None:
    graph = _conv_net()
    x = torch.zeros(2, 1, 5, 5)
    net = onespike.convert(graph, onespike.TTFSConfig(steps=4))
    report = onespike.count_ops(net, onespike.simulate(net, x))
    # Every neuron fires once: 25 input spikes per sample, each with its real fan-out.
    assert report.layers[0].spikes == 50
    assert report.layers[1].synops == 2 * 98  # 7 x 7 reachable (row, column) pairs x 2 channels
    assert report.layers[1].rectifier_events == 36
    assert report.layers[2].synops == 2 * 18 * 3
    assert report.spikes_per_neuron() == 1.0
    assert report.samples == 2


def test_ann_macs_count_real_connections() -> None:
    graph = _conv_net()
    report = onespike.count_ops(graph, torch.zeros(3, 1, 5, 5))
    # Corner outputs see 4 pixels, edge outputs 6, the centre 9: (4*4 + 4*6 + 9) * 2 = 98.
    assert report.layers[1].macs == 98 * 3
    assert report.layers[2].macs == 54 * 3
    assert report.layers[1].bias_events == 9 * 3
    assert report.total("macs") == (98 + 54) * 3
    assert onespike.count_ops(graph, 3).total("macs") == report.total("macs")


def test_pooling_counts() -> None:
    conv = Conv2d(torch.ones(1, 1, 1, 1), None)
    layers = [
        conv,
        ReLUNode(),
        MaxPool2d((2, 2), (2, 2)),
        AvgPool2d((2, 2), (2, 2)),
        Flatten(),
        Linear(torch.ones(2, 1)),
    ]
    graph = Graph.sequential((1, 4, 4), layers)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 3, 3] = x[0, 0, 0, 1] = 1.0
    net = onespike.convert(graph, onespike.TTFSConfig(steps=3, rectifier=False))
    report = onespike.count_ops(net, onespike.simulate(net, x, method="stepped"))
    names = [layer.kind for layer in report.layers]
    assert names == ["input", "neuron", "maxpool", "neuron"]
    assert report.layers[2].synops == 3  # each 2x2 window is disjoint: one route per spike
    assert report.layers[2].spikes == 2  # windows (0,0) and (1,1) fire, first spike wins
    assert report.layers[3].synops == 2 * 2  # each pooled spike reaches 1 avg-pool output x 2
    ann = onespike.count_ops(graph, 1)
    assert ann.layers[2].comparisons == 4 * 3


def test_reports_add_and_validate() -> None:
    a = OpsReport("ttfs", 2, (LayerOps("x", "neuron", 4, spikes=3, synops=10),))
    b = OpsReport("ttfs", 3, (LayerOps("x", "neuron", 4, spikes=5, synops=2),))
    total = a + b
    assert total.samples == 5
    assert total.total("synops") == 12
    assert total.per_sample("spikes") == pytest.approx(8 / 5)
    with pytest.raises(onespike.ConfigError, match="unknown count"):
        total.total("flops")
    with pytest.raises(onespike.ConfigError):
        a + OpsReport("ann", 1, (LayerOps("x", "neuron", 4),))


def test_energy_prices_counts() -> None:
    layer = LayerOps(
        "x",
        "neuron",
        4,
        synops=100,
        bias_events=4,
        counter_events=4,
        rectifier_events=4,
        macs=10,
        comparisons=2,
        neuron_updates=20,
        memory_reads=7,
        memory_writes=3,
    )
    report = OpsReport("ttfs", 2, (layer,))
    energy = onespike.estimate_energy(report)
    assert energy.layers[0].compute_pj == pytest.approx(10 * 4.6 + (112 + 2) * 0.9)
    assert energy.layers[0].neuron_pj == pytest.approx(20 * 0.9)
    assert energy.layers[0].memory_pj == 0.0
    assert energy.per_sample_pj == pytest.approx(energy.total_pj / 2)
    sram = onespike.estimate_energy(report, "45nm-sram")
    assert sram.layers[0].memory_pj == pytest.approx(10 * 10.0)
    assert sram.model is HOROWITZ_45NM_SRAM
    assert energy.model is HOROWITZ_45NM
    with pytest.raises(onespike.ConfigError, match="unknown energy model"):
        onespike.estimate_energy(report, "7nm")
    with pytest.raises(onespike.ConfigError, match="mac_pj"):
        onespike.EnergyModel("bad", -1.0, 0.0, 0.0, 0.0, "")


def test_count_ops_argument_errors() -> None:
    graph = _conv_net()
    net = onespike.convert(graph, onespike.TTFSConfig(steps=3))
    with pytest.raises(onespike.ConfigError, match="SimResult"):
        onespike.count_ops(net, torch.zeros(1, 1, 5, 5))
    with pytest.raises(onespike.ShapeError):
        onespike.count_ops(graph, torch.zeros(1, 1, 4, 4))
    with pytest.raises(onespike.ConfigError, match="sample count"):
        onespike.count_ops(graph, 0)
