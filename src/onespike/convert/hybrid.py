"""Single-spike hybrid input encoding (Datta, Kundu, Beerel, arXiv 2107.12374), onespike's reading.

Only the paper's abstract is public here; everything below that it does not state is onespike's
choice, and ``docs/hybrid.md`` lists each one with its reason.

**Time.** One inference runs ``T`` steps, ``t = 0 .. T-1``. Within a step the populations update
in topological order and a spike reaches the next layer in the same step (no synaptic delay),
so even ``T = 1`` carries the input through the whole network.

**Input** (the hybrid code). With ``L = T - 1`` levels, pixel ``x`` has the code
``k = floor(L x + 1/2)`` and spikes once, at step ``T - k`` (``k = L`` at step 1, ``k = 1`` at
step ``T - 1``); ``k = 0`` never spikes. ``input_code="ttfs"`` (default) feeds ``x`` at step 0
and a spike worth 1 later (the image counted twice); with ``"split"`` the image is counted
once: the spike carries ``k / L`` (each code step's summed current is multiplied by its
level) and the analog step ``t = 0`` carries the rest, ``x - k / L``, as multiply-accumulates;
``"none"`` is the analog step only.

**Neurons.** Every neuron population, the output included, is single-spike integrate-and-fire
(:func:`onespike.neurons.single_spike_step`)::

    z_t = sum over projections of W s_t  +  b          (s_t: the source's spikes at t, 0/1)
    v_t = leak * v_(t-1) + z_t                          (v_(-1) = 0)
    s_t = [v_t >= theta] and the neuron has not fired before t

The bias ``b`` enters as ``b / T`` at every step (``bias="spread"``, default: ``b`` in all, as in
the ANN), once at step 0 (``"first_step"``) or as ``b`` at every step (``"every_step"``, ``T b``
in all). There is no reset: a neuron that has
fired is silent for the rest of the inference. Max pooling is "first spike wins": a pooling
window fires once, at the first step a neuron in it fires.

**Readout.** The output population's membrane after the last step, ``v_(T-1)``, is the
prediction's score (``readout="membrane"``); with ``readout="first_spike"`` the class is the
earliest output spike, ties and silent samples decided by that membrane.

**Conversion** gives the starting point for STDB fine-tuning (:mod:`onespike.stdb`): the
weights and biases of the normalised graph (:func:`onespike.normalize`: activations of every
population lie in ``[0, 1]`` on the calibration data) and one threshold per population, stored
in :attr:`Population.threshold`.

- Without calibration data every threshold is ``threshold_scale`` (default 0.3).
- With calibration images (:func:`calibrate`), the network is made to compute the ANN's
  function as far as one bit per neuron allows, per channel (``HybridConfig.calibration``,
  default ``"channel"``; one neuron of a flat population is a channel) or per layer
  (``"layer"``). A neuron's spike stands for its ANN activation ``a``; the best one-bit
  stand-in (least squares, levels ``{0, m}``) fires when ``a > tau`` and is worth
  ``m = mean(a | a > tau)``, ``tau`` the value that maximises
  ``(sum of a over a > tau)^2 / count(a > tau)`` on the calibration activations of the
  channel (or layer). Every projection out of the population applies its ``m``: a layer's as
  the projection's factor, per-channel ones as a fixed :class:`~onespike.graph.Affine` scale
  first in the projection (a max-pooling population takes the ``m`` of its pooled
  activations), so the next layer's membrane estimates the ANN's pre-activation. Then, layer
  by layer in the spiking network itself at this ``T``, the threshold of a channel (or
  layer) is the value of the largest membrane ``max_t v_t`` that lets the fraction
  ``P(a > tau)`` of its neurons fire on the calibration images: the firing statistics match
  the ANN's one-bit ones whatever the input's timing and the bias schedule do to the partial
  sums. The output population's one threshold lets one output neuron in ``C`` fire (``C``
  classes); its membrane is the readout. ``threshold_scale`` (default 1) multiplies the
  calibrated thresholds.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from onespike.convert.config import HybridConfig
from onespike.errors import ConfigError
from onespike.graph import Affine, Graph, max_pool
from onespike.network import (
    Population,
    Projection,
    SpikingNetwork,
    build_network,
    forward_populations,
    populations,
    tensors_of,
)

__all__ = ["UNCALIBRATED_THRESHOLD", "calibrate", "convert_hybrid", "one_bit_level"]

UNCALIBRATED_THRESHOLD = 0.3
"""Every threshold of a network converted without calibration data (``threshold_scale=None``)."""

_SAMPLE = 1 << 21  # activations per layer the one-bit level is chosen on
_MIN_THRESHOLD = 1e-3


def convert_hybrid(
    graph: Graph, config: HybridConfig, calibration: Tensor | None = None
) -> SpikingNetwork:
    """Convert ``graph`` to a single-spike hybrid-input network.

    Args:
        graph: extracted graph, normalised so activations fit ``[0, 1]``.
        config: the hybrid-code options.
        calibration: images in ``[0, 1]`` that set the thresholds and spike values
            (see :func:`calibrate`); ``None``: every threshold ``threshold_scale`` (0.3).

    Returns:
        The spiking network; simulate it with :func:`onespike.simulate`, fine-tune it with
        :func:`onespike.finetune_stdb`.
    """
    pops = populations(graph)
    if calibration is not None:
        return calibrate(pops, config, calibration)
    scale = config.threshold_scale
    threshold = UNCALIBRATED_THRESHOLD if scale is None else float(scale)
    pops = [replace(pop, threshold=threshold) if pop.kind == "neuron" else pop for pop in pops]
    return build_network(pops, config, lambda source, target: 0)


def one_bit_level(values: Tensor) -> tuple[float, float, float]:
    """The least-squares one-bit stand-in ``m [a > tau]`` for the activations ``values``.

    Args:
        values: activations (any shape, ``>= 0``).

    Returns:
        ``(tau, m, fraction)``: fire above ``tau``, a spike is worth ``m = mean(a | a > tau)``,
        and ``fraction = P(a > tau)``. ``tau`` maximises ``(sum_{a > tau} a)^2 / count``, which
        minimises ``sum (a - m [a > tau])^2``. No positive value: ``(inf, 1, 0)``.
    """
    flat = values.detach().flatten().double()
    positive = torch.sort(flat[flat > 0], descending=True).values
    if positive.numel() == 0:
        return float("inf"), 1.0, 0.0
    sums = torch.cumsum(positive, dim=0)
    counts = torch.arange(1, positive.numel() + 1, dtype=torch.float64, device=positive.device)
    k = int(torch.argmax(sums * sums / counts))  # fire the k + 1 largest
    tau = float(positive[k + 1]) if k + 1 < positive.numel() else 0.0
    return tau, float(sums[k] / counts[k]), float(counts[k]) / flat.numel()


def _sample(values: Tensor, generator: torch.Generator, size: int = _SAMPLE) -> Tensor:
    flat = values.flatten()
    if flat.numel() <= size:
        return flat
    # drawn on the CPU from the seeded generator: the same sample on every device
    index = torch.randint(0, flat.numel(), (size,), generator=generator, device="cpu")
    return flat[index.to(flat.device)]


def _kth_largest(values: Tensor, fraction: float) -> float:
    flat = values.flatten()
    k = round(fraction * flat.numel())
    if k <= 0:
        return max(2.0 * float(flat.max()), 1.0)
    return float(torch.topk(flat, min(k, flat.numel())).values[-1])


def _channels(values: Tensor) -> Tensor:
    """``(N, C, ...)`` as ``(C, N * ...)``: every channel's (or flat neuron's) values."""
    return values.transpose(0, 1).reshape(values.shape[1], -1)


def _channel_shape(pop: Population) -> tuple[int, ...]:
    """The shape of a per-channel tensor that broadcasts over one sample of ``pop``."""
    return (pop.shape[0],) + (1,) * (len(pop.shape) - 1)


def _one_bit_levels(
    values: Tensor, per_channel: bool, generator: torch.Generator
) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`one_bit_level` of a layer's activations ``(N, C, ...)``, for the whole layer
    (0-d tensors) or per channel (``(C,)``): ``(tau, m, fraction)``."""
    if per_channel:
        rows = _channels(values)
        share = max(_SAMPLE // rows.shape[0], 1)
        found = [one_bit_level(_sample(row, generator, share)) for row in rows]
    else:
        found = [one_bit_level(_sample(values, generator))]
    tau, m, fraction = (
        torch.tensor([f[i] for f in found], dtype=torch.float64, device="cpu") for i in range(3)
    )
    if not per_channel:
        return tau[0], m[0], fraction[0]
    return tau, m, fraction


def _pooled_value(pooled: Tensor, tau: Tensor) -> Tensor:
    """The mean pooled activation above the source's ``tau`` (per channel when ``tau`` is);
    1 where none is above."""
    if tau.ndim == 0:
        above = pooled[pooled > float(tau)]
        value = float(above.mean()) if above.numel() else 1.0
        return torch.tensor(value, dtype=torch.float64, device="cpu")
    rows = _channels(pooled).double()
    mask = rows > tau.to(rows.device).unsqueeze(1)
    count = mask.sum(dim=1)
    total = (rows * mask).sum(dim=1)
    return torch.where(count > 0, total / count.clamp(min=1), 1.0).cpu()


def _threshold(
    v_max: Tensor, fraction: Tensor, pop: Population, dtype: torch.dtype
) -> float | Tensor:
    """The membrane value that lets the fraction ``fraction`` of the neurons fire (per channel
    when ``fraction`` is a vector, as a ``dtype`` tensor: the network's float type)."""
    if fraction.ndim == 0:
        return _kth_largest(v_max, float(fraction))
    rows = _channels(v_max)
    theta = [_kth_largest(row, float(f)) for row, f in zip(rows, fraction, strict=True)]
    return torch.tensor(theta, dtype=dtype, device=v_max.device).view(_channel_shape(pop))


def _with_value(
    proj: Projection, value: Tensor, dtype: torch.dtype, device: torch.device
) -> Projection:
    """The projection with its source's spike value ``value`` applied to what it reads: a
    factor for a whole-layer value, a per-channel scale (an :class:`Affine` first) otherwise,
    in the network's ``dtype`` on its ``device``."""
    if value.ndim == 0:
        return replace(proj, factor=proj.factor * float(value))
    scale = value.to(device=device, dtype=dtype)
    return replace(proj, ops=(Affine(scale, torch.zeros_like(scale)), *proj.ops))


def calibrate(pops: list[Population], config: HybridConfig, images: Tensor) -> SpikingNetwork:
    """Per-layer spike values and thresholds at ``config.steps`` from calibration images.

    Args:
        pops: populations of the normalised graph, as :func:`onespike.network.populations`
            gives them.
        config: the hybrid options (``threshold_scale`` multiplies the thresholds, default 1).
        images: calibration images in ``[0, 1]``, ``(N, *input_shape)`` (a few hundred; they
            run through the network at once).

    Returns:
        The spiking network (the rule is stated in this module's docstring).

    Raises:
        ConfigError: ``images`` is empty or does not fit the input.
    """
    from onespike.simulate.hybrid import (
        encode_input,
        fire_train,
        first_only,
        input_train,
        step_currents,
    )

    if not isinstance(images, Tensor) or images.ndim < 1 or images.shape[0] == 0:
        raise ConfigError("hybrid calibration needs a non-empty batch of images, (N, *shape)")
    if tuple(images.shape[1:]) != pops[0].shape:
        raise ConfigError(
            f"calibration images have shape {tuple(images.shape[1:])}, the network's input "
            f"is {pops[0].shape}; pass images of the training set"
        )
    factor = 1.0 if config.threshold_scale is None else float(config.threshold_scale)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        like = next((t for t in tensors_of(pops) if t.is_floating_point()), None)
        device = images.device if like is None else like.device  # where the network lives
        dtype = torch.float32 if like is None else like.dtype
        x, times, _ = encode_input(images.to(device=device, dtype=torch.float32), config)
        ann = forward_populations(pops, x)
        # one-bit stand-ins of the ANN: spike values m and firing fractions
        per_channel = config.calibration == "channel"
        one = torch.tensor(1.0, dtype=torch.float64, device="cpu")
        value: dict[str, Tensor] = {pops[0].name: one}
        level: dict[str, Tensor] = {}
        fraction: dict[str, Tensor] = {}
        for pop in pops[1:]:
            if pop.is_output:
                continue
            if pop.kind == "maxpool":
                tau = level[pop.sources[0]]
                value[pop.name] = _pooled_value(ann[pop.name], tau)
                level[pop.name] = tau
                continue
            tau, m, share = _one_bit_levels(ann[pop.name], per_channel, generator)
            value[pop.name], level[pop.name], fraction[pop.name] = m, tau, share
        del ann
        rescaled = [
            replace(
                pop,
                projections=tuple(
                    _with_value(proj, value[proj.source], dtype, device) for proj in pop.projections
                ),
            )
            for pop in pops
        ]
        # thresholds, layer by layer in the spiking network at this T
        trains = {pops[0].name: input_train(x, times, config)}
        readers = {pop.name: 0 for pop in pops}
        for pop in pops[1:]:
            for source in pop.sources:
                readers[source] += 1
        finished: list[Population] = [rescaled[0]]
        for pop in rescaled[1:]:
            if pop.kind == "maxpool":
                assert pop.pool is not None
                below = trains[pop.sources[0]]
                pooled = max_pool(pop.pool, below.flatten(0, 1)).unflatten(0, below.shape[:2])
                trains[pop.name] = first_only(pooled)
            else:
                z = step_currents(pop, {s: trains[s] for s in pop.sources}, config)
                share = (
                    torch.tensor(1.0 / pop.size, device="cpu")
                    if pop.is_output
                    else fraction[pop.name]
                )
                v = fire_train(z, 1.0, config.leak)[1]
                found = _threshold(v.amax(dim=0), share, pop, dtype)
                theta = (
                    max(factor * found, _MIN_THRESHOLD)
                    if isinstance(found, float)
                    else (found * factor).clamp_(min=_MIN_THRESHOLD)
                )
                pop = replace(pop, threshold=theta)
                trains[pop.name] = fire_train(z, theta, config.leak)[0]
            finished.append(pop)
            for source in pop.sources:  # free what no later population reads
                readers[source] -= 1
                if readers[source] == 0:
                    del trains[source]
    return build_network(finished, config, lambda source, target: 0)
