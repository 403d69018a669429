"""Operation counts on hand-worked networks, and energy arithmetic."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import onespike
from onespike.graph import AvgPool2d, Conv2d, Flatten, Graph, Linear, MaxPool2d
from onespike.graph import ReLU as ReLUNode
from onespike.metrics import HOROWITZ_45NM, HOROWITZ_45NM_SRAM, LayerOps, OpsReport
from onespike.simulate.ttfs import stop_at_decision


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
    net = onespike.convert(graph, onespike.TTFSConfig(steps=4, rectifier=False), normalized=False)
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
    net = onespike.convert(graph, onespike.TTFSConfig(steps=4), normalized=False)
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
    net = onespike.convert(graph, onespike.TTFSConfig(steps=3, rectifier=False), normalized=False)
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
    net = onespike.convert(graph, onespike.TTFSConfig(steps=3), normalized=False)
    with pytest.raises(onespike.ConfigError, match="SimResult"):
        onespike.count_ops(net, torch.zeros(1, 1, 5, 5))
    with pytest.raises(onespike.ShapeError):
        onespike.count_ops(graph, torch.zeros(1, 1, 4, 4))
    with pytest.raises(onespike.ConfigError, match="sample count"):
        onespike.count_ops(graph, 0)


def _tiny_ttfs(**options: object) -> tuple[onespike.SpikingNetwork, onespike.SimResult]:
    # 2 inputs -> 2 hidden -> 2 outputs, T = 3 (L = 2). Input codes floor(2x + 1/2) = (2, 1)
    # fire at steps 0 and 1. Hidden V = (0.5*2 + 0.25*1 + 2*0.25, -0.5*2 + 0.5*1) = (1.75,
    # -0.5): codes (2, 0), times r + L - k = (2, 4) (4 is the rectifier's). Output V =
    # (1*2, 0.25*2 + 2*0.25) = (2, 1): codes (2, 1), times (4, 5); the class is 0, decided at
    # step 4, the fifth step.
    hidden = Linear(torch.tensor([[0.5, 0.25], [-0.5, 0.5]]), torch.tensor([0.25, 0.0]))
    head = Linear(torch.tensor([[1.0, 0.5], [0.25, -1.0]]), torch.tensor([0.0, 0.25]))
    graph = Graph.sequential((2,), [hidden, ReLUNode(), head])
    net = onespike.convert(graph, onespike.TTFSConfig(steps=3, **options), normalized=False)  # type: ignore[arg-type]
    return net, onespike.simulate(net, torch.tensor([[1.0, 0.5]]), method="stepped")


def test_quartz_convention_by_hand() -> None:
    net, result = _tiny_ttfs()
    report = onespike.count_ops(net, result, convention="quartz")
    assert report.convention == "quartz"
    hidden, out = report.layers[1], report.layers[2]
    # Hidden inputs, window steps 0..2: step 0 the first pixel (0.5, -0.5) plus the bias
    # (0.25, 0): 2 non-zero entries; step 1 the second pixel (0.25, 0.5): 2; step 2 the
    # counter, 1 - current = 1 - (1.0, 0.0) = (0, 1): 1. Five in all.
    assert hidden.synops == 5
    # Output, steps 2..4: step 2 hidden spike 0 (1, 0.25) plus the bias (0, 0.25): 2; step 3
    # nothing; step 4 the counter 1 - (1, 0.5) = (0, 0.5): 1 (the rectifier spike of hidden
    # neuron 1 arriving at 4 is overwritten by the counter, as in Quartz's code).
    assert out.synops == 3
    # N = 4 neurons, t_max = 3: ops = synops + 2 N t_max, reads + 4 N t_max, writes + N t_max.
    assert report.total("synops") == 8
    assert report.total("operations") == 8 + 2 * 4 * 3
    assert report.total("memory_reads") == 8 + 4 * 4 * 3
    assert report.total("memory_writes") == 8 + 4 * 3
    assert report.total("bias_events") == report.total("counter_events") == 0
    assert [layer.spikes for layer in report.layers] == [2, 2, 2]


def test_sinabs_convention_by_hand() -> None:
    net, result = _tiny_ttfs()
    report = onespike.count_ops(net, result, convention="sinabs")
    # 2 input spikes x 2 targets, 2 hidden spikes (one forced) x 2 targets; nothing else.
    assert [layer.synops for layer in report.layers] == [0, 4, 4]
    assert report.total("operations") == 8
    assert report.total("neuron_updates") == report.total("memory_reads") == 0
    silent, quiet = _tiny_ttfs(rectifier=False)
    assert onespike.count_ops(silent, quiet, convention="sinabs").total("synops") == 4 + 2
    # Spikes routed into max pooling are not synops in this convention.
    conv = Conv2d(torch.ones(1, 1, 1, 1), None)
    graph = Graph.sequential(
        (1, 2, 2),
        [conv, ReLUNode(), MaxPool2d((2, 2), (2, 2)), Flatten(), Linear(torch.ones(3, 1))],
    )
    pooled = onespike.convert(
        graph, onespike.TTFSConfig(steps=3, rectifier=False), normalized=False
    )
    x = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    res = onespike.simulate(pooled, x)
    mine = onespike.count_ops(pooled, res)
    theirs = onespike.count_ops(pooled, res, convention="sinabs")
    assert [layer.synops for layer in mine.layers] == [0, 2, 2, 3]  # 2 routed into 1 window
    assert [layer.synops for layer in theirs.layers] == [0, 2, 0, 3]


def test_onespike_counts_and_stop_at_decision_by_hand() -> None:
    net, result = _tiny_ttfs()
    assert result.decision_steps is not None
    assert result.decision_steps.tolist() == [5]
    assert int(result.predictions[0]) == 0
    full = onespike.count_ops(net, result)
    assert [layer.neuron_updates for layer in full.layers] == [0, 2 * 5, 2 * 5]
    assert full.layers[2].rectifier_events == 2
    stopped_net, stopped = _tiny_ttfs(stop_at_decision=True)
    assert stopped.sample_steps is not None
    assert stopped.sample_steps.tolist() == [5]
    assert stopped.total_steps() == 5
    assert int(stopped.predictions[0]) == 0
    report = onespike.count_ops(stopped_net, stopped)
    hidden, out = report.layers[1], report.layers[2]
    assert hidden == full.layers[1]  # its window (steps 0..4) ends before the stop
    # The output's window is steps 2..6: 3 steps run (2, 3, 4); its second neuron's spike at
    # 5 and the rectifier events at 6 never happen.
    assert out.spikes == 1
    assert out.neuron_updates == 2 * 3
    assert out.rectifier_events == 0
    assert out.counter_events == 2
    assert out.bias_events == 1
    assert out.memory_reads == 2 * (4 + 1 + 2) + 6
    # The same from the full result, without a second simulation.
    assert onespike.count_ops(net, stop_at_decision(net, result)) == report


def test_conventions_refuse_what_they_cannot_count() -> None:
    net, result = _tiny_ttfs()
    with pytest.raises(onespike.ConfigError, match="not one of"):
        onespike.count_ops(net, result, convention="neurobench")  # type: ignore[arg-type]
    with pytest.raises(onespike.ConfigError, match="spiking networks"):
        onespike.count_ops(_conv_net(), 1, convention="quartz")
    rate = onespike.convert(_conv_net(), onespike.RateConfig(steps=2), normalized=False)
    rate_result = onespike.simulate(rate, torch.zeros(1, 1, 5, 5))
    with pytest.raises(onespike.ConfigError, match="TTFS"):
        onespike.count_ops(rate, rate_result, convention="quartz")
    a = onespike.count_ops(net, result)
    b = onespike.count_ops(net, result, convention="quartz")
    with pytest.raises(onespike.ConfigError, match="conventions"):
        a + b
    assert onespike.count_ops(rate, rate_result, convention="sinabs").convention == "sinabs"


def test_summary_rows_carry_decision_time_and_both_energies() -> None:
    from onespike.data import Dataset
    from onespike.evaluate import decision_summary, evaluate_snn, summarize

    net, _ = _tiny_ttfs()
    # Second sample: all-zero input. Hidden V = (0.5, 0): codes (1, 0) at (3, 4); output
    # V = (1, 0.75): codes (1, 1) at step 5: decided in the sixth step.
    images = torch.tensor([[1.0, 0.5], [0.0, 0.0]])
    data = Dataset("tiny", "test", images, torch.tensor([0, 1]), 2)
    evaluation = evaluate_snn(net, data, batch_size=1)
    assert evaluation.decision_steps is not None
    assert evaluation.decision_steps.tolist() == [5, 6]
    graph = Graph.sequential(
        (2,),
        [
            Linear(torch.tensor([[0.5, 0.25], [-0.5, 0.5]]), torch.tensor([0.25, 0.0])),
            ReLUNode(),
            Linear(torch.tensor([[1.0, 0.5], [0.25, -1.0]]), torch.tensor([0.0, 0.25])),
        ],
    )
    row = summarize(
        dataset="tiny",
        model="tiny",
        method="ttfs",
        steps=3,
        ann_accuracy=1.0,
        evaluation=evaluation,
        ann_graph=graph,
        energy_model="45nm",
    )
    assert row["energy_counts"] == "compute only"
    assert row["decision_steps_mean"] == 5.5
    assert row["decision_steps_max"] == 6
    assert row["decision_steps_p50"] == 5
    assert row["decision_steps_p99"] == 6
    assert row["latency_steps"] == 7
    # Stopped at its decision a sample skips its output's later spikes, rectifier events and
    # window steps: fewer events and less energy than the full run, never more.
    assert row["synaptic_events_to_decision"] < row["synaptic_events"]
    assert row["snn_energy_to_decision_pj"] < row["snn_energy_pj"]
    assert row["spikes_to_decision"] < row["spikes"]
    assert decision_summary(torch.arange(1, 101)) == {
        "decision_steps_mean": 50.5,
        "decision_steps_max": 100.0,
        "decision_steps_p50": 50.0,
        "decision_steps_p90": 90.0,
        "decision_steps_p99": 99.0,
    }
    assert HOROWITZ_45NM_SRAM.counts == "compute + memory"


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_conversion_without_gradients_counts_the_same_synapses(context: Any) -> None:
    """Fan-outs are gradients of a structural pass; a conversion inside ``torch.no_grad()``
    or ``torch.inference_mode()`` (as user code often runs) must count the same ones."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(4 * 4 * 4, 3),
    ).eval()  # fmt: skip
    x = torch.rand(8, 1, 8, 8)
    graph = onespike.normalize(onespike.extract(model, x[:2]), [x])
    for config in (onespike.TTFSConfig(steps=4), onespike.RateConfig(steps=4)):
        expected = onespike.convert(graph, config)
        with context():
            net = onespike.convert(graph, config)
        assert net.fanouts.keys() == expected.fanouts.keys()
        for name, fans in expected.fanouts.items():
            assert all(torch.equal(a, b) for a, b in zip(net.fanouts[name], fans, strict=True))
        counted = onespike.count_ops(net, onespike.simulate(net, x)).per_sample("synops")
        reference = onespike.count_ops(expected, onespike.simulate(expected, x))
        assert counted == reference.per_sample("synops") > 0
