"""Conversion configurations: one frozen dataclass per method, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from onespike.errors import ConfigError

__all__ = ["TTFSConfig"]


def _check_choice(name: str, value: object, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{name}={value!r} is not one of {', '.join(map(repr, choices))}")


@dataclass(frozen=True)
class TTFSConfig:
    """Exact time-to-first-spike conversion (Quartz, arXiv 2309.16795).

    Attributes:
        steps: T, the number of levels of the spike code; values live on the grid
            ``k / (T - 1)``, ``k = 0 .. T-1``. At least 2.
        rectifier: emit the rectifier event that forces every silent neuron to fire at the end
            of its window (Quartz). A spike forced this way decodes to 0 and adds nothing
            downstream, so ``False`` leaves those neurons silent, saving their spikes and
            synaptic events without changing any output.
        input_range: what to do with input values outside ``[0, 1]``: ``"error"`` raises
            :class:`~onespike.errors.CodeRangeError`; ``"clip"`` clips them and the simulation
            result reports how many were clipped.
    """

    steps: int = 16
    rectifier: bool = True
    input_range: Literal["error", "clip"] = "error"

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int):
            raise ConfigError(f"steps must be an integer, got {self.steps!r}")
        if self.steps < 2:
            raise ConfigError(
                f"steps={self.steps}: a time-to-first-spike code needs at least 2 levels "
                "(steps >= 2)"
            )
        if not isinstance(self.rectifier, bool):
            raise ConfigError(f"rectifier must be True or False, got {self.rectifier!r}")
        _check_choice("input_range", self.input_range, ("error", "clip"))

    @property
    def levels(self) -> int:
        """``L = T - 1``: grid intervals, and the length of each phase in time steps."""
        return self.steps - 1
