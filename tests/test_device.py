"""Every tensor a simulator, count, fine-tuner or optimiser creates follows its input's device
and dtype; ``SpikingNetwork.to`` moves every tensor.

There is no GPU here, so a foreign device is emulated: while the code runs, torch's default
device is ``meta``, so a factory call (``torch.zeros``, ``torch.full``, ...) that omits
``device=`` creates a meta tensor, which the recording wrapper reports (and which then fails
to mix with the CPU input). Float64 networks and inputs catch a factory that omits ``dtype=``
(torch's default is float32). Seeded random draws (a ``generator=`` argument) are made on the
CPU on purpose, so that a seed gives the same numbers on every device; a tensor asked for on
``meta`` explicitly is a shape probe (no data) and passes.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import pytest
import torch
from torch import nn
from torch.utils._device import _device_constructors

import onespike
from onespike.convert import HybridConfig, RateConfig, TTFSConfig
from onespike.data import Dataset
from onespike.network import SpikingNetwork, tensors_of
from onespike.optimize import optimize_for_ttfs
from onespike.simulate.ttfs import codes_from_times
from onespike.stdb import STDBConfig, finetune_stdb

FACTORIES = (
    "zeros",
    "ones",
    "full",
    "empty",
    "arange",
    "tensor",
    "as_tensor",
    "rand",
    "randn",
    "randint",
    "randperm",
    "linspace",
    "eye",
)


simulate_module = importlib.import_module("onespike.simulate")  # the package, not the function

# torch's default-device mode recognises factories by identity, from a set it builds once:
# build it now, from the real functions, before any test patches them.
_device_constructors()


class Made(NamedTuple):
    factory: str
    device: torch.device
    dtype: torch.dtype
    seeded: bool
    probe: bool  # asked for ``device="meta"`` explicitly: a shape probe, no data


@contextmanager
def recording(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Made]]:
    """Record every tensor the torch factories make, with ``meta`` as the default device."""
    made: list[Made] = []
    with monkeypatch.context() as patch:
        for name in FACTORIES:
            real = getattr(torch, name)

            def wrapper(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
                out = _real(*args, **kwargs)
                seeded = kwargs.get("generator") is not None
                probe = str(kwargs.get("device")) == "meta"
                made.append(Made(_name, out.device, out.dtype, seeded, probe))
                return out

            patch.setattr(torch, name, wrapper)
        torch.set_default_device("meta")
        try:
            yield made
        finally:
            torch.set_default_device(None)


def assert_follows(made: list[Made], device: torch.device, dtype: torch.dtype | None) -> None:
    """Every tensor in ``made`` is on ``device`` and, unless ``dtype`` is None, of ``dtype``."""
    assert made, "the code created no tensor through a factory: the check would be empty"
    wrong_device = [m for m in made if m.device != device and not m.probe]
    assert not wrong_device, f"tensors created off {device}: {wrong_device}"
    if dtype is None:
        return
    wrong_dtype = [m for m in made if m.dtype.is_floating_point and m.dtype != dtype]
    wrong_dtype = [m for m in wrong_dtype if not (m.seeded or m.probe)]
    assert not wrong_dtype, f"floating-point tensors not of {dtype}: {wrong_dtype}"


def _model() -> nn.Module:
    """Dyadic weights (multiples of 1/8): float32 and float64 compute the same numbers."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(36, 8),
        nn.ReLU(),
        nn.Linear(8, 5),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.round(p * 8) / 8)
    return model.eval()


def _inputs(n: int = 6) -> torch.Tensor:
    """Multiples of 1/16 in [0, 1]."""
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 17, (n, 1, 8, 8), generator=g).float() / 16


def _graph() -> onespike.Graph:
    x = _inputs()
    return onespike.normalize(onespike.extract(_model(), x[:2]), [x])


def _nets() -> dict[str, SpikingNetwork]:
    graph = _graph()
    unit = graph.with_scales(dict.fromkeys(graph.scales, 1.0))  # dyadic: exact in float32
    x = _inputs()
    return {
        "ttfs": onespike.convert(unit, TTFSConfig(steps=5)),
        "ttfs-rect": onespike.convert(unit, TTFSConfig(steps=5, rectifier=True)),
        "rate": onespike.convert(graph, RateConfig(steps=6)),
        "rate-poisson": onespike.convert(graph, RateConfig(steps=6, input="poisson", seed=2)),
        "hybrid": onespike.convert(graph, HybridConfig(steps=3), calibration=x),
    }


NETS = _nets()
SIMULATIONS = [(name, method) for name in NETS for method in ("closed_form", "stepped")]


