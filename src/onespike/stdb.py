"""STDB fine-tuning of hybrid single-spike networks, and their safe save/load.

Datta, Kundu, Beerel ("Training Energy-Efficient Deep Spiking Neural Networks with Single-Spike
Hybrid Input Encoding", arXiv 2107.12374) train the converted network itself with a variant of
spike-timing-dependent backpropagation (STDB: Rathi et al., "Enabling Deep Spiking Neural
Networks with Hybrid Conversion and Spike Timing Dependent Backpropagation", arXiv 2005.01807),
with a loss on the output membrane and output spike times. Only the abstract is public here;
onespike's reading, stated once:

**Forward.** Exactly the network's own dynamics (:mod:`onespike.convert.hybrid`), run by the
layer-major simulator :func:`onespike.simulate.hybrid.run_layers` over the ``T`` steps. Only the
threshold crossing differs: it returns the same 0/1 value and carries a surrogate gradient.

**Surrogate gradient.** With ``u = v / theta - 1`` (the membrane's distance to the threshold in
units of the threshold) the crossing is ``H(u)``, and backpropagation through time uses::

    dH/du = alpha * exp(-beta * dt),     dt = |u| = |v - theta| / theta

so ``ds/dv = alpha exp(-beta dt) / theta`` and ``ds/dtheta = -(v / theta) * ds/dv``. ``dt`` is
the time between the step and the neuron's threshold crossing, measured in the steps a neuron
driven by the largest calibrated current (one threshold per step, after normalisation) needs:
``u >= 0`` at and after the crossing (time since the spike), ``u < 0`` before it (time until
it). STDB as Rathi et al. state it takes ``dt`` as steps since the neuron's last spike, which
makes the gradient independent of the membrane; for neurons that fire at most once that
passes gradient through every silent neuron alike, or (counting only from the spike) through
none that could still learn to fire, and in onespike's prototype runs either way made the
converted network worse, not better (``docs/hybrid.md``). Measuring ``dt`` through the
membrane keeps the exponential form and the meaning "close in time to the spike".
"Has already fired" is a constant for autograd (:func:`onespike.neurons.fire_once`): no
gradient flows through a neuron's steps after its spike.

**Loss.** With ``V`` the output membrane after the last step and the output spike time
``t_c = sum_t t * s_t,c + T * (1 - sum_t s_t,c)`` (``T`` for a class that never fired; it is
differentiable through the surrogate)::

    loss = cross_entropy(V, y) + time_loss_weight * cross_entropy(-t, y)

The second term is the cross-entropy of a softmax over negative spike times (Mostafa,
"Supervised Learning Based on Temporal Coding in Spiking Neural Networks", arXiv 1606.08165):
it rewards an early spike of the right class and late or no spikes of the others.
With ``train_readout_scale`` (default) the membrane term sees ``s * V``, ``s`` a trained
positive temperature starting at the output population's normalisation scale (the ANN's
logit units); it changes no prediction and is not part of the saved network. With
``distill_weight = W > 0`` and a teacher (onespike's addition) the loss gains
``W * tau**2 * KL(softmax(z / tau) || softmax(s V / tau))``, ``z`` the teacher's logits of
the same batch (:func:`distillation_loss`).

**Trained parameters.** The weight of every Linear/Conv2d inside a projection (one tensor per
layer, shared where two projections share a layer), every bias, and one threshold per
population (clamped to at least ``1e-3``). Normalisation factors, pooling and BatchNorm kept as
an :class:`~onespike.graph.Affine` node stay fixed. The result is again a
:class:`~onespike.network.SpikingNetwork`, saved by :func:`save_hybrid` as safetensors + JSON.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from onespike._fs import atomic_write_bytes, atomic_write_json, read_json
from onespike.convert.config import HybridConfig
from onespike.data import Dataset, random_flip, random_shift
from onespike.errors import ConfigError, CorruptFileError, MissingFileError, OnespikeError
from onespike.graph import (
    AdaptiveAvgPool2d,
    AvgPool2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    Node,
    PadChannels,
)
from onespike.graph import Affine as AffineNode
from onespike.io import load_state_dict_file
from onespike.network import Population, Projection, SpikingNetwork, build_network
from onespike.simulate.hybrid import encode_input, not_fired_before, run_layers
from onespike.train import Augment, TrainConfig, TrainResult, train
from onespike.validate import (
    DEFAULT_LIMITS,
    Fields,
    Limits,
    check_description_sha256,
    description_sha256,
    plain_file_name,
)

__all__ = [
    "NETWORK_FILE",
    "NETWORK_TENSORS",
    "STDBConfig",
    "STDBNet",
    "STDBResult",
    "distillation_loss",
    "finetune_stdb",
    "load_hybrid",
    "save_hybrid",
    "stdb_loss",
    "surrogate_crossing",
]

NETWORK_FILE = "network.json"
"""Description of a saved hybrid network."""
NETWORK_TENSORS = "network.safetensors"
"""Tensors of a saved hybrid network."""
BEST_TENSORS = "stdb-best.safetensors"
"""The parameters of the best validation epoch so far (early stopping)."""
STDB_RECORD = "stdb.json"
"""The STDB and hybrid options a checkpoint directory was started with."""

_FORMAT_NAME = "onespike-hybrid-network"
_FORMAT_VERSION = 2  # 2: description_sha256 covers network.json itself
_READABLE_VERSIONS = (1, 2)
_MIN_THRESHOLD = 1e-3
_MIN_LEAK = 0.05


@dataclass(frozen=True)
class STDBConfig:
    """Options of STDB fine-tuning; validated on construction.

    Attributes:
        epochs: passes over the training data, >= 1.
        batch_size: samples per optimizer step, >= 1.
        lr: peak learning rate of Adam with a cosine schedule, > 0.
        alpha: height of the surrogate gradient, > 0.
        beta: decay of the surrogate gradient with ``dt``, >= 0.
        time_loss_weight: weight of the output spike-time term of the loss, >= 0.
        train_thresholds: also train one threshold per population.
        train_leak: also train the membrane decay (one for the whole network, kept in
            ``[0.05, 1]``; the result's ``HybridConfig.leak``).
        patience: early stopping: with validation data, stop after this many epochs without
            a better validation accuracy and keep the best epoch's parameters (``None``:
            run every epoch, keep the last).
        seed: seeds the batch order and torch's global RNG, in ``[0, 2**63)``.
        train_readout_scale: multiply the output membrane by a trained temperature in the
            membrane term of the loss, starting at the output population's normalisation
            scale (so the loss sees the ANN's logit units rather than the normalised ones,
            where the cross-entropy is nearly flat). It changes no prediction: the class is
            the argmax of the membrane either way.
        shift: data augmentation: translate every training image by a random offset of up
            to ``shift`` pixels in each direction (:func:`onespike.data.random_shift`);
            0 (default) trains on the images as they are.
        flip: data augmentation: mirror every training image left to right with probability
            one half (:func:`onespike.data.random_flip`, after the shift); for classes that
            are mirror-symmetric (clothing, objects), not for digits.
        distill_weight: weight of the distillation term, ``>= 0``: the KL divergence of the
            network readout's softened class probabilities from a teacher's (the ANN the
            network was converted from, passed to :func:`finetune_stdb`), on the same
            (augmented) images (:func:`distillation_loss`); 0 (default) trains on the labels
            alone.
        distill_temperature: the softening temperature ``tau`` of both distributions, ``> 0``;
            the term is scaled by ``tau ** 2`` so its gradient keeps its size as ``tau`` grows.
    """

    epochs: int = 1
    batch_size: int = 64
    lr: float = 3e-4
    alpha: float = 1.0
    beta: float = 3.0
    time_loss_weight: float = 0.1
    train_thresholds: bool = True
    train_leak: bool = False
    patience: int | None = None
    seed: int = 0
    train_readout_scale: bool = True
    shift: int = 0
    flip: bool = False
    distill_weight: float = 0.0
    distill_temperature: float = 2.0

    def __post_init__(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("seed", 0), ("shift", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"STDBConfig.{name} must be an integer >= {low}, got {value!r}")
        if self.seed >= 2**63:
            raise ConfigError(f"STDBConfig.seed must be below 2**63, got {self.seed}")
        for name, positive in (
            ("lr", True),
            ("alpha", True),
            ("beta", False),
            ("time_loss_weight", False),
            ("distill_weight", False),
            ("distill_temperature", True),
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or (value <= 0 if positive else value < 0)
            ):
                allowed = "> 0" if positive else ">= 0"
                raise ConfigError(
                    f"STDBConfig.{name} must be a finite number {allowed}, got {value!r}"
                )
        for name in ("train_thresholds", "train_leak", "train_readout_scale", "flip"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"STDBConfig.{name} must be True or False, got {getattr(self, name)!r}"
                )
        patience = self.patience
        if patience is not None and (
            isinstance(patience, bool) or not isinstance(patience, int) or patience < 1
        ):
            raise ConfigError(
                f"STDBConfig.patience must be an integer >= 1 or None, got {patience!r}"
            )

    def train_config(self) -> TrainConfig:
        """The :class:`~onespike.train.TrainConfig` that drives the optimisation loop."""
        return TrainConfig(
            epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed
        )


class _Crossing(torch.autograd.Function):
    """``H(v - theta)`` with the STDB surrogate ``alpha * exp(-beta * |v / theta - 1|)``."""

    @staticmethod
    def forward(ctx: Any, v: Tensor, threshold: Tensor, alpha: float, beta: float) -> Tensor:
        ctx.save_for_backward(v, threshold)
        ctx.alpha, ctx.beta = alpha, beta
        return (v >= threshold).to(v.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor | None, None, None]:
        v, threshold = ctx.saved_tensors
        return _surrogate(ctx, v, threshold, grad)


def _surrogate(
    ctx: Any, v: Tensor, threshold: Tensor, grad: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor | None, None, None]:
    """``ds/dv = grad alpha exp(-beta |v / theta - 1|) / theta`` (times ``mask``), ``ds/dtheta``."""
    # one full-size temporary: |v - theta| becomes the slope in place
    slope = (v - threshold).abs_().mul_(-ctx.beta / threshold).exp_().mul_(grad)
    slope.mul_(ctx.alpha / threshold)
    if mask is not None:
        slope.mul_(mask)
    grad_threshold = None
    if ctx.needs_input_grad[1]:
        if threshold.numel() == 1:
            dot = torch.dot(slope.reshape(-1), v.reshape(-1))
            grad_threshold = (-dot / threshold).reshape(threshold.shape)
        else:
            # sum slope * v over the dimensions the threshold was broadcast along, then
            # divide by the (small) threshold: one full-size product, not three
            full = slope * v
            extra = full.ndim - threshold.ndim
            full = full.sum(dim=tuple(range(extra))) if extra else full
            keep = tuple(i for i, n in enumerate(threshold.shape) if n == 1 and full.shape[i] != 1)
            summed = full.sum(dim=keep, keepdim=True) if keep else full
            grad_threshold = -summed / threshold
    return slope, grad_threshold, None, None


class _FirstSpike(_Crossing):
    """The single-spike train from the whole membrane ``(T, B, ...)``: the first crossing of
    every neuron, with the STDB surrogate on the steps before and at its spike (none after)."""

    @staticmethod
    def forward(ctx: Any, v: Tensor, threshold: Tensor, alpha: float, beta: float) -> Tensor:
        crossed = v >= threshold
        open_ = not_fired_before(crossed)
        ctx.save_for_backward(v, threshold, open_)
        ctx.alpha, ctx.beta = alpha, beta
        return crossed.logical_and_(open_).to(v.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor | None, None, None]:
        v, threshold, open_ = ctx.saved_tensors
        return _surrogate(ctx, v, threshold, grad, open_)


def surrogate_crossing(
    v: Tensor, threshold: float | Tensor, *, alpha: float, beta: float
) -> Tensor:
    """``H(v - threshold)`` as 0/1 floats, with the STDB surrogate gradient.

    Args:
        v: membrane.
        threshold: firing threshold (a tensor receives a gradient).
        alpha: height of the surrogate.
        beta: its decay with ``dt = |v / threshold - 1|``.

    Returns:
        The crossing; backward uses ``ds/dv = alpha exp(-beta dt) / threshold`` and
        ``ds/dthreshold = -(v / threshold) ds/dv``.
    """
    theta = threshold if isinstance(threshold, Tensor) else v.new_tensor(threshold)
    out: Tensor = _Crossing.apply(v, theta, float(alpha), float(beta))
    return out


class STDBNet(nn.Module):
    """A hybrid network as a trainable module: weights, biases and thresholds as parameters.

    ``forward(x)`` runs the network's dynamics over its ``T`` steps (with the surrogate
    gradient) and returns the output membrane after the last step, ``(B, classes)``; the
    output spike trains of that call are kept in :attr:`output_spikes`, and its input images
    in :attr:`inputs`, for the loss.

    Args:
        net: a network converted with :class:`~onespike.convert.config.HybridConfig`.
        config: the STDB options (surrogate and whether thresholds train).
    """

    output_spikes: Tensor | None
    inputs: Tensor | None

    def __init__(self, net: SpikingNetwork, config: STDBConfig | None = None) -> None:
        super().__init__()
        if not isinstance(net.config, HybridConfig):
            raise ConfigError(
                "STDB fine-tuning needs a network converted with HybridConfig, got "
                f"{type(net.config).__name__}"
            )
        self.hybrid = net.config
        self.stdb = config if config is not None else STDBConfig()
        self.fanouts = net.fanouts
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.thresholds = nn.ParameterList()
        self._layers: dict[int, tuple[Node, int]] = {}  # id of an original op -> (op, index)
        self._pops: list[tuple[Population, int | None, int | None]] = []
        device = net.device  # every parameter lives where the network's tensors do
        self.leak = (
            # float64: an untrained leak comes back exactly as it went in
            nn.Parameter(torch.tensor(float(net.config.leak), dtype=torch.float64, device=device))
            if self.stdb.train_leak
            else None
        )
        for pop in net.populations:
            bias_index = threshold_index = None
            if pop.kind == "neuron":
                for proj in pop.projections:
                    for op in proj.ops:
                        if isinstance(op, (Linear, Conv2d)) and id(op) not in self._layers:
                            self._layers[id(op)] = (op, len(self.weights))
                            self.weights.append(nn.Parameter(op.weight.detach().clone().float()))
                if pop.bias is not None:
                    bias_index = len(self.biases)
                    self.biases.append(nn.Parameter(pop.bias.detach().clone().float()))
                if self.stdb.train_thresholds:
                    threshold_index = len(self.thresholds)
                    value = torch.as_tensor(pop.threshold, dtype=torch.float32, device=device)
                    value = value.detach().clone()
                    self.thresholds.append(nn.Parameter(value))
            self._pops.append((pop, bias_index, threshold_index))
        self.output_spikes = None
        self.inputs = None
        scale = float(next(p.scale for p in net.populations if p.is_output))
        self.readout_log_scale = (
            nn.Parameter(torch.tensor(math.log(scale), dtype=torch.float32, device=device))
            if self.stdb.train_readout_scale and math.isfinite(scale) and scale > 0
            else None
        )

    def _populations(self, *, trained: bool) -> list[Population]:
        """The populations with the current parameters (live tensors, or detached copies)."""

        def take(t: Tensor) -> Tensor:
            return t if trained else t.detach().clone()

        def swap(op: Node) -> Node:
            entry = self._layers.get(id(op))
            if entry is None:
                return op
            assert isinstance(op, (Linear, Conv2d))
            return replace(op, weight=take(self.weights[entry[1]]))

        out = []
        for pop, bias_index, threshold_index in self._pops:
            if pop.kind != "neuron":
                out.append(pop)
                continue
            projections = tuple(
                replace(proj, ops=tuple(swap(op) for op in proj.ops)) for proj in pop.projections
            )
            bias = take(self.biases[bias_index]) if bias_index is not None else pop.bias
            threshold: float | Tensor = pop.threshold
            if threshold_index is not None:
                clamped = self.thresholds[threshold_index].clamp(min=_MIN_THRESHOLD)
                if trained:
                    threshold = clamped
                elif clamped.ndim == 0:
                    threshold = float(clamped.detach())
                else:
                    threshold = clamped.detach().clone()
            out.append(replace(pop, projections=projections, bias=bias, threshold=threshold))
        return out

    def _fire(self, v: Tensor, threshold: float | Tensor) -> Tensor:
        theta = threshold if isinstance(threshold, Tensor) else v.new_tensor(threshold)
        out: Tensor = _FirstSpike.apply(v, theta, self.stdb.alpha, self.stdb.beta)
        return out

    def current_leak(self) -> float | Tensor:
        """The membrane decay: the trained one in ``[_MIN_LEAK, 1]``, else the network's."""
        if self.leak is None:
            return float(self.hybrid.leak)
        return self.leak.clamp(_MIN_LEAK, 1.0)

    def readout(self, membrane: Tensor) -> Tensor:
        """The output membrane as the loss sees it: times the trained temperature, if any."""
        if self.readout_log_scale is None:
            return membrane
        return membrane * self.readout_log_scale.exp()

    def forward(self, x: Tensor) -> Tensor:
        device = self.weights[0].device if len(self.weights) else x.device
        self.inputs = x
        x, times, _ = encode_input(x.to(device=device, dtype=torch.float32), self.hybrid)
        run = run_layers(
            self._populations(trained=True),
            x,
            times,
            self.hybrid,
            fire=self._fire,
            record_times=False,
            leak=self.current_leak(),
        )
        self.output_spikes = run.output_spikes.flatten(2)
        return run.membrane[-1].flatten(1)

    def to_network(self) -> SpikingNetwork:
        """The spiking network with the current weights, biases, thresholds and leak."""
        pops = tuple(self._populations(trained=False))
        config = self.hybrid
        if self.leak is not None:
            with torch.no_grad():
                config = replace(config, leak=float(self.current_leak()))
        return SpikingNetwork(config, pops, self.fanouts)


