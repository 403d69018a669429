"""The ``onespike`` command line: train, convert, simulate and report in one command.

``onespike run`` trains a model (or loads one with ``--model-file``), converts it, simulates
the whole test set with the closed-form simulator (checking a subset against the stepped
reference), and prints accuracy, spikes, synaptic operations, energy and latency against the
ANN. Errors are reported as one line naming the problem and the fix, with exit status 1.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import click
import torch

from onespike import distributed
from onespike._fs import atomic_write_json, read_json
from onespike.binary import binarize
from onespike.convert import HybridConfig, RateConfig, TTFSConfig, convert
from onespike.convert.config import MAX_STEPS
from onespike.data import DATASETS, Dataset, batches, load_dataset, split_validation
from onespike.errors import (
    ConfigError,
    CorruptFileError,
    MissingFileError,
    ModelSourceError,
    OnespikeError,
    ShapeError,
)
from onespike.evaluate import (
    SNNEvaluation,
    agreement,
    evaluate_snn,
    smallest_steps,
    summarize,
    ttfs_diagnostics,
)
from onespike.graph import Graph
from onespike.hardware import (
    ARCHITECTURES,
    TECHNOLOGIES,
    AcceleratorConfig,
    HardwareReport,
    Workload,
    loihi_estimate,
    plot_energy_breakdown,
    profile,
)
from onespike.hardware import run as run_hardware
from onespike.io import save_model
from onespike.metrics import ENERGY_MODELS
from onespike.models import MODELS, ModelSpec, build_model
from onespike.network import SpikingNetwork
from onespike.normalize import normalize
from onespike.optimize import optimize_for_ttfs, restore_ttfs_aware, save_ttfs_aware
from onespike.report import (
    fine_tuning_problems,
    record_path,
    run_name,
    save_run_record,
    write_report,
)
from onespike.simulate import simulate
from onespike.sources import ModelSource, check_json_args, load_module, model_source
from onespike.stdb import STDBConfig, finetune_stdb, load_hybrid, save_hybrid
from onespike.tracing import extract
from onespike.train import TrainConfig, environment, evaluate, train

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

# Epochs that bring each dataset's models near their usual accuracy on a laptop CPU.
DEFAULT_EPOCHS = {"digits": 30, "mnist": 8, "fashion-mnist": 12, "cifar10": 30}
CALIBRATION_SAMPLES = 5000
# Share of the training split that ``train`` holds out (seeded by --seed) and never trains on;
# --target-accuracy chooses T on exactly these images, as recorded in model.json.
VALIDATION_FRACTION = 0.1
TEST_VALIDATION_FRACTION = 0.5  # --validation-from test: the share of the test set T is chosen on
HYBRID_CALIBRATION_SAMPLES = 256


_CPU = torch.device("cpu")


@dataclass
class _Runtime:
    """What ``--threads``, ``--device`` and ``--quiet`` chose for the command running now."""

    device: torch.device = _CPU
    quiet: bool = False
    max_steps: int = MAX_STEPS


_RUNTIME = _Runtime()


def _parse_device(text: str | None) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` (default: ``cuda`` when available), checked before work."""
    if text is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise click.BadParameter(
            f"{text!r} is not a device; use cpu, cuda or cuda:N", param_hint="--device"
        ) from None
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise click.BadParameter(
            f"onespike runs on cpu or cuda, not {device.type}; use cpu, cuda or cuda:N",
            param_hint="--device",
        )
    if not torch.cuda.is_available():
        raise click.BadParameter(
            f"{text}: this torch ({torch.__version__}) sees no CUDA device; use --device cpu, "
            "or a CUDA build of torch on a machine with a GPU",
            param_hint="--device",
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise click.BadParameter(
            f"{text}: there are {count} CUDA device(s), numbered 0 to {count - 1}",
            param_hint="--device",
        )
    return device


def _runtime_options(func: F) -> F:
    """``--threads``, ``--device`` and ``--quiet``, applied before the command runs."""

    @click.option(
        "--threads",
        type=click.IntRange(min=1),
        default=None,
        help="torch threads (torch.set_num_threads; default: torch's own choice).",
    )
    @click.option(
        "--device",
        "device_name",
        default=None,
        metavar="cpu|cuda|cuda:N",
        help="Where the model and the simulations run (default: cuda when available, else cpu).",
    )
    @click.option("--quiet", is_flag=True, help="No progress bars or stage lines; results only.")
    @click.option(
        "--max-steps",
        type=click.IntRange(min=1),
        default=MAX_STEPS,
        show_default=True,
        help="The largest T accepted (a bound against typing slips; raise it to run longer).",
    )
    @functools.wraps(func)
    def wrapper(
        *args: Any,
        threads: int | None,
        device_name: str | None,
        quiet: bool,
        max_steps: int,
        **kwargs: Any,
    ) -> Any:
        device = _parse_device(device_name)
        if threads is not None:
            torch.set_num_threads(threads)
        previous = (_RUNTIME.device, _RUNTIME.quiet, _RUNTIME.max_steps)
        _RUNTIME.device, _RUNTIME.quiet, _RUNTIME.max_steps = device, quiet, max_steps
        try:
            return func(*args, **kwargs)
        finally:
            _RUNTIME.device, _RUNTIME.quiet, _RUNTIME.max_steps = previous

    return wrapper  # type: ignore[return-value]


def _note(message: str) -> None:
    """A stage line on stderr, unless ``--quiet``."""
    if not _RUNTIME.quiet:
        click.echo(message, err=True)


def _friendly_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except OnespikeError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper  # type: ignore[return-value]


def _data_options(func: F) -> F:
    func = click.option(
        "--dataset",
        type=click.Choice(DATASETS),
        default="digits",
        show_default=True,
        help="Dataset name.",
    )(func)
    func = click.option(
        "--data-dir",
        type=click.Path(path_type=Path),
        default=None,
        help="Directory holding the dataset (else $ONESPIKE_DATA, the cache).",
    )(func)
    func = click.option(
        "--download",
        is_flag=True,
        help="Download the dataset into the user cache if it is missing.",
    )(func)
    return func


class _Positive(click.ParamType):
    """A finite float > 0 (click's FloatRange lets NaN through)."""

    name = "float"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(number) and number > 0):
            self.fail(f"{value!r} is not a finite number > 0", param, ctx)
        return number


_POSITIVE = _Positive()


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Refuse NaN and infinities in a ranged float option."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx, param)
    return value


def _model_options(func: F) -> F:
    func = click.option(
        "--model",
        "model_name",
        type=click.Choice(sorted(MODELS)),
        default="mlp",
        show_default=True,
        help="Architecture to train.",
    )(func)
    func = click.option(
        "--epochs",
        type=click.IntRange(min=1),
        default=None,
        help="Training epochs (default depends on the dataset).",
    )(func)
    func = click.option("--lr", type=_POSITIVE, default=1e-3, show_default=True)(func)
    func = click.option("--batch-size", type=click.IntRange(min=1), default=128, show_default=True)(
        func
    )
    func = click.option("--seed", type=int, default=0, show_default=True)(func)
    func = click.option(
        "--binary",
        is_flag=True,
        help="Train with binary hidden weights (sign(W) x alpha per channel; first and last "
        "layers full precision).",
    )(func)
    return func


def _trained_model_options(func: F) -> F:
    """``--seed`` and ``--binary`` of a command that works on a trained model
    (``evaluate``, ``hardware``, ``export``): they describe the rate conversion, not training."""
    func = click.option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help="Rate: seed of the Poisson input and of the dither offsets.",
    )(func)
    func = click.option(
        "--binary",
        is_flag=True,
        help="Rate: the model's hidden weights are binary (trained with onespike train "
        "--binary): store them as synapses of weight +-1, the scale folded into thresholds.",
    )(func)
    return func


@dataclass(frozen=True)
class _ModelFile:
    """What ``--model-file``, ``--weights`` and ``--model-args`` named, checked on parsing."""

    source: ModelSource
    weights: Path | None

    @property
    def trains(self) -> bool:
        """A ``file.py:NAME`` without weights: onespike trains it as it trains its own."""
        return self.source.kind == "python" and self.weights is None

    @property
    def directory(self) -> Path | None:
        """The onespike model directory holding this model's extras (hybrid network)."""
        path = self.weights if self.source.kind == "python" else self.source.path
        if path is None:
            return None
        return path if path.is_dir() else path.parent


# Options that only matter when onespike trains the model itself.
_TRAINING_OPTIONS = ("model_name", "epochs", "lr", "batch_size")