@pytest.mark.parametrize(("name", "method"), SIMULATIONS)
def test_simulators_and_count_ops_create_tensors_on_the_input_device_and_dtype(
    name: str, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    net = NETS[name].to(dtype=torch.float64)
    x = _inputs().double()
    with recording(monkeypatch) as made:
        result = onespike.simulate(net, x, method=method)  # type: ignore[arg-type]
        conventions = ["onespike", "sinabs"] + (["quartz"] if name.startswith("ttfs") else [])
        reports = [onespike.count_ops(net, result, c) for c in conventions]  # type: ignore[arg-type]
    assert_follows(made, torch.device("cpu"), torch.float64)
    assert result.predictions.device == x.device
    assert reports[0].total("synops") > 0
    # the same counts as the float32 network on float32 input (dyadic TTFS: exact)
    if name.startswith("ttfs"):
        plain = onespike.simulate(NETS[name], _inputs(), method=method)  # type: ignore[arg-type]
        for convention, report in zip(conventions, reports, strict=True):
            plain_ops = onespike.count_ops(NETS[name], plain, convention)  # type: ignore[arg-type]
            assert report.layers == plain_ops.layers


def test_the_trap_catches_a_factory_without_device_or_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check can fail: an omitted ``device=`` lands on meta, an omitted ``dtype=`` on
    float32."""
    with recording(monkeypatch) as made:
        torch.zeros(3)
        torch.full((2,), 1.0, device="cpu")
    assert made[0].device == torch.device("meta")
    with pytest.raises(AssertionError, match="off cpu"):
        assert_follows(made, torch.device("cpu"), torch.float64)
    with pytest.raises(AssertionError, match=r"not of torch\.float64"):
        assert_follows([m for m in made if m.factory == "full"], torch.device("cpu"), torch.float64)


def test_hardware_workload_follows_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    net = NETS["ttfs"].to(dtype=torch.float64)
    x = _inputs().double()
    result = onespike.simulate(net, x)
    with recording(monkeypatch) as made:
        report = onespike.hardware.run(net, result)
    assert_follows(made, torch.device("cpu"), torch.float64)
    plain = onespike.hardware.run(NETS["ttfs"], onespike.simulate(NETS["ttfs"], _inputs()))
    assert report.energy_pj == plain.energy_pj > 0


def _dataset(n: int = 16) -> Dataset:
    labels = torch.arange(n) % 5
    return Dataset("toy", "train", _inputs(n), labels, 5)


def test_one_stdb_step_creates_tensors_on_the_network_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    net = NETS["hybrid"]
    config = STDBConfig(epochs=1, batch_size=16, lr=1e-3, seed=0)
    data = _dataset()
    with recording(monkeypatch) as made:
        tuned = finetune_stdb(net, data, config, progress=False).net
    assert_follows(made, torch.device("cpu"), torch.float32)  # STDB trains in float32
    assert tuned.device == torch.device("cpu")
    assert all(t.device == torch.device("cpu") for t in tensors_of(tuned))


def test_one_optimize_for_ttfs_step_creates_tensors_on_the_model_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 5))
    data = _dataset()
    with recording(monkeypatch) as made:
        result = optimize_for_ttfs(model, data, steps=4, epochs=1, batch_size=16, progress=False)
    assert_follows(made, torch.device("cpu"), torch.float32)
    assert all(p.device == torch.device("cpu") for p in result.net.parameters())
    scales = [m.scale for m in result.net.modules() if hasattr(m, "levels") and hasattr(m, "scale")]
    assert scales
    assert all(s.dtype == torch.float32 for s in scales)


def _all_tensors(net: SpikingNetwork) -> list[torch.Tensor]:
    found = tensors_of(net)
    assert found, "the network holds no tensor"
    return found


def _tensor_fields(net: SpikingNetwork) -> int:
    """Tensors counted by hand: node weights/biases/scales/shifts, biases, tensor thresholds,
    fan-outs."""
    count = sum(len(fans) for fans in net.fanouts.values())
    seen: set[int] = set()
    for pop in net.populations:
        count += pop.bias is not None
        count += isinstance(pop.threshold, torch.Tensor)
        for proj in pop.projections:
            for op in proj.ops:
                if id(op) in seen:
                    continue
                seen.add(id(op))
                for key in ("weight", "bias", "scale", "shift"):
                    count += isinstance(getattr(op, key, None), torch.Tensor)
    return count


@pytest.mark.parametrize("name", list(NETS))
def test_to_moves_every_tensor(name: str) -> None:
    net = NETS[name]
    assert net.device == torch.device("cpu")
    moved = net.to("meta")
    tensors = _all_tensors(moved)
    assert len(tensors) == _tensor_fields(net) > 0
    assert all(t.device == torch.device("meta") for t in tensors)
    assert moved.device == torch.device("meta")
    assert net.device == torch.device("cpu")  # the original is unchanged
    # a float64 round trip: every floating tensor changes dtype and comes back bit for bit
    wide = net.to(dtype=torch.float64)
    assert all(t.dtype == torch.float64 for t in tensors_of(wide) if t.is_floating_point())
    back = wide.to("cpu", torch.float32)
    for a, b in zip(tensors_of(net), tensors_of(back), strict=True):
        assert a.dtype == b.dtype
        assert torch.equal(a, b)
    assert net.to() is net  # nothing to change


def test_to_moves_thresholds_and_imported_neuron_constants() -> None:
    from dataclasses import replace

    from onespike.neurons import LIFParams

    net = NETS["rate"]
    hidden = next(p for p in net.populations if p.kind == "neuron" and not p.is_output)
    params = LIFParams(threshold=torch.ones(hidden.shape), alpha=torch.tensor(0.5))
    pops = tuple(
        replace(p, neuron=params, threshold=torch.full(p.shape, 2.0)) if p is hidden else p
        for p in net.populations
    )
    custom = SpikingNetwork(net.config, pops, net.fanouts)
    moved = custom.to("meta")
    pop = moved[hidden.name]
    assert isinstance(pop.threshold, torch.Tensor)
    assert pop.threshold.device.type == "meta"
    assert pop.neuron is not None
    assert isinstance(pop.neuron.threshold, torch.Tensor)
    assert pop.neuron.threshold.device.type == "meta"
    assert isinstance(pop.neuron.alpha, torch.Tensor)
    assert pop.neuron.alpha.device.type == "meta"
    assert len(tensors_of(moved)) == _tensor_fields(net) + 3


@pytest.mark.parametrize("name", ["ttfs", "ttfs-rect"])
def test_float64_ttfs_codes_equal_float32(name: str) -> None:
    net = NETS[name]
    x = _inputs()
    for method in ("closed_form", "stepped"):
        narrow = onespike.simulate(net, x, method=method)  # type: ignore[arg-type]
        wide = onespike.simulate(net.to(dtype=torch.float64), x.double(), method=method)  # type: ignore[arg-type]
        narrow_codes = codes_from_times(net, narrow)
        wide_codes = codes_from_times(net, wide)
        for pop in net.populations:
            assert torch.equal(narrow_codes[pop.name].double(), wide_codes[pop.name])
            assert torch.equal(narrow.spike_times[pop.name].double(), wide.spike_times[pop.name])
        assert torch.equal(narrow.predictions, wide.predictions)
    # and the codes are not all zero: the comparison has something to compare
    assert int(codes_from_times(net, onespike.simulate(net, x))[net.output.name].sum()) > 0


def test_rate_counts_equal_in_float64() -> None:
    for name in ("rate", "rate-poisson"):
        net = NETS[name]
        x = _inputs()
        narrow = onespike.simulate(net, x)
        wide = onespike.simulate(net.to(dtype=torch.float64), x.double())
        total = 0
        for pop in net.populations:
            counts = narrow.spike_counts[pop.name]
            total += int(counts.sum())
            assert torch.equal(counts.double(), wide.spike_counts[pop.name])
        assert total > 0


class _Reached(Exception):
    pass


def test_simulate_moves_the_batch_to_the_network_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch on another device is moved onto ``net.device`` before the simulator runs."""
    seen: list[torch.device] = []

    def spy(net: SpikingNetwork, x: torch.Tensor) -> Any:
        seen.append(x.device)
        raise _Reached

    monkeypatch.setitem(simulate_module._SIMULATORS[TTFSConfig], "closed_form", spy)
    monkeypatch.setattr(SpikingNetwork, "device", property(lambda self: torch.device("meta")))
    with pytest.raises(_Reached):
        onespike.simulate(NETS["ttfs"], _inputs())
    assert seen == [torch.device("meta")]


def test_extract_normalize_and_convert_follow_a_float64_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = _model().double()
    x = _inputs().double()
    with recording(monkeypatch) as made:
        graph = onespike.extract(model, x[:2])
    assert_follows(made, torch.device("cpu"), torch.float64)
    # the percentile and the hybrid calibration compute in float32 by design: device only
    with recording(monkeypatch) as made:
        graph = onespike.normalize(graph, [x])
        hybrid = onespike.convert(graph, HybridConfig(steps=3), calibration=x)
    assert_follows(made, torch.device("cpu"), None)
    with recording(monkeypatch) as made:
        nets = [
            onespike.convert(graph, TTFSConfig(steps=5)),
            onespike.convert(graph, RateConfig(steps=6)),
        ]
    assert_follows(made, torch.device("cpu"), torch.float64)
    for net in [*nets, hybrid]:
        floats = [t for t in tensors_of(net) if t.is_floating_point()]
        assert floats
        assert all(t.dtype == torch.float64 for t in floats)
