"""Rate coding: the IF neuron by hand, both simulators, pooling, early exit and counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from itertools import pairwise

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onespike
from onespike.convert.config import DEFAULT_DITHER
from onespike.graph import Conv2d, Flatten, Graph, Input, Linear, MaxPool2d, Output, ReLU, max_pool
from onespike.neurons import IFParams, IFState, accumulate_step, if_step
from onespike.simulate.rate import input_dither, pool_spikes, simulate_checkpoints
from tests.helpers import cnn_graphs, mlp_graphs, with_dyadic_scales


def _trajectory(reset: str, current: float, steps: int) -> tuple[list[float], list[int]]:
    state = IFState(torch.zeros(1))
    membranes, spikes = [], []
    for _ in range(steps):
        s, state = if_step(torch.tensor([current]), state, IFParams(1.0, reset))
        membranes.append(float(state.v))
        spikes.append(int(s))
    return membranes, spikes


def test_if_neuron_reset_by_subtraction_by_hand() -> None:
    membranes, spikes = _trajectory("subtract", 0.375, 8)
    # 0.375, 0.75, 1.125 -> fire, keep 0.125; 0.5, 0.875, 1.25 -> fire, keep 0.25; ...
    assert membranes == [0.375, 0.75, 0.125, 0.5, 0.875, 0.25, 0.625, 0.0]
    assert spikes == [0, 0, 1, 0, 0, 1, 0, 1]
    assert sum(spikes) == int(8 * 0.375)  # the rate is exact when the surplus is kept


def test_if_neuron_reset_to_zero_by_hand() -> None:
    membranes, spikes = _trajectory("zero", 0.375, 8)
    # The surplus is lost at every spike: one spike every third step.
    assert membranes == [0.375, 0.75, 0.0, 0.375, 0.75, 0.0, 0.375, 0.75]
    assert spikes == [0, 0, 1, 0, 0, 1, 0, 0]


def test_if_neuron_threshold_per_channel_and_negative_current() -> None:
    state = IFState(torch.tensor([[0.0, 0.0], [0.5, -1.0]]))
    threshold = torch.tensor([0.5, 2.0])
    spikes, state = if_step(
        torch.tensor([[0.5, 2.5], [-0.25, 0.5]]), state, IFParams(threshold, "subtract")
    )
    assert spikes.tolist() == [[1.0, 1.0], [0.0, 0.0]]
    assert state.v.tolist() == [[0.0, 0.5], [0.25, -0.5]]
    assert accumulate_step(torch.tensor([1.5]), IFState(torch.tensor([-0.5]))).v.tolist() == [1.0]


def test_max_pooling_spikes_when_the_largest_count_grows() -> None:
    pool = MaxPool2d((2, 2), (2, 2), (0, 0))
    counts = torch.tensor([[[[3.0, 5.0], [5.0, 1.0]]]])  # after this step's spikes
    spikes = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])
    # Neuron (1,0) reached 5 this step while (0,1) already had 5: the maximum did not grow.
    assert pool_spikes(pool, spikes, counts).tolist() == [[[[0.0]]]]
    spikes[0, 0, 0, 1] = 1.0  # now both leaders were at 4: the maximum grew from 4 to 5
    assert pool_spikes(pool, spikes, counts).tolist() == [[[[1.0]]]]


def test_pooled_count_is_the_largest_count_at_every_step() -> None:
    pool = MaxPool2d((2, 2), (2, 2), (1, 1))
    gen = torch.Generator().manual_seed(5)
    counts = torch.zeros(3, 2, 5, 5)
    pooled = torch.zeros(3, 2, 3, 3)
    for _ in range(40):
        spikes = (torch.rand(counts.shape, generator=gen) < 0.3).float()
        counts += spikes
        pooled += pool_spikes(pool, spikes, counts)
        assert torch.equal(pooled, torch.nn.functional.max_pool2d(counts, 2, 2, 1))


_THRESHOLDS = {
    "float": 0.7,
    "per channel": torch.tensor([[0.3], [1.1], [0.7]]),
    "per neuron": torch.rand(3, 5, generator=torch.Generator().manual_seed(2)) + 0.2,
}


@pytest.mark.parametrize("threshold", _THRESHOLDS.values(), ids=_THRESHOLDS.keys())
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_if_step_in_place_equals_the_functional_step(
    threshold: float | torch.Tensor, reset: str
) -> None:
    params = IFParams(threshold, reset)
    gen = torch.Generator().manual_seed(3)
    start = torch.randn(4, 3, 5, generator=gen)
    functional, in_place = IFState(start.clone()), IFState(start.clone())
    membrane, buffer = in_place.v, torch.full_like(start, 7.0)
    fired = 0.0
    for _ in range(30):
        z = torch.randn(4, 3, 5, generator=gen) * 0.6  # not dyadic, both signs
        previous, before = functional.v, functional.v.clone()
        spikes, functional = if_step(z, functional, params)
        assert torch.equal(previous, before)  # the functional step leaves its input alone
        s, in_place = if_step(z, in_place, params, out=buffer)
        assert s is buffer
        assert in_place.v is membrane
        # bit for bit: compare the float32 words, not only the values
        assert torch.equal(s.view(torch.int32), spikes.view(torch.int32))
        assert torch.equal(in_place.v.view(torch.int32), functional.v.view(torch.int32))
        fired += float(s.sum())
    assert 0 < fired < 30 * start.numel()  # some neurons fired, not all at every step


def test_accumulate_step_in_place_equals_the_functional_step() -> None:
    gen = torch.Generator().manual_seed(4)
    functional = IFState(torch.randn(3, 10, generator=gen))
    in_place = IFState(functional.v.clone())
    membrane = in_place.v
    for _ in range(10):
        z = torch.randn(3, 10, generator=gen)
        functional = accumulate_step(z, functional)
        in_place = accumulate_step(z, in_place, out=in_place.v)
        assert in_place.v is membrane
        assert torch.equal(in_place.v.view(torch.int32), functional.v.view(torch.int32))


def _allocated_bytes(step: Callable[[], object]) -> list[int]:
    """The sizes of the memory blocks the operators ``step`` calls allocate on the CPU."""
    with torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    ) as prof:
        step()
    return [e.self_cpu_memory_usage for e in prof.events() if e.self_cpu_memory_usage > 0]


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_in_place_if_step_allocates_no_state(reset: str) -> None:
    threshold = torch.full((1, 256), 0.5)
    state = IFState(torch.zeros(8, 256))
    z, buffer = torch.rand(8, 256, generator=torch.Generator().manual_seed(1)), torch.empty(8, 256)
    membrane = state.v.data_ptr()

    def steps() -> None:
        nonlocal state
        for _ in range(5):
            _, state = if_step(z, state, IFParams(threshold, reset), out=buffer)

    blocks = _allocated_bytes(steps)
    assert state.v.data_ptr() == membrane
    # reset by subtraction: nothing at all; reset to zero: the 1-byte mask of the fired
    # neurons at each step (a quarter of the float32 membrane).
    assert blocks == ([] if reset == "subtract" else [8 * 256] * 5)
    _, functional = if_step(z, IFState(torch.zeros(8, 256)), IFParams(threshold, reset))
    assert max(_allocated_bytes(lambda: if_step(z, functional, IFParams(threshold)))) >= 8 * 256 * 4


def _allocated_per_step(net: onespike.SpikingNetwork, x: torch.Tensor) -> float:
    """Bytes the rate simulator allocates per step: runs of 8 and 4 steps, differenced."""
    runs = {
        steps: sum(_allocated_bytes(lambda steps=steps: simulate_checkpoints(net, x, [steps])))
        for steps in (4, 8)
    }
    return (runs[8] - runs[4]) / 4


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_a_simulation_step_allocates_only_the_projections_outputs(reset: str) -> None:
    gen = torch.Generator().manual_seed(7)
    names = ["input", "fc1", "relu1", "fc2", "relu2", "fc3", "output"]
    graph = Graph(
        {
            "input": Input((64,)),
            "fc1": Linear(torch.randn(128, 64, generator=gen) / 8, torch.zeros(128)),
            "relu1": ReLU(),
            "fc2": Linear(
                torch.randn(128, 128, generator=gen) / 8, torch.rand(128, generator=gen) / 8
            ),
            "relu2": ReLU(),
            "fc3": Linear(torch.randn(10, 128, generator=gen) / 8, torch.zeros(10)),
            "output": Output(),
        },
        list(pairwise(names)),
    )
    net = onespike.convert(graph, onespike.RateConfig(steps=8, reset=reset), normalized=False)
    x = torch.rand(16, 64, generator=gen)
    # Per step: the outputs of the projections of spikes (fc2: 16 x 128, fc3: 16 x 10, float32),
    # the 1-byte fired mask of each hidden population with reset to zero, the step's row of
    # predictions (int64) in the record and in the result's copy of it, and a few scalars. The
    # first layer's current is computed once; membranes, spikes and counts are updated in
    # place (the code of 1123785 allocated about 13 times the outputs here).
    outputs = 16 * (128 + 10) * 4
    masks = 0 if reset == "subtract" else 16 * 128 * 2
    records = 2 * 16 * 8
    assert 0 <= _allocated_per_step(net, x) - (outputs + masks + records) <= 64


@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("stride", [1, 2])
def test_one_pool_per_step_equals_the_two_pool_formula(stride: int, padding: int) -> None:
    pool = MaxPool2d((2, 2), (stride, stride), (padding, padding))
    gen = torch.Generator().manual_seed(6)
    counts = torch.zeros(3, 2, 6, 6)
    windows = torch.nn.functional.max_pool2d(counts, 2, stride, padding)
    for _ in range(40):
        spikes = (torch.rand(counts.shape, generator=gen) < 0.4).float()
        counts += spikes
        two_pools = max_pool(pool, counts) - max_pool(pool, counts - spikes)
        assert torch.equal(pool_spikes(pool, spikes, counts), two_pools)
        assert torch.equal(pool_spikes(pool, spikes, counts, pooled=windows), two_pools)
        assert torch.equal(windows, max_pool(pool, counts))  # advanced in place


def _configs(draw: st.DrawFn) -> onespike.RateConfig:
    return onespike.RateConfig(
        steps=draw(st.sampled_from([1, 2, 5, 12])),
        reset=draw(st.sampled_from(["subtract", "zero"])),
        input=draw(st.sampled_from(["analog", "poisson"])),
        seed=draw(st.integers(0, 5)),
        threshold_scale=draw(st.sampled_from([1.0, 0.5, 0.25])),
        initial_membrane=draw(st.sampled_from([0.0, 0.5])),
        early_exit=draw(st.sampled_from([0, 1, 3])),
    )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_stepped_and_closed_form_agree_exactly(data: st.DataObject) -> None:
    graph = data.draw(st.one_of(mlp_graphs(), cnn_graphs()))
    if data.draw(st.booleans()):
        graph = with_dyadic_scales(data.draw, graph)
    config = _configs(data.draw)
    net = onespike.convert(graph, config, normalized=False)
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    x = (torch.rand((4, *graph.input_shape), generator=gen) * 8).floor() / 8

    fast = onespike.simulate(net, x, method="closed_form")
    ref = onespike.simulate(net, x, method="stepped")

    for pop in net.populations:
        assert torch.equal(fast.spike_counts[pop.name], ref.spike_counts[pop.name]), pop.name
        assert int(ref.spike_counts[pop.name].max()) <= config.steps
    assert int(ref.spike_counts[net.output.name].abs().sum()) == 0  # the readout never spikes
    assert torch.equal(fast.predictions, ref.predictions)
    assert torch.equal(fast.outputs, ref.outputs)
    assert ref.step_predictions is not None
    assert fast.step_predictions is not None
    assert torch.equal(fast.step_predictions, ref.step_predictions)
    assert torch.equal(ref.step_predictions[-1], ref.predictions)
    if config.early_exit:
        assert ref.sample_steps is not None
        assert fast.sample_steps is not None
        assert torch.equal(fast.sample_steps, ref.sample_steps)
        assert bool((ref.sample_steps >= 1).all())
        assert bool((ref.sample_steps <= config.steps).all())
    else:
        assert ref.sample_steps is None
    assert onespike.count_ops(net, fast).to_dict() == onespike.count_ops(net, ref).to_dict()


def _two_layer(bias: float = 0.0) -> Graph:
    """3 inputs -> 2 hidden (ReLU) -> 2 outputs, dyadic weights."""
    return Graph(
        {
            "input": Input((3,)),
            "fc1": Linear(
                torch.tensor([[0.5, 0.25, 0.0], [0.0, 0.5, -0.25]]), torch.tensor([bias, 0.0])
            ),
            "relu": ReLU(),
            "fc2": Linear(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0.0, 0.125])),
            "output": Output(),
        },
        [("input", "fc1"), ("fc1", "relu"), ("relu", "fc2"), ("fc2", "output")],
    )


def test_hand_counted_operations_with_analog_input() -> None:
    net = onespike.convert(
        _two_layer(bias=0.125), onespike.RateConfig(steps=8, initial_membrane=0.0), normalized=False
    )
    x = torch.tensor([[1.0, 1.0, 1.0], [0.5, 0.5, 0.0]])
    result = onespike.simulate(net, x)
    # Hidden currents per step: sample 0: (0.75 + 0.125, 0.25); sample 1: (0.375 + 0.125, 0.25).
    assert result.spike_counts["relu"].tolist() == [[7.0, 2.0], [4.0, 2.0]]
    ops = {layer.name: layer for layer in onespike.count_ops(net, result).layers}
    hidden, out = ops["relu"], ops["fc2"]
    assert hidden.macs == 6 * 2  # the 3 x 2 connections, once per sample
    assert hidden.synops == 0  # the analog input sends no spikes
    assert hidden.bias_events == 1 * 2  # one biased neuron, its bias joins the constant current
    assert hidden.neuron_updates == 2 * 8 * 2
    assert out.synops == (7 + 2 + 4 + 2) * 2  # each hidden spike reaches both outputs
    assert out.bias_events == 1 * 8 * 2  # one biased output neuron, every step
    assert out.neuron_updates == 2 * 8 * 2
    assert out.macs == 0
    # The decoded output is the mean current: (7/8 + 0) and (2/8 + 1/8) for sample 0.
    assert result.outputs[0].tolist() == [7 / 8, 3 / 8]


def test_poisson_input_is_reproducible_from_the_seed() -> None:
    graph = _two_layer()
    x = torch.full((16, 3), 0.5)
    nets = [
        onespike.convert(
            graph, onespike.RateConfig(steps=20, input="poisson", seed=s), normalized=False
        )
        for s in (7, 7, 8)
    ]
    runs = [onespike.simulate(net, x) for net in nets]
    assert torch.equal(runs[0].spike_counts["input"], runs[1].spike_counts["input"])
    assert torch.equal(runs[0].spike_counts["relu"], runs[1].spike_counts["relu"])
    assert not torch.equal(runs[0].spike_counts["input"], runs[2].spike_counts["input"])
    counts = runs[0].spike_counts["input"]
    assert 0.3 < float(counts.mean()) / 20 < 0.7  # spike probability 0.5 per step
    ops = {layer.name: layer for layer in onespike.count_ops(nets[0], runs[0]).layers}
    assert ops["relu"].macs == 0
    # Every input spike reaches both hidden neurons: a synapse is a connection of the layer,
    # whatever its value (input 0 has weight 0 into neuron 1).
    assert ops["relu"].synops == int(counts.sum()) * 2


def test_poisson_input_range() -> None:
    net = onespike.convert(
        _two_layer(), onespike.RateConfig(steps=4, input="poisson"), normalized=False
    )
    with pytest.raises(onespike.CodeRangeError, match="outside"):
        onespike.simulate(net, torch.tensor([[1.5, 0.0, 0.0]]))
    clip = onespike.convert(
        _two_layer(),
        onespike.RateConfig(steps=4, input="poisson", input_range="clip"),
        normalized=False,
    )
    assert onespike.simulate(clip, torch.tensor([[1.5, -1.0, 0.0]])).clipped["input"] == 2


def test_accuracy_against_steps_from_one_run() -> None:
    graph = _two_layer(bias=0.125)
    x = torch.rand((32, 3), generator=torch.Generator().manual_seed(0))
    long = onespike.simulate(
        onespike.convert(graph, onespike.RateConfig(steps=24), normalized=False), x
    )
    assert long.step_predictions is not None
    for steps in (1, 3, 10, 24):
        short = onespike.simulate(
            onespike.convert(graph, onespike.RateConfig(steps=steps), normalized=False), x
        )
        assert torch.equal(long.step_predictions[steps - 1], short.predictions)


def test_early_exit_by_hand() -> None:
    # input -> output directly: the output receives the analog input from step 1, and its
    # prediction never changes, so with early_exit=3 every sample stops after step 3.
    graph = Graph(
        {
            "input": Input((2,)),
            "fc": Linear(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), None),
            "output": Output(),
        },
        [("input", "fc"), ("fc", "output")],
    )
    net = onespike.convert(graph, onespike.RateConfig(steps=10, early_exit=3), normalized=False)
    result = onespike.simulate(net, torch.tensor([[0.25, 0.5], [0.75, 0.5]]))
    assert result.sample_steps is not None
    assert result.sample_steps.tolist() == [3, 3]
    assert result.predictions.tolist() == [1, 0]
    ops = onespike.count_ops(net, result)
    assert ops.total("neuron_updates") == 2 * 3 * 2


def test_early_exit_stops_counting_spikes() -> None:
    graph = _two_layer()
    x = torch.rand((64, 3), generator=torch.Generator().manual_seed(1))
    full = onespike.simulate(
        onespike.convert(graph, onespike.RateConfig(steps=40), normalized=False), x
    )
    early_net = onespike.convert(
        graph, onespike.RateConfig(steps=40, early_exit=2), normalized=False
    )
    early = onespike.simulate(early_net, x)
    assert early.sample_steps is not None
    assert float(early.sample_steps.float().mean()) < 40
    assert float(early.spike_counts["relu"].sum()) < float(full.spike_counts["relu"].sum())
    # Exited samples keep the prediction of their exit step in the per-step record.
    steps = early.sample_steps.tolist()
    assert early.step_predictions is not None
    for i, s in enumerate(steps):
        assert int(early.step_predictions[-1, i]) == int(early.predictions[i])
        assert int(early.step_predictions[s - 1, i]) == int(early.predictions[i])


def test_threshold_scale_keeps_the_function() -> None:
    # With s = 0.5, a spike carries 0.5: rates double and the decoded output is unchanged.
    graph = _two_layer()
    x = torch.tensor([[0.25, 0.25, 0.0]])
    plain = onespike.simulate(
        onespike.convert(
            graph, onespike.RateConfig(steps=16, initial_membrane=0.0), normalized=False
        ),
        x,
    )
    scaled_net = onespike.convert(
        graph,
        onespike.RateConfig(steps=16, threshold_scale=0.5, initial_membrane=0.0),
        normalized=False,
    )
    scaled = onespike.simulate(scaled_net, x)
    assert float(scaled.spike_counts["relu"].sum()) == 2 * float(plain.spike_counts["relu"].sum())
    assert torch.equal(scaled.outputs, plain.outputs)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("steps", 0, "at least 1"),
        ("steps", 2.5, "integer"),
        ("reset", "soft", "reset"),
        ("input", "rate", "input"),
        ("threshold_scale", 0.0, "threshold_scale"),
        ("initial_membrane", 1.0, "initial_membrane"),
        ("early_exit", -1, "early_exit"),
        ("binary", "yes", "binary"),
        ("input_range", "wrap", "input_range"),
    ],
)
def test_config_rejects_bad_values(field: str, value: object, message: str) -> None:
    with pytest.raises(onespike.ConfigError, match=message):
        onespike.RateConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options",
    [{}, {"early_exit": 2, "input": "poisson", "seed": 3}, {"early_exit": 1, "reset": "zero"}],
)
def test_checkpoints_equal_separate_runs(options: dict) -> None:
    graph = _two_layer(bias=0.125)
    x = torch.rand((32, 3), generator=torch.Generator().manual_seed(2))
    net = onespike.convert(graph, onespike.RateConfig(steps=99, **options), normalized=False)
    for method in ("closed_form", "stepped"):
        results = simulate_checkpoints(net, x, (3, 1, 17), method=method)
        assert [r.steps for r in results] == [3, 1, 17]
        for result in results:
            alone = onespike.convert(
                graph, onespike.RateConfig(steps=result.steps, **options), normalized=False
            )
            expected = onespike.simulate(alone, x, method=method)
            assert torch.equal(result.predictions, expected.predictions)
            assert torch.equal(result.outputs, expected.outputs)
            assert result.total_steps() == expected.total_steps()
            for name, counts in expected.spike_counts.items():
                assert torch.equal(result.spike_counts[name], counts), name
            ops = onespike.count_ops(net, result).to_dict()
            assert ops == onespike.count_ops(alone, expected).to_dict()
    with pytest.raises(onespike.ConfigError, match="integers >= 1"):
        simulate_checkpoints(net, x, (0, 4))


def test_evaluation_at_several_steps_equals_separate_evaluations() -> None:
    from onespike.data import Dataset
    from onespike.evaluate import evaluate_snn, evaluate_snn_steps

    gen = torch.Generator().manual_seed(4)
    images = torch.rand((50, 3), generator=gen)
    labels = torch.randint(0, 2, (50,), generator=gen)
    data = Dataset("toy", "test", images, labels, 2)
    graph = _two_layer(bias=0.125)
    net = onespike.convert(graph, onespike.RateConfig(steps=5, early_exit=2), normalized=False)
    by_steps = evaluate_snn_steps(net, data, (2, 9), batch_size=16)
    for steps, evaluation in by_steps.items():
        alone = onespike.convert(
            graph, onespike.RateConfig(steps=steps, early_exit=2), normalized=False
        )
        expected = evaluate_snn(alone, data, batch_size=16)
        assert evaluation.correct == expected.correct
        assert evaluation.total_steps == expected.total_steps
        assert evaluation.ops.to_dict() == expected.ops.to_dict()
        assert evaluation.accuracy_by_steps() == expected.accuracy_by_steps()
        assert evaluation.hits is not None
        assert expected.hits is not None
        assert torch.equal(evaluation.hits, expected.hits)
        assert int(evaluation.hits.sum()) == evaluation.correct
        assert evaluation.hits.shape == (50,)
    ttfs = onespike.convert(graph, onespike.TTFSConfig(steps=4), normalized=False)
    with pytest.raises(onespike.ConfigError, match="RateConfig"):
        evaluate_snn_steps(ttfs, data, (2,))


def test_paired_test_by_hand() -> None:
    from onespike.evaluate import paired_test

    # 3 samples only the first gets right, 1 only the second: 4 discordant, split 3:1.
    first = torch.tensor([1, 1, 1, 0, 1, 0, 1], dtype=torch.bool)
    second = torch.tensor([0, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    result = paired_test(first, second)
    assert (result.only_first, result.only_second) == (3, 1)
    # P(X <= 1) for X ~ Bin(4, 1/2) is 5/16; two-sided: 10/16.
    assert result.p_value == pytest.approx(10 / 16)
    assert paired_test(second, first).p_value == result.p_value
    # 10 discordant samples, all won by the first: 2 / 2**10.
    lopsided = paired_test(torch.ones(10, dtype=torch.bool), torch.zeros(10, dtype=torch.bool))
    assert lopsided.p_value == pytest.approx(2 / 1024)
    # Identical classifiers: no discordant sample, no evidence of a difference.
    assert paired_test(first, first).p_value == 1.0
    with pytest.raises(onespike.ShapeError, match="same test samples"):
        paired_test(first, second[:3])


def test_holm_adjustment_by_hand() -> None:
    from onespike.evaluate import holm_adjusted

    # Sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06, kept monotone), 0.5 (x1).
    assert holm_adjusted([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    # A later, smaller product never lowers the running maximum; products cap at 1.
    assert holm_adjusted([0.4, 0.3, 0.001]) == pytest.approx([0.6, 0.6, 0.003])
    assert holm_adjusted([0.9, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm_adjusted([]) == []
    with pytest.raises(onespike.ConfigError, match=r"\[0, 1\]"):
        holm_adjusted([0.1, float("nan")])


def _bias_only(width: int = 64, bias: float = 0.0625) -> Graph:
    """4 inputs with zero weights -> ``width`` hidden neurons driven by their bias alone."""
    return Graph(
        {
            "input": Input((4,)),
            "fc1": Linear(torch.zeros(width, 4), torch.full((width,), bias)),
            "relu": ReLU(),
            "fc2": Linear(torch.ones(2, width) / width, torch.zeros(2)),
            "output": Output(),
        },
        [("input", "fc1"), ("fc1", "relu"), ("relu", "fc2"), ("fc2", "output")],
    )


def _bias_only_conv(channels: int = 2, bias: float = 0.0625) -> Graph:
    """A zero-weight 3x3 convolution on an 8x8 image: 2 x 6 x 6 neurons driven by the bias."""
    return Graph(
        {
            "input": Input((1, 8, 8)),
            "conv": Conv2d(torch.zeros(channels, 1, 3, 3), torch.full((channels,), bias)),
            "relu": ReLU(),
            "flat": Flatten(),
            "fc": Linear(torch.ones(2, channels * 36) / (channels * 36), torch.zeros(2)),
            "output": Output(),
        },
        [
            ("input", "conv"),
            ("conv", "relu"),
            ("relu", "flat"),
            ("flat", "fc"),
            ("fc", "output"),
        ],
    )


def _first_spikes(graph: Graph, x: torch.Tensor, config: onespike.RateConfig) -> torch.Tensor:
    """Step (1-based) of each hidden neuron's first spike in sample 0; 0 if it never fires."""
    net = onespike.convert(graph, config, normalized=False)
    steps = list(range(1, config.steps + 1))
    counts = [r.spike_counts["relu"][0].flatten() for r in simulate_checkpoints(net, x, steps)]
    fired = torch.stack(counts) > 0  # (step, neuron)
    return torch.where(fired.any(0), fired.float().argmax(0) + 1, 0)


