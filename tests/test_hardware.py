"""Hardware models: closed-form cycles and energy on toy networks, scaling, and bad inputs.

Every test prices with a "unit" technology table whose numbers make hand arithmetic easy:
an add costs 1 pJ, a multiply 2 pJ, any 64-bit SRAM access 64 pJ (so 1 pJ per bit), and the
leakage is 1 mW over the config's 3 KB of SRAM. At 1 GHz a cycle is 1 ns, so static energy
in picojoules equals the cycle count. With ``state_bits=16``, ``weight_bits=8``,
``activation_bits=8`` and ``event_bits=16``:

- weight read 8 pJ; state read or write 16 pJ; activation read or write 8 pJ;
- a synaptic event (add, weight read, state read and write): 1 + 8 + 32 = 41 pJ;
- a neuron update (two adds, state read and write): 2 + 32 = 34 pJ;
- a routed spike (event-queue write and read of 16 bits): 32 pJ.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import onespike
from onespike import hardware as hw
from onespike.cli import main
from onespike.errors import ConfigError
from onespike.graph import Graph, Linear, ReLU
from onespike.metrics import LayerOps, OpsReport

UNIT = hw.TechnologyTable(
    name="unit",
    node_nm=1,
    add_pj={"int32": 1.0},
    mult_pj={"int8": 2.0},
    sram_read_pj=((1.0, 64.0),),
    sram_word_bits=64,
    leakage_mw_per_mb=1024 / 3,
)
CONFIG = hw.AcceleratorConfig(
    pes=2,
    cores=1,
    clock_hz=1e9,
    weight_sram_kb=1,
    state_sram_kb=1,
    event_sram_kb=1,
    state_bits=16,
    tech=UNIT,
)


def _toy_graph() -> Graph:
    # 3 inputs -> 4 hidden (ReLU) -> 2 outputs, fully connected, positive weights, no biases.
    return Graph.sequential(
        (3,), [Linear(torch.full((4, 3), 0.125)), ReLU(), Linear(torch.full((2, 4), 0.25))]
    )


def _toy_ttfs() -> tuple[onespike.SpikingNetwork, onespike.SimResult]:
    # T = 4 (L = 3) with the rectifier: every neuron spikes exactly once whatever its value.
    net = onespike.convert(_toy_graph(), onespike.TTFSConfig(steps=4), normalized=False)
    return net, onespike.simulate(net, torch.tensor([[0.5, 1.0, 0.25]]))


def test_sram_energy_interpolates_the_published_points() -> None:
    tech = hw.HOROWITZ_45NM_TECH
    assert tech.sram_access_pj(8) == pytest.approx(10.0)
    assert tech.sram_access_pj(32) == pytest.approx(20.0)
    assert tech.sram_access_pj(1024) == pytest.approx(100.0)
    # 8 -> 32 KB doubles the energy: square-root law inside, and extended below 8 KB.
    assert tech.sram_access_pj(16) == pytest.approx(10.0 * math.sqrt(2))
    assert tech.sram_access_pj(2) == pytest.approx(5.0)
    # 32 KB -> 1 MB: x5 per x32, so 256 KB is 20 * 8 ** (log 5 / log 32).
    assert tech.sram_access_pj(256) == pytest.approx(20.0 * 8 ** (math.log(5) / math.log(32)))
    assert hw.JOUPPI_7NM_TECH.sram_access_pj(1024) == pytest.approx(14.0)
    assert UNIT.sram_access_pj(123.0) == 64.0


def test_ttfs_accelerator_two_layer_closed_form() -> None:
    net, result = _toy_ttfs()
    report = hw.run(net, result, CONFIG)
    assert report.architecture == "ttfs-accelerator"
    inp, hidden, out = report.layers
    # Hidden: 3 input spikes of fan-out 4 on 2 PEs (2 cycles each), 4 fire evaluations
    # (2 cycles), an input window of L + 1 = 4 steps at 1 cycle.
    assert hidden.cycles == 3 * 2 + 2 + 4
    # Output: 4 spikes of fan-out 2 (1 cycle each), 2 fire evaluations (1), window 4.
    assert out.cycles == 4 * 1 + 1 + 4
    assert report.latency_cycles == report.interval_cycles == 21
    assert inp.spike_routing_pj == 3 * 32
    # 12 synaptic events + 4 rectifier compares; 4 fire evaluations; 4 routed spikes.
    assert hidden.compute_pj == 12 + 4
    assert hidden.weight_reads_pj == 12 * 8
    assert hidden.state_reads_writes_pj == 12 * 32
    assert hidden.neuron_updates_pj == 4 * 34
    assert hidden.spike_routing_pj == 4 * 32
    assert out.dynamic_pj == 8 * 41 + 2 + 2 * 34  # the output's spikes are not routed
    assert report.dynamic_pj == 96 + (12 * 41 + 4 + 4 * 34 + 4 * 32) + (8 * 41 + 2 + 2 * 34)
    assert report.static_pj == pytest.approx(21.0)
    assert report.energy_j == pytest.approx((1254 + 21) * 1e-12)
    assert report.latency_s == pytest.approx(21e-9)
    assert report.average_power_w == pytest.approx(1275e-12 / 21e-9)
    assert report.edp_js == pytest.approx(1275e-12 * 21e-9)
    assert report.bottleneck == hidden.name
    assert report.utilisation == pytest.approx((12 + 4 + 8 + 2) / (2 * 21))


def test_rate_core_runs_a_ttfs_network_time_stepped() -> None:
    net, result = _toy_ttfs()
    report = hw.run(net, result, CONFIG, architecture="rate-core")
    _, hidden, out = report.layers
    steps = 3 * (2 + 1) + 1  # L (depth + 1) + 1 steps, every neuron updated at each
    assert report.steps == steps
    # Hidden: 3 x 2 synaptic cycles, counter + rectifier events ceil(8 / 2), a sweep of
    # ceil(4 / 2) per step, 1 step cycle per step.
    assert hidden.cycles == 6 + 4 + steps * 2 + steps
    assert out.cycles == 4 + 2 + steps * 1 + steps
    assert hidden.neuron_updates_pj == 4 * steps * 34
    assert hidden.dynamic_pj == (12 + 8) * 41 + 4 * steps * 34 + 4 * 32
    assert out.dynamic_pj == (8 + 4) * 41 + 2 * steps * 34
    assert report.dynamic_pj == 96 + 2308 + 1172
    assert report.static_pj == pytest.approx(66.0)


def _rate_workload(total_steps: int = 5) -> hw.Workload:
    """One sample of a rate network: analog input (no input spikes, 12 first-layer MACs),
    6 hidden spikes of fan-out 2, the output accumulating its membrane."""
    ops = OpsReport(
        "rate",
        1,
        (
            LayerOps("in", "input", 3),
            LayerOps("h", "neuron", 4, spikes=6, macs=12, neuron_updates=4 * total_steps),
            LayerOps("out", "neuron", 2, synops=12, neuron_updates=2 * total_steps),
        ),
    )
    layers = (
        hw.LayerLoad("in", "input", 3),
        hw.LayerLoad("h", "neuron", 4),
        hw.LayerLoad("out", "neuron", 2, fanouts=((2, 6),), routed=False),
    )
    return hw.Workload("rate", ops, layers, total_steps=total_steps, weights=20)


def test_rate_core_two_layer_closed_form() -> None:
    report = hw.run(_rate_workload(), config=CONFIG)
    assert report.architecture == "rate-core"
    _, hidden, out = report.layers
    # Hidden: the analog layer is dense: ceil(4/2) rows x fan-in 3 = 6 cycles, computed once;
    # then 5 steps of a ceil(4/2) sweep plus 1 step cycle.
    assert hidden.cycles == 6 + 5 * 2 + 5
    assert hidden.compute_pj == 12 * (2 + 1)
    assert hidden.weight_reads_pj == 12 * 8
    # One broadcast activation read per dense cycle, the constant current written once.
    assert hidden.state_reads_writes_pj == 6 * 8 + 4 * 16
    assert hidden.neuron_updates_pj == 4 * 5 * 34
    assert hidden.spike_routing_pj == 6 * 32
    # Output: 6 spikes x ceil(2/2), 5 sweeps of 1, 5 step cycles.
    assert out.cycles == 6 + 5 + 5
    assert out.dynamic_pj == 12 * 41 + 2 * 5 * 34
    assert report.latency_cycles == 37
    assert report.dynamic_pj == 36 + 96 + 112 + 680 + 192 + 492 + 340
    assert report.energy_pj == pytest.approx(1948 + 37)


def test_dense_ann_two_layer_closed_form() -> None:
    report = hw.run(_toy_graph(), 1, CONFIG)
    assert report.architecture == "dense-ann"
    _, hidden, out = report.layers
    # Output-stationary: ceil(n/P) rows x fan-in MAC cycles, then ceil(n/P) for bias/ReLU.
    assert hidden.cycles == 2 * 3 + 2
    assert out.cycles == 1 * 4 + 1
    assert hidden.compute_pj == 12 * (2 + 1)
    assert hidden.weight_reads_pj == 12 * 8
    assert hidden.state_reads_writes_pj == 6 * 8  # one broadcast input read per MAC cycle
    assert hidden.neuron_updates_pj == 4 * (1 + 8)  # ReLU compare and output write
    assert out.dynamic_pj == 8 * 3 + 8 * 8 + 4 * 8 + 2 * 9
    assert report.dynamic_pj == 216 + 138
    assert report.latency_cycles == 13
    assert report.static_pj == pytest.approx(13.0)
    assert report.component_pj("spike_routing") == 0.0
    # The sample count is the ANN's whole input: energy per inference does not depend on it.
    assert hw.run(_toy_graph(), 7, CONFIG).dynamic_pj == pytest.approx(report.dynamic_pj)


def _wide_ttfs_workload(spikes: int = 10, fanout: int = 64) -> hw.Workload:
    ops = OpsReport(
        "ttfs",
        1,
        (
            LayerOps("in", "input", 16, spikes=spikes),
            LayerOps("h", "neuron", fanout, synops=spikes * fanout, counter_events=fanout),
        ),
    )
    layers = (
        hw.LayerLoad("in", "input", 16),
        hw.LayerLoad("h", "neuron", fanout, ((fanout, spikes),), routed=False, window_steps=4),
    )
    return hw.Workload("ttfs", ops, layers, total_steps=9, weights=16 * fanout)


def test_doubling_pes_halves_a_compute_bound_layer() -> None:
    workload = _wide_ttfs_workload()
    four = replace(CONFIG, pes=4, weight_sram_kb=2)
    eight = replace(four, pes=8)
    # Without the fixed step cycles, every term is a ceiling of a multiple of P: exact halving.
    no_steps = hw.run(workload, config=replace(four, step_cycles=0)).layers[1]
    assert no_steps.cycles == 10 * 16 + 16
    assert hw.run(workload, config=replace(eight, step_cycles=0)).layers[1].cycles == 88
    # With them, the window (4 steps) is a fixed overhead that does not halve.
    at_four = hw.run(workload, config=four).layers[1]
    at_eight = hw.run(workload, config=eight).layers[1]
    assert at_eight.cycles - at_four.cycles / 2 == 4 / 2
    # Dynamic energy does not depend on the PE count; utilisation stays high.
    assert at_four.dynamic_pj == at_eight.dynamic_pj
    assert at_eight.utilisation == pytest.approx((640 + 64) / (8 * 92))
    # Past the fan-out, more PEs do nothing for the synaptic work: 1 cycle per spike.
    wide = hw.scale(workload, config=replace(CONFIG, weight_sram_kb=2), pes=(64, 128))
    assert [r.layers[1].cycles for r in wide] == [10 + 1 + 4, 10 + 1 + 4]
    assert wide[1].utilisation < wide[0].utilisation


def test_doubling_pes_on_a_real_network() -> None:
    graph = Graph.sequential((3,), [Linear(torch.full((64, 3), 0.01)), ReLU()])
    net = onespike.convert(graph, onespike.TTFSConfig(steps=4), normalized=False)
    result = onespike.simulate(net, torch.full((5, 3), 0.5))
    budget = replace(CONFIG, weight_sram_kb=2, state_sram_kb=2, step_cycles=0)
    cycles = [r.layers[1].cycles for r in hw.scale(net, result, budget, pes=(2, 4, 8, 16))]
    assert cycles == [3 * 32 + 32, 3 * 16 + 16, 3 * 8 + 8, 3 * 4 + 4]


def test_zero_spikes_cost_only_static_and_fixed_overheads() -> None:
    silent = _wide_ttfs_workload(spikes=0)
    report = hw.run(silent, config=replace(CONFIG, weight_sram_kb=2))
    for component in ("compute", "weight_reads", "state_reads_writes", "spike_routing"):
        assert report.component_pj(component) == 0.0
    # What is left: one fire evaluation per neuron and the input window's step cycles.
    assert report.dynamic_pj == 64 * 34
    assert report.latency_cycles == 32 + 4
    assert report.energy_pj == pytest.approx(64 * 34 + 36 * 4 / 3)  # 4 KB of SRAM leak 4/3 mW
    # The rate core: no spikes, no MACs: only the per-step sweeps, step cycles and leakage.
    quiet = _rate_workload()
    counts = tuple(replace(layer, spikes=0, synops=0, macs=0) for layer in quiet.ops.layers)
    loads = tuple(replace(load, fanouts=()) for load in quiet.layers)
    quiet = replace(quiet, ops=replace(quiet.ops, layers=counts), layers=loads)
    rate = hw.run(quiet, config=CONFIG)
    assert rate.dynamic_pj == rate.component_pj("neuron_updates") == (4 + 2) * 5 * 34
    assert rate.latency_cycles == (5 * 2 + 5) + (5 * 1 + 5)
    assert rate.static_pj == pytest.approx(25.0)


def test_pipelined_mapping_gives_spare_cores_to_the_slowest_layer() -> None:
    net, result = _toy_ttfs()
    config = replace(CONFIG, cores=3, mapping="pipelined")
    report = hw.run(net, result, config)
    _, hidden, out = report.layers
    # One core each, the spare one to the hidden layer (12 cycles against 9): 4 PEs there.
    assert (hidden.pes, out.pes) == (4, 2)
    assert hidden.cycles == 3 * 1 + 1 + 4
    assert report.latency_cycles == 8 + 9
    assert report.interval_cycles == 9
    assert report.bottleneck == out.name
    assert report.static_pj == pytest.approx(9 * 3)  # three cores leak three times as much
    # The rate core advances all layers together: latency = interval = the slowest layer.
    rate = hw.run(net, result, config, architecture="rate-core")
    assert rate.latency_cycles == rate.interval_cycles == max(r.cycles for r in rate.layers)


def test_workloads_add_over_batches() -> None:
    net = onespike.convert(
        _toy_graph(), onespike.TTFSConfig(steps=4, rectifier=False), normalized=False
    )
    x = torch.tensor([[0.5, 1.0, 0.25], [0.0, 0.0, 0.0], [1.0, 0.0, 0.75]])
    whole = hw.profile(net, onespike.simulate(net, x))
    halves = hw.profile(net, onespike.simulate(net, x[:1])) + hw.profile(
        net, onespike.simulate(net, x[1:])
    )
    assert halves == whole
    assert whole.samples == 3
    assert whole.total_steps == 3 * 10
    assert hw.run(halves, config=CONFIG).to_dict() == hw.run(whole, config=CONFIG).to_dict()


def test_loihi_estimate_closed_form() -> None:
    net, result = _toy_ttfs()
    estimate = hw.loihi_estimate(hw.profile(net, result))
    # 32 synaptic events (12 + 8 synops, 6 counter, 6 rectifier); 6 neurons x 10 steps, 42 of
    # them in the neurons' 2L + 1 = 7-step windows (active); 7 routed spikes.
    assert estimate.synaptic_ops == 32
    assert (estimate.active_updates, estimate.inactive_updates) == (42, 18)
    assert estimate.dynamic_pj == pytest.approx(32 * 23.6 + 42 * 81 + 18 * 52 + 7 * 1.7)
    with pytest.raises(ConfigError, match="spiking"):
        hw.loihi_estimate(hw.profile(_toy_graph(), 1))


def test_quartz_loihi_figures_follow_the_notebook_arithmetic() -> None:
    run16 = next(r for r in hw.QUARTZ_LOIHI_MNIST if r.t_max == 16)
    # biphasic/Quartz-on-Loihi CNN/mnist-EDP-plot.ipynb, probe_4: 91 steps of 53.925 us,
    # first output spike at step 65, 9.29 / 5.09 mW core dynamic / static power.
    assert run16.latency_s * 1e3 == pytest.approx(4.907, abs=5e-4)
    assert run16.dynamic_energy_j * 1e6 == pytest.approx(32.57, abs=5e-3)
    assert run16.core_energy_j * 1e6 == pytest.approx(50.42, abs=5e-3)
    assert run16.system_energy_j * 1e6 == pytest.approx(182.46, abs=5e-3)
    assert run16.edp_js * 1e6 == pytest.approx(0.8954, abs=5e-4)
    assert run16.error_percent == 0.77
    errors = {r.t_max: r.error_percent for r in hw.QUARTZ_LOIHI_MNIST}
    assert errors == {8: 34.86, 16: 0.77, 32: 0.75, 64: 0.74}
    latencies = [round(r.latency_s * 1e3, 2) for r in hw.QUARTZ_LOIHI_MNIST]
    assert latencies == [4.90, 4.91, 4.93, 5.77]
    assert hw.QUARTZ_MNIST_EDP_UJS["Rate code on Loihi (NxTF, Rueckauer et al. 2021)"] == 4.38


def test_report_to_dict_is_json() -> None:
    net, result = _toy_ttfs()
    record = json.loads(json.dumps(hw.run(net, result, CONFIG).to_dict()))
    assert record["energy_per_inference_j"] == pytest.approx(1275e-12)
    assert record["tech"] == "unit"
    assert set(record["energy_by_component_j"]) == set(hw.COMPONENTS)
    assert [layer["name"] for layer in record["layers"]] == ["input", "1", "2"]


def test_energy_breakdown_plot(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    net, result = _toy_ttfs()
    names = ("ttfs-accelerator", "rate-core")
    reports = [hw.run(net, result, CONFIG, architecture=a) for a in names]
    path = hw.plot_energy_breakdown(reports, tmp_path / "energy.png", title="toy")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ConfigError, match="labels"):
        hw.plot_energy_breakdown(reports, tmp_path / "x.png", labels=["one"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pes": 0}, "pes must be an integer >= 1"),
        ({"cores": 2.5}, "cores must be an integer"),
        ({"clock_hz": -1.0}, "clock_hz must be > 0"),
        ({"weight_sram_kb": 0}, "weight_sram_kb must be a number > 0"),
        ({"state_bits": 65}, "state_bits=65 exceeds 64"),
        ({"step_cycles": -1}, "step_cycles must be >= 0"),
        ({"mapping": "striped"}, "mapping='striped' is not one of"),
        ({"tech": "45nm"}, "tech must be a TechnologyTable"),
        ({"tech": hw.JOUPPI_7NM_TECH, "accumulator": "fp32"}, "no published add energy"),
        ({"operand": "int32", "tech": hw.JOUPPI_7NM_TECH}, "no published multiply energy"),
    ],
)
def test_bad_config_is_a_clear_error(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        hw.AcceleratorConfig(**options)  # type: ignore[arg-type]


def test_bad_technology_tables_are_refused() -> None:
    with pytest.raises(ConfigError, match="strictly increasing"):
        replace(UNIT, sram_read_pj=((32.0, 20.0), (8.0, 10.0)))
    with pytest.raises(ConfigError, match="key 'int4'"):
        replace(UNIT, add_pj={"int4": 0.01})
    with pytest.raises(ConfigError, match="at least one"):
        replace(UNIT, sram_read_pj=())
    with pytest.raises(ConfigError, match="must be > 0 KB"):
        UNIT.sram_access_pj(0.0)


def test_bad_run_arguments_are_clear_errors() -> None:
    net, result = _toy_ttfs()
    graph = _toy_graph()
    with pytest.raises(ConfigError, match="not one of"):
        hw.run(net, result, CONFIG, architecture="gpu")
    with pytest.raises(ConfigError, match="dense MAC array runs ANNs"):
        hw.run(net, result, CONFIG, architecture="dense-ann")
    with pytest.raises(ConfigError, match="an ANN runs on 'dense-ann'"):
        hw.run(graph, 1, CONFIG, architecture="rate-core")
    with pytest.raises(ConfigError, match="single-spike TTFS network"):
        hw.run(_rate_workload(), config=CONFIG, architecture="ttfs-accelerator")
    with pytest.raises(ConfigError, match="needs the SimResult"):
        hw.run(net)
    with pytest.raises(ConfigError, match="takes no data"):
        hw.run(hw.profile(net, result), result, CONFIG)
    with pytest.raises(ConfigError, match="needs the SimResult of simulate"):
        hw.profile(net, 3)
    with pytest.raises(ConfigError, match="config must be an AcceleratorConfig"):
        hw.run(net, result, "big")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"do not fit in 1 cores x 0\.001 KB of weight SRAM"):
        hw.run(net, result, replace(CONFIG, weight_sram_kb=0.001))
    with pytest.raises(ConfigError, match="state SRAM"):
        hw.run(net, result, replace(CONFIG, state_sram_kb=0.001))
    with pytest.raises(ConfigError, match="needs a core per layer: 2 layers, 1 cores"):
        hw.run(net, result, replace(CONFIG, mapping="pipelined"))
    with pytest.raises(ConfigError, match="at least one PE count"):
        hw.scale(net, result, CONFIG, pes=())
    with pytest.raises(ConfigError, match="do not match the OpsReport"):
        replace(_rate_workload(), layers=_rate_workload().layers[:2])


def test_cli_hardware_command(tmp_path: Path) -> None:
    out = tmp_path / "hw"
    train = ["train", "--dataset", "digits", "--model", "mlp", "--epochs", "1", "--out", str(out)]
    assert CliRunner().invoke(main, train, catch_exceptions=False).exit_code == 0
    model = ["--dataset", "digits", "--model-file", str(out / "model"), "--limit", "60"]
    args = ["hardware", *model, "--method", "ttfs", "--steps", "4", "--pes", "8", "--out", str(out)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((out / "hardware.json").read_text())
    assert record["method"] == "ttfs"
    assert record["architecture"] == "ttfs-accelerator"
    assert record["pes"] == 8
    assert record["samples"] == 60
    assert record["steps"] == 3 * 4 + 1
    assert record["energy_per_inference_j"] > 0
    assert "latency" in result.output
    loaded = ["hardware", "--dataset", "digits", "--limit", "60", "--pes", "8"]  # no T: an ANN
    dense = CliRunner().invoke(
        main,
        [
            *loaded,
            *("--architecture", "dense-ann", "--model-file", str(out / "model")),
            *("--out", str(tmp_path / "d")),
        ],
        catch_exceptions=False,
    )
    assert dense.exit_code == 0, dense.output
    assert json.loads((tmp_path / "d" / "hardware.json").read_text())["method"] == "ann"
    # the default method, rate, runs on the rate core
    rate = CliRunner().invoke(
        main,
        ["hardware", *model, "--steps", "8", "--out", str(tmp_path / "r")],
        catch_exceptions=False,
    )
    assert rate.exit_code == 0, rate.output
    rate_record = json.loads((tmp_path / "r" / "hardware.json").read_text())
    assert (rate_record["method"], rate_record["architecture"]) == ("rate", "rate-core")
    assert rate_record["steps"] == 8
    bad = CliRunner().invoke(
        main, ["hardware", *model, "--pes", "0", "--out", str(tmp_path / "bad")]
    )
    assert bad.exit_code != 0
    assert "pes must be an integer >= 1" in bad.output


# A table whose SRAM access grows with the square root of the macro size (64 pJ per 64 bits
# at 1 KB, so 1 pJ per bit there, 0.5 pJ per bit at 0.25 KB) and whose adds grow with width
# (1 pJ at 8 bits, 4 pJ at 32 bits: 0.125 pJ per bit beyond 8).
SIZED = hw.TechnologyTable(
    name="sized",
    node_nm=1,
    add_pj={"int8": 1.0, "int32": 4.0},
    mult_pj={"int8": 2.0},
    sram_read_pj=((0.25, 32.0), (1.0, 64.0)),
    sram_word_bits=64,
    leakage_mw_per_mb=0.0,
)
SIZED_CONFIG = replace(CONFIG, tech=SIZED)


def _batched_toy() -> tuple[onespike.SpikingNetwork, onespike.SimResult]:
    # Inputs (1, 1, 0.25): codes (3, 3, 1) fire at steps 0, 0 and 2: two of the three spikes
    # reach the 4 hidden neurons in the same step. Hidden V = 0.125 (3 + 3 + 1) = 0.875: code
    # 1 for all four, all firing at r + L - 1 = 5, into the output together.
    net = onespike.convert(_toy_graph(), onespike.TTFSConfig(steps=4), normalized=False)
    return net, onespike.simulate(net, torch.tensor([[1.0, 1.0, 0.25]]))


def test_profile_counts_input_steps_fan_in_and_weights() -> None:
    net, result = _batched_toy()
    workload = hw.profile(net, result)
    _, hidden, out = workload.layers
    assert (hidden.input_steps, out.input_steps) == (2 * 4, 1 * 2)
    assert (hidden.fan_in, out.fan_in) == (3, 4)
    assert (hidden.weights, out.weights) == (12, 8)
    assert (hidden.channels, out.channels) == (4, 2)
    assert not hidden.binary
    ann = hw.profile(_toy_graph(), 1)
    assert [layer.fan_in for layer in ann.layers] == [0, 3, 4]


def test_event_batching_reads_each_state_once_per_step() -> None:
    net, result = _batched_toy()
    plain = hw.run(net, result, CONFIG)
    batched = hw.run(net, result, replace(CONFIG, event_batching=True))
    # 12 events into the hidden layer in 2 steps, 8 into the output in 1: state r/w of 32 pJ
    # per (neuron, step) with input instead of per event. Nothing else changes.
    assert plain.layers[1].state_reads_writes_pj == 12 * 32
    assert batched.layers[1].state_reads_writes_pj == 8 * 32
    assert plain.layers[2].state_reads_writes_pj == 8 * 32
    assert batched.layers[2].state_reads_writes_pj == 2 * 32
    assert batched.latency_cycles == plain.latency_cycles
    assert plain.dynamic_pj - batched.dynamic_pj == (4 + 6) * 32


def test_stationary_weights_read_the_pe_buffer() -> None:
    net, result = _batched_toy()
    streamed = hw.run(net, result, SIZED_CONFIG)
    # 20 weights of 8 bits fit in 2 PE buffers of 0.25 KB: resident, read at 0.5 pJ per bit.
    resident = hw.run(
        net, result, replace(SIZED_CONFIG, weight_dataflow="stationary", pe_buffer_kb=0.25)
    )
    assert streamed.layers[1].weight_reads_pj == 12 * 8
    assert resident.layers[1].weight_reads_pj == 12 * 4
    assert resident.layers[2].weight_reads_pj == 8 * 4
    assert resident.config.sram_kb == streamed.config.sram_kb + 2 * 0.25
    # Buffers of 48 bits (2 x 3 bytes) hold neither layer (96 and 64 bits): each is loaded
    # once per inference (a weight SRAM read and a buffer write per weight) and runs in
    # ceil(96 / 48) = 2 and ceil(64 / 48) = 2 tiles, its 3 and 4 input spikes replayed once.
    tiny = 3 / 1024
    local = 8 * 64 * math.sqrt(tiny) / 64
    tiled = hw.run(
        net, result, replace(SIZED_CONFIG, weight_dataflow="stationary", pe_buffer_kb=tiny)
    )
    hidden, out = tiled.layers[1], tiled.layers[2]
    assert hidden.weight_reads_pj == pytest.approx(12 * local + 12 * (8 + local))
    assert out.weight_reads_pj == pytest.approx(8 * local + 8 * (8 + local))
    replay = 16 * 64 / 64  # one 16-bit event read from the 1 KB event SRAM
    assert hidden.spike_routing_pj == pytest.approx(4 * 32 + 3 * replay)
    assert hidden.cycles == streamed.layers[1].cycles + 12 / 2 + 3
    assert out.cycles == streamed.layers[2].cycles + 8 / 2 + 4


def test_sized_codes_price_the_width_the_layer_needs() -> None:
    assert SIZED.int_add_pj(8) == 1.0
    assert SIZED.int_add_pj(32) == 4.0
    assert SIZED.int_add_pj(12) == pytest.approx(1.5)
    assert SIZED.int_add_pj(4) == 1.0
    with pytest.raises(ConfigError, match="int8 or int32"):
        replace(CONFIG, sized_codes=True)  # the unit table has no int8 add
    net, result = _batched_toy()
    report = hw.run(net, result, replace(SIZED_CONFIG, sized_codes=True))
    # Hidden: |V| <= (3 + 1) x 127 x 3 = 1524 needs 11 bits and a sign: 12-bit states
    # (12 pJ per access at 1 pJ per bit) and 1.5 pJ adds. Output: (4 + 1) x 127 x 3 = 1905,
    # 12 bits too.
    hidden = report.layers[1]
    assert hidden.state_reads_writes_pj == 12 * 2 * 12
    assert hidden.compute_pj == pytest.approx((12 + 4) * 1.5)
    assert hidden.neuron_updates_pj == pytest.approx(4 * (2 * 1.5 + 2 * 12))
    dense = hw.run(_toy_graph(), 1, replace(SIZED_CONFIG, sized_codes=True))
    # Partial sums of (3 + 1) x 127 x 255 = 129,540: 17 bits and a sign, 2.25 pJ adds.
    assert dense.layers[1].compute_pj == pytest.approx(12 * (2 + 2.25))


def _binary_workload(steps: int = 4) -> hw.Workload:
    """A rate network's binary hidden layer: 300 inputs into 100 neurons (a 2 x 2 grid of
    256 x 64 tiles), 10 steps of which the sample ran ``steps``."""
    ops = OpsReport(
        "rate",
        1,
        (
            LayerOps("in", "input", 300, spikes=50),
            LayerOps("h", "neuron", 100, spikes=20, synops=5000, neuron_updates=100 * steps),
        ),
    )
    layers = (
        hw.LayerLoad("in", "input", 300, channels=300),
        hw.LayerLoad(
            "h",
            "neuron",
            100,
            ((100, 50),),
            routed=False,
            fan_in=300,
            weights=30000,
            channels=100,
            binary=True,
        ),
    )
    return hw.Workload("rate", ops, layers, total_steps=steps, weights=30000)


def test_in_memory_crossbar_closed_form() -> None:
    config = replace(CONFIG, weight_sram_kb=8)
    report = hw.run(_binary_workload(), config=config, architecture="in-memory")
    hidden = report.layers[1]
    # 4 steps x 1 position x (2 x 2 tiles) x 64 columns converted, at 1.27 pJ each
    # (XNOR-SRAM: 2 x 256 operations at 403 TOPS/W).
    assert pytest.approx(512 / 403) == hw.XNOR_SRAM_COLUMN_PJ
    assert hidden.crossbar_pj == pytest.approx(4 * 4 * 64 * 512 / 403)
    # The two row tiles' partial sums meet in one add per neuron per step; every neuron is
    # updated every step with one add more (its column sum); no weight or synaptic state read.
    assert hidden.compute_pj == 4 * 100 * 1
    assert hidden.neuron_updates_pj == 4 * 100 * (3 * 1 + 2 * 16)
    assert hidden.weight_reads_pj == hidden.state_reads_writes_pj == 0.0
    # A step: one evaluation (all tiles at once), a sweep of ceil(100 / 2), one step cycle.
    assert hidden.cycles == 4 * (1 + 50 + 1)
    # The rate core pays for every synaptic event instead (and needs 30,000 8-bit weights).
    wide = replace(config, weight_sram_kb=32)
    rate = hw.run(_binary_workload(), config=wide, architecture="rate-core").layers[1]
    assert rate.crossbar_pj == 0.0
    assert rate.compute_pj + rate.weight_reads_pj + rate.state_reads_writes_pj == 5000 * 41
    # 4 tiles of 16 Kbit do not fit in 1 KB of weight SRAM.
    with pytest.raises(ConfigError, match="do not fit"):
        hw.run(_binary_workload(), config=CONFIG, architecture="in-memory")
    with pytest.raises(ConfigError, match="dense-ann"):
        hw.run(_toy_graph(), 1, CONFIG, architecture="in-memory")


def test_sweep_and_pareto_front() -> None:
    net, result = _batched_toy()
    reports, refused = hw.sweep(
        net,
        result,
        SIZED_CONFIG,
        axes={"pes": (1, 2), "event_batching": (False, True), "mapping": ("pipelined",)},
    )
    # A pipeline needs a core per layer: every config with 1 core is refused, with the reason.
    assert reports == []
    assert len(refused) == 4
    assert all("core per layer" in why for _, why in refused)
    reports, refused = hw.sweep(
        net, result, SIZED_CONFIG, axes={"pes": (1, 2), "event_batching": (False, True)}
    )
    assert refused == []
    assert [(r.config.pes, r.config.event_batching) for r in reports] == [
        (1, False),
        (1, True),
        (2, False),
        (2, True),
    ]
    # Batching costs nothing and saves energy: the unbatched points are dominated. Two PEs
    # are faster but count more PEs: both batched points stay on the front.
    front = hw.pareto_front(reports)
    assert [(r.config.pes, r.config.event_batching) for r in front] == [(1, True), (2, True)]
    assert hw.pareto_front(reports, ("energy_j",)) == [reports[1], reports[3]]
    with pytest.raises(ConfigError, match="not AcceleratorConfig fields"):
        hw.sweep(net, result, axes={"lanes": (1,)})
    with pytest.raises(ConfigError, match="unknown objectives"):
        hw.pareto_front(reports, ("area",))
