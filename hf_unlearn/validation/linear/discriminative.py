"""Claim 4: discriminative regularization (DR), ``L_r(w) + alpha ||X_f w - y'_f||^2 / (2 n_f)`` from
``w_o``: an alpha sweep at a fixed step budget and the alpha-independent converged limit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hf_unlearn.validation.linear._result import _array_field, _Result
from hf_unlearn.validation.linear.algebra import Quadratic, _err, gd, mse
from hf_unlearn.validation.linear.data import LinearData

DR_TARGETS = ("zero", "negated", "random")
DEFAULT_ALPHAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def dr_target(data: LinearData, kind: str = "zero", seed: int = 0) -> np.ndarray:
    """Wrong forget target ``y'_f`` for DR.

    ``zero``: predict 0 (no information about the forget labels; default), ``negated``: ``-y_f``,
    ``random``: Gaussian with the scale of ``y_f``, independent of it.
    """
    if kind == "zero":
        return np.zeros_like(data.y_f)
    if kind == "negated":
        return -data.y_f
    if kind == "random":
        scale = math.sqrt(float(np.mean(data.y_f**2)))
        return scale * np.random.default_rng(seed + 7919).standard_normal(data.n_f)
    raise ValueError(f"target must be one of {DR_TARGETS}, got {kind!r}")


def dr_objective(data: LinearData, alpha: float, target: np.ndarray) -> Quadratic:
    """``L_r(w) + alpha ||X_f w - y'_f||^2 / (2 n_f)``."""
    return Quadratic.least_squares([(data.X_r, data.y_r, 1.0), (data.X_f, target, alpha)])


@dataclass
class DRResult(_Result):
    """Alpha sweep of DR from ``w_o`` with a fixed step budget, plus the converged limit."""

    target: str
    steps: int
    eta: float
    alphas: list[float]
    forget_loss: list[float]
    retain_loss: list[float]
    forget_gap_to_golden: list[float]
    dist_to_golden: list[float]
    golden_forget_loss: float
    limit_forget_loss: float
    limit_retain_loss: float
    limit_dist_to_golden: float
    limit_err_gd_vs_closed_form: dict[str, float]
    limit_gd_steps: dict[str, int]
    weights: dict[float, np.ndarray] = _array_field()


def dr_limit(data: LinearData, w_original: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Closed-form limit of DR-GD from ``w_o`` for any ``alpha > 0``.

    GD stays in ``w_o + row(X)`` and, as ``[X_r; X_f]`` has full row rank, converges to the unique point
    there that fits ``y_r`` and ``y'_f`` exactly: ``w_o + X^+ ([y_r; y'_f] - X w_o)`` -- independent of
    ``alpha``. With the zero target and distinct features this equals ``w_g``.
    """
    stacked = np.concatenate([data.y_r, target])
    return w_original + np.linalg.pinv(data.X) @ (stacked - data.X @ w_original)


def discriminative_regularization(
    data: LinearData,
    w_original: np.ndarray,
    w_golden: np.ndarray,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    steps: int = 50,
    target: str = "zero",
    converge_alphas: Sequence[float] = (0.5, 1.0),
    seed: int = 0,
) -> DRResult:
    """DR sweep: ``steps`` GD steps from ``w_o`` (shared ``eta = 1 / L`` at the largest alpha) per alpha.

    Reports forget/retain loss, the forget-loss gap ``L_f(w_g) - L_f(w)`` and ``||w - w_g||`` per alpha,
    and checks that GD run to convergence at ``converge_alphas`` matches ``dr_limit``.
    """
    y_wrong = dr_target(data, target, seed)
    eta = 1.0 / dr_objective(data, max(alphas), y_wrong).smoothness()
    golden_forget = mse(data.X_f, data.y_f, w_golden)
    weights = {float(a): gd(dr_objective(data, a, y_wrong), w_original, eta, steps=steps).w for a in alphas}
    limit = dr_limit(data, w_original, y_wrong)
    limit_runs = {f"{a:g}": gd(dr_objective(data, a, y_wrong), w_original) for a in converge_alphas}
    forget = [mse(data.X_f, data.y_f, w) for w in weights.values()]
    return DRResult(
        target=target,
        steps=steps,
        eta=eta,
        alphas=[float(a) for a in alphas],
        forget_loss=forget,
        retain_loss=[mse(data.X_r, data.y_r, w) for w in weights.values()],
        forget_gap_to_golden=[golden_forget - f for f in forget],
        dist_to_golden=[_err(w, w_golden) for w in weights.values()],
        golden_forget_loss=golden_forget,
        limit_forget_loss=mse(data.X_f, data.y_f, limit),
        limit_retain_loss=mse(data.X_r, data.y_r, limit),
        limit_dist_to_golden=_err(limit, w_golden),
        limit_err_gd_vs_closed_form={k: _err(r.w, limit) for k, r in limit_runs.items()},
        limit_gd_steps={k: r.steps for k, r in limit_runs.items()},
        weights=weights,
    )
