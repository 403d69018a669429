"""Training with deterministic, resumable checkpoints, plus evaluation helpers.

:func:`train` is deterministic given :attr:`TrainConfig.seed`: batches are shuffled by a
``torch.Generator`` seeded from it, and torch's global RNG (dropout) is seeded from it when
training starts. With ``checkpoint_dir`` it writes, after every epoch,

* ``checkpoint.safetensors``: the model state, the optimizer state flattened to tensors, the
  learning-rate schedule position and both RNG states (as uint8 tensors);
* ``checkpoint.json``: the epoch, the config, the history and the layout of the optimizer state,

both atomically and the JSON last. Resuming restores every piece and says so (epoch and
checkpoint path, on stderr, with ``progress=True``).

**Determinism, exactly.** Two runs give bit-identical weights, and a run interrupted after
epoch ``k`` and resumed gives bit-identical weights to an uninterrupted one, when they share
the seed, the torch version and the number of torch threads (``torch.get_num_threads()``),
on the CPU: the thread count changes how torch splits its reductions, so the rounding of
float sums, and another torch version may change its kernels. The checkpoint records both
(``environment``); resuming under others warns that the result is no longer bit-identical.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from onespike._fs import atomic_write_bytes, atomic_write_json
from onespike._progress import Stage
from onespike.data import Dataset
from onespike.errors import ChecksumError, ConfigError, CorruptFileError
from onespike.io import _state_mismatches, read_safetensors

__all__ = [
    "CHECKPOINT_JSON",
    "CHECKPOINT_TENSORS",
    "Augment",
    "LossFn",
    "TrainConfig",
    "TrainResult",
    "environment",
    "evaluate",
    "predict",
    "train",
]

CHECKPOINT_TENSORS = "checkpoint.safetensors"
"""Name of the checkpoint's tensor file inside ``checkpoint_dir``."""
CHECKPOINT_JSON = "checkpoint.json"
"""Name of the checkpoint's description file inside ``checkpoint_dir``."""

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(logits, labels) -> scalar loss``."""

Augment = Callable[[Tensor, torch.Generator], Tensor]
"""``augment(images, generator) -> images``: data augmentation of one training batch."""

_FORMAT_NAME = "onespike-checkpoint"
_FORMAT_VERSION = 1
_METADATA_KEY = "onespike_checkpoint"
_RECORD_KEYS = ("format_version", "epoch", "config", "num_samples", "history", "optimizer")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of :func:`train`; validated on construction.

    Attributes:
        epochs: number of passes over the training set, >= 1.
        batch_size: samples per optimizer step, >= 1.
        lr: peak learning rate, > 0.
        optimizer: ``"adam"`` or ``"sgd"``.
        momentum: SGD momentum in ``[0, 1)`` (ignored by Adam).
        weight_decay: L2 penalty, >= 0.
        lr_schedule: ``"cosine"`` (per step, from ``lr`` down to 0 over all epochs) or ``"none"``.
        seed: seeds the shuffling generator and torch's global RNG, in ``[0, 2**63)``.
    """

    epochs: int
    batch_size: int
    lr: float
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    lr_schedule: Literal["cosine", "none"] = "cosine"
    seed: int = 0

    def __post_init__(self) -> None:
        """Check every field; raise :class:`ConfigError` naming the field and its range."""
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_real("lr", self.lr, "> 0", lambda v: v > 0)
        _check_real("momentum", self.momentum, "in [0, 1)", lambda v: 0 <= v < 1)
        _check_real("weight_decay", self.weight_decay, ">= 0", lambda v: v >= 0)
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.lr_schedule not in ("cosine", "none"):
            raise ConfigError(f"lr_schedule must be 'cosine' or 'none', got {self.lr_schedule!r}")

    def to_json(self) -> dict[str, Any]:
        """Return the fields as a JSON-serialisable dict.

        Returns:
            Field name -> value.
        """
        return dataclasses.asdict(self)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        raise ConfigError(f"TrainConfig.{name} must be an integer {allowed}, got {value!r}")


