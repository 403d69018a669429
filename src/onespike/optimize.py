"""TTFS-aware optimisation: fine-tune the ANN through the exact function of its TTFS network.

"You Only Spike Once" (Srivatsa et al., arXiv 2006.09982) brings TTFS networks converted from
ANNs to ANN-level accuracy at short latency with an optimisation whose details are not public.
onespike's reading, stated here once:

- every ReLU of the ANN becomes :class:`TTFSQuant`, the function a TTFS population computes:
  ``y = scale * clamp(floor(L a / scale + 1/2), 0, L) / L`` with ``L = T - 1``: per-layer
  scaling, clipping to the code range and rounding to the ``T``-level grid (max pooling after
  it is then exactly "first spike wins");
- the input is rounded to the same grid (:class:`InputQuant`), as the spike encoder does;
- gradients pass straight through the rounding (Bengio et al. 2013, arXiv 1308.3432), and the
  scale of each layer is learned with the step-size gradient of LSQ (Esser et al.,
  arXiv 1902.08153), starting from the activation percentile of :func:`onespike.normalize`;
- BatchNorm keeps its running statistics frozen during fine-tuning, because the converted
  network folds exactly those.

The fine-tuned network, in eval mode, *is* the quantised ANN that its converted SNN computes:
:meth:`TTFSAwareNet.to_graph` carries the learned scales into the graph, and conversion loses
nothing (the tests hold the SNN's predictions and decoded outputs to the fine-tuned network's).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from onespike.convert.config import TTFSConfig
from onespike.data import Dataset
from onespike.errors import ConfigError, CorruptFileError
from onespike.graph import Graph, ReLU
from onespike.io import save_model
from onespike.models import ModelSpec
from onespike.network import populations
from onespike.sources import ModelSource
from onespike.tracing import extract
from onespike.train import TrainConfig, TrainResult, train

__all__ = [
    "InputQuant",
    "TTFSAwareNet",
    "TTFSAwareResult",
    "TTFSQuant",
    "optimize_for_ttfs",
    "prepare_ttfs_aware",
    "restore_ttfs_aware",
    "save_ttfs_aware",
]


class _QuantizeSTE(torch.autograd.Function):
    """``scale * clamp(floor(L a / scale + 1/2), 0, L) / L`` with straight-through gradients."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, scale: Tensor, levels: int) -> Tensor:
        u = a / scale
        q = torch.floor(u * levels + 0.5).clamp_(0, levels)
        ctx.save_for_backward(u, q)
        ctx.levels = levels
        return q * scale / levels

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        u, q = ctx.saved_tensors
        inside = ((u >= 0) & (u <= 1)).to(grad.dtype)
        grad_a = grad * inside
        # LSQ step-size gradient: q/L - u inside the range, 1 above it, 0 below it.
        grad_scale = (grad * (q / ctx.levels - u * inside)).sum().reshape(1).squeeze()
        return grad_a, grad_scale, None


class TTFSQuant(nn.Module):
    """The activation of a TTFS population: scale, clip to the code range, round to the grid.

    Args:
        levels: ``L = T - 1``.
        scale: initial activation scale (learned).
    """

    def __init__(
        self,
        levels: int,
        scale: float,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if levels < 1:
            raise ConfigError(f"levels must be >= 1 (steps >= 2), got {levels}")
        if not scale > 0:
            raise ConfigError(f"scale must be positive, got {scale}")
        self.levels = levels
        self.scale = nn.Parameter(torch.tensor(float(scale), device=device, dtype=dtype))

    def forward(self, a: Tensor) -> Tensor:
        scale = self.scale.clamp(min=1e-6).to(a.dtype)
        out: Tensor = _QuantizeSTE.apply(a, scale, self.levels)
        return out

    def extra_repr(self) -> str:
        return f"levels={self.levels}, scale={float(self.scale):.4g}"


class InputQuant(nn.Module):
    """Rounds inputs in ``[0, 1]`` to the spike encoder's grid ``floor(L x + 1/2) / L``."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.levels = levels

    def forward(self, x: Tensor) -> Tensor:
        q = torch.floor(x.clamp(0.0, 1.0) * self.levels + 0.5) / self.levels
        return x + (q - x).detach() if x.requires_grad else q


class TTFSAwareNet(nn.Module):
    """A network whose forward pass (in eval mode) equals its TTFS conversion's function.

    Attributes:
        body: the original network with every ``nn.ReLU`` replaced by :class:`TTFSQuant`.
        input_quant: the input rounding.
        output_scale: scale of the output population's code (decoded outputs only; the class
            is the largest logit either way).
    """

    output_scale: Tensor

    def __init__(self, body: nn.Module, levels: int, output_scale: float) -> None:
        super().__init__()
        self.input_quant = InputQuant(levels)
        self.body = body
        self.levels = levels
        like = _first_tensor(body)
        self.register_buffer(
            "output_scale",
            torch.tensor(
                float(output_scale),
                device=None if like is None else like.device,
                dtype=None if like is None else like.dtype,
            ),
        )

    @property
    def steps(self) -> int:
        return self.levels + 1

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.body(self.input_quant(x))
        return out

    def train(self, mode: bool = True) -> TTFSAwareNet:
        super().train(mode)
        for module in self.modules():  # the converted network folds the running statistics
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def decode(self, logits: Tensor) -> Tensor:
        """The output population's decoded values for these logits."""
        scale = self.output_scale.to(logits.dtype)
        q = torch.floor(logits / scale * self.levels + 0.5).clamp_(0, self.levels)
        return q * scale / self.levels

    def scales(self) -> dict[str, float]:
        """Learned scale of every quantised activation, by module name within ``body``."""
        return {
            name: float(module.scale.detach())
            for name, module in self.body.named_modules()
            if isinstance(module, TTFSQuant)
        }

    def to_graph(self, example_input: Tensor) -> Graph:
        """Extract the graph with the learned scales, ready for ``convert(TTFSConfig(...))``.

        The graph's tensors lie on this network's device; ``example_input`` is moved there.
        """
        like = _first_tensor(self)
        if like is not None:
            example_input = example_input.to(like.device)
        graph = extract(self, example_input)
        output = next(p for p in populations(graph) if p.is_output)
        scales = dict(graph.scales)
        scales.setdefault(output.name, float(self.output_scale))
        return graph.with_scales(scales)

    def config(self, **kwargs: Any) -> TTFSConfig:
        """The TTFS configuration this network was fine-tuned for."""
        return TTFSConfig(steps=self.steps, **kwargs)


