"""Model definitions: the MLP, the Quartz MNIST ConvNet, small and deep VGGs, a ResNet-20, and a
name registry.

Every model is a plain :class:`torch.nn.Module` built from layer modules (``nn.ReLU``,
``nn.Flatten``, ...) rather than functional calls, so :func:`onespike.extract` sees each layer
when it traces the network with torch.fx. :class:`ModelSpec` records how a model was built, so
:mod:`onespike.io` can rebuild the architecture before loading weights into it.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from onespike.binary import binarize
from onespike.errors import ConfigError, CorruptFileError

__all__ = [
    "MLP",
    "MODELS",
    "BasicBlock",
    "ConvNetBN",
    "ModelSpec",
    "Normalize",
    "QuartzConvNet",
    "ResNet20",
    "VGG11Slim",
    "VGGSmall",
    "build_model",
]


class Normalize(nn.Module):
    """Per-channel input normalisation ``(x - mean) / std`` for ``(N, C, ...)`` inputs.

    ``mean`` and ``std`` are stored as buffers of shape ``(C, 1, 1)``, so they travel with the
    state dict. :func:`onespike.extract` folds this module into the first layer where it can.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Create the normalisation.

        Args:
            mean: per-channel mean, one value per input channel.
            std: per-channel standard deviation, same length as ``mean``, every value > 0.

        Raises:
            ConfigError: the lengths differ, are zero, or a value is not finite or ``std <= 0``.
        """
        super().__init__()
        means = [float(m) for m in mean]
        stds = [float(s) for s in std]
        if not means or len(means) != len(stds):
            raise ConfigError(
                f"Normalize needs mean and std of the same non-zero length, got {len(means)} "
                f"and {len(stds)}"
            )
        if not all(math.isfinite(v) for v in means + stds):
            raise ConfigError(f"Normalize mean and std must be finite, got {means} and {stds}")
        if any(s <= 0 for s in stds):
            raise ConfigError(f"Normalize std must be > 0 for every channel, got {stds}")
        self.register_buffer("mean", torch.tensor(means, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("std", torch.tensor(stds, dtype=torch.float32).view(-1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` of shape ``(N, C, H, W)`` channel by channel."""
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        """Show the per-channel values."""
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class MLP(nn.Module):
    """A fully connected ReLU network: ``Flatten`` then ``Linear``/``ReLU`` blocks.

    With the defaults and 784 inputs this is the 784-500-500-10 MNIST network.
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int] = (500, 500),
        num_classes: int = 10,
        dropout: float = 0.0,
    ) -> None:
        """Create the network.

        Args:
            in_features: number of input values per sample (``C * H * W``).
            hidden: widths of the hidden layers; may be empty (a linear classifier).
            num_classes: number of outputs.
            dropout: dropout probability after each hidden ReLU; ``0`` adds no Dropout layer.

        Raises:
            ConfigError: a width is not positive or ``dropout`` is outside ``[0, 1)``.
        """
        super().__init__()
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise ConfigError(f"hidden must be a list of layer widths, got {hidden!r}")
        _check_positive("in_features", in_features)
        _check_positive("num_classes", num_classes)
        for w in hidden:
            _check_positive("hidden width", w)
        widths = [int(w) for w in hidden]
        _check_dropout(dropout)
        layers: list[nn.Module] = [nn.Flatten()]
        previous = int(in_features)
        for width in widths:
            layers += [nn.Linear(previous, width), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            previous = width
        layers.append(nn.Linear(previous, int(num_classes)))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(N, num_classes)`` for ``x`` of shape ``(N, ...)``."""
        return self.layers(x)


class QuartzConvNet(nn.Module):
    """The MNIST ConvNet of the Quartz paper (arXiv 2309.16795); needs ``28 x 28`` input.

    ``Conv(6, 5x5) ReLU MaxPool(2)``, ``Conv(12, 5x5) ReLU MaxPool(2)``, ``Conv(120, 4x4) ReLU``,
    ``Flatten``, ``Linear(120, num_classes)``.
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10) -> None:
        """Create the network.

        Args:
            in_channels: number of input channels.
            num_classes: number of outputs.

        Raises:
            ConfigError: a count is not positive.
        """
        super().__init__()
        _check_positive("in_channels", in_channels)
        _check_positive("num_classes", num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(int(in_channels), 6, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 12, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(12, 120, 4),
            nn.ReLU(),
        )
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(120, int(num_classes)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(N, num_classes)`` for ``x`` of shape ``(N, C, 28, 28)``."""
        return self.classifier(self.features(x))