def _check_real(name: str, value: object, allowed: str, ok: Callable[[float], bool]) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not ok(float(value))
    ):
        raise ConfigError(f"TrainConfig.{name} must be a finite number {allowed}, got {value!r}")


@dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes:
        history: one dict per epoch, including epochs restored from a checkpoint, with keys
            ``epoch`` (1-based), ``loss`` (mean training loss), ``train_accuracy`` (on the
            training batches as seen during the epoch), ``val_accuracy`` (``None`` without a
            validation set) and ``seconds``.
        resumed_from_epoch: the checkpoint epoch training continued from; 0 for a fresh run.
        resumed_from: the checkpoint file it continued from; ``None`` for a fresh run.
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int = 0
    resumed_from: Path | None = None


def _augment_seed(config: TrainConfig, step: int) -> int:
    """The seed of the augmentation of optimiser step ``step``: fixed by the run's seed and
    the step alone, so a resumed run draws what an uninterrupted one does."""
    return (config.seed * 1_000_003 + step) % (2**63)


def environment() -> dict[str, Any]:
    """What bit-identical training depends on besides the seed: torch's version and threads.

    Returns:
        ``{"torch": torch.__version__, "threads": torch.get_num_threads()}``.
    """
    return {"torch": str(torch.__version__), "threads": int(torch.get_num_threads())}


