"""Figures of relearning runs."""

from __future__ import annotations

import os
from typing import Any

_LABELS = {"accuracy": "forget accuracy", "loss": "forget loss"}


def plot_relearning_curves(
    results: dict[str, Any], path: str | os.PathLike, metric: str = "accuracy", title: str | None = None
) -> str:
    """Plot the forget-set ``metric`` ("accuracy" or "loss") against relearning steps for every result.

    Args:
        results: name -> ``RelearnResult`` (e.g. ``{"ft": r_ft, "dr": r_dr}``). A result's golden run, if it
            has one and no entry is already named "golden", is drawn once as a dashed black line. Colours
            follow ``hf_unlearn.reporting.palette`` (the same per model in every figure).
        path: where to write the PNG.
        metric: the curve to draw; the recovery threshold is drawn when it is the result's target.
        title: optional figure title.

    Each curve ends at the step where the model recovered (marked with a dot) or at ``max_steps``.
    Returns the path written. matplotlib is imported lazily and drawn with Agg, without pyplot.
    """
    if metric not in _LABELS:
        raise ValueError(f"metric must be 'accuracy' or 'loss', got {metric!r}.")
    if not results:
        raise ValueError("results is empty: nothing to plot.")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..reporting.palette import FIGURE_DPI, FIGURE_WIDTH_INCHES, color_of, ordered

    series = dict(results)
    golden = next((r.golden for r in results.values() if getattr(r, "golden", None) is not None), None)
    if golden is not None and "golden" not in series:
        series["golden"] = golden
    series = {name: series[name] for name in ordered(list(series))}
    fig = Figure(figsize=(FIGURE_WIDTH_INCHES, 4.4), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)  # no pyplot: the caller's backend and figure registry are left alone
    ax = fig.subplots()
    for name, result in series.items():
        steps = [row["step"] for row in result.curve]
        values = [row[metric] if row[metric] is not None else float("nan") for row in result.curve]
        style = {"color": color_of(name), "linestyle": "--" if name == "golden" else "-"}
        label = f"{name} ({result.steps}{'' if result.recovered else '+'} steps)"
        (line,) = ax.plot(steps, values, label=label, linewidth=1.6, **style)
        if result.recovered:
            ax.plot(steps[-1:], values[-1:], "o", color=line.get_color())
    first = next(iter(results.values()))
    if first.target == metric:
        ax.axhline(first.threshold, color="gray", linewidth=0.8, linestyle=":", label="recovery threshold")
    ax.set_xlabel("relearning steps on the forget set")
    ax.set_ylabel(_LABELS[metric])
    ax.set_title(title or "Relearning convergence")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return str(path)