class ConvNetBN(nn.Module):
    """A wider 28x28 ConvNet with BatchNorm, for the TTFS-aware benchmarks.

    ``[Conv(w, 5x5, pad 2) BN ReLU MaxPool(2)]`` for each width, then ``Flatten``,
    ``Dropout``, ``Linear(hidden)``, ``ReLU``, ``Linear(num_classes)``.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32),
        hidden: int = 128,
        dropout: float = 0.2,
    ) -> None:
        """Create the network.

        Args:
            in_channels: number of input channels.
            num_classes: number of outputs.
            widths: channels of the two convolution blocks.
            hidden: width of the hidden fully connected layer.
            dropout: dropout before the classifier.

        Raises:
            ConfigError: a count is not positive or dropout is outside ``[0, 1)``.
        """
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("hidden", hidden),
            *(("widths", w) for w in widths),
        ):
            _check_positive(name, value)
        _check_dropout(dropout)
        layers: list[nn.Module] = []
        channels = int(in_channels)
        for width in widths:
            layers += [
                nn.Conv2d(channels, int(width), 5, padding=2, bias=False),
                nn.BatchNorm2d(int(width)),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = int(width)
        self.features = nn.Sequential(*layers)
        side = 28 // 2 ** len(widths)
        head: list[nn.Module] = [nn.Flatten()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head += [
            nn.Linear(channels * side * side, int(hidden)),
            nn.ReLU(),
            nn.Linear(int(hidden), int(num_classes)),
        ]
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(N, num_classes)`` for ``x`` of shape ``(N, C, 28, 28)``."""
        return self.classifier(self.features(x))


class VGGSmall(nn.Module):
    """A small VGG for ``32 x 32`` input: per width, two ``Conv3x3-BN-ReLU`` then ``MaxPool(2)``.

    The classifier is ``Flatten``, ``Dropout``, ``Linear(widths[-1] * 4 * 4, num_classes)``, so
    ``widths`` must have three entries (three poolings take 32 to 4).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 128),
        dropout: float = 0.1,
    ) -> None:
        """Create the network.

        Args:
            in_channels: number of input channels.
            num_classes: number of outputs.
            widths: channel count of each of the three stages.
            dropout: dropout probability before the classifier; ``0`` adds no Dropout layer.

        Raises:
            ConfigError: ``widths`` does not have three positive entries, a count is not
                positive, or ``dropout`` is outside ``[0, 1)``.
        """
        super().__init__()
        stage_widths = [int(w) for w in widths]
        if len(stage_widths) != 3:
            raise ConfigError(
                f"VGGSmall needs exactly 3 widths (32x32 input pooled to 4x4), got {stage_widths}"
            )
        _check_positive("in_channels", in_channels)
        _check_positive("num_classes", num_classes)
        for w in stage_widths:
            _check_positive("width", w)
        _check_dropout(dropout)
        layers: list[nn.Module] = []
        previous = int(in_channels)
        for width in stage_widths:
            for _ in range(2):
                layers += [
                    nn.Conv2d(previous, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(),
                ]
                previous = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(previous * 4 * 4, int(num_classes)))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(N, num_classes)`` for ``x`` of shape ``(N, C, 32, 32)``."""
        return self.classifier(self.features(x))


class BasicBlock(nn.Module):
    """The basic residual block of He et al. ("Deep Residual Learning for Image Recognition",
    arXiv 1512.03385): ``relu(BN(conv3x3(relu(BN(conv3x3(x))))) + shortcut(x))``.

    The shortcut is the identity when shape is kept, else a projection ``BN(conv1x1(x))`` with
    the block's stride (the paper's option B). Each ReLU is its own module, so that tools that
    swap activations by module name (:func:`onespike.optimize.prepare_ttfs_aware`) see both.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        """Create the block.

        Args:
            in_channels: channels of the block input.
            out_channels: channels of the block output.
            stride: stride of the first convolution (and of the projection shortcut).

        Raises:
            ConfigError: a count or the stride is not a positive integer.
        """
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
            _check_positive(name, value)
        _check_positive("stride", stride)
        cin, cout, step = int(in_channels), int(out_channels), int(stride)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=step, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module = (
            nn.Identity()
            if step == 1 and cin == cout
            else nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=step, bias=False), nn.BatchNorm2d(cout)
            )
        )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the block output for ``x`` of shape ``(N, in_channels, H, W)``."""
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return self.relu2(out)


