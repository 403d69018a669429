"""Evaluation across processes: shard the test set, simulate each shard, reduce the counts.

Launch any script (or ``onespike evaluate``) with ``torchrun --nproc_per_node N``; torchrun
sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``, and
:func:`process_group` starts ``torch.distributed`` from them. Without those variables (or with
``WORLD_SIZE=1``) everything runs in the one process and no process group is created.

Sharding (onespike's choice): the dataset is cut into the batches that :func:`evaluate_snn`
simulates in a single process, batch ``k`` being samples ``[k B, (k + 1) B)``, and rank ``r``
of ``W`` takes the contiguous run of batches ``[floor(r K / W), floor((r + 1) K / W))`` of the
``K`` batches. A shard is therefore made of whole batches of the single-process run, so every
rank simulates exactly the batches that one process would: whatever may depend on the batch
(the Poisson input draws from a generator seeded once per batch; floating-point blocking of
batched products) is identical. A rank may receive no batch (``K < W``); it contributes
nothing.

Reduction: every count of an :class:`~onespike.evaluate.SNNEvaluation` is an integer sum over
samples: correct predictions, samples, time steps run, clipped values per population, every
field of every layer of the :class:`~onespike.metrics.OpsReport`, and correct predictions
after each time step. The ranks' partial evaluations are gathered with
``all_gather_object`` and summed in rank order on every rank (:func:`combine_evaluations`).
Integer sums are exact, so the totals equal the single-process ones, and the means (accuracy,
mean latency, counts per sample) are recomputed from them. ``steps`` (the latency of one
inference) is the same for every batch; the combined value is the largest. Objects rather
than a tensor ``all_reduce``: a rank without samples has no report to give the layout of the
counts, and the payload is a few integers per layer, so pickling costs nothing measurable.

Backends: ``gloo`` (the default) runs on CPU, where onespike's simulators compute. ``nccl``
carries the same collectives between GPUs; it needs CUDA and one GPU per process (process
``LOCAL_RANK`` uses ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import torch
import torch.distributed as dist

from onespike.data import Dataset
from onespike.errors import ConfigError
from onespike.evaluate import SNNEvaluation, evaluate_snn
from onespike.network import SpikingNetwork
from onespike.simulate import Method

__all__ = [
    "BACKENDS",
    "Backend",
    "DistributedContext",
    "broadcast_object",
    "combine_evaluations",
    "current_context",
    "environment",
    "evaluate_sharded",
    "gather_objects",
    "process_group",
    "shard",
    "shard_range",
]

Backend = Literal["gloo", "nccl"]
BACKENDS: tuple[Backend, ...] = ("gloo", "nccl")
"""Process-group backends :func:`process_group` accepts."""


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands among the processes of one run.

    Attributes:
        rank: this process's index, ``0 .. world_size - 1``.
        world_size: number of processes.
        local_rank: index of this process on its machine (its GPU under NCCL).
        backend: backend of the process group, or ``None`` when there is no group (one
            process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise ConfigError(f"world size must be >= 1, got {self.world_size}")
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(f"rank {self.rank} is outside 0 .. {self.world_size - 1}")
        if self.local_rank < 0:
            raise ConfigError(f"local rank must be >= 0, got {self.local_rank}")
        if self.world_size > 1 and self.backend is None:
            raise ConfigError(
                f"{self.world_size} processes need a process group; start one with "
                "onespike.distributed.process_group()"
            )

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the process that prints and writes results."""
        return self.rank == 0


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={text!r} is not an integer; launch with torchrun, "
            f"which sets it, or unset it to run in one process"
        ) from None


def environment(env: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """Read the rank, world size and local rank that torchrun sets.

    Args:
        env: the environment variables (default ``os.environ``).

    Returns:
        ``(rank, world_size, local_rank)``; ``(0, 1, 0)`` when ``WORLD_SIZE`` is unset.

    Raises:
        ConfigError: a variable is not an integer, or the rank lies outside the world.
    """
    env = os.environ if env is None else env
    world_size = _env_int(env, "WORLD_SIZE", 1)
    rank = _env_int(env, "RANK", 0)
    local_rank = _env_int(env, "LOCAL_RANK", rank)
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise ConfigError(
            f"RANK={rank}, WORLD_SIZE={world_size}, LOCAL_RANK={local_rank} do not describe a "
            "process of a run (need 0 <= RANK < WORLD_SIZE, LOCAL_RANK >= 0); launch with "
            "torchrun, which sets them"
        )
    return rank, world_size, local_rank


def current_context() -> DistributedContext:
    """The context of the process group already initialised, or of a single process."""
    if dist.is_available() and dist.is_initialized():
        _, _, local_rank = environment()
        return DistributedContext(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=local_rank,
            backend=str(dist.get_backend()),
        )
    return DistributedContext()


def _check_backend(backend: str, local_rank: int) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; install a build with it")
    if backend == "gloo" and not dist.is_gloo_available():
        raise ConfigError("this torch build has no gloo backend; install a build with it")
    if backend == "nccl":
        if not (torch.cuda.is_available() and dist.is_nccl_available()):
            raise ConfigError(
                "backend nccl needs CUDA GPUs and a torch build with NCCL; use --backend gloo "
                "on CPU"
            )
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"backend nccl: process with LOCAL_RANK={local_rank} has no GPU of its own "
                f"({torch.cuda.device_count()} visible); start at most one process per GPU or "
                "use --backend gloo"
            )


