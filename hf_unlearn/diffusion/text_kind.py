"""The model kind of a text-conditioned ``diffusers.UNet2DConditionModel`` (the UNet of a text-to-image pipeline,
configured by ``configure_pipeline``): the latent-space counterpart of ``ClassConditionalUNetKind``.

Per-example loss: the denoising MSE of one noisy version ``x_t`` of the example's cached latent (the zero latent
for a prompt without an image) under its cached prompt embedding; the noise and timestep come from
``(seed, step, part, example index)`` in training steps and ``(eval_seed, example index)`` in evaluation passes,
as for the class-conditional kind. The unconditional branch (``esd``) is the empty prompt's embedding; the wrong
target (``rl``, ``salun``) the prediction under the anchor prompt (``DiffusionArguments.anchor_prompt``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..kinds.base import ForwardContext, ModelKind
from .data import TASK
from .kind import _draw, _mse
from .pipeline import PipelineSetup, PromptCollator, PromptPreparer, pipeline_setup


@dataclass
class PromptDenoising:
    """A text-conditioned UNet's predictions on noisy latents (the kind's "logits"); ``split`` cuts it into the
    batch's parts like a tensor."""

    prediction: torch.Tensor  # [B, C, h, w]
    target: torch.Tensor  # eps, v or x_0
    noisy: torch.Tensor  # x_t
    timesteps: torch.Tensor  # [B]
    embeddings: torch.Tensor  # [B, L, D] the prompts the prediction is conditioned on
    index: torch.Tensor  # [B]
    model: Any
    setup: PipelineSetup
    unconditional: torch.Tensor | None = None  # frozen passes only

    _TENSORS = ("prediction", "target", "noisy", "timesteps", "embeddings", "index", "unconditional")

    def split(self, sizes: list[int]) -> list[PromptDenoising]:
        pieces = {
            name: [None] * len(sizes) if getattr(self, name) is None else getattr(self, name).split(sizes)
            for name in self._TENSORS
        }
        return [replace(self, **{name: pieces[name][i] for name in self._TENSORS}) for i in range(len(sizes))]


