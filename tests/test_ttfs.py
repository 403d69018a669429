"""Exact TTFS conversion: the stepped reference against the closed form, and hand-worked cases."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onespike
from onespike.convert.ttfs import _max_pool_codes, code_dtype, pool_windows, quantized_codes
from onespike.graph import AvgPool2d, Conv2d, Flatten, Graph, Linear, MaxPool2d, Node
from onespike.graph import ReLU as ReLUNode
from onespike.network import Population, Projection, forward_populations
from onespike.neurons import TTFSParams, ttfs_initial_state, ttfs_step
from onespike.simulate.ttfs import CodeTimes, encode_input
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


@pytest.mark.parametrize(
    ("steps", "dtype"),
    [
        (2, torch.uint8),
        (16, torch.uint8),
        (129, torch.uint8),
        (256, torch.uint8),
        (257, torch.int16),
    ],
)
def test_results_keep_codes_in_the_smallest_integer_type(steps: int, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    graph = Graph.sequential(
        (1, 6, 6),
        [
            Conv2d(torch.randint(-4, 5, (3, 1, 3, 3)).float() / 8, torch.tensor([0.25, 0, -0.5])),
            ReLUNode(),
            MaxPool2d((2, 2), (2, 2)),
            Flatten(),
            Linear(torch.randint(-4, 5, (4, 12)).float() / 8, torch.full((4,), 0.125)),
        ],
    )
    config = onespike.TTFSConfig(steps=steps)
    net = onespike.convert(graph, config, normalized=False)
    x = torch.rand(3, 1, 6, 6)
    fast = onespike.simulate(net, x)
    ref = onespike.simulate(net, x, method="stepped")
    assert code_dtype(config.levels) == dtype
    for result in (fast, ref):
        assert isinstance(result.spike_times, CodeTimes)
        for pop in net.populations:
            codes = result.spike_times.codes[pop.name]
            assert codes.dtype == dtype, pop.name
            # at most half the memory of float32 times (a quarter up to T = 256)
            assert 2 * codes.element_size() <= torch.finfo(torch.float32).bits // 8
            assert int(codes.max()) <= config.levels
            times = result.spike_times[pop.name]
            assert times.dtype == x.dtype
    for pop in net.populations:
        assert torch.equal(fast.spike_times[pop.name], ref.spike_times[pop.name]), pop.name
    assert torch.equal(fast.outputs, ref.outputs)
    assert torch.equal(fast.predictions, ref.predictions)
    assert fast.clipped == ref.clipped
    # decoded outputs are the integer codes times scale / L, in the input's dtype
    out = net.output
    expected = fast.spike_times.codes[out.name].to(x.dtype) * (out.scale / config.levels)
    assert torch.equal(fast.outputs, expected)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_quantized_codes_equal_the_quantised_ann_and_count_clipping(data: st.DataObject) -> None:
    """The fast closed form (factor folded into weights, constant in the bias, integer
    rounding) against the plain statement: every population of the ANN evaluated with
    ``clamp(floor(V + 1/2), 0, L)`` on float codes."""
    graph = data.draw(st.one_of(mlp_graphs(), cnn_graphs()))
    graph = with_dyadic_scales(data.draw, graph)
    levels = data.draw(st.sampled_from([1, 3, 15, 126, 127, 200, 300]))
    net = onespike.convert(graph, onespike.TTFSConfig(steps=levels + 1), normalized=False)
    x = _inputs(data.draw, graph.input_shape)
    input_codes = torch.floor(x * levels + 0.5)
    plain_clipped: dict[str, int] = {}

    def fire(pop: Population, potential: torch.Tensor) -> torch.Tensor:
        raw = torch.floor(potential + 0.5)
        plain_clipped[pop.name] = int((raw > levels).sum())
        return raw.clamp(0, levels)

    plain = forward_populations(
        list(net.populations), input_codes, activation=fire, bias_scale=levels
    )
    codes, _, clipped = quantized_codes(net.populations, input_codes, levels)
    for pop in net.populations:
        assert codes[pop.name].dtype == code_dtype(levels)
        assert torch.equal(codes[pop.name].to(torch.float32), plain[pop.name]), pop.name
    assert {name: int(count) for name, count in clipped.items()} == plain_clipped


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"),
    [
        ((2, 2), (2, 2), (0, 0)),
        ((3, 3), (2, 2), (1, 1)),
        ((2, 3), (1, 2), (1, 1)),
        ((3, 3), (3, 3), (0, 0)),
    ],
)
def test_max_pooling_of_codes_equals_torch(
    kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> None:
    torch.manual_seed(0)
    codes = torch.randint(0, 16, (2, 3, 7, 8))
    pool = MaxPool2d(kernel, stride, padding)
    expected = F.max_pool2d(codes.float(), kernel, stride, padding)
    assert torch.equal(_max_pool_codes(pool, codes.to(torch.uint8)).float(), expected)
    # the stepped simulator's first spike of each window: the minimum, silent (inf) included
    times = torch.where(codes == 0, math.inf, 20.0 - codes.float())
    earliest = pool_windows(pool, times, math.inf, torch.minimum)
    assert torch.equal(earliest, -F.max_pool2d(-times, kernel, stride, padding))


def test_fused_projection_equals_the_plain_one_for_power_of_two_factors() -> None:
    torch.manual_seed(0)
    conv = Conv2d(torch.randint(-8, 9, (4, 2, 3, 3)).float() / 8, None, (1, 1), (1, 1))
    x = torch.randint(0, 16, (3, 2, 6, 6)).float()
    uniform = torch.tensor([0.25, -0.5, 0.0, 1.0]).view(4, 1, 1).expand(4, 6, 6).clone()
    bordered = uniform.clone()
    bordered[:, 0, 0] += 0.125  # not the same at every position: added as a full tensor
    chains: list[tuple[tuple[Node, ...], torch.Tensor]] = [
        ((conv,), uniform),
        ((conv,), bordered),
        ((conv, AvgPool2d((2, 2), (2, 2), (1, 1))), uniform[:, :4, :4].clone()),
        ((), uniform[:2]),
        ((Flatten(),), uniform[:2].flatten()),
    ]
    for ops, bias in chains:
        for factor in (1.0, 0.5, 4.0):
            proj = Projection("input", ops, factor)
            plain = proj.apply(x) + bias * 15 + 0.5
            fused = proj.apply_fused(x, bias, bias_scale=15.0, shift=0.5)
            assert torch.equal(fused, plain), (ops, factor)
            again = proj.apply_fused(x, bias, bias_scale=15.0, shift=0.5)  # from the cache
            assert torch.equal(again, plain)
            total = plain.clone()
            assert torch.equal(proj.accumulate(total, x), plain + proj.apply(x))
    # the input is never written to, even through a view
    before = x.clone()
    Projection("input", (Flatten(),), 2.0).apply_fused(x.flatten(1)[:, :4].reshape(3, 2, 2))
    assert torch.equal(x, before)


def test_fused_weights_follow_a_moved_network() -> None:
    graph = Graph.sequential((2,), [Linear(torch.tensor([[1.0, -0.5]]), torch.tensor([0.25]))])
    net = onespike.convert(graph, onespike.TTFSConfig(steps=5), normalized=False)
    x = torch.tensor([[0.5, 1.0]])
    before = onespike.simulate(net, x)
    wide = net.to(dtype=torch.float64)
    proj = wide.output.projections[0]
    assert not proj._cache  # a moved projection starts with an empty cache
    after = onespike.simulate(wide, x.double())
    ops, rest = proj.fused_ops(torch.float64, torch.device("cpu"))
    assert isinstance(ops[0], Linear)
    assert ops[0].weight.dtype == torch.float64
    assert rest == 1.0
    assert torch.equal(before.outputs.double(), after.outputs)


def test_a_step_without_events_equals_a_step_with_zero_input() -> None:
    state = ttfs_initial_state((3,))
    state = ttfs_step(torch.tensor([0.5, -0.25, 1.0]), state, TTFSParams(threshold=2.5))[1]
    for params in (
        TTFSParams(threshold=2.5),
        TTFSParams(threshold=0.5, enabled=True),
        TTFSParams(threshold=2.5, counter=True, enabled=True),
        TTFSParams(threshold=2.5, enabled=True, force=True),
    ):
        spikes, new = ttfs_step(None, state, params)
        spikes_zero, new_zero = ttfs_step(torch.zeros(3), state, params)
        assert torch.equal(spikes, spikes_zero)
        for a, b in zip(new, new_zero, strict=True):
            assert torch.equal(a, b)
