"""CLI run records and NIR export: records named by every option that changed the network,
report labels, and an export with the defaults that Norse runs with onespike's spike counts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

import onespike
from onespike.cli import main
from onespike.data import load_dataset
from onespike.evaluate import evaluate_snn
from onespike.io import save_model
from onespike.models import build_model
from onespike.report import load_records, run_name
from tests.helpers import run_norse


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


# run_name ---------------------------------------------------------------------------------
def test_run_name_names_every_option_and_keeps_distinct_values_apart() -> None:
    assert run_name("ttfs", 8) == ("ttfs-T8", "ttfs T=8")
    assert run_name("ttfs", 8, [("no rectifier", True)]) == (
        "ttfs-T8-no-rectifier",
        "ttfs T=8, no rectifier",
    )
    stem, label = run_name("rate", 64, [("reset", "zero"), ("initial membrane", 0.0)])
    assert (stem, label) == (
        "rate-T64-reset-zero-initial-membrane-0.0",
        "rate T=64, reset zero, initial membrane 0.0",
    )
    # a value a file name cannot carry keeps a hash of itself: a/b and a-b stay apart
    one, _ = run_name("rate", 8, [("model file", "a/b")])
    two, _ = run_name("rate", 8, [("model file", "a-b")])
    assert one != two
    assert one.startswith("rate-T8-model-file-a-b-")
    assert len(one) == len("rate-T8-model-file-a-b-") + 8
    with pytest.raises(onespike.ConfigError, match="at its default"):
        run_name("rate", 8, [("dither", None)])


# onespike run: one record per network ----------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Plain TTFS, --no-rectifier, TTFS-aware and a rate run with NIR's options, on one model
    (untrained: the names do not depend on accuracy), and the plain TTFS run once more."""
    out = tmp_path_factory.mktemp("records")
    torch.manual_seed(0)
    model, spec = build_model("mlp", (1, 8, 8), 10)
    save_model(out / "model", model, spec, dataset="digits")
    common = ["--dataset", "digits", "--limit", "20", "--check-samples", "2", "--out", str(out)]
    ttfs = ["run", "--model-file", str(out / "model"), "--method", "ttfs", "--steps", "4"]
    outputs = {"plain": _invoke([*ttfs, *common])}
    outputs["no-rectifier"] = _invoke([*ttfs, "--no-rectifier", *common])
    _invoke(
        [
            "train",
            "--dataset",
            "digits",
            "--model-file",
            str(out / "model"),
            "--ttfs-aware",
            "--steps",
            "4",
            "--finetune-epochs",
            "1",
            "--out",
            str(out),
        ]
    )
    outputs["aware"] = _invoke(
        ["run", "--model-file", str(out / "model-ttfs"), "--method", "ttfs", *common]
    )
    rate = ["run", "--model-file", str(out / "model"), "--method", "rate", "--steps", "8"]
    outputs["rate"] = _invoke(
        [*rate, "--reset", "zero", "--initial-membrane", "0", "--percentile", "99.9", *common]
    )
    outputs["again"] = _invoke([*ttfs, *common])
    (out / "outputs.json").write_text(json.dumps(outputs))
    return out


def test_runs_that_differ_in_an_option_keep_their_own_records(run_dir: Path) -> None:
    assert sorted(p.name for p in (run_dir / "runs").glob("*.json")) == [
        "rate-T8-percentile-99.9-reset-zero-initial-membrane-0.0.json",
        "ttfs-T4-no-rectifier.json",
        "ttfs-T4-ttfs-aware.json",
        "ttfs-T4.json",
    ]
    labels = {r["label"]: r for r in load_records(run_dir)}
    assert sorted(labels) == [
        "rate T=8, percentile 99.9, reset zero, initial membrane 0.0",
        "ttfs T=4",
        "ttfs T=4, no rectifier",
        "ttfs T=4, ttfs-aware",
    ]
    plain, bare = labels["ttfs T=4"], labels["ttfs T=4, no rectifier"]
    assert bare["options"] == [["no rectifier", True]]
    assert plain["options"] == []
    # the rectifier makes every TTFS neuron fire; without it some stay silent
    assert plain["summary"]["spikes_per_neuron"] == 1.0
    assert bare["summary"]["spikes_per_neuron"] < 1.0
    assert "finetuned_ann_accuracy" in labels["ttfs T=4, ttfs-aware"]["summary"]


def test_an_identical_run_says_it_replaces_its_record(run_dir: Path) -> None:
    outputs = json.loads((run_dir / "outputs.json").read_text())
    assert "replacing the record of an identical earlier run" in outputs["again"]
    for key in ("plain", "no-rectifier", "aware", "rate"):
        assert "replacing" not in outputs[key], key
    assert "'ttfs T=4, no rectifier'" in outputs["no-rectifier"]