def _first_tensor(module: nn.Module) -> Tensor | None:
    """The first floating-point parameter or buffer of ``module``: its device and dtype."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor
    return None


def _is_activation(module: nn.Module) -> bool:
    """A module TTFS-aware fine-tuning swaps: ``nn.ReLU``, or a clipped ReLU (``nn.ReLU6``,
    ``nn.Hardtanh(0, c)``), whose clipping value bounds the initial scale."""
    if isinstance(module, nn.ReLU):
        return True
    return isinstance(module, nn.Hardtanh) and module.min_val == 0 and module.max_val > 0


def _activation_percentiles(
    model: nn.Module, inputs: Iterable[Tensor], percentile: float
) -> tuple[dict[str, float], float]:
    """Percentile of every activation module's output and of the positive logits, over
    ``inputs``."""
    relus = {name: m for name, m in model.named_modules() if _is_activation(m)}
    values: dict[str, list[np.ndarray]] = {name: [] for name in relus}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: values[name].append(out.detach().flatten().cpu().numpy())
        )
        for name, module in relus.items()
    ]
    logits: list[np.ndarray] = []
    like = _first_tensor(model)
    device = None if like is None else like.device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x in inputs:
                logits.append(torch.relu(model(x.to(device))).flatten().cpu().numpy())
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)

    def pick(chunks: list[np.ndarray]) -> float:
        value = float(np.percentile(np.concatenate(chunks), percentile)) if chunks else 0.0
        return value if value > 0 else 1.0

    scales = {name: pick(chunks) for name, chunks in values.items()}
    for name, module in relus.items():
        if isinstance(module, nn.Hardtanh):
            scales[name] = min(scales[name], float(module.max_val))
    return scales, pick(logits)


def _unscaled_activations(net: TTFSAwareNet, example: Tensor) -> list[str]:
    """Activations that become populations without a learned scale: functional ones
    (``F.relu``, ``torch.clamp``, ...), which TTFS-aware fine-tuning cannot swap."""
    graph = extract(net, example)
    return sorted(
        pop.name
        for pop in populations(graph)
        if pop.kind == "neuron"
        and isinstance(graph.nodes.get(pop.name), ReLU)
        and pop.name not in graph.scales
    )


def _swap_relus(model: nn.Module, scales: dict[str, float], levels: int) -> None:
    like = _first_tensor(model)  # the scales live where the model's weights do
    device = None if like is None else like.device
    dtype = None if like is None else like.dtype
    for name, scale in scales.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, TTFSQuant(levels, scale, device, dtype))


def prepare_ttfs_aware(
    model: nn.Module,
    calibration: Iterable[Tensor],
    *,
    steps: int,
    percentile: float = 99.99,
) -> TTFSAwareNet:
    """Copy ``model`` and swap its ReLUs for TTFS quantisers with calibrated scales.

    Args:
        model: trained network whose activations are ``nn.ReLU`` (or ``nn.ReLU6`` /
            ``nn.Hardtanh(0, c)``) modules (the original is not modified).
        calibration: input batches for the initial scales.
        steps: T of the target TTFS network.
        percentile: activation percentile for the initial scales.

    Returns:
        The TTFS-aware network; in eval mode it computes exactly what its conversion will.
    """
    TTFSConfig(steps=steps)  # validates steps
    body = copy.deepcopy(model)
    batches = list(calibration)
    scales, output_scale = _activation_percentiles(body, batches, percentile)
    _swap_relus(body, scales, steps - 1)
    net = TTFSAwareNet(body, steps - 1, output_scale)
    functional: list[str] = []
    if batches:
        like = _first_tensor(body)
        example = batches[0][:2].to(None if like is None else like.device)
        functional = _unscaled_activations(net, example)
    if not scales or functional:
        where = f" (functional activations at {', '.join(functional)})" if functional else ""
        raise ConfigError(
            "TTFS-aware fine-tuning learns one scale per activation module, and the model has "
            f"activations that are not nn.ReLU / nn.ReLU6 / nn.Hardtanh(0, c) modules{where}; "
            "write them as modules (e.g. self.act = nn.ReLU()), or convert without "
            "fine-tuning"
        )
    return net


@dataclass(frozen=True)
class TTFSAwareResult:
    """A fine-tuned TTFS-aware network and its training history."""

    net: TTFSAwareNet
    history: TrainResult


def optimize_for_ttfs(
    model: nn.Module,
    data: Dataset,
    *,
    steps: int,
    epochs: int = 3,
    lr: float = 1e-4,
    batch_size: int = 128,
    percentile: float = 99.99,
    calibration_samples: int = 5000,
    seed: int = 0,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
    val_data: Dataset | None = None,
) -> TTFSAwareResult:
    """Fine-tune ``model`` through the exact function of its T-step TTFS conversion.

    Args:
        model: the trained ANN (not modified).
        data: training split.
        steps: T of the target TTFS network.
        epochs: fine-tuning epochs.
        lr: learning rate (Adam, cosine schedule).
        batch_size: mini-batch size.
        percentile: activation percentile for the initial scales.
        calibration_samples: training images used for the initial scales.
        seed: shuffling and dropout seed.
        checkpoint_dir: where to keep resumable per-epoch checkpoints.
        progress: show progress bars.
        val_data: if given, the exact T-step function's accuracy on it is recorded after
            every epoch (``history``'s ``val_accuracy``).

    Returns:
        The fine-tuned network (convert it with ``result.net.to_graph(x)``) and its history.
    """
    calibration = data.images[:calibration_samples].split(500)
    net = prepare_ttfs_aware(model, calibration, steps=steps, percentile=percentile)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed)
    history = train(
        net, data, config, val_ds=val_data, checkpoint_dir=checkpoint_dir, progress=progress
    )
    net.eval()
    return TTFSAwareResult(net, history)


def save_ttfs_aware(
    directory: str | Path,
    net: TTFSAwareNet,
    spec: ModelSpec | ModelSource,
    *,
    dataset: str,
    accuracy: float | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Save a fine-tuned network as its plain architecture plus the learned scales.

    The weights go to ``model.safetensors`` in the layout of ``spec``'s architecture (so any
    onespike tool loads them); ``model.json`` keeps ``extra.ttfs_aware`` = ``steps``,
    per-activation ``scales`` and ``output_scale``, which :func:`restore_ttfs_aware` reads,
    and the entries of ``training`` (e.g. the per-epoch ``history``, which ``onespike
    report`` draws).

    Returns:
        The model directory.
    """
    plain = spec.build()
    quantised = set(net.scales())
    state = {
        key: value.float()
        for key, value in net.body.state_dict().items()
        if key.rpartition(".")[0] not in quantised
    }
    plain.load_state_dict(state)
    info = {
        **(training or {}),
        "steps": net.steps,
        "scales": net.scales(),
        "output_scale": float(net.output_scale),
    }
    return save_model(
        directory, plain, spec, dataset=dataset, accuracy=accuracy, extra={"ttfs_aware": info}
    )


def restore_ttfs_aware(model: nn.Module, meta: dict[str, Any]) -> TTFSAwareNet | None:
    """Rebuild the TTFS-aware network of a model saved by :func:`save_ttfs_aware`.

    Args:
        model: the loaded plain architecture.
        meta: the model's metadata (from :func:`onespike.io.load_model`).

    Returns:
        The TTFS-aware network, or ``None`` when the model was not fine-tuned for TTFS.
    """
    extra = meta.get("extra") or {}
    info = extra.get("ttfs_aware") if isinstance(extra, dict) else None
    if info is None:
        return None
    try:
        steps = int(info["steps"])
        scales = {str(k): float(v) for k, v in info["scales"].items()}
        output_scale = float(info["output_scale"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CorruptFileError(f"model.json: malformed 'ttfs_aware' entry ({exc})") from exc
    body = copy.deepcopy(model)
    modules = dict(body.named_modules())
    for name in scales:
        module = modules.get(name)
        if module is None or not _is_activation(module):
            raise CorruptFileError(
                f"model.json: 'ttfs_aware' names activation {name!r}, which is not an nn.ReLU "
                "(or clipped ReLU) module of this architecture; the file does not belong to "
                "these weights"
            )
    _swap_relus(body, scales, steps - 1)
    return TTFSAwareNet(body, steps - 1, output_scale).eval()
