"""A stand-in kind for ``diffusers`` models: it imports ``hf_unlearn.diffusion`` (and with it ``diffusers``) only
when such a model is given, and hands over to the kind that package registers."""

from __future__ import annotations

import torch

from .base import ModelKind, model_kinds


class DiffusersStandIn(ModelKind):
    name = "diffusers_stand_in"

    def recognises(self, model: torch.nn.Module) -> bool:
        return type(model).__module__.startswith("diffusers.")

    def resolve(self, model: torch.nn.Module) -> ModelKind:
        import hf_unlearn.diffusion  # noqa: F401 (registers the diffusion kinds, asked before this one)

        for kind in model_kinds():
            if kind is not self and kind.recognises(model):
                return kind.resolve(model)
        raise ValueError(
            f"hf_unlearn.diffusion does not serve {type(model).__name__} models: it unlearns from a "
            "class-conditional diffusers.UNet2DModel (num_class_embeds set) and from the UNet2DConditionModel "
            "of a text-to-image pipeline (DiffusionUnlearningTrainer(pipe, ...))."
        )
