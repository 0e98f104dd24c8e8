"""Model kinds: what differs between text classifiers, image classifiers and causal LMs, behind one seam.

Public API::

    from hf_unlearn.kinds import ModelKind, register_model_kind, get_model_kind

``get_model_kind(model)`` asks every registered kind whether it recognises ``model``; a new kind of model is a
``ModelKind`` subclass registered with ``register_model_kind`` (see ``base.py``).
"""

from __future__ import annotations

from .base import (
    ModelKind,
    RunModel,
    get_model_kind,
    kind_for_folder,
    kind_for_task,
    model_kinds,
    register_model_kind,
    unregister_model_kind,
)
from .causal_lm import CAUSAL_LM, CausalLMKind
from .classification import CLASSIFICATION, ClassifierKind, ImageClassifierKind, TextClassifierKind
from .diffusers_stand_in import DiffusersStandIn

# asked in reverse order of registration: causal LMs, then image, then text classifiers, then diffusers models
# (whose stand-in imports hf_unlearn.diffusion, which registers the diffusion kinds in front)
register_model_kind(DiffusersStandIn)
register_model_kind(TextClassifierKind)
register_model_kind(ImageClassifierKind)
register_model_kind(CausalLMKind)

__all__ = [
    "CAUSAL_LM",
    "CLASSIFICATION",
    "CausalLMKind",
    "ClassifierKind",
    "ImageClassifierKind",
    "ModelKind",
    "RunModel",
    "TextClassifierKind",
    "get_model_kind",
    "kind_for_folder",
    "kind_for_task",
    "model_kinds",
    "register_model_kind",
    "unregister_model_kind",
]
