"""Simulator speed (issue 15): every simulator against its floor, its peers and the ANN.

Speed does not depend on trained weights, so every network here has seeded random weights
(``torch.manual_seed(0)``, :func:`onespike.models.build_model`): the 784-500-500-10 ``mlp``,
``convnet-bn``, the deep ``vgg11-slim`` (eight convolutions, five max poolings) and
``resnet20`` (TTFS and hybrid parts: the rate floor loop and the peers' converters here take
chains of layers, not residual additions), on inputs
uniform in ``[0, 1]`` of MNIST's shape ``1 x 28 x 28`` (seeded), normalised with
``onespike.normalize(graph, [x])`` on 256 such images. Every comparison runs in one process,
on ``--threads`` torch threads, the candidates interleaved (A, B, A, B, ...) ``--repeats``
times after one warm-up call each; a row gives the median and the min/max of its seconds, a
ratio the quotient of medians. ``os.getloadavg()`` is recorded before and after.

1. **Rate** (``RateConfig(steps=T)``, ``closed_form``): sample-steps per second (``B T /
   seconds``) of onespike, of a plain-torch floor written here and of every installed peer.
   The floor has the same layers, weights (the projection's factor folded into the weight),
   biases and thresholds as the onespike network: the first layer's current computed once,
   preallocated membranes and spike buffers, per step ``v += z; s = v >= theta;
   v -= s theta`` (subtract reset, membranes start at ``theta / 2`` without onespike's dither),
   the output accumulating its current; max pooling with onespike's spike-count rule (a
   window spikes when the largest count of its neurons grows), one pooling per step (the
   previous pooled counts are kept). Peers: SpikingJelly (``ann2snn`` IF neurons, converted as
   ``benchmarks/rate.py`` does), sinabs (``from_model`` after ``normalize_weights`` at 99.99%,
   as ``rate.py`` does), Norse (``IAFCell``, reset to zero) and snnTorch (``Leaky`` with
   ``beta = 1``, subtract reset), the last two built from the onespike network's own
   weights, biases and thresholds with plain max pooling of spikes; each peer is fed the image
   at every step and its outputs summed, as in ``rate.py``. A peer that is missing or cannot
   express a layer is skipped with the reason. Targets: onespike >= 1.5x the fastest peer,
   and at most 1.25x the floor's time.
2. **TTFS closed form** (``TTFSConfig(steps=16)``, ``onespike.simulate``): throughput
   against the ANN's forward pass (``eval``, ``no_grad``) at ``B = 64`` and ``B = 1``.
   Targets: >= 0.95x at ``B >= 64``, >= 0.8x at ``B = 1``. The memory of a result is the sum
   of the storages (``nbytes``, each counted once) of the tensors the ``SimResult`` keeps,
   as returned (lazily derived spike times not yet read); target: at most half of
   :data:`BASELINE_RESULT_BYTES`.
3. **TTFS stepped**: seconds per batch at ``B = 64`` and its ratio to the ANN and to the
   closed form. Target (on the convolutional networks; the MLP's figure is reported): 3x
   faster than :data:`BASELINE_STEPPED`, judged on the ratio to the ANN measured in the same
   run (absolute seconds move with the machine's load; both shown).
4. **Hybrid** (``HybridConfig(steps=5)``, converted with ``calibration=`` the 256 images):
   ``closed_form`` against ``stepped`` and against ``T`` ANN forward passes at ``B = 1000``.
   Targets: ``closed_form`` no slower than ``stepped``; within 1.5x of the ``T`` ANN passes.
5. **STDB**: one training step (forward over the ``T = 5`` steps, STDB loss, backward;
   ``STDBConfig(train_leak=True)``) against ``T`` plain forward + backward passes of the ANN
   (BatchNorm in eval mode, cross-entropy) on the ConvNet at ``B = 64``, the method of
   ``benchmarks/hybrid_speed.py`` (optimizer step left out of both). Target: within 1.3x.
6. **Allocations per step**: :func:`torch.profiler.profile` with ``profile_memory=True``
   records one ``[memory]`` event per allocation and one per free (read from the raw
   Kineto events); the allocations (events with a positive size; also those of >= 1 KiB) of
   a run of ``2T`` steps minus those of a run of ``T`` steps, over ``T``, are the
   allocations one more step costs (ConvNet, ``B = 4``, ``T = 8``), for each rate simulator
   (onespike's two, the floor, every peer) and the hybrid simulators.

Writes ``benchmarks/results/speed.json`` (one flat record per measurement),
``speed.meta.json`` (command, machine, threads, load, peers, verdicts) and ``speed.md``;
``--quick`` (small batches and T, 3 repeats, under ~90 s on a quiet 2-core machine) writes
``speed-quick.*`` into ``--out`` (default ``runs/bench-quick``).

Usage::

    python benchmarks/speed.py [--threads 1] [--repeats 5] [--quick] [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import onespike
from onespike._fs import atomic_write_json, atomic_write_text
from onespike.graph import Conv2d, Flatten, Linear, apply_linear, max_pool
from onespike.models import build_model
from onespike.network import Population, SpikingNetwork
from onespike.stdb import STDBConfig, STDBNet, stdb_loss
from ttfs import out_dir

NETWORKS = ("mlp", "convnet-bn", "vgg11-slim", "resnet20")
SHAPE = (1, 28, 28)
CLASSES = 10
CALIBRATION = 256

# Measured on main at 1123785 (2026-12-06, before any issue-15 change) with this benchmark
# (`speed.py --only ttfs`, 1 thread, load average 5.2 -> 4.9 on 2 shared cores): bytes a TTFS
# closed-form result keeps at B = 64, T = 16 ...
BASELINE_DATE = "2026-12-06"
BASELINE_RESULT_BYTES = {
    "mlp": 467_968,
    "convnet-bn": 6_265_856,
    "vgg11-slim": 9_640_960,
    "resnet20": 37_141_504,  # measured on 643f3c0 (the same simulators), load 1.5
}
# ... and the TTFS stepped simulator at B = 64: seconds per batch (these move with the load)
# and seconds over the ANN's forward pass measured beside it (the figure the target uses).
BASELINE_STEPPED = {
    "mlp": {"seconds": 0.0477, "ratio_to_ann": 30.91},
    "convnet-bn": {"seconds": 0.9446, "ratio_to_ann": 56.76},
    "vgg11-slim": {"seconds": 2.9105, "ratio_to_ann": 103.17},
    "resnet20": {"seconds": 2.4762, "ratio_to_ann": 53.52},  # 643f3c0, load 1.5
}

# Targets of issue 15 (and 17 for STDB).
RATE_VS_PEER = 1.5
RATE_VS_FLOOR = 1.25
TTFS_VS_ANN = {64: 0.95, 1: 0.8}
RESULT_MEMORY = 0.5
STEPPED_SPEEDUP = 3.0
HYBRID_VS_ANN = 1.5
STDB_VS_ANN = 1.3


@dataclass(frozen=True)
class Sizes:
    """Batch sizes and steps of one run (full or ``--quick``)."""

    rate: dict[str, tuple[int, int]]  # network -> (B, T)
    ttfs_batches: tuple[int, ...]
    stepped_batch: int
    hybrid_batch: int
    stdb_batch: int
    alloc_steps: int


FULL = Sizes(
    rate={"mlp": (1000, 64), "convnet-bn": (256, 32), "vgg11-slim": (64, 32)},
    ttfs_batches=(64, 1),
    stepped_batch=64,
    hybrid_batch=1000,
    stdb_batch=64,
    alloc_steps=8,
)
QUICK = Sizes(
    rate={"mlp": (100, 16), "convnet-bn": (16, 8), "vgg11-slim": (8, 8)},
    ttfs_batches=(16, 1),
    stepped_batch=8,
    hybrid_batch=64,
    stdb_batch=16,
    alloc_steps=4,
)


# ---------------------------------------------------------------------------- measurement


# A timed sample repeats a call until it has run this long (a call of 1 ms is timed as a
# loop of 50), so that timer resolution and scheduler noise on a shared machine stay small
# against what is measured; ``--quick`` lowers it.
MIN_SAMPLE_SECONDS = 0.05


def interleaved(fns: Mapping[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of every candidate, the candidates alternating (A, B, A, B, ...).

    Each candidate is called once to warm up, and once more to choose how many calls one
    timed sample makes (at least :data:`MIN_SAMPLE_SECONDS` in all); a sample's figure is its
    time over its calls.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    calls: dict[str, int] = {}
    with torch.no_grad():  # a candidate that trains enables grad itself
        for name, fn in fns.items():
            fn()
            start = time.perf_counter()
            fn()
            once = time.perf_counter() - start
            calls[name] = max(1, min(1000, math.ceil(MIN_SAMPLE_SECONDS / max(once, 1e-6))))
        for _ in range(repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                for _ in range(calls[name]):
                    fn()
                times[name].append((time.perf_counter() - start) / calls[name])
    return times


def spread(seconds: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "repeats": len(seconds),
    }


def allocations(fn: Callable[[], Any]) -> tuple[int, int]:
    """Allocations ``fn`` makes, all and those of at least 1 KiB (batch-sized tensors rather
    than scalar wrappers): the profiler's ``[memory]`` events with a positive size.

    Read from the raw Kineto events: ``prof.events()`` merges some memory events that share
    a timestamp and undercounts.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    assert prof.profiler is not None
    assert prof.profiler.kineto_results is not None
    sizes = [e.nbytes() for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    return sum(1 for n in sizes if n > 0), sum(1 for n in sizes if n >= 1024)


def per_step_allocations(run: Callable[[int], Any], steps: int) -> tuple[float, float]:
    """``(allocations(2T) - allocations(T)) / T`` of ``run(T)``: all, and of >= 1 KiB."""
    run(steps)  # warm-up
    run(2 * steps)
    long, short = allocations(lambda: run(2 * steps)), allocations(lambda: run(steps))
    return (long[0] - short[0]) / steps, (long[1] - short[1]) / steps


def result_bytes(result: Any) -> int:
    """Bytes of the storages a simulation result keeps alive, each storage counted once.

    Walks the result's fields, dicts, lists and the attributes of its lazy mappings (without
    reading them, which would derive and cache more tensors); ``config`` and the network a
    lazy mapping refers to (the caller's own, not a cost of the result) are left out.
    """
    seen: set[int] = set()
    total = 0

    def visit(obj: Any) -> None:
        nonlocal total
        if isinstance(obj, SpikingNetwork):
            return
        if isinstance(obj, Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
        elif is_dataclass(obj) and not isinstance(obj, type):
            for f in fields(obj):
                if f.name != "config":
                    visit(getattr(obj, f.name))
        elif isinstance(obj, dict):
            for value in obj.values():
                visit(value)
        elif isinstance(obj, (list, tuple)):
            for value in obj:
                visit(value)
        elif isinstance(obj, Mapping) and hasattr(obj, "__dict__"):
            for value in vars(obj).values():
                visit(value)

    visit(result)
    return total


# ------------------------------------------------------------------------------- networks


@dataclass
class Setup:
    """A seeded random network and its inputs."""

    name: str
    model: nn.Module
    graph: onespike.Graph
    calibration: Tensor

    def inputs(self, batch: int, seed: int = 1) -> Tensor:
        return torch.rand((batch, *SHAPE), generator=torch.Generator().manual_seed(seed))


def setup(name: str) -> Setup:
    torch.manual_seed(0)
    model, _ = build_model(name, SHAPE, CLASSES)
    model.eval()
    calibration = torch.rand((CALIBRATION, *SHAPE), generator=torch.Generator().manual_seed(2))
    graph = onespike.normalize(onespike.extract(model, calibration[:2]), [calibration])
    return Setup(name, model, graph, calibration)


# ------------------------------------------------------------------- rate: floor and peers


class _Current:
    """A population's input current in plain torch: its projection's ops with the factor
    folded into the last weight, then its bias (a fresh tensor)."""

    def __init__(self, pop: Population) -> None:
        if len(pop.projections) != 1:
            raise NotImplementedError(f"{pop.name}: {len(pop.projections)} projections")
        proj = pop.projections[0]
        self.ops: list[Callable[[Tensor], Tensor]] = []
        weighted = [i for i, op in enumerate(proj.ops) if isinstance(op, (Linear, Conv2d))]
        if not weighted:
            raise NotImplementedError(f"{pop.name}: no weight layer")
        for i, op in enumerate(proj.ops):
            if isinstance(op, Linear):
                w = op.weight * proj.factor if i == weighted[-1] else op.weight
                self.ops.append(lambda x, w=w: F.linear(x, w))
            elif isinstance(op, Conv2d):
                w = op.weight * proj.factor if i == weighted[-1] else op.weight
                self.ops.append(
                    lambda x, w=w, op=op: F.conv2d(
                        x, w, None, op.stride, op.padding, op.dilation, op.groups
                    )
                )
            elif isinstance(op, Flatten):
                self.ops.append(lambda x: x.flatten(1))
            else:
                self.ops.append(lambda x, op=op: apply_linear(op, x, bias=False))
        self.bias = pop.bias

    def __call__(self, x: Tensor) -> Tensor:
        for op in self.ops:
            x = op(x)
        return x.add_(self.bias) if self.bias is not None else x


def floor_run(net: SpikingNetwork, x: Tensor, steps: int) -> Tensor:
    """The plain-torch floor of the rate simulation (see the module docstring)."""
    batch = x.shape[0]
    pops = net.populations
    currents = {p.name: _Current(p) for p in pops[1:] if p.kind == "neuron"}
    first = {p.name: currents[p.name](x) for p in pops[1:] if p.sources == (pops[0].name,)}
    v: dict[str, Tensor] = {}
    spikes: dict[str, Tensor] = {}
    fired: dict[str, Tensor] = {}
    counts: dict[str, Tensor] = {}
    pooled: dict[str, Tensor] = {}
    for p in pops[1:]:
        shape = (batch, *p.shape)
        spikes[p.name] = x.new_zeros(shape)
        if p.kind == "neuron":
            v[p.name] = x.new_full(shape, 0.0 if p.is_output else 0.5 * float(p.threshold))
            fired[p.name] = torch.zeros(shape, dtype=torch.bool)
        else:
            pooled[p.name] = x.new_zeros(shape)
    for p in pops[1:]:
        if p.kind == "maxpool":
            counts[p.sources[0]] = x.new_zeros((batch, *net[p.sources[0]].shape))
    for _ in range(steps):
        for p in pops[1:]:
            name = p.name
            if p.kind == "maxpool":
                assert p.pool is not None
                now = max_pool(p.pool, counts[p.sources[0]])
                torch.sub(now, pooled[name], out=spikes[name])
                pooled[name] = now
                continue
            z = first[name] if name in first else currents[name](spikes[p.sources[0]])
            v[name].add_(z)
            if p.is_output:
                continue
            threshold = float(p.threshold)
            torch.ge(v[name], threshold, out=fired[name])
            spikes[name].copy_(fired[name])
            v[name].sub_(spikes[name], alpha=threshold)
            if name in counts:
                counts[name].add_(spikes[name])
    return v[net.output.name]


class _Neuron(nn.Module):
    """Marks where a peer's neuron goes in :func:`_peer_layers`."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold


class _Bias(nn.Module):
    def __init__(self, bias: Tensor) -> None:
        super().__init__()
        self.register_buffer("bias", bias)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.bias


def _peer_layers(net: SpikingNetwork) -> list[nn.Module]:
    """The onespike rate network as plain modules (weights with the factor folded in,
    per-neuron biases, neuron markers, plain max pooling)."""
    layers: list[nn.Module] = []
    for p in net.populations[1:]:
        if len(p.projections) != 1:
            raise NotImplementedError(f"{p.name} sums {len(p.projections)} projections")
        if p.kind == "maxpool":
            assert p.pool is not None
            pool = p.pool
            layers.append(nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding))
            continue
        proj = p.projections[0]
        for i, op in enumerate(proj.ops):
            last = i == len(proj.ops) - 1
            if isinstance(op, Linear):
                module: nn.Module = nn.Linear(op.weight.shape[1], op.weight.shape[0], bias=False)
            elif isinstance(op, Conv2d):
                module = nn.Conv2d(
                    op.weight.shape[1] * op.groups,
                    op.weight.shape[0],
                    tuple(op.weight.shape[2:]),
                    op.stride,
                    op.padding,
                    op.dilation,
                    op.groups,
                    bias=False,
                )
            elif isinstance(op, Flatten):
                layers.append(nn.Flatten())
                continue
            else:
                raise NotImplementedError(f"{p.name}: {type(op).__name__}")
            with torch.no_grad():
                module.weight.copy_(op.weight * (proj.factor if last else 1.0))
            layers.append(module)
        if p.bias is not None:
            layers.append(_Bias(p.bias))
        if not p.is_output:
            layers.append(_Neuron(float(p.threshold)))
    return layers


def _summed(
    steps: int, reset: Callable[[], Any], step: Callable[[], Tensor]
) -> Callable[[], Tensor]:
    """A peer's run: reset its state, then ``steps`` steps, summing the output layer's values
    (the readout the peers offer for rate codes)."""

    def run() -> Tensor:
        reset()
        total = step()
        for _ in range(steps - 1):
            total = total + step()
        return total

    return run


def norse_runner(net: SpikingNetwork, x: Tensor, steps: int) -> Callable[[], Tensor]:
    from norse.torch import IAFCell, IAFParameters, SequentialState

    layers = [
        IAFCell(IAFParameters(v_th=torch.tensor(m.threshold))) if isinstance(m, _Neuron) else m
        for m in _peer_layers(net)
    ]
    model = SequentialState(*layers).eval()

    state: Any = None

    def reset() -> None:
        nonlocal state
        state = None

    def step() -> Tensor:
        nonlocal state
        out, state = model(x, state)
        return out

    return _summed(steps, reset, step)


def snntorch_runner(net: SpikingNetwork, x: Tensor, steps: int) -> Callable[[], Tensor]:
    import snntorch
    from snntorch import utils

    layers = [
        snntorch.Leaky(beta=1.0, threshold=m.threshold, init_hidden=True)
        if isinstance(m, _Neuron)
        else m
        for m in _peer_layers(net)
    ]
    model = nn.Sequential(*layers).eval()

    return _summed(steps, lambda: utils.reset(model), lambda: model(x))


def spikingjelly_runner(s: Setup, x: Tensor, steps: int) -> Callable[[], Tensor]:
    from spikingjelly.activation_based import ann2snn, functional

    from rate import plain_copy

    loader = [(s.calibration, torch.zeros(len(s.calibration), dtype=torch.long))]
    recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode="99.99%")
    snn = ann2snn.FXConverter(recipe=recipe, device="cpu").convert(plain_copy(s.model))
    snn.eval()

    return _summed(steps, lambda: functional.reset_net(snn), lambda: snn(x))


def sinabs_runner(s: Setup, x: Tensor, steps: int) -> Callable[[], Tensor]:
    from sinabs.from_torch import from_model
    from sinabs.utils import normalize_weights

    from rate import flat_sequential

    ann = flat_sequential(s.model)
    params = [n for n, m in ann.named_children() if isinstance(m, (nn.Linear, nn.Conv2d))]
    outputs = [n for n, m in ann.named_children() if isinstance(m, nn.ReLU)] + [params[-1]]
    normalize_weights(ann, s.calibration, outputs, params, percentile=99.99)
    snn = from_model(ann, input_shape=SHAPE, batch_size=len(x))
    snn.eval()

    return _summed(steps, snn.reset_states, lambda: snn(x))


PEER_MODULES = {
    "spikingjelly": "spikingjelly",
    "sinabs": "sinabs",
    "norse": "norse",
    "snntorch": "snntorch",
}


def installed_peers() -> tuple[list[str], dict[str, str]]:
    import importlib

    found, missing = [], {}
    for peer, module in PEER_MODULES.items():
        try:
            importlib.import_module(module)
            found.append(peer)
        except Exception as exc:  # a peer that fails to import is as good as missing
            missing[peer] = f"import {module} failed: {type(exc).__name__}: {exc}"
    return found, missing


# ------------------------------------------------------------------------------ the parts


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.verdicts: list[str] = []
        self.skipped: list[str] = []

    def row(self, **values: Any) -> dict[str, Any]:
        self.rows.append(values)
        return values

    def verdict(
        self, row: dict[str, Any], label: str, figure: str, met: bool, how_far: str
    ) -> None:
        row["met"] = met
        line = f"{label}: {figure}: {'met' if met else 'NOT met (' + how_far + ')'}"
        self.verdicts.append(line)
        print(line, flush=True)


def rate_part(
    report: Report, s: Setup, batch: int, steps: int, repeats: int, peers: list[str]
) -> None:
    net = onespike.convert(s.graph, onespike.RateConfig(steps=steps))
    x = s.inputs(batch)
    runs: dict[str, Callable[[], Any]] = {
        "onespike": lambda: onespike.simulate(net, x),
        "floor": lambda: floor_run(net, x, steps),
    }
    builders: dict[str, Callable[[], Callable[[], Any]]] = {
        "spikingjelly": lambda: spikingjelly_runner(s, x, steps),
        "sinabs": lambda: sinabs_runner(s, x, steps),
        "norse": lambda: norse_runner(net, x, steps),
        "snntorch": lambda: snntorch_runner(net, x, steps),
    }
    for peer in peers:
        try:
            with torch.no_grad():
                run = builders[peer]()
                run()
            runs[peer] = run
        except Exception as exc:
            reason = f"rate {s.name}: {peer} skipped: {type(exc).__name__}: {exc}"
            report.skipped.append(reason)
            print(reason, flush=True)
    with torch.no_grad():
        ours = onespike.simulate(net, x).predictions
        floor_agrees = float((floor_run(net, x, steps).argmax(dim=1) == ours).float().mean())
        times = interleaved(runs, repeats)
    medians = {name: statistics.median(t) for name, t in times.items()}
    rows = {}
    for name, seconds in times.items():
        rows[name] = report.row(
            part="rate",
            network=s.name,
            simulator=name,
            batch=batch,
            steps=steps,
            what="sample-steps/s",
            **spread(seconds),
            sample_steps_per_s=batch * steps / medians[name],
        )
    rows["floor"]["prediction_agreement_with_onespike"] = floor_agrees
    floor_ratio = medians["onespike"] / medians["floor"]
    row = rows["onespike"]
    row.update(ratio=floor_ratio, ratio_to="floor time", target=f"<= {RATE_VS_FLOOR}")
    report.verdict(
        row,
        f"rate {s.name} B={batch} T={steps}: onespike within {RATE_VS_FLOOR}x of the floor",
        f"{floor_ratio:.2f}x the floor's time ({medians['onespike'] * 1e3:.0f} vs "
        f"{medians['floor'] * 1e3:.0f} ms)",
        floor_ratio <= RATE_VS_FLOOR,
        f"{floor_ratio / RATE_VS_FLOOR:.2f}x over",
    )
    measured_peers = [p for p in peers if p in medians]
    if measured_peers:
        fastest = min(measured_peers, key=lambda p: medians[p])
        speedup = medians[fastest] / medians["onespike"]
        peer_row = report.row(
            part="rate",
            network=s.name,
            simulator="onespike",
            batch=batch,
            steps=steps,
            what="speedup over the fastest peer",
            median_s=medians["onespike"],
            ratio=speedup,
            ratio_to=f"{fastest} time / onespike time",
            target=f">= {RATE_VS_PEER}",
        )
        report.verdict(
            peer_row,
            f"rate {s.name} B={batch} T={steps}: onespike >= {RATE_VS_PEER}x the fastest peer",
            f"{speedup:.2f}x {fastest} ({medians[fastest] * 1e3:.0f} ms)",
            speedup >= RATE_VS_PEER,
            f"{RATE_VS_PEER / speedup:.2f}x short",
        )


def ttfs_part(report: Report, s: Setup, sizes: Sizes, repeats: int) -> None:
    net = onespike.convert(s.graph, onespike.TTFSConfig(steps=16))
    for batch in sizes.ttfs_batches:
        x = s.inputs(batch)
        times = interleaved(
            {
                "ann": lambda x=x: s.model(x),
                "closed_form": lambda x=x: onespike.simulate(net, x),
            },
            repeats,
        )
        ratio = statistics.median(times["ann"]) / statistics.median(times["closed_form"])
        report.row(
            part="ttfs",
            network=s.name,
            simulator="ann",
            batch=batch,
            steps=16,
            what="seconds per batch",
            **spread(times["ann"]),
        )
        target = TTFS_VS_ANN[1] if batch == 1 else TTFS_VS_ANN[64]
        row = report.row(
            part="ttfs",
            network=s.name,
            simulator="ttfs closed_form",
            batch=batch,
            steps=16,
            what="throughput vs ANN",
            **spread(times["closed_form"]),
            ratio=ratio,
            ratio_to="ANN time / closed-form time",
            target=f">= {target}",
        )
        report.verdict(
            row,
            f"ttfs {s.name} B={batch}: closed form >= {target}x the ANN's throughput",
            f"{ratio:.2f}x",
            ratio >= target,
            f"{target / ratio:.2f}x short",
        )
    batch = sizes.ttfs_batches[0]
    with torch.no_grad():
        result = onespike.simulate(net, s.inputs(batch))
    size = result_bytes(result)
    baseline = BASELINE_RESULT_BYTES[s.name] * batch / 64
    row = report.row(
        part="ttfs",
        network=s.name,
        simulator="ttfs closed_form",
        batch=batch,
        steps=16,
        what="result bytes",
        bytes=size,
        baseline_bytes=baseline,
        ratio=size / baseline if baseline else None,
        ratio_to="baseline bytes",
        target=f"<= {RESULT_MEMORY}",
    )
    if baseline:
        report.verdict(
            row,
            f"ttfs {s.name} B={batch}: result memory at most half of {BASELINE_DATE}",
            f"{size / 2**20:.2f} MiB vs {baseline / 2**20:.2f} MiB ({size / baseline:.2f}x; "
            "the baseline measured at B=64, scaled by B / 64)",
            size <= RESULT_MEMORY * baseline,
            f"{size / (RESULT_MEMORY * baseline):.2f}x over",
        )
    stepped_part(report, s, net, sizes.stepped_batch, repeats)


def stepped_part(report: Report, s: Setup, net: SpikingNetwork, batch: int, repeats: int) -> None:
    x = s.inputs(batch)
    times = interleaved(
        {
            "ann": lambda: s.model(x),
            "closed_form": lambda: onespike.simulate(net, x),
            "stepped": lambda: onespike.simulate(net, x, "stepped"),
        },
        repeats,
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio_ann = med["stepped"] / med["ann"]
    baseline = BASELINE_STEPPED[s.name]
    row = report.row(
        part="ttfs-stepped",
        network=s.name,
        simulator="ttfs stepped",
        batch=batch,
        steps=16,
        what="seconds per batch",
        **spread(times["stepped"]),
        ann_median_s=med["ann"],
        closed_form_median_s=med["closed_form"],
        ratio=ratio_ann,
        ratio_to="ANN time",
        stepped_over_closed_form=med["stepped"] / med["closed_form"],
        baseline_seconds=baseline["seconds"] * batch / 64,
        baseline_ratio_to_ann=baseline["ratio_to_ann"],
        target=None if s.name == "mlp" else f"ratio to ANN <= baseline / {STEPPED_SPEEDUP}",
    )
    if baseline["ratio_to_ann"] and s.name == "mlp":
        report.skipped.append(
            f"ttfs stepped mlp B={batch}: {ratio_ann:.1f}x the ANN, "
            f"{baseline['ratio_to_ann'] / ratio_ann:.2f}x the speed of {BASELINE_DATE} (the 3x "
            "target is for the convolutional networks)"
        )
    elif baseline["ratio_to_ann"]:
        goal = baseline["ratio_to_ann"] / STEPPED_SPEEDUP
        report.verdict(
            row,
            f"ttfs stepped {s.name} B={batch}: {STEPPED_SPEEDUP:g}x faster than {BASELINE_DATE}",
            f"{med['stepped'] * 1e3:.0f} ms = {ratio_ann:.1f}x the ANN, "
            f"{med['stepped'] / med['closed_form']:.1f}x the closed form (baseline "
            f"{baseline['ratio_to_ann']:.1f}x at B=64: {baseline['ratio_to_ann'] / ratio_ann:.2f}x "
            "its speed)",
            ratio_ann <= goal,
            f"{ratio_ann / goal:.2f}x over the goal of {goal:.1f}x the ANN",
        )


def hybrid_part(report: Report, s: Setup, batch: int, repeats: int) -> None:
    config = onespike.HybridConfig(steps=5)
    net = onespike.convert(s.graph, config, calibration=s.calibration)
    x = s.inputs(batch)

    def ann_passes() -> None:
        for _ in range(config.steps):
            s.model(x)

    times = interleaved(
        {
            "closed_form": lambda: onespike.simulate(net, x),
            "stepped": lambda: onespike.simulate(net, x, "stepped"),
            "ann_x_T": ann_passes,
        },
        repeats,
    )
    med = {k: statistics.median(v) for k, v in times.items()}
    for name in ("stepped", "ann_x_T"):
        report.row(
            part="hybrid",
            network=s.name,
            simulator=name,
            batch=batch,
            steps=5,
            what="seconds per batch",
            **spread(times[name]),
        )
    vs_stepped = med["closed_form"] / med["stepped"]
    vs_ann = med["closed_form"] / med["ann_x_T"]
    row = report.row(
        part="hybrid",
        network=s.name,
        simulator="closed_form",
        batch=batch,
        steps=5,
        what="seconds per batch",
        **spread(times["closed_form"]),
        ratio=vs_stepped,
        ratio_to="stepped time",
        target="<= 1",
    )
    report.verdict(
        row,
        f"hybrid {s.name} B={batch}: closed_form no slower than stepped",
        f"{med['closed_form']:.3f} s vs {med['stepped']:.3f} s ({vs_stepped:.2f}x)",
        vs_stepped <= 1.0,
        f"{vs_stepped:.2f}x slower",
    )
    row = report.row(
        part="hybrid",
        network=s.name,
        simulator="closed_form",
        batch=batch,
        steps=5,
        what="vs T ANN passes",
        median_s=med["closed_form"],
        ratio=vs_ann,
        ratio_to="T ANN forward passes",
        target=f"<= {HYBRID_VS_ANN}",
    )
    report.verdict(
        row,
        f"hybrid {s.name} B={batch}: closed_form within {HYBRID_VS_ANN}x of 5 ANN passes",
        f"{vs_ann:.2f}x ({med['ann_x_T']:.3f} s)",
        vs_ann <= HYBRID_VS_ANN,
        f"{vs_ann / HYBRID_VS_ANN:.2f}x over",
    )


def stdb_part(report: Report, s: Setup, batch: int, repeats: int) -> None:
    steps = 5
    net = onespike.convert(s.graph, onespike.HybridConfig(steps=steps), calibration=s.calibration)
    snn = STDBNet(net, STDBConfig(train_leak=True))
    x = s.inputs(batch)
    y = torch.randint(0, CLASSES, (batch,), generator=torch.Generator().manual_seed(3))

    def stdb_step() -> None:
        with torch.enable_grad():
            membrane = snn(x)
            assert snn.output_spikes is not None
            stdb_loss(membrane, snn.output_spikes, y, 0.1).backward()

    def ann_steps() -> None:
        with torch.enable_grad():
            for _ in range(steps):
                F.cross_entropy(s.model(x), y).backward()

    times = interleaved({"stdb": stdb_step, "ann_x_T": ann_steps}, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["stdb"] / med["ann_x_T"]
    report.row(
        part="stdb",
        network=s.name,
        simulator="ann_x_T",
        batch=batch,
        steps=steps,
        what="forward+backward seconds",
        **spread(times["ann_x_T"]),
    )
    row = report.row(
        part="stdb",
        network=s.name,
        simulator="stdb",
        batch=batch,
        steps=steps,
        what="forward+backward seconds",
        **spread(times["stdb"]),
        ratio=ratio,
        ratio_to="T ANN forward+backward",
        target=f"<= {STDB_VS_ANN}",
    )
    report.verdict(
        row,
        f"stdb {s.name} B={batch}: one step within {STDB_VS_ANN}x of 5 ANN steps",
        f"{ratio:.2f}x ({med['stdb'] * 1e3:.0f} vs {med['ann_x_T'] * 1e3:.0f} ms)",
        ratio <= STDB_VS_ANN,
        f"{ratio / STDB_VS_ANN:.2f}x over",
    )


def allocation_part(report: Report, s: Setup, steps: int, peers: list[str]) -> None:
    x = s.inputs(4)
    rate_config = onespike.RateConfig(steps=steps)
    rate_net = onespike.convert(s.graph, rate_config)

    def rate(method: str) -> Callable[[int], Any]:
        def run(t: int) -> Any:
            net = onespike.convert(s.graph, onespike.RateConfig(steps=t))
            with torch.no_grad():
                return onespike.simulate(net, x, method)  # type: ignore[arg-type]

        return run

    def peer(make: Callable[[int], Callable[[], Any]]) -> Callable[[int], Any]:
        built: dict[int, Callable[[], Any]] = {}

        def run(t: int) -> Any:
            if t not in built:
                built[t] = make(t)
            with torch.no_grad():
                return built[t]()

        return run

    runs: dict[str, Callable[[int], Any]] = {
        "rate onespike closed_form": rate("closed_form"),
        "rate onespike stepped": rate("stepped"),
        "rate floor": lambda t: floor_run(rate_net, x, t),
    }
    makers = {
        "spikingjelly": lambda t: spikingjelly_runner(s, x, t),
        "sinabs": lambda t: sinabs_runner(s, x, t),
        "norse": lambda t: norse_runner(rate_net, x, t),
        "snntorch": lambda t: snntorch_runner(rate_net, x, t),
    }
    for name in peers:
        runs[f"rate {name}"] = peer(makers[name])
    for method in ("closed_form", "stepped"):
        runs[f"hybrid onespike {method}"] = _by_steps(s, x, method)
    for name, run in runs.items():
        try:
            every, large = per_step_allocations(run, steps)
        except Exception as exc:
            report.skipped.append(f"allocations {name}: {type(exc).__name__}: {exc}")
            continue
        report.row(
            part="allocations",
            network=s.name,
            simulator=name,
            batch=len(x),
            steps=steps,
            what="allocations per step",
            allocations_per_step=every,
            large_allocations_per_step=large,
            how="torch.profiler profile_memory: [memory] events of size > 0 "
            "(and >= 1 KiB), (count(2T) - count(T)) / T",
        )
        print(
            f"allocations per step, {name} ({s.name}): {every:.1f} ({large:.1f} >= 1 KiB)",
            flush=True,
        )


def _by_steps(s: Setup, x: Tensor, method: str) -> Callable[[int], Any]:
    nets: dict[int, SpikingNetwork] = {}

    def run(t: int) -> Any:
        if t not in nets:
            config = onespike.HybridConfig(steps=t)
            nets[t] = onespike.convert(s.graph, config, calibration=s.calibration)
        with torch.no_grad():
            return onespike.simulate(nets[t], x, method)  # type: ignore[arg-type]

    return run


# ----------------------------------------------------------------------------------- main


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| part | network | simulator | B | T | what | median | min - max | ratio | target |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        if "median_s" in r and "min_s" in r:
            median, span = (
                f"{r['median_s'] * 1e3:.1f} ms",
                (f"{r['min_s'] * 1e3:.1f} - {r['max_s'] * 1e3:.1f}"),
            )
        elif "bytes" in r:
            median, span = f"{r['bytes'] / 2**20:.2f} MiB", ""
        elif "allocations_per_step" in r:
            every, large = r["allocations_per_step"], r["large_allocations_per_step"]
            median = f"{every:.1f} ({large:.1f} >= 1 KiB)"
            span = ""
        else:
            median, span = f"{r.get('median_s', math.nan) * 1e3:.1f} ms", ""
        if "sample_steps_per_s" in r:
            median += f" ({r['sample_steps_per_s']:,.0f} sample-steps/s)"
        ratio = r.get("ratio")
        ratio_cell = f"{ratio:.2f}x {r.get('ratio_to', '')}" if ratio is not None else ""
        met = r.get("met")
        target = r.get("target", "")
        if met is not None:
            target += " met" if met else " NOT met"
        lines.append(
            f"| {r['part']} | {r['network']} | {r['simulator']} | {r['batch']} | "
            f"{r['steps']} | {r['what']} | {median} | {span} | {ratio_cell} | {target} |"
        )
    return "\n".join(lines)


PARTS = ("rate", "ttfs", "hybrid", "stdb", "allocations")
NOTES = [
    "Allocations per step: torch.profiler.profile(profile_memory=True), the [memory] events "
    "of positive size (all, and those >= 1 KiB) of a 2T-step run minus those of a T-step "
    "run, over T (ConvNet, B = 4).",
    "Rate floor: plain torch, the same weights (factor folded in), biases and thresholds, "
    "first-layer current once, preallocated state, v += z; s = v >= theta; v -= s theta, "
    "onespike's spike-count max pooling; membranes start at theta / 2 without dither "
    "(prediction_agreement_with_onespike in the JSON).",
    "Networks have seeded random weights; inputs uniform in [0, 1], 1 x 28 x 28.",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None, help="default 5 (quick: 3)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="small batches and T (CI)")
    parser.add_argument("--only", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    args = parser.parse_args()
    args.out = out_dir(args.out, args.quick)
    repeats = args.repeats or (3 if args.quick else 5)
    sizes = QUICK if args.quick else FULL
    if args.quick:
        global MIN_SAMPLE_SECONDS
        MIN_SAMPLE_SECONDS = 0.01
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    load_before = os.getloadavg()
    peers, missing = installed_peers()
    report = Report()
    for reason in missing.values():
        print(f"peer missing: {reason}", flush=True)
    setups = {name: setup(name) for name in args.networks}
    for name, s in setups.items():
        if "rate" in args.only and name not in sizes.rate:
            report.skipped.append(
                f"rate {name}: not timed here (the floor loop and the peers' converters in this "
                "benchmark take chains of layers, not residual additions)"
            )
        elif "rate" in args.only:
            batch, steps = sizes.rate[name]
            rate_part(report, s, batch, steps, repeats, peers)
        if "ttfs" in args.only:
            ttfs_part(report, s, sizes, repeats)
        if "hybrid" in args.only:
            hybrid_part(report, s, sizes.hybrid_batch, repeats)
    if "stdb" in args.only and "convnet-bn" in setups:
        stdb_part(report, setups["convnet-bn"], sizes.stdb_batch, repeats)
    if "allocations" in args.only and "convnet-bn" in setups:
        allocation_part(report, setups["convnet-bn"], sizes.alloc_steps, peers)
    meta: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_average_start": load_before,
        "load_average_end": os.getloadavg(),
        "seconds": time.perf_counter() - started,
        "repeats": repeats,
        "quick": args.quick,
        "peers_installed": peers,
        "peers_missing": missing,
        "skipped": report.skipped,
        "baseline_date": BASELINE_DATE,
        "baseline_result_bytes_b64": BASELINE_RESULT_BYTES,
        "baseline_stepped_b64": BASELINE_STEPPED,
        "verdicts": report.verdicts,
    }
    suffix = "-quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / f"speed{suffix}.json", report.rows)
    atomic_write_json(args.out / f"speed{suffix}.meta.json", meta)
    load = (
        ", ".join(f"{a:.1f}" for a in load_before)
        + " -> "
        + ", ".join(f"{a:.1f}" for a in meta["load_average_end"])
    )
    notes = "\n".join(f"- {v}" for v in report.verdicts + report.skipped + NOTES)
    text = (
        f"Speed, {meta['date']}, {torch.get_num_threads()} thread(s), load average {load}, "
        f"{repeats} interleaved repeats (median, min - max).\n\n"
        f"{markdown(report.rows)}\n\n{notes}\n"
    )
    atomic_write_text(args.out / f"speed{suffix}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
