"""Sharded evaluation: shards, the exact reduction, and torchrun against one process."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from onespike.cli import main
from onespike.convert import HybridConfig, RateConfig, TTFSConfig, convert
from onespike.data import Dataset, batches, load_dataset
from onespike.distributed import (
    DistributedContext,
    combine_evaluations,
    environment,
    evaluate_sharded,
    process_group,
    shard,
    shard_range,
)
from onespike.errors import ConfigError
from onespike.evaluate import SNNEvaluation, evaluate_snn
from onespike.models import build_model
from onespike.network import SpikingNetwork
from onespike.normalize import normalize
from onespike.tracing import extract


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread, as every torchrun process has (OMP_NUM_THREADS=1)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _counts(evaluation: SNNEvaluation) -> tuple[Any, ...]:
    step_correct = evaluation.step_correct
    return (
        evaluation.correct,
        evaluation.samples,
        evaluation.ops,
        evaluation.steps,
        evaluation.clipped,
        evaluation.total_steps,
        None if step_correct is None else step_correct.tolist(),
    )


# ---- shards ------------------------------------------------------------------------------------


@pytest.mark.parametrize("samples", [0, 1, 63, 64, 65, 360, 1000])
@pytest.mark.parametrize("batch_size", [1, 64, 500])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_are_contiguous_whole_batches_covering_the_data(
    samples: int, batch_size: int, world_size: int
) -> None:
    ranges = [shard_range(samples, batch_size, r, world_size) for r in range(world_size)]
    assert ranges[0][0] == 0
    assert ranges[-1][1] == samples
    for (_, stop), (start, _) in itertools.pairwise(ranges):
        assert stop == start
    for start, stop in ranges:
        assert start % batch_size == 0
        assert stop == samples or stop % batch_size == 0
    per_rank = [-(-(stop - start) // batch_size) for start, stop in ranges]
    assert max(per_rank) - min(per_rank) <= 1  # balanced to one batch


def test_shard_range_by_hand() -> None:
    # 360 samples in batches of 64: 6 batches, the last of 40 samples.
    assert [shard_range(360, 64, r, 2) for r in range(2)] == [(0, 192), (192, 360)]
    assert [shard_range(360, 64, r, 4) for r in range(4)] == [
        (0, 64),
        (64, 192),
        (192, 256),
        (256, 360),
    ]
    assert [shard_range(100, 500, r, 3) for r in range(3)] == [(0, 0), (0, 0), (0, 100)]
    with pytest.raises(ConfigError):
        shard_range(10, 0, 0, 1)
    with pytest.raises(ConfigError):
        shard_range(10, 4, 2, 2)


# ---- the reduction -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_graph() -> tuple[Any, Dataset]:
    torch.manual_seed(0)
    train = load_dataset("digits", "train", limit=200)
    model, _ = build_model("mlp", (1, 8, 8), 10)
    model.eval()
    graph = normalize(extract(model, train.images[:2]), batches(train, 100))
    return graph, load_dataset("digits", "test", limit=150)


CONFIGS = [
    TTFSConfig(steps=6),
    RateConfig(steps=12),
    RateConfig(steps=12, early_exit=2),
    RateConfig(steps=8, input="poisson"),
    HybridConfig(steps=4),
]
CONFIG_IDS = ["ttfs", "rate", "rate-early-exit", "rate-poisson", "hybrid"]


@pytest.mark.parametrize("config", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("world_size", [2, 3, 7])
def test_evaluations_of_shards_combine_to_the_whole(
    digits_graph: tuple[Any, Dataset], config: Any, world_size: int
) -> None:
    graph, test = digits_graph
    net = convert(graph, config)
    whole = evaluate_snn(net, test, batch_size=32)  # 5 batches: 7 ranks leave two empty
    parts: list[SNNEvaluation | None] = []
    for rank in range(world_size):
        context = DistributedContext(rank, world_size, rank, backend="gloo")
        part = shard(test, 32, context)
        parts.append(evaluate_snn(net, part, batch_size=32) if len(part) else None)
    assert sum(p.samples for p in parts if p is not None) == len(test)
    combined = combine_evaluations(parts)
    assert _counts(combined) == _counts(whole)
    assert combined.accuracy == whole.accuracy
    assert combined.mean_latency_steps == whole.mean_latency_steps
    if whole.step_correct is not None:
        assert combined.accuracy_by_steps() == whole.accuracy_by_steps()


def test_combining_hand_made_counts(digits_graph: tuple[Any, Dataset]) -> None:
    graph, test = digits_graph
    net = convert(graph, RateConfig(steps=4))
    a = evaluate_snn(net, replace(test, images=test.images[:10], labels=test.labels[:10]))
    b = evaluate_snn(net, replace(test, images=test.images[10:13], labels=test.labels[10:13]))
    both = combine_evaluations([a, None, b])
    assert both.samples == 13
    assert both.correct == a.correct + b.correct
    assert both.total_steps == 4 * 13
    assert both.step_correct is not None
    assert a.step_correct is not None
    assert b.step_correct is not None
    assert both.step_correct.tolist() == (a.step_correct + b.step_correct).tolist()
    assert both.ops.total("synops") == a.ops.total("synops") + b.ops.total("synops")
    with pytest.raises(ConfigError, match="no shard"):
        combine_evaluations([None, None])
    ttfs = evaluate_snn(convert(graph, TTFSConfig(steps=4)), test)
    with pytest.raises(ConfigError):
        combine_evaluations([a, ttfs])


def test_evaluate_sharded_in_one_process_is_evaluate_snn(
    digits_graph: tuple[Any, Dataset],
) -> None:
    graph, test = digits_graph
    net: SpikingNetwork = convert(graph, RateConfig(steps=8, early_exit=2))
    with process_group(env={}) as context:
        assert context == DistributedContext()
        assert not torch.distributed.is_initialized()
        sharded = evaluate_sharded(net, test, context, batch_size=40)
    assert _counts(sharded) == _counts(evaluate_snn(net, test, batch_size=40))
    with pytest.raises(ConfigError):
        evaluate_sharded(net, replace(test, images=test.images[:0], labels=test.labels[:0]))


# ---- the environment ---------------------------------------------------------------------------


def test_environment_reads_torchrun_variables() -> None:
    assert environment({}) == (0, 1, 0)
    assert environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}) == (3, 4, 1)
    for bad in ({"WORLD_SIZE": "two"}, {"RANK": "2", "WORLD_SIZE": "2"}, {"WORLD_SIZE": "0"}):
        with pytest.raises(ConfigError):
            environment(bad)
    with (
        pytest.raises(ConfigError, match="MASTER_ADDR"),
        process_group(env={"RANK": "0", "WORLD_SIZE": "2"}),
    ):
        pass
    with (
        pytest.raises(ConfigError, match="unknown backend"),
        process_group(
            "mpi",  # type: ignore[arg-type]
            env={"RANK": "0", "WORLD_SIZE": "2"},
        ),
    ):
        pass
    with pytest.raises(ConfigError, match="process group"):
        DistributedContext(0, 2)


# ---- the command line, in one process and under torchrun ---------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model")
    args = ["train", "--dataset", "digits", "--epochs", "3", "--out", str(out)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out / "model"


def test_evaluate_needs_a_model_file_under_torchrun(tmp_path: Path) -> None:
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}
    result = CliRunner().invoke(main, ["evaluate", "--out", str(tmp_path)], env=env)
    assert result.exit_code == 2
    assert "--model-file" in result.output
    assert not list(tmp_path.iterdir())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


METHODS = {
    "ttfs": ["--method", "ttfs", "--steps", "6"],
    "rate": ["--method", "rate", "--steps", "12", "--input-code", "poisson", "--early-exit", "2"],
}


@pytest.mark.parametrize("method", sorted(METHODS))
def test_torchrun_equals_one_process(
    model_dir: Path, tmp_path: Path, method: str, one_thread: None
) -> None:
    # Batches of 64: the 360 test images make 6 batches, 3 per process.
    args = ["evaluate", "--model-file", str(model_dir), *METHODS[method]]
    args += ["--eval-batch-size", "64", "--check-samples", "4"]
    single = tmp_path / "single"
    result = CliRunner().invoke(main, [*args, "--out", str(single)], catch_exceptions=False)
    assert result.exit_code == 0, result.output

    sharded = tmp_path / "sharded"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(name, None)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launch += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    done = subprocess.run(
        [*launch, "-m", "onespike", *args, "--out", str(sharded)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [p.name for p in sharded.iterdir()] == ["results.json"]  # rank 1 writes nothing
    assert done.stdout.count("SNN accuracy") == 1  # rank 0 alone prints

    one = json.loads((single / "results.json").read_text())
    two = json.loads((sharded / "results.json").read_text())
    assert one.pop("processes") == {"world_size": 1, "backend": None}
    assert two.pop("processes") == {"world_size": 2, "backend": "gloo"}
    assert two["samples"] == 360
    assert two["snn_accuracy"] == one["snn_accuracy"]
    assert two["ops"]["layers"] == one["ops"]["layers"]
    assert two["ops"]["samples"] == 360
    if method == "rate":
        assert len(two["accuracy_by_steps"]) == 12
        assert two["accuracy_by_steps"] == one["accuracy_by_steps"]
        assert two["mean_latency_steps"] < 12  # early exit ran
    assert two == one
