"""Progress of long stages: a bar on a terminal, one summary line per stage otherwise.

A bar redrawn many times a second floods a log file or a CI transcript, so tqdm is told to
decide (``disable=None``: a bar only when its stream is a terminal). Off a terminal, a stage
that was asked to show progress prints one line when it ends instead, naming what it did and
how long it took, e.g. ``simulate (closed_form): 10,000 img in 12.3 s``.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Any

from tqdm.auto import tqdm

__all__ = ["Stage"]

# What the summary line calls the units (one, several) that tqdm abbreviates.
_NOUNS = {"batch": ("batch", "batches"), "img": ("image", "images"), "it": ("item", "items")}


class Stage:
    """One stage of work with a known or unknown amount of it.

    Args:
        desc: what the stage does (the bar's label and the start of the summary line).
        total: the amount of work, in ``unit`` (``None``: unknown).
        unit: what is counted.
        enabled: show progress at all (``False``: neither bar nor line, e.g. ``--quiet``).
        leave: keep the finished bar on the terminal.
    """

    def __init__(
        self,
        desc: str,
        *,
        total: int | None = None,
        unit: str = "it",
        enabled: bool = True,
        leave: bool = True,
    ) -> None:
        self._bar = tqdm(
            total=total, desc=desc, unit=unit, disable=None if enabled else True, leave=leave
        )
        self._enabled = enabled
        self._drawn = not self._bar.disable  # tqdm sets disable=True on close: read it now
        self._desc = desc
        self._unit = unit
        self._count = 0
        self._started = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units of work done."""
        self._count += n
        self._bar.update(n)

    def describe(self, text: str) -> None:
        """Relabel the bar (e.g. with a running loss); the summary line keeps ``desc``."""
        self._bar.set_description_str(text, refresh=False)

    def close(self, detail: str = "") -> None:
        """End the stage; off a terminal, print its summary line with ``detail`` appended."""
        if self._closed:
            return
        self._closed = True
        self._bar.close()
        if self._enabled and not self._drawn:
            seconds = time.perf_counter() - self._started
            one, many = _NOUNS.get(self._unit, (self._unit, self._unit))
            noun = one if self._count == 1 else many
            line = f"{self._desc}: {self._count:,} {noun} in {seconds:.1f} s"
            print(line + (f", {detail}" if detail else ""), file=sys.stderr, flush=True)

    def __enter__(self) -> Stage:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> Any:
        if kind is None:
            self.close()
        else:  # a failed stage did not finish: no summary line claims it did
            self._closed = True
            self._bar.close()
        return None
