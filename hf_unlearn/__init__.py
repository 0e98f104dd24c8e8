"""hf_unlearn: machine unlearning for Hugging Face transformers.

Public API::

    from hf_unlearn import UnlearningConfig, UnlearningTrainer
    from hf_unlearn.metrics import relearning_convergence_delay, RelearnConfig, evaluate_unlearning
    from hf_unlearn.validation import linear
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["UnlearningConfig", "UnlearningTrainer", "__version__"]

if TYPE_CHECKING:
    from .config import UnlearningConfig
    from .trainer import UnlearningTrainer

_LAZY = {"UnlearningConfig": ".config", "UnlearningTrainer": ".trainer"}


def __getattr__(name: str):
    # Lazy so that `import hf_unlearn` (and the CLI start-up) does not pay for importing transformers.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'hf_unlearn' has no attribute {name!r}")
