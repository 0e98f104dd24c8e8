"""Figures for the linear-regression theory (matplotlib, Agg backend, PNG).

Every function takes the ``ScenarioResult`` objects of ``linear.run_scenario`` keyed by scenario name,
writes one PNG and returns its path. matplotlib is imported lazily so that importing this module is cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hf_unlearn.validation.linear import ScenarioResult, loss_trajectories

FLOOR = 1e-16  # losses are clipped here on log axes (exact zeros cannot be drawn)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _panels(
    results: dict[str, ScenarioResult],
    path: str | Path,
    height: float,
    draw: Callable[[Any, str, ScenarioResult], None],
) -> Path:
    """One panel per scenario side by side, each drawn by ``draw(ax, scenario, result)``; saves the figure."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), height), squeeze=False)
    for ax, (scenario, result) in zip(axes[0], results.items()):
        draw(ax, scenario, result)
    return _save(fig, path)


def plot_loss_curves(results: dict[str, ScenarioResult], path: str | Path, steps: int = 300) -> Path:
    """Forget loss (top) and retain loss (bottom) per GD step: FT vs golden vs the fixes."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(results), figsize=(6 * len(results), 7.5), squeeze=False)
    for col, (scenario, result) in enumerate(results.items()):
        curves = loss_trajectories(result, steps)
        for k, (name, (retain, forget)) in enumerate(curves.items()):
            golden = name.startswith("golden")
            style = {"ls": "--", "color": "k", "zorder": 5} if golden else {"color": f"C{k}"}
            axes[0, col].plot(forget, label=name, lw=1.6, **style)
            axes[1, col].semilogy(np.maximum(retain, FLOOR), label=name, lw=1.6, **style)
        axes[0, col].set_title(f"{scenario}: forget loss (higher = more forgotten)")
        axes[1, col].set_title(f"{scenario}: retain loss (values below {FLOOR:g} drawn at {FLOOR:g})")
        axes[1, col].set_xlabel("GD step")
    axes[0, 0].set_ylabel("L_f(w)")
    axes[1, 0].set_ylabel("L_r(w)")
    axes[0, -1].legend(fontsize=8, loc="center right")
    return _save(fig, path)


def plot_dr_sweep(results: dict[str, ScenarioResult], path: str | Path) -> Path:
    """Forget and retain loss of DR (fixed step budget) against alpha, with golden and FT references."""
    return _panels(results, path, 4.2, _dr_panel)


def _dr_panel(ax: Any, scenario: str, result: ScenarioResult) -> None:
    """DR forget loss against alpha (left axis) and retain loss (right axis) for one scenario."""
    dr = result.dr
    alphas = np.array(dr.alphas)
    pos = alphas > 0
    ax.semilogx(alphas[pos], np.array(dr.forget_loss)[pos], "o-", label=f"DR forget loss ({dr.steps} steps)")
    ax.axhline(dr.golden_forget_loss, color="k", ls="--", label="golden forget loss")
    ax.axhline(dr.limit_forget_loss, color="C2", ls=":", label="DR limit (any alpha > 0)")
    ax.axhline(result.finetune.forget_loss, color="C3", ls="-.", label="FT (alpha = 0)")
    ax.set_xlabel("alpha")
    ax.set_ylabel("forget loss L_f")
    ax.set_title(f"{scenario}: DR alpha sweep (target y'_f = {dr.target})")
    twin = ax.twinx()
    retain = np.maximum(np.array(dr.retain_loss)[pos], FLOOR)
    twin.loglog(alphas[pos], retain, "s--", color="C1", ms=4, label=f"retain loss (right axis, >= {FLOOR:g})")
    twin.set_ylim(FLOOR / 10, 10 * max(1.0, retain.max()))
    twin.set_ylabel("retain loss L_r (log)", color="C1")
    lines = ax.get_legend_handles_labels()
    extra = twin.get_legend_handles_labels()
    ax.legend(lines[0] + extra[0], lines[1] + extra[1], fontsize=8, loc="center left")


def plot_contraction(results: dict[str, ScenarioResult], path: str | Path) -> Path:
    """``||(I - P_r) w_t||`` under IEU (log scale) with the theoretical ``(1 - eta lam)^t`` line."""
    return _panels(results, path, 4.2, _contraction_panel)


def _contraction_panel(ax: Any, scenario: str, result: ScenarioResult) -> None:
    """IEU forget-only norms (one chain, chain mean, no noise) and the theory line for one scenario."""
    r = result.ieu
    t = np.arange(len(r.forget_only_norm_noiseless))
    theory = r.forget_only_norm_noiseless[0] * r.rate_theory**t
    t_chain = np.arange(len(r.forget_only_norm_chain))
    ax.semilogy(t_chain, r.forget_only_norm_chain, color="0.6", lw=1, label="one noisy chain")
    ax.semilogy(t_chain, r.forget_only_norm_mean, color="C0", lw=1.5, label=f"mean of {r.n_chains} chains")
    ax.semilogy(t, r.forget_only_norm_noiseless, color="C1", lw=2.5, label="no noise")
    ax.semilogy(t, theory, "k--", lw=1, label=f"theory (1 - eta*lam)^t = {r.rate_theory:.5f}^t")
    stationary = np.sqrt(r.forget_only_dim * r.variance_bound)
    ax.axhline(stationary, color="C3", ls=":", label="stationary noise level (one chain)")
    ax.set_title(
        f"{scenario}: fitted rate {r.rate_fit_noiseless:.6f} (no noise), {r.rate_fit_noisy_mean:.4f} (chain mean)"
    )
    ax.set_xlabel("IEU step t")
    ax.set_ylabel("||(I - P_r) w_t||")
    ax.legend(fontsize=8)


def plot_variance(results: dict[str, ScenarioResult], path: str | Path) -> Path:
    """Measured stationary variance per Hessian eigendirection vs the exact value and the bound."""
    return _panels(results, path, 4.0, _variance_panel)


def _variance_panel(ax: Any, scenario: str, result: ScenarioResult) -> None:
    """IEU stationary variance per eigendirection, exact and bound, for one scenario."""
    r = result.ieu
    idx = np.arange(len(r.var_exact))
    ax.plot(idx, r.var_measured, ".", ms=3, label="measured (chains x time)")
    ax.plot(idx, r.var_exact, "-", color="C1", label="exact sigma^2 / (1 - a_i^2)")
    ax.axhline(r.variance_bound, color="k", ls="--", label="bound sigma^2 / (1 - (1 - eta lam)^2)")
    ax.set_xlabel("eigendirection of X_r^T X_r (ascending; forget-only subspace first)")
    ax.set_ylabel("stationary variance")
    ax.set_title(f"{scenario}: IEU stationary variance (sigma = {r.sigma:g})")
    ax.legend(fontsize=8)


def plot_relearn(results: dict[str, ScenarioResult], path: str | Path) -> Path:
    """Relearning steps (GD on the forget set until its loss is back under the threshold) per model."""
    plt = _pyplot()
    models = list(next(iter(results.values())).relearn)
    width = 0.8 / len(results)
    fig, ax = plt.subplots(figsize=(10, 4.2))
    x = np.arange(len(models))
    for k, (scenario, result) in enumerate(results.items()):
        steps = [result.relearn[m].steps for m in models]
        bars = ax.bar(x + (k - (len(results) - 1) / 2) * width, steps, width, label=scenario)
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks(x, models, rotation=20, ha="right")
    ax.set_ylabel("relearning steps")
    ax.set_title("Relearning convergence delay: 0 steps = the forget set was never forgotten")
    ax.legend()
    return _save(fig, path)


FIGURES = {
    "loss_curves.png": plot_loss_curves,
    "dr_alpha_sweep.png": plot_dr_sweep,
    "ieu_contraction.png": plot_contraction,
    "ieu_variance.png": plot_variance,
    "relearn_steps.png": plot_relearn,
}


def plot_all(results: dict[str, ScenarioResult], output_dir: str | Path) -> list[Path]:
    """Write every figure of ``FIGURES`` into ``output_dir``; returns the paths."""
    return [plot(results, Path(output_dir) / name) for name, plot in FIGURES.items()]
