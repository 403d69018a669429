"""Training: config validation, learning, determinism and exact resumption from checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from onespike.data import Dataset
from onespike.errors import ChecksumError, ConfigError, CorruptFileError
from onespike.models import build_model
from onespike.train import (
    CHECKPOINT_JSON,
    CHECKPOINT_TENSORS,
    TrainConfig,
    TrainResult,
    evaluate,
    predict,
    train,
)


def _separable(n: int, seed: int, split: str = "train") -> Dataset:
    """Two classes split by a fixed random hyperplane through the centre of 1x4x4 images."""
    weights = torch.Generator().manual_seed(123)
    w = torch.randn(16, generator=weights)
    gen = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 1, 4, 4, generator=gen)
    labels = ((images.flatten(1) - 0.5) @ w > 0).long()
    return Dataset("separable", split, images, labels, 2)


def _tiny_mlp(dropout: float = 0.2) -> nn.Module:
    torch.manual_seed(7)
    model, _ = build_model("mlp", (1, 4, 4), 2, hidden=(12,), dropout=dropout)
    return model


def _weights(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_identical(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


class _Interrupt(Exception):
    pass


class _FailingLoss:
    """Cross-entropy that raises on call ``fail_at`` (1-based), simulating a crash."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.calls = 0

    def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.calls += 1
        if self.calls == self.fail_at:
            raise _Interrupt
        return F.cross_entropy(logits, labels)


CONFIG = TrainConfig(epochs=3, batch_size=16, lr=0.01)  # 96 samples: 6 batches per epoch


@pytest.mark.parametrize(
    ("kwargs", "field", "allowed"),
    [
        ({"epochs": 0}, "epochs", ">= 1"),
        ({"epochs": 2.5}, "epochs", ">= 1"),
        ({"batch_size": 0}, "batch_size", ">= 1"),
        ({"lr": 0.0}, "lr", "> 0"),
        ({"lr": float("inf")}, "lr", "> 0"),
        ({"momentum": 1.0}, "momentum", r"in \[0, 1\)"),
        ({"weight_decay": -0.1}, "weight_decay", ">= 0"),
        ({"seed": -1}, "seed", r"in \[0, "),
        ({"optimizer": "rmsprop"}, "optimizer", "'adam' or 'sgd'"),
        ({"lr_schedule": "step"}, "lr_schedule", "'cosine' or 'none'"),
    ],
)
def test_train_config_validation(kwargs: dict, field: str, allowed: str) -> None:
    base = {"epochs": 1, "batch_size": 8, "lr": 0.1}
    with pytest.raises(ConfigError, match=rf"{field} must .*{allowed}"):
        TrainConfig(**{**base, **kwargs})


def test_train_config_defaults_and_json() -> None:
    config = TrainConfig(epochs=2, batch_size=4, lr=0.5)
    assert config.to_json() == {
        "epochs": 2,
        "batch_size": 4,
        "lr": 0.5,
        "optimizer": "adam",
        "momentum": 0.9,
        "weight_decay": 0.0,
        "lr_schedule": "cosine",
        "seed": 0,
    }


def test_training_learns_a_separable_task() -> None:
    train_ds, test_ds = _separable(512, seed=0), _separable(256, seed=1, split="test")
    model = _tiny_mlp(dropout=0.0)
    assert evaluate(model, test_ds) < 0.8
    config = TrainConfig(epochs=8, batch_size=32, lr=0.02)
    result = train(model, train_ds, config, val_ds=test_ds, progress=False)
    assert isinstance(result, TrainResult)
    assert result.resumed_from_epoch == 0
    assert [h["epoch"] for h in result.history] == list(range(1, 9))
    assert set(result.history[0]) == {"epoch", "loss", "train_accuracy", "val_accuracy", "seconds"}
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.history[-1]["val_accuracy"] > 0.9
    assert evaluate(model, test_ds) == result.history[-1]["val_accuracy"]
    assert evaluate(model, test_ds) > 0.9


def test_sgd_without_schedule_learns() -> None:
    train_ds = _separable(512, seed=0)
    model = _tiny_mlp(dropout=0.0)
    config = TrainConfig(
        epochs=8, batch_size=32, lr=0.1, optimizer="sgd", lr_schedule="none", weight_decay=1e-4
    )
    train(model, train_ds, config, progress=False)
    assert evaluate(model, _separable(256, seed=1)) > 0.9


