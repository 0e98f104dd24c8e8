"""Everything together: run every claim for one scenario or both, summarize as JSON, and the loss
trajectories the figures draw."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from hf_unlearn.validation.linear._result import _Result
from hf_unlearn.validation.linear.algebra import forget_objective, gd, mse_along, retain_objective
from hf_unlearn.validation.linear.data import SCENARIOS, LinearData, make_data
from hf_unlearn.validation.linear.discriminative import (
    DEFAULT_ALPHAS,
    DRResult,
    discriminative_regularization,
    dr_objective,
    dr_target,
)
from hf_unlearn.validation.linear.influence_eliminating import IEUResult, ieu
from hf_unlearn.validation.linear.relearning import RelearnResult, relearn_steps, relearn_threshold
from hf_unlearn.validation.linear.removal import RemovalResult, removal_inits, remove_influence
from hf_unlearn.validation.linear.training import FinetuneResult, PretrainResult, finetune, pretrain


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

    def options(self, claim: str) -> dict[str, Any]:
        """The ``<claim>_*`` settings (``"dr"``, ``"ieu"``, ``"relearn"``) as keyword arguments of that
        claim's function: the prefix dropped, ``ieu_chains`` passed as ``n_chains``."""
        prefix = f"{claim}_"
        return {
            _ARGUMENT_NAMES.get(f.name, f.name.removeprefix(prefix)): getattr(self, f.name)
            for f in fields(self)
            if f.name.startswith(prefix)
        }


_ARGUMENT_NAMES = {"ieu_chains": "n_chains"}  # settings whose argument name is not the field minus its prefix


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
    threshold = relearn_threshold(data, w_original, **config.options("relearn"))
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
    dr = discriminative_regularization(data, w_o, w_g, seed=seed, **config.options("dr"))
    ieu_result = ieu(data, w_o, seed=seed, **config.options("ieu"))
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
