"""``onespike report``: the records ``onespike run`` keeps, the raster, the page and its errors."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import onespike
from onespike.cli import main
from onespike.errors import ConfigError, CorruptFileError, MissingFileError, ShapeError
from onespike.graph import Conv2d, Flatten, Graph, Input, Linear, MaxPool2d, Output, ReLU
from onespike.report import load_records, spike_raster, write_report
from onespike.validate import description_sha256

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
FIGURES = ("accuracy", "layers", "raster", "cost")
TITLES = (
    "Summary",
    "Accuracy against time steps",
    "Spikes per neuron, per layer",
    "Spike raster of one test sample",
    "Synaptic operations and energy against the ANN",
    "Hardware energy breakdown",
)


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TTFS (training the model) and rate coding (loading it) run into one directory."""
    out = tmp_path_factory.mktemp("report-run")
    common = ["--dataset", "digits", "--limit", "40", "--check-samples", "2", "--out", str(out)]
    _invoke(["run", "--epochs", "2", "--method", "ttfs", "--steps", "4", *common])
    ttfs_results = json.loads((out / "results.json").read_text())
    model = str(out / "model")
    _invoke(["run", "--model-file", model, "--method", "rate", "--steps", "8", *common])
    # results.json holds the last run, as before; the first run's row lives in its record.
    assert ttfs_results["method"] == "ttfs"
    return out


def _embedded_pngs(page: str) -> list[bytes]:
    return [
        base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    ]


def test_run_keeps_one_record_per_method(run_dir: Path) -> None:
    assert sorted(p.name for p in (run_dir / "runs").glob("*.json")) == [
        "rate-T8.json",
        "ttfs-T4.json",
    ]
    results = json.loads((run_dir / "results.json").read_text())
    ttfs, rate = load_records(run_dir)
    assert (ttfs["method"], rate["method"]) == ("ttfs", "rate")
    assert rate["summary"] == results  # the record keeps results.json's row unchanged
    assert ttfs["accuracy_by_steps"] is None  # TTFS decides only at the end
    assert len(rate["accuracy_by_steps"]) == 8
    assert rate["accuracy_by_steps"][-1] == pytest.approx(rate["summary"]["snn_accuracy"])
    for record in (ttfs, rate):
        summary = record["summary"]
        layers = record["layers"]
        assert sum(layer["spikes"] for layer in layers) == pytest.approx(summary["spikes"])
        assert sum(layer["synops"] for layer in layers) == pytest.approx(summary["synops"])
        assert sum(layer["macs"] for layer in record["ann_layers"]) == summary["ann_macs"]
        assert [p["name"] for p in record["raster"]["populations"]] == [x["name"] for x in layers]
    # The rectifier makes every TTFS neuron fire exactly once: the raster counts all of them.
    for pop, layer in zip(ttfs["raster"]["populations"], ttfs["layers"], strict=True):
        assert pop["spikes"] == layer["neurons"]
        assert len(pop["neuron"]) == len(pop["shown"]) == min(layer["neurons"], 128)
    assert rate["raster"]["populations"][0]["spikes"] == 0  # analog input never spikes
    assert rate["raster"]["populations"][0]["note"] == "analog input current"


def test_report_writes_html_with_embedded_figures(run_dir: Path) -> None:
    output = _invoke(["report", str(run_dir)])
    html_path = run_dir / "report" / "report.html"
    assert str(html_path) in output
    page = html_path.read_text(encoding="utf-8")
    for title in TITLES:
        assert f">{title}</h2>" in page
    assert "ttfs T=4" in page
    assert "rate T=8" in page
    assert "No <code>hardware.json</code> here" in page
    embedded = _embedded_pngs(page)
    assert len(embedded) == len(FIGURES)
    for name, data in zip(FIGURES, embedded, strict=True):
        png = (run_dir / "report" / f"{name}.png").read_bytes()
        assert png.startswith(PNG_SIGNATURE)
        assert len(png) > 1000
        assert data == png  # the page embeds exactly the files written beside it
    # Self-contained: no image, script or stylesheet is fetched from anywhere.
    assert not re.search(r'(src|href)="(?!data:)', page)