class ResNet20(nn.Module):
    """The CIFAR-style ResNet-20 of He et al. (arXiv 1512.03385, section 4.2), for ``28 x 28``.

    ``Conv3x3(16) BN ReLU``, three stages of three :class:`BasicBlock` with 16, 32 and 64
    channels (the first block of stages 2 and 3 has stride 2 and a projection shortcut), global
    average pooling, ``Flatten``, ``Linear(64, num_classes)``: 19 convolutions and one dense
    layer. On ``28 x 28`` input the stages run at 28, 14 and 7 pixels, and the global pooling is
    ``AvgPool2d(7)`` (a fixed window, which :func:`onespike.extract` maps directly).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64),
        blocks: int = 3,
    ) -> None:
        """Create the network.

        Args:
            in_channels: number of input channels.
            num_classes: number of outputs.
            widths: channels of the three stages.
            blocks: basic blocks per stage (3 gives ResNet-20: ``6 * blocks + 2`` layers).

        Raises:
            ConfigError: ``widths`` does not have three positive entries or a count is not
                positive.
        """
        super().__init__()
        stage_widths = [int(w) for w in widths]
        if len(stage_widths) != 3:
            raise ConfigError(
                f"ResNet20 needs exactly 3 widths (stages at 28, 14 and 7 pixels), got "
                f"{stage_widths}"
            )
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("blocks", blocks),
            *(("widths", w) for w in stage_widths),
        ):
            _check_positive(name, value)
        self.stem = nn.Sequential(
            nn.Conv2d(int(in_channels), stage_widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(stage_widths[0]),
            nn.ReLU(),
        )
        stages: list[nn.Module] = []
        previous = stage_widths[0]
        for index, width in enumerate(stage_widths):
            layers = []
            for block in range(int(blocks)):
                stride = 2 if index > 0 and block == 0 else 1
                layers.append(BasicBlock(previous, width, stride))
                previous = width
            stages.append(nn.Sequential(*layers))
        self.stage1, self.stage2, self.stage3 = stages
        self.pool = nn.AvgPool2d(kernel_size=7)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(previous, int(num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(N, num_classes)`` for ``x`` of shape ``(N, C, 28, 28)``."""
        out = self.stage3(self.stage2(self.stage1(self.stem(x))))
        return self.fc(self.flatten(self.pool(out)))


# VGG-11 (configuration "A" of Simonyan & Zisserman, "Very Deep Convolutional Networks for
# Large-Scale Image Recognition", arXiv 1409.1556): the convolutions after which it pools.
_VGG11_POOL_AFTER = (0, 1, 3, 5, 7)


