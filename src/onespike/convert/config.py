"""Conversion configurations: one frozen dataclass per method, validated on construction."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from onespike.errors import ConfigError

__all__ = ["DEFAULT_DITHER", "MAX_STEPS", "HybridConfig", "RateConfig", "TTFSConfig"]

# Offsets on the initial membranes of the convolutions the input drives, by default
# (RateConfig.dither=None): chosen on 5,000 held-out training images of MNIST and
# Fashion-MNIST over four ConvNets and T = 2 .. 32 against 0 and 0.25 (docs/rate.md).
DEFAULT_DITHER = 0.15

MAX_STEPS = 16_384
"""The default bound on ``steps`` of every method (``max_steps`` raises it): a typing slip such
as ``steps=10**6`` would otherwise run for hours before anything is reported."""


def _is_number(value: object) -> bool:
    """An int or float (``bool`` is an int to Python, not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_steps(steps: object, max_steps: object, least: int, why: str) -> None:
    """``steps`` an integer in ``[least, max_steps]``; ``max_steps`` a positive integer."""
    for name, value in (("steps", steps), ("max_steps", max_steps)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    assert isinstance(steps, int)
    assert isinstance(max_steps, int)
    if steps < least:
        raise ConfigError(f"steps={steps}: {why} (steps >= {least})")
    if steps > max_steps:
        raise ConfigError(
            f"steps={steps} is above max_steps={max_steps}; a run that long is usually a typing "
            f"slip. Pass max_steps={steps} (or more; on the command line --max-steps {steps}) "
            "to run it anyway"
        )


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ConfigError(f"seed must be an integer in [0, 2**63), got {seed!r}")


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
        stop_at_decision: stop each sample at its decision, the step of its first output
            spike (``SimResult.decision_steps``): the spikes, rectifier events and neuron
            updates after that step are not spent, and the sample's latency is its decision
            time (``SimResult.sample_steps``). The class is the same either way.
        max_steps: the bound on ``steps`` (default :data:`MAX_STEPS`).
    """

    steps: int = 16
    rectifier: bool = True
    input_range: Literal["error", "clip"] = "error"
    stop_at_decision: bool = False
    max_steps: int = MAX_STEPS

    def __post_init__(self) -> None:
        _check_steps(
            self.steps, self.max_steps, 2, "a time-to-first-spike code needs at least 2 levels"
        )
        if not isinstance(self.rectifier, bool):
            raise ConfigError(f"rectifier must be True or False, got {self.rectifier!r}")
        _check_choice("input_range", self.input_range, ("error", "clip"))
        if not isinstance(self.stop_at_decision, bool):
            raise ConfigError(
                f"stop_at_decision must be True or False, got {self.stop_at_decision!r}"
            )

    @property
    def levels(self) -> int:
        """``L = T - 1``: grid intervals, and the length of each phase in time steps."""
        return self.steps - 1


@dataclass(frozen=True)
class RateConfig:
    """Rate-coded conversion with integrate-and-fire neurons (Lu & Sengupta, Front. Neurosci.
    2020, doi 10.3389/fnins.2020.00535; thresholds balanced as in Rueckauer et al. 2017,
    doi 10.3389/fnins.2017.00682).

    Attributes:
        steps: T, the number of time steps one inference runs (at most, with early exit).
        reset: ``"subtract"`` (reset by subtraction: the threshold is subtracted from the
            membrane, so the surplus is kept) or ``"zero"`` (the membrane is set to 0).
        input: ``"analog"`` (the image drives the first layer as a constant current, computed
            once per sample) or ``"poisson"`` (each pixel spikes with probability equal to its
            value at every step, drawn from a generator seeded with ``seed``).
        seed: seed of the Poisson input.
        threshold_scale: multiplies every balanced threshold (the design-time latency
            optimisation: below 1, neurons fire sooner and the rates settle in fewer steps).
        initial_membrane: every membrane starts at this fraction of its threshold. The default
            0.5 makes the spike count round to nearest instead of down (the shift of Bu et al.,
            arXiv 2303.04347), which brings the first steps much closer to the ANN; 0 is the
            classic start of Lu & Sengupta's conversion.
        dither: the populations the input drives start their membranes at
            ``initial_membrane + u`` of their threshold, ``u`` uniform in ``[-dither, dither]``,
            drawn once per neuron from a generator seeded with ``seed`` (the same offsets for
            every sample, like a chip's fixed offsets). With constant analog input, the
            neurons of a convolution that see the same patch (a ConvNet's first layer on a
            black background, where the current is the bias alone) otherwise all first fire at
            the same step, and their common rounding error reaches the next layer undiluted;
            the offsets spread those first spikes out. A number applies to every population
            the input drives and must keep the membranes in ``[0, 1)``:
            ``dither <= initial_membrane`` and ``initial_membrane + dither < 1``; 0 draws
            nothing. ``None`` (the default) applies ``DEFAULT_DITHER`` (0.15) to the
            convolutions the input drives, where it fits the initial membrane, and nothing to
            dense layers, whose neurons each have their own weights and so round
            independently already (docs/rate.md gives the validation runs behind 0.15).
        binary: store hidden layers trained with binary weights (``sign(W) * alpha`` per output
            channel) as synapses of weight exactly +-1, with ``alpha`` folded into thresholds.
        early_exit: the run-time latency optimisation: a sample stops once its prediction has
            been the same for ``early_exit`` consecutive steps after the output layer received
            its first spike; 0 runs every sample for ``steps`` steps.
        input_range: Poisson input only: values outside ``[0, 1]`` raise (``"error"``) or are
            clipped (``"clip"``).
        max_steps: the bound on ``steps`` (default :data:`MAX_STEPS`).
    """

    steps: int = 64
    reset: Literal["subtract", "zero"] = "subtract"
    input: Literal["analog", "poisson"] = "analog"
    seed: int = 0
    threshold_scale: float = 1.0
    initial_membrane: float = 0.5
    dither: float | None = None
    binary: bool = False
    early_exit: int = 0
    input_range: Literal["error", "clip"] = "error"
    max_steps: int = MAX_STEPS

    def __post_init__(self) -> None:
        _check_steps(self.steps, self.max_steps, 1, "a rate code needs at least 1 time step")
        _check_seed(self.seed)
        if isinstance(self.early_exit, bool) or not isinstance(self.early_exit, int):
            raise ConfigError(f"early_exit must be an integer, got {self.early_exit!r}")
        if self.early_exit < 0:
            raise ConfigError(f"early_exit={self.early_exit} must be >= 0 (0 turns early exit off)")
        _check_choice("reset", self.reset, ("subtract", "zero"))
        _check_choice("input", self.input, ("analog", "poisson"))
        _check_choice("input_range", self.input_range, ("error", "clip"))
        if not isinstance(self.binary, bool):
            raise ConfigError(f"binary must be True or False, got {self.binary!r}")
        scale = self.threshold_scale
        if not _is_number(scale) or not math.isfinite(scale) or not scale > 0:
            raise ConfigError(f"threshold_scale must be a finite number > 0, got {scale!r}")
        start = self.initial_membrane
        if not _is_number(start) or not 0 <= start < 1:
            raise ConfigError(
                f"initial_membrane must be a fraction of the threshold in [0, 1), got {start!r}"
            )
        dither = self.dither
        if dither is None:
            return
        if not _is_number(dither) or not dither >= 0:
            raise ConfigError(f"dither must be a number >= 0, got {dither!r}")
        if dither > start or start + dither >= 1:
            raise ConfigError(
                f"dither={dither} with initial_membrane={start} would start membranes outside "
                "[0, 1) of the threshold; use dither <= initial_membrane and "
                "initial_membrane + dither < 1 (e.g. initial_membrane=0.5, dither=0.25)"
            )

    def dither_for(self, convolutional: bool) -> float:
        """The dither of a population the input drives (``convolutional``: through a
        convolution); resolves the default ``dither=None``."""
        if self.dither is not None:
            return float(self.dither)
        start = self.initial_membrane
        fits = start >= DEFAULT_DITHER and start + DEFAULT_DITHER < 1
        return DEFAULT_DITHER if convolutional and fits else 0.0


@dataclass(frozen=True)
class HybridConfig:
    """Single-spike hybrid input encoding (Datta, Kundu, Beerel, "Training Energy-Efficient Deep
    Spiking Neural Networks with Single-Spike Hybrid Input Encoding", arXiv 2107.12374).

    Step 0 feeds the analog image to the first layer; later steps carry it as a temporal code;
    every neuron integrates and fires at most once; the prediction is read from the output
    population's membrane. The dynamics are stated in :mod:`onespike.convert.hybrid`.

    Attributes:
        steps: T, the time steps of one inference (step 0 is the analog step). At least 1.
        leak: membrane decay per step, in ``(0, 1]``; 1 is integrate-and-fire without leak.
        input_code: how the image enters: ``"split"`` (counted once: pixel ``x`` with code
            ``k = floor((T - 1) x + 1/2)`` spikes once, at step ``T - k``, and its spike carries
            ``k / (T - 1)``; the analog step carries the rest, ``x - k / (T - 1)``), ``"ttfs"``
            (the analog step carries ``x`` and the same spike carries 1 again: the image
            counted twice) or ``"none"`` (the analog step only). Brighter pixels spike earlier;
            ``k = 0`` never spikes.
        bias: how the bias ``b`` enters the membrane: ``"spread"`` (``b / T`` at every step,
            ``b`` in all, as in the ANN), ``"first_step"`` (``b`` once, at step 0) or
            ``"every_step"`` (``b`` at every step, ``T b`` in all).
        threshold_scale: converted without calibration data, every threshold starts at this
            value (default 0.3), in the normalised units where the calibrated activations of a
            population lie in ``[0, 1]``; converted with calibration data
            (``convert(graph, config, calibration=images)``), it multiplies the calibrated
            thresholds (default 1).
        readout: ``"membrane"`` (the class is the largest output membrane after the last
            step) or ``"first_spike"`` (the class of the earliest output spike; ties, and
            samples with no output spike, go to the largest membrane).
        input_range: input values outside ``[0, 1]`` raise (``"error"``) or are clipped
            (``"clip"``); the analog step then uses the clipped value too.
        max_steps: the bound on ``steps`` (default :data:`MAX_STEPS`).
        calibration: with calibration images, one spike value and one threshold per
            ``"channel"`` (default; per neuron in a flat population) or per ``"layer"`` of
            every hidden population (the output population has one threshold either way).
    """

    steps: int = 5
    leak: float = 1.0
    input_code: Literal["split", "ttfs", "none"] = "ttfs"
    threshold_scale: float | None = None
    bias: Literal["spread", "first_step", "every_step"] = "spread"
    readout: Literal["membrane", "first_spike"] = "membrane"
    input_range: Literal["error", "clip"] = "error"
    max_steps: int = MAX_STEPS
    calibration: Literal["channel", "layer"] = "channel"

    def __post_init__(self) -> None:
        _check_steps(
            self.steps,
            self.max_steps,
            1,
            "the hybrid code needs at least 1 time step (the analog one)",
        )
        leak = self.leak
        if not _is_number(leak) or not 0 < leak <= 1:
            raise ConfigError(f"leak must be a number in (0, 1] (1 = no leak), got {leak!r}")
        scale = self.threshold_scale
        if scale is not None and (
            not _is_number(scale) or not math.isfinite(scale) or not scale > 0
        ):
            raise ConfigError(f"threshold_scale must be a finite number > 0 or None, got {scale!r}")
        _check_choice("input_code", self.input_code, ("split", "ttfs", "none"))
        _check_choice("bias", self.bias, ("spread", "first_step", "every_step"))
        _check_choice("readout", self.readout, ("membrane", "first_spike"))
        _check_choice("input_range", self.input_range, ("error", "clip"))
        _check_choice("calibration", self.calibration, ("channel", "layer"))
