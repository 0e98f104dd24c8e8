"""Report figures: unlearning metrics of each model side by side (original, golden, unlearned ones)."""

from __future__ import annotations

BAR_KEYS = (
    "forget/ua",
    "forget/accuracy",
    "retain/accuracy",
    "test/accuracy",
    "forget/token_accuracy",
    "forget/generation_accuracy",
    "retain/generation_accuracy",
    "retain/token_accuracy",
    "mia/auc",
    "mia/efficacy",
    "gap/average",
    "forget_quality/ks_pvalue",
    "rcd/ratio_to_golden",
)


def plot_metric_bars(metrics: dict[str, dict], path: str, keys: tuple[str, ...] = BAR_KEYS) -> str:
    """Grouped horizontal bars: one group per metric in ``keys`` present in any row, one bar per model, at the
    width of the Hub's card column. Writes a PNG."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from .palette import FIGURE_DPI, FIGURE_WIDTH_INCHES, color_of, ordered

    keys = [k for k in keys if any(isinstance(row.get(k), (int, float)) for row in metrics.values())]
    names = ordered(list(metrics))
    height = 0.8 / max(len(names), 1)
    fig = Figure(figsize=(FIGURE_WIDTH_INCHES, 1.2 + 0.22 * len(keys) * max(len(names), 2)), dpi=FIGURE_DPI)
    FigureCanvasAgg(fig)  # no pyplot: the caller's backend and figure registry are left alone
    ax = fig.subplots()
    y = np.arange(len(keys))
    for i, name in enumerate(names):
        values = [float(metrics[name].get(k, np.nan)) for k in keys]
        ax.barh(y - 0.4 + (i + 0.5) * height, values, height, label=name, color=color_of(name))
    ax.set_yticks(y, keys)
    ax.invert_yaxis()  # the first metric on top
    ax.set_xlabel("value")
    ax.set_title("Unlearning metrics (compare with golden, not with zero)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    return path
