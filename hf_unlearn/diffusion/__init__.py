"""Unlearning for diffusion models (``diffusers``, an optional extra: ``pip install "hf-unlearn[diffusion]"``).

Importing this package imports ``diffusers`` and registers the class-conditional UNet's model kind
(``ClassConditionalUNetKind``), the text-to-image pipeline UNet's (``TextConditionedUNetKind``) and the ``esd``
method; ``import hf_unlearn`` alone does neither (a stand-in kind
imports this package when a ``diffusers`` model is first given).

Public API::

    from hf_unlearn.diffusion import DiffusionUnlearningTrainer, DiffusionArguments
"""

from __future__ import annotations

from ..kinds import register_model_kind
from . import methods  # noqa: F401 (registers esd)
from .args import DiffusionArguments, configure_unet, diffusion_setup
from .kind import ClassConditionalUNetKind, Denoising
from .pipeline import PipelineSetup, configure_pipeline
from .text_kind import PromptDenoising, TextConditionedUNetKind
from .trainer import DiffusionUnlearningTrainer

register_model_kind(ClassConditionalUNetKind)
register_model_kind(TextConditionedUNetKind)

__all__ = [
    "ClassConditionalUNetKind",
    "Denoising",
    "DiffusionArguments",
    "DiffusionUnlearningTrainer",
    "PipelineSetup",
    "PromptDenoising",
    "TextConditionedUNetKind",
    "configure_pipeline",
    "configure_unet",
    "diffusion_setup",
]
