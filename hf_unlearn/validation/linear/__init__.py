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

One module a claim; everything public is re-exported here:

* ``data``: the two scenarios (``make_data``, ``LinearData``);
* ``algebra``: losses, projectors, quadratic objectives and gradient descent;
* ``training``: claims 1-2, original and golden as min-norm interpolators, FT never forgets;
* ``removal``: claim 3, projection and the saliency masks before FT;
* ``discriminative``: claim 4, discriminative regularization (DR);
* ``influence_eliminating``: claim 5, Influence Eliminating Unlearning (IEU);
* ``relearning``: claim 6, relearning convergence delay;
* ``scenario``: every claim together (``TheoryConfig``, ``run_scenario``, ``run_all``, ``loss_trajectories``).
"""

from __future__ import annotations

from hf_unlearn.validation.linear.algebra import (
    GD_MAX_STEPS,
    GD_TOL,
    GDRun,
    Quadratic,
    forget_objective,
    forget_only_component,
    full_objective,
    gd,
    mse,
    mse_along,
    retain_objective,
    row_space_projector,
)
from hf_unlearn.validation.linear.data import SCENARIOS, LinearData, make_data
from hf_unlearn.validation.linear.discriminative import (
    DEFAULT_ALPHAS,
    DR_TARGETS,
    DRResult,
    discriminative_regularization,
    dr_limit,
    dr_objective,
    dr_target,
)
from hf_unlearn.validation.linear.influence_eliminating import (
    PRECISION_FLOOR,
    IEUResult,
    fit_log_linear_rate,
    ieu,
    ridge_solution,
    stationary_variances,
)
from hf_unlearn.validation.linear.relearning import (
    RelearnResult,
    predicted_relearn_steps,
    relearn_steps,
    relearn_threshold,
)
from hf_unlearn.validation.linear.removal import (
    RemovalResult,
    removal_inits,
    remove_influence,
    saliency_masks,
)
from hf_unlearn.validation.linear.scenario import (
    ScenarioResult,
    TheoryConfig,
    loss_trajectories,
    relearn_all,
    run_all,
    run_scenario,
    run_scenarios,
    single_threaded_blas,
    summarize,
)
from hf_unlearn.validation.linear.training import FinetuneResult, PretrainResult, finetune, pretrain

__all__ = [
    "DEFAULT_ALPHAS",
    "DRResult",
    "DR_TARGETS",
    "FinetuneResult",
    "GDRun",
    "GD_MAX_STEPS",
    "GD_TOL",
    "IEUResult",
    "LinearData",
    "PRECISION_FLOOR",
    "PretrainResult",
    "Quadratic",
    "RelearnResult",
    "RemovalResult",
    "SCENARIOS",
    "ScenarioResult",
    "TheoryConfig",
    "discriminative_regularization",
    "dr_limit",
    "dr_objective",
    "dr_target",
    "finetune",
    "fit_log_linear_rate",
    "forget_objective",
    "forget_only_component",
    "full_objective",
    "gd",
    "ieu",
    "loss_trajectories",
    "make_data",
    "mse",
    "mse_along",
    "predicted_relearn_steps",
    "pretrain",
    "relearn_all",
    "relearn_steps",
    "relearn_threshold",
    "removal_inits",
    "remove_influence",
    "retain_objective",
    "ridge_solution",
    "row_space_projector",
    "run_all",
    "run_scenario",
    "run_scenarios",
    "saliency_masks",
    "single_threaded_blas",
    "stationary_variances",
    "summarize",
]
