"""Claim 3: removing the forget-only component before FT recovers the golden model; the two data-driven
masks (retention-based, forget-saliency) and what they leave behind with overlapping features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hf_unlearn.validation.linear._result import _array_field, _Result
from hf_unlearn.validation.linear.algebra import GD_TOL, mse, row_space_projector
from hf_unlearn.validation.linear.data import LinearData
from hf_unlearn.validation.linear.training import finetune


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