def _model_file_options(
    func: F | None = None,
    *,
    training: tuple[str, ...] = _TRAINING_OPTIONS,
    required: bool = False,
) -> Any:
    """``--model-file``, ``--weights`` and ``--model-args``, parsed into one ``model_file``;
    the ``training`` options are refused when the model is loaded rather than trained.

    With ``required``, the command works on a trained model only (``evaluate``, ``hardware``
    and ``export``): ``--model-file`` must be given, and a ``file.py:NAME`` needs ``--weights``.
    """
    if func is None:
        return functools.partial(_model_file_options, training=training, required=required)

    @functools.wraps(func)
    def wrapper(
        *args: Any,
        model_file: str | None,
        weights: Path | None,
        model_args: str | None,
        **kwargs: Any,
    ) -> Any:
        try:
            parsed = _parse_model_file(model_file, weights, model_args)
        except OnespikeError as exc:
            raise click.UsageError(f"{type(exc).__name__}: {exc}") from exc
        if required and parsed is not None and parsed.trains:
            command = click.get_current_context().info_name
            raise click.UsageError(
                f"{command} works on a trained model, and --model-file {model_file} names "
                "code to train: give its trained weights with --weights, or train it first "
                f"(onespike train --model-file {model_file} --out DIR, then --weights DIR/model)"
            )
        if parsed is not None and parsed.trains and "model_name" in kwargs and _given("model_name"):
            raise click.UsageError(
                f"--model names a built-in architecture, but --model-file {model_file} gives "
                "the architecture to train; drop one of them"
            )
        if parsed is not None and not parsed.trains:
            context = click.get_current_context()
            given = [
                name
                for name in training
                if name in kwargs
                and context.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
            ]
            if given:
                flags = ", ".join(
                    "--" + ("model" if n == "model_name" else n.replace("_", "-")) for n in given
                )
                raise click.UsageError(
                    f"{flags} configure training, but --model-file {model_file} gives a trained "
                    "model; drop them (or give a file.py:NAME without --weights to train it)"
                )
        return func(*args, model_file=parsed, **kwargs)

    options = [
        click.option(
            "--model-file",
            type=str,
            required=required,  # no default: click 8.5 takes default=None as given
            help=(
                "The trained model: an onespike model directory (onespike train --out DIR "
                "writes DIR/model), its .safetensors, an ONNX file (model.onnx), or your own "
                "code as path/to/file.py:NAME with --weights (an nn.Module class or a "
                "function returning one; see --model-args)."
                if required
                else "The model to use instead of training one: an onespike model directory "
                "(or its .safetensors), an ONNX file (model.onnx), or your own code as "
                "path/to/file.py:NAME (an nn.Module class or a function returning one; see "
                "--weights and --model-args)."
            ),
        ),
        click.option(
            "--weights",
            type=click.Path(path_type=Path),
            default=None,
            help="For --model-file file.py:NAME: its state dict (.safetensors, a .pt/.pth "
            "state dict, read with weights_only=True, or an onespike model directory)."
            + ("" if required else " Without it, the model is trained first."),
        ),
        click.option(
            "--model-args",
            type=str,
            default=None,
            help="For --model-file file.py:NAME: keyword arguments of NAME as a JSON object, "
            "e.g. '{\"num_classes\": 10}'.",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _parse_model_file(
    model_file: str | None, weights: Path | None, model_args: str | None
) -> _ModelFile | None:
    if model_file is None:
        if weights is not None or model_args is not None:
            raise ModelSourceError(
                "--weights and --model-args describe a --model-file path/to/file.py:NAME; give "
                "--model-file too"
            )
        return None
    args = None if model_args is None else check_json_args(model_args)
    source = model_source(model_file, args)
    if weights is not None and source.kind != "python":
        raise ModelSourceError(
            f"--weights applies to --model-file file.py:NAME; {model_file} carries its weights"
        )
    if weights is not None and not weights.exists():
        raise MissingFileError(f"weights file {weights} does not exist")
    return _ModelFile(source, weights)


_percentile_option = click.option(
    "--percentile",
    type=click.FloatRange(0, 100, min_open=True),
    callback=_finite,
    default=99.99,
    show_default=True,
    help="Activation percentile used for normalisation (100 = max).",
)
_limit_option = click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Evaluate only the first N test images.",
)


def _load_splits(
    dataset: str, data_dir: Path | None, download: bool, limit: int | None = None
) -> tuple[Dataset, Dataset]:
    _note(f"loading {dataset} ...")
    train_ds = load_dataset(dataset, "train", data_dir=data_dir, download=download)
    test_ds = load_dataset(dataset, "test", data_dir=data_dir, download=download, limit=limit)
    return train_ds, test_ds


def _train_model(
    train_ds: Dataset,
    test_ds: Dataset,
    *,
    model_name: str,
    epochs: int | None,
    lr: float,
    batch_size: int,
    seed: int,
    binary: bool,
    out: Path,
    source: ModelSource | None = None,
) -> tuple[torch.nn.Module, float, ModelSpec | ModelSource, dict[str, Any]]:
    """Train a model on ``train_ds`` less a held-out validation split; return it, its test
    accuracy, its spec and the split's record (as saved in ``model.json``)."""
    torch.manual_seed(seed)
    input_shape = tuple(int(s) for s in train_ds.images.shape[1:])
    spec: ModelSpec | ModelSource
    if source is None:
        options = {"binary": True} if binary else {}
        model, spec = build_model(model_name, input_shape, train_ds.num_classes, **options)
    else:
        model, spec = source.build(), source
        model = binarize(model) if binary else model
        model_name = source.label
        _check_fits(model, {}, train_ds)
    config = TrainConfig(
        epochs=epochs if epochs is not None else DEFAULT_EPOCHS.get(train_ds.name, 10),
        batch_size=batch_size,
        lr=lr,
        seed=seed,
    )
    rest, validation = split_validation(train_ds, VALIDATION_FRACTION, seed=seed)
    split = _split_record(train_ds, validation, seed)
    _note(
        f"training {model_name} on {len(rest)} {train_ds.name} training images for "
        f"{config.epochs} epochs ({len(validation)} held out for validation, seed {seed})"
    )
    model = model.to(_RUNTIME.device)
    started = time.perf_counter()
    train(
        model,
        rest,
        config,
        val_ds=validation,
        checkpoint_dir=out / "checkpoints",
        progress=not _RUNTIME.quiet,
    )
    accuracy = evaluate(model, test_ds)
    _note(f"train: {config.epochs} epochs in {time.perf_counter() - started:.1f} s")
    save_model(
        out / "model",
        model,
        spec,
        dataset=train_ds.name,
        accuracy=accuracy,
        extra={"validation": split, "training": {**environment(), "seed": seed}},
    )
    _note(f"saved {out / 'model'} (test accuracy {accuracy:.4f})")
    return model, accuracy, spec, split


def _split_record(train_ds: Dataset, validation: Dataset, seed: int) -> dict[str, Any]:
    """How ``train`` held out ``validation`` from ``train_ds``: enough to draw it again."""
    return {
        "dataset": train_ds.name,
        "split": train_ds.split,
        "of": len(train_ds),
        "fraction": VALIDATION_FRACTION,
        "seed": seed,
        "size": len(validation),
        "how": "onespike.data.split_validation(train split, fraction, seed=seed)",
    }


def _recorded_split(meta: dict[str, Any]) -> dict[str, Any] | None:
    extra = meta.get("extra")
    split = extra.get("validation") if isinstance(extra, dict) else None
    return split if isinstance(split, dict) else None


def _held_out(meta: dict[str, Any], train_ds: Dataset) -> tuple[Dataset, Dataset | None]:
    """The training images a model was trained on and the validation images held out from
    them, as its model.json records; ``(train_ds, None)`` for a model that records no split.

    Raises:
        CorruptFileError: the record is malformed or does not draw the same split again.
    """
    split = _recorded_split(meta)
    if split is None:
        return train_ds, None
    fix = "train the model again with onespike train"
    try:
        fraction, seed, size, total = (
            float(split["fraction"]),
            int(split["seed"]),
            int(split["size"]),
            int(split["of"]),
        )
        dataset = str(split["dataset"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CorruptFileError(
            f"the validation record in model.json is malformed ({exc}); {fix}"
        ) from exc
    if dataset != train_ds.name or total != len(train_ds):
        raise CorruptFileError(
            f"model.json holds out {size} of {total} {dataset} training images, but the "
            f"{train_ds.name} training split has {len(train_ds)}; {fix}"
        )
    try:
        rest, validation = split_validation(train_ds, fraction, seed=seed)
    except ConfigError as exc:
        raise CorruptFileError(f"the validation record in model.json: {exc}; {fix}") from exc
    if len(validation) != size:
        raise CorruptFileError(
            f"model.json records {size} held-out images, the split draws {len(validation)}; {fix}"
        )
    return rest, validation


def _hybrid_calibration(train_ds: Dataset) -> torch.Tensor:
    """The training images that set a hybrid network's per-layer thresholds."""
    return train_ds.images[:HYBRID_CALIBRATION_SAMPLES]


def _calibrated_graph(model: torch.nn.Module, train_ds: Dataset, **normalize_options: Any) -> Graph:
    """The model's graph, normalised on the first ``CALIBRATION_SAMPLES`` training images
    (sliced from ``train_ds``, the images the model trained on, rather than read again)."""
    graph = extract(model, train_ds.images[:2])
    calibration = batches(train_ds.head(CALIBRATION_SAMPLES), 500)
    return normalize(graph, calibration, progress=not _RUNTIME.quiet, **normalize_options)


def _obtain_model(
    model_file: _ModelFile | None, train_ds: Dataset, test_ds: Dataset, **train_args: Any
) -> tuple[torch.nn.Module, float, ModelSpec | ModelSource, dict[str, Any]]:
    """Load ``model_file`` or train a new model; returns model, test accuracy, spec, metadata."""
    if model_file is None or model_file.trains:
        source = model_file.source if model_file is not None else None
        model, accuracy, trained, split = _train_model(
            train_ds, test_ds, source=source, **train_args
        )
        return (
            model.to(_RUNTIME.device),
            accuracy,
            trained,
            {"dataset": train_ds.name, "extra": {"validation": split}},
        )
    return _load_trained(model_file, train_ds, test_ds)


def _load_trained(
    model_file: _ModelFile, train_ds: Dataset, test_ds: Dataset
) -> tuple[torch.nn.Module, float, ModelSpec | ModelSource, dict[str, Any]]:
    """Load the trained model ``model_file`` names; returns model, test accuracy, spec,
    metadata."""
    model, meta = load_module(
        model_file.source,
        weights=model_file.weights,
        input_shape=tuple(int(s) for s in train_ds.images.shape[1:]),
    )
    _check_fits(model, meta, train_ds)
    spec: ModelSpec | ModelSource = (
        ModelSpec.from_json(meta["spec"])
        if model_file.source.kind == "onespike"
        else model_file.source
    )
    _note("evaluating the ANN on the test set ...")
    model = model.to(_RUNTIME.device)
    return model, evaluate(model, test_ds), spec, meta


def _check_fits(model: torch.nn.Module, meta: dict[str, Any], dataset: Dataset) -> None:
    """The model takes the dataset's samples and gives one output per class, before any work."""
    recorded = meta.get("dataset")
    if isinstance(recorded, str) and recorded != dataset.name:
        raise ShapeError(
            f"the model was trained on {recorded!r} (its model.json says so), not on "
            f"{dataset.name!r}; pass --dataset {recorded}"
        )
    sample = dataset.images[:1]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(sample.to(next((p.dtype for p in model.parameters()), sample.dtype)))
    except OnespikeError:
        raise
    except Exception as exc:  # the user's forward pass: any error means the shapes do not fit
        raise ShapeError(
            f"{type(model).__name__} fails on {dataset.name} samples of shape "
            f"{tuple(sample.shape[1:])}: {type(exc).__name__}: {exc}. Use a model built for "
            "this input, or another --dataset"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, dataset.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ShapeError(
            f"{type(model).__name__} gives outputs of shape {shape} for one sample; "
            f"{dataset.name} has {dataset.num_classes} classes, so it must give (1, "
            f"{dataset.num_classes}) logits (build it with num_classes={dataset.num_classes}, "
            "e.g. --model-args)"
        )


# Per-sample shape of each dataset, known without loading it.
_SAMPLE_SHAPES = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion-mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}


def _model_json(model_file: _ModelFile) -> tuple[Path, dict[str, Any]] | None:
    """The directory and ``model.json`` of an onespike model directory ``model_file`` names,
    read before the model is loaded; ``None`` for other sources (the loader names a missing or
    malformed file)."""
    source = model_file.source
    if source.kind == "onespike" and source.path is not None:
        directory = source.path if source.path.is_dir() else source.path.parent
    elif source.kind == "python" and model_file.weights is not None and model_file.weights.is_dir():
        directory = model_file.weights
    else:
        return None
    path = directory / "model.json"
    if not path.is_file():
        return None
    meta = read_json(path, "train the model again with onespike train")
    return (directory, meta) if isinstance(meta, dict) else None


def _check_model_record(model_file: _ModelFile | None, dataset: str) -> None:
    """Compare the dataset and input shape a model directory records with ``--dataset``,
    before any data is loaded (the forward check of :func:`_check_fits` follows the load)."""
    found = _model_json(model_file) if model_file is not None else None
    if found is None:
        return
    directory, meta = found
    recorded = meta.get("dataset")
    if isinstance(recorded, str) and recorded != dataset:
        raise ShapeError(
            f"the model in {directory} was trained on {recorded!r} (its model.json says so), "
            f"not on {dataset!r}; pass --dataset {recorded}"
        )
    spec = meta.get("spec")
    shape = spec.get("input_shape") if isinstance(spec, dict) else None
    expected = _SAMPLE_SHAPES.get(dataset)
    if isinstance(shape, list) and expected is not None and tuple(shape) != expected:
        raise ShapeError(
            f"the model in {directory} takes inputs of shape {tuple(shape)} (its model.json "
            f"says so); {dataset} samples have shape {expected}: pass the --dataset it was "
            "trained on"
        )


def _check_output_dir(
    directory: Path,
    option: str,
    *,
    dirs: tuple[str, ...] = (),
    files: tuple[str, ...] = (),
    create: bool = True,
) -> None:
    """Check, before any work, that ``directory`` can hold a command's outputs, and create it.

    Args:
        directory: what ``option`` names.
        option: the option's spelling, for the message.
        dirs: entries the command writes as directories inside ``directory``.
        files: entries it writes as files there.
        create: create ``directory`` (else only check that it could be).

    Raises:
        click.UsageError: a file stands where a directory goes (or the reverse), or the place
            cannot be written.
    """
    if directory.exists() and not directory.is_dir():
        raise click.UsageError(
            f"{option} {directory} is a file, but a directory is expected (its outputs go "
            "inside it); name a directory, or move the file"
        )
    for name in dirs:
        if (directory / name).exists() and not (directory / name).is_dir():
            raise click.UsageError(
                f"{directory / name} is a file, but {option} {directory} writes a directory "
                "there; move it, or name another directory"
            )
    for name in files:
        if (directory / name).is_dir():
            raise click.UsageError(
                f"{directory / name} is a directory, but {option} {directory} writes a file "
                "there; move it, or name another directory"
            )
    existing = directory
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise click.UsageError(
            f"{existing} is a file, so {option} {directory} cannot be created inside it; "
            "name another place"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise click.UsageError(
            f"{existing} is not writable, so {option} {directory} cannot be written; name a "
            "place you can write to"
        )
    if not create:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise click.UsageError(
            f"cannot write into {option} {directory} ({exc.strerror or exc}); name a place "
            "you can write to"
        ) from exc


def _check_output_file(path: Path, option: str, *, create: bool = True) -> None:
    """Check, before any work, that ``path`` can be written as a file, its directory created."""
    if path.is_dir():
        raise click.UsageError(
            f"{option} {path} is a directory, but a file is expected; name the file to "
            "write (e.g. inside that directory)"
        )
    _check_output_dir(path.parent, f"the directory of {option}", create=create)


_NO_SPLIT = (
    "--target-accuracy chooses T on images the model never trained on, but {model} records no "
    "held-out validation split (only models saved by onespike train record one); pass "
    "--validation-from test to choose T on a seeded half of the test set and score on the "
    "other half, or train the model with onespike train"
)


def _refuse_without_split(model_file: _ModelFile | None) -> None:
    """Refuse ``--target-accuracy`` from a recorded split a model does not record."""
    if model_file is None or model_file.trains:
        return  # trained here: train holds out and records the split
    found = _model_json(model_file)
    if found is None or _recorded_split(found[1]) is None:
        raise click.UsageError(_NO_SPLIT.format(model=f"--model-file {model_file.source.path}"))


def _model_label(spec: ModelSpec | ModelSource) -> str:
    """The model's name in tables and records."""
    return spec.name if isinstance(spec, ModelSpec) else spec.label


# ---- options that do not apply ----------------------------------------------------------------
# The methods each method-specific option applies to; an option absent here applies to every
# method of the commands that take it. An option the user gave (on the command line or from the
# environment, never a default) that does not apply is a usage error naming the conflict.
_APPLIES_TO: dict[str, tuple[str, ...]] = {
    "no_rectifier": ("ttfs",),
    "target_accuracy": ("ttfs",),
    "validation_from": ("ttfs",),
    "reset": ("rate",),
    "input_code": ("rate",),
    "threshold_scale": ("rate",),
    "initial_membrane": ("rate",),
    "dither": ("rate",),
    "early_exit": ("rate",),
    "leak": ("hybrid",),
    "threshold_init": ("hybrid",),
    "readout": ("hybrid",),
}
# One default method for every command that converts: rate coding, the method every NIR
# reader runs (Norse imports onespike's rate networks with identical spike counts, and none
# imports its TTFS pattern), so that a default export and a default run are the same network.
_DEFAULT_METHOD = "rate"
_METHOD_HELP = (
    "ttfs: one spike per neuron (exact TTFS conversion); rate: rate coding; hybrid: "
    "single-spike hybrid input. A TTFS-aware or STDB-fine-tuned model needs its own method "
    "named."
)
# On a command that works on a trained model, --seed and --binary describe the rate conversion.
_CONVERSION_APPLIES_TO = {**_APPLIES_TO, "seed": ("rate",), "binary": ("rate",)}


def _given(name: str) -> bool:
    """Whether the user gave option ``name`` (a default does not count)."""
    source = click.get_current_context().get_parameter_source(name)
    return source is not None and source not in (
        click.core.ParameterSource.DEFAULT,
        click.core.ParameterSource.DEFAULT_MAP,
    )


def _flag(name: str) -> str:
    """The command-line spelling of parameter ``name`` of the current command."""
    for param in click.get_current_context().command.params:
        if param.name == name and isinstance(param, _AliasedOption):
            return param.opts[0]  # the current spelling, not an old alias
        if param.name == name and isinstance(param, click.Option):
            return max(param.opts, key=len)
    return "--" + name.replace("_", "-")


def _refuse_given(names: list[str] | tuple[str, ...], why: str) -> None:
    """Refuse the options of ``names`` the user gave, as not applying because of ``why``."""
    given = [n for n in names if n in click.get_current_context().params and _given(n)]
    if given:
        flags = ", ".join(_flag(n) for n in given)
        verb = "does" if len(given) == 1 else "do"
        raise click.UsageError(f"{flags} {verb} not apply {why}; drop {flags}")


def _refuse_inapplicable(
    method: str,
    applies: dict[str, tuple[str, ...]] = _APPLIES_TO,
    spelling: dict[str, str] | None = None,
) -> None:
    """Refuse every given option that does not apply to ``method``, naming the conflict.

    Args:
        method: the method chosen.
        applies: option name -> the methods it applies to.
        spelling: method -> how the user chooses it (default ``--method NAME``).
    """
    context = click.get_current_context()

    def say(m: str) -> str:
        return (spelling or {}).get(m, f"--method {m}")

    given = [n for n, methods in applies.items() if n in context.params and method not in methods]
    given = [n for n in given if _given(n)]
    if not given:
        return
    chosen = say(method)
    if "method" in context.params and not _given("method") and method not in (spelling or {}):
        chosen += " (the default)"
    parts = [f"{_flag(n)} applies to {' or '.join(say(m) for m in applies[n])} only" for n in given]
    raise click.UsageError(
        f"{'; '.join(parts)}, not to {chosen}: drop "
        f"{', '.join(_flag(n) for n in given)} or choose the method "
        f"{'it is' if len(given) == 1 else 'they are'} for"
    )


def _refuse_for_loaded_model(model_file: _ModelFile | None, names: tuple[str, ...]) -> None:
    """Refuse options that only shape a model onespike trains when ``model_file`` gives a
    trained one."""
    if model_file is not None and not model_file.trains:
        _refuse_given(
            names,
            f"to the trained model --model-file {model_file.source.path} (they shape the "
            "training of a new model)",
        )


def _refuse_for_dataset(dataset: str) -> None:
    """``--data-dir`` and ``--download`` find files; the embedded digits set has none."""
    if dataset == "digits":
        _refuse_given(
            ("data_dir", "download"),
            "to --dataset digits, which is embedded (scikit-learn's bundled digits)",
        )


@click.group()
@click.version_option(package_name="onespike")
def main() -> None:
    """Convert trained PyTorch networks to spiking networks and count what they cost."""


@main.command("train")
@_data_options
@_model_options
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Run directory: checkpoints/, model/ (and model-ttfs/) are written here.",
)
@_model_file_options(training=("model_name", "epochs", "lr"))
@click.option(
    "--ttfs-aware",
    is_flag=True,
    help="Fine-tune through the exact function of the T-step TTFS network (needs --steps).",
)
@click.option(
    "--method",
    type=click.Choice(["ann", "hybrid"]),
    default="ann",
    show_default=True,
    help="hybrid: also convert to a single-spike hybrid network and fine-tune it with STDB "
    "(T from --steps, default 5); it is saved in model-hybrid/.",
)
@click.option(
    "--steps", type=click.IntRange(min=1), default=None, help="T of the network to fine-tune for."
)
@click.option("--finetune-epochs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--finetune-lr", type=_POSITIVE, default=2e-4, show_default=True)
@click.option(
    "--finetune-samples",
    type=click.IntRange(min=1),
    default=None,
    help="Hybrid: fine-tune on the first N training images only (default: all).",
)
@click.option(
    "--finetune-patience",
    type=click.IntRange(min=1),
    default=None,
    help="Hybrid: stop N epochs after the last better accuracy on the model's held-out "
    "images and keep that epoch's network (default: run every epoch, keep the last).",
)
@click.option(
    "--finetune-shift",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Hybrid: augment with random shifts of up to N pixels.",
)
@click.option(
    "--finetune-flip",
    is_flag=True,
    help="Hybrid: augment with random left-right mirroring (clothing, objects; not digits).",
)
@click.option(
    "--distill",
    type=click.FloatRange(min=0.0),
    default=0.0,
    show_default=True,
    help="Hybrid: weight of a distillation term that follows the ANN's softened outputs "
    "(0: the labels alone).",
)
@_runtime_options
@_friendly_errors
def train_command(
    dataset: str,
    data_dir: Path | None,
    download: bool,
    model_name: str,
    epochs: int | None,
    lr: float,
    batch_size: int,
    seed: int,
    binary: bool,
    out: Path,
    model_file: _ModelFile | None,
    ttfs_aware: bool,
    method: str,
    steps: int | None,
    finetune_epochs: int,
    finetune_lr: float,
    finetune_samples: int | None,
    finetune_patience: int | None,
    finetune_shift: int,
    finetune_flip: bool,
    distill: float,
) -> None:
    """Train a model and save it as model.safetensors + model.json (resumes if interrupted).

    With --method hybrid the STDB fine-tuning scores every epoch on the images the model was
    trained without (model.json's held-out split), and model.json records that curve."""
    _refuse_for_dataset(dataset)
    _refuse_inapplicable(
        "hybrid" if method == "hybrid" else "ttfs-aware" if ttfs_aware else "ann",
        {
            "steps": ("hybrid", "ttfs-aware"),
            "finetune_epochs": ("hybrid", "ttfs-aware"),
            "finetune_lr": ("hybrid", "ttfs-aware"),
            "finetune_samples": ("hybrid",),
            "finetune_patience": ("hybrid",),
            "finetune_shift": ("hybrid",),
            "finetune_flip": ("hybrid",),
            "distill": ("hybrid",),
        },
        {"ann": "plain training (--method ann)", "ttfs-aware": "--ttfs-aware"},
    )
    _refuse_for_loaded_model(model_file, ("binary",))
    if model_file is not None and model_file.source.kind == "onnx":
        raise click.UsageError(
            "train needs a PyTorch model: an ONNX file can be run, evaluated, exported and "
            "priced, but fine-tune the PyTorch model it was exported from (file.py:NAME)"
        )
    if model_file is not None and not model_file.trains and not ttfs_aware and method == "ann":
        raise click.UsageError(
            f"--model-file {model_file.source.path} is trained already: add --ttfs-aware "
            "--steps T or --method hybrid to fine-tune it, or give a file.py:NAME without "
            "--weights to train it"
        )
    if method == "hybrid":
        if ttfs_aware:
            raise click.UsageError("--ttfs-aware and --method hybrid fine-tune different networks")
        HybridConfig(max_steps=_RUNTIME.max_steps, steps=5 if steps is None else steps)
        stdb_config = STDBConfig(
            epochs=finetune_epochs,
            batch_size=batch_size,
            lr=finetune_lr,
            seed=seed,
            patience=finetune_patience,
            shift=finetune_shift,
            flip=finetune_flip,
            distill_weight=distill,
        )
    if ttfs_aware:
        if steps is None:
            raise click.UsageError("--ttfs-aware needs --steps T")
        TTFSConfig(max_steps=_RUNTIME.max_steps, steps=steps)
    _check_model_record(model_file, dataset)
    _check_output_dir(
        out,
        "--out",
        dirs=(
            "checkpoints",
            "model",
            "model-ttfs",
            "ttfs-checkpoints",
            "model-hybrid",
            "stdb-checkpoints",
        ),
    )
    train_ds, test_ds = _load_splits(dataset, data_dir, download)
    model, accuracy, spec, meta = _obtain_model(
        model_file,
        train_ds,
        test_ds,
        model_name=model_name,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        binary=binary,
        out=out,
    )
    # Calibrate (and fine-tune) on the images the model trained on, never on those it
    # held out (model.json records them).
    train_ds, held_out = _held_out(meta, train_ds)
    if method == "hybrid":
        if finetune_patience is not None and held_out is None:
            raise click.UsageError(
                "--finetune-patience stops on the model's held-out images, and this model's "
                "model.json records none (a model trained by onespike train has them): drop "
                "--finetune-patience, or train the model with onespike train"
            )
        _train_hybrid(
            model,
            spec,
            accuracy,
            train_ds,
            test_ds,
            steps=5 if steps is None else steps,
            config=stdb_config,
            samples=finetune_samples,
            out=out,
            split=_recorded_split(meta),
            validation=held_out,
        )
        return
    if not ttfs_aware:
        return
    assert steps is not None
    _note(
        f"TTFS-aware fine-tuning for T={steps}, {finetune_epochs} epochs"
        + (
            f"; scored every epoch on the model's {len(held_out)} held-out images"
            if held_out is not None
            else ""
        )
    )
    result = optimize_for_ttfs(
        model,
        train_ds,
        steps=steps,
        epochs=finetune_epochs,
        lr=finetune_lr,
        batch_size=batch_size,
        seed=seed,
        checkpoint_dir=out / "ttfs-checkpoints",
        val_data=held_out,
        progress=not _RUNTIME.quiet,
    )
    tuned_accuracy = evaluate(result.net, test_ds)
    training = {
        "history": result.history.history,  # loss, training and held-out accuracy per epoch
        "validation_images": 0 if held_out is None else len(held_out),
        "epochs": finetune_epochs,
        "lr": finetune_lr,
    }
    save_ttfs_aware(
        out / "model-ttfs",
        result.net,
        spec,
        dataset=dataset,
        accuracy=tuned_accuracy,
        training=training,
    )
    _note(
        f"saved {out / 'model-ttfs'}: test accuracy {accuracy:.4f} (float ANN) -> "
        f"{tuned_accuracy:.4f} (exact T={steps} function, which its TTFS network computes)"
    )


def _train_hybrid(
    model: torch.nn.Module,
    spec: ModelSpec | ModelSource,
    ann_accuracy: float,
    train_ds: Dataset,
    test_ds: Dataset,
    *,
    steps: int,
    config: STDBConfig,
    samples: int | None,
    out: Path,
    split: dict[str, Any] | None,
    validation: Dataset | None,
) -> None:
    """Convert to a hybrid network, fine-tune it with STDB (scored every epoch on
    ``validation``, the images the model was trained without, when it has them), save it in
    ``out/model-hybrid`` (recording the held-out ``split``)."""
    model.eval()
    graph = _calibrated_graph(model, train_ds)
    net = convert(
        graph,
        HybridConfig(max_steps=_RUNTIME.max_steps, steps=steps),
        calibration=_hybrid_calibration(train_ds),
    )
    converted = evaluate_snn(net, test_ds).accuracy
    data = train_ds
    if samples is not None:
        data = train_ds.head(samples)
    scored = (
        f"; scored every epoch on the model's {len(validation)} held-out images"
        if validation is not None
        else "; the model records no held-out images, so the curve is the training accuracy"
    )
    _note(
        f"STDB fine-tuning of the T={steps} hybrid network on {len(data)} images, "
        f"{config.epochs} epochs{scored}"
    )
    result = finetune_stdb(
        net,
        data,
        config,
        val_data=validation,
        checkpoint_dir=out / "stdb-checkpoints",
        teacher=model if config.distill_weight > 0 else None,
        progress=not _RUNTIME.quiet,
    )
    tuned = evaluate_snn(result.net, test_ds).accuracy
    info = {
        "steps": steps,
        "converted_snn_accuracy": converted,
        "snn_accuracy": tuned,
        "stdb": asdict(config),
        "samples": len(data),
        "validation_images": 0 if validation is None else len(validation),
        # loss, training and held-out accuracy after every epoch
        "history": result.history.history,
        "best_epoch": result.best_epoch,
    }
    directory = out / "model-hybrid"
    save_hybrid(directory, result.net, extra=info)  # the network first, model.json last
    save_model(
        directory,
        model,
        spec,
        dataset=train_ds.name,
        accuracy=ann_accuracy,
        extra={"hybrid": info, **({"validation": split} if split is not None else {})},
    )
    _note(
        f"saved {directory}: ANN {ann_accuracy:.4f}, hybrid SNN T={steps} {converted:.4f} "
        f"(converted) -> {tuned:.4f} (STDB)"
    )


def _check_method_for_model(method: str, meta: dict[str, Any]) -> None:
    """Refuse the default method for a model fine-tuned for another one: converting a
    TTFS-aware or STDB-fine-tuned model with the default would drop what it learned without
    the user asking."""
    extra = meta.get("extra") or {}
    if not isinstance(extra, dict) or _given("method"):
        return
    made_for = "ttfs" if "ttfs_aware" in extra else "hybrid" if "hybrid" in extra else None
    if made_for is not None and made_for != method:
        how = "TTFS-aware" if made_for == "ttfs" else "STDB-fine-tuned hybrid"
        raise click.UsageError(
            f"this model is {how} (fine-tuned for --method {made_for}), and the default method "
            f"is {method}: give --method {made_for} to run what it learned, or --method "
            f"{method} to convert its weights anyway"
        )


def _saved_hybrid(model_file: _ModelFile | None, meta: dict[str, Any]) -> Any:
    """The fine-tuned hybrid network saved beside ``model_file`` by ``train --method hybrid``."""
    extra = meta.get("extra") or {}
    directory = model_file.directory if model_file is not None else None
    if directory is None or not isinstance(extra, dict) or "hybrid" not in extra:
        return None
    return load_hybrid(directory)[0]


# Options that change the network a run simulates (or how it is priced), in the order a run's
# record and label name them: (parameter, how the name reads; None: "--flag" spelling).
_NETWORK_OPTIONS = (
    ("no_rectifier", "no rectifier"),
    ("percentile", None),
    ("reset", None),
    ("initial_membrane", None),
    ("input_code", None),
    ("threshold_scale", None),
    ("dither", None),
    ("binary", None),
    ("early_exit", None),
    ("leak", None),
    ("threshold_init", None),
    ("readout", None),
    ("energy_model", None),
)


def _run_options(
    model_file: _ModelFile | None, extras: dict[str, Any], out: Path
) -> list[tuple[str, Any]]:
    """``(name, value)`` of every option of the current command that changed the network from
    the defaults, for :func:`onespike.report.run_name` (the record's file and label).

    An option counts when its value differs from its default (a default given explicitly
    names the same network). The model counts when it is a file from outside the run
    directory: the run directory's own models (``out/model``, trained by an earlier run or by
    ``onespike train --out``, and ``model-ttfs``/``model-hybrid`` beside it) are the models
    its records compare; a TTFS-aware or STDB-fine-tuned model is named so. The seed counts
    where it draws the network's input (Poisson) or dither.
    """
    context = click.get_current_context()
    options_of = {p.name: p for p in context.command.params if isinstance(p, click.Option)}

    def changed(name: str) -> bool:
        if name not in context.params or name not in options_of:
            return False
        value = context.params[name]
        if isinstance(value, bool):  # the flags named here are all off by default
            return value
        return bool(value != options_of[name].get_default(context))

    options: list[tuple[str, Any]] = []
    if model_file is not None and not model_file.trains:
        source = model_file.source
        where = model_file.weights if model_file.weights is not None else source.path
        own = where.resolve().parent if where.is_file() else where.resolve()
        if own.parent != out.resolve() or not own.name.startswith("model"):
            named = f"{source.path}:{source.name}" if source.name else str(source.path)
            if model_file.weights is not None:
                named += f" ({model_file.weights})"
            options.append(("model file", named))
    if changed("seed") and (
        context.params.get("input_code") == "poisson" or context.params.get("dither") is not None
    ):
        options.append(("seed", context.params["seed"]))
    if "finetuned_ann_accuracy" in extras:
        options.append(("ttfs-aware", True))
    if extras.get("finetuned"):
        options.append(("stdb fine-tuned", True))
    for name, text in _NETWORK_OPTIONS:
        if changed(name):
            value = context.params[name]
            spelled = name.replace("_", " ")
            options.append((text or spelled, True if isinstance(value, bool) else value))
    return options


# What applies to a NIR file's network, which is spiking already (nothing to train or convert).
_IMPORTED_OPTIONS = (
    "dataset",
    "data_dir",
    "download",
    "model_file",
    "steps",
    "energy_model",
    "check_samples",
    "limit",
    "out",
)
_NIR_NEURONS = ("IF", "LIF", "CubaLIF", "LI")


def _run_imported(
    path: Path,
    *,
    dataset: str,
    data_dir: Path | None,
    download: bool,
    steps: int | None,
    energy_model: str,
    check_samples: int,
    limit: int | None,
    out: Path,
) -> None:
    """``onespike run --model-file FILE.nir``: simulate the network of a NIR file on the test
    set and write its results.json and run record, labelled by the file and its neurons."""
    context = click.get_current_context()
    _refuse_given(
        [name for name in context.params if name not in _IMPORTED_OPTIONS],
        f"to the spiking network of --model-file {path} (a NIR file is simulated as it stands: "
        "nothing is trained or converted; only the data options, --steps, --energy-model, "
        "--check-samples, --limit and --out apply)",
    )
    try:
        import nir
    except ImportError as exc:
        raise click.ClickException(
            "reading a NIR file needs the 'nir' extra: pip install 'onespike[nir]'"
        ) from exc
    from onespike.nir_io import MAX_VALUES, _read, from_nir

    _check_output_dir(out, "--out", dirs=("runs",), files=("results.json",))
    graph = _read(nir, path, MAX_VALUES)  # checked sizes; from_nir checks types and shapes
    own = "onespike_network" in (getattr(graph, "metadata", None) or {})
    run_steps = 64 if steps is None else steps
    if own:
        net = from_nir(graph)
        if steps is not None and steps != net.config.steps:
            raise click.UsageError(
                f"{path} is onespike's own export, converted for T={net.config.steps}; drop "
                "--steps (or export again with --steps)"
            )
        run_steps = net.config.steps
    else:
        net = from_nir(
            graph,
            config=RateConfig(
                max_steps=_RUNTIME.max_steps, steps=run_steps, reset="zero", initial_membrane=0.0
            ),
        )
    neurons = sorted({type(n).__name__ for n in graph.nodes.values()} & set(_NIR_NEURONS))
    _, test_ds = _load_splits(dataset, data_dir, download, limit)
    images = test_ds.images
    if tuple(images.shape[1:]) != tuple(net.input_shape):
        if images[0].numel() != math.prod(net.input_shape):
            raise ShapeError(
                f"{path} takes inputs of shape {tuple(net.input_shape)}, {dataset} images are "
                f"{tuple(images.shape[1:])}; pass the dataset the network was built for"
            )
        _note(
            f"feeding {dataset} images {tuple(images.shape[1:])} as {tuple(net.input_shape)} "
            "(the file's input shape, same size)"
        )
        test_ds = replace(test_ds, images=images.reshape(len(images), *net.input_shape))
    _note(f"simulating {path} ({', '.join(neurons) or 'no'} neurons), T={run_steps}")
    evaluation = evaluate_snn(net, test_ds, progress=not _RUNTIME.quiet)
    row = summarize(
        dataset=dataset,
        model=path.name,
        method="nir",
        steps=run_steps,
        ann_accuracy=None,
        evaluation=evaluation,
        ann_graph=None,
        energy_model=energy_model,
    )
    row["nir_file"] = str(path)
    row["neurons"] = neurons
    row["stepped_check"] = agreement(net, test_ds.images[: max(1, check_samples)])
    if evaluation.step_correct is not None:
        row["accuracy_by_steps"] = evaluation.accuracy_by_steps()
    options: list[tuple[str, Any]] = [("file", str(path)), ("neurons", "+".join(neurons) or "none")]
    announce = _save_results(out, row, net, evaluation, None, test_ds, options)
    click.echo(
        f"{path.name} on {dataset}: SNN accuracy {100 * row['snn_accuracy']:.2f} %, "
        f"{row['spikes_per_neuron']:.3f} spikes per neuron, {row['synops']:,.0f} synops and "
        f"{row['snn_energy_pj'] / 1e3:,.1f} nJ ({row['energy_model']}) per inference"
    )
    announce()


@main.command("run")
@_data_options
@_model_options
@_model_file_options
@click.option(
    "--method",
    type=click.Choice(["ttfs", "rate", "hybrid"]),
    default=_DEFAULT_METHOD,
    show_default=True,
    help=_METHOD_HELP,
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="T: levels of the TTFS code (default 16, or the T a TTFS-aware model was tuned for); "
    "time steps of a rate code (default 64) or of the hybrid code (default 5, or the T a "
    "hybrid model was fine-tuned for).",
)
@click.option(
    "--leak", type=float, default=1.0, show_default=True, help="Hybrid: membrane decay per step."
)
@click.option(
    "--threshold-init",
    type=float,
    default=None,
    help="Hybrid: multiplies the per-layer thresholds calibrated on 256 training images "
    "(default 1).",
)
@click.option(
    "--readout",
    type=click.Choice(["membrane", "first_spike"]),
    default="membrane",
    show_default=True,
    help="Hybrid: class from the output membrane or from the earliest output spike.",
)
@click.option(
    "--reset",
    type=click.Choice(["subtract", "zero"]),
    default="subtract",
    show_default=True,
    help="Rate: reset by subtraction or to zero.",
)
@click.option(
    "--input-code",
    type=click.Choice(["analog", "poisson"]),
    default="analog",
    show_default=True,
    help="Rate: constant analog current into the first layer, or Poisson spikes.",
)
@click.option(
    "--threshold-scale",
    type=float,
    default=1.0,
    show_default=True,
    help="Rate: factor on the balanced thresholds (below 1: lower latency).",
)
@click.option(
    "--initial-membrane",
    type=float,
    default=0.5,
    show_default=True,
    help="Rate: membranes start at this fraction of the threshold.",
)
@click.option(
    "--dither",
    type=float,
    default=None,
    help="Rate: seeded fixed offsets, uniform in [-DITHER, DITHER], on the initial membranes "
    "of the layers the input drives (default: 0.15 on convolutions, none on dense layers; "
    "see docs/rate.md).",
)
@click.option(
    "--early-exit",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Rate: stop a sample once its prediction held for this many steps (0: off).",
)
@click.option(
    "--target-accuracy",
    type=click.FloatRange(0, 1, min_open=True),
    callback=_finite,
    default=None,
    help="Pick the smallest T whose SNN reaches this accuracy on held-out images: the "
    "validation split `onespike train` held out and recorded in model.json (see "
    "--validation-from for a model without one).",
)
@click.option(
    "--validation-from",
    type=click.Choice(["recorded", "test"]),
    default="recorded",
    show_default=True,
    help="With --target-accuracy: the held-out images T is chosen on. recorded: the "
    "validation split in the model's model.json (the model never trained on it); test: a "
    "seeded half of the test set (by --seed), the SNN and the ANN then scored on the other "
    "half only.",
)
@click.option("--no-rectifier", is_flag=True, help="Leave zero-valued neurons silent.")
@_percentile_option
@click.option(
    "--energy-model", type=click.Choice(sorted(ENERGY_MODELS)), default="45nm", show_default=True
)
@click.option(
    "--check-samples",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Test samples also run through the stepped reference simulator.",
)
@_limit_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/latest"),
    show_default=True,
    help="Run directory for the model and results.json.",
)
@_runtime_options
@_friendly_errors
def run_command(
    dataset: str,
    data_dir: Path | None,
    download: bool,
    model_name: str,
    epochs: int | None,
    lr: float,
    batch_size: int,
    seed: int,
    model_file: _ModelFile | None,
    binary: bool,
    method: str,
    steps: int | None,
    leak: float,
    threshold_init: float | None,
    readout: str,
    reset: str,
    input_code: str,
    threshold_scale: float,
    initial_membrane: float,
    dither: float | None,
    early_exit: int,
    target_accuracy: float | None,
    validation_from: str,
    no_rectifier: bool,
    percentile: float,
    energy_model: str,
    check_samples: int,
    limit: int | None,
    out: Path,
) -> None:
    """Train (or load), convert, simulate and compare a spiking network with its ANN.

    With --model-file FILE.nir: simulate the spiking network a NIR file holds (from onespike
    or another tool) and record it beside the converted runs."""
    _refuse_for_dataset(dataset)
    if model_file is not None and model_file.source.path.suffix.lower() == ".nir":
        _run_imported(
            model_file.source.path,
            dataset=dataset,
            data_dir=data_dir,
            download=download,
            steps=steps,
            energy_model=energy_model,
            check_samples=check_samples,
            limit=limit,
            out=out,
        )
        return
    _refuse_inapplicable(method)
    if target_accuracy is None:
        _refuse_given(
            ("validation_from",), "without --target-accuracy (it names the images T is chosen on)"
        )
    if method != "rate":
        _refuse_for_loaded_model(model_file, ("binary",))
    if method != "rate" and not (target_accuracy is not None and validation_from == "test"):
        _refuse_for_loaded_model(model_file, ("seed",))
    if target_accuracy is not None and validation_from == "recorded":
        _refuse_without_split(model_file)
    method_config = functools.partial(
        _spiking_config,
        method,
        no_rectifier=no_rectifier,
        leak=leak,
        threshold_init=threshold_init,
        readout=readout,
        reset=reset,
        input_code=input_code,
        threshold_scale=threshold_scale,
        initial_membrane=initial_membrane,
        dither=dither,
        binary=binary,
        early_exit=early_exit,
        seed=seed,
    )
    method_config(16 if steps is None else steps)  # fail on a bad option before any training
    _check_model_record(model_file, dataset)
    _check_output_dir(out, "--out", dirs=("model", "checkpoints", "runs"), files=("results.json",))
    train_ds, test_ds = _load_splits(dataset, data_dir, download, limit)
    chosen_on: Dataset | None = None
    if target_accuracy is not None and validation_from == "test":
        # T is chosen on one seeded part of the test set; everything is scored on the rest.
        test_ds, chosen_on = split_validation(test_ds, TEST_VALIDATION_FRACTION, seed=seed)
        _note(
            f"choosing T on {len(chosen_on)} test images (seed {seed}); scoring on the other "
            f"{len(test_ds)}"
        )
    model, ann_accuracy, spec, meta = _obtain_model(
        model_file,
        train_ds,
        test_ds,
        model_name=model_name,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        binary=binary,
        out=out,
    )
    # Calibrate (and fine-tune) on the images the model trained on, never on those it
    # held out (model.json records them).
    train_ds, held_out = _held_out(meta, train_ds)
    if validation_from == "recorded":
        chosen_on = held_out
        validation_record: dict[str, Any] = {"from": "recorded", **(_recorded_split(meta) or {})}
    else:
        validation_record = {
            "from": "test",
            "fraction": TEST_VALIDATION_FRACTION,
            "seed": seed,
            "size": 0 if chosen_on is None else len(chosen_on),
            "scored_on": len(test_ds),
        }
    started = time.perf_counter()

    def choose_steps(graph: Graph) -> tuple[int, dict[str, Any]]:
        """The smallest T whose accuracy on the held-out images reaches ``target_accuracy``."""
        assert target_accuracy is not None
        if chosen_on is None:  # refused before any work; kept for a malformed record
            raise click.UsageError(_NO_SPLIT.format(model="this model"))
        validation = chosen_on
        chosen, tried = smallest_steps(
            graph, validation, target_accuracy, rectifier=not no_rectifier
        )
        for t, acc in tried:
            _note(f"  T={t}: validation accuracy {acc:.4f}")
        if chosen is None:
            raise click.ClickException(
                f"no T up to {tried[-1][0]} reaches {target_accuracy:.4f} on the validation "
                "split; lower the target or fine-tune with onespike train --ttfs-aware"
            )
        return chosen, {
            "target_accuracy": target_accuracy,
            "validation": validation_record,
            "validation_accuracy_by_steps": dict(tried),
        }

    net, graph, steps, extras = _evaluation_network(
        model,
        meta,
        model_file,
        train_ds,
        test_ds,
        method=method,
        steps=steps,
        readout=readout,
        percentile=percentile,
        make_config=method_config,
        choose_steps=None if target_accuracy is None else choose_steps,
    )
    _note(f"converted in {time.perf_counter() - started:.2f} s; simulating")
    evaluation = evaluate_snn(net, test_ds, progress=not _RUNTIME.quiet)
    row = summarize(
        dataset=dataset,
        model=_model_label(spec),
        method=method,
        steps=steps,
        ann_accuracy=ann_accuracy,
        evaluation=evaluation,
        ann_graph=graph,
        energy_model=energy_model,
    )
    row.update(extras)
    row["stepped_check"] = agreement(net, test_ds.images[: max(1, check_samples)])
    if method == "ttfs":
        row["layers"] = [asdict(d) for d in ttfs_diagnostics(net, test_ds.images[:500])]
    if evaluation.step_correct is not None:
        row["accuracy_by_steps"] = evaluation.accuracy_by_steps()
    options = _run_options(model_file, extras, out)
    announce = _save_results(out, row, net, evaluation, graph, test_ds, options)
    _print_table(row)
    announce()


def _save_results(
    out: Path,
    row: dict[str, Any],
    net: SpikingNetwork,
    evaluation: SNNEvaluation,
    ann_graph: Graph | None,
    test_ds: Dataset,
    options: list[tuple[str, Any]],
) -> Callable[[], None]:
    """Write ``results.json`` and the run's report record (named by ``options``); returns
    what prints where they went, to be called after the results table."""
    atomic_write_json(out / "results.json", row)
    method, steps = str(row["method"]), int(row["steps"])
    stem, run_label = run_name(method, steps, options)
    replaced = record_path(out, method, steps, stem).exists()
    record = save_run_record(
        out,
        row,
        net=net,
        evaluation=evaluation,
        ann_graph=ann_graph,
        sample=test_ds.images[:1],
        label=int(test_ds.labels[0]),
        options=options,
    )

    def announce() -> None:
        _note(f"results written to {out / 'results.json'}")
        _note(
            f"report data of {run_label!r} written to {record}"
            + (" (replacing the record of an identical earlier run)" if replaced else "")
            + f" (draw it: onespike report {out})"
        )

    return announce


def _print_table(row: dict[str, Any]) -> None:
    lines = [
        ("dataset / model", f"{row['dataset']} / {row['model']}"),
        ("method, T", f"{row['method']}, T={row['steps']}"),
        ("ANN accuracy", f"{100 * row['ann_accuracy']:.2f} %"),
        *(
            [("fine-tuned ANN (exact)", f"{100 * row['finetuned_ann_accuracy']:.2f} %")]
            if "finetuned_ann_accuracy" in row
            else []
        ),
        ("SNN accuracy", f"{100 * row['snn_accuracy']:.2f} %"),
        ("spikes per neuron", f"{row['spikes_per_neuron']:.3f}"),
        (
            "synaptic ops vs ANN MACs",
            f"{row['synops']:,.0f} vs {row['ann_macs']:,.0f} "
            f"({row['synops'] / row['ann_macs']:.2f}x)",
        ),
        (
            f"energy vs ANN ({row['energy_model']}, {row.get('energy_counts', 'compute only')})",
            f"{row['snn_energy_pj'] / 1e3:,.1f} nJ vs {row['ann_energy_pj'] / 1e3:,.1f} nJ "
            f"({row['energy_ratio_vs_ann']:.3f}x)",
        ),
        ("latency", f"{row['latency_steps']} time steps (mean {row['mean_latency_steps']:.1f})"),
        *(
            [
                (
                    "decision (first output spike)",
                    f"mean {row['decision_steps_mean']:.1f}, p99 {row['decision_steps_p99']:g}, "
                    f"max {row['decision_steps_max']:g} time steps",
                )
            ]
            if row.get("decision_steps_mean") is not None
            else []
        ),
        (
            "early spikes (values clipped)",
            f"{100 * row['early_spike_fraction']:.3f} % of neuron values",
        ),
        (
            "stepped == closed form",
            f"{100 * row['stepped_check']['identical_spikes']:.2f} % of neurons spike alike on "
            f"{row['stepped_check']['samples']} samples",
        ),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key:<{width}}  {value}")


@main.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="HTML file to write (default RUN_DIR/report/report.html; the PNGs go to RUN_DIR/report/).",
)
@_friendly_errors
def report_command(run_dir: Path, out: Path | None) -> None:
    """Write one self-contained HTML page comparing every method run into RUN_DIR."""
    if run_dir.is_dir():  # else write_report names the missing run directory
        _check_output_dir(run_dir / "report", "the report directory", create=False)
        if out is not None:
            _check_output_file(out, "--out", create=False)
    try:
        path = write_report(run_dir, out)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"report written to {path}")