def test_report_labels_name_the_options_and_old_records_still_load(run_dir: Path) -> None:
    old = json.loads((run_dir / "runs" / "ttfs-T4.json").read_text())
    del old["label"], old["options"]  # a record from before records had names
    (run_dir / "runs" / "ttfs-T2.json").write_text(json.dumps({**old, "steps": 2}))
    try:
        _invoke(["report", str(run_dir), "--out", str(run_dir / "report.html")])
        page = (run_dir / "report.html").read_text()
    finally:
        (run_dir / "runs" / "ttfs-T2.json").unlink()
    heads = re.findall(r"<th>([^<]*)</th>", page)
    for label in (
        "ttfs T=2",
        "ttfs T=4",
        "ttfs T=4, no rectifier",
        "ttfs T=4, ttfs-aware",
        "rate T=8, percentile 99.9, reset zero, initial membrane 0.0",
    ):
        assert label in heads, label


# onespike export with the defaults --------------------------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_export_with_the_defaults_runs_in_norse_with_identical_spike_counts(
    tmp_path: Path,
) -> None:
    pytest.importorskip("nir")
    out = tmp_path / "net.nir"
    _invoke(["train", "--dataset", "digits", "--epochs", "2", "--out", str(tmp_path)])
    args = ["export", "--format", "nir", "--dataset", "digits"]
    args += ["--model-file", str(tmp_path / "model")]
    output = _invoke([*args, "--limit", "30", "--output", str(out)])
    net = onespike.from_nir(out)
    assert net.config == onespike.RateConfig(steps=64, reset="zero", initial_membrane=0.0)
    test_ds = load_dataset("digits", "test", limit=30)
    # the printed accuracy is that of the file's network on the 30 test images
    exported = evaluate_snn(net, test_ds).accuracy
    found = re.search(r"exported network \(NIR-exact\): SNN test accuracy (\S+) on 30 test", output)
    assert found is not None, output
    assert float(found.group(1)) == pytest.approx(exported, abs=5e-5)
    reference = re.search(r"onespike run's rate conversion \(reset subtract, .*\): (\S+) ", output)
    assert reference is not None, output
    x = test_ds.images
    _, counts = run_norse(out, x, 64, batched=False)
    result = onespike.simulate(net, x, "stepped")
    hidden = [p.name for p in net.populations if p.kind == "neuron" and not p.is_output]
    # nirtorch writes a dot in a node's name as an underscore in its module's
    assert sorted(counts) == sorted(name.replace(".", "_") for name in hidden)
    for name in hidden:
        assert float(result.spike_counts[name].sum()) > 0, name
        assert torch.equal(counts[name.replace(".", "_")], result.spike_counts[name]), name
    # the exported file goes through run and the report as an imported network, with its T
    run_dir = tmp_path / "run"
    _invoke(["run", "--model-file", str(out), "--limit", "30", "--out", str(run_dir)])
    (record,) = load_records(run_dir)
    assert record["label"] == f"nir T=64, file {out}, neurons IF"
    assert record["summary"]["snn_accuracy"] == pytest.approx(exported)
    refused = CliRunner().invoke(main, ["run", "--model-file", str(out), "--steps", "8"])
    assert refused.exit_code == 2
    assert "converted for T=64; drop --steps" in refused.output


# onespike run --model-file FILE.nir: imported networks in the report ---------------------
def _write_graph(graph: Any, path: Path, dt: float | None = None) -> Path:
    """Write a graph (Norse's: torch tensors, scalar neuron constants) as a NIR file: every
    tensor as an array, each neuron's scalar constants broadcast to its layer's size (HDF5
    cannot store Norse's 0-d arrays as nir.write writes them)."""
    import numpy as np

    nir = pytest.importorskip("nir")
    sizes = {
        dst: graph.nodes[src].weight.shape[0]
        for src, dst in graph.edges
        if hasattr(graph.nodes[src], "weight")
    }
    for name, node in graph.nodes.items():
        for key, value in list(vars(node).items()):
            if key in ("input_type", "output_type", "metadata"):
                continue
            if isinstance(value, torch.Tensor):
                value = value.detach().numpy()
            if isinstance(value, np.ndarray) and value.size == 1 and name in sizes:
                value = np.full((sizes[name],), float(value.reshape(-1)[0]), np.float32)
            setattr(node, key, value)
    if dt is not None:
        graph.metadata["dt"] = dt
    nir.write(path, graph)
    return path