def test_report_includes_the_hardware_breakdown(run_dir: Path, tmp_path: Path) -> None:
    hardware = {
        "architecture": "ttfs-accelerator",
        "method": "ttfs",
        "dataset": "digits",
        "model": "mlp",
        "energy_per_inference_j": 6e-6,
        "static_energy_j": 1e-7,
        "energy_by_component_j": {
            "compute": 1e-8,
            "weight_reads": 2e-6,
            "state_reads_writes": 4e-6,
        },
        "latency_s": 2.5e-5,
    }
    (run_dir / "hardware.json").write_text(json.dumps(hardware))
    try:
        path = write_report(run_dir, tmp_path / "elsewhere.html")
    finally:
        (run_dir / "hardware.json").unlink()
    page = path.read_text(encoding="utf-8")
    assert path == tmp_path / "elsewhere.html"
    assert "ttfs-accelerator (ttfs)" in page
    assert len(_embedded_pngs(page)) == len(FIGURES) + 1
    assert (run_dir / "report" / "hardware.png").read_bytes().startswith(PNG_SIGNATURE)


# the raster ------------------------------------------------------------------------------------
def _small_cnn() -> Graph:
    gen = torch.Generator().manual_seed(3)
    return Graph(
        {
            "input": Input((1, 6, 6)),
            "conv": Conv2d(torch.rand((3, 1, 3, 3), generator=gen) - 0.3, torch.full((3,), 0.05)),
            "relu": ReLU(),
            "pool": MaxPool2d((2, 2), (2, 2)),
            "flat": Flatten(),
            "fc": Linear(torch.rand((4, 12), generator=gen) - 0.5, torch.zeros(4)),
            "output": Output(),
        },
        [
            ("input", "conv"),
            ("conv", "relu"),
            ("relu", "pool"),
            ("pool", "flat"),
            ("flat", "fc"),
            ("fc", "output"),
        ],
    )


CONFIGS = [
    onespike.TTFSConfig(steps=6),
    onespike.TTFSConfig(steps=6, rectifier=False),
    onespike.RateConfig(steps=12),
    onespike.RateConfig(steps=12, input="poisson", reset="zero"),
    onespike.HybridConfig(steps=5),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: type(c).__name__)
def test_raster_holds_every_spike_of_the_sample(config: object) -> None:
    net = onespike.convert(_small_cnn(), config, normalized=False)  # type: ignore[arg-type]
    sample = torch.rand((1, 1, 6, 6), generator=torch.Generator().manual_seed(1))
    raster = spike_raster(net, sample, label=2)
    reference = onespike.simulate(net, sample, method="stepped")
    assert raster["prediction"] == int(reference.predictions[0])
    assert raster["label"] == 2
    assert raster["steps"] == raster["steps_shown"] == reference.steps
    total = 0
    for pop, entry in zip(net.populations, raster["populations"], strict=True):
        assert entry["name"] == pop.name
        assert not entry["truncated"]  # small enough to keep everything
        counts = torch.zeros(pop.size)
        for neuron, step in zip(entry["neuron"], entry["step"], strict=True):
            assert 0 <= step < raster["steps"]
            counts[neuron] += 1
        assert torch.equal(counts, reference.spikes(pop.name)[0].flatten())
        if reference.spike_times:  # single-spike codes: the ticks sit at the spike times
            times = reference.spike_times[pop.name][0].flatten()
            assert all(times[n] == s for n, s in zip(entry["neuron"], entry["step"], strict=True))
        total += entry["spikes"]
    assert total > 0


def test_rate_raster_steps_are_the_steps_the_counts_grow() -> None:
    graph = _small_cnn()
    net = onespike.convert(graph, onespike.RateConfig(steps=10), normalized=False)
    sample = torch.rand((1, 1, 6, 6), generator=torch.Generator().manual_seed(4))
    raster = spike_raster(net, sample)
    pop = net.populations[1]
    entry = raster["populations"][1]
    for t in (1, 4, 10):  # spikes up to step t equal the count of a T=t network
        short = onespike.convert(graph, onespike.RateConfig(steps=t), normalized=False)
        counts = onespike.simulate(short, sample).spikes(pop.name)[0].flatten()
        ticks = torch.zeros(pop.size)
        for neuron, step in zip(entry["neuron"], entry["step"], strict=True):
            if step < t:
                ticks[neuron] += 1
        assert torch.equal(ticks, counts)


def test_raster_caps_neurons_spikes_and_steps() -> None:
    net = onespike.convert(_small_cnn(), onespike.RateConfig(steps=40), normalized=False)
    sample = torch.rand((1, 1, 6, 6), generator=torch.Generator().manual_seed(1))
    full = onespike.simulate(net, sample)
    raster = spike_raster(net, sample, max_neurons=5, max_spikes=7, max_steps=6)
    assert raster["steps_shown"] == 6
    assert raster["steps"] == 40
    assert raster["prediction"] == int(full.predictions[0])  # the whole run still decides
    conv = raster["populations"][1]
    assert conv["neurons"] == 48
    assert len(conv["shown"]) == 5
    assert set(conv["neuron"]) <= set(conv["shown"])
    assert len(conv["step"]) <= 7
    assert max(conv["step"]) < 6
    assert conv["truncated"]
    six = onespike.convert(_small_cnn(), onespike.RateConfig(steps=6), normalized=False)
    assert conv["spikes"] == int(onespike.simulate(six, sample).spikes(conv["name"]).sum())