# ---- onespike evaluate: the test set sharded across torchrun processes ----------------------
# The method options of `run`, shared as the same click Option objects so that both commands
# keep the same names, defaults and help.
_RUN_METHOD_OPTIONS = (
    "method",
    "steps",
    "leak",
    "threshold_init",
    "readout",
    "reset",
    "input_code",
    "threshold_scale",
    "initial_membrane",
    "dither",
    "early_exit",
    "no_rectifier",
    "energy_model",
    "check_samples",
)


def _options_of(
    source: click.Command, names: tuple[str, ...]
) -> Callable[[click.Command], click.Command]:
    """Give a command the options ``names`` of ``source`` (the same objects, defined once)."""

    def decorate(command: click.Command) -> click.Command:
        shared = [param for param in source.params if param.name in names]
        missing = sorted(set(names) - {param.name for param in shared if param.name})
        if missing:
            raise RuntimeError(f"command {source.name!r} has no options {missing}")
        command.params.extend(shared)
        return command

    return decorate


def _spiking_config(
    method: str,
    steps: int,
    *,
    no_rectifier: bool,
    leak: float,
    threshold_init: float | None,
    readout: str,
    reset: str,
    input_code: str,
    threshold_scale: float,
    initial_membrane: float,
    binary: bool,
    early_exit: int,
    dither: float | None = None,
    seed: int = 0,
) -> TTFSConfig | RateConfig | HybridConfig:
    """The config of ``--method`` with T = ``steps`` from the options of ``run``."""
    if method == "ttfs":
        return TTFSConfig(max_steps=_RUNTIME.max_steps, steps=steps, rectifier=not no_rectifier)
    if method == "hybrid":
        initial: dict[str, Any] = (
            {} if threshold_init is None else {"threshold_scale": threshold_init}
        )
        return HybridConfig(
            max_steps=_RUNTIME.max_steps,
            steps=steps,
            leak=leak,
            readout=readout,  # type: ignore[arg-type]
            **initial,
        )
    return RateConfig(
        max_steps=_RUNTIME.max_steps,
        steps=steps,
        reset=reset,  # type: ignore[arg-type]
        input=input_code,  # type: ignore[arg-type]
        threshold_scale=threshold_scale,
        initial_membrane=initial_membrane,
        dither=dither,
        binary=binary,
        early_exit=early_exit,
        seed=seed,
    )