def test_dither_spreads_the_first_spikes_of_identical_neurons() -> None:
    dense, x = _bias_only(), torch.zeros(1, 4)
    # Current 1/16 per step from half the threshold: every neuron first fires at step 8. The
    # default dither leaves dense layers alone.
    assert _first_spikes(dense, x, onespike.RateConfig(steps=16)).unique().tolist() == [8]
    assert _first_spikes(dense, x, onespike.RateConfig(steps=16, dither=0.0)).unique().tolist() == [
        8
    ]
    # A neuron starting at s in [0.25, 0.75] first fires at step ceil(16 (1 - s)), 4 to 12.
    spread = _first_spikes(dense, x, onespike.RateConfig(steps=16, dither=0.25))
    assert spread.min() >= 4
    assert spread.max() <= 12
    assert len(spread.unique()) >= 6
    # After 16 steps the mean count is still the rate: offsets spread spikes, they add none.
    net = onespike.convert(dense, onespike.RateConfig(steps=16, dither=0.25), normalized=False)
    assert onespike.simulate(net, x).spike_counts["relu"].mean() == pytest.approx(1.0, abs=0.1)


def test_default_dither_acts_on_convolutions_the_input_drives() -> None:
    conv, x = _bias_only_conv(), torch.zeros(1, 1, 8, 8)
    # Default: s in [0.35, 0.65], first spikes at ceil(16 (1 - s)), steps 6 to 11.
    default = _first_spikes(conv, x, onespike.RateConfig(steps=16))
    assert default.min() >= 6
    assert default.max() <= 11
    assert len(default.unique()) >= 4
    explicit = _first_spikes(conv, x, onespike.RateConfig(steps=16, dither=DEFAULT_DITHER))
    assert torch.equal(default, explicit)
    assert _first_spikes(conv, x, onespike.RateConfig(steps=16, dither=0.0)).unique().tolist() == [
        8
    ]
    # Starting at 0.1 of the threshold leaves no room for 0.15: no offsets, all at step 15
    # (0.1 + 15 / 16 >= 1 > 0.1 + 14 / 16).
    low = onespike.RateConfig(steps=16, initial_membrane=0.1)
    assert _first_spikes(conv, x, low).unique().tolist() == [15]
    assert low.dither_for(convolutional=True) == 0.0
    assert onespike.RateConfig().dither_for(convolutional=True) == DEFAULT_DITHER == 0.15
    assert onespike.RateConfig().dither_for(convolutional=False) == 0.0
    assert onespike.RateConfig(dither=0.25).dither_for(convolutional=False) == 0.25
    # Per population: the first convolution only, never deeper layers or the output.
    config = onespike.RateConfig()
    net = onespike.convert(conv, config, normalized=False)
    amounts = {p.name: input_dither(p, config, "input") for p in net.populations}
    assert amounts["relu"] == DEFAULT_DITHER
    assert all(a == 0.0 for name, a in amounts.items() if name != "relu")
    dense_net = onespike.convert(_bias_only(), config, normalized=False)
    assert all(input_dither(p, config, "input") == 0.0 for p in dense_net.populations)


