"""NIR graphs from other tools: hand-built graphs with hand-computed spikes, Norse's exports."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import onespike
from onespike.neurons import LIFParams, LIFState, lif_initial_state, lif_step
from onespike.simulate import simulate

nir = pytest.importorskip(
    "nir", reason="NIR support is the 'nir' extra: pip install 'onespike[nir]'"
)

torch.set_num_threads(1)
F32 = np.float32


def _config(steps: int) -> onespike.RateConfig:
    return onespike.RateConfig(steps=steps, reset="zero", initial_membrane=0.0)


def _a(*values: float) -> np.ndarray:
    return np.array(values, dtype=F32)


def _both(net: onespike.SpikingNetwork, x: torch.Tensor) -> onespike.SimResult:
    """Stepped and closed-form simulation agree exactly; returns the stepped result."""
    ref = simulate(net, x, method="stepped")
    fast = simulate(net, x, method="closed_form")
    for name, count in ref.spike_counts.items():
        assert torch.equal(count, fast.spike_counts[name]), name
    assert torch.equal(ref.predictions, fast.predictions)
    return ref


# The step functions ---------------------------------------------------------------------


def test_lif_step_leaks_fires_strictly_and_resets_to_v_reset() -> None:
    params = LIFParams(1.0, alpha=0.5, v_leak=0.0, r=1.0, v_reset=-0.25)
    state = lif_initial_state((1, 1))
    trace = []
    for _ in range(4):
        spikes, state = lif_step(torch.ones(1, 1), state, params)
        trace.append((float(spikes), float(state.v)))
    # v: 0 + 0.5 (1 - 0) = 0.5; 0.5 + 0.5 (1 - 0.5) = 0.75; 0.875; 0.9375: never reaches 1
    assert trace == [(0.0, 0.5), (0.0, 0.75), (0.0, 0.875), (0.0, 0.9375)]
    params = params._replace(r=2.0)
    state = lif_initial_state((1, 1))
    trace = []
    for _ in range(3):
        spikes, state = lif_step(torch.ones(1, 1), state, params)
        trace.append((float(spikes), float(state.v)))
    # v: 0.5 (2) = 1.0 fires (threshold reached), reset -0.25; -0.25 + 0.5 (2.25) = 0.875
    assert trace == [(1.0, -0.25), (0.0, 0.875), (1.0, -0.25)]


def test_cuba_lif_step_filters_the_current_first() -> None:
    params = LIFParams(10.0, alpha=0.5, beta=0.5, w_in=2.0)
    state = LIFState(torch.zeros(1), torch.zeros(1))
    currents, membranes = [], []
    for _ in range(3):
        _, state = lif_step(torch.ones(1), state, params)
        currents.append(float(state.i))
        membranes.append(float(state.v))
    # i: 0.5 (2 - 0) = 1; 1 + 0.5 (2 - 1) = 1.5; 1.75.  v: 0.5; 0.5 + 0.5 (1.5 - 0.5) = 1;
    # 1 + 0.5 (1.75 - 1) = 1.375
    assert currents == [1.0, 1.5, 1.75]
    assert membranes == [0.5, 1.0, 1.375]


# Hand-built graphs -----------------------------------------------------------------------


def _if_graph() -> Any:
    return nir.NIRGraph.from_list(
        nir.Affine(weight=np.array([[1.0, 0.0], [0.5, 0.5]], dtype=F32), bias=_a(0.0, 0.125)),
        nir.IF(r=_a(1.0, 1.0), v_threshold=_a(1.0, 0.5), v_reset=_a(0.0, 0.0)),
    )


def test_hand_built_if_graph_spikes_as_computed_by_hand() -> None:
    net = onespike.from_nir(_if_graph(), config=_config(4))
    assert [p.name for p in net.populations] == ["input", "if", "if.count"]
    result = _both(net, torch.tensor([[0.5, 0.25]]))
    # neuron 0: z = 0.5; v = 0.5, 1.0 (not above 1), 1.5 fires -> 0, 0.5: one spike.
    # neuron 1: z = 0.25 + 0.125 + 0.125 = 0.5 > ... v = 0.5 (not above 0.5), 1.0 fires -> 0,
    # 0.5, 1.0 fires: two spikes. The readout counts them: class 1.
    assert result.spike_counts["if"].tolist() == [[1.0, 2.0]]
    assert result.predictions.tolist() == [1]
    assert result.outputs.tolist() == [[0.25, 0.5]]


def test_hand_built_lif_and_cuba_lif_graph() -> None:
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=np.array([[1.0], [2.0]], dtype=F32)),
        nir.LIF(
            tau=_a(2.0, 2.0),
            r=_a(1.0, 1.0),
            v_leak=_a(0.0, 0.0),
            v_threshold=_a(0.7, 0.7),
            v_reset=_a(0.0, 0.0),
        ),
        nir.Linear(weight=np.array([[1.0, 1.0]], dtype=F32)),
        nir.CubaLIF(
            tau_syn=_a(1.0),
            tau_mem=_a(1.0),
            r=_a(1.0),
            v_leak=_a(0.0),
            v_threshold=_a(0.5),
            v_reset=_a(0.0),
            w_in=_a(1.0),
        ),
    )
    net = onespike.from_nir(graph, config=_config(4))
    names = [p.name for p in net.populations]
    assert names == ["input", "lif", "cubalif", "cubalif.count"]
    result = _both(net, torch.tensor([[1.0]]))
    # lif (alpha = dt / tau = 0.5), z = 1 and 2: neuron 0: v = 0.5, 0.75 fires -> 0, 0.5,
    # 0.75 fires: steps 2 and 4. Neuron 1: v = 1 fires, 1 fires, ...: every step.
    # cubalif (alpha = beta = 1): i = its input, v = i: inputs 1, 2, 1, 2 all above 0.5.
    assert result.spike_counts["lif"].tolist() == [[2.0, 4.0]]
    assert result.spike_counts["cubalif"].tolist() == [[4.0]]


def test_dt_scales_the_leak() -> None:
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=np.array([[1.0]], dtype=F32)),
        nir.LIF(tau=_a(4.0), r=_a(1.0), v_leak=_a(0.0), v_threshold=_a(0.7), v_reset=_a(0.0)),
    )
    x = torch.tensor([[1.0]])
    # dt = 2: alpha = 0.5, v = 0.5, 0.75 fires (as above): 2 spikes in 4 steps.
    net = onespike.from_nir(graph, dt=2.0, config=_config(4))
    assert _both(net, x).spike_counts["lif"].tolist() == [[2.0]]
    # dt = 1: alpha = 0.25, v = 0.25, 0.4375, 0.578125, 0.68359375: no spike.
    net = onespike.from_nir(graph, config=_config(4))
    assert _both(net, x).spike_counts["lif"].tolist() == [[0.0]]
    graph.metadata["dt"] = 2.0
    net = onespike.from_nir(graph, config=_config(4))
    assert _both(net, x).spike_counts["lif"].tolist() == [[2.0]]


def test_metadata_dt_that_is_not_a_number_is_refused() -> None:
    graph = _if_graph()
    graph.metadata["dt"] = "fast"
    with pytest.raises(onespike.InvalidGraphError, match="metadata 'dt' is 'fast'"):
        onespike.from_nir(graph)


def test_inputs_of_a_node_are_summed_skip_connection() -> None:
    """input -> a -> IF 'h' -> b -> IF 'o', and 'h' -> 'o' directly: o's input is b(h) + h."""
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1])}),
            "a": nir.Linear(weight=np.array([[0.5]], dtype=F32)),
            "h": nir.IF(r=_a(1.0), v_threshold=_a(0.75), v_reset=_a(0.0)),
            "b": nir.Linear(weight=np.array([[0.25]], dtype=F32)),
            "o": nir.IF(r=_a(1.0), v_threshold=_a(1.0), v_reset=_a(0.0)),
            "output": nir.Output(output_type={"output": np.array([1])}),
        },
        edges=[("input", "a"), ("a", "h"), ("h", "b"), ("b", "o"), ("h", "o"), ("o", "output")],
    )
    net = onespike.from_nir(graph, config=_config(6))
    assert [len(p.projections) for p in net.populations] == [0, 1, 2, 1]
    result = _both(net, torch.tensor([[1.0]]))
    # h: z = 0.5: v = 0.5, 1.0 fires -> 0, ...: fires at steps 2, 4, 6 (1-based).
    # o: z = 1.25 when h fires: v = 0, 1.25 fires, 0, 1.25 fires, ...: 3 spikes.
    assert result.spike_counts["h"].tolist() == [[3.0]]
    assert result.spike_counts["o"].tolist() == [[3.0]]


