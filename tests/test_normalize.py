"""normalize: exact percentiles over every calibration activation, in one pass."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from torch import nn

import onespike
from onespike.network import populations

normalize_module = importlib.import_module("onespike.normalize")


def _net_and_data() -> tuple[onespike.Graph, list[torch.Tensor], nn.Module]:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 5),
    ).eval()  # fmt: skip
    gen = torch.Generator().manual_seed(1)
    data = [torch.rand(40, 1, 16, 16, generator=gen) for _ in range(5)]
    return onespike.extract(model, data[0]), data, model


def _by_hand(model: nn.Module, data: list[torch.Tensor], percentile: float) -> dict[str, float]:
    """np.percentile of every rectified activation, from forward hooks on the module."""
    seen: dict[str, list[np.ndarray]] = {"1": [], "4": [], "6": []}
    hooks = [
        model[int(name)].register_forward_hook(
            lambda _m, _i, out, name=name: seen[name].append(torch.relu(out).flatten().numpy())
        )
        for name in seen
    ]
    with torch.no_grad():
        for x in data:
            model(x)
    for hook in hooks:
        hook.remove()
    return {k: float(np.percentile(np.concatenate(v), percentile)) for k, v in seen.items()}


@pytest.mark.parametrize("percentile", [100.0, 99.99, 99.9, 99.0, 90.0])
def test_scales_are_numpys_percentile_of_every_activation(percentile: float) -> None:
    graph, data, model = _net_and_data()
    scales = onespike.normalize(graph, data, percentile=percentile).scales
    expected = _by_hand(model, data, percentile)
    names = [p.name for p in populations(graph) if p.kind == "neuron"]
    assert names == ["1", "4", "6"]
    assert scales == expected  # bit for bit


def test_iterators_and_pairs_give_the_same_scales() -> None:
    graph, data, _ = _net_and_data()
    listed = onespike.normalize(graph, data).scales
    pairs = iter([(x, torch.zeros(len(x))) for x in data])
    assert onespike.normalize(graph, pairs).scales == listed


def test_percentile_arithmetic_is_numpys() -> None:
    """The interpolation from the kept top values equals np.percentile of all values, over
    sizes, ties, zeros and percentiles where the interpolation weight crosses one half."""
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 5000))
        values = np.maximum(rng.normal(size=n), 0).astype(np.float32)
        if trial % 3 == 0:
            values = np.round(values, 1)  # ties
        choices = [100.0, 99.99, 99.9, 99.0, 97.5, 90.0, 50.0, float(rng.uniform(1, 100))]
        p = float(rng.choice(choices))
        count = n
        need = count - int(np.floor(normalize_module._virtual_index(count, p)))
        top = torch.from_numpy(np.sort(values)[::-1][:need].copy())
        assert normalize_module._percentile(top, count, p) == float(np.percentile(values, p))


def test_silent_population_keeps_scale_one_and_bad_calls_are_refused() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 2)).eval()
    with torch.no_grad():
        model[0].weight.fill_(-1.0)
        model[0].bias.fill_(-1.0)
    x = torch.rand(4, 3)
    graph = onespike.extract(model, x)
    assert onespike.normalize(graph, [x]).scales["1"] == 1.0
    with pytest.raises(onespike.ShapeError, match="no batches"):
        onespike.normalize(graph, [])
    with pytest.raises(onespike.ConfigError, match="percentile"):
        onespike.normalize(graph, [x], percentile=0)