class VGG11Slim(nn.Module):
    """VGG-11 with BatchNorm at a quarter of the usual width, for ``28 x 28`` input.

    Eight ``Conv3x3-BN-ReLU`` layers of 16-32-64-64-128-128-128-128 channels with a
    ``MaxPool(2)`` after the 1st, 2nd, 4th, 6th and 8th (VGG-11's configuration A, a quarter
    of 64-128-256-256-512-512-512-512), then ``Flatten``, two
    ``Linear(128)-ReLU`` layers with dropout and ``Linear(num_classes)``: 11 weight layers. Five
    halvings do not fit 28 pixels exactly, so the third pooling pads by one (7 to 4 pixels;
    padded positions never win a maximum): 28, 14, 7, 4, 2, 1.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (16, 32, 64, 64, 128, 128, 128, 128),
        hidden: int = 128,
        dropout: float = 0.2,
    ) -> None:
        """Create the network.

        Args:
            in_channels: number of input channels.
            num_classes: number of outputs.
            widths: channels of the eight convolutions.
            hidden: width of the two hidden dense layers.
            dropout: dropout probability before each hidden dense layer; ``0`` adds none.

        Raises:
            ConfigError: ``widths`` does not have eight positive entries, a count is not
                positive, or ``dropout`` is outside ``[0, 1)``.
        """
        super().__init__()
        conv_widths = [int(w) for w in widths]
        if len(conv_widths) != 8:
            raise ConfigError(f"VGG11Slim needs exactly 8 widths, got {conv_widths}")
        for name, value in (
            ("in_channels", in_channels),
            ("num_classes", num_classes),
            ("hidden", hidden),
            *(("widths", w) for w in conv_widths),
        ):
            _check_positive(name, value)
        _check_dropout(dropout)
        layers: list[nn.Module] = []
        previous = int(in_channels)
        for index, width in enumerate(conv_widths):
            layers += [
                nn.Conv2d(previous, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            previous = width
            if index in _VGG11_POOL_AFTER:
                # The third pooling pads: 7 pixels to 4 (padded positions never win).
                third = index == _VGG11_POOL_AFTER[2]
                layers.append(nn.MaxPool2d(2, padding=1 if third else 0))
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.Flatten()]
        for width in (int(hidden), int(hidden)):
            if dropout > 0:
                head.append(nn.Dropout(dropout))
            head += [nn.Linear(previous, width), nn.ReLU()]
            previous = width
        head.append(nn.Linear(previous, int(num_classes)))
        self.classifier = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits ``(N, num_classes)`` for ``x`` of shape ``(N, C, 28, 28)``."""
        return self.classifier(self.features(x))


MAX_WIDTH = 1 << 16
"""The widest layer (and the most classes) a registry model accepts: far above any network
onespike is used with, low enough that a mistyped width fails here, not in the allocator."""