def test_pooling_scale_threshold_and_li_readout() -> None:
    conv = nir.Conv2d(
        input_shape=(4, 4),
        weight=np.ones((1, 1, 1, 1), dtype=F32),
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=_a(0.0),
    )
    graph = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([1, 4, 4])}),
            "conv": conv,
            "sum": nir.SumPool2d(
                kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
            ),
            "avg": nir.AvgPool2d(
                kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
            ),
            "scale": nir.Scale(scale=np.full((1, 1, 1), 0.5, dtype=F32)),
            "flat": nir.Flatten(input_type={"input": np.array([1, 1, 1])}, start_dim=0),
            "spikes": nir.Threshold(threshold=_a(0.9)),
            "fc": nir.Affine(weight=np.array([[1.0], [-1.0]], dtype=F32), bias=_a(0.0, 2.0)),
            "li": nir.LI(tau=_a(2.0, 2.0), r=_a(1.0, 1.0), v_leak=_a(0.0, 0.0)),
            "output": nir.Output(output_type={"output": np.array([2])}),
        },
        edges=[
            ("input", "conv"),
            ("conv", "sum"),
            ("sum", "avg"),
            ("avg", "scale"),
            ("scale", "flat"),
            ("flat", "spikes"),
            ("spikes", "fc"),
            ("fc", "li"),
            ("li", "output"),
        ],
        type_check=False,  # nir 1.0 infers no pooling output shapes
    )
    net = onespike.from_nir(graph, config=_config(2))
    assert [p.name for p in net.populations] == ["input", "spikes", "li"]
    x = torch.full((1, 1, 4, 4), 0.25)
    result = _both(net, x)
    # sum pool: 4 x 0.25 = 1 per window; avg pool of the 2x2 windows: 1; x 0.5 = 0.5 < 0.9:
    # no spike. LI: z = (0, 2); v = 0.5 z, then v + 0.5 (z - v): (0, 1), (0, 1.5).
    assert result.spike_counts["spikes"].tolist() == [[0.0]]
    assert result.outputs.tolist() == [[0.0, 1.5]]
    x = torch.full((1, 1, 4, 4), 0.5)  # 2 x 0.5 = 1 > 0.9: one spike per step
    result = _both(net, x)
    assert result.spike_counts["spikes"].tolist() == [[2.0]]
    # LI input (1, 1): v = (0.5, 0.5), (0.75, 0.75)
    assert result.outputs.tolist() == [[0.75, 0.75]]


