"""Random graphs for property tests, and a Norse runner for the NIR interop tests.

Weights and biases are multiples of 1/8 and normalisation scales are powers of two, so every
sum both simulators form is exact in float32: agreement can then be demanded bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import strategies as st

from onespike.graph import Add, AvgPool2d, Conv2d, Flatten, Graph, Input, Linear, MaxPool2d, Output
from onespike.graph import ReLU as ReLUNode
from onespike.network import populations


def dyadic(draw: st.DrawFn, shape: tuple[int, ...], limit: int = 8) -> torch.Tensor:
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-limit, limit + 1, shape, generator=gen).float() / 8


class _Builder:
    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.nodes: dict = {"input": Input(input_shape)}
        self.edges: list[tuple[str, str]] = []
        self.count = 0

    def add(self, node: object, *sources: str) -> str:
        name = f"n{self.count}"
        self.count += 1
        self.nodes[name] = node
        self.edges.extend((src, name) for src in sources)
        return name

    def finish(self, last: str) -> Graph:
        self.nodes["output"] = Output()
        self.edges.append((last, "output"))
        return Graph(self.nodes, self.edges)


@st.composite
def mlp_graphs(draw: st.DrawFn) -> Graph:
    width = draw(st.integers(2, 12))
    builder = _Builder((width,))
    last = "input"
    for _ in range(draw(st.integers(1, 3))):
        out = draw(st.integers(2, 12))
        bias = dyadic(draw, (out,)) if draw(st.booleans()) else None
        lin = builder.add(Linear(dyadic(draw, (out, width)), bias), last)
        if out == width and draw(st.booleans()):  # residual: relu(W h + b + h)
            lin = builder.add(Add(), lin, last)
        last = builder.add(ReLUNode(), lin)
        width = out
    classes = draw(st.integers(2, 6))
    head = builder.add(Linear(dyadic(draw, (classes, width)), dyadic(draw, (classes,))), last)
    return builder.finish(head)


@st.composite
def cnn_graphs(draw: st.DrawFn) -> Graph:
    channels = draw(st.integers(1, 3))
    size = draw(st.integers(5, 9))
    builder = _Builder((channels, size, size))
    last = "input"
    for _ in range(draw(st.integers(1, 2))):
        out = draw(st.integers(1, 4))
        kernel = draw(st.integers(1, 3))
        stride = draw(st.integers(1, 2))
        padding = draw(st.integers(0, kernel // 2 + (kernel > 1)))
        if (size + 2 * padding - kernel) // stride + 1 < 2:
            break
        bias = dyadic(draw, (out,)) if draw(st.booleans()) else None
        conv = Conv2d(
            dyadic(draw, (out, channels, kernel, kernel)),
            bias,
            (stride, stride),
            (padding, padding),
        )
        last = builder.add(ReLUNode(), builder.add(conv, last))
        size = (size + 2 * padding - kernel) // stride + 1
        channels = out
        if draw(st.booleans()):  # residual block at constant shape
            inner = Conv2d(
                dyadic(draw, (channels, channels, 3, 3)), dyadic(draw, (channels,)), (1, 1), (1, 1)
            )
            summed = builder.add(Add(), builder.add(inner, last), last)
            last = builder.add(ReLUNode(), summed)
        pool = draw(st.sampled_from(["none", "max", "max-padded", "avg", "avg-padded"]))
        if size >= 2 and pool != "none":
            padding = 1 if pool.endswith("padded") else 0
            node = MaxPool2d if pool.startswith("max") else AvgPool2d
            last = builder.add(node((2, 2), (2, 2), (padding, padding)), last)
            size = (size + 2 * padding - 2) // 2 + 1
    flat = builder.add(Flatten(), last)
    classes = draw(st.integers(2, 5))
    features = channels * size * size
    head = builder.add(Linear(dyadic(draw, (classes, features)), dyadic(draw, (classes,))), flat)
    return builder.finish(head)


def with_dyadic_scales(draw: st.DrawFn, graph: Graph) -> Graph:
    names = [p.name for p in populations(graph) if p.kind == "neuron"]
    return graph.with_scales({n: 2.0 ** draw(st.integers(-1, 2)) for n in names})


def run_norse(
    path: Path, x: torch.Tensor, steps: int, *, batched: bool
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Norse's module for the file, run ``steps`` steps on the same analog input: the summed
    output (the readout membrane) and each IF population's spike counts, batch first.

    ``batched=False`` feeds one sample at a time without a batch dimension: NIR shapes exclude
    the batch, so NIR's ``Flatten(start_dim=0)``, which Norse applies as it stands, flattens a
    whole sample only then."""
    norse = pytest.importorskip("norse.torch", reason="the interop test needs Norse")
    nir = pytest.importorskip("nir")
    module = norse.from_nir(nir.read(path))
    counts: dict[str, Any] = {}

    def counter(name: str) -> Any:
        def hook(_: Any, __: Any, output: Any) -> None:
            counts[name] = counts.get(name, 0) + output[0]

        return hook

    for name, sub in module.named_modules():
        if type(sub).__name__ == "IAFCell":
            sub.register_forward_hook(counter(name))

    def run(inputs: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        counts.clear()
        total = torch.zeros(())
        state = None
        with torch.no_grad():
            for _ in range(steps):
                out, state = module(inputs, state)
                total = total + out
        return total, dict(counts)

    if batched:
        return run(x)
    runs = [run(sample) for sample in x]
    stacked = {name: torch.stack([c[name] for _, c in runs]) for name in runs[0][1]}
    return torch.stack([total for total, _ in runs]), stacked
