"""Plot of the energy per inference, by component, of several hardware reports.

matplotlib is optional (the ``plot`` extra) and imported only when a plot is drawn.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from onespike._fs import atomic_write
from onespike.errors import ConfigError
from onespike.hardware.report import COMPONENTS, HardwareReport

__all__ = ["plot_energy_breakdown"]


def plot_energy_breakdown(
    reports: Sequence[HardwareReport],
    path: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Stacked bars of dynamic energy by component plus static energy, one bar per report.

    Args:
        reports: from :func:`onespike.hardware.run`.
        path: image file to write (format from its suffix, e.g. ``.png``).
        labels: one bar label per report (default: the architecture names).
        title: figure title.

    Returns:
        The path written.

    Raises:
        ImportError: matplotlib is not installed (``pip install 'onespike[plot]'``).
    """
    if not reports:
        raise ConfigError("plot_energy_breakdown needs at least one report")
    names = list(labels) if labels is not None else [r.architecture for r in reports]
    if len(names) != len(reports):
        raise ConfigError(f"{len(names)} labels for {len(reports)} reports")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib, which is in the 'plot' extra: pip install 'onespike[plot]'"
        ) from exc

    parts = [*COMPONENTS, "static"]
    values = {
        part: [(r.static_pj if part == "static" else r.component_pj(part)) * 1e-6 for r in reports]
        for part in parts
    }
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(reports) + 2.5), 4.0))
    bottom = [0.0] * len(reports)
    for part in parts:
        ax.bar(names, values[part], bottom=bottom, label=part.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values[part], strict=True)]
    ax.set_ylabel("energy per inference (µJ)")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    suffix = Path(path).suffix.lstrip(".") or "png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=suffix))
    plt.close(fig)
    return Path(path)
