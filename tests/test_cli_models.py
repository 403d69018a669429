"""A user's own model through the command line: file.py:NAME with weights, ONNX, and the
refusals (pickled models, conflicting options, shapes that do not fit)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from onespike.cli import main
from onespike.data import load_dataset
from onespike.train import TrainConfig, evaluate, train
from tests import zoo

ZOO = Path(zoo.__file__)
ARGS = '{"pool": 2, "downsample": "avg"}'  # 8x8 digits: regular pooling, exportable to NIR


@pytest.fixture(scope="module")
def user_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, float]:
    """A MixedCNN trained on digits, saved as a torch.save state dict and as ONNX."""
    folder = tmp_path_factory.mktemp("user")
    torch.manual_seed(0)
    model = zoo.MixedCNN(pool=2, downsample="avg")
    data = load_dataset("digits", "train")
    train(model, data, TrainConfig(epochs=12, batch_size=64, lr=3e-3, seed=0), progress=False)
    model.eval()
    accuracy = evaluate(model, load_dataset("digits", "test"))
    weights = folder / "weights.pt"
    torch.save(model.state_dict(), weights)
    onnx_file = folder / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, 1, 8, 8),), str(onnx_file), dynamo=False, opset_version=13
        )
    return weights, onnx_file, accuracy


def _invoke(*args: str) -> object:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _user(weights: Path) -> list[str]:
    return ["--model-file", f"{ZOO}:MixedCNN", "--model-args", ARGS, "--weights", str(weights)]


def test_run_and_export_a_python_model(
    user_model: tuple[Path, Path, float], tmp_path: Path
) -> None:
    weights, _, accuracy = user_model
    assert accuracy > 0.8
    result = _invoke("run", "--dataset", "digits", *_user(weights), "--steps", "16",
                     "--check-samples", "4", "--out", str(tmp_path / "run"))  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "results.json").read_text())
    assert record["model"] == "MixedCNN"
    assert record["ann_accuracy"] == pytest.approx(accuracy)
    assert record["snn_accuracy"] > accuracy - 0.05
    assert record["stepped_check"]["identical_spikes"] == 1.0
    nir_file = tmp_path / "export" / "net.nir"
    result = _invoke("export", "--dataset", "digits", *_user(weights), "--output", str(nir_file))
    assert result.exit_code == 0, result.output
    assert nir_file.is_file()


def test_run_and_export_an_onnx_model(user_model: tuple[Path, Path, float], tmp_path: Path) -> None:
    weights, onnx_file, accuracy = user_model
    onnx_args = ["--model-file", str(onnx_file), "--steps", "16", "--check-samples", "4"]
    result = _invoke("run", "--dataset", "digits", *onnx_args, "--out", str(tmp_path / "onnx"))
    assert result.exit_code == 0, result.output
    from_onnx = json.loads((tmp_path / "onnx" / "results.json").read_text())
    result = _invoke("run", "--dataset", "digits", *_user(weights), "--steps", "16",
                     "--check-samples", "4", "--out", str(tmp_path / "py"))  # fmt: skip
    from_python = json.loads((tmp_path / "py" / "results.json").read_text())
    assert from_onnx["model"] == "model"
    assert from_onnx["ann_accuracy"] == pytest.approx(accuracy)
    assert from_onnx["snn_accuracy"] == from_python["snn_accuracy"]  # the same network
    assert from_onnx["synops"] == from_python["synops"]
    result = _invoke("export", "--dataset", "digits", "--model-file", str(onnx_file),
                     "--output", str(tmp_path / "onnx.nir"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "onnx.nir").is_file()


def test_hardware_and_hybrid_fine_tuning_of_a_python_model(
    user_model: tuple[Path, Path, float], tmp_path: Path
) -> None:
    weights, _, _ = user_model
    result = _invoke("hardware", "--dataset", "digits", *_user(weights), "--steps", "8",
                     "--limit", "50", "--out", str(tmp_path / "hw"))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "hw" / "hardware.json").read_text())["model"] == "MixedCNN"
    out = tmp_path / "hybrid"
    result = _invoke("train", "--dataset", "digits", *_user(weights), "--method", "hybrid",
                     "--steps", "3", "--finetune-epochs", "1", "--finetune-samples", "200",
                     "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    tuned = ["--model-file", f"{ZOO}:MixedCNN", "--model-args", ARGS]
    result = _invoke("run", "--dataset", "digits", *tuned, "--weights", str(out / "model-hybrid"),
                     "--method", "hybrid", "--limit", "60", "--check-samples", "2",
                     "--out", str(tmp_path / "rerun"))  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "rerun" / "results.json").read_text())
    assert record["finetuned"] is True
    assert record["steps"] == 3


USER_FILE = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, hidden=32, num_classes=10):
        super().__init__()
        self.flat = nn.Flatten()
        self.fc1 = nn.Linear(64, hidden)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(self.flat(x))))
"""


