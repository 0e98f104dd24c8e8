"""Claim 6: relearning convergence delay, GD on the forget set until its loss is back under a threshold,
simulated and predicted in closed form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hf_unlearn.validation.linear._result import _Result
from hf_unlearn.validation.linear.algebra import forget_objective, mse
from hf_unlearn.validation.linear.data import LinearData


def relearn_threshold(
    data: LinearData, w_original: np.ndarray, rel_slack: float = 0.1, eps: float = 1e-3
) -> float:
    """Forget loss counted as "relearned": ``(1 + rel_slack) L_f(w_o) + eps * mean(y_f^2)``.

    The original model interpolates the forget set (``L_f(w_o) = 0`` up to rounding), so the absolute
    term ``eps * mean(y_f^2)`` (a fraction ``2 eps`` of the loss of predicting 0) does the work.
    """
    return (1.0 + rel_slack) * mse(data.X_f, data.y_f, w_original) + eps * float(np.mean(data.y_f**2))


def predicted_relearn_steps(
    data: LinearData, w: np.ndarray, threshold: float, eta: float, max_steps: int
) -> int:
    """Closed-form step count of GD on ``L_f`` from ``w``.

    The forget residual evolves as ``r_t = (I - eta G)^t r_0`` with ``G = X_f X_f^T / n_f``, so
    ``L_f(t) = sum_i (1 - eta g_i)^(2t) c_i^2 / (2 n_f)`` with ``c = U^T r_0`` in G's eigenbasis.
    """
    g, U = np.linalg.eigh(data.X_f @ data.X_f.T / data.n_f)
    c2 = (U.T @ (data.X_f @ w - data.y_f)) ** 2
    factors = (1.0 - eta * g) ** 2
    for t in range(max_steps + 1):
        if float(np.sum(factors**t * c2)) / (2 * data.n_f) <= threshold:
            return t
    return max_steps


@dataclass
class RelearnResult(_Result):
    """Steps of GD on the forget set until its loss is back under ``threshold``."""

    steps: int
    predicted_steps: int
    initial_forget_loss: float
    threshold: float
    eta: float


def relearn_steps(
    data: LinearData, w: np.ndarray, threshold: float, eta: float | None = None, max_steps: int = 100_000
) -> RelearnResult:
    """Relearning convergence delay: run GD on ``L_f`` from ``w`` until ``L_f <= threshold``."""
    objective = forget_objective(data)
    eta = 1.0 / objective.smoothness() if eta is None else eta
    w0 = np.asarray(w, dtype=float)
    w_t, t = w0.copy(), 0
    while mse(data.X_f, data.y_f, w_t) > threshold and t < max_steps:
        w_t = w_t - eta * objective.grad(w_t)
        t += 1
    return RelearnResult(
        steps=t,
        predicted_steps=predicted_relearn_steps(data, w0, threshold, eta, max_steps),
        initial_forget_loss=mse(data.X_f, data.y_f, w0),
        threshold=threshold,
        eta=eta,
    )
