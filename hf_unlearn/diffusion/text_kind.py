"""The model kind of a text-conditioned ``diffusers.UNet2DConditionModel`` (the UNet of a text-to-image pipeline,
configured by ``configure_pipeline``): the latent-space counterpart of ``ClassConditionalUNetKind``.

Per-example loss: the denoising MSE of one noisy version ``x_t`` of the example's cached latent (the zero latent
for a prompt without an image) under its cached prompt embedding; the noise and timestep come from
``(seed, step, part, example index)`` in training steps and ``(eval_seed, example index)`` in evaluation passes,
as for the class-conditional kind. The unconditional branch (``esd``) is the empty prompt's embedding; the wrong
target (``rl``, ``salun``) the prediction under the anchor prompt (``DiffusionArguments.anchor_prompt``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..kinds.base import RunModel
from .args import saved_setup
from .denoising import DenoisingKind, SplitsLikeATensor, mse
from .pipeline import (
    PIPELINE_ATTRIBUTE,
    PipelineSetup,
    PromptCollator,
    PromptPreparer,
    configure_pipeline,
    is_pipeline_folder,
    load_pipeline,
    pipeline_setup,
)

#: a run's sample grids (the card's figures): DDIM steps when the run sets no ``generation_steps``, and at most
#: this many distinct forget prompts and as many kept prompts, one row each
GRID_STEPS = 25
GRID_PROMPTS = 4


@dataclass
class PromptDenoising(SplitsLikeATensor):
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


class TextConditionedUNetKind(DenoisingKind):
    """A pipeline's ``diffusers.UNet2DConditionModel``: rows ``{"latents", "encoder_hidden_states", "labels",
    "index"}`` (cached by ``PromptPreparer``), the denoising MSE per example, wrong targets (the prediction under
    the anchor prompt) and guidance (the empty prompt's prediction: ``esd``). No logits: ``dr`` refuses it."""

    name = "text_conditioned_unet"
    diffusers_class = "UNet2DConditionModel"
    setup_attribute = PIPELINE_ATTRIBUTE
    input_keys = ("latents", "encoder_hidden_states", "labels", "index")
    clean_key = "latents"
    pipeline_tag = "text-to-image"
    judged_generation = True
    generation_options = (*DenoisingKind.generation_options, "clip_model", "clip_processor", "concepts")
    judges = ("judge_model", "clip_model")
    # what the samples show first (with a judge or CLIP), then the denoising-loss keys every run has
    headline_keys = (
        "forget/generation_accuracy",
        "retain/generation_accuracy",
        "quality/clip_score",
        "forget/loss",
        "retain/loss",
        "mia/auc",
        "rcd/ratio_to_golden",
        "rcd/ratio_to_heldout",
    )
    short_keys = ("forget/generation_accuracy", "retain/generation_accuracy", "quality/clip_score")

    def headline(self, rows: Any = None, short: bool = False) -> list[str]:
        """The generation keys first; those missing from every row of ``rows`` (no judge, no CLIP) left out, the
        denoising-loss keys when none is there."""
        keys = list(self.short_keys if short else self.headline_keys)
        if rows:
            present = {k for row in rows.values() for k in row}
            keys = [k for k in keys if k not in self.short_keys or k in present]
        return keys or list(DenoisingKind.short_keys)

    def suite_metrics(self, inputs: Any) -> dict[str, float]:
        """With ``judge_model`` (an image classifier whose labels name the concepts) or ``clip_model`` (a local
        CLIP: zero-shot judge and CLIP score) in ``evaluate_unlearning``: the generation metrics of the UNet and
        the golden UNet on samples of the forget and kept prompts (``clip_metrics.text_suite_metrics``), seeded
        by ``DiffusionArguments.eval_seed``."""
        from .clip_metrics import text_suite_metrics

        return text_suite_metrics(inputs, pipeline_setup(inputs.model).args.eval_seed)

    def card_metadata(self, adapter: bool = False) -> dict[str, Any]:
        """``diffusers`` even after LoRA: the run saves the whole pipeline with the adapters merged."""
        return {"pipeline_tag": self.pipeline_tag, "library_name": self.library_name}

    def card_figures(
        self,
        models: dict[str, torch.nn.Module],
        output_dir: str,
        seed: int = 0,
        options: dict | None = None,
        data: dict[str, Any] | None = None,
    ) -> list[str]:
        """``samples_<name>.png`` for each model: 4 samples of each of the first distinct forget prompts and kept
        (retain) prompts (up to ``GRID_PROMPTS`` of each), one row per prompt, decoded by the pipeline's VAE, the
        same latent noise for every model (``prompt_sampling.save_prompt_grids``; ``generation_steps`` of
        ``options``, default 25). None without prompts."""
        from .prompt_sampling import save_prompt_grids

        data = data or {}
        forget = _distinct(_column(data.get("forget"), "prompt"), GRID_PROMPTS)
        kept = _distinct([p for p in _column(data.get("retain"), "prompt") if p not in forget], GRID_PROMPTS)
        steps = (options or {}).get("generation_steps") or GRID_STEPS
        return save_prompt_grids(models, output_dir, forget + kept, seed=seed, num_inference_steps=steps)

    # -- folders and runs ----------------------------------------------------------------------------
    def recognises_folder(self, path: str) -> bool:
        """A saved ``UNet2DConditionModel`` folder, or a pipeline folder (``model_index.json``) around one."""
        return super().recognises_folder(path) or is_pipeline_folder(path, self.diffusers_class)

    def load(self, path: str, trust_remote_code: bool = False, **kwargs: Any) -> torch.nn.Module:
        """A pipeline folder: its UNet, configured with its pipeline (``configure_pipeline``, with the
        ``DiffusionArguments`` saved at the folder's top, if any), in eval mode; a bare UNet folder: the UNet
        (``configure_pipeline`` it with its pipeline before measuring it)."""
        if not is_pipeline_folder(path, self.diffusers_class):
            return super().load(path, trust_remote_code=trust_remote_code, **kwargs)
        pipe = load_pipeline(path)
        configure_pipeline(pipe, diffusion_args=saved_setup(path)[1])
        return pipe.unet

    def load_run_model(self, path: str, trust_remote_code: bool = False) -> RunModel:
        """The pipeline of folder ``path``: its UNet is unlearned, the trainer is given the whole pipeline (and
        saves it), with the ``DiffusionArguments`` saved at the folder's top, if any."""
        if not is_pipeline_folder(path, self.diffusers_class):
            raise ValueError(
                f"{path!r} holds a bare UNet2DConditionModel: a text-conditioned UNet is unlearned with its "
                "pipeline; give the pipeline's folder (the one with model_index.json)."
            )
        pipe = load_pipeline(path)
        return RunModel(
            pipe.unet, trainer_input=pipe, trainer_kwargs={"diffusion_args": saved_setup(path)[1]}
        )

    def build_preparer(
        self, model: torch.nn.Module, tokenizer: Any = None, max_length: int | None = None, seed: int = 0
    ) -> tuple[PromptPreparer, PromptCollator]:
        return PromptPreparer(pipeline_setup(model)), PromptCollator()

    def row_key(self, row: dict) -> tuple[Any, Any]:
        return (row["prompt"], row["latents"].numpy().tobytes()), None

    # -- forward and losses --------------------------------------------------------------------------
    def setup_of(self, model: torch.nn.Module) -> PipelineSetup:
        return pipeline_setup(model)

    def predict(
        self, model: torch.nn.Module, batch: dict, noised: dict, setup: PipelineSetup
    ) -> PromptDenoising:
        embeddings = batch["encoder_hidden_states"]
        prediction = model(noised["noisy"], noised["timesteps"], encoder_hidden_states=embeddings).sample
        return PromptDenoising(
            prediction,
            noised["target"],
            noised["noisy"],
            noised["timesteps"],
            embeddings,
            batch["index"],
            model,
            setup,
        )

    def unconditional(self, model: torch.nn.Module, pred: PromptDenoising) -> torch.Tensor:
        """The prediction under the empty prompt on the same ``x_t, t``."""
        return self._predict(model, pred, pred.setup.empty)

    @staticmethod
    def _predict(model: torch.nn.Module, pred: PromptDenoising, embedding: torch.Tensor) -> torch.Tensor:
        """``model``'s prediction on ``pred``'s ``x_t, t`` under one prompt embedding ``[L, D]`` for every example."""
        states = embedding.to(pred.embeddings).expand_as(pred.embeddings)
        return model(pred.noisy, pred.timesteps, encoder_hidden_states=states).sample

    def wrong_target_loss(self, part: Any, seed: int, step: int) -> torch.Tensor:
        """Concept Ablation / SalUn's mapping for text-to-image: the MSE between the prediction under the example's
        prompt and the model's detached prediction on the same ``x_t, t`` under the anchor prompt
        (``DiffusionArguments.anchor_prompt``; the empty prompt by default)."""
        pred: PromptDenoising = part.logits
        with torch.no_grad():
            target = self._predict(pred.model, pred, pred.setup.anchor)
        return mse(pred.prediction, target)


def _column(data: Any, key: str) -> list:
    """The ``key`` values of a raw dataset (a ``datasets.Dataset``, a dict of lists or a list of dicts; None:
    none)."""
    if data is None:
        return []
    if hasattr(data, "column_names"):
        return list(data[key]) if key in data.column_names else []
    if isinstance(data, dict):
        return list(data.get(key) or [])
    return [row[key] for row in data if isinstance(row, dict) and key in row]


def _distinct(values: list, limit: int) -> list[str]:
    """The first ``limit`` distinct non-empty strings of ``values``, in order."""
    return [v for v in dict.fromkeys(v for v in values if isinstance(v, str) and v)][:limit]