def stdb_loss(
    membrane: Tensor, output_spikes: Tensor, labels: Tensor, time_loss_weight: float
) -> Tensor:
    """The STDB loss: cross-entropy on the membrane plus the weighted spike-time term.

    Args:
        membrane: ``(B, classes)`` output membrane after the last step.
        output_spikes: ``(T, B, classes)`` 0/1 output spikes (differentiable in training).
        labels: ``(B,)`` class indices.
        time_loss_weight: weight of the spike-time term.

    Returns:
        The scalar loss.
    """
    loss = F.cross_entropy(membrane, labels)
    if time_loss_weight:
        steps = output_spikes.shape[0]
        t = torch.arange(steps, dtype=output_spikes.dtype, device=output_spikes.device)
        t = t.view(-1, 1, 1)
        spike_time = (t * output_spikes).sum(dim=0) + steps * (1.0 - output_spikes.sum(dim=0))
        loss = loss + time_loss_weight * F.cross_entropy(-spike_time, labels)
    return loss


@dataclass(frozen=True)
class STDBResult:
    """A fine-tuned hybrid network, its training history and, with early stopping, the epoch
    (1-based) whose parameters it holds."""

    net: SpikingNetwork
    history: TrainResult
    best_epoch: int | None = None


def distillation_loss(logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """``tau**2`` times the KL divergence of ``softmax(logits / tau)`` from
    ``softmax(teacher / tau)``, averaged over the batch (knowledge distillation: Hinton,
    Vinyals, Dean, "Distilling the Knowledge in a Neural Network", arXiv 1503.02531).

    Args:
        logits: ``(B, classes)`` the network's readout (differentiable).
        teacher_logits: ``(B, classes)`` the teacher's logits (constants).
        temperature: ``tau > 0``.

    Returns:
        The scalar loss, 0 where the two distributions agree. (The cross-entropy of the two
        has the same gradients; it adds the teacher's entropy, a constant.)
    """
    log_target = F.log_softmax(teacher_logits.detach() / temperature, dim=1)
    log_p = F.log_softmax(logits / temperature, dim=1)
    kl = (log_target.exp() * (log_target - log_p)).sum(dim=1).mean()
    return kl * temperature**2


def _fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, dtypes, shapes and values), to tell teachers apart."""
    digest = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _record(
    net: SpikingNetwork, config: STDBConfig, teacher: nn.Module | None = None
) -> dict[str, Any]:
    assert isinstance(net.config, HybridConfig)
    stdb = {k: v for k, v in dataclasses.asdict(config).items() if k != "epochs"}
    record: dict[str, Any] = {"stdb": stdb, "hybrid": dataclasses.asdict(net.config)}
    if teacher is not None:
        record["teacher_sha256"] = _fingerprint(teacher)
    return record


def _check_record(directory: Path, record: dict[str, Any], resume: bool) -> None:
    path = directory / STDB_RECORD
    if resume and path.is_file():
        saved = read_json(path, "delete the checkpoint directory or pass resume=False")
        if saved != record:
            raise ConfigError(
                f"the checkpoint in {directory} was started with other STDB or hybrid options "
                f"({saved} there, {record} now); only epochs may change when resuming. Use the "
                "same options, another checkpoint_dir, or resume=False"
            )
        return
    atomic_write_json(path, record)


def _augmentation(config: STDBConfig, data: Dataset) -> Augment | None:
    """The training batches' augmentation of ``config.shift`` and ``config.flip`` (checked
    against the images)."""
    if config.shift == 0 and not config.flip:
        return None
    shape = tuple(data.images.shape[1:])
    if len(shape) < 2 or config.shift >= min(shape[-2:]):
        what = (
            f"shift={config.shift} needs images larger than the shift"
            if config.shift
            else "flip=True needs images"
        )
        raise ConfigError(
            f"STDBConfig.{what}, shaped (C, H, W); the training samples have shape {shape}; "
            "use image data, a smaller shift, or no augmentation"
        )

    def augment(images: Tensor, generator: torch.Generator) -> Tensor:
        images = random_shift(images, config.shift, generator)
        return random_flip(images, generator) if config.flip else images

    return augment


def _teacher_logits(teacher: nn.Module, images: Tensor, readout: Tensor) -> Tensor:
    """The teacher's logits of ``images`` on the readout's device, checked against its shape."""
    param = next(teacher.parameters(), None)
    device = param.device if param is not None else images.device
    with torch.no_grad():
        out = teacher(images.to(device))
    if not isinstance(out, Tensor) or tuple(out.shape) != tuple(readout.shape):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ConfigError(
            f"the distillation teacher must return one logit per class, shape "
            f"{tuple(readout.shape)} like the network's readout, got {got}; pass the ANN the "
            "network was converted from"
        )
    return out.to(device=readout.device, dtype=readout.dtype)


def finetune_stdb(
    net: SpikingNetwork,
    data: Dataset,
    config: STDBConfig | None = None,
    *,
    val_data: Dataset | None = None,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    progress: bool = True,
    teacher: nn.Module | None = None,
) -> STDBResult:
    """Fine-tune a hybrid network with STDB: backpropagation through its ``T`` time steps.

    Deterministic given ``config.seed`` on the CPU; with ``checkpoint_dir`` a checkpoint is
    written after every epoch and an interrupted run resumes bit-identically
    (:func:`onespike.train.train` drives the loop).

    Args:
        net: a network converted with :class:`~onespike.convert.config.HybridConfig` (not
            modified).
        data: training images in ``[0, 1]`` and labels.
        config: the STDB options (default :class:`STDBConfig`).
        val_data: if given, the membrane readout's accuracy on it is recorded every epoch.
        checkpoint_dir: where to keep resumable per-epoch checkpoints.
        resume: continue from the checkpoint in ``checkpoint_dir`` if there is one.
        progress: show a progress bar.
        teacher: the ANN whose logits the distillation term follows (needs
            ``config.distill_weight > 0``); it runs in eval mode without gradients on the same
            (augmented) batches, and is left as it was given.

    Returns:
        The fine-tuned network (new weights in the projections' ops, new biases and
        thresholds) and the per-epoch history.

    Raises:
        ConfigError: ``net`` is not a hybrid network, the checkpoint in ``checkpoint_dir``
            was started with other options (or another teacher), ``distill_weight`` and
            ``teacher`` do not go together, or the teacher's output is not one logit per class.
    """
    config = config if config is not None else STDBConfig()
    if config.distill_weight > 0 and teacher is None:
        raise ConfigError(
            f"STDBConfig.distill_weight={config.distill_weight} needs a teacher: pass "
            "teacher=<the ANN the network was converted from>, or distill_weight=0"
        )
    if teacher is not None and config.distill_weight == 0:
        raise ConfigError(
            "a teacher was given but STDBConfig.distill_weight is 0, so it would be ignored: "
            "set distill_weight > 0 (e.g. 1.0) or leave the teacher out"
        )
    model = STDBNet(net, config)
    if checkpoint_dir is not None:
        _check_record(Path(checkpoint_dir), _record(net, config, teacher), resume)

    def loss_fn(membrane: Tensor, labels: Tensor) -> Tensor:
        assert model.output_spikes is not None
        readout = model.readout(membrane)
        loss = stdb_loss(readout, model.output_spikes, labels, config.time_loss_weight)
        if teacher is None:
            return loss
        assert model.inputs is not None
        teacher_logits = _teacher_logits(teacher, model.inputs, readout)
        return loss + config.distill_weight * distillation_loss(
            readout, teacher_logits, config.distill_temperature
        )

    best_file = Path(checkpoint_dir) / BEST_TENSORS if checkpoint_dir is not None else None
    best: dict[str, Tensor] = {}

    def on_epoch(result: TrainResult) -> bool:
        """Early stopping: keep the best validation epoch, stop ``patience`` epochs after."""
        if config.patience is None or val_data is None:
            return False
        scores = [float(h["val_accuracy"]) for h in result.history]
        top = max(range(len(scores)), key=lambda i: (scores[i], -i))
        if top == len(scores) - 1:
            best.clear()
            best.update({k: v.detach().clone() for k, v in model.state_dict().items()})
            if best_file is not None:
                atomic_write_bytes(best_file, safetensors.torch.save(best))
        return len(scores) - 1 - top >= config.patience

    was_training = teacher.training if teacher is not None else False
    try:
        if teacher is not None:
            teacher.eval()
        history = train(
            model,
            data,
            config.train_config(),
            val_ds=val_data,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            progress=progress,
            loss_fn=loss_fn,
            on_epoch=on_epoch,
            augment=_augmentation(config, data),
        )
    finally:
        if teacher is not None:
            teacher.train(was_training)
    best_epoch: int | None = None
    if config.patience is not None and val_data is not None:
        if not best and best_file is not None and best_file.is_file():
            best = safetensors.torch.load(best_file.read_bytes())
        if best:
            model.load_state_dict(best)
            scores = [float(h["val_accuracy"]) for h in history.history]
            best_epoch = 1 + max(range(len(scores)), key=lambda i: (scores[i], -i))
    model.eval()
    return STDBResult(model.to_network(), history, best_epoch)


# save and load ---------------------------------------------------------------------------------
def _op_record(op: Node, key: str, tensors: dict[str, Tensor]) -> dict[str, Any]:
    def put(name: str, t: Tensor | None) -> str | None:
        if t is None:
            return None
        tensors[f"{key}.{name}"] = t.detach().to("cpu").float().contiguous().clone()
        return f"{key}.{name}"

    if isinstance(op, Linear):
        return {"type": "Linear", "weight": put("weight", op.weight), "bias": put("bias", op.bias)}
    if isinstance(op, Conv2d):
        return {
            "type": "Conv2d",
            "weight": put("weight", op.weight),
            "bias": put("bias", op.bias),
            "stride": list(op.stride),
            "padding": list(op.padding),
            "dilation": list(op.dilation),
            "groups": op.groups,
        }
    if isinstance(op, AvgPool2d):
        return {
            "type": "AvgPool2d",
            "kernel_size": list(op.kernel_size),
            "stride": list(op.stride),
            "padding": list(op.padding),
        }
    if isinstance(op, AdaptiveAvgPool2d):
        return {"type": "AdaptiveAvgPool2d", "output_size": list(op.output_size)}
    if isinstance(op, PadChannels):
        return {"type": "PadChannels", "before": op.before, "after": op.after}
    if isinstance(op, Flatten):
        return {"type": "Flatten"}
    if isinstance(op, AffineNode):
        return {"type": "Affine", "scale": put("scale", op.scale), "shift": put("shift", op.shift)}
    raise ConfigError(f"cannot save a projection through {type(op).__name__}")


def save_hybrid(
    directory: str | os.PathLike[str], net: SpikingNetwork, *, extra: dict[str, Any] | None = None
) -> Path:
    """Write a hybrid network as ``network.safetensors`` + ``network.json``, atomically, JSON last.

    Args:
        directory: destination directory (created if missing; the two files are replaced).
        net: a network converted with :class:`~onespike.convert.config.HybridConfig`, e.g. the
            result of :func:`finetune_stdb`.
        extra: JSON-serialisable information to keep with it (dataset, accuracy, ...).

    Returns:
        The directory.
    """
    if not isinstance(net.config, HybridConfig):
        raise ConfigError(
            f"save_hybrid saves HybridConfig networks, got {type(net.config).__name__}"
        )
    tensors: dict[str, Tensor] = {}
    ops: dict[str, dict[str, Any]] = {}
    keys: dict[int, str] = {}
    pops: list[dict[str, Any]] = []
    for index, pop in enumerate(net.populations):
        projections = []
        for proj in pop.projections:
            names = []
            for op in proj.ops:
                if id(op) not in keys:  # an op shared by two projections is stored once
                    keys[id(op)] = f"op{len(keys)}"
                    ops[keys[id(op)]] = _op_record(op, keys[id(op)], tensors)
                names.append(keys[id(op)])
            projections.append(
                {"source": proj.source, "ops": names, "factor": proj.factor, "delay": proj.delay}
            )
        threshold: Any = pop.threshold
        if isinstance(threshold, Tensor):
            tensors[f"pop{index}.threshold"] = threshold.detach().float().contiguous().clone()
            threshold = {"tensor": f"pop{index}.threshold"}
        bias = None
        if pop.bias is not None:
            bias = f"pop{index}.bias"
            tensors[bias] = pop.bias.detach().float().contiguous().clone()
        pool = None
        if pop.pool is not None:
            pool = {
                "kernel_size": list(pop.pool.kernel_size),
                "stride": list(pop.pool.stride),
                "padding": list(pop.pool.padding),
            }
        pops.append(
            {
                "name": pop.name,
                "kind": pop.kind,
                "shape": list(pop.shape),
                "projections": projections,
                "bias": bias,
                "pool": pool,
                "scale": pop.scale,
                "depth": pop.depth,
                "is_output": pop.is_output,
                "ann_relu": pop.ann_relu,
                "ann_max": pop.ann_max,
                "threshold": threshold,
            }
        )
    data = safetensors.torch.save(tensors, metadata={"format": "pt"})
    record = {
        "format": _FORMAT_NAME,
        "format_version": _FORMAT_VERSION,
        "config": dataclasses.asdict(net.config),
        "populations": pops,
        "ops": ops,
        "extra": extra if extra is not None else {},
        "tensors_file": NETWORK_TENSORS,
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    try:
        json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the network's description must be JSON-serialisable: {exc}") from exc
    record["description_sha256"] = description_sha256(record)
    out = Path(directory)
    atomic_write_bytes(out / NETWORK_TENSORS, data)
    atomic_write_json(out / NETWORK_FILE, record)
    return out


def _tensor(
    fields: Fields, key: str, tensors: dict[str, Tensor], *, optional: bool = False
) -> Tensor | None:
    """The finite tensor that field ``key`` names in the tensor file."""
    name = fields.raw(key)
    if name is None and optional:
        return None
    if not isinstance(name, str) or name not in tensors:
        raise fields.fail(key, f"names tensor {name!r}, which the tensor file does not hold")
    tensor = tensors[name]
    if not tensor.is_floating_point() or not bool(torch.isfinite(tensor).all()):
        raise fields.fail(key, f"names tensor {name!r}, which holds NaN or infinite values")
    return tensor


_OP_TYPES = (
    "Linear",
    "Conv2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "PadChannels",
    "Flatten",
    "Affine",
)


def _load_op(fields: Fields, tensors: dict[str, Tensor], limits: Limits) -> Node:
    kind = fields.string("type", choices=_OP_TYPES)
    if kind in ("Linear", "Conv2d"):
        weight = _tensor(fields, "weight", tensors)
        assert weight is not None
        bias = _tensor(fields, "bias", tensors, optional=True)
        if kind == "Linear":
            return Linear(weight, bias)
        return Conv2d(
            weight,
            bias,
            fields.pair("stride", low=1),
            fields.pair("padding"),
            fields.pair("dilation", low=1),
            fields.integer("groups", low=1, high=limits.max_width),
        )
    if kind == "AvgPool2d":
        return AvgPool2d(
            fields.pair("kernel_size", low=1), fields.pair("stride", low=1), fields.pair("padding")
        )
    if kind == "AdaptiveAvgPool2d":
        return AdaptiveAvgPool2d(fields.pair("output_size", low=1))
    if kind == "PadChannels":
        return PadChannels(
            fields.integer("before", low=0, high=limits.max_width),
            fields.integer("after", low=0, high=limits.max_width),
        )
    if kind == "Flatten":
        return Flatten()
    scale = _tensor(fields, "scale", tensors)
    shift = _tensor(fields, "shift", tensors)
    assert scale is not None
    assert shift is not None
    return AffineNode(scale, shift)


def _load_population(
    fields: Fields,
    ops: dict[str, Node],
    tensors: dict[str, Tensor],
    delays: dict[tuple[str, str], int],
    limits: Limits,
) -> Population:
    name = fields.string("name")
    projections = []
    for number, item in enumerate(fields.items("projections", most=limits.max_layers)):
        proj = Fields(item, fields.path, f"{fields.where}.projections[{number}]", fields.fix)
        source = proj.string("source")
        names = proj.items("ops", most=limits.max_layers)
        missing = [op for op in names if not isinstance(op, str) or op not in ops]
        if missing:
            raise proj.fail("ops", f"names operations {missing[:4]} that 'ops' does not define")
        factor = proj.number("factor")
        assert factor is not None
        projections.append(Projection(source, tuple(ops[op] for op in names), factor))
        delays[(name, source)] = proj.integer("delay", low=0, high=limits.max_steps)
    threshold: Any = fields.raw("threshold")
    if isinstance(threshold, dict):
        threshold = _tensor(
            Fields(threshold, fields.path, fields.where, fields.fix), "tensor", tensors
        )
        assert threshold is not None
        if not bool((threshold > 0).all()):
            raise fields.fail("threshold", "holds thresholds that are not positive")
    else:
        threshold = fields.number("threshold", positive=True)
    pool = None
    if fields.get("pool") is not None:
        spec = fields.child("pool")
        pool = MaxPool2d(
            spec.pair("kernel_size", low=1), spec.pair("stride", low=1), spec.pair("padding")
        )
    shape = fields.shape("shape", limits.max_values)
    bias = _tensor(fields, "bias", tensors, optional=True)
    if bias is not None and tuple(bias.shape) != shape:
        raise fields.fail("bias", f"has shape {tuple(bias.shape)}, not the population's {shape}")
    scale = fields.number("scale", positive=True)
    assert scale is not None
    return Population(
        name=name,
        kind=fields.string("kind", choices=("input", "neuron", "maxpool")),  # type: ignore[arg-type]
        shape=shape,
        projections=tuple(projections),
        bias=bias,
        pool=pool,
        scale=scale,
        depth=fields.integer("depth", low=0, high=limits.max_layers),
        is_output=fields.boolean("is_output"),
        ann_relu=fields.boolean("ann_relu"),
        ann_max=fields.number("ann_max", positive=True, optional=True)
        if fields.has("ann_max")
        else None,
        threshold=threshold,
    )


def load_hybrid(
    directory: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS
) -> tuple[SpikingNetwork, dict[str, Any]]:
    """Read a network written by :func:`save_hybrid`; nothing is unpickled.

    Every field of ``network.json`` is validated before the network is built
    (:mod:`onespike.validate`): types, finite and positive thresholds and scales, tensors that
    exist and are finite, bounded shapes and delays, and a tensor file named inside the
    directory. Version 2 files also carry the checksum of the description itself, so an
    edited ``network.json`` is refused as an edited tensor file is.

    Args:
        directory: the directory holding ``network.json`` and ``network.safetensors``.
        limits: upper bounds on the sizes the description may declare.

    Returns:
        ``(net, extra)``: the spiking network (it simulates exactly as the saved one) and the
        ``extra`` information saved with it.

    Raises:
        MissingFileError: a file is missing.
        CorruptFileError: a file is malformed, fails its SHA-256, or describes an invalid
            network.
    """
    root = Path(directory)
    path = root / NETWORK_FILE
    if not path.is_file():
        raise MissingFileError(
            f"{path} does not exist; save a hybrid network with onespike.save_hybrid(directory, "
            "net) or `onespike train --method hybrid`"
        )
    fix = "save the network again with onespike.save_hybrid"
    record = read_json(path, fix)
    if not isinstance(record, dict) or record.get("format") != _FORMAT_NAME:
        raise CorruptFileError(f"{path} is not a onespike hybrid network description")
    version = record.get("format_version")
    if version not in _READABLE_VERSIONS:
        raise CorruptFileError(
            f"{path} has format_version {version!r}; this onespike reads "
            f"{', '.join(map(str, _READABLE_VERSIONS))}"
        )
    fields = Fields(record, path, "network.json", fix)
    if version >= 2:
        check_description_sha256(record, path, fix)
    tensors_file = plain_file_name(
        record.get("tensors_file", NETWORK_TENSORS), f"{path}: network.json.tensors_file", fix
    )
    tensors = load_state_dict_file(root / tensors_file, sha256=fields.sha256("sha256"))
    config_fields = fields.child("config")
    try:
        config = HybridConfig(**config_fields.record)
    except (TypeError, OnespikeError) as exc:
        raise config_fields.fail("", f"is not a valid HybridConfig ({exc})") from exc
    if config.steps > limits.max_steps:
        raise config_fields.fail("steps", f"is {config.steps}, above the bound {limits.max_steps}")
    op_records = fields.raw("ops")
    if not isinstance(op_records, dict) or len(op_records) > limits.max_layers:
        raise fields.fail("ops", f"must be an object of at most {limits.max_layers} operations")
    ops = {
        str(key): _load_op(Fields(op, path, f"network.json.ops.{key}", fix), tensors, limits)
        for key, op in op_records.items()
    }
    pops: list[Population] = []
    delays: dict[tuple[str, str], int] = {}  # (target, source) -> delay
    for index, entry in enumerate(fields.items("populations", most=limits.max_layers)):
        entry_fields = Fields(entry, path, f"network.json.populations[{index}]", fix)
        pops.append(_load_population(entry_fields, ops, tensors, delays, limits))
    extra = record.get("extra") or {}
    if not isinstance(extra, dict):
        raise fields.fail("extra", "must be a JSON object")
    try:
        net = build_network(pops, config, lambda source, target: delays[(target.name, source.name)])
    except (KeyError, TypeError, ValueError, RuntimeError, OnespikeError) as exc:
        raise CorruptFileError(f"{path} describes an invalid network: {exc!r}; {fix}") from exc
    return net, extra