def test_raster_refuses_a_batch() -> None:
    net = onespike.convert(_small_cnn(), onespike.TTFSConfig(steps=4), normalized=False)
    with pytest.raises(ShapeError, match="one sample"):
        spike_raster(net, torch.rand((2, 1, 6, 6)))
    with pytest.raises(ConfigError):
        spike_raster(net, torch.rand((1, 1, 6, 6)), max_spikes=0)


# errors ----------------------------------------------------------------------------------------
def test_missing_and_empty_run_dirs_name_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(MissingFileError, match=r"does not exist.*onespike run --out"):
        write_report(missing)
    with pytest.raises(MissingFileError, match=r"no run records.*onespike run --out"):
        write_report(tmp_path)
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(MissingFileError, match="older onespike"):
        write_report(tmp_path)
    result = CliRunner().invoke(main, ["report", str(missing)])
    assert result.exit_code == 1
    assert "MissingFileError" in result.output
    assert f"onespike run --out {missing}" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"format": "something else"}', "not an onespike run record"),
        ('{"format": "onespike-run-record", "version": 99}', "version 99"),
        ('{"format": "onespike-run-record", "version": 1, "summary": {}}', "lacks 'dataset'"),
    ],
)
def test_corrupt_records_are_named(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "ttfs-T4.json").write_text(content)
    with pytest.raises(CorruptFileError, match=message) as info:
        write_report(tmp_path)
    assert "ttfs-T4.json" in str(info.value)
    assert "onespike run --out" in str(info.value)


def test_corrupt_hardware_json_is_named(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    (copy / "runs").mkdir(parents=True)
    for path in (run_dir / "runs").glob("*.json"):
        (copy / "runs" / path.name).write_bytes(path.read_bytes())
    (copy / "hardware.json").write_text('{"architecture": "x"}')
    with pytest.raises(CorruptFileError, match=r"hardware\.json.*onespike hardware --out"):
        write_report(copy)


def _fine_tuned_hybrid(directory: Path, epochs: int, *stdb: str) -> Path:
    """An MLP trained on digits by ``onespike train`` (it holds out a validation split), then
    fine-tuned with ``train --method hybrid`` and the ``stdb`` options; its model-hybrid/."""
    data = ["--dataset", "digits", "--out", str(directory)]
    _invoke(["train", *data, "--model", "mlp", "--epochs", str(epochs)])
    model = str(directory / "model")
    _invoke(["train", *data, "--model-file", model, "--method", "hybrid", *stdb])
    return directory / "model-hybrid"


def _run_hybrid(model: Path, out: Path) -> str:
    """``onespike run --method hybrid`` of ``model`` on 60 test images into ``out``."""
    return _invoke(
        [
            *("run", "--dataset", "digits", "--model-file", str(model), "--method", "hybrid"),
            *("--limit", "60", "--check-samples", "2", "--out", str(out)),
        ]
    )


def test_report_draws_the_stdb_curve_of_a_fine_tuned_hybrid_model(tmp_path: Path) -> None:
    """train --method hybrid records loss and held-out accuracy after every STDB epoch in
    model.json; run carries them into its record; the report draws and tabulates them."""
    options = ("--steps", "3", "--finetune-epochs", "3", "--finetune-patience", "1")
    model = _fine_tuned_hybrid(tmp_path, 2, *options, "--distill", "1")
    saved = json.loads((model / "model.json").read_text())["extra"]["hybrid"]
    held_out = json.loads((tmp_path / "model" / "model.json").read_text())["extra"]["validation"]
    assert saved["validation_images"] == held_out["size"] > 0
    assert saved["stdb"]["distill_weight"] == 1.0
    history = saved["history"]
    assert 2 <= len(history) <= 3  # patience 1 may stop after epoch 2
    scores = [h["val_accuracy"] for h in history]
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in scores)
    assert saved["best_epoch"] == 1 + scores.index(max(scores))

    run = tmp_path / "run"
    _run_hybrid(model, run)
    curve = json.loads((run / "results.json").read_text())["fine_tuning"]
    assert curve["best_epoch"] == saved["best_epoch"]
    assert curve["converted_snn_accuracy"] == saved["converted_snn_accuracy"]
    assert [h["val_accuracy"] for h in curve["history"]] == scores
    assert [h["loss"] for h in curve["history"]] == [h["loss"] for h in history]
    page = write_report(run).read_text()
    assert 'id="fine-tuning"' in page
    assert (run / "report" / "fine-tuning.png").read_bytes().startswith(PNG_SIGNATURE)
    table = page.split('id="fine-tuning"')[1].split("<h2")[0]
    assert table.count("<tr>") == 1 + len(history)  # the header and one row per epoch
    for h in history:
        assert f"{100 * h['val_accuracy']:.2f} %" in table
        assert f"{h['loss']:.4f}" in table
    assert f"{saved['best_epoch']} (kept)" in table

    # A run of a network without a fine-tuning record has no such section.
    plain = tmp_path / "plain"
    _run_hybrid(tmp_path / "model", plain)
    assert 'id="fine-tuning"' not in write_report(plain).read_text()

    # A record whose curve is damaged is named, not drawn half-way.
    (path,) = (run / "runs").glob("*.json")
    record = json.loads(path.read_text())
    record["summary"]["fine_tuning"]["history"][0]["loss"] = "low"
    path.write_text(json.dumps(record))
    with pytest.raises(CorruptFileError, match=r"fine_tuning\.history.*onespike run --out"):
        write_report(run)