def test_dither_is_seeded_first_layer_only_and_simulators_agree() -> None:
    from onespike.simulate.rate import _initial_state

    graph = _two_layer(bias=0.125)
    x = torch.rand((20, 3), generator=torch.Generator().manual_seed(1))
    config = onespike.RateConfig(steps=12, dither=0.25, seed=5)
    net = onespike.convert(graph, config, normalized=False)
    a = onespike.simulate(net, x, method="closed_form")
    b = onespike.simulate(net, x, method="stepped")
    again = onespike.simulate(onespike.convert(graph, config, normalized=False), x)
    for name in a.spike_counts:
        assert torch.equal(a.spike_counts[name], b.spike_counts[name])
        assert torch.equal(a.spike_counts[name], again.spike_counts[name])
    assert torch.equal(a.predictions, b.predictions)

    wide = onespike.convert(_bias_only(), config, normalized=False)
    hidden = next(p for p in wide.populations if p.name == "relu")
    starts = _initial_state(hidden, IFParams(1.0, "subtract"), 2, config, torch.float32, "input")
    assert torch.equal(starts.v[0], starts.v[1])  # the same offsets for every sample
    assert starts.v.min() >= 0.25
    assert starts.v.max() <= 0.75
    other = replace(config, seed=6)
    assert not torch.equal(
        starts.v,
        _initial_state(hidden, IFParams(1.0, "subtract"), 2, other, torch.float32, "input").v,
    )
    # A population the input does not drive starts at initial_membrane exactly.
    deeper = _initial_state(hidden, IFParams(1.0, "subtract"), 2, config, torch.float32, "x")
    assert torch.equal(deeper.v, torch.full_like(deeper.v, 0.5))
    # dither=0 is the default conversion.
    plain = onespike.simulate(
        onespike.convert(graph, replace(config, dither=0.0), normalized=False), x
    )
    default = onespike.simulate(
        onespike.convert(graph, onespike.RateConfig(steps=12), normalized=False), x
    )
    assert torch.equal(plain.spike_counts["relu"], default.spike_counts["relu"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dither": -0.1}, "dither must be a number >= 0"),
        ({"dither": True}, "dither must be a number >= 0"),
        ({"dither": 0.6}, "dither <= initial_membrane"),
        ({"dither": 0.1, "initial_membrane": 0.0}, "dither <= initial_membrane"),
        ({"dither": 0.3, "initial_membrane": 0.8}, "initial_membrane \\+ dither < 1"),
    ],
)
def test_bad_dither_is_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(onespike.ConfigError, match=message):
        onespike.RateConfig(**options)  # type: ignore[arg-type]
