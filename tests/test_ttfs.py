"""Exact TTFS conversion: the stepped reference against the closed form, and hand-worked cases."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onespike
from onespike.convert.ttfs import quantized_codes
from onespike.graph import Graph, Linear
from onespike.neurons import TTFSParams, ttfs_initial_state, ttfs_step
from onespike.simulate.ttfs import encode_input
from tests.helpers import cnn_graphs, mlp_graphs, with_dyadic_scales


def _inputs(draw: st.DrawFn, shape: tuple[int, ...]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.rand((4, *shape), generator=gen)
    # Put some values exactly on the edges of the code range and on grid ties.
    x[0].view(-1)[::3] = 0.0
    x[1].view(-1)[::4] = 1.0
    return x


@settings(max_examples=220, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stepped_and_closed_form_agree_exactly(data: st.DataObject) -> None:
    graph = data.draw(st.one_of(mlp_graphs(), cnn_graphs()))
    if data.draw(st.booleans()):
        graph = with_dyadic_scales(data.draw, graph)
    config = onespike.TTFSConfig(
        steps=data.draw(st.sampled_from([2, 3, 4, 5, 8, 9, 16])),
        rectifier=data.draw(st.booleans()),
    )
    net = onespike.convert(graph, config, normalized=False)
    x = _inputs(data.draw, graph.input_shape)

    fast = onespike.simulate(net, x, method="closed_form")
    ref = onespike.simulate(net, x, method="stepped")

    for pop in net.populations:
        assert torch.equal(fast.spike_times[pop.name], ref.spike_times[pop.name]), pop.name
        counts = ref.spike_counts[pop.name]
        assert int(counts.max()) <= 1, f"{pop.name}: a neuron fired twice"
        assert torch.equal(counts.bool(), torch.isfinite(ref.spike_times[pop.name]))
        if config.rectifier:
            assert bool((counts == 1).all()), f"{pop.name}: rectifier left a neuron silent"
    assert torch.equal(fast.predictions, ref.predictions)
    assert torch.equal(fast.outputs, ref.outputs)
    assert fast.clipped == ref.clipped
    assert fast.steps == ref.steps == config.levels * (net.depth + 1) + 1
    # The decision: the earliest output spike, counted from 1; a silent output, the window.
    assert fast.decision_steps is not None
    assert ref.decision_steps is not None
    assert torch.equal(fast.decision_steps, ref.decision_steps)
    first = ref.spike_times[net.output.name].flatten(1).min(dim=1).values
    expected_decision = torch.where(torch.isfinite(first), first + 1, float(ref.steps))
    assert torch.equal(ref.decision_steps, expected_decision.long())
    readout = config.levels * net.depth
    assert bool((ref.decision_steps > readout).all())  # no output fires before its readout
    # Every counting convention counts the two simulators' spikes alike.
    for convention in ("onespike", "quartz", "sinabs"):
        assert onespike.count_ops(net, fast, convention) == onespike.count_ops(
            net, ref, convention
        ), convention
    # Stopping at the decision keeps the class and removes only later output spikes.
    stopped = onespike.simulate(
        onespike.convert(graph, replace(config, stop_at_decision=True), normalized=False),
        x,
        method="stepped",
    )
    assert torch.equal(stopped.predictions, ref.predictions)
    assert stopped.sample_steps is not None
    assert torch.equal(stopped.sample_steps, ref.decision_steps)
    for pop in net.populations:
        kept = ref.spike_times[pop.name] < ref.decision_steps.view(-1, *[1] * len(pop.shape))
        assert torch.equal(torch.isfinite(stopped.spike_times[pop.name]), kept), pop.name
        if not pop.is_output:
            assert torch.equal(stopped.spike_times[pop.name], ref.spike_times[pop.name])

    # Decoded outputs are the quantised ANN stated in onespike.convert.ttfs.
    codes, _, _ = quantized_codes(net.populations, encode_input(x, config)[0], config.levels)
    expected = codes[net.output.name] * (net.output.scale / config.levels)
    assert torch.equal(ref.outputs, expected)


def test_neuron_membrane_trajectory_by_hand() -> None:
    # L = 3, threshold 2.5. Input weight 0.5 arrives at t=0, weight -0.25 at t=2, counter at
    # t=3 (readout), spiking enabled from t=3.
    state = ttfs_initial_state((1,))
    events = {0: 0.5, 2: -0.25}
    trajectory = []
    spikes_at = []
    for t in range(7):
        params = TTFSParams(threshold=2.5, counter=t == 3, enabled=t >= 3, force=t == 6)
        spikes, state = ttfs_step(torch.tensor([events.get(t, 0.0)]), state, params)
        trajectory.append((float(state.i[0]), float(state.v[0])))
        if bool(spikes[0]):
            spikes_at.append(t)
    # v(t) = sum_j w_j (t - t_j) until the readout, then + 1 per step.
    assert trajectory == [
        (0.5, 0.0),
        (0.5, 0.5),
        (0.25, 1.0),
        (1.0, 1.25),  # readout: V = 0.5*3 - 0.25*1 = 1.25, counter sets i = 1
        (1.0, 2.25),
        (1.0, 3.25),  # 3.25 >= 2.5: fires at t=5, code L - (5 - 3) = 1 = floor(1.25 + 0.5)
        (1.0, 4.25),
    ]
    assert spikes_at == [5]


def test_hand_worked_layer() -> None:
    # x = [0.5, 1], T = 5 (L = 4): codes [2, 4]. V = 1*2 - 0.5*4 + 0.25*4 = 1: code 1.
    graph = Graph.sequential((2,), [Linear(torch.tensor([[1.0, -0.5]]), torch.tensor([0.25]))])
    net = onespike.convert(graph, onespike.TTFSConfig(steps=5), normalized=False)
    x = torch.tensor([[0.5, 1.0]])
    for method in ("closed_form", "stepped"):
        result = onespike.simulate(net, x, method=method)
        assert result.spike_times["input"].tolist() == [[2.0, 0.0]]
        assert result.spike_times["0"].tolist() == [[7.0]]  # r + L - k = 4 + 4 - 1
        assert result.outputs.tolist() == [[0.25]]


def test_output_ties_break_by_membrane_then_index() -> None:
    # Three classes with potentials 2.25, 2.0, 2.25 at L = 3: all code 2 (same spike time).
    weight = torch.tensor([[0.75], [2.0 / 3.0], [0.75]])
    graph = Graph.sequential((1,), [Linear(weight)])
    net = onespike.convert(graph, onespike.TTFSConfig(steps=4), normalized=False)
    x = torch.tensor([[1.0]])
    for method in ("closed_form", "stepped"):
        result = onespike.simulate(net, x, method=method)
        assert result.spike_times["0"].tolist() == [[4.0, 4.0, 4.0]]
        assert result.predictions.tolist() == [0]  # larger membrane than class 1, lower index


def test_rectifier_off_keeps_zero_codes_silent() -> None:
    graph = Graph.sequential((3,), [Linear(torch.eye(3))])
    x = torch.tensor([[0.0, 0.5, 1.0]])
    silent = onespike.simulate(
        onespike.convert(graph, onespike.TTFSConfig(steps=3, rectifier=False), normalized=False), x
    )
    assert silent.spike_times["input"].tolist() == [[math.inf, 1.0, 0.0]]
    assert silent.spike_times["0"].tolist() == [[math.inf, 3.0, 2.0]]
    loud = onespike.simulate(
        onespike.convert(graph, onespike.TTFSConfig(steps=3), normalized=False), x
    )
    assert loud.spike_times["0"].tolist() == [[4.0, 3.0, 2.0]]
    assert torch.equal(silent.outputs, loud.outputs)


def test_values_above_range_are_clipped_and_reported() -> None:
    graph = Graph.sequential((1,), [Linear(torch.tensor([[3.0]]))])
    net = onespike.convert(graph, onespike.TTFSConfig(steps=5), normalized=False)
    for method in ("closed_form", "stepped"):
        result = onespike.simulate(net, torch.tensor([[1.0], [0.25]]), method=method)
        assert result.outputs.tolist() == [[1.0], [0.75]]
        assert result.clipped == {"input": 0, "0": 1}


def test_bad_inputs_raise_clear_errors() -> None:
    graph = Graph.sequential((2,), [Linear(torch.ones(1, 2))])
    with pytest.raises(onespike.ConfigError, match="steps >= 2"):
        onespike.TTFSConfig(steps=1)
    with pytest.raises(onespike.ConfigError, match="input_range"):
        onespike.TTFSConfig(input_range="wrap")  # type: ignore[arg-type]
    net = onespike.convert(graph, onespike.TTFSConfig(steps=4), normalized=False)
    with pytest.raises(onespike.ShapeError, match=r"expected \(batch, 2\)"):
        onespike.simulate(net, torch.zeros(3, 3))
    with pytest.raises(onespike.CodeRangeError, match="outside"):
        onespike.simulate(net, torch.tensor([[1.5, 0.0]]))
    with pytest.raises(onespike.CodeRangeError, match="NaN"):
        onespike.simulate(net, torch.tensor([[math.nan, 0.0]]))
    clip = onespike.convert(
        graph, onespike.TTFSConfig(steps=4, input_range="clip"), normalized=False
    )
    result = onespike.simulate(clip, torch.tensor([[1.5, -0.5]]))
    assert result.clipped["input"] == 2
    assert result.spike_times["input"].tolist() == [[0.0, 3.0]]
    with pytest.raises(onespike.ConfigError, match="method"):
        onespike.simulate(net, torch.zeros(1, 2), method="euler")  # type: ignore[arg-type]
    with pytest.raises(onespike.ConfigError, match="extract"):
        onespike.convert(torch.nn.Linear(2, 2), onespike.TTFSConfig())  # type: ignore[arg-type]


def test_large_T_approaches_the_ann() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
    ).eval()
    x = torch.rand(64, 6)
    graph = onespike.normalize(onespike.extract(model, x), [x], percentile=100.0)
    ann = model(x).detach()
    errors = []
    for steps in (9, 65, 1025):
        net = onespike.convert(graph, onespike.TTFSConfig(steps=steps))
        out = onespike.simulate(net, x).outputs
        positive = ann.clamp(min=0)
        errors.append(float((out - positive).abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.01