def test_imported_network_counts_prices_and_draws() -> None:
    from onespike.report import spike_raster

    net = onespike.from_nir(_if_graph(), config=_config(4))
    x = torch.tensor([[0.5, 0.25]])
    result = simulate(net, x)
    ops = {layer.name: layer for layer in onespike.count_ops(net, result).layers}
    # the analog input's projection is computed once: 2 x 2 MACs; 'if' spikes 3 times and
    # each spike reaches the readout through one synapse
    assert (ops["if"].macs, ops["if"].spikes, ops["if"].synops) == (4, 3, 0)
    assert ops["if.count"].synops == 3
    assert onespike.hardware.run(net, result).energy_pj > 0
    raster = spike_raster(net, x)
    spikes = {
        p["name"]: list(zip(p["step"], p["neuron"], strict=True)) for p in raster["populations"]
    }
    # neuron 1 fires at steps 1 and 3 (0-based), neuron 0 at step 2 (see the test above)
    assert spikes["if"] == [(1, 1), (2, 0), (3, 1)]


def test_imported_network_is_not_exported_again() -> None:
    net = onespike.from_nir(_if_graph(), config=_config(4))
    with pytest.raises(onespike.UnsupportedLayerError, match="population 'if' has the neuron"):
        onespike.to_nir(net)


