"""Text-to-image pipelines (``StableDiffusionPipeline`` and the like): ``configure_pipeline`` attaches what the
text-conditioned UNet's model kind needs to ``pipe.unet`` (the frozen VAE, text encoder and tokenizer, the
training scheduler, the empty and anchor prompts' embeddings); ``PromptPreparer`` turns rows ``{"prompt"}`` or
``{"prompt", "image"}`` into cached latents and prompt embeddings, once.

Rows without an image have the zero latent as ``x_0``: their noisy input ``x_t = sqrt(1 - abar_t) eps`` is pure
(scaled) noise, and their targets follow from the scheduler as for images (see ``docs/diffusion.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..loading import PIPELINE_INDEX
from .args import DiffusionArguments, timestep_range
from .data import TASK, DiffusionPreparer, _image_tensor, _rows_of

#: where ``configure_pipeline`` keeps a UNet's ``PipelineSetup`` (a plain attribute: not in state dicts)
PIPELINE_ATTRIBUTE = "hf_unlearn_pipeline"
_ENCODE_BATCH = 16


@dataclass
class PipelineSetup:
    """What a pipeline's UNet carries for its model kind: the training scheduler, the arguments, the timestep
    range, the frozen VAE, text encoder and tokenizer, and the cached embeddings of the empty prompt (the
    unconditional branch) and of the anchor prompt (``rl`` / ``salun``'s target). Deep copies of the UNet
    (the frozen original, kept copies) share it: nothing in it trains."""

    scheduler: Any
    args: DiffusionArguments
    timesteps: tuple[int, int]
    vae: Any
    text_encoder: Any
    tokenizer: Any
    latent_shape: tuple[int, int, int]  # [C, h, w] of the UNet's input
    image_size: tuple[int, int]  # [H, W] of the VAE's input
    empty: torch.Tensor | None = None  # [L, D] the empty prompt's embedding
    anchor: torch.Tensor | None = None  # [L, D] the anchor prompt's

    def __deepcopy__(self, memo: dict) -> PipelineSetup:
        return self

    @property
    def prediction_type(self) -> str:
        return getattr(self.scheduler.config, "prediction_type", "epsilon")

    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """``[N, L, D]`` text-encoder states of ``prompts`` (padded to the tokenizer's ``model_max_length``, as
        the pipeline encodes them), on the CPU."""
        device = next(self.text_encoder.parameters()).device
        out = []
        for start in range(0, len(prompts), _ENCODE_BATCH):
            ids = self.tokenizer(
                prompts[start : start + _ENCODE_BATCH],
                padding="max_length",
                max_length=self.tokenizer.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            out.append(self.text_encoder(ids.to(device))[0].float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[N, C, h, w]`` latents of images ``[N, 3, H, W]`` in ``[-1, 1]``: the mean of the VAE's latent
        distribution times ``vae.config.scaling_factor``, on the CPU."""
        parameter = next(self.vae.parameters())
        scale = float(getattr(self.vae.config, "scaling_factor", 1.0))
        out = []
        for start in range(0, pixels.shape[0], _ENCODE_BATCH):
            chunk = pixels[start : start + _ENCODE_BATCH].to(parameter.device, parameter.dtype)
            out.append(self.vae.encode(chunk).latent_dist.mean.float().cpu() * scale)
        return torch.cat(out)


def is_pipeline(obj: Any) -> bool:
    """Whether ``obj`` is a text-to-image ``diffusers`` pipeline (a UNet, a VAE, a text encoder, a tokenizer)."""
    return all(hasattr(obj, name) for name in ("unet", "vae", "text_encoder", "tokenizer", "components"))


def is_pipeline_folder(path: str, unet_class: str = "UNet2DConditionModel") -> bool:
    """Whether folder ``path`` holds a saved ``diffusers`` pipeline (``model_index.json``) whose ``unet`` is a
    ``unet_class`` (read without loading it)."""
    import json
    import os

    try:
        with open(os.path.join(path, PIPELINE_INDEX)) as f:
            unet = json.load(f).get("unet")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(unet, list) and len(unet) == 2 and unet[1] == unet_class


def load_pipeline(path: str) -> Any:
    """The text-to-image pipeline saved in folder ``path`` (``DiffusionPipeline.from_pretrained``: local files,
    safetensors only, the pipeline class its ``model_index.json`` names from ``diffusers`` itself, no custom
    code), its UNet in eval mode. A safety checker the index names without safetensors weights in its folder is
    left out (training does not use it; the saved pipeline then has none)."""
    import glob
    import json
    import os

    from diffusers import DiffusionPipeline

    with open(os.path.join(path, PIPELINE_INDEX)) as f:
        components = json.load(f)
    options = {}
    checker = os.path.join(path, "safety_checker")
    if "safety_checker" in components and not glob.glob(os.path.join(checker, "*.safetensors")):
        # the safety checker filters generated images: training has no use for it; without its weights, none
        options = {"safety_checker": None, "requires_safety_checker": False}
    pipe = DiffusionPipeline.from_pretrained(path, use_safetensors=True, local_files_only=True, **options)
    if not is_pipeline(pipe):
        raise ValueError(
            f"{path!r} holds a {type(pipe).__name__}: hf_unlearn unlearns from a text-to-image pipeline with a "
            "UNet, a VAE, a text encoder and a tokenizer (a StableDiffusionPipeline)."
        )
    pipe.unet.eval()
    return pipe


def configure_pipeline(
    pipe: Any, noise_scheduler: Any = None, diffusion_args: DiffusionArguments | None = None
) -> PipelineSetup:
    """Check ``pipe`` (a ``StableDiffusionPipeline``-like pipeline), freeze its VAE and text encoder, and attach
    a ``PipelineSetup`` to ``pipe.unet``. ``noise_scheduler`` None: a ``DDPMScheduler`` from the pipeline's
    scheduler config (its ``num_train_timesteps``, betas and ``prediction_type``)."""
    from diffusers import DDPMScheduler

    unet, vae, text_encoder = pipe.unet, pipe.vae, pipe.text_encoder
    if type(unet).__name__ != "UNet2DConditionModel" or vae is None or text_encoder is None:
        raise ValueError(
            "the pipeline needs a UNet2DConditionModel, a VAE and a text encoder (a StableDiffusionPipeline)."
        )
    hidden = text_encoder.config.hidden_size
    if unet.config.cross_attention_dim != hidden:
        raise ValueError(
            f"the UNet's cross_attention_dim {unet.config.cross_attention_dim} is not the text encoder's "
            f"hidden_size {hidden}: the pipeline's components do not belong together."
        )
    for frozen in (vae, text_encoder):
        frozen.requires_grad_(False).eval()
    if noise_scheduler is None:
        noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    args = diffusion_args or DiffusionArguments()
    size = unet.config.sample_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    setup = PipelineSetup(
        scheduler=noise_scheduler,
        args=args,
        timesteps=timestep_range(noise_scheduler, args),
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=pipe.tokenizer,
        latent_shape=(unet.config.in_channels, *size),
        image_size=(size[0] * factor, size[1] * factor),
    )
    setup.empty, setup.anchor = setup.encode_prompts(["", args.anchor_prompt or ""])
    object.__setattr__(unet, PIPELINE_ATTRIBUTE, setup)
    return setup


def pipeline_setup(unet: torch.nn.Module) -> PipelineSetup:
    """The ``PipelineSetup`` attached to ``unet`` by ``configure_pipeline``."""
    from ..data.common import unwrap_model

    setup = getattr(unwrap_model(unet), PIPELINE_ATTRIBUTE, None)
    if setup is None:
        raise ValueError(
            "a UNet2DConditionModel is unlearned with its pipeline: DiffusionUnlearningTrainer(pipe, ...) "
            "(or hf_unlearn.diffusion.configure_pipeline(pipe) before passing pipe.unet)."
        )
    return setup


class PromptPreparer:
    """``preparer(data, name)`` -> rows ``{"latents" [C, h, w], "encoder_hidden_states" [L, D], "labels" 0,
    "index", "prompt"}``: images resized to the VAE's input, encoded once (the zero latent without one);
    prompts encoded once per distinct prompt (rows of one prompt share its tensor)."""

    task = TASK

    def __init__(self, setup: PipelineSetup):
        self.setup = setup
        channels = setup.vae.config.in_channels
        self.images = DiffusionPreparer(channels, setup.image_size, classes=())

    def __call__(self, data: Any, name: str, with_wrong_labels: bool = False) -> list[dict]:
        rows = _rows_of(data, name)
        for i, row in enumerate(rows):
            if not isinstance(row.get("prompt"), str):
                raise ValueError(
                    f"{name}[{i}] has the columns {sorted(row)}: a text-to-image pipeline needs rows "
                    "{'prompt'} or {'prompt', 'image'} (a str prompt; the image PIL or uint8)."
                )
        prompts = sorted({row["prompt"] for row in rows})
        embeddings = dict(zip(prompts, self.setup.encode_prompts(prompts)))
        latents = self._latents(rows, name)
        return [
            {
                "latents": latent,
                "encoder_hidden_states": embeddings[row["prompt"]],
                "labels": 0,
                "index": i,
                "prompt": row["prompt"],
            }
            for i, (row, latent) in enumerate(zip(rows, latents))
        ]

    def _latents(self, rows: list[dict], name: str) -> list[torch.Tensor]:
        with_image = [i for i, row in enumerate(rows) if row.get("image") is not None]
        zero = torch.zeros(self.setup.latent_shape)
        out = [zero] * len(rows)
        if with_image:
            pixels = torch.stack(
                [
                    self.images._fit(_image_tensor(rows[i]["image"], name, i) * 2 - 1, name, i)
                    for i in with_image
                ]
            )
            for i, latent in zip(with_image, self.setup.encode_images(pixels)):
                out[i] = latent
        return out


class PromptCollator:
    """Rows -> ``{"latents" [B, C, h, w], "encoder_hidden_states" [B, L, D], "labels" [B], "index" [B]}``;
    paired items -> ``{"retain": batch, "forget": batch}``."""

    def __call__(self, items: list[dict]) -> dict:
        if "retain" in items[0]:
            return {part: self([item[part] for item in items]) for part in ("retain", "forget")}
        return {
            "latents": torch.stack([row["latents"] for row in items]),
            "encoder_hidden_states": torch.stack([row["encoder_hidden_states"] for row in items]),
            "labels": torch.tensor([row["labels"] for row in items], dtype=torch.long),
            "index": torch.tensor([row["index"] for row in items], dtype=torch.long),
        }
