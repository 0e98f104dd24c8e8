"""Linear algebra and gradient descent: losses, the retain row-space projector, quadratic objectives."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hf_unlearn.validation.linear.data import LinearData

GD_TOL = 1e-12
GD_MAX_STEPS = 200_000


def mse(X: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """``||X w - y||^2 / (2 n)``."""
    r = X @ w - y
    return float(r @ r / (2 * len(y)))


def mse_along(X: np.ndarray, y: np.ndarray, path: np.ndarray) -> np.ndarray:
    """``mse`` for every row of ``path`` (shape ``(T, d)``)."""
    r = path @ X.T - y
    return np.sum(r * r, axis=1) / (2 * len(y))


def row_space_projector(X: np.ndarray) -> np.ndarray:
    """Orthogonal projector ``X^+ X`` onto the row space of ``X``."""
    return np.linalg.pinv(X) @ X


def forget_only_component(data: LinearData, w: np.ndarray) -> np.ndarray:
    """``(I - P_r) w``: the part of ``w`` that retain-set gradients can never change."""
    return w - row_space_projector(data.X_r) @ w


@dataclass(frozen=True)
class Quadratic:
    """``f(w) = 1/2 ||A w - b||^2 + lam/2 ||w||^2``; ``A``, ``b`` already carry per-term weights."""

    A: np.ndarray
    b: np.ndarray
    lam: float = 0.0

    @classmethod
    def least_squares(
        cls, terms: Sequence[tuple[np.ndarray, np.ndarray, float]], lam: float = 0.0
    ) -> Quadratic:
        """``sum_k c_k ||X_k w - t_k||^2 / (2 n_k) + lam/2 ||w||^2`` from ``(X_k, t_k, c_k)`` triples."""
        scales = [math.sqrt(c / len(t)) for _, t, c in terms]
        A = np.vstack([s * X for (X, _, _), s in zip(terms, scales)])
        b = np.concatenate([s * t for (_, t, _), s in zip(terms, scales)])
        return cls(A, b, lam)

    def value(self, w: np.ndarray) -> float:
        """Objective value."""
        r = self.A @ w - self.b
        return float(r @ r / 2 + self.lam * (w @ w) / 2)

    def grad(self, w: np.ndarray) -> np.ndarray:
        """Gradient ``A^T (A w - b) + lam w`` (works column-wise for ``w`` of shape ``(d, k)``)."""
        r = self.A @ w - (self.b if w.ndim == 1 else self.b[:, None])
        return self.A.T @ r + self.lam * w

    def smoothness(self) -> float:
        """Largest Hessian eigenvalue ``L``; GD is stable for ``eta < 2 / L``."""
        return float(np.linalg.norm(self.A, 2) ** 2 + self.lam)


@dataclass
class GDRun:
    """Outcome of a gradient-descent run."""

    w: np.ndarray
    steps: int
    grad_norm: float
    eta: float
    path: np.ndarray | None = None


def gd(
    objective: Quadratic,
    w0: np.ndarray,
    eta: float | None = None,
    steps: int | None = None,
    tol: float = GD_TOL,
    max_steps: int = GD_MAX_STEPS,
    keep_path: bool = False,
) -> GDRun:
    """Plain gradient descent ``w <- w - eta grad f(w)`` (``eta`` defaults to ``1 / L``).

    With ``steps`` set, run exactly that many steps; otherwise stop once ``||grad|| <= tol``.
    ``keep_path`` stores every iterate (shape ``(T + 1, d)``).
    """
    eta = 1.0 / objective.smoothness() if eta is None else eta
    w = np.array(w0, dtype=float)
    path = [w.copy()] if keep_path else None
    limit = max_steps if steps is None else steps
    g = objective.grad(w)
    t = 0
    while t < limit and (steps is not None or np.linalg.norm(g) > tol):
        w = w - eta * g
        g = objective.grad(w)
        t += 1
        if path is not None:
            path.append(w.copy())
    return GDRun(w, t, float(np.linalg.norm(g)), eta, None if path is None else np.array(path))


def retain_objective(data: LinearData, lam: float = 0.0) -> Quadratic:
    """``L_r(w) + lam/2 ||w||^2``."""
    return Quadratic.least_squares([(data.X_r, data.y_r, 1.0)], lam)


def full_objective(data: LinearData) -> Quadratic:
    """Mean squared error on all data, ``||X w - y||^2 / (2 (n_r + n_f))``."""
    return Quadratic.least_squares([(data.X, data.y, 1.0)])


def forget_objective(data: LinearData) -> Quadratic:
    """``L_f(w)``: the relearning objective."""
    return Quadratic.least_squares([(data.X_f, data.y_f, 1.0)])


def _err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b))
