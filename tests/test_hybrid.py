"""Hybrid single-spike code: both simulators, hand-worked dynamics and counts, STDB, save/load."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onespike
from onespike.cli import main
from onespike.convert import HybridConfig
from onespike.convert.hybrid import one_bit_level
from onespike.data import Dataset, load_dataset
from onespike.evaluate import evaluate_snn
from onespike.graph import Affine, Graph, Linear, ReLU
from onespike.io import save_model
from onespike.models import build_model
from onespike.neurons import SingleSpikeParams, single_spike_initial_state, single_spike_step
from onespike.simulate import hybrid as hybrid_simulator
from onespike.simulate.hybrid import encode_input, first_only, input_values, membrane
from onespike.stdb import (
    STDBConfig,
    STDBNet,
    STDBResult,
    distillation_loss,
    finetune_stdb,
    load_hybrid,
    save_hybrid,
    stdb_loss,
    surrogate_crossing,
)
from onespike.train import TrainConfig, train
from tests.helpers import cnn_graphs, mlp_graphs, with_dyadic_scales


def _inputs(draw: st.DrawFn, shape: tuple[int, ...]) -> torch.Tensor:
    # Multiples of 1/16 keep every product with the dyadic weights exact, so the two
    # simulators' sums agree bit for bit whatever order a matrix product adds them in.
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randint(0, 17, (4, *shape), generator=gen).float() / 16
    x[0].view(-1)[::3] = 0.0
    x[1].view(-1)[::4] = 1.0
    return x


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_no_neuron_fires_twice_and_simulators_agree(data: st.DataObject) -> None:
    graph = data.draw(st.one_of(mlp_graphs(), cnn_graphs()))
    if data.draw(st.booleans()):
        graph = with_dyadic_scales(data.draw, graph)
    config = HybridConfig(
        steps=data.draw(st.integers(1, 8)),
        leak=data.draw(st.sampled_from([1.0, 0.75, 0.5])),
        input_code=data.draw(st.sampled_from(["split", "ttfs", "none"])),
        bias=data.draw(st.sampled_from(["spread", "first_step", "every_step"])),
        threshold_scale=data.draw(st.sampled_from([0.25, 0.5, 1.0])),
        readout=data.draw(st.sampled_from(["membrane", "first_spike"])),
    )
    net = onespike.convert(graph, config, normalized=False)
    x = _inputs(data.draw, graph.input_shape)

    ref = onespike.simulate(net, x, method="stepped")
    fast = onespike.simulate(net, x, method="closed_form")

    for pop in net.populations:
        counts = ref.spike_counts[pop.name]
        assert int(counts.max()) <= 1, f"{pop.name}: a neuron fired twice"
        assert torch.equal(counts.bool(), torch.isfinite(ref.spike_times[pop.name]))
        assert torch.equal(fast.spike_times[pop.name], ref.spike_times[pop.name]), pop.name
        assert torch.equal(fast.spikes(pop.name), ref.spikes(pop.name))
    assert torch.equal(fast.predictions, ref.predictions)
    assert torch.equal(fast.outputs, ref.outputs)
    assert fast.step_predictions is not None
    assert ref.step_predictions is not None
    assert torch.equal(fast.step_predictions, ref.step_predictions)
    assert fast.steps == ref.steps == config.steps
    fast_ops, ref_ops = onespike.count_ops(net, fast), onespike.count_ops(net, ref)
    assert fast_ops == ref_ops
    assert fast_ops.network == "hybrid"


@pytest.mark.parametrize("chunk", [1, 3, 7])
def test_closed_form_in_chunks_equals_the_reference(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The closed-form pass runs the batch in chunks of samples (CHUNK_ELEMENTS); chunks of
    # 1 and 3 of a batch of 7 (a remainder) and the whole batch give the reference's values.
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
    ).eval()
    x = torch.randint(0, 17, (7, 1, 8, 8), generator=torch.Generator().manual_seed(1)) / 16
    graph = onespike.normalize(onespike.extract(model, x[:2]), [x])
    net = onespike.convert(graph, HybridConfig(steps=4, bias="first_step"), calibration=x)
    per_sample = 4 * sum(math.prod(pop.shape) for pop in net.populations)
    monkeypatch.setattr(hybrid_simulator, "CHUNK_ELEMENTS", chunk * per_sample)
    assert hybrid_simulator.chunk_size(net.populations, 4) == chunk
    ref = onespike.simulate(net, x, method="stepped")
    fast = onespike.simulate(net, x, method="closed_form")
    for pop in net.populations:
        assert torch.equal(fast.spike_times[pop.name], ref.spike_times[pop.name]), pop.name
    assert sum(int(torch.isfinite(t).sum()) for t in ref.spike_times.values()) > 0
    assert torch.equal(fast.outputs, ref.outputs)
    assert fast.step_predictions is not None
    assert ref.step_predictions is not None
    assert torch.equal(fast.step_predictions, ref.step_predictions)


def test_single_spike_neuron_by_hand() -> None:
    currents = [0.25, 0.5, 0.5, -1.0, 2.0]
    for leak, membranes, spike_at in (
        (1.0, [0.25, 0.75, 1.25, 0.25, 2.25], [2]),  # fires at 1.25; 2.25 later is ignored
        (0.5, [0.25, 0.625, 0.8125, -0.59375, 1.703125], [4]),
    ):
        state = single_spike_initial_state((1,))
        params = SingleSpikeParams(threshold=1.0, leak=leak)
        seen, fired = [], []
        for t, z in enumerate(currents):
            spikes, state = single_spike_step(torch.tensor([z]), state, params)
            seen.append(float(state.v[0]))
            if bool(spikes[0]):
                fired.append(t)
        assert seen == membranes
        assert fired == spike_at
        assert float(state.fired[0]) == 1.0


def test_temporal_input_code() -> None:
    x = torch.tensor([[0.0, 0.1, 0.125, 0.3, 0.5, 0.875, 1.0]])
    # T = 5, L = 4: k = floor(4x + 1/2) = 0 0 1 1 2 4 4; spike at step T - k, none for k = 0.
    _, times, clipped = encode_input(x, HybridConfig(steps=5))
    assert times.tolist() == [[math.inf, math.inf, 4.0, 4.0, 3.0, 1.0, 1.0]]
    assert clipped == 0
    assert bool(torch.isinf(encode_input(x, HybridConfig(steps=1))[1]).all())
    assert bool(torch.isinf(encode_input(x, HybridConfig(input_code="none"))[1]).all())


def test_bias_enters_once_in_total_and_the_image_once() -> None:
    # One layer, no ReLU: the output membrane after T steps is the ANN's W x + b exactly.
    weight = torch.tensor([[1.0, 0.5, -1.0, 2.0]])
    graph = Graph.sequential((4,), [Linear(weight, torch.tensor([0.75]))])
    x = torch.tensor([[1.0, 0.5, 0.0, 0.375]])
    # T = 4, L = 3: k = floor(3x + 1/2) = 3, 2, 0, 1 -> spikes at steps 1, 2, -, 3 carrying
    # 1, 2/3, -, 1/3; the analog step carries x - k/3 = 0, -1/6, 0, 1/24.
    _, times, _ = encode_input(x, HybridConfig(steps=4, input_code="split"))
    assert times.tolist() == [[1.0, 2.0, math.inf, 3.0]]
    values = [
        input_values(x, times, t, HybridConfig(steps=4, input_code="split")) for t in range(4)
    ]
    assert torch.allclose(values[0], torch.tensor([[0.0, -1 / 6, 0.0, 1 / 24]]))
    assert torch.allclose(sum(values), x)  # the image counted once
    expected = float(weight @ x[0]) + 0.75  # 1 + 0.25 + 0.75 + 0.75 = 2.75
    assert expected == 2.75
    for bias, total in (("spread", 0.75), ("first_step", 0.75), ("every_step", 3.0)):
        net = onespike.convert(
            graph,
            HybridConfig(steps=4, input_code="split", bias=bias, threshold_scale=9.0),
            normalized=False,
        )
        zero = onespike.simulate(net, torch.zeros(1, 4))
        assert zero.outputs.item() == pytest.approx(total)  # bias alone over the 4 steps
        for method in ("closed_form", "stepped"):
            out = onespike.simulate(net, x, method=method).outputs.item()
            assert out == pytest.approx(2.0 + total)
    twice = onespike.convert(
        graph, HybridConfig(steps=4, input_code="ttfs", threshold_scale=9.0), normalized=False
    )
    # ttfs: the analog x (2.0) plus a spike worth 1 from pixels 0, 1, 3 (1 + 0.5 + 2 = 3.5)
    assert onespike.simulate(twice, x).outputs.item() == pytest.approx(2.0 + 3.5 + 0.75)
    # first_step: one bias event per biased neuron per image; spread: one per step
    spread = onespike.convert(
        graph, HybridConfig(steps=4, input_code="split", threshold_scale=9.0), normalized=False
    )
    first = onespike.convert(
        graph,
        HybridConfig(steps=4, input_code="split", bias="first_step", threshold_scale=9.0),
        normalized=False,
    )
    for net, events in ((spread, 4), (first, 1)):
        ops = onespike.count_ops(net, onespike.simulate(net, x))
        layer = ops.layers[-1]
        assert layer.bias_events == events
        # split code: 4 analog MACs, plus one level multiply per neuron per code step (3)
        assert layer.macs == 4 + 3
        assert layer.synops == 3


def test_one_bit_level_by_hand() -> None:
    # sorted: 1.0, 0.4, 0.2; (sum)^2 / count = 1, 0.98, 0.853: fire the largest only
    assert one_bit_level(torch.tensor([0.0, 0.2, 0.4, 1.0])) == pytest.approx((0.4, 1.0, 0.25))
    # three equal values: firing all three (9 * 0.25 / 3 = 0.75) beats fewer
    assert one_bit_level(torch.tensor([0.5, 0.5, 0.5, 0.0])) == (0.0, 0.5, 0.75)
    tau, m, share = one_bit_level(torch.zeros(5))
    assert (math.isinf(tau), m, share) == (True, 1.0, 0.0)


def test_calibrated_thresholds_and_spike_values_by_hand() -> None:
    graph = Graph.sequential(
        (1,),
        [Linear(torch.tensor([[1.0], [0.5]])), ReLU(), Linear(torch.tensor([[1.0, 1.0]]))],
    )
    x = torch.tensor([[0.25], [0.5], [0.75], [1.0]])
    layer = HybridConfig(steps=1, calibration="layer")
    net = onespike.convert(graph, layer, calibration=x, normalized=False)
    hidden, out = net.populations[1], net.populations[2]
    # ANN activations 0.25 0.5 0.75 1 and 0.125 0.25 0.375 0.5: sorted, the cumulative sums
    # 1, 1.75, 2.25, 2.75, 3.125, 3.375, ... give (sum)^2 / count largest (1.953) for the 5
    # values above 0.25: a spike is worth their mean 3.125 / 5 = 0.625, 5 of 8 neurons fire.
    assert out.projections[0].factor == pytest.approx(0.625)
    # T = 1: the largest membrane is the activation itself; the 5th largest is 0.375.
    assert hidden.threshold == pytest.approx(0.375)
    # x = 0.25 fires nothing, 0.5 fires neuron 0, 0.75 and 1 fire both: membranes
    # 0, 0.625, 1.25, 1.25; one output neuron of one may fire: the 4th largest, 0 -> 1e-3.
    result = onespike.simulate(net, x)
    assert result.outputs.flatten().tolist() == pytest.approx([0.0, 0.625, 1.25, 1.25])
    assert out.threshold == pytest.approx(1e-3)
    # Per channel (the default): neuron 0 sees 0.25 0.5 0.75 1 -> (sum)^2 / count is largest
    # (1.6875) for the 3 values above 0.25, worth 2.25 / 3 = 0.75; neuron 1, half of those,
    # fires for its 3 largest too, worth 0.375. At T = 1 the thresholds are the 3rd largest
    # activations, 0.5 and 0.25: x = 0.5, 0.75 and 1 fire both neurons, 0.25 neither.
    net = onespike.convert(graph, HybridConfig(steps=1), calibration=x, normalized=False)
    hidden, out = net.populations[1], net.populations[2]
    affine = out.projections[0].ops[0]
    assert isinstance(affine, Affine)
    assert affine.scale.tolist() == pytest.approx([0.75, 0.375])
    assert not bool(affine.shift.any())
    assert isinstance(hidden.threshold, torch.Tensor)
    assert hidden.threshold.tolist() == pytest.approx([0.5, 0.25])
    result = onespike.simulate(net, x)
    assert result.outputs.flatten().tolist() == pytest.approx([0.0, 1.125, 1.125, 1.125])
    stepped = onespike.simulate(net, x, method="stepped")
    assert torch.equal(stepped.outputs, result.outputs)
    with pytest.raises(onespike.ConfigError, match="calibration"):
        HybridConfig(calibration="neuron")  # type: ignore[arg-type]
    with pytest.raises(onespike.ConfigError, match="calibration images have shape"):
        onespike.convert(graph, HybridConfig(), calibration=torch.zeros(2, 3), normalized=False)
    with pytest.raises(onespike.ConfigError, match="drop calibration="):
        onespike.convert(graph, onespike.RateConfig(), calibration=x, normalized=False)


def _toy_network(**options: object) -> onespike.SpikingNetwork:
    graph = Graph.sequential(
        (3,),
        [
            Linear(torch.tensor([[0.5, 0.25, 1.0], [0.25, -0.5, 0.5]]), torch.tensor([0.0, 0.125])),
            ReLU(),
            Linear(torch.tensor([[1.0, -1.0], [0.5, 0.5]])),
        ],
    )
    legacy: dict[str, Any] = {"input_code": "ttfs", "bias": "every_step", **options}
    return onespike.convert(
        graph, HybridConfig(steps=5, threshold_scale=1.0, **legacy), normalized=False
    )


def test_toy_network_spikes_and_counts_by_hand() -> None:
    net = _toy_network()
    x = torch.tensor([[1.0, 0.5, 0.0]])
    for method in ("closed_form", "stepped"):
        result = onespike.simulate(net, x, method=method)
        # Codes 4, 2, 0: pixel 0 spikes at step 1, pixel 1 at step 3, pixel 2 never.
        assert result.spike_times["input"].tolist() == [[1.0, 3.0, math.inf]]
        # h0: v = 0.625 (analog step), then +0.5 at step 1: 1.125 >= 1, fires at step 1.
        # h1: 0.125, 0.5, 0.625, 0.25 (pixel 1: -0.5, bias +0.125), 0.375: never fires.
        assert result.spike_times["1"].tolist() == [[1.0, math.inf]]
        # Output: h0's spike adds (1, 0.5) at step 1; neuron 0 reaches 1 and fires there.
        assert result.spike_times["2"].tolist() == [[1.0, math.inf]]
        assert result.outputs.tolist() == [[1.0, 0.5]]
        assert result.predictions.tolist() == [0]
        ops = {layer.name: layer for layer in onespike.count_ops(net, result).layers}
        assert ops["input"].spikes == 2
        hidden = ops["1"]
        assert hidden.macs == 6  # the analog step: one MAC per first-layer connection
        assert hidden.synops == 4  # two input spikes, two synapses each
        assert hidden.bias_events == 5  # one biased neuron, every step
        assert hidden.neuron_updates == 2 * 5
        assert hidden.spikes == 1
        out = ops["2"]
        assert (out.macs, out.synops, out.bias_events, out.neuron_updates) == (0, 2, 0, 10)
    energy = onespike.estimate_energy(onespike.count_ops(net, result), "45nm")
    # 6 MACs x 4.6 pJ + (4 + 5 + 2) adds x 0.9 pJ + 20 neuron updates x 0.9 pJ
    assert energy.total_pj == pytest.approx(6 * 4.6 + 11 * 0.9 + 20 * 0.9)


def test_first_spike_readout_prefers_the_earliest_class() -> None:
    # T = 2: step 0 is analog; pixel 0 (code 1) spikes at step 1, pixel 1 (code 0) never.
    # Class 1: 1.0 + 0.125 = 1.125 >= 1 fires at step 0, ends at 2.125 (+1.0 at step 1).
    # Class 0: 1.5 - 0.625 = 0.875, fires at step 1 (+1.5), ends at 2.375: larger membrane.
    graph = Graph.sequential((2,), [Linear(torch.tensor([[1.5, -2.5], [1.0, 0.5]]))])
    x = torch.tensor([[1.0, 0.25]])
    legacy: dict[str, Any] = {"steps": 2, "threshold_scale": 1.0, "input_code": "ttfs"}
    membrane = onespike.convert(graph, HybridConfig(**legacy), normalized=False)
    first = onespike.convert(graph, HybridConfig(**legacy, readout="first_spike"), normalized=False)
    for method in ("closed_form", "stepped"):
        by_membrane = onespike.simulate(membrane, x, method=method)
        by_spike = onespike.simulate(first, x, method=method)
        assert by_spike.spike_times["0"].tolist() == [[1.0, 0.0]]
        assert by_membrane.outputs.tolist() == [[2.375, 2.125]]
        assert by_membrane.predictions.tolist() == [0]
        assert by_spike.predictions.tolist() == [1]


def test_surrogate_gradient_by_hand() -> None:
    v = torch.tensor([1.5, 0.5, 1.0], requires_grad=True)
    theta = torch.tensor(1.0, requires_grad=True)
    spikes = surrogate_crossing(v, theta, alpha=0.5, beta=2.0)
    assert spikes.tolist() == [1.0, 0.0, 1.0]
    spikes.sum().backward()
    assert v.grad is not None
    assert theta.grad is not None
    # dt = |v / theta - 1| = 0.5, 0.5, 0: ds/dv = 0.5 exp(-2 dt) / theta.
    expected = [0.5 * math.exp(-1.0), 0.5 * math.exp(-1.0), 0.5]
    assert v.grad.tolist() == pytest.approx(expected)
    # ds/dtheta = -(v / theta) ds/dv, summed.
    assert float(theta.grad) == pytest.approx(-(1.5 * expected[0] + 0.5 * expected[1] + 0.5))
    # One threshold per channel (dimension 1 of (T, C, 2)): each sums its own channel's terms.
    v = torch.tensor([[[1.5, 0.5], [2.0, 1.0]], [[1.0, 0.0], [3.0, 2.0]]], requires_grad=True)
    theta = torch.tensor([[1.0], [2.0]], requires_grad=True)
    weights = torch.tensor([[[1.0, 2.0], [1.0, 1.0]], [[3.0, 1.0], [0.5, 2.0]]])
    (surrogate_crossing(v, theta, alpha=0.5, beta=2.0) * weights).sum().backward()
    assert theta.grad is not None
    th = theta.detach().expand(2, 2, 2)
    slope = 0.5 * torch.exp(-2.0 * (v.detach() - th).abs() / th) / th * weights
    by_hand = (-(v.detach() / th) * slope).sum(dim=(0, 2))
    assert theta.grad.flatten().tolist() == pytest.approx(by_hand.tolist())


def test_stdb_loss_by_hand() -> None:
    membrane = torch.tensor([[2.0, 0.0]])
    spikes = torch.tensor([[[0.0, 0.0]], [[1.0, 0.0]], [[0.0, 0.0]]])  # class 0 at step 1
    # spike times: class 0 at 1, class 1 never (T = 3): -t = (-1, -3).
    expected = math.log(1 + math.exp(-2.0)) + 0.5 * math.log(1 + math.exp(-2.0))
    loss = stdb_loss(membrane, spikes, torch.tensor([0]), time_loss_weight=0.5)
    assert float(loss) == pytest.approx(expected)


@pytest.fixture(scope="module")
def digits_net() -> tuple[onespike.SpikingNetwork, Dataset, Dataset]:
    task = load_dataset("digits", "train")
    subset = Dataset(task.name, task.split, task.images[:320], task.labels[:320], 10)
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    train(model, subset, TrainConfig(epochs=4, batch_size=32, lr=3e-3), progress=False)
    graph = onespike.normalize(onespike.extract(model.eval(), subset.images[:2]), [subset.images])
    legacy = HybridConfig(steps=4, input_code="ttfs", bias="every_step")
    return onespike.convert(graph, legacy), subset, task


def _loss(net: onespike.SpikingNetwork, data: Dataset, config: STDBConfig) -> float:
    module = STDBNet(net, config).eval()
    with torch.no_grad():
        membrane = module(data.images)
        assert module.output_spikes is not None
        return float(stdb_loss(membrane, module.output_spikes, data.labels, 0.1))


def _interrupted_and_resumed(
    net: onespike.SpikingNetwork,
    data: Dataset,
    config: STDBConfig,
    directory: Path,
    monkeypatch: pytest.MonkeyPatch,
    teacher: torch.nn.Module | None = None,
) -> STDBResult:
    """STDB on ``data`` (320 samples, batch 32) stopped by an interrupt in the 4th step of
    epoch 2, then run again from its checkpoint in ``directory``."""
    calls = 0

    def failing(*args: Any, **kwargs: Any) -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 10 + 4:  # 320 samples / 32 = 10 steps per epoch
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = onespike.stdb.stdb_loss
    monkeypatch.setattr(onespike.stdb, "stdb_loss", failing)
    with pytest.raises(KeyboardInterrupt):
        finetune_stdb(net, data, config, checkpoint_dir=directory, progress=False, teacher=teacher)
    monkeypatch.undo()
    resumed = finetune_stdb(
        net, data, config, checkpoint_dir=directory, progress=False, teacher=teacher
    )
    assert resumed.history.resumed_from_epoch == 1
    return resumed


def _assert_same_network(a_net: onespike.SpikingNetwork, b_net: onespike.SpikingNetwork) -> None:
    """The same thresholds, biases and Linear weights, bit for bit."""
    for a, b in zip(a_net.populations, b_net.populations, strict=True):
        assert a.threshold == b.threshold
        assert a.bias is None or torch.equal(a.bias, b.bias)
        for pa, pb in zip(a.projections, b.projections, strict=True):
            for oa, ob in zip(pa.ops, pb.ops, strict=True):
                if isinstance(oa, Linear):
                    assert torch.equal(oa.weight, ob.weight)


def test_stdb_lowers_the_loss_and_resumes_exactly(
    digits_net: tuple[onespike.SpikingNetwork, Dataset, Dataset],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, subset, _ = digits_net
    config = STDBConfig(epochs=2, batch_size=32, lr=2e-3, seed=3)
    result = finetune_stdb(net, subset, config, progress=False)
    assert _loss(result.net, subset, config) < 0.8 * _loss(net, subset, config)
    losses = [h["loss"] for h in result.history.history]
    assert losses[1] < losses[0]
    # Interrupted in epoch 2, then resumed: the same weights and thresholds bit for bit.
    resumed = _interrupted_and_resumed(net, subset, config, tmp_path, monkeypatch)
    _assert_same_network(result.net, resumed.net)
    with pytest.raises(onespike.ConfigError, match="other STDB or hybrid options"):
        finetune_stdb(
            net,
            subset,
            STDBConfig(epochs=3, batch_size=32, lr=2e-3, seed=3, alpha=0.5),
            checkpoint_dir=tmp_path,
            progress=False,
        )
    (tmp_path / "stdb.json").write_bytes(b"\xff\xfe")
    with pytest.raises(onespike.CorruptFileError, match=r"stdb\.json is not valid JSON.*resume"):
        finetune_stdb(net, subset, config, checkpoint_dir=tmp_path, progress=False)


def test_finetuned_network_saves_and_reloads_identically(
    digits_net: tuple[onespike.SpikingNetwork, Dataset, Dataset], tmp_path: Path
) -> None:
    net, subset, task = digits_net
    tuned = finetune_stdb(net, subset, STDBConfig(epochs=1, seed=1), progress=False).net
    assert tuned.populations[1].threshold != net.populations[1].threshold
    save_hybrid(tmp_path, tuned, extra={"dataset": "digits"})
    loaded, extra = load_hybrid(tmp_path)
    assert extra == {"dataset": "digits"}
    for method in ("closed_form", "stepped"):
        a = onespike.simulate(tuned, task.images, method=method)
        b = onespike.simulate(loaded, task.images, method=method)
        assert torch.equal(a.predictions, b.predictions)
        assert torch.equal(a.outputs, b.outputs)
        for name, times in a.spike_times.items():
            assert torch.equal(times, b.spike_times[name])
    # The trained module in eval mode predicts what the simulators predict.
    module = STDBNet(tuned).eval()
    with torch.no_grad():
        assert torch.equal(module(task.images).argmax(dim=1), a.predictions)

    record = json.loads((tmp_path / "network.json").read_text())
    record["sha256"] = "0" * 64
    (tmp_path / "network.json").write_text(json.dumps(record))
    with pytest.raises(onespike.ChecksumError):
        load_hybrid(tmp_path)
    with pytest.raises(onespike.MissingFileError, match="save_hybrid"):
        load_hybrid(tmp_path / "nowhere")
    (tmp_path / "network.json").write_text('{"format": "onespike-hybrid"')
    with pytest.raises(onespike.CorruptFileError, match=r"network\.json is not valid JSON.*save_"):
        load_hybrid(tmp_path)


def test_bad_values_raise_clear_errors() -> None:
    for kwargs, match in (
        ({"steps": 0}, "at least 1 time step"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"leak": 0.0}, r"leak must be a number in \(0, 1\]"),
        ({"leak": 1.5}, "leak"),
        ({"threshold_scale": 0}, "threshold_scale must be a finite number > 0"),
        ({"threshold_scale": math.inf}, "threshold_scale"),
        ({"input_code": "rate"}, "input_code"),
        ({"readout": "votes"}, "readout"),
        ({"input_range": "wrap"}, "input_range"),
    ):
        with pytest.raises(onespike.ConfigError, match=match):
            HybridConfig(**kwargs)  # type: ignore[arg-type]
    for kwargs, match in (
        ({"alpha": 0.0}, "alpha must be a finite number > 0"),
        ({"beta": -1.0}, "beta must be a finite number >= 0"),
        ({"lr": math.nan}, "lr"),
        ({"time_loss_weight": -0.1}, "time_loss_weight"),
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"train_thresholds": 1}, "train_thresholds"),
    ):
        with pytest.raises(onespike.ConfigError, match=match):
            STDBConfig(**kwargs)  # type: ignore[arg-type]
    net = _toy_network()
    with pytest.raises(onespike.CodeRangeError, match="input_range='clip'"):
        onespike.simulate(net, torch.tensor([[1.5, 0.0, 0.0]]))
    clip = _toy_network(input_range="clip")
    assert onespike.simulate(clip, torch.tensor([[1.5, -1.0, 0.0]])).clipped["input"] == 2
    ttfs = onespike.convert(
        Graph.sequential((3,), [Linear(torch.ones(2, 3))]),
        onespike.TTFSConfig(steps=4),
        normalized=False,
    )
    data = Dataset("toy", "train", torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), 2)
    with pytest.raises(onespike.ConfigError, match="HybridConfig"):
        finetune_stdb(ttfs, data, progress=False)
    with pytest.raises(onespike.ConfigError, match="HybridConfig"):
        save_hybrid("unused", ttfs)


def test_cli_fine_tunes_saves_and_runs_a_hybrid_network(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, spec = build_model("mlp", (1, 8, 8), 10, hidden=(32,))
    save_model(tmp_path / "ann", model, spec, dataset="digits")
    runner = CliRunner()
    common = ["--dataset", "digits"]
    trained = runner.invoke(
        main,
        [
            "train",
            *common,
            "--model-file",
            str(tmp_path / "ann"),
            "--method",
            "hybrid",
            "--steps",
            "3",
            "--finetune-epochs",
            "1",
            "--finetune-samples",
            "128",
            "--out",
            str(tmp_path),
        ],
        catch_exceptions=False,
    )
    assert trained.exit_code == 0, trained.output
    saved = json.loads((tmp_path / "model-hybrid" / "model.json").read_text())
    assert saved["extra"]["hybrid"]["steps"] == 3
    assert saved["extra"]["hybrid"]["samples"] == 128
    (epoch,) = saved["extra"]["hybrid"]["history"]  # one record per STDB epoch
    assert epoch["epoch"] == 1
    assert math.isfinite(epoch["loss"])
    assert (tmp_path / "stdb-checkpoints" / "checkpoint.json").exists()

    for model_file, finetuned in (("model-hybrid", True), ("ann", False)):
        out = tmp_path / f"run-{model_file}"
        run = runner.invoke(
            main,
            [
                "run",
                *common,
                "--model-file",
                str(tmp_path / model_file),
                "--method",
                "hybrid",
                "--check-samples",
                "8",
                "--limit",
                "100",
                "--out",
                str(out),
            ],
            catch_exceptions=False,
        )
        assert run.exit_code == 0, run.output
        row = json.loads((out / "results.json").read_text())
        assert row["method"] == "hybrid"
        assert row["steps"] == (3 if finetuned else 5)
        assert row.get("finetuned", False) is finetuned
        assert row["snn_macs"] == 64 * 32  # the analog step into the first layer
        assert row["stepped_check"]["identical_spikes"] == 1.0
        assert row["spikes_per_neuron"] <= 1.0


def test_membrane_and_first_spike_ops_match_the_step_by_step_gradients() -> None:
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)
    leak = torch.tensor(0.75, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64)

    def reference(z: torch.Tensor, leak: torch.Tensor) -> torch.Tensor:
        out, v = [], torch.zeros_like(z[0])
        for t in range(z.shape[0]):
            v = leak * v + z[t]
            out.append(v)
        return torch.stack(out)

    for fast in (True, False):
        zz = z.clone().requires_grad_(True)
        leak.grad = None
        # the fast op takes a fresh tensor, as a layer's currents are
        v = membrane(zz * 1.0, leak) if fast else reference(zz, leak)
        (v * upstream).sum().backward()
        assert zz.grad is not None
        assert leak.grad is not None
        if fast:
            fast_v, fast_z, fast_leak = v.detach(), zz.grad.clone(), leak.grad.clone()
        else:
            assert torch.allclose(fast_v, v.detach())
            assert torch.allclose(fast_z, zz.grad)
            assert torch.allclose(fast_leak, leak.grad)
    # The fused first-spike op: the same spikes and gradients as crossing + first_only.
    v0 = (torch.rand(5, 4, 6, generator=gen) * 2).requires_grad_(True)
    theta = torch.tensor(0.8, requires_grad=True)
    weights = torch.randn(5, 4, 6, generator=gen)
    results = []
    for fused in (True, False):
        v0.grad, theta.grad = None, None
        if fused:
            net_stub = STDBNet.__new__(STDBNet)
            object.__setattr__(net_stub, "stdb", STDBConfig(alpha=1.0, beta=3.0))
            spikes = STDBNet._fire(net_stub, v0, theta)
        else:
            crossed = surrogate_crossing(v0, theta, alpha=1.0, beta=3.0)
            spikes = first_only(crossed)
        (spikes * weights).sum().backward()
        assert v0.grad is not None
        assert theta.grad is not None
        results.append((spikes.detach(), v0.grad.clone(), theta.grad.clone()))
    assert int(results[0][0].sum(dim=0).max()) == 1  # at most one spike per neuron
    for a, b in zip(*results, strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_stdb_early_stopping_keeps_the_best_epoch_and_trains_the_leak(
    digits_net: tuple[onespike.SpikingNetwork, Dataset, Dataset], tmp_path: Path
) -> None:
    net, subset, task = digits_net
    assert isinstance(net.config, HybridConfig)
    leaky = dataclasses.replace(net.config, leak=0.875)
    net = onespike.SpikingNetwork(leaky, net.populations, net.fanouts)
    val = Dataset(task.name, task.split, task.images[1000:1300], task.labels[1000:1300], 10)
    config = STDBConfig(epochs=5, batch_size=32, lr=2e-3, seed=3, patience=1, train_leak=True)
    result = finetune_stdb(
        net, subset, config, val_data=val, checkpoint_dir=tmp_path, progress=False
    )
    scores = [h["val_accuracy"] for h in result.history.history]
    assert result.best_epoch is not None
    best = max(scores)
    assert scores[result.best_epoch - 1] == best
    # stopped one epoch after the last improvement, or ran every epoch
    assert len(scores) == 5 or len(scores) == result.best_epoch + 1
    assert evaluate_snn(result.net, val).accuracy == pytest.approx(best)
    assert (tmp_path / "stdb-best.safetensors").is_file()
    leak = result.net.config.leak
    assert 0.05 <= leak <= 1.0
    assert leak != 0.875  # trained
    with pytest.raises(onespike.ConfigError, match="patience"):
        STDBConfig(patience=0)


def test_stdb_with_shifts_and_a_readout_scale_resumes_exactly(
    digits_net: tuple[onespike.SpikingNetwork, Dataset, Dataset],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, subset, _ = digits_net
    output = next(pop for pop in net.populations if pop.is_output)
    module = STDBNet(net, STDBConfig())
    assert module.readout_log_scale is not None
    assert float(module.readout_log_scale.detach().exp()) == pytest.approx(output.scale, rel=1e-6)
    assert STDBNet(net, STDBConfig(train_readout_scale=False)).readout_log_scale is None
    config = STDBConfig(epochs=2, batch_size=32, lr=2e-3, seed=3, shift=1)
    result = finetune_stdb(net, subset, config, progress=False)
    plain = finetune_stdb(net, subset, dataclasses.replace(config, shift=0), progress=False)
    # the shifts change what is trained on
    assert result.history.history[0]["loss"] != plain.history.history[0]["loss"]
    resumed = _interrupted_and_resumed(net, subset, config, tmp_path, monkeypatch)
    assert resumed.history.history == [
        {**h, "seconds": r["seconds"]}
        for h, r in zip(result.history.history, resumed.history.history, strict=True)
    ]
    _assert_same_network(result.net, resumed.net)


def test_the_readout_scale_changes_no_prediction_and_is_trained(
    digits_net: tuple[onespike.SpikingNetwork, Dataset, Dataset],
) -> None:
    net, subset, _ = digits_net
    module = STDBNet(net, STDBConfig())
    assert module.readout_log_scale is not None
    start = float(module.readout_log_scale.detach())
    with torch.no_grad():
        membrane = module(subset.images)
        scaled = module.readout(membrane)
    assert torch.equal(scaled.argmax(dim=1), membrane.argmax(dim=1))
    assert not torch.equal(scaled, membrane)
    module.train()
    loss = stdb_loss(
        module.readout(module(subset.images)), module.output_spikes, subset.labels, 0.1
    )
    loss.backward()
    assert module.readout_log_scale.grad is not None
    assert float(module.readout_log_scale.grad) != 0.0
    assert float(module.readout_log_scale.detach()) == start
    with pytest.raises(onespike.ConfigError, match="shift"):
        STDBConfig(shift=-1)
    flat = Dataset("flat", "train", subset.images.flatten(1), subset.labels, 10)
    with pytest.raises(onespike.ConfigError, match="shift=1 needs images larger"):
        finetune_stdb(net, flat, STDBConfig(shift=1), progress=False)


def test_per_channel_calibration_survives_save_load_and_nir(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AvgPool2d(2),
        torch.nn.Conv2d(4, 6, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(24, 8),
        torch.nn.ReLU(),
        torch.nn.Linear(8, 3),
    ).eval()
    x = torch.rand(200, 1, 8, 8)
    graph = onespike.normalize(onespike.extract(model, x[:2]), [x])
    net = onespike.convert(graph, HybridConfig(steps=5), calibration=x)
    hidden = [p for p in net.populations if p.kind == "neuron" and not p.is_output]
    # one threshold per channel, one per neuron in the flat layer
    assert [tuple(p.threshold.shape) for p in hidden] == [(4, 1, 1), (6, 1, 1), (8,)]
    reference = onespike.simulate(net, x[:50])
    save_hybrid(tmp_path / "h", net)
    loaded, _ = load_hybrid(tmp_path / "h")
    back = onespike.from_nir(onespike.to_nir(net))
    for other in (loaded, back):
        result = onespike.simulate(other, x[:50])
        assert torch.equal(result.outputs, reference.outputs)
        assert torch.equal(result.predictions, reference.predictions)


def test_the_membrane_of_folded_currents_has_the_same_values_and_gradients() -> None:
    # Training gives membrane() the currents of all steps folded into the batch and viewed as
    # (T, B, ...): it recurs in place on that fresh tensor, not on a copy of the view.
    torch.manual_seed(0)
    source = torch.randn(4 * 3, 5, requires_grad=True)
    weights = torch.randn(4, 3, 5)
    results = []
    for folded in (True, False):
        leak = torch.tensor(0.75, requires_grad=True)
        fresh = source * 2.0  # a non-leaf tensor that nothing else reads
        z = fresh.unflatten(0, (4, 3)) if folded else fresh.view(4, 3, 5).clone()
        v = membrane(z, leak)
        assert v.shape == (4, 3, 5)
        (v * weights).sum().backward()
        assert source.grad is not None
        assert leak.grad is not None
        results.append((v.detach().clone(), source.grad.clone(), leak.grad.clone()))
        source.grad = None
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
    expected = torch.zeros(3, 5)
    for t, current in enumerate((source.detach() * 2.0).view(4, 3, 5)):
        expected = 0.75 * expected + current
        assert torch.allclose(results[0][0][t], expected)


def test_distillation_loss_by_hand() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]], requires_grad=True)
    teacher = torch.tensor([[1.0, 1.0], [0.0, 4.0]])
    tau = 2.0
    expected = 0.0
    for row, target in zip(logits.tolist(), teacher.tolist(), strict=True):
        p = [math.exp(t / tau) / sum(math.exp(u / tau) for u in target) for t in target]
        log_q = [z / tau - math.log(sum(math.exp(u / tau) for u in row)) for z in row]
        expected += sum(a * (math.log(a) - b) for a, b in zip(p, log_q, strict=True))
    loss = distillation_loss(logits, teacher, tau)
    assert float(loss.detach()) == pytest.approx(tau**2 * expected / 2)
    loss.backward()
    assert logits.grad is not None
    # tau**2 * d/dz CE = tau * (softmax(z / tau) - softmax(teacher / tau)) / batch
    q = torch.softmax(logits.detach() / tau, dim=1)
    p_t = torch.softmax(teacher / tau, dim=1)
    assert torch.allclose(logits.grad, tau * (q - p_t) / 2)
    assert float(distillation_loss(teacher, teacher, tau)) == pytest.approx(0.0, abs=1e-7)


def _teacher(outputs: int = 10) -> torch.nn.Module:
    torch.manual_seed(4)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, outputs)).train()


def test_stdb_distils_from_a_teacher_flips_and_resumes_exactly(
    digits_net: tuple[onespike.SpikingNetwork, Dataset, Dataset],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net, subset, _ = digits_net
    teacher = _teacher()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    config = STDBConfig(epochs=2, batch_size=32, lr=2e-3, seed=3, flip=True, distill_weight=1.0)
    result = finetune_stdb(net, subset, config, progress=False, teacher=teacher)
    assert teacher.training  # left in the mode it was given in, with its weights
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    labels_only = dataclasses.replace(config, distill_weight=0.0)
    plain = finetune_stdb(net, subset, labels_only, progress=False)
    unflipped = finetune_stdb(
        net, subset, dataclasses.replace(config, flip=False), progress=False, teacher=teacher
    )
    # the teacher's term and the flips each change what is trained
    first = [r.history.history[0]["loss"] for r in (result, plain, unflipped)]
    assert len(set(first)) == 3

    calls: list[torch.Tensor] = []
    real_loss = onespike.stdb.distillation_loss

    def spy(logits: torch.Tensor, target: torch.Tensor, tau: float) -> torch.Tensor:
        calls.append(target)
        return real_loss(logits, target, tau)

    monkeypatch.setattr(onespike.stdb, "distillation_loss", spy)
    finetune_stdb(
        net, subset, dataclasses.replace(config, epochs=1), progress=False, teacher=teacher
    )
    monkeypatch.undo()
    assert len(calls) == 10  # one per step, on the teacher's logits of that step's batch
    assert all(c.shape == (32, 10) and not c.requires_grad for c in calls)

    resumed = _interrupted_and_resumed(net, subset, config, tmp_path, monkeypatch, teacher=teacher)
    _assert_same_network(result.net, resumed.net)
    other = _teacher()
    with torch.no_grad():
        other[1].bias.add_(1.0)
    with pytest.raises(onespike.ConfigError, match="other STDB or hybrid options"):
        finetune_stdb(net, subset, config, checkpoint_dir=tmp_path, progress=False, teacher=other)


def test_distillation_refuses_what_it_cannot_use(
    digits_net: tuple[onespike.SpikingNetwork, Dataset, Dataset],
) -> None:
    net, subset, _ = digits_net
    for kwargs, match in (
        ({"distill_weight": -1.0}, "distill_weight must be a finite number >= 0"),
        ({"distill_temperature": 0.0}, "distill_temperature must be a finite number > 0"),
        ({"flip": 1}, "flip must be True or False"),
    ):
        with pytest.raises(onespike.ConfigError, match=match):
            STDBConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(onespike.ConfigError, match="needs a teacher"):
        finetune_stdb(net, subset, STDBConfig(distill_weight=1.0), progress=False)
    with pytest.raises(onespike.ConfigError, match="distill_weight is 0, so it would be ignored"):
        finetune_stdb(net, subset, STDBConfig(), progress=False, teacher=_teacher())
    with pytest.raises(onespike.ConfigError, match=r"one logit per class, shape \(64, 10\)"):
        finetune_stdb(
            net, subset, STDBConfig(distill_weight=1.0), progress=False, teacher=_teacher(7)
        )
    flat = Dataset("flat", "train", subset.images.flatten(1), subset.labels, 10)
    with pytest.raises(onespike.ConfigError, match="flip=True needs images"):
        finetune_stdb(net, flat, STDBConfig(flip=True), progress=False)