def test_same_seed_same_weights_other_seed_differs() -> None:
    ds = _separable(96, seed=0)
    runs = []
    for seed in (3, 3, 4):
        model = _tiny_mlp()
        train(model, ds, TrainConfig(epochs=2, batch_size=16, lr=0.01, seed=seed), progress=False)
        runs.append(_weights(model))
    _assert_identical(runs[0], runs[1])
    assert not torch.equal(runs[0]["layers.1.weight"], runs[2]["layers.1.weight"])


def test_checkpoint_after_every_epoch_and_no_temp_files(tmp_path: Path) -> None:
    ds = _separable(96, seed=0)
    seen: list[int | None] = []

    def loss_fn(logits: Tensor, labels: Tensor) -> Tensor:
        if len(seen) % 6 == 0:  # first batch of an epoch: look at the latest checkpoint
            path = tmp_path / CHECKPOINT_JSON
            seen.append(json.loads(path.read_text())["epoch"] if path.exists() else None)
        else:
            seen.append(-1)
        return F.cross_entropy(logits, labels)

    train(_tiny_mlp(), ds, CONFIG, checkpoint_dir=tmp_path, loss_fn=loss_fn, progress=False)
    assert seen[::6] == [None, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_JSON, CHECKPOINT_TENSORS]
    record = json.loads((tmp_path / CHECKPOINT_JSON).read_text())
    assert record["epoch"] == 3
    assert record["steps"] == 18
    assert record["config"] == CONFIG.to_json()
    assert [h["epoch"] for h in record["history"]] == [1, 2, 3]
    assert set(record["optimizer"]["state"]["0"]) == {"step", "exp_avg", "exp_avg_sq"}


def test_interrupted_then_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    ds, val = _separable(96, seed=0), _separable(32, seed=1)
    reference = _tiny_mlp()
    full = train(reference, ds, CONFIG, val_ds=val, progress=False)

    model = _tiny_mlp()
    with pytest.raises(_Interrupt):  # crash in the first batch of epoch 3
        train(model, ds, CONFIG, val_ds=val, checkpoint_dir=tmp_path, loss_fn=_FailingLoss(13))
    assert json.loads((tmp_path / CHECKPOINT_JSON).read_text())["epoch"] == 2

    resumed_model = _tiny_mlp()  # a fresh process would rebuild the model the same way
    resumed = train(resumed_model, ds, CONFIG, val_ds=val, checkpoint_dir=tmp_path)
    assert resumed.resumed_from_epoch == 2
    _assert_identical(_weights(resumed_model), _weights(reference))
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in resumed.history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in full.history]


def test_resume_after_crash_between_tensor_and_json_write(tmp_path: Path) -> None:
    ds = _separable(96, seed=0)
    reference = _tiny_mlp()
    train(reference, ds, CONFIG, progress=False)

    saved: dict[str, bytes] = {}

    class Loss(_FailingLoss):
        def __call__(self, logits: Tensor, labels: Tensor) -> Tensor:
            if self.calls == 6:  # first batch of epoch 2: keep the epoch-1 JSON
                saved["json"] = (tmp_path / CHECKPOINT_JSON).read_bytes()
            return super().__call__(logits, labels)

    with pytest.raises(_Interrupt):
        train(_tiny_mlp(), ds, CONFIG, checkpoint_dir=tmp_path, loss_fn=Loss(13), progress=False)
    (tmp_path / CHECKPOINT_JSON).write_bytes(saved["json"])  # tensors at epoch 2, JSON at 1
    model = _tiny_mlp()
    with pytest.warns(RuntimeWarning, match="one write behind"):
        result = train(model, ds, CONFIG, checkpoint_dir=tmp_path, progress=False)
    assert result.resumed_from_epoch == 2
    _assert_identical(_weights(model), _weights(reference))