def train(
    model: nn.Module,
    train_ds: Dataset,
    config: TrainConfig,
    *,
    val_ds: Dataset | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    loss_fn: LossFn | None = None,
    on_epoch: Callable[[TrainResult], bool] | None = None,
    augment: Augment | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``train_ds``, checkpointing after every epoch.

    Training seeds torch's global RNG with ``config.seed`` when it starts (the caller builds,
    and so seeds, the model beforehand). Batches are moved to the device of the model's
    parameters. Results are bit-identical for the same seed, torch version and torch thread
    count, on the CPU (see the module docstring); a resumed run says so on stderr.

    Args:
        model: the network; returns logits ``(N, num_classes)``.
        train_ds: training split.
        config: hyperparameters.
        val_ds: if given, accuracy on it is recorded after every epoch.
        checkpoint_dir: where to write ``checkpoint.safetensors`` and ``checkpoint.json``
            after every epoch; ``None`` writes nothing.
        resume: continue from the checkpoint in ``checkpoint_dir`` if there is one; with
            ``False`` an existing checkpoint is ignored and overwritten.
        progress: show a progress bar over the batches of each epoch on a terminal, and one
            summary line per epoch (loss, accuracies, time) otherwise.
        loss_fn: ``loss_fn(logits, labels) -> scalar``; defaults to cross-entropy.
        on_epoch: called with the history after every epoch (and its checkpoint); returning
            True stops training there (early stopping).
        augment: ``augment(images, generator) -> images``, applied to every training batch
            (e.g. :func:`onespike.data.random_shift`); the generator is seeded from the seed
            and the step, so an augmented run is as reproducible and resumable as a plain one.

    Returns:
        The per-epoch history and the epoch training resumed from.

    Raises:
        ConfigError: the dataset is empty, the checkpoint was written with a different config
            (any field but ``epochs``), dataset size or model, the checkpoint already holds
            more epochs than ``config.epochs``, or the loss became NaN or infinite.
        CorruptFileError: the checkpoint files are damaged or inconsistent.
    """
    n = len(train_ds)
    if n == 0 or train_ds.images.shape[0] != n:
        raise ConfigError(
            f"training set {train_ds.name!r} must be non-empty with one label per image, got "
            f"{train_ds.images.shape[0]} images and {n} labels"
        )
    criterion: LossFn = loss_fn if loss_fn is not None else F.cross_entropy
    device = _device_of(model)
    torch.manual_seed(config.seed)
    shuffle = torch.Generator().manual_seed(config.seed)
    optimizer = _make_optimizer(model, config)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total_steps = config.epochs * steps_per_epoch
    step = 0
    result = TrainResult()
    directory = Path(checkpoint_dir) if checkpoint_dir is not None else None

    if directory is not None and resume:
        loaded = _load_checkpoint(directory)
        if loaded is not None:
            tensors, record = loaded
            _check_compatible(record, config, n, directory)
            step = _restore(tensors, record, model, optimizer, shuffle, device, directory)
            result.history = list(record["history"])
            result.resumed_from_epoch = int(record["epoch"])
            result.resumed_from = directory / CHECKPOINT_TENSORS
            _check_environment(record, directory)
            if progress:
                left = config.epochs - result.resumed_from_epoch
                tqdm.write(
                    f"resumed training from epoch {result.resumed_from_epoch} of "
                    f"{config.epochs} ({left} left), checkpoint {result.resumed_from}",
                    file=sys.stderr,
                )

    for epoch in range(result.resumed_from_epoch + 1, config.epochs + 1):
        started = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=shuffle, device="cpu")  # the same on every device
        loss_sum = 0.0
        correct = 0
        seen = 0
        bar = Stage(
            f"epoch {epoch}/{config.epochs}",
            total=steps_per_epoch,
            unit="batch",
            enabled=progress,
            leave=False,
        )
        with bar:
            for start in range(0, n, config.batch_size):
                index = order[start : start + config.batch_size]
                x = train_ds.images[index]
                if augment is not None:
                    x = augment(x, torch.Generator().manual_seed(_augment_seed(config, step)))
                x = x.to(device)
                y = train_ds.labels[index].to(device)
                lr = _lr_at(step, total_steps, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.zero_grad(set_to_none=True)
                logits = model(x)
                loss = criterion(logits, y)
                loss.backward()
                optimizer.step()
                step += 1
                value = float(loss.item())
                if not math.isfinite(value):
                    raise ConfigError(
                        f"the training loss became {value} in epoch {epoch} (step {step}); "
                        f"lower the learning rate (lr={config.lr})"
                    )
                loss_sum += value * len(index)
                correct += int((logits.detach().argmax(dim=1) == y).sum().item())
                seen += len(index)
                bar.describe(f"epoch {epoch}/{config.epochs} loss {loss_sum / seen:.4f}")
                bar.update(1)
            val_accuracy = evaluate(model, val_ds) if val_ds is not None else None
            bar.close(
                f"loss {loss_sum / seen:.4f}, training accuracy {correct / seen:.4f}"
                + ("" if val_accuracy is None else f", validation accuracy {val_accuracy:.4f}")
            )
        model.train()
        result.history.append(
            {
                "epoch": epoch,
                "loss": loss_sum / seen,
                "train_accuracy": correct / seen,
                "val_accuracy": val_accuracy,
                "seconds": time.perf_counter() - started,
            }
        )
        if directory is not None:
            _write_checkpoint(
                directory, model, optimizer, shuffle, device, step, epoch, config, n, result
            )
        if on_epoch is not None and on_epoch(result):
            break
    return result


def predict(model: nn.Module, images: Tensor, *, batch_size: int = 1000) -> Tensor:
    """Return the predicted class of every image, in eval mode and without gradients.

    Args:
        model: the network; returns logits ``(N, num_classes)``.
        images: inputs ``(N, ...)``; batches are moved to the model's device.
        batch_size: images per forward pass, >= 1.

    Returns:
        int64 tensor ``(N,)`` of class indices, on the CPU.

    Raises:
        ConfigError: ``batch_size < 1``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    device = _device_of(model)
    was_training = model.training
    model.eval()
    outputs: list[Tensor] = []
    try:
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                logits = model(images[start : start + batch_size].to(device))
                outputs.append(logits.argmax(dim=1).to("cpu", torch.int64))
    finally:
        model.train(was_training)
    if not outputs:
        return torch.zeros(0, dtype=torch.int64)
    return torch.cat(outputs)


def evaluate(model: nn.Module, ds: Dataset, *, batch_size: int = 1000) -> float:
    """Return the accuracy of ``model`` on ``ds``, in eval mode and without gradients.

    Args:
        model: the network; returns logits ``(N, num_classes)``.
        ds: the split to score.
        batch_size: images per forward pass, >= 1.

    Returns:
        The fraction of correctly classified samples, in ``[0, 1]``.

    Raises:
        ConfigError: the dataset is empty or ``batch_size < 1``.
    """
    if len(ds) == 0:
        raise ConfigError(f"cannot evaluate on an empty dataset ({ds.name!r} {ds.split!r})")
    predicted = predict(model, ds.images, batch_size=batch_size)
    return float((predicted == ds.labels.to("cpu")).double().mean().item())