def _evaluation_network(
    model: torch.nn.Module,
    meta: dict[str, Any],
    model_file: _ModelFile | None,
    train_ds: Dataset,
    test_ds: Dataset,
    *,
    method: str,
    steps: int | None,
    readout: str,
    percentile: float,
    make_config: Callable[[int], Any],
    choose_steps: Callable[[Graph], tuple[int, dict[str, Any]]] | None = None,
    measure_finetuned: bool = True,
) -> tuple[SpikingNetwork, Graph, int, dict[str, Any]]:
    """The network ``run``, ``evaluate`` and ``export`` convert (TTFS-aware and fine-tuned
    hybrid models included).

    Args:
        choose_steps: picks T (and extra record fields) from the normalised graph when the
            user asked for a target accuracy instead of a T.
        measure_finetuned: evaluate a TTFS-aware model's ANN on the test set for the record
            (``export`` writes no record and skips that pass).

    Returns:
        The network, the ANN graph, T, and extra fields for the results record.
    """
    _check_method_for_model(method, meta)
    model.eval()
    extras: dict[str, Any] = {}
    aware = restore_ttfs_aware(model, meta) if method == "ttfs" else None
    if aware is not None:
        _refuse_given(
            ("percentile",),
            f"to a TTFS-aware model (its scales were learned for T={aware.steps}; nothing is "
            "calibrated)",
        )
        if choose_steps is not None:
            raise click.UsageError(
                f"this model was fine-tuned for T={aware.steps}; --target-accuracy chooses T "
                "for plain conversion (fine-tune at the chosen T with onespike train)"
            )
        if steps is not None and steps != aware.steps:
            _note(f"warning: model fine-tuned for T={aware.steps}, run at T={steps}")
        run_steps = aware.steps if steps is None else steps
        graph = aware.to_graph(train_ds.images[:2])
        if measure_finetuned:
            extras["finetuned_ann_accuracy"] = evaluate(aware, test_ds)
        curve = _fine_tuning_record(meta, "ttfs_aware")
        if curve is not None:
            extras["fine_tuning"] = curve
    else:
        graph = _calibrated_graph(model, train_ds, percentile=percentile)
        if choose_steps is not None:
            steps, chosen = choose_steps(graph)
            extras.update(chosen)
        run_steps = {"ttfs": 16, "rate": 64}.get(method, 5) if steps is None else steps
    tuned = _saved_hybrid(model_file, meta) if method == "hybrid" else None
    if tuned is None:
        config = make_config(run_steps)
        calibration = _hybrid_calibration(train_ds) if isinstance(config, HybridConfig) else None
        return convert(graph, config, calibration=calibration), graph, run_steps, extras
    assert isinstance(tuned.config, HybridConfig)
    _refuse_given(
        ("percentile", "leak", "threshold_init"),
        "to a fine-tuned hybrid network (STDB learned its thresholds and leak)",
    )
    run_steps = tuned.config.steps if steps is None else steps
    if run_steps != tuned.config.steps:
        _note(f"warning: network fine-tuned for T={tuned.config.steps}, run at T={run_steps}")
    hybrid = replace(tuned.config, steps=run_steps, readout=readout)  # type: ignore[arg-type]
    extras["finetuned"] = True
    curve = _fine_tuning_record(meta, "hybrid")
    if curve is not None:
        extras["fine_tuning"] = curve
    return replace(tuned, config=hybrid), graph, run_steps, extras