def test_recurrent_edge_is_refused() -> None:
    graph = _if_graph()
    graph.edges.append(("if", "affine"))
    with pytest.raises(onespike.InvalidGraphError, match=r"cycle: .*affine.*if"):
        onespike.from_nir(graph)


def test_node_onespike_cannot_express_is_refused_with_name_and_type() -> None:
    graph = _if_graph()
    graph.nodes["delay"] = nir.Delay(delay=_a(1.0, 1.0))
    graph.edges.remove(("if", "output"))
    graph.edges += [("if", "delay"), ("delay", "output")]
    with pytest.raises(onespike.UnsupportedLayerError, match=r"node 'delay' is a nir\.Delay"):
        onespike.from_nir(graph)
    graph = _if_graph()
    graph.nodes["cubali"] = nir.CubaLI(
        tau_syn=_a(1.0, 1.0), tau_mem=_a(1.0, 1.0), r=_a(1.0, 1.0), v_leak=_a(0.0, 0.0)
    )
    graph.edges += [("affine", "cubali"), ("cubali", "output")]
    with pytest.raises(onespike.InvalidGraphError, match=r"node 'cubali' is a nir\.CubaLI"):
        onespike.from_nir(graph)


def test_li_that_is_not_the_readout_is_refused() -> None:
    graph = nir.NIRGraph.from_list(
        nir.Linear(weight=np.ones((2, 2), dtype=F32)),
        nir.LI(tau=_a(2.0, 2.0), r=_a(1.0, 1.0), v_leak=_a(0.0, 0.0)),
        nir.Linear(weight=np.ones((2, 2), dtype=F32)),
    )
    with pytest.raises(onespike.UnsupportedLayerError, match=r"node 'li' \(nir\.LI\)"):
        onespike.from_nir(graph)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dt": 0.0}, r"dt must be a finite number > 0"),
        ({"config": onespike.RateConfig()}, r"initial_membrane=0\.5"),
        ({"config": onespike.RateConfig(initial_membrane=0.0)}, r"reset='subtract'"),
    ],
)
def test_bad_options_for_a_foreign_graph(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(onespike.ConfigError, match=match):
        onespike.from_nir(_if_graph(), **kwargs)


def test_options_for_onespike_graphs_are_refused() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2))
    graph = onespike.extract(model, torch.zeros(1, 2))
    config = onespike.RateConfig(steps=4, reset="zero", initial_membrane=0.0)
    net = onespike.convert(graph, config, normalized=False)
    with pytest.raises(onespike.ConfigError, match="dt and config apply to NIR graphs"):
        onespike.from_nir(onespike.to_nir(net), dt=1.0)


# Norse -----------------------------------------------------------------------------------


def _norse_counts(layers: list[nn.Module], x: torch.Tensor, steps: int) -> list[torch.Tensor]:
    """Spike counts of every stateful layer, running Norse's modules one step at a time."""
    states: list[Any] = [None] * len(layers)
    counts: list[torch.Tensor] = []
    with torch.no_grad():
        for _ in range(steps):
            value, found = x, 0
            for index, layer in enumerate(layers):
                if isinstance(layer, (nn.Linear, nn.Conv2d, nn.Flatten)):
                    value = layer(value)
                    continue
                value, states[index] = layer(value, states[index])
                if found == len(counts):
                    counts.append(torch.zeros_like(value))
                counts[found] += value
                found += 1
    return counts


