"""Unlearning metrics: relearning convergence delay (RCD) and the standard evaluation suite.

Public API::

    from hf_unlearn.metrics import relearning_convergence_delay, RelearnConfig, RelearnResult
    from hf_unlearn.metrics import evaluate_unlearning, per_example_losses
    from hf_unlearn.metrics import UnlearningMetricsCallback, plot_relearning_curves, module_path

Imports are lazy: ``import hf_unlearn.metrics`` does not import ``transformers`` (nor torch, until a name
is used).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

__all__ = [
    "RelearnConfig",
    "RelearnResult",
    "UnlearningMetricsCallback",
    "evaluate_unlearning",
    "module_path",
    "per_example_losses",
    "plot_relearning_curves",
    "relearning_convergence_delay",
]

if TYPE_CHECKING:
    from .callback import UnlearningMetricsCallback
    from .evaluation import evaluate_unlearning, per_example_losses
    from .plots import plot_relearning_curves
    from .relearning import RelearnConfig, RelearnResult, relearning_convergence_delay

_LAZY = {
    "RelearnConfig": ".relearning",
    "RelearnResult": ".relearning",
    "relearning_convergence_delay": ".relearning",
    "evaluate_unlearning": ".evaluation",
    "per_example_losses": ".evaluation",
    "UnlearningMetricsCallback": ".callback",
    "plot_relearning_curves": ".plots",
}

MODULES_DIR = Path(__file__).resolve().parent / "modules"
EVALUATE_MODULES = ("mia_auc", "ks_forget_quality")


def module_path(name: str) -> str:
    """Folder of one of the ``evaluate`` modules shipped with the package (``"mia_auc"``,
    ``"ks_forget_quality"``), for ``evaluate.load(module_path(name))``; works offline
    (``HF_EVALUATE_OFFLINE=1``)."""
    if name not in EVALUATE_MODULES:
        raise ValueError(f"Unknown evaluate module {name!r}; choose one of {list(EVALUATE_MODULES)}.")
    return str(MODULES_DIR / name)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'hf_unlearn.metrics' has no attribute {name!r}")