def _fine_tuning_record(meta: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The fine-tuning run that made a model (``model.json``'s ``extra.hybrid``: STDB, or
    ``extra.ttfs_aware``: TTFS-aware), with its per-epoch history, for the run's record and
    the report's curve; ``None`` where model.json records no history (a model saved before
    onespike recorded it), with a warning where the one it records is unreadable."""
    extra = meta.get("extra") or {}
    info = extra.get(kind) if isinstance(extra, dict) else None
    if not isinstance(info, dict) or "history" not in info:
        return None
    how = "STDB" if kind == "hybrid" else "TTFS-aware"
    if fine_tuning_problems(info):
        command = "--method hybrid" if kind == "hybrid" else "--ttfs-aware --steps T"
        _note(
            f"warning: model.json's {how} history (per-epoch loss and accuracy) is unreadable, "
            f"so the report draws no fine-tuning curve; fine-tune again with onespike train "
            f"{command} to record one"
        )
        return None
    keep = ("epoch", "loss", "train_accuracy", "val_accuracy", "seconds")
    found = info.get("stdb", info)  # STDB keeps its options apart, TTFS-aware beside them
    stdb: dict[str, Any] = found if isinstance(found, dict) else {}
    return {
        "method": how,
        "steps": info.get("steps"),
        "samples": info.get("samples"),
        "validation_images": info.get("validation_images", 0),
        "converted_snn_accuracy": info.get("converted_snn_accuracy"),
        "best_epoch": info.get("best_epoch"),
        "options": {k: stdb[k] for k in ("epochs", "lr", "patience", "shift", "flip") if k in stdb}
        | ({"distill_weight": stdb["distill_weight"]} if stdb.get("distill_weight") else {}),
        "history": [{k: h.get(k) for k in keep} for h in info["history"]],
    }


@_options_of(run_command, _RUN_METHOD_OPTIONS)
@main.command("evaluate")
@_data_options
@_trained_model_options
@_model_file_options(required=True)
@_percentile_option
@_limit_option
@click.option(
    "--eval-batch-size",
    type=click.IntRange(min=1),
    default=500,
    show_default=True,
    help="Test images simulated at once; under torchrun each process takes a contiguous run "
    "of whole batches.",
)
@click.option(
    "--backend",
    type=click.Choice(distributed.BACKENDS),
    default="gloo",
    show_default=True,
    help="torch.distributed backend under torchrun: gloo (CPU) or nccl (one GPU per process).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/evaluate"),
    show_default=True,
    help="Directory for results.json (written by rank 0 only).",
)
@_runtime_options
@_friendly_errors
def evaluate_command(
    dataset: str,
    data_dir: Path | None,
    download: bool,
    seed: int,
    binary: bool,
    model_file: _ModelFile,
    percentile: float,
    limit: int | None,
    eval_batch_size: int,
    backend: str,
    out: Path,
    method: str,
    steps: int | None,
    leak: float,
    threshold_init: float | None,
    readout: str,
    reset: str,
    input_code: str,
    threshold_scale: float,
    initial_membrane: float,
    dither: float | None,
    early_exit: int,
    no_rectifier: bool,
    energy_model: str,
    check_samples: int,
) -> None:
    """Evaluate a spiking network on the test set, sharded across torchrun's processes.

    torchrun --nproc_per_node N -m onespike evaluate --model-file DIR/model ... gives the
    same results.json as one process: every count is summed exactly over the shards.
    """
    rank, world_size, _ = distributed.environment()
    _refuse_for_dataset(dataset)
    _refuse_inapplicable(method, _CONVERSION_APPLIES_TO)
    if world_size == 1:
        _refuse_given(("backend",), "outside torchrun (WORLD_SIZE is 1: no process group)")
    if eval_batch_size < 1:
        raise click.UsageError(f"--eval-batch-size must be >= 1, got {eval_batch_size}")
    make_config = functools.partial(
        _spiking_config,
        method,
        no_rectifier=no_rectifier,
        leak=leak,
        threshold_init=threshold_init,
        readout=readout,
        reset=reset,
        input_code=input_code,
        threshold_scale=threshold_scale,
        initial_membrane=initial_membrane,
        dither=dither,
        binary=binary,
        early_exit=early_exit,
        seed=seed,
    )
    make_config(16 if steps is None else steps)  # fail on a bad option before any loading
    _check_model_record(model_file, dataset)
    _check_output_dir(out, "--out", files=("results.json",), create=rank == 0)
    with distributed.process_group(backend) as context:  # type: ignore[arg-type]
        # Rank 0 loads the model, calibrates and converts once; the others receive the network.
        if context.is_main:
            try:
                train_ds, test_ds = _load_splits(dataset, data_dir, download, limit)
                model, ann_accuracy, spec, meta = _load_trained(model_file, train_ds, test_ds)
                # Calibrate (and fine-tune) on the images the model trained on, never on those it
                # held out (model.json records them).
                train_ds, _ = _held_out(meta, train_ds)
                net, graph, run_steps, extras = _evaluation_network(
                    model,
                    meta,
                    model_file,
                    train_ds,
                    test_ds,
                    method=method,
                    steps=steps,
                    readout=readout,
                    percentile=percentile,
                    make_config=make_config,
                )
            except Exception:
                distributed.broadcast_object(None, context)  # release the waiting ranks
                raise
            distributed.broadcast_object(net, context)
            _note(
                f"simulating on {context.world_size} process(es), {context.backend or 'no'} "
                "process group"
            )
        else:
            received = distributed.broadcast_object(None, context)
            if received is None:
                raise click.ClickException("rank 0 could not prepare the network (see its error)")
            net = received
            test_ds = load_dataset(dataset, "test", data_dir=data_dir, limit=limit)
        evaluation = distributed.evaluate_sharded(
            net,
            test_ds,
            context,
            batch_size=eval_batch_size,
            progress=context.is_main and not _RUNTIME.quiet,
        )
        if not context.is_main:
            return
    row = summarize(
        dataset=dataset,
        model=_model_label(spec),
        method=method,
        steps=run_steps,
        ann_accuracy=ann_accuracy,
        evaluation=evaluation,
        ann_graph=graph,
        energy_model=energy_model,
    )
    row.update(extras)
    row["stepped_check"] = agreement(net, test_ds.images[: max(1, check_samples)])
    if method == "ttfs":
        row["layers"] = [asdict(d) for d in ttfs_diagnostics(net, test_ds.images[:500])]
    if evaluation.step_correct is not None:
        row["accuracy_by_steps"] = evaluation.accuracy_by_steps()
    row["correct"] = evaluation.correct
    row["total_steps"] = evaluation.total_steps
    row["ops"] = evaluation.ops.to_dict()
    row["processes"] = {"world_size": context.world_size, "backend": context.backend}
    atomic_write_json(out / "results.json", row)
    _print_table(row)
    _note(f"results written to {out / 'results.json'}")


@main.command("hardware")
@_data_options
@_trained_model_options
@_model_file_options(required=True)
@click.option(
    "--method",
    type=click.Choice(["ttfs", "rate"]),
    default=_DEFAULT_METHOD,
    show_default=True,
    help="ttfs: one spike per neuron (exact TTFS conversion); rate: rate coding. A "
    "TTFS-aware model needs --method ttfs named.",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="T (default 16 for TTFS, 64 for rate coding).",
)
@click.option("--no-rectifier", is_flag=True, help="TTFS: leave zero-valued neurons silent.")
@_percentile_option
@click.option(
    "--architecture",
    type=click.Choice(ARCHITECTURES),
    default=None,
    help="Accelerator model (default: ttfs-accelerator for TTFS, rate-core for rate coding; "
    "dense-ann runs the ANN itself).",
)
@click.option("--pes", type=int, default=16, show_default=True, help="PEs per core.")
@click.option("--cores", type=int, default=4, show_default=True)
@click.option("--clock-mhz", type=_POSITIVE, default=200.0, show_default=True)
@click.option(
    "--mapping", type=click.Choice(["tiled", "pipelined"]), default="tiled", show_default=True
)
@click.option("--tech", type=click.Choice(sorted(TECHNOLOGIES)), default="45nm", show_default=True)
@_limit_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/hardware"),
    show_default=True,
    help="Run directory for hardware.json and hardware.png.",
)
@_runtime_options
@_friendly_errors
def hardware_command(
    dataset: str,
    data_dir: Path | None,
    download: bool,
    seed: int,
    binary: bool,
    model_file: _ModelFile,
    method: str,
    steps: int | None,
    no_rectifier: bool,
    percentile: float,
    architecture: str | None,
    pes: int,
    cores: int,
    clock_mhz: float,
    mapping: str,
    tech: str,
    limit: int | None,
    out: Path,
) -> None:
    """Cycles, latency, energy and power of one inference on an accelerator model."""
    _refuse_for_dataset(dataset)
    if architecture == "dense-ann":
        _refuse_given(
            ("method", "steps", "no_rectifier", "seed", "binary"),
            "to --architecture dense-ann, which runs the ANN itself",
        )
    else:
        _refuse_inapplicable(
            method, {"no_rectifier": ("ttfs",), "seed": ("rate",), "binary": ("rate",)}
        )
    if architecture == "ttfs-accelerator" and method != "ttfs":
        raise click.UsageError(
            f"--architecture ttfs-accelerator runs single-spike TTFS networks, not --method "
            f"{method}; use --architecture rate-core (or in-memory) for a rate-coded network"
        )
    config = AcceleratorConfig(
        pes=pes,
        cores=cores,
        clock_hz=clock_mhz * 1e6,
        mapping=mapping,  # type: ignore[arg-type]
        tech=TECHNOLOGIES[tech],
    )
    ann = architecture == "dense-ann"
    spiking: Any = (
        TTFSConfig(
            max_steps=_RUNTIME.max_steps,
            steps=16 if steps is None else steps,
            rectifier=not no_rectifier,
        )
        if method == "ttfs"
        else RateConfig(
            max_steps=_RUNTIME.max_steps,
            steps=64 if steps is None else steps,
            binary=binary,
            seed=seed,
        )
    )
    _check_model_record(model_file, dataset)
    _check_output_dir(out, "--out", files=("hardware.json", "hardware.png"))
    train_ds, test_ds = _load_splits(dataset, data_dir, download, limit)
    model, ann_accuracy, spec, meta = _load_trained(model_file, train_ds, test_ds)
    # Calibrate (and fine-tune) on the images the model trained on, never on those it
    # held out (model.json records them).
    train_ds, _ = _held_out(meta, train_ds)
    model.eval()
    if not ann:
        _check_method_for_model(method, meta)
    aware = restore_ttfs_aware(model, meta) if method == "ttfs" and not ann else None
    if aware is not None:
        _refuse_given(
            ("percentile",),
            f"to a TTFS-aware model (its scales were learned for T={aware.steps}; nothing is "
            "calibrated)",
        )
        spiking = TTFSConfig(
            max_steps=_RUNTIME.max_steps,
            steps=aware.steps if steps is None else steps,
            rectifier=not no_rectifier,
        )
        graph = aware.to_graph(train_ds.images[:2])
    else:
        graph = _calibrated_graph(model, train_ds, percentile=percentile)
    record: dict[str, Any] = {
        "dataset": dataset,
        "model": _model_label(spec),
        "ann_accuracy": ann_accuracy,
    }
    if ann:
        workload = profile(graph, len(test_ds))
        record["snn_accuracy"] = ann_accuracy  # the dense array runs the ANN itself
    else:
        calibration = _hybrid_calibration(train_ds) if isinstance(spiking, HybridConfig) else None
        net = convert(graph, spiking, calibration=calibration)
        correct, total = 0, None
        for images, labels in batches(test_ds, 500):
            result = simulate(net, images)
            correct += int((result.predictions == labels).sum())
            part = profile(net, result)
            total = part if total is None else total + part
        assert isinstance(total, Workload)
        workload = total
        record["snn_accuracy"] = correct / workload.samples
        record["loihi_estimate_j"] = loihi_estimate(workload).dynamic_pj * 1e-12
    report = run_hardware(workload, config=config, architecture=architecture)
    record = {**report.to_dict(), **record}
    atomic_write_json(out / "hardware.json", record)
    _print_hardware(report, record)
    try:
        plot_energy_breakdown(
            [report], out / "hardware.png", title=f"{dataset} / {_model_label(spec)}"
        )
    except ImportError as exc:
        _note(f"no plot written: {exc}")
    _note(f"results written to {out / 'hardware.json'}")


def _print_hardware(report: HardwareReport, record: dict[str, Any]) -> None:
    config = report.config
    lines = [
        ("dataset / model", f"{record['dataset']} / {record['model']}"),
        ("architecture", f"{report.architecture} ({report.method}), tech {config.tech.name}"),
        ("PEs x cores, mapping", f"{config.pes} x {config.cores}, {config.mapping}"),
        ("accuracy", f"{100 * record['snn_accuracy']:.2f} %"),
        ("latency", f"{report.latency_s * 1e6:,.2f} us ({report.latency_cycles:,.0f} cycles)"),
        ("throughput", f"{report.throughput_per_s:,.0f} inferences/s"),
        ("energy per inference", f"{report.energy_j * 1e6:,.4f} uJ"),
        *(
            (f"  {c.replace('_', ' ')}", f"{report.component_pj(c) * 1e-6:,.4f} uJ")
            for c in ("compute", "weight_reads", "state_reads_writes", "neuron_updates")
        ),
        ("  spike routing", f"{report.component_pj('spike_routing') * 1e-6:,.4f} uJ"),
        ("  static (leakage)", f"{report.static_pj * 1e-6:,.4f} uJ"),
        ("average power", f"{report.average_power_w * 1e3:,.2f} mW"),
        ("energy-delay product", f"{report.edp_js:.3e} J s"),
        ("PE utilisation", f"{100 * report.utilisation:.1f} %, bottleneck {report.bottleneck}"),
    ]
    if "loihi_estimate_j" in record:
        lines.append(("Loihi-style estimate", f"{record['loihi_estimate_j'] * 1e6:,.4f} uJ"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key:<{width}}  {value}")


# export ---------------------------------------------------------------------------------------
class _AliasedOption(click.Option):
    """An option whose later spellings are old names kept working: ``--help`` and the error
    messages name only the first (current) one."""

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        kept = self.opts
        self.opts = kept[:1]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = kept

    def get_error_hint(self, ctx: click.Context | None) -> str:
        return f"'{self.opts[0]}'"


@main.command("export")
@_data_options
@_trained_model_options
@_model_file_options(required=True)
@click.option(
    "--format",
    "export_format",
    type=click.Choice(["nir"]),
    default="nir",
    show_default=True,
    help="File format: NIR, the Neuromorphic Intermediate Representation (HDF5).",
)
@click.option(
    "--method",
    type=click.Choice(["ttfs", "rate", "hybrid"]),
    default=_DEFAULT_METHOD,
    show_default=True,
    help=_METHOD_HELP,
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="T (default 16 for TTFS, 64 for rate coding, 5 for hybrid, or the T a fine-tuned "
    "model was made for).",
)
@click.option(
    "--reset",
    type=click.Choice(["zero", "subtract"]),
    default="zero",
    show_default=True,
    help="Rate: reset to zero (NIR's IF neuron); reset by subtraction has no NIR form.",
)
@click.option(
    "--input-code",
    type=click.Choice(["analog", "poisson"]),
    default="analog",
    show_default=True,
    help="Rate: constant analog current into the first layer, or Poisson spikes.",
)
@click.option("--threshold-scale", type=float, default=1.0, show_default=True)
@click.option(
    "--initial-membrane",
    type=float,
    default=0.0,
    show_default=True,
    help="Rate: starting membrane as a fraction of the threshold (NIR has no initial state: 0).",
)
@click.option("--no-rectifier", is_flag=True, help="TTFS: leave zero-valued neurons silent.")
@click.option("--leak", type=float, default=1.0, show_default=True, help="Hybrid: decay per step.")
@click.option("--threshold-init", type=float, default=None, help="Hybrid: initial threshold.")
@click.option(
    "--readout",
    type=click.Choice(["membrane", "first_spike"]),
    default="membrane",
    show_default=True,
    help="Hybrid: class from the output membrane or from the earliest output spike.",
)
@_percentile_option
@_limit_option
@click.option(
    "--out",
    "--output",
    "output",
    cls=_AliasedOption,
    type=click.Path(path_type=Path),
    default=Path("runs/export/network.nir"),
    show_default=True,
    help="The file to write (atomically).",
)
@_runtime_options
@_friendly_errors
def export_command(
    dataset: str,
    data_dir: Path | None,
    download: bool,
    seed: int,
    binary: bool,
    model_file: _ModelFile,
    export_format: str,
    method: str,
    steps: int | None,
    reset: str,
    input_code: str,
    threshold_scale: float,
    initial_membrane: float,
    no_rectifier: bool,
    leak: float,
    threshold_init: float | None,
    readout: str,
    percentile: float,
    limit: int | None,
    output: Path,
) -> None:
    """Convert a trained model and write the spiking network as a NIR file."""
    from onespike.nir_io import check_config, write_nir

    _refuse_for_dataset(dataset)
    _refuse_inapplicable(method, _CONVERSION_APPLIES_TO)
    method_config = functools.partial(
        _spiking_config,
        method,
        no_rectifier=no_rectifier,
        leak=leak,
        threshold_init=threshold_init,
        readout=readout,
        reset=reset,
        input_code=input_code,
        threshold_scale=threshold_scale,
        initial_membrane=initial_membrane,
        binary=binary,
        early_exit=0,
        seed=seed,
    )
    check_config(method_config(16 if steps is None else steps))  # refuse before any loading
    _check_model_record(model_file, dataset)
    _check_output_file(output, "--out")
    train_ds, test_ds = _load_splits(dataset, data_dir, download, limit)
    model, ann_accuracy, spec, meta = _load_trained(model_file, train_ds, test_ds)
    # Calibrate (and fine-tune) on the images the model trained on, never on those it
    # held out (model.json records them).
    train_ds, _ = _held_out(meta, train_ds)
    net, graph, _, _ = _evaluation_network(
        model,
        meta,
        model_file,
        train_ds,
        test_ds,
        method=method,
        steps=steps,
        readout=readout,
        percentile=percentile,
        make_config=method_config,
        measure_finetuned=False,
    )
    try:
        path = write_nir(output, net)
    except ImportError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"wrote {path} ({export_format}): {_model_label(spec)} on {dataset}, {method} with "
        f"T={net.config.steps}, {len(net.populations)} populations; ANN test accuracy "
        f"{ann_accuracy:.4f}"
    )
    click.echo(_export_accuracies(net, graph, test_ds))


def _export_accuracies(net: SpikingNetwork, graph: Graph, test_ds: Dataset) -> str:
    """The test accuracy of the exported network and, for a rate network, beside it that of
    the same conversion with ``onespike run --method rate``'s defaults for what NIR cannot
    hold (reset and starting membrane), on the same T, calibration and test images."""
    exported = evaluate_snn(net, test_ds).accuracy
    line = f"exported network (NIR-exact): SNN test accuracy {exported:.4f}"
    line += f" on {len(test_ds)} test images"
    config = net.config
    if not isinstance(config, RateConfig):
        return line
    run_defaults = {
        p.name: p.get_default(click.get_current_context())
        for p in run_command.params
        if p.name in ("reset", "initial_membrane")
    }
    default = replace(
        config,
        reset=run_defaults["reset"],  # type: ignore[arg-type]
        initial_membrane=float(run_defaults["initial_membrane"]),  # type: ignore[arg-type]
    )
    if default == config:
        return line + " (the same conversion as onespike run --method rate)"
    reference = evaluate_snn(convert(graph, default), test_ds).accuracy
    return (
        f"{line}; onespike run's rate conversion (reset {default.reset}, membranes from "
        f"{default.initial_membrane:g} x threshold, which NIR cannot hold): {reference:.4f} "
        f"(NIR's semantics: {100 * (exported - reference):+.2f} points)"
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