@contextmanager
def process_group(
    backend: Backend = "gloo", env: Mapping[str, str] | None = None
) -> Iterator[DistributedContext]:
    """Join the run's process group for the duration of a ``with`` block.

    With ``WORLD_SIZE`` unset or 1, yields a single-process context and creates no group.
    Otherwise starts ``torch.distributed`` from torchrun's variables (``env://``) and destroys
    the group on exit, error or not. A group that the caller already initialised is used as it
    is and left alive.

    Args:
        backend: ``"gloo"`` (CPU) or ``"nccl"`` (CUDA, one GPU per process).
        env: the environment variables (default ``os.environ``).

    Yields:
        This process's context.

    Raises:
        ConfigError: a malformed environment, an unknown backend, or NCCL without a GPU.
    """
    if dist.is_available() and dist.is_initialized():
        yield current_context()
        return
    env = os.environ if env is None else env
    rank, world_size, local_rank = environment(env)
    if world_size == 1:
        yield DistributedContext(local_rank=local_rank)
        return
    _check_backend(backend, local_rank)
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if missing:
        raise ConfigError(
            f"WORLD_SIZE={world_size} but {' and '.join(missing)} unset; launch with torchrun, "
            "which sets them"
        )
    if backend == "nccl":
        torch.cuda.set_device(local_rank)  # the collectives of this process use its own GPU
    dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size)
    try:
        yield DistributedContext(rank, world_size, local_rank, backend)
    finally:
        dist.destroy_process_group()


def shard_range(samples: int, batch_size: int, rank: int, world_size: int) -> tuple[int, int]:
    """The samples ``[start, stop)`` of rank ``rank``: a contiguous run of whole batches.

    Args:
        samples: size of the dataset.
        batch_size: samples per batch of the single-process run.
        rank: this process's index.
        world_size: number of processes.

    Returns:
        ``(start, stop)``; ``start`` is a multiple of ``batch_size``; empty (``start == stop``)
        when there are fewer batches than processes and this rank gets none.
    """
    if samples < 0 or batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(
            f"cannot shard {samples} samples in batches of {batch_size} for rank {rank} of "
            f"{world_size}"
        )
    batches = -(-samples // batch_size)
    first = rank * batches // world_size
    last = (rank + 1) * batches // world_size
    return min(first * batch_size, samples), min(last * batch_size, samples)


def shard(dataset: Dataset, batch_size: int, context: DistributedContext) -> Dataset:
    """This process's part of ``dataset`` (see :func:`shard_range`); views, no copies."""
    start, stop = shard_range(len(dataset), batch_size, context.rank, context.world_size)
    return replace(dataset, images=dataset.images[start:stop], labels=dataset.labels[start:stop])


def combine_evaluations(parts: Sequence[SNNEvaluation | None]) -> SNNEvaluation:
    """Sum the evaluations of disjoint shards into the evaluation of their union.

    Args:
        parts: one evaluation per shard, in shard order; ``None`` for an empty shard.

    Returns:
        The evaluation a single process gets on all shards together: integer counts summed,
        ``steps`` the largest.

    Raises:
        ConfigError: every shard is empty, or the parts come from different networks.
    """
    present = [part for part in parts if part is not None]
    if not present:
        raise ConfigError("no shard holds a sample: the dataset is empty")
    recorded = {part.step_correct is not None for part in present}
    if len(recorded) > 1:
        raise ConfigError("cannot combine evaluations with and without per-step predictions")
    clipped: dict[str, int] = {}
    for part in present:
        for name, count in part.clipped.items():
            clipped[name] = clipped.get(name, 0) + count
    step_correct = None
    if present[0].step_correct is not None:
        lengths = {int(part.step_correct.shape[0]) for part in present}  # type: ignore[union-attr]
        if len(lengths) > 1:
            raise ConfigError(f"cannot combine per-step counts of lengths {sorted(lengths)}")
        step_correct = functools.reduce(operator.add, (part.step_correct for part in present))
    return SNNEvaluation(
        correct=sum(part.correct for part in present),
        samples=sum(part.samples for part in present),
        ops=functools.reduce(operator.add, (part.ops for part in present)),
        steps=max(part.steps for part in present),
        clipped=clipped,
        total_steps=sum(part.total_steps for part in present),
        step_correct=step_correct,
    )


def gather_objects(obj: Any, context: DistributedContext) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` for one process)."""
    if context.world_size == 1:
        return [obj]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any, context: DistributedContext, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (the argument of other ranks is ignored)."""
    if context.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def evaluate_sharded(
    net: SpikingNetwork,
    dataset: Dataset,
    context: DistributedContext | None = None,
    *,
    batch_size: int = 500,
    method: Method = "closed_form",
    progress: bool = False,
) -> SNNEvaluation:
    """Evaluate ``net`` on ``dataset``, each process simulating its shard; collective.

    Every rank must call it with the same network, dataset and batch size. The result, the
    same on every rank, equals ``evaluate_snn(net, dataset, batch_size=batch_size)`` in one
    process: every count exactly, hence every mean.

    Args:
        net: the spiking network.
        dataset: the whole dataset (each rank takes its own shard).
        context: from :func:`process_group` (default: :func:`current_context`).
        batch_size: samples simulated at once; shards are runs of whole batches.
        method: simulator.
        progress: show a progress bar of this rank's shard.

    Returns:
        The evaluation over the whole dataset.
    """
    context = current_context() if context is None else context
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if len(dataset) == 0:
        raise ConfigError(f"dataset {dataset.name!r} ({dataset.split}) is empty")
    part = shard(dataset, batch_size, context)
    evaluation = None
    if len(part) > 0:
        evaluation = evaluate_snn(
            net, part, batch_size=batch_size, method=method, progress=progress
        )
    return combine_evaluations(gather_objects(evaluation, context))