def test_resume_checks_config_and_allows_more_epochs(tmp_path: Path) -> None:
    ds = _separable(96, seed=0)
    train(_tiny_mlp(), ds, CONFIG, checkpoint_dir=tmp_path, progress=False)
    with pytest.raises(ConfigError, match=r"different config \(lr=0.01 there, 0.02 now\)"):
        train(
            _tiny_mlp(), ds, TrainConfig(epochs=3, batch_size=16, lr=0.02), checkpoint_dir=tmp_path
        )
    with pytest.raises(ConfigError, match="already holds 3 epochs"):
        train(
            _tiny_mlp(), ds, TrainConfig(epochs=2, batch_size=16, lr=0.01), checkpoint_dir=tmp_path
        )
    with pytest.raises(ConfigError, match="96 samples"):
        train(_tiny_mlp(), _separable(80, seed=0), CONFIG, checkpoint_dir=tmp_path)
    torch.manual_seed(0)
    other, _ = build_model("mlp", (1, 4, 4), 2, hidden=(5,))
    with pytest.raises(ConfigError, match="different model"):
        train(other, ds, CONFIG, checkpoint_dir=tmp_path, progress=False)

    done = _tiny_mlp()
    same = train(done, ds, CONFIG, checkpoint_dir=tmp_path, progress=False)
    assert same.resumed_from_epoch == 3
    assert len(same.history) == 3
    longer = train(done, ds, TrainConfig(epochs=4, batch_size=16, lr=0.01), checkpoint_dir=tmp_path)
    assert longer.resumed_from_epoch == 3
    assert [h["epoch"] for h in longer.history] == [1, 2, 3, 4]

    fresh = train(_tiny_mlp(), ds, CONFIG, checkpoint_dir=tmp_path, resume=False, progress=False)
    assert fresh.resumed_from_epoch == 0
    assert json.loads((tmp_path / CHECKPOINT_JSON).read_text())["epoch"] == 3


def test_damaged_checkpoints_are_refused(tmp_path: Path) -> None:
    ds = _separable(96, seed=0)
    config = TrainConfig(epochs=1, batch_size=16, lr=0.01)
    train(_tiny_mlp(), ds, config, checkpoint_dir=tmp_path, progress=False)
    tensors = tmp_path / CHECKPOINT_TENSORS
    good = tensors.read_bytes()

    tensors.write_bytes(good[:-10] + bytes(b ^ 0xFF for b in good[-10:]))
    with pytest.raises(ChecksumError, match="SHA-256"):
        train(_tiny_mlp(), ds, config, checkpoint_dir=tmp_path, progress=False)
    tensors.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptFileError, match="truncated"):
        train(_tiny_mlp(), ds, config, checkpoint_dir=tmp_path, progress=False)
    tensors.unlink()
    with pytest.raises(CorruptFileError, match=r"exists but checkpoint\.safetensors does not"):
        train(_tiny_mlp(), ds, config, checkpoint_dir=tmp_path, progress=False)
    shutil.rmtree(tmp_path)
    assert train(_tiny_mlp(), ds, config, checkpoint_dir=tmp_path).resumed_from_epoch == 0


def test_nan_loss_is_reported() -> None:
    ds = _separable(32, seed=0)

    def nan_loss(logits: Tensor, labels: Tensor) -> Tensor:
        return logits.sum() * float("nan")

    with pytest.raises(ConfigError, match="loss became nan in epoch 1"):
        train(_tiny_mlp(), ds, TrainConfig(epochs=1, batch_size=8, lr=0.1), loss_fn=nan_loss)


def test_predict_and_evaluate() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    images = torch.tensor([[[[2.0, 1.0]]], [[[0.0, 3.0]]], [[[5.0, 4.0]]]])
    model.train()
    assert predict(model, images, batch_size=2).tolist() == [0, 1, 0]
    assert model.training  # the mode is restored
    ds = Dataset("toy", "test", images, torch.tensor([0, 0, 0]), 2)
    assert evaluate(model, ds, batch_size=1) == pytest.approx(2 / 3)
    assert predict(model, images[:0]).shape == (0,)
    with pytest.raises(ConfigError, match="empty"):
        evaluate(model, Dataset("toy", "test", images[:0], torch.zeros(0, dtype=torch.long), 2))
    with pytest.raises(ConfigError, match="batch_size"):
        predict(model, images, batch_size=0)