def test_a_fine_tuned_model_without_a_readable_curve_runs_with_a_warning(tmp_path: Path) -> None:
    options = ("--steps", "2", "--finetune-epochs", "1", "--finetune-samples", "64")
    model = _fine_tuned_hybrid(tmp_path, 1, *options)
    meta = json.loads((model / "model.json").read_text())
    meta["extra"]["hybrid"]["history"] = "lost"  # as a file written elsewhere might hold
    meta["description_sha256"] = description_sha256(meta)
    (model / "model.json").write_text(json.dumps(meta))
    output = _run_hybrid(model, tmp_path / "run")
    assert "STDB history (per-epoch loss and accuracy) is unreadable" in output
    assert "fine_tuning" not in json.loads((tmp_path / "run" / "results.json").read_text())


def test_stdb_options_of_train_are_refused_where_they_cannot_apply(tmp_path: Path) -> None:
    runner = CliRunner()
    for extra in (["--distill", "1"], ["--finetune-flip"], ["--finetune-shift", "1"]):
        result = runner.invoke(
            main, ["train", "--dataset", "digits", "--out", str(tmp_path / "a"), *extra]
        )
        assert result.exit_code == 2
        assert "applies to --method hybrid only" in result.output
    torch.manual_seed(0)
    model, spec = onespike.models.build_model("mlp", (1, 8, 8), 10, hidden=(16,))
    onespike.io.save_model(tmp_path / "ann", model, spec, dataset="digits")
    result = runner.invoke(
        main,
        [
            "train",
            "--dataset",
            "digits",
            "--model-file",
            str(tmp_path / "ann"),
            "--method",
            "hybrid",
            "--finetune-patience",
            "2",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert result.exit_code == 2
    assert "--finetune-patience stops on the model's held-out images" in result.output


def test_report_draws_the_curve_of_a_ttfs_aware_model(tmp_path: Path) -> None:
    data = ["--dataset", "digits", "--out", str(tmp_path)]
    _invoke(["train", *data, "--model", "mlp", "--epochs", "1"])
    model = str(tmp_path / "model")
    _invoke(["train", *data, "--model-file", model, "--ttfs-aware", "--steps", "4"])
    saved = json.loads((tmp_path / "model-ttfs" / "model.json").read_text())["extra"]
    info = saved["ttfs_aware"]
    assert info["validation_images"] == _held_out_size(tmp_path) > 0
    history = info["history"]
    assert len(history) == 3  # --finetune-epochs' default
    assert all(0.0 <= h["val_accuracy"] <= 1.0 for h in history)
    run = tmp_path / "run"
    _invoke(
        [
            *("run", "--dataset", "digits", "--model-file", str(tmp_path / "model-ttfs")),
            *("--method", "ttfs", "--limit", "40", "--check-samples", "2", "--out", str(run)),
        ]
    )
    curve = json.loads((run / "results.json").read_text())["fine_tuning"]
    assert curve["method"] == "TTFS-aware"
    assert [h["val_accuracy"] for h in curve["history"]] == [h["val_accuracy"] for h in history]
    page = write_report(run).read_text()
    table = page.split('id="fine-tuning"')[1].split("<h2")[0]
    assert table.count("<tr>") == 1 + len(history)
    for h in history:
        assert f"{100 * h['val_accuracy']:.2f} %" in table


def _held_out_size(directory: Path) -> int:
    """How many training images ``onespike train --out directory`` held out."""
    meta = json.loads((directory / "model" / "model.json").read_text())
    return int(meta["extra"]["validation"]["size"])
