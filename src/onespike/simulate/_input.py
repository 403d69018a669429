"""The input check every simulator shares: finite values, and the ``[0, 1]`` range of a code."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from onespike.errors import CodeRangeError

__all__ = ["check_unit_input"]


def check_unit_input(
    x: Tensor, input_range: str | None, *, reason: str, fix: str
) -> tuple[Tensor, int]:
    """Refuse non-finite input, and input outside ``[0, 1]`` unless told to clip it.

    Args:
        x: the input batch.
        input_range: ``"error"`` (values outside ``[0, 1]`` raise), ``"clip"`` (they are
            clipped and counted) or ``None`` (any finite value is accepted as it is).
        reason: why the code needs ``[0, 1]``, for the error message.
        fix: what the user can do instead, for the error message.

    Returns:
        ``(x, clipped)``: the input (clipped where asked) and how many values were clipped.

    Raises:
        CodeRangeError: a value is NaN or infinite, or outside ``[0, 1]`` with ``"error"``.
    """
    low, high = (float(v) for v in torch.aminmax(x))  # NaN propagates into both
    if not (math.isfinite(low) and math.isfinite(high)):
        raise CodeRangeError("the input contains NaN or infinite values")
    if input_range is None or (low >= 0.0 and high <= 1.0):
        return x, 0
    clipped = int(((x < 0) | (x > 1)).sum())
    if input_range == "error":
        raise CodeRangeError(
            f"{clipped} input values lie outside [0, 1] (min {low:.4g}, max {high:.4g}); "
            f"{reason}. {fix}"
        )
    return x.clamp(0.0, 1.0), clipped
