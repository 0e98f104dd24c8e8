"""Claim 5: Influence Eliminating Unlearning (IEU) = weight decay + noise contracts the forget-only
component at rate ``1 - eta lam``, its mean converges to the ridge solution, and its stationary variance
is bounded."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hf_unlearn.validation.linear._result import _array_field, _Result
from hf_unlearn.validation.linear.algebra import Quadratic, _err, gd, mse, retain_objective
from hf_unlearn.validation.linear.data import LinearData

PRECISION_FLOOR = 1e-9  # relative size below which float64 GD iterates no longer resolve a component


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
