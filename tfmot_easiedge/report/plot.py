"""``plot_report(report)``: per-layer kept filters and the accuracy/MACs trajectory over stages, one figure.

Drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas: no pyplot, no global backend switch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from tfmot_easiedge._optional import import_optional

if TYPE_CHECKING:
    import matplotlib.figure


def plot_report(report: Mapping) -> matplotlib.figure.Figure:
    """Returns a matplotlib ``Figure``: kept/removed filters per layer (top), accuracy and MACs per stage (bottom).

    Raises:
        MissingDependencyError: matplotlib is not installed (``pip install "tfmot-easiedge[report]"``).

    Example:
        >>> fig = plot_report(report)  # doctest: +SKIP
        >>> fig.savefig("report.png")  # doctest: +SKIP
    """
    import_optional("matplotlib", "report", "the report plot")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = [r for r in report["layers"] if r["filters_before"]]
    fig = Figure(figsize=(max(8.0, 0.35 * len(layers) + 2), 8.0), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 2))
    _filters(top, layers)
    _trajectory(bottom, report["stages"])
    fig.suptitle(f"{report['model']['name']}: {report['budget'].get('kind')} budget, "
                 f"{report['importance']} importance")
    return fig


def _filters(ax, layers) -> None:
    names = [r["name"] for r in layers]
    before = [r["filters_before"] for r in layers]
    after = [r["filters_after"] or 0 for r in layers]
    x = range(len(layers))
    ax.bar(x, before, color="#d9d9d9", label="before")
    ax.bar(x, after, color=["#1f77b4" if r["prunable"] else "#7f7f7f" for r in layers], label="kept")
    ax.set_xticks(list(x), names, rotation=90, fontsize=7)
    ax.set_ylabel("filters")
    ax.set_title("filters per layer (grey: layer not prunable)")
    ax.legend(loc="upper left")


def _trajectory(ax, stages) -> None:
    names = [s["stage"] for s in stages]
    x = list(range(len(stages)))
    macs = [s["macs"] / 1e6 for s in stages]
    ax.plot(x, macs, "s--", color="#ff7f0e", label="MMACs")
    ax.set_ylabel("MACs (millions)", color="#ff7f0e")
    ax.set_xticks(x, names)
    ax.set_title("accuracy and MACs per stage")
    accuracy = [(i, s["accuracy"]) for i, s in enumerate(stages) if s["accuracy"] is not None]
    if accuracy:
        acc_ax = ax.twinx()
        acc_ax.plot([i for i, _ in accuracy], [100 * a for _, a in accuracy], "o-", color="#2ca02c")
        acc_ax.set_ylabel("accuracy (%)", color="#2ca02c")