class TextConditionedUNetKind(ModelKind):
    """A pipeline's ``diffusers.UNet2DConditionModel``: rows ``{"latents", "encoder_hidden_states", "labels",
    "index"}`` (cached by ``PromptPreparer``), the denoising MSE per example, wrong targets (the prediction under
    the anchor prompt) and guidance (the empty prompt's prediction: ``esd``). No logits: ``dr`` refuses it."""

    name = "text_conditioned_unet"
    task = TASK
    images = True
    input_keys = ("latents", "encoder_hidden_states", "labels", "index")
    capabilities = frozenset({"wrong_targets", "guidance"})
    pipeline_tag = "text-to-image"
    library_name = "diffusers"

    def recognises(self, model: torch.nn.Module) -> bool:
        cls = type(model)
        return cls.__module__.startswith("diffusers.") and cls.__name__ == "UNet2DConditionModel"

    def recognises_architecture(self, architecture: str) -> bool:
        return architecture == "UNet2DConditionModel"

    def build_preparer(
        self, model: torch.nn.Module, tokenizer: Any = None, max_length: int | None = None, seed: int = 0
    ) -> tuple[PromptPreparer, PromptCollator]:
        return PromptPreparer(pipeline_setup(model)), PromptCollator()

    def row_key(self, row: dict) -> tuple[Any, Any]:
        return (row["prompt"], row["latents"].numpy().tobytes()), None

    # -- forward and losses --------------------------------------------------------------------------
    def forward(self, model: torch.nn.Module, batch: dict, **kwargs: Any) -> tuple[PromptDenoising, None]:
        """Evaluation: each example's noise and timestep from ``(eval_seed, example index)``."""
        setup = pipeline_setup(model)
        keys = [(setup.args.eval_seed, int(i)) for i in batch["index"]]
        return self._denoise(model, batch, setup, keys), None

    def training_forward(
        self, model: torch.nn.Module, batch: dict, context: ForwardContext, **kwargs: Any
    ) -> tuple[PromptDenoising, None]:
        """A training step: draws from ``(seed, step, part, example index)``; a frozen pass also gives the
        unconditional prediction (``esd``'s target)."""
        setup = pipeline_setup(model)
        parts = [name for name, rows in context.parts for _ in range(rows)]
        if len(parts) != batch["index"].shape[0]:
            raise ValueError(f"the step's parts {context.parts} do not add up to its {len(parts)} rows.")
        keys = [
            (context.seed, context.step, zlib.crc32(part.encode()), int(i))
            for part, i in zip(parts, batch["index"])
        ]
        out = self._denoise(model, batch, setup, keys)
        if context.frozen:
            out.unconditional = self._predict(model, out, setup.empty)
        return out, None

    def _denoise(
        self, model: torch.nn.Module, batch: dict, setup: PipelineSetup, keys: list
    ) -> PromptDenoising:
        x0 = batch["latents"]
        noise, timesteps = _draw(keys, x0.shape[1:], setup.timesteps)
        noise, timesteps = noise.to(x0), timesteps.to(x0.device)
        scheduler = setup.scheduler
        noisy = scheduler.add_noise(x0, noise, timesteps)
        if setup.prediction_type == "epsilon":
            target = noise
        elif setup.prediction_type == "v_prediction":
            target = scheduler.get_velocity(x0, noise, timesteps)
        else:
            target = x0
        embeddings = batch["encoder_hidden_states"]
        prediction = model(noisy, timesteps, encoder_hidden_states=embeddings).sample
        return PromptDenoising(prediction, target, noisy, timesteps, embeddings, batch["index"], model, setup)

    @staticmethod
    def _predict(model: torch.nn.Module, pred: PromptDenoising, embedding: torch.Tensor) -> torch.Tensor:
        """``model``'s prediction on ``pred``'s ``x_t, t`` under one prompt embedding ``[L, D]`` for every example."""
        states = embedding.to(pred.embeddings).expand_as(pred.embeddings)
        return model(pred.noisy, pred.timesteps, encoder_hidden_states=states).sample

    def loss_of(self, predictions: PromptDenoising, labels: torch.Tensor) -> torch.Tensor:
        """The denoising MSE per example (mean over latent channels and positions)."""
        return _mse(predictions.prediction, predictions.target)

    def wrong_target_loss(self, part: Any, seed: int, step: int) -> torch.Tensor:
        """Concept Ablation / SalUn's mapping for text-to-image: the MSE between the prediction under the example's
        prompt and the model's detached prediction on the same ``x_t, t`` under the anchor prompt
        (``DiffusionArguments.anchor_prompt``; the empty prompt by default)."""
        pred: PromptDenoising = part.logits
        with torch.no_grad():
            target = self._predict(pred.model, pred, pred.setup.anchor)
        return _mse(pred.prediction, target)

    def guidance_loss(self, pred: PromptDenoising, frozen: PromptDenoising) -> torch.Tensor:
        """ESD per example: the MSE between the prediction and the frozen original's
        ``eps_uncond - eta (eps_cond - eps_uncond)`` on the same ``x_t, t``, ``eps_uncond`` under the empty
        prompt (``eta``: ``esd_eta``)."""
        eta = pred.setup.args.esd_eta
        target = frozen.unconditional - eta * (frozen.prediction - frozen.unconditional)
        return _mse(pred.prediction, target.detach())

    def loss_scale(self, model: torch.nn.Module) -> float:
        """1.0, as for the class-conditional UNet: the loss of predicting zero for a unit-variance target."""
        return 1.0

    def lora_defaults(self) -> dict[str, Any]:
        """LoRA on the attention projections (self- and cross-attention), as diffusers' text-to-image LoRA
        script."""
        return {"target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}
