"""``DiffusionUnlearningTrainer``: ``UnlearningTrainer`` for a class-conditional ``diffusers.UNet2DModel`` (saved
with ``save_pretrained``, safetensors, next to its scheduler's config and the ``DiffusionArguments``) or for the
UNet of a text-to-image pipeline (the whole pipeline saved with ``pipe.save_pretrained``)."""

from __future__ import annotations

import os
from typing import Any

import torch

from ..config import UnlearningConfig
from ..data.common import unwrap_model
from ..trainer import UnlearningTrainer
from .args import ARGS_FILE, DiffusionArguments, configure_unet
from .pipeline import configure_pipeline, is_pipeline

WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"


class DiffusionUnlearningTrainer(UnlearningTrainer):
    """Unlearn ``forget_dataset`` from a class-conditional UNet, or from a text-to-image pipeline's UNet, while
    keeping ``retain_dataset``.

    Args:
        unet: a ``diffusers.UNet2DModel`` with ``num_class_embeds`` (the original model), or a text-to-image
            pipeline (``StableDiffusionPipeline.from_pretrained(path)``): its UNet trains (full or LoRA), its VAE
            and text encoder stay frozen; ``save_model`` writes the whole pipeline.
        args: an ``UnlearningConfig`` (the method, its weights, learning rate, steps, ...).
        forget_dataset / retain_dataset: a ``datasets.Dataset``, a list of dicts or a dict of lists. UNet:
            rows ``{"image", "label"}`` (PIL images or uint8 arrays, grey or RGB, any size: resized to the UNet's
            ``sample_size``, scaled to ``[-1, 1]``) or ``{"pixel_values", "label"}`` (float ``[C, H, W]`` in
            ``[-1, 1]``). Pipeline: rows ``{"prompt"}`` (concept erasure needs no images) or ``{"prompt",
            "image"}``; latents and prompt embeddings are computed once.
        noise_scheduler: the training scheduler (the forward process, ``prediction_type``); default a
            ``DDPMScheduler`` with diffusers' defaults (a pipeline: from its scheduler's config).
        diffusion_args: ``DiffusionArguments`` (timestep range, evaluation seed, ESD's ``eta``, null and anchor
            classes, the anchor prompt).
        **kwargs: passed to ``UnlearningTrainer`` (``eval_dataset``, ``peft_config``, ``callbacks``, ...).
    """

    def __init__(
        self,
        unet: torch.nn.Module,
        args: UnlearningConfig | None = None,
        forget_dataset: Any = None,
        retain_dataset: Any = None,
        noise_scheduler: Any = None,
        diffusion_args: DiffusionArguments | None = None,
        **kwargs: Any,
    ):
        self.pipeline = unet if is_pipeline(unet) else None
        if self.pipeline is not None:
            self.diffusion = configure_pipeline(self.pipeline, noise_scheduler, diffusion_args)
            unet = self.pipeline.unet
        elif not isinstance(unet, torch.nn.Module):
            raise ValueError(
                f"unet must be a diffusers UNet2DModel or a text-to-image pipeline, got {type(unet).__name__}."
            )
        else:
            self.diffusion = configure_unet(unet, noise_scheduler, diffusion_args)
        super().__init__(unet, args, forget_dataset=forget_dataset, retain_dataset=retain_dataset, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        """The UNet by ``save_pretrained`` (``config.json`` + safetensors; a PEFT model's adapters as PEFT saves
        them), the scheduler's config and the diffusion arguments."""
        output_dir = output_dir or self.args.output_dir
        if self.pipeline is not None:
            return self._save_pipeline(output_dir, state_dict)
        if hasattr(self.model, "peft_config"):
            super()._save(output_dir, state_dict=state_dict)
        elif self.args.should_save:
            os.makedirs(output_dir, exist_ok=True)
            unwrap_model(self.model).save_pretrained(output_dir, safe_serialization=True)
            with open(os.path.join(output_dir, "training_args.json"), "w") as f:
                f.write(self.args.to_json_string())
        if self.args.should_save:
            self.diffusion.scheduler.save_pretrained(output_dir)
            with open(os.path.join(output_dir, ARGS_FILE), "w") as f:
                f.write(self.diffusion.args.to_json_string())

    def _save_pipeline(self, output_dir: str, state_dict: Any = None) -> None:
        """The pipeline by ``pipe.save_pretrained`` (safetensors) with the trained UNet (LoRA: merged into a copy;
        the adapters are saved at the top as PEFT saves them, for resuming), the arguments as JSON."""
        import copy

        peft = hasattr(self.model, "peft_config")
        if peft:
            super()._save(output_dir, state_dict=state_dict)
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        unet = self.pipeline.unet
        trained = copy.deepcopy(self.model).merge_and_unload() if peft else None
        try:
            if trained is not None:
                self.pipeline.register_modules(unet=trained)
            self.pipeline.save_pretrained(output_dir, safe_serialization=True)
        finally:
            self.pipeline.register_modules(unet=unet)
        with open(os.path.join(output_dir, "training_args.json"), "w") as f:
            f.write(self.args.to_json_string())
        with open(os.path.join(output_dir, ARGS_FILE), "w") as f:
            f.write(self.diffusion.args.to_json_string())

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        """Resume from a checkpoint written by ``_save``: the UNet's safetensors weights (PEFT: as ``Trainer``)."""
        folder = os.path.join(resume_from_checkpoint, "unet") if self.pipeline is not None else None
        weights = os.path.join(folder or resume_from_checkpoint, WEIGHTS_FILE)
        if hasattr(self.model, "peft_config") or not os.path.isfile(weights):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        from safetensors.torch import load_file

        target = unwrap_model(model if model is not None else self.model)
        target.load_state_dict(load_file(weights, device="cpu"), strict=True)
