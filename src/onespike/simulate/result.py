"""The result of a simulation, shared by every method and both simulators."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["SimResult"]


@dataclass(frozen=True, eq=False)
class SimResult:
    """What a spiking network did on one batch.

    Attributes:
        method: ``"closed_form"`` or ``"stepped"``.
        spike_times: per population, ``(B, *shape)`` float tensor of first-spike times in time
            steps; ``inf`` means never fired. Present for single-spike codes. TTFS results
            hold integer codes and derive the times on access
            (:class:`~onespike.simulate.ttfs.CodeTimes`; its ``codes`` are the stored form).
        predictions: ``(B,)`` int64 class indices.
        outputs: ``(B, *output_shape)`` decoded output values, in the ANN's units: what the
            output layer's spike code says. A TTFS code clips at 0 and at the scale (it
            carries ``clamp(x, 0, scale)`` on the ``T``-level grid); the output membranes of
            rate and hybrid codes are not clipped.
        logits: ``(B, *output_shape)`` the output layer's values before any code clips them,
            in the ANN's units (for :func:`onespike.simulate` results always set): TTFS the
            membrane at the output's readout, ``V / L`` times the scale; rate and hybrid the
            same values as ``outputs``.
        steps: time steps one inference takes (latency).
        clipped: per population, how many values (summed over the batch) exceeded the code's
            range and were clipped; includes the input.
        spike_counts: per population, ``(B, *shape)`` spike counts (an integer dtype), for
            codes with many spikes per neuron or a stepped simulation that observes them; when
            absent, counts derive from ``spike_times``.
        sample_steps: ``(B,)`` time steps each sample actually ran, for methods that stop a
            sample early; ``None`` means every sample ran ``steps``.
        step_predictions: ``(steps, B)`` prediction after every time step (accuracy against
            time steps from one run), for methods that record it; ``None`` otherwise.
        decision_steps: ``(B,)`` int64, single-spike codes whose class is the earliest output
            spike (TTFS): the time steps each sample has run when its class is known, that is
            the step of its first output spike counted from 1 (``spike_times`` count from 0,
            so this is the earliest output spike time plus one). A sample with no output spike
            (possible only without the rectifier) is decided when its window closes:
            ``steps``. ``None`` for methods that read their class at the end of the run.
        config: the configuration of the network that produced the result (set by
            :func:`onespike.simulate`); :func:`onespike.count_ops` refuses a result of another
            network.
    """

    method: str
    spike_times: Mapping[str, Tensor]
    predictions: Tensor
    outputs: Tensor
    steps: int
    clipped: dict[str, int] = field(default_factory=dict)
    spike_counts: dict[str, Tensor] = field(default_factory=dict)
    sample_steps: Tensor | None = None
    step_predictions: Tensor | None = None
    decision_steps: Tensor | None = None
    logits: Tensor | None = None
    config: Any = None

    @property
    def batch_size(self) -> int:
        return int(self.predictions.shape[0])

    def spikes(self, name: str) -> Tensor:
        """Spike count of every neuron of population ``name``, ``(B, *shape)``, float."""
        if name in self.spike_counts:
            return self.spike_counts[name].float()
        return torch.isfinite(self.spike_times[name]).float()

    def total_steps(self) -> int:
        """Time steps summed over the samples of the batch (``steps * B`` without early exit)."""
        if self.sample_steps is None:
            return self.steps * self.batch_size
        return int(self.sample_steps.sum())

    def accuracy(self, labels: Tensor) -> float:
        """Fraction of predictions equal to ``labels``."""
        return float((self.predictions == labels.to(self.predictions.device)).float().mean())