def _device_of(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = list(model.parameters())
    if not params:
        raise ConfigError(f"{type(model).__name__} has no parameters to train")
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _lr_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based), in closed form so resuming is exact."""
    if config.lr_schedule == "none":
        return config.lr
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Tensor) and value.numel() == 1:
        return value.item()
    return value


def _write_checkpoint(
    directory: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    device: torch.device,
    step: int,
    epoch: int,
    config: TrainConfig,
    num_samples: int,
    result: TrainResult,
) -> None:
    """Write the tensors, then the JSON that names their epoch; both atomically."""
    tensors: dict[str, Tensor] = {
        f"model.{k}": v.detach().to("cpu").contiguous().clone()
        for k, v in model.state_dict().items()
    }
    saved = optimizer.state_dict()
    layout: dict[str, dict[str, Any]] = {}
    for pid, entries in saved["state"].items():
        layout[str(pid)] = {}
        for key, value in entries.items():
            if isinstance(value, Tensor):
                name = f"optimizer.state.{pid}.{key}"
                tensors[name] = value.detach().to("cpu").contiguous().clone()
                layout[str(pid)][key] = {"tensor": name}
            else:
                layout[str(pid)][key] = {"value": _jsonable(value)}
    groups = [{k: _jsonable(v) for k, v in g.items()} for g in saved["param_groups"]]
    tensors["scheduler.step"] = torch.tensor(step, dtype=torch.int64)
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.shuffle"] = shuffle.get_state()
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    record = {
        "format": _FORMAT_NAME,
        "format_version": _FORMAT_VERSION,
        "epoch": epoch,
        "config": config.to_json(),
        "num_samples": num_samples,
        "steps": step,
        "environment": environment(),
        "history": result.history,
        "optimizer": {"type": config.optimizer, "param_groups": groups, "state": layout},
    }
    try:
        text = json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"cannot record the optimizer state as JSON: {exc}") from exc
    # The record also travels inside the tensor file, so a crash between the two writes
    # (new tensors, old JSON) still leaves a complete, resumable checkpoint.
    data = safetensors.torch.save(tensors, metadata={_METADATA_KEY: text})
    atomic_write_bytes(directory / CHECKPOINT_TENSORS, data)
    atomic_write_json(
        directory / CHECKPOINT_JSON,
        {**record, "tensors_file": CHECKPOINT_TENSORS, "sha256": hashlib.sha256(data).hexdigest()},
    )


def _load_checkpoint(directory: Path) -> tuple[dict[str, Tensor], dict[str, Any]] | None:
    """Read the checkpoint in ``directory``; ``None`` if there is none."""
    tensor_path = directory / CHECKPOINT_TENSORS
    json_path = directory / CHECKPOINT_JSON
    if not tensor_path.is_file():
        if json_path.is_file():
            raise CorruptFileError(
                f"{json_path} exists but {tensor_path.name} does not; delete {directory} or "
                "train with resume=False"
            )
        return None
    tensors, metadata = read_safetensors(tensor_path)
    try:
        record = json.loads(metadata[_METADATA_KEY])
    except (KeyError, json.JSONDecodeError) as exc:
        raise CorruptFileError(
            f"{tensor_path} lacks a valid onespike checkpoint record: {exc}"
        ) from exc
    if not isinstance(record, dict) or any(k not in record for k in _RECORD_KEYS):
        raise CorruptFileError(f"{tensor_path}: the checkpoint record is missing keys")
    if record["format_version"] != _FORMAT_VERSION:
        raise CorruptFileError(
            f"{tensor_path} has checkpoint format_version {record['format_version']!r}; this "
            f"onespike reads {_FORMAT_VERSION}"
        )
    if json_path.is_file():
        try:
            described = json.loads(json_path.read_text(encoding="utf-8"))
            json_epoch = int(described["epoch"])
            digest = str(described["sha256"])
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise CorruptFileError(f"{json_path} is malformed: {exc}") from exc
        if json_epoch == record["epoch"]:
            actual = hashlib.sha256(tensor_path.read_bytes()).hexdigest()
            if actual != digest:
                raise ChecksumError(
                    f"{tensor_path} fails the SHA-256 recorded in {json_path.name}; delete "
                    f"{directory} or train with resume=False"
                )
        elif json_epoch > record["epoch"]:
            raise CorruptFileError(
                f"{json_path} names epoch {json_epoch} but {tensor_path.name} holds epoch "
                f"{record['epoch']}; delete {directory} or train with resume=False"
            )
        else:  # interrupted between writing the tensors and the JSON: the tensors are complete
            warnings.warn(
                f"{json_path} is one write behind {tensor_path.name}; resuming from epoch "
                f"{record['epoch']} recorded in the tensor file",
                RuntimeWarning,
                stacklevel=3,
            )
    return tensors, record


def _check_compatible(
    record: dict[str, Any], config: TrainConfig, num_samples: int, directory: Path
) -> None:
    saved = record["config"]
    current = config.to_json()
    differing = [
        f"{k}={saved.get(k)!r} there, {v!r} now"
        for k, v in current.items()
        if k != "epochs" and saved.get(k) != v
    ]
    if differing:
        raise ConfigError(
            f"the checkpoint in {directory} was written with a different config "
            f"({'; '.join(differing)}); only epochs may change when resuming. Use the same "
            "config, another checkpoint_dir, or resume=False"
        )
    if record["num_samples"] != num_samples:
        raise ConfigError(
            f"the checkpoint in {directory} was trained on {record['num_samples']} samples, "
            f"this training set has {num_samples}; use another checkpoint_dir or resume=False"
        )
    if record["epoch"] > config.epochs:
        raise ConfigError(
            f"the checkpoint in {directory} already holds {record['epoch']} epochs, more than "
            f"epochs={config.epochs}; raise epochs, use another checkpoint_dir or resume=False"
        )


def _check_environment(record: dict[str, Any], directory: Path) -> None:
    """Warn when the checkpoint was written under another torch version or thread count."""
    saved = record.get("environment")
    if not isinstance(saved, dict):
        return  # written before onespike recorded it
    now = environment()
    differing = [
        f"{k} {saved.get(k)!r} there, {v!r} now" for k, v in now.items() if saved.get(k) != v
    ]
    if differing:
        warnings.warn(
            f"the checkpoint in {directory} was written with {'; '.join(differing)}: training "
            "continues, but the weights will not be bit-identical to an uninterrupted run (set "
            "torch.set_num_threads to the recorded count, or use the recorded torch version)",
            RuntimeWarning,
            stacklevel=3,
        )


def _restore(
    tensors: dict[str, Tensor],
    record: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    shuffle: torch.Generator,
    device: torch.device,
    directory: Path,
) -> int:
    """Load model, optimizer and RNG states from a checkpoint; return the step count."""
    where = directory / CHECKPOINT_TENSORS
    state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    mismatches = _state_mismatches(model, state)
    if mismatches:
        raise ConfigError(
            f"the checkpoint in {directory} holds a different model ({'; '.join(mismatches)}); "
            "use another checkpoint_dir or resume=False"
        )
    try:
        layout = record["optimizer"]
        opt_state: dict[int, dict[str, Any]] = {}
        for pid, entries in layout["state"].items():
            opt_state[int(pid)] = {
                key: tensors[spec["tensor"]] if "tensor" in spec else spec["value"]
                for key, spec in entries.items()
            }
        groups = [
            {k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
            for g in layout["param_groups"]
        ]
        step = int(tensors["scheduler.step"].item())
        rng_torch = tensors["rng.torch"]
        rng_shuffle = tensors["rng.shuffle"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptFileError(f"{where}: incomplete checkpoint ({exc!r})") from exc
    model.load_state_dict(state)
    try:
        optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
        torch.set_rng_state(rng_torch)
        shuffle.set_state(rng_shuffle)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CorruptFileError(f"{where}: cannot restore the training state: {exc}") from exc
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    return step
