"""Binary-weight layers, trained with a straight-through estimator.

A binary layer keeps a real-valued latent weight ``W`` and computes with
``W_b = sign(W) * alpha``, one ``alpha = mean |W|`` per output channel (the scaling of
XNOR-Net, Rastegari et al., arXiv 1603.05279, as used for binary SNNs by Lu & Sengupta,
"Exploring the Connection Between Binary and Spiking Neural Networks", Front. Neurosci. 2020,
doi 10.3389/fnins.2020.00535). ``sign(0)`` is taken as ``+1`` so that every binary weight is
exactly ``+alpha`` or ``-alpha``.

The gradient of ``sign`` is the straight-through estimator clipped to ``|W| <= 1``
(Courbariaux et al., "Binarized Neural Networks", arXiv 1602.02830): ``dW_b/dW = alpha`` where
``|W| <= 1`` and 0 elsewhere, plus the gradient through ``alpha``.

:func:`binarize` swaps the hidden weight layers of a model for binary ones in place; the first
and the last weight layer stay full precision (binarising them costs the most accuracy for the
fewest operations). The graph extractor reads a binary layer's ``W_b``, and
:class:`~onespike.convert.config.RateConfig` with ``binary=True`` stores those synapses as
exactly +-1 with ``alpha`` folded into the thresholds.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from onespike.errors import ConfigError

__all__ = ["BinaryConv2d", "BinaryLinear", "binarize", "binary_weight", "is_binary"]


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, w: Tensor) -> Tensor:
        ctx.save_for_backward(w)
        return torch.where(w >= 0, torch.ones_like(w), -torch.ones_like(w))

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (w,) = ctx.saved_tensors
        return grad * (w.abs() <= 1).to(grad.dtype)


def binary_weight(w: Tensor) -> Tensor:
    """``sign(w) * alpha`` with ``alpha`` the mean ``|w|`` of each output channel (dim 0)."""
    alpha = w.abs().mean(dim=tuple(range(1, w.ndim)), keepdim=True)
    return _SignSTE.apply(w) * alpha


class BinaryLinear(nn.Linear):
    """A linear layer that computes with binary weights ``sign(W) * alpha``."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, binary_weight(self.weight), self.bias)


class BinaryConv2d(nn.Conv2d):
    """A 2-d convolution that computes with binary weights ``sign(W) * alpha``."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, binary_weight(self.weight), self.bias)


def is_binary(module: nn.Module) -> bool:
    """Whether ``module`` is a binary weight layer."""
    return isinstance(module, (BinaryLinear, BinaryConv2d))


def _binary_copy(layer: nn.Module) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        copy: nn.Module = BinaryConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,  # type: ignore[arg-type]
            layer.stride,  # type: ignore[arg-type]
            layer.padding,  # type: ignore[arg-type]
            layer.dilation,  # type: ignore[arg-type]
            layer.groups,
            layer.bias is not None,
            layer.padding_mode,
        )
    else:
        assert isinstance(layer, nn.Linear)
        copy = BinaryLinear(layer.in_features, layer.out_features, layer.bias is not None)
    copy.load_state_dict(layer.state_dict())
    return copy


def binarize(model: nn.Module) -> nn.Module:
    """Replace every hidden Linear/Conv2d of ``model`` by its binary version, in place.

    "Hidden" means every weight layer but the first and the last in module order. The latent
    weights start from the layer's current ones.

    Args:
        model: a network with at least three weight layers.

    Returns:
        ``model``, with its hidden weight layers binary.

    Raises:
        ConfigError: fewer than three weight layers (nothing would be binary).
    """
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d)) and not is_binary(module)
    ]
    if len(names) < 3:
        raise ConfigError(
            f"binarize needs at least 3 weight layers (first and last stay full precision); "
            f"the model has {len(names)}"
        )
    for name in names[1:-1]:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _binary_copy(getattr(parent, child)))
    return model
