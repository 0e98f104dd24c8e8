"""A stand-in kind for ``diffusers`` models: it imports ``hf_unlearn.diffusion`` (and with it ``diffusers``) only
when such a model is given, and hands over to the kind that package registers."""

from __future__ import annotations

from typing import Any

import torch

from .base import ModelKind, RunModel, model_kinds


class DiffusersStandIn(ModelKind):
    name = "diffusers_stand_in"

    def recognises(self, model: torch.nn.Module) -> bool:
        return type(model).__module__.startswith("diffusers.")

    def recognises_folder(self, path: str) -> bool:
        """A folder whose ``config.json`` (a model) or ``model_index.json`` (a pipeline) has diffusers'
        ``_class_name`` (read without importing diffusers)."""
        import json
        import os

        for name in ("config.json", "model_index.json"):
            try:
                with open(os.path.join(path, name)) as f:
                    if isinstance(json.load(f).get("_class_name"), str):
                        return True
            except (OSError, ValueError, AttributeError):
                continue
        return False

    def folder_kind(self, path: str) -> ModelKind:
        """The diffusion kind that recognises folder ``path`` (importing ``hf_unlearn.diffusion`` first)."""
        import hf_unlearn.diffusion  # noqa: F401 (registers the diffusion kinds)

        for kind in model_kinds():
            if kind is not self and kind.recognises_folder(path):
                return kind
        raise ValueError(
            f"{path!r} holds a diffusers model hf_unlearn does not load: it loads a saved UNet2DModel or "
            "UNet2DConditionModel folder (config.json + diffusion_pytorch_model.safetensors), or a "
            "StableDiffusionPipeline folder (model_index.json)."
        )

    def load(self, path: str, trust_remote_code: bool = False, **kwargs: Any) -> torch.nn.Module:
        """The model of folder ``path``, loaded by the diffusion kind that recognises it."""
        return self.folder_kind(path).load(path, trust_remote_code=trust_remote_code, **kwargs)

    def load_processing_class(self, path: str, trust_remote_code: bool = False) -> Any:
        return self.folder_kind(path).load_processing_class(path, trust_remote_code=trust_remote_code)

    def load_run_model(self, path: str, trust_remote_code: bool = False) -> RunModel:
        return self.folder_kind(path).load_run_model(path, trust_remote_code=trust_remote_code)

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