def _check_positive(name: str, value: object) -> None:
    """An integer (a float only if integral, e.g. 500.0) in ``[1, MAX_WIDTH]``."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or int(value) != value
        or not 1 <= int(value) <= MAX_WIDTH
    ):
        raise ConfigError(f"{name} must be an integer in [1, {MAX_WIDTH}], got {value!r}")


def _check_dropout(p: object) -> None:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) < 1.0:
        raise ConfigError(f"dropout must be a number in [0, 1), got {p!r}")


def _build_mlp(input_shape: tuple[int, int, int], num_classes: int, **kwargs: Any) -> nn.Module:
    c, h, w = input_shape
    return MLP(c * h * w, num_classes=num_classes, **kwargs)


def _convnet_builder(
    name: str, cls: Callable[..., nn.Module], side: int
) -> Callable[..., nn.Module]:
    """The builder of a convolutional registry model that takes ``(C, side, side)`` input."""

    def build(input_shape: tuple[int, int, int], num_classes: int, **kwargs: Any) -> nn.Module:
        c, h, w = input_shape
        if (h, w) != (side, side):
            raise ConfigError(
                f"{name} needs (C, {side}, {side}) input, got {input_shape}; use 'mlp' for other "
                "sizes"
            )
        return cls(in_channels=c, num_classes=num_classes, **kwargs)

    return build


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _build_mlp,
    "quartz-convnet": _convnet_builder("quartz-convnet", QuartzConvNet, 28),
    "convnet-bn": _convnet_builder("convnet-bn", ConvNetBN, 28),
    "vgg-small": _convnet_builder("vgg-small", VGGSmall, 32),
    "resnet20": _convnet_builder("resnet20", ResNet20, 28),
    "vgg11-slim": _convnet_builder("vgg11-slim", VGG11Slim, 28),
}
"""Architecture name -> builder ``(input_shape, num_classes, **kwargs) -> nn.Module``."""


def _unknown_model(name: object) -> ConfigError:
    return ConfigError(f"unknown model {name!r}; choose one of {', '.join(sorted(MODELS))}")


def _as_input_shape(shape: object, error: type[Exception]) -> tuple[int, int, int]:
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 3
        or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shape)
    ):
        raise error(f"input_shape must be three positive integers (C, H, W), got {shape!r}")
    return (int(shape[0]), int(shape[1]), int(shape[2]))


@dataclass(frozen=True)
class ModelSpec:
    """How a model was built: enough to rebuild its architecture before loading weights.

    Attributes:
        name: a key of :data:`MODELS`.
        input_shape: ``(C, H, W)`` of one input sample.
        num_classes: number of outputs.
        kwargs: extra keyword arguments of the model constructor (JSON-serialisable).
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict; :meth:`from_json` reverses it.

        Returns:
            ``{"name", "input_shape", "num_classes", "kwargs"}`` with tuples as lists.
        """
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "kwargs": json.loads(json.dumps(self.kwargs)),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelSpec:
        """Rebuild a spec from :meth:`to_json` output, validating every field.

        Args:
            d: the dict read from a model file.

        Returns:
            The spec.

        Raises:
            CorruptFileError: a key is missing or has the wrong type.
            ConfigError: the architecture name is not in :data:`MODELS`.
        """
        if not isinstance(d, Mapping):
            raise CorruptFileError(f"model spec must be a JSON object, got {type(d).__name__}")
        missing = [k for k in ("name", "input_shape", "num_classes") if k not in d]
        if missing:
            raise CorruptFileError(f"model spec is missing {', '.join(missing)}: {dict(d)!r}")
        name = d["name"]
        if not isinstance(name, str):
            raise CorruptFileError(f"model spec 'name' must be a string, got {name!r}")
        if name not in MODELS:
            raise _unknown_model(name)
        shape = _as_input_shape(d["input_shape"], CorruptFileError)
        num_classes = d["num_classes"]
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise CorruptFileError(
                f"model spec 'num_classes' must be a positive integer, got {num_classes!r}"
            )
        kwargs = d.get("kwargs", {})
        if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
            raise CorruptFileError(f"model spec 'kwargs' must be an object, got {kwargs!r}")
        return cls(name, shape, num_classes, dict(kwargs))

    def build(self) -> nn.Module:
        """Build a freshly initialised model of this architecture.

        Returns:
            The model (weights from torch's global RNG; load a state dict to restore one).

        Raises:
            ConfigError: the name is unknown or the input shape does not suit the architecture.
        """
        builder = MODELS.get(self.name)
        if builder is None:
            raise _unknown_model(self.name)
        kwargs = dict(self.kwargs)
        binary = kwargs.pop("binary", False)
        if not isinstance(binary, bool):
            raise ConfigError(f"model argument binary must be true or false, got {binary!r}")
        try:
            model = builder(self.input_shape, self.num_classes, **kwargs)
        except TypeError as exc:  # an unexpected keyword argument
            raise ConfigError(f"bad arguments for model {self.name!r}: {exc}") from exc
        return binarize(model) if binary else model


def build_model(
    name: str, input_shape: Sequence[int], num_classes: int, **kwargs: Any
) -> tuple[nn.Module, ModelSpec]:
    """Build a model by registry name and return it with the spec that rebuilds it.

    Args:
        name: a key of :data:`MODELS`: ``"mlp"``, ``"quartz-convnet"``, ``"convnet-bn"``,
            ``"vgg-small"``, ``"resnet20"`` or ``"vgg11-slim"``.
        input_shape: ``(C, H, W)`` of one sample; ``"mlp"`` infers its input width from it,
            ``"vgg-small"`` needs ``H = W = 32`` and the others ``H = W = 28``.
        num_classes: number of outputs.
        **kwargs: passed to the model constructor (e.g. ``hidden=(100,)`` for the MLP); must be
            JSON-serialisable so the spec can be saved. ``binary=True`` makes the hidden weight
            layers binary (:func:`onespike.binary.binarize`).

    Returns:
        ``(model, spec)``.

    Raises:
        ConfigError: unknown name, unsuitable input shape, or bad constructor arguments.
    """
    if name not in MODELS:
        raise _unknown_model(name)
    try:
        dims = tuple(operator.index(s) for s in input_shape)
    except TypeError:
        dims = tuple(input_shape)  # reported below
    shape = _as_input_shape(dims, ConfigError)
    try:  # store kwargs as their JSON form (tuples become lists) so specs round-trip exactly
        plain = json.loads(json.dumps(kwargs))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model arguments must be JSON-serialisable: {exc}") from exc
    spec = ModelSpec(name, shape, int(num_classes), plain)
    return spec.build(), spec
