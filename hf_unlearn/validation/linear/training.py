"""Claims 1 and 2: the original and golden models are min-norm interpolators, and fine-tuning the original
on the retain set never forgets (FT converges to ``w_g + (I - P_r) w_init``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hf_unlearn.validation.linear._result import _array_field, _Result
from hf_unlearn.validation.linear.algebra import (
    GD_TOL,
    _err,
    forget_only_component,
    full_objective,
    gd,
    mse,
    retain_objective,
    row_space_projector,
)
from hf_unlearn.validation.linear.data import LinearData

# Claim 1: original and golden models are min-norm interpolators


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


# Claim 2: fine-tuning on the retain set never forgets


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