def _norse() -> Any:
    return pytest.importorskip("norse.torch", reason="the Norse cases need norse")


def test_norse_iaf_network_imports_with_norse_spike_counts() -> None:
    norse = _norse()
    torch.manual_seed(0)
    layers = [
        nn.Linear(4, 6),
        norse.IAFCell(norse.IAFParameters(v_th=torch.tensor(0.7))),
        nn.Linear(6, 3),
        norse.IAFCell(),
    ]
    graph = norse.to_nir(norse.SequentialState(*layers), torch.zeros(1, 4))
    net = onespike.from_nir(graph, config=_config(30))
    x = torch.rand(16, 4)
    result = _both(net, x)
    hidden, out = _norse_counts(layers, x, 30)
    assert hidden.sum() > 0
    assert out.sum() > 0
    assert torch.equal(result.spike_counts["1"], hidden)
    assert torch.equal(result.spike_counts["3"], out)
    assert onespike.count_ops(net, result).layers
    assert onespike.hardware.run(net, result).energy_pj > 0


def test_norse_lif_network_imports_with_norse_spike_counts() -> None:
    norse = _norse()
    torch.manual_seed(1)
    dt = 2.0**-10
    lif = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(128.0), v_th=torch.tensor(0.3))
    layers = [
        nn.Linear(5, 8),
        norse.LIFBoxCell(lif, dt=dt),
        nn.Linear(8, 4),
        norse.LIFBoxCell(lif, dt=dt),
    ]
    with torch.no_grad():
        layers[2].weight.abs_().mul_(4)  # so that the output layer fires too
    graph = norse.to_nir(norse.SequentialState(*layers), torch.zeros(1, 5), dt=dt)
    # Norse 1.1 writes tau = dt / tau_mem_inv, the time constant times dt: in the graph's time
    # unit the step is dt**2 (alpha = dt**2 / (dt / tau_mem_inv) = dt * tau_mem_inv = 1/8)
    net = onespike.from_nir(graph, dt=dt**2, config=_config(40))
    x = torch.rand(16, 5) * 2
    result = _both(net, x)
    hidden, out = _norse_counts(layers, x, 40)
    assert hidden.sum() > 0
    assert out.sum() > 0
    assert torch.equal(result.spike_counts["1"], hidden)
    assert torch.equal(result.spike_counts["3"], out)
    # Norse's own reader of the same graph, at the same step, counts the same spikes
    module = norse.from_nir(graph, dt=dt**2)
    again = _norse_counts([m for m in module.children() if not isinstance(m, nn.Identity)], x, 40)
    assert torch.equal(again[0], hidden)
    assert torch.equal(again[1], out)


def test_cuba_lif_graph_counts_as_norse_reads_it() -> None:
    """Norse's reader (norse.torch.from_nir) of a hand-built CubaLIF graph, at the same dt."""
    norse = _norse()
    gen = np.random.default_rng(5)
    graph = nir.NIRGraph.from_list(
        nir.Affine(
            weight=gen.normal(0, 1, (6, 3)).astype(F32), bias=gen.normal(0, 0.1, 6).astype(F32)
        ),
        nir.CubaLIF(
            tau_syn=np.full(6, 5e-3, dtype=F32),
            tau_mem=np.full(6, 1e-2, dtype=F32),
            r=np.full(6, 1.5, dtype=F32),
            v_leak=np.zeros(6, dtype=F32),
            v_threshold=np.full(6, 0.2, dtype=F32),
            v_reset=np.zeros(6, dtype=F32),
            w_in=np.full(6, 2.0, dtype=F32),
        ),
    )
    net = onespike.from_nir(graph, dt=1e-3, config=_config(50))
    x = torch.rand(16, 3)
    result = _both(net, x)
    module = norse.from_nir(graph, dt=1e-3)
    (counts,) = _norse_counts(
        [m for m in module.children() if not isinstance(m, nn.Identity)], x, 50
    )
    assert counts.sum() > 0
    assert torch.equal(result.spike_counts["cubalif"], counts)
