"""Linear-regression theory of fine-tuning unlearning, DR, IEU and RCD, as executable numbers.

Setting: noiseless over-parameterized linear regression ``y = X w*`` with ``n_r + n_f < d``. Every
loss is the mean squared error ``L_D(w) = ||X_D w - y_D||^2 / (2 n_D)``. Notation:

* ``P_r`` is the orthogonal projector onto the row space of the retain design ``X_r``;
  ``(I - P_r) w`` is the *forget-only component* of ``w``: retain gradients never touch it.
* original ``w_o = X^+ y`` (what GD from 0 on all data converges to),
  golden ``w_g = X_r^+ y_r = P_r w*`` (GD from 0 on the retain set only).
* fine-tuning (FT) from ``w_0`` converges to ``w_0 + X_r^+ (y_r - X_r w_0) = w_g + (I - P_r) w_0``.

Each claim has one function that simulates it (plain gradient descent) and compares the simulation with
the closed form; results are dataclasses whose ``to_dict()`` holds only JSON-serializable numbers
(arrays needed for figures live in fields that ``to_dict()`` leaves out). ``run_all`` runs everything
for both scenarios. Only numpy is used.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

SCENARIOS = ("distinct", "overlap")
DR_TARGETS = ("zero", "negated", "random")
DEFAULT_ALPHAS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
GD_TOL = 1e-12
GD_MAX_STEPS = 200_000
PRECISION_FLOOR = 1e-9  # relative size below which float64 GD iterates no longer resolve a component


def _plain(value: Any) -> Any:
    """Convert numpy scalars / nested containers into JSON-serializable Python objects."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.integer | bool | np.bool_):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, np.floating | float):
        return float(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


class _Result:
    """Mixin: ``to_dict()`` returns the fields not marked ``metadata={"array": True}``, as plain types."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable dict of the scalar fields."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if not f.metadata.get("array")}


def _array_field() -> Any:
    return field(default=None, repr=False, metadata={"array": True})


# ----------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------


@dataclass
class LinearData(_Result):
    """A retain/forget split of a noiseless linear-regression problem ``y = X w*``.

    Coordinates are laid out as ``[forget-only | overlap | retain-only]``; forget rows are supported on
    ``forget_idx`` (forget-only + overlap), retain rows on ``retain_idx`` (overlap + retain-only).
    """

    scenario: str
    seed: int
    d: int
    n_r: int
    n_f: int
    d_lap: int
    X_r: np.ndarray = _array_field()
    y_r: np.ndarray = _array_field()
    X_f: np.ndarray = _array_field()
    y_f: np.ndarray = _array_field()
    w_star: np.ndarray = _array_field()
    retain_idx: np.ndarray = _array_field()
    forget_idx: np.ndarray = _array_field()
    overlap_idx: np.ndarray = _array_field()

    @property
    def X(self) -> np.ndarray:
        """Stacked design ``[X_r; X_f]``."""
        return np.vstack([self.X_r, self.X_f])

    @property
    def y(self) -> np.ndarray:
        """Stacked targets ``[y_r; y_f]``."""
        return np.concatenate([self.y_r, self.y_f])

    @property
    def forget_only_idx(self) -> np.ndarray:
        """Coordinates only forget rows use."""
        return np.setdiff1d(self.forget_idx, self.retain_idx)


def make_data(
    scenario: str = "distinct", n_r: int = 60, n_f: int = 20, d: int = 200, d_lap: int = 40, seed: int = 0
) -> LinearData:
    """Seeded Gaussian design for the ``"distinct"`` (disjoint supports) or ``"overlap"`` scenario.

    ``d_lap`` coordinates are shared by forget and retain rows in the overlap scenario (ignored, i.e. 0,
    for ``"distinct"``); the remaining coordinates are split evenly into forget-only and retain-only.
    Entries are standard normal on each row's support, ``w* ~ N(0, I_d)`` and ``y = X w*``.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
    d_lap = 0 if scenario == "distinct" else d_lap
    n_forget_only = (d - d_lap) // 2
    forget_idx = np.arange(0, n_forget_only + d_lap)
    retain_idx = np.arange(n_forget_only, d)
    overlap_idx = np.arange(n_forget_only, n_forget_only + d_lap)
    if not (n_r + n_f < d and n_r < retain_idx.size and n_f < forget_idx.size):
        raise ValueError("need n_r + n_f < d, n_r < |R| and n_f < |F| (over-parameterized regime)")
    rng = np.random.default_rng(seed)
    w_star = rng.standard_normal(d)
    X_r = np.zeros((n_r, d))
    X_r[:, retain_idx] = rng.standard_normal((n_r, retain_idx.size))
    X_f = np.zeros((n_f, d))
    X_f[:, forget_idx] = rng.standard_normal((n_f, forget_idx.size))
    return LinearData(
        scenario=scenario,
        seed=seed,
        d=d,
        n_r=n_r,
        n_f=n_f,
        d_lap=d_lap,
        X_r=X_r,
        y_r=X_r @ w_star,
        X_f=X_f,
        y_f=X_f @ w_star,
        w_star=w_star,
        retain_idx=retain_idx,
        forget_idx=forget_idx,
        overlap_idx=overlap_idx,
    )


# ----------------------------------------------------------------------------------------------------
# Linear algebra and gradient descent
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# Claim 1: original and golden models are min-norm interpolators
# ----------------------------------------------------------------------------------------------------


@dataclass
class PretrainResult(_Result):
    """Original (all data) and golden (retain only) models: GD from 0 vs closed forms."""

    original_gd_steps: int
    golden_gd_steps: int
    err_original_vs_pinv: float
    err_golden_vs_pinv: float
    err_golden_vs_Pr_wstar: float
    original_retain_loss: float
    original_forget_loss: float
    golden_retain_loss: float
    golden_forget_loss: float
    forget_only_norm_original: float
    w_original: np.ndarray = _array_field()
    w_golden: np.ndarray = _array_field()


def pretrain(data: LinearData, tol: float = GD_TOL) -> PretrainResult:
    """GD from 0 on all data (original) and on the retain set (golden), checked against ``pinv``.

    Claims: ``w_o = X^+ y`` and ``w_g = X_r^+ y_r = P_r w*``; both interpolate their training data and
    the golden model has positive forget loss.
    """
    zero = np.zeros(data.d)
    original = gd(full_objective(data), zero, tol=tol)
    golden = gd(retain_objective(data), zero, tol=tol)
    w_o, w_g = original.w, golden.w
    return PretrainResult(
        original_gd_steps=original.steps,
        golden_gd_steps=golden.steps,
        err_original_vs_pinv=_err(w_o, np.linalg.pinv(data.X) @ data.y),
        err_golden_vs_pinv=_err(w_g, np.linalg.pinv(data.X_r) @ data.y_r),
        err_golden_vs_Pr_wstar=_err(w_g, row_space_projector(data.X_r) @ data.w_star),
        original_retain_loss=mse(data.X_r, data.y_r, w_o),
        original_forget_loss=mse(data.X_f, data.y_f, w_o),
        golden_retain_loss=mse(data.X_r, data.y_r, w_g),
        golden_forget_loss=mse(data.X_f, data.y_f, w_g),
        forget_only_norm_original=float(np.linalg.norm(forget_only_component(data, w_o))),
        w_original=w_o,
        w_golden=w_g,
    )


# ----------------------------------------------------------------------------------------------------
# Claim 2: fine-tuning on the retain set never forgets
# ----------------------------------------------------------------------------------------------------


@dataclass
class FinetuneResult(_Result):
    """GD on the retain set from ``w_init`` vs the closed-form limit ``w_g + (I - P_r) w_init``."""

    steps: int
    err_vs_closed_form: float
    retain_loss: float
    forget_loss: float
    dist_to_golden: float
    forget_only_norm_init: float
    err_gap_vs_forget_only_component: float
    w: np.ndarray = _array_field()


def finetune(
    data: LinearData, w_init: np.ndarray, w_golden: np.ndarray, tol: float = GD_TOL
) -> FinetuneResult:
    """Fine-tune ``w_init`` on the retain set to convergence.

    Claim: the limit is ``w_init + X_r^+ (y_r - X_r w_init)``, so ``w_ft - w_g = (I - P_r) w_init``.
    From the original model the gradient is already 0: FT returns ``w_o`` (retain and forget loss 0).
    """
    run = gd(retain_objective(data), w_init, tol=tol)
    closed_form = w_init + np.linalg.pinv(data.X_r) @ (data.y_r - data.X_r @ w_init)
    leftover = forget_only_component(data, w_init)
    return FinetuneResult(
        steps=run.steps,
        err_vs_closed_form=_err(run.w, closed_form),
        retain_loss=mse(data.X_r, data.y_r, run.w),
        forget_loss=mse(data.X_f, data.y_f, run.w),
        dist_to_golden=_err(run.w, w_golden),
        forget_only_norm_init=float(np.linalg.norm(leftover)),
        err_gap_vs_forget_only_component=_err(run.w - w_golden, leftover),
        w=run.w,
    )


# ----------------------------------------------------------------------------------------------------
# Claim 3: removing the forget-only component before FT recovers the golden model
# ----------------------------------------------------------------------------------------------------


@dataclass
class RemovalResult(_Result):
    """One influence-removal strategy applied to ``w_o`` and followed by FT."""

    strategy: str
    retain_loss_before_ft: float
    forget_loss_before_ft: float
    retain_loss: float
    forget_loss: float
    dist_to_golden: float
    forget_only_norm_init: float
    err_vs_closed_form: float
    ft_steps: int
    w: np.ndarray = _array_field()


def saliency_masks(data: LinearData) -> dict[str, np.ndarray]:
    """The coordinates two data-driven masks reset, from the per-coordinate energies of the data (the
    linear model's gradient saliency: ``sum_i x_ij^2`` is the curvature of the loss along ``w_j``).

    ``rbm`` (retention-based masking, the first seed paper's TMLR version): among the coordinates the forget
    rows use, those the retain rows do not use; the forget-only coordinates, the overlap kept. ``forget``
    (forget-saliency masking, as SalUn's saliency on the forget loss): every coordinate the forget rows use,
    the overlap included."""
    forget_energy = (data.X_f**2).sum(axis=0)
    retain_energy = (data.X_r**2).sum(axis=0)
    return {
        "rbm": np.flatnonzero((forget_energy > 0) & (retain_energy == 0)),
        "forget": np.flatnonzero(forget_energy > 0),
    }


def removal_inits(data: LinearData, w_original: np.ndarray) -> dict[str, np.ndarray]:
    """Starting points for FT after removing influence from ``w_o``.

    ``project``: ``P_r w_o``; ``mask_forget_only``: zero the forget-only coordinates (keep the overlap), which
    is what retention-based masking picks (``saliency_masks(data)["rbm"]``); ``mask_all_forget``: zero every
    coordinate forget rows use (drop the overlap too), what a forget-saliency mask picks
    (``saliency_masks(data)["forget"]``). In the distinct scenario the two masks coincide.
    """
    masks = saliency_masks(data)
    keep_overlap = w_original.copy()
    keep_overlap[masks["rbm"]] = 0.0
    drop_overlap = w_original.copy()
    drop_overlap[masks["forget"]] = 0.0
    return {
        "project": row_space_projector(data.X_r) @ w_original,
        "mask_forget_only": keep_overlap,
        "mask_all_forget": drop_overlap,
    }


def remove_influence(
    data: LinearData, w_original: np.ndarray, w_golden: np.ndarray, tol: float = GD_TOL
) -> dict[str, RemovalResult]:
    """Apply each strategy of ``removal_inits`` then fine-tune to convergence.

    Claim: the result is ``w_g + (I - P_r) w_init``. Projection makes ``(I - P_r) w_init = 0`` and lands
    exactly on ``w_g``; masking does the same in the distinct scenario but, with overlapping features,
    leaves ``(I - P_r) w_mask != 0`` (overlap weights carry forget information along directions the
    retain rows do not span), so FT ends at zero retain loss but away from golden.
    """
    results = {}
    for name, w_init in removal_inits(data, w_original).items():
        ft = finetune(data, w_init, w_golden, tol=tol)
        results[name] = RemovalResult(
            strategy=name,
            retain_loss_before_ft=mse(data.X_r, data.y_r, w_init),
            forget_loss_before_ft=mse(data.X_f, data.y_f, w_init),
            retain_loss=ft.retain_loss,
            forget_loss=ft.forget_loss,
            dist_to_golden=ft.dist_to_golden,
            forget_only_norm_init=ft.forget_only_norm_init,
            err_vs_closed_form=ft.err_vs_closed_form,
            ft_steps=ft.steps,
            w=ft.w,
        )
    return results


# ----------------------------------------------------------------------------------------------------
# Claim 4: discriminative regularization
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# Claim 5: IEU = weight decay + noise contracts the forget-only component
# ----------------------------------------------------------------------------------------------------


def ridge_solution(data: LinearData, lam: float) -> np.ndarray:
    """``argmin L_r(w) + lam/2 ||w||^2 = (X_r^T X_r / n_r + lam I)^{-1} X_r^T y_r / n_r``."""
    H = data.X_r.T @ data.X_r / data.n_r
    return np.linalg.solve(H + lam * np.eye(data.d), data.X_r.T @ data.y_r / data.n_r)


def fit_log_linear_rate(values: np.ndarray) -> float:
    """Least-squares fit of ``log values[t] = c + t log rate``; returns ``rate``."""
    t = np.arange(len(values))
    slope = np.polyfit(t, np.log(values), 1)[0]
    return float(math.exp(slope))


def stationary_variances(mu: np.ndarray, eta: float, lam: float, sigma: float) -> np.ndarray:
    """Exact stationary variance along each Hessian eigendirection of the IEU recursion.

    With ``a_i = 1 - eta (mu_i + lam)`` the error ``e = w - w_lam`` obeys ``e_i <- a_i e_i + sigma xi``,
    so ``Var = sigma^2 / (1 - a_i^2)``. For ``mu_i = 0`` (forget-only subspace) this is
    ``sigma^2 / (1 - (1 - eta lam)^2)``; if ``eta (mu_max + 2 lam) <= 2`` then ``|a_i| <= 1 - eta lam``
    for every i, so that value bounds the variance along *every* direction.
    """
    a = 1.0 - eta * (mu + lam)
    return sigma**2 / (1.0 - a**2)


@dataclass
class IEUResult(_Result):
    """IEU simulation: exact contraction, convergence to ridge, stationary variance."""

    lam: float
    sigma: float
    eta: float
    steps: int
    n_chains: int
    chain_steps: int
    burn_in: int
    rate_theory: float
    rate_fit_noiseless: float
    noiseless_fit_window: int
    rate_fit_noisy_mean: float
    noisy_fit_window: int
    max_log_dev_noiseless: float
    forget_only_norm_final_noiseless: float
    err_noiseless_vs_ridge: float
    max_ratio_to_ridge_envelope: float
    err_chain_mean_vs_ridge: float
    chain_mean_stat_scale: float
    variance_bound: float
    var_forget_only_measured: float
    var_forget_only_exact: float
    var_row_measured_mean: float
    var_row_exact_mean: float
    var_row_measured_max: float
    var_row_exact_max: float
    var_max_measured: float
    forget_only_dim: int
    retain_loss_ridge: float
    forget_loss_ridge: float
    retain_loss: float
    forget_loss: float
    w: np.ndarray = _array_field()
    forget_only_norm_noiseless: np.ndarray = _array_field()
    forget_only_norm_mean: np.ndarray = _array_field()
    forget_only_norm_chain: np.ndarray = _array_field()
    var_measured: np.ndarray = _array_field()
    var_exact: np.ndarray = _array_field()


def _retain_eigenbasis(data: LinearData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Eigenvalues ``mu`` (ascending, tiny ones set to 0), eigenvectors ``Q`` of ``X_r^T X_r / n_r``, null mask."""
    mu, Q = np.linalg.eigh(data.X_r.T @ data.X_r / data.n_r)
    null = mu < 1e-10 * mu.max()
    return np.where(null, 0.0, mu), Q, null


def _noisy_chains(
    objective: Quadratic,
    w0: np.ndarray,
    eta: float,
    sigma: float,
    steps: int,
    burn_in: int,
    n_chains: int,
    seed: int,
    Q: np.ndarray,
    null: np.ndarray,
) -> dict[str, np.ndarray]:
    """Run ``n_chains`` IEU chains; track forget-only norms and cross-chain variances after burn-in."""
    rng = np.random.default_rng(seed)
    W = np.repeat(w0[:, None], n_chains, axis=1)
    N = Q[:, null]
    mean_norm, chain_norm = [np.linalg.norm(N.T @ w0)], [np.linalg.norm(N.T @ w0)]
    var_sum = np.zeros(len(w0))
    for t in range(1, steps + 1):
        W = W - eta * objective.grad(W) + sigma * rng.standard_normal(W.shape)
        mean_norm.append(np.linalg.norm(N.T @ W.mean(axis=1)))
        chain_norm.append(np.linalg.norm(N.T @ W[:, 0]))
        if t > burn_in:
            var_sum += np.var(Q.T @ W, axis=1, ddof=1)
    return {
        "W": W,
        "mean_norm": np.array(mean_norm),
        "chain_norm": np.array(chain_norm),
        "var": var_sum / (steps - burn_in),
    }


def _noisy_rate(mean_norm: np.ndarray, floor: float) -> tuple[float, int]:
    """Fit the contraction rate of the chain-mean norm while it is well above the noise floor."""
    below = np.nonzero(mean_norm < 20.0 * floor)[0]
    window = int(below[0]) if below.size else len(mean_norm)
    if window < 5:
        return float("nan"), window
    return fit_log_linear_rate(mean_norm[:window]), window


def ieu(
    data: LinearData,
    w_original: np.ndarray,
    lam: float = 0.1,
    sigma: float = 0.01,
    eta: float | None = None,
    steps: int = 1500,
    n_chains: int = 64,
    chain_steps: int = 800,
    burn_in: int = 300,
    seed: int = 0,
) -> IEUResult:
    """IEU from ``w_o``: ``w <- w - eta (grad L_r(w) + lam w) + sigma xi`` with ``xi ~ N(0, I)``.

    Claims checked: (i) without noise ``(I - P_r) w_t = (1 - eta lam)^t (I - P_r) w_0`` (log-linear fit
    of the rate; with noise the chain mean contracts at the same rate); (ii) ``E[w_t]`` obeys the
    noiseless recursion and converges to ``ridge_solution`` with ``||E w_t - w_lam|| <= (1 - eta lam)^t
    ||w_0 - w_lam||``; (iii) stationary variances match ``stationary_variances`` and are bounded by
    ``sigma^2 / (1 - (1 - eta lam)^2)`` (attained on the forget-only subspace).

    The noiseless recursion runs ``steps`` steps; ``n_chains`` independent noisy chains run
    ``chain_steps`` steps and variances are averaged over chains and over the steps after ``burn_in``.
    The returned IEU model ``w`` is the final iterate of the first noisy chain.
    """
    objective = retain_objective(data, lam)
    eta = 1.0 / objective.smoothness() if eta is None else eta
    rho = 1.0 - eta * lam
    mu, Q, null = _retain_eigenbasis(data)
    N = Q[:, null]
    w_lam = ridge_solution(data, lam)

    noiseless = gd(objective, w_original, eta, steps=steps, keep_path=True)
    clean_norm = np.linalg.norm(noiseless.path @ N, axis=1)
    # float64 rounding puts ~1e-16 * ||w|| into the null space at each step: compare with theory only
    # while the quantities are well above that level.
    resolvable = PRECISION_FLOOR * max(1.0, float(np.linalg.norm(w_original)))
    window = int(np.argmax(clean_norm < resolvable)) if np.any(clean_norm < resolvable) else steps + 1
    t = np.arange(window)
    theory_log = math.log(clean_norm[0]) + t * math.log(rho)
    ridge_dist = np.linalg.norm(noiseless.path - w_lam, axis=1)
    envelope = rho ** np.arange(steps + 1) * ridge_dist[0]
    above = ridge_dist > resolvable

    chains = _noisy_chains(objective, w_original, eta, sigma, chain_steps, burn_in, n_chains, seed, Q, null)
    bound = sigma**2 / (1.0 - rho**2)
    floor = sigma * math.sqrt(null.sum() / (n_chains * (1.0 - rho**2)))
    noisy_rate, noisy_window = _noisy_rate(chains["mean_norm"], floor)
    var_exact = stationary_variances(mu, eta, lam, sigma)
    var_meas = chains["var"]
    w_chain = chains["W"][:, 0]
    return IEUResult(
        lam=lam,
        sigma=sigma,
        eta=eta,
        steps=steps,
        n_chains=n_chains,
        chain_steps=chain_steps,
        burn_in=burn_in,
        rate_theory=rho,
        rate_fit_noiseless=fit_log_linear_rate(clean_norm[:window]),
        noiseless_fit_window=window,
        rate_fit_noisy_mean=noisy_rate,
        noisy_fit_window=noisy_window,
        max_log_dev_noiseless=float(np.max(np.abs(np.log(clean_norm[:window]) - theory_log))),
        forget_only_norm_final_noiseless=float(clean_norm[-1]),
        err_noiseless_vs_ridge=float(ridge_dist[-1]),
        max_ratio_to_ridge_envelope=float(np.max(ridge_dist[above] / envelope[above])),
        err_chain_mean_vs_ridge=_err(chains["W"].mean(axis=1), w_lam),
        chain_mean_stat_scale=float(math.sqrt(var_exact.sum() / n_chains)),
        variance_bound=bound,
        var_forget_only_measured=float(var_meas[null].mean()),
        var_forget_only_exact=float(var_exact[null].mean()),
        var_row_measured_mean=float(var_meas[~null].mean()),
        var_row_exact_mean=float(var_exact[~null].mean()),
        var_row_measured_max=float(var_meas[~null].max()),
        var_row_exact_max=float(var_exact[~null].max()),
        var_max_measured=float(var_meas.max()),
        forget_only_dim=int(null.sum()),
        retain_loss_ridge=mse(data.X_r, data.y_r, w_lam),
        forget_loss_ridge=mse(data.X_f, data.y_f, w_lam),
        retain_loss=mse(data.X_r, data.y_r, w_chain),
        forget_loss=mse(data.X_f, data.y_f, w_chain),
        w=w_chain,
        forget_only_norm_noiseless=clean_norm,
        forget_only_norm_mean=chains["mean_norm"],
        forget_only_norm_chain=chains["chain_norm"],
        var_measured=var_meas,
        var_exact=var_exact,
    )


# ----------------------------------------------------------------------------------------------------
# Claim 6: relearning convergence delay
# ----------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------
# Everything together
# ----------------------------------------------------------------------------------------------------


@dataclass
class TheoryConfig(_Result):
    """Sizes and hyper-parameters of ``run_all`` (small, so that everything runs in seconds)."""

    n_r: int = 60
    n_f: int = 20
    d: int = 200
    d_lap: int = 40
    dr_alphas: tuple[float, ...] = DEFAULT_ALPHAS
    dr_steps: int = 50
    dr_target: str = "zero"
    ieu_lam: float = 0.1
    ieu_sigma: float = 0.01
    ieu_steps: int = 1500
    ieu_chains: int = 64
    ieu_chain_steps: int = 800
    ieu_burn_in: int = 300
    relearn_rel_slack: float = 0.1
    relearn_eps: float = 1e-3


@dataclass
class ScenarioResult(_Result):
    """All claims for one scenario."""

    data: LinearData
    pretrain: PretrainResult
    finetune: FinetuneResult
    removal: dict[str, RemovalResult]
    dr: DRResult
    ieu: IEUResult
    relearn: dict[str, RelearnResult]


def relearn_all(
    data: LinearData, models: dict[str, np.ndarray], w_original: np.ndarray, config: TheoryConfig
) -> dict[str, RelearnResult]:
    """``relearn_steps`` for every model, with one shared threshold and step size."""
    threshold = relearn_threshold(data, w_original, config.relearn_rel_slack, config.relearn_eps)
    eta = 1.0 / forget_objective(data).smoothness()
    return {name: relearn_steps(data, w, threshold, eta) for name, w in models.items()}


def run_scenario(scenario: str, seed: int = 0, config: TheoryConfig | None = None) -> ScenarioResult:
    """Run every claim for one scenario and keep the arrays the figures need."""
    config = config or TheoryConfig()
    data = make_data(scenario, config.n_r, config.n_f, config.d, config.d_lap, seed)
    pre = pretrain(data)
    w_o, w_g = pre.w_original, pre.w_golden
    ft = finetune(data, w_o, w_g)
    removal = remove_influence(data, w_o, w_g)
    dr = discriminative_regularization(
        data, w_o, w_g, config.dr_alphas, config.dr_steps, config.dr_target, seed=seed
    )
    ieu_result = ieu(
        data,
        w_o,
        lam=config.ieu_lam,
        sigma=config.ieu_sigma,
        steps=config.ieu_steps,
        n_chains=config.ieu_chains,
        chain_steps=config.ieu_chain_steps,
        burn_in=config.ieu_burn_in,
        seed=seed,
    )
    models = {
        "original": w_o,
        "finetune": ft.w,
        "golden": w_g,
        **{f"{name}+ft": r.w for name, r in removal.items()},
        f"dr(alpha={max(config.dr_alphas):g})": dr.weights[float(max(config.dr_alphas))],
        "ieu": ieu_result.w,
    }
    return ScenarioResult(
        data=data,
        pretrain=pre,
        finetune=ft,
        removal=removal,
        dr=dr,
        ieu=ieu_result,
        relearn=relearn_all(data, models, w_o, config),
    )


def summarize(results: dict[str, ScenarioResult], seed: int, config: TheoryConfig) -> dict[str, Any]:
    """JSON-serializable summary of ``run_scenario`` results (the output of ``run_all``)."""
    return {
        "seed": seed,
        "config": config.to_dict(),
        "scenarios": {k: r.to_dict() for k, r in results.items()},
    }


def single_threaded_blas() -> contextlib.AbstractContextManager[Any]:
    """Limit BLAS to one thread if ``threadpoolctl`` is available (matrices here are tiny; BLAS threads
    only add overhead and suffer badly on a busy machine)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_scenarios(seed: int = 0, config: TheoryConfig | None = None) -> dict[str, ScenarioResult]:
    """``run_scenario`` for both scenarios (result objects, with the arrays figures need)."""
    with single_threaded_blas():
        return {s: run_scenario(s, seed, config) for s in SCENARIOS}


def run_all(seed: int = 0, config: TheoryConfig | None = None) -> dict[str, Any]:
    """Run every claim for both scenarios; returns a JSON-serializable dict."""
    config = config or TheoryConfig()
    return summarize(run_scenarios(seed, config), seed, config)


def loss_trajectories(result: ScenarioResult, steps: int = 300) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Retain and forget loss per GD step for golden training and each unlearning method (for figures).

    IEU is shown without noise, i.e. the trajectory of ``E[w_t]``.
    """
    data, w_o = result.data, result.pretrain.w_original
    retain = retain_objective(data)
    runs = {
        "golden (retain GD from 0)": gd(retain, np.zeros(data.d), steps=steps, keep_path=True),
        "FT from original": gd(retain, w_o, steps=steps, keep_path=True),
        "project + FT": gd(retain, removal_inits(data, w_o)["project"], steps=steps, keep_path=True),
        "mask (drop overlap) + FT": gd(
            retain, removal_inits(data, w_o)["mask_all_forget"], steps=steps, keep_path=True
        ),
        f"DR (alpha={max(result.dr.alphas):g})": gd(
            dr_objective(data, max(result.dr.alphas), dr_target(data, result.dr.target, data.seed)),
            w_o,
            result.dr.eta,
            steps=steps,
            keep_path=True,
        ),
        "IEU mean (no noise)": gd(
            retain_objective(data, result.ieu.lam), w_o, result.ieu.eta, steps=steps, keep_path=True
        ),
    }
    return {
        name: (mse_along(data.X_r, data.y_r, run.path), mse_along(data.X_f, data.y_f, run.path))
        for name, run in runs.items()
    }