def _norse_file(tmp_path: Path, kind: str) -> tuple[Path, float | None]:
    """A Norse network for the 64 pixels of a digits image, exported with norse.to_nir."""
    from torch import nn

    norse = pytest.importorskip("norse.torch", reason="the Norse cases need norse")
    torch.manual_seed(3)
    dt = None
    if kind == "iaf":
        cells: list[Any] = [
            norse.IAFCell(norse.IAFParameters(v_th=torch.tensor(0.7))),
            norse.IAFCell(),
        ]
    else:
        dt = 2.0**-10
        lif = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(128.0), v_th=torch.tensor(0.3))
        cells = [norse.LIFBoxCell(lif, dt=dt), norse.LIFBoxCell(lif, dt=dt)]
    layers = [nn.Linear(64, 16), cells[0], nn.Linear(16, 10), cells[1]]
    with torch.no_grad():
        layers[0].weight.abs_()  # digits pixels are >= 0: the hidden layer fires
        layers[2].weight.abs_().mul_(2)  # and so does the output layer
    graph = norse.to_nir(norse.SequentialState(*layers), torch.zeros(1, 64), dt=dt or 1e-3)
    # Norse 1.1 writes tau = dt / tau_mem_inv: in the graph's unit the step is dt**2
    # (see docs/nir.md), recorded as the graph's dt
    return _write_graph(graph, tmp_path / f"{kind}.nir", None if dt is None else dt**2), dt


def _hand_built_file(tmp_path: Path) -> Path:
    import numpy as np

    nir = pytest.importorskip("nir")
    gen = np.random.default_rng(5)
    graph = nir.NIRGraph.from_list(
        nir.Flatten(input_type={"input": np.array([1, 8, 8])}, start_dim=0),
        nir.Affine(
            weight=gen.uniform(0, 0.1, (12, 64)).astype(np.float32), bias=np.zeros(12, np.float32)
        ),
        nir.IF(
            r=np.ones(12, np.float32),
            v_threshold=np.full(12, 0.8, np.float32),
            v_reset=np.zeros(12, np.float32),
        ),
        nir.Affine(
            weight=gen.uniform(-0.5, 1, (10, 12)).astype(np.float32), bias=np.zeros(10, np.float32)
        ),
    )
    path = tmp_path / "hand.nir"
    nir.write(path, graph)
    return path


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("kind", ["iaf", "lif", "hand"])
def test_a_nir_file_is_simulated_recorded_and_reported(tmp_path: Path, kind: str) -> None:
    from onespike.metrics import count_ops, estimate_energy

    path = _hand_built_file(tmp_path) if kind == "hand" else _norse_file(tmp_path, kind)[0]
    out = tmp_path / "run"
    common = ["--dataset", "digits", "--limit", "25", "--check-samples", "2", "--out", str(out)]
    output = _invoke(["run", "--model-file", str(path), "--steps", "12", *common])
    (record_file,) = (out / "runs").glob("nir-T12-*.json")
    record = json.loads(record_file.read_text())
    neurons = {"iaf": "IF", "lif": "LIF", "hand": "IF"}[kind]
    assert record["label"] == f"nir T=12, file {path}, neurons {neurons}"
    assert record["label"] in output
    # the record's numbers are count_ops of the same simulation
    config = onespike.RateConfig(steps=12, reset="zero", initial_membrane=0.0)
    net = onespike.from_nir(path, config=config)
    images = load_dataset("digits", "test", limit=25).images
    x = images.reshape(len(images), *net.input_shape)
    result = onespike.simulate(net, x)
    ops = count_ops(net, result)
    summary = record["summary"]
    assert summary["spikes"] == pytest.approx(ops.per_sample("spikes"))
    assert summary["synops"] == pytest.approx(ops.per_sample("synops"))
    assert summary["snn_energy_pj"] == pytest.approx(estimate_energy(ops, "45nm").per_sample_pj)
    labels = load_dataset("digits", "test", limit=25).labels
    assert summary["snn_accuracy"] == pytest.approx(
        float((result.predictions == labels).float().mean())
    )
    assert summary["ann_accuracy"] is None
    hidden = [p.name for p in net.populations if p.kind == "neuron" and not p.is_output]
    assert ops.per_sample("spikes") > 0
    assert float(result.spike_counts[hidden[0]].sum()) > 0
    by_name = {layer["name"]: layer for layer in record["layers"]}
    for layer in ops.layers:
        assert by_name[layer.name]["synops"] == pytest.approx(layer.synops / ops.samples)
    assert onespike.hardware.run(net, result).energy_pj > 0
    # the report takes it alone and beside a converted run
    _invoke(["report", str(out)])
    page = (out / "report" / "report.html").read_text()
    assert f"<th>{record['label']}</th>" in page
    if kind == "hand":
        _invoke(["run", "--method", "rate", "--steps", "8", "--epochs", "1", *common])
        _invoke(["report", str(out)])
        page = (out / "report" / "report.html").read_text()
        assert f"<th>{record['label']}</th>" in page
        assert "<th>rate T=8</th>" in page


def test_conversion_options_are_refused_for_a_nir_file(tmp_path: Path) -> None:
    path = _hand_built_file(tmp_path)
    for option in (["--method", "rate"], ["--reset", "zero"], ["--percentile", "99"]):
        args = ["run", "--model-file", str(path), *option, "--out", str(tmp_path / "x")]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert f"{option[0]} does not apply to the spiking network of --model-file" in result.output