def test_train_a_user_class_then_fine_tune_it_ttfs_aware(tmp_path: Path) -> None:
    source = tmp_path / "my_net.py"
    source.write_text(USER_FILE)
    out = tmp_path / "run"
    hidden = '{"hidden": 24}'
    result = _invoke("train", "--dataset", "digits", "--model-file", f"{source}:Net",
                     "--model-args", hidden, "--epochs", "3", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model" / "model.json").read_text())
    assert meta["spec"]["source"] == "python"
    assert meta["spec"]["name"] == "Net"
    user = ["--model-file", f"{source}:Net", "--model-args", '{"hidden": 24}']
    result = _invoke("train", "--dataset", "digits", *user, "--weights", str(out / "model"),
                     "--ttfs-aware", "--steps", "4", "--finetune-epochs", "1",
                     "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    result = _invoke("run", "--dataset", "digits", *user, "--weights", str(out / "model-ttfs"),
                     "--method", "ttfs", "--check-samples", "2",
                     "--out", str(tmp_path / "tuned"))  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "tuned" / "results.json").read_text())
    assert record["steps"] == 4  # the T it was tuned for
    assert record["snn_accuracy"] == pytest.approx(record["finetuned_ann_accuracy"])


def test_refusals(user_model: tuple[Path, Path, float], tmp_path: Path) -> None:
    weights, onnx_file, _ = user_model
    pickled = tmp_path / "whole.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(zoo.MixedCNN(pool=2, downsample="avg"), pickled)
    result = _invoke("run", "--dataset", "digits", *_user(pickled), "--out", str(tmp_path / "p"))
    assert result.exit_code == 1
    assert "UnsafeFileError" in result.output
    assert "state_dict()" in result.output
    cases = [
        (["--model", "mlp", *_user(weights)], "--model configure training"),
        (["--weights", str(weights)], "give --model-file too"),
        (["--model-file", str(onnx_file), "--weights", str(weights)], "carries its weights"),
        (["--model-file", str(onnx_file), "--model-args", "{}"], "file.py:NAME source only"),
        (["--model-file", f"{ZOO}:MixedCNN", "--model-args", "[1]", "--weights", str(weights)],
         "JSON object"),
        (["--model-file", str(ZOO)], "ClassName"),
        ([*_user(weights), "--epochs", "3"], "--epochs configure training"),
    ]  # fmt: skip
    for args, message in cases:
        result = _invoke("run", "--dataset", "digits", *args, "--out", str(tmp_path / "x"))
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    wrong = ["--model-file", f"{ZOO}:MixedCNN", "--model-args", '{"num_classes": 5}']
    result = _invoke("train", "--dataset", "digits", *wrong, "--epochs", "1",
                     "--out", str(tmp_path / "w"))  # fmt: skip
    assert result.exit_code == 1
    assert "ShapeError" in result.output
    assert "(1, 10)" in result.output
    assert not (tmp_path / "w" / "model").exists()  # refused before any training
    result = _invoke("train", "--dataset", "digits", "--model-file", str(onnx_file),
                     "--method", "hybrid", "--out", str(tmp_path / "o"))  # fmt: skip
    assert result.exit_code == 2
    assert "PyTorch model" in result.output
