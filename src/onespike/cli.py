"""The ``onespike`` command line: train, convert, simulate and report in one command.

``onespike run`` trains a model (or loads one with ``--model-file``), converts it, simulates
the whole test set with the closed-form simulator (checking a subset against the stepped
reference), and prints accuracy, spikes, synaptic operations, energy and latency against the
ANN. Errors are reported as one line naming the problem and the fix, with exit status 1.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import torch

from onespike._fs import atomic_write_json
from onespike.convert import TTFSConfig, convert
from onespike.data import DATASETS, Dataset, batches, load_dataset
from onespike.errors import OnespikeError
from onespike.evaluate import agreement, evaluate_snn, summarize
from onespike.graph import extract
from onespike.io import load_model, save_model
from onespike.metrics import ENERGY_MODELS
from onespike.models import MODELS, build_model
from onespike.normalize import normalize
from onespike.train import TrainConfig, evaluate, train

__all__ = ["main"]

F = TypeVar("F", bound=Callable[..., Any])

# Epochs that bring each dataset's models near their usual accuracy on a laptop CPU.
DEFAULT_EPOCHS = {"digits": 30, "mnist": 8, "fashion-mnist": 12, "cifar10": 30}
CALIBRATION_SAMPLES = 5000


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
        "--epochs", type=int, default=None, help="Training epochs (default depends on the dataset)."
    )(func)
    func = click.option("--lr", type=float, default=1e-3, show_default=True)(func)
    func = click.option("--batch-size", type=int, default=128, show_default=True)(func)
    func = click.option("--seed", type=int, default=0, show_default=True)(func)
    return func


def _load_splits(
    dataset: str, data_dir: Path | None, download: bool, limit: int | None = None
) -> tuple[Dataset, Dataset]:
    click.echo(f"loading {dataset} ...", err=True)
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
    out: Path,
) -> tuple[torch.nn.Module, float]:
    torch.manual_seed(seed)
    input_shape = tuple(int(s) for s in train_ds.images.shape[1:])
    model, spec = build_model(model_name, input_shape, train_ds.num_classes)
    config = TrainConfig(
        epochs=epochs if epochs is not None else DEFAULT_EPOCHS.get(train_ds.name, 10),
        batch_size=batch_size,
        lr=lr,
        seed=seed,
    )
    click.echo(f"training {model_name} on {train_ds.name} for {config.epochs} epochs", err=True)
    train(model, train_ds, config, val_ds=None, checkpoint_dir=out / "checkpoints")
    accuracy = evaluate(model, test_ds)
    save_model(out / "model", model, spec, dataset=train_ds.name, accuracy=accuracy)
    click.echo(f"saved {out / 'model'} (test accuracy {accuracy:.4f})", err=True)
    return model, accuracy


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
    help="Run directory: checkpoints/ and model/ are written here.",
)
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
    out: Path,
) -> None:
    """Train a model and save it as model.safetensors + model.json (resumes if interrupted)."""
    train_ds, test_ds = _load_splits(dataset, data_dir, download)
    _train_model(
        train_ds,
        test_ds,
        model_name=model_name,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        out=out,
    )


@main.command("run")
@_data_options
@_model_options
@click.option(
    "--model-file",
    type=click.Path(path_type=Path),
    default=None,
    help="Load this trained model (directory or .safetensors) instead of training.",
)
@click.option("--method", type=click.Choice(["ttfs"]), default="ttfs", show_default=True)
@click.option("--steps", type=int, default=16, show_default=True, help="T: levels of the code.")
@click.option("--no-rectifier", is_flag=True, help="Leave zero-valued neurons silent.")
@click.option(
    "--percentile",
    type=float,
    default=99.99,
    show_default=True,
    help="Activation percentile used for normalisation (100 = max).",
)
@click.option(
    "--energy-model", type=click.Choice(sorted(ENERGY_MODELS)), default="45nm", show_default=True
)
@click.option(
    "--check-samples",
    type=int,
    default=32,
    show_default=True,
    help="Test samples also run through the stepped reference simulator.",
)
@click.option("--limit", type=int, default=None, help="Evaluate only the first N test images.")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("runs/latest"),
    show_default=True,
    help="Run directory for the model and results.json.",
)
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
    model_file: Path | None,
    method: str,
    steps: int,
    no_rectifier: bool,
    percentile: float,
    energy_model: str,
    check_samples: int,
    limit: int | None,
    out: Path,
) -> None:
    """Train (or load), convert, simulate and compare a spiking network with its ANN."""
    config = TTFSConfig(steps=steps, rectifier=not no_rectifier)
    train_ds, test_ds = _load_splits(dataset, data_dir, download, limit)
    if model_file is not None:
        model, meta = load_model(model_file)
        model_name = str(meta.get("spec", {}).get("name", model_name))
        ann_accuracy = evaluate(model, test_ds)
    else:
        model, ann_accuracy = _train_model(
            train_ds,
            test_ds,
            model_name=model_name,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            out=out,
        )
    model.eval()
    started = time.perf_counter()
    graph = extract(model, train_ds.images[:2])
    calibration = load_dataset(dataset, "train", data_dir=data_dir, limit=CALIBRATION_SAMPLES)
    graph = normalize(graph, batches(calibration, 500), percentile=percentile)
    net = convert(graph, config)
    click.echo(f"converted in {time.perf_counter() - started:.2f} s; simulating", err=True)
    evaluation = evaluate_snn(net, test_ds, progress=True)
    check = agreement(net, test_ds.images[: max(1, check_samples)])
    row = summarize(
        dataset=dataset,
        model=model_name,
        method=method,
        steps=steps,
        ann_accuracy=ann_accuracy,
        evaluation=evaluation,
        ann_graph=graph,
        energy_model=energy_model,
    )
    row["stepped_check"] = check
    atomic_write_json(out / "results.json", row)
    _print_table(row)
    click.echo(f"results written to {out / 'results.json'}", err=True)


def _print_table(row: dict[str, Any]) -> None:
    lines = [
        ("dataset / model", f"{row['dataset']} / {row['model']}"),
        ("method, T", f"{row['method']}, T={row['steps']}"),
        ("ANN accuracy", f"{100 * row['ann_accuracy']:.2f} %"),
        ("SNN accuracy", f"{100 * row['snn_accuracy']:.2f} %"),
        ("spikes per neuron", f"{row['spikes_per_neuron']:.3f}"),
        (
            "synaptic ops vs ANN MACs",
            f"{row['synops']:,.0f} vs {row['ann_macs']:,.0f} "
            f"({row['synops'] / row['ann_macs']:.2f}x)",
        ),
        (
            f"energy vs ANN ({row['energy_model']})",
            f"{row['snn_energy_pj'] / 1e3:,.1f} nJ vs {row['ann_energy_pj'] / 1e3:,.1f} nJ "
            f"({row['energy_ratio_vs_ann']:.3f}x)",
        ),
        ("latency", f"{row['latency_steps']} time steps"),
        ("values clipped per sample", f"{row['clipped_per_sample']:.2f}"),
        (
            "stepped == closed form",
            f"{100 * row['stepped_check']['identical_spike_times']:.2f} % of spike times on "
            f"{row['stepped_check']['samples']} samples",
        ),
    ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        click.echo(f"{key:<{width}}  {value}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
