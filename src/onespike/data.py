"""Datasets: the embedded ``digits`` default, MNIST, Fashion-MNIST and CIFAR-10."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["Dataset"]


@dataclass(frozen=True)
class Dataset:
    """An image classification split held in memory.

    Attributes:
        name: dataset name, e.g. ``"mnist"``.
        split: ``"train"`` or ``"test"``.
        images: float32 tensor ``(N, C, H, W)`` with values in ``[0, 1]``.
        labels: int64 tensor ``(N,)``.
        num_classes: number of classes.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __len__(self) -> int:
        return int(self.labels.shape[0])
