"""Report figures: unlearning metrics of each model side by side (original, golden, unlearned ones)."""

from __future__ import annotations

BAR_KEYS = (
    "forget/ua",
    "forget/accuracy",
    "retain/accuracy",
    "test/accuracy",
    "forget/token_accuracy",
    "retain/token_accuracy",
    "mia/auc",
    "mia/efficacy",
    "gap/average",
    "forget_quality/ks_pvalue",
    "rcd/ratio_to_golden",
)


def plot_metric_bars(metrics: dict[str, dict], path: str, keys: tuple[str, ...] = BAR_KEYS) -> str:
    """Grouped bars: one group per metric in ``keys`` present in any row, one bar per model. Writes a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from .palette import color_of, ordered

    keys = [k for k in keys if any(isinstance(row.get(k), (int, float)) for row in metrics.values())]
    names = ordered(list(metrics))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(keys)), 4))
    x = np.arange(len(keys))
    for i, name in enumerate(names):
        values = [float(metrics[name].get(k, np.nan)) for k in keys]
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=name, color=color_of(name))
    ax.set_xticks(x, keys, rotation=20, ha="right")
    ax.set_ylabel("value")
    ax.set_title("Unlearning metrics (compare with golden, not with zero)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
