"""The command line end to end on the embedded digits set, and its error reporting."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from click.testing import CliRunner

from onespike.cli import main


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("run")
    runner = CliRunner()
    args = [
        "run",
        "--dataset",
        "digits",
        "--model",
        "mlp",
        "--epochs",
        "3",
        "--method",
        "ttfs",
        "--steps",
        "8",
        "--check-samples",
        "8",
        "--out",
        str(out),
    ]
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, result.output


def test_run_trains_converts_and_reports(trained_run: tuple[Path, str]) -> None:
    out, output = trained_run
    record = json.loads((out / "results.json").read_text())
    for key in (
        "ann_accuracy",
        "snn_accuracy",
        "spikes_per_neuron",
        "synops",
        "ann_macs",
        "energy_ratio_vs_ann",
        "latency_steps",
    ):
        assert key in record
    assert record["dataset"] == "digits"
    assert record["steps"] == 8
    assert record["latency_steps"] == 7 * 4 + 1  # three neuron layers: L (depth + 1) + 1
    assert record["ann_macs"] == 64 * 500 + 500 * 500 + 500 * 10
    assert record["spikes_per_neuron"] == 1.0  # the rectifier makes every neuron fire once
    assert record["snn_accuracy"] > 0.8
    assert record["stepped_check"]["identical_spikes"] == 1.0
    assert (out / "model" / "model.safetensors").exists()
    assert "SNN accuracy" in output
    assert "energy vs ANN" in output


def test_run_loads_a_saved_model(trained_run: tuple[Path, str], tmp_path: Path) -> None:
    out, _ = trained_run
    runner = CliRunner()
    args = [
        "run",
        "--dataset",
        "digits",
        "--model-file",
        str(out / "model"),
        "--method",
        "ttfs",
        "--steps",
        "8",
        "--check-samples",
        "4",
        "--out",
        str(tmp_path),
    ]
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    first = json.loads((out / "results.json").read_text())
    again = json.loads((tmp_path / "results.json").read_text())
    assert again["snn_accuracy"] == first["snn_accuracy"]
    assert again["synops"] == first["synops"]


def test_pickle_model_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    result = CliRunner().invoke(main, ["run", "--model-file", str(bad), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert "UnsafeFileError" in result.output


def test_missing_dataset_names_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONESPIKE_DATA", str(tmp_path / "nothing-here"))
    monkeypatch.setenv("ONESPIKE_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--dataset",
            "cifar10",
            "--data-dir",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1
    assert "DatasetNotFoundError" in result.output
    assert str(tmp_path) in result.output


def test_bad_steps_is_a_clear_error(tmp_path: Path) -> None:
    args = ["run", "--method", "ttfs", "--steps", "1", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert "steps >= 2" in result.output


def test_ttfs_aware_training_then_lossless_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    args = ["train", "--dataset", "digits", "--epochs", "3", "--ttfs-aware", "--steps", "4"]
    args += ["--finetune-epochs", "2", "--finetune-lr", "1e-3", "--out", str(tmp_path)]
    result = runner.invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model-ttfs" / "model.json").exists()
    meta = json.loads((tmp_path / "model-ttfs" / "model.json").read_text())
    assert meta["extra"]["ttfs_aware"]["steps"] == 4

    run = ["run", "--dataset", "digits", "--model-file", str(tmp_path / "model-ttfs")]
    run += ["--check-samples", "4", "--out", str(tmp_path / "run")]
    # The default method (rate) would drop what the model learned: refused, the fix named.
    refused = runner.invoke(main, run)
    assert refused.exit_code == 2
    assert "TTFS-aware (fine-tuned for --method ttfs)" in refused.output
    assert "give --method ttfs" in refused.output
    assert not (tmp_path / "run" / "results.json").exists()
    result = runner.invoke(main, [*run, "--method", "ttfs"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["steps"] == 4  # the T the model was tuned for
    assert record["snn_accuracy"] == record["finetuned_ann_accuracy"]
    assert "fine-tuned ANN (exact)" in result.output

    # export reports the ANN's accuracy and nothing else: one pass over the test set, not a
    # second one for the fine-tuned ANN.
    pytest.importorskip("nir")
    from onespike import cli

    passes: list[object] = []

    def counted(model: object, *args: object, **kwargs: object) -> float:
        passes.append(model)
        return float(evaluate(model, *args, **kwargs))

    evaluate = cli.evaluate
    monkeypatch.setattr(cli, "evaluate", counted)
    export = ["export", "--dataset", "digits", "--model-file", str(tmp_path / "model-ttfs")]
    export += ["--method", "ttfs", "--output", str(tmp_path / "net.nir")]
    result = runner.invoke(main, export, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    from onespike.nir_io import from_nir

    assert from_nir(tmp_path / "net.nir").config.steps == 4
    assert len(passes) == 1


def test_target_accuracy_picks_the_smallest_steps(trained_run: tuple[Path, str]) -> None:
    out, _ = trained_run
    run_dir = out / "target"
    args = ["run", "--dataset", "digits", "--model-file", str(out / "model")]
    args += ["--method", "ttfs", "--target-accuracy", "0.6", "--check-samples", "2"]
    args += ["--out", str(run_dir)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((run_dir / "results.json").read_text())
    tried = {int(t): acc for t, acc in record["validation_accuracy_by_steps"].items()}
    assert tried[record["steps"]] >= 0.6
    assert all(acc < 0.6 for t, acc in tried.items() if t < record["steps"])
    assert [layer["name"] for layer in record["layers"]]  # per-layer diagnostics
    assert all(0.0 <= layer["clipped_fraction"] <= 1.0 for layer in record["layers"])


def test_ttfs_aware_needs_steps(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["train", "--ttfs-aware", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--steps" in result.output


def test_binary_training_and_rate_conversion(tmp_path: Path) -> None:
    runner = CliRunner()
    train = ["train", "--dataset", "digits", "--epochs", "3", "--binary", "--out", str(tmp_path)]
    result = runner.invoke(main, train, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    spec = json.loads((tmp_path / "model" / "model.json").read_text())["spec"]
    assert spec["kwargs"] == {"binary": True}
    run = [
        "run",
        "--dataset",
        "digits",
        "--model-file",
        str(tmp_path / "model"),
        "--method",
        "rate",
        "--binary",
        "--steps",
        "32",
        "--threshold-scale",
        "0.5",
        "--early-exit",
        "4",
        "--dither",
        "0.125",
        "--check-samples",
        "8",
        "--out",
        str(tmp_path / "rate"),
    ]
    result = runner.invoke(main, run, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "rate" / "results.json").read_text())
    assert record["method"] == "rate"
    assert record["latency_steps"] == 32
    assert 1 <= record["mean_latency_steps"] < 32
    assert len(record["accuracy_by_steps"]) == 32
    assert record["snn_accuracy"] > 0.7
    assert record["snn_macs"] == 64 * 500  # the analog first layer, once per sample
    assert record["stepped_check"]["identical_spikes"] == 1.0
    assert "mean" in result.output


def test_rate_options_are_checked_before_training(tmp_path: Path) -> None:
    args = ["run", "--method", "rate", "--threshold-scale", "0", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "threshold_scale" in result.output
    assert not (tmp_path / "model").exists()
    args = ["run", "--method", "rate", "--dither", "0.7", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code != 0
    assert "dither <= initial_membrane" in result.output
    assert not (tmp_path / "model").exists()
