"""The model kind of a class-conditional ``diffusers.UNet2DModel`` (``num_class_embeds`` set).

Per-example loss: the denoising MSE ``mean_(c,h,w) (f_theta(x_t, t, y) - target)^2`` of one noisy version
``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` of the example, where the target is ``eps``, the velocity
``sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` or ``x_0`` by the scheduler's ``prediction_type``. The noise ``eps``
and timestep ``t`` of an example come from its own generator: seeded by ``(seed, step, part, example index)``
in training steps (``training_forward``: resume is bit-exact) and by ``(eval_seed, example index)`` in
evaluation passes (``forward``: the same draw at every call, so stopping, MIA and RCD measure the weights).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..kinds.base import ForwardContext, ModelKind
from .args import DiffusionSetup, diffusion_setup
from .data import TASK, DiffusionCollator, DiffusionPreparer

_MIX = 1_000_003


@dataclass
class Denoising:
    """A UNet's predictions on noisy examples (the kind's "logits"): what ``loss_of`` compares, and what
    ``rl`` / ``salun`` (the prediction under another class) and ``esd`` (the unconditional prediction of the
    frozen pass) need. ``split`` cuts it into the batch's parts like a tensor."""

    prediction: torch.Tensor  # [B, C, H, W]
    target: torch.Tensor  # eps, v or x_0
    noisy: torch.Tensor  # x_t
    timesteps: torch.Tensor  # [B]
    labels: torch.Tensor  # [B] the classes the prediction is conditioned on
    index: torch.Tensor  # [B] the examples' positions in their dataset
    model: Any  # the model that predicted (to predict under other classes)
    setup: DiffusionSetup
    unconditional: torch.Tensor | None = None  # frozen passes only

    def split(self, sizes: list[int]) -> list[Denoising]:
        fields = ("prediction", "target", "noisy", "timesteps", "labels", "index", "unconditional")
        pieces = {
            name: [None] * len(sizes) if getattr(self, name) is None else getattr(self, name).split(sizes)
            for name in fields
        }
        return [replace(self, **{name: pieces[name][i] for name in fields}) for i in range(len(sizes))]


class ClassConditionalUNetKind(ModelKind):
    """A class-conditional ``diffusers.UNet2DModel``: rows ``{"pixel_values", "labels", "index"}``, the denoising
    MSE per example, wrong targets (the prediction under another class) and guidance (the unconditional
    prediction: ``esd``). No logits: ``dr`` and the token methods refuse it."""

    name = "class_conditional_unet"
    task = TASK
    images = True
    input_keys = ("pixel_values", "labels", "index")
    capabilities = frozenset({"wrong_targets", "guidance"})
    # the Hub has no class-conditional generation tag; diffusers' own DDPM/DiT cards use this one
    pipeline_tag = "unconditional-image-generation"
    library_name = "diffusers"

    def recognises(self, model: torch.nn.Module) -> bool:
        cls = type(model)
        return cls.__module__.startswith("diffusers.") and cls.__name__ == "UNet2DModel"

    def recognises_architecture(self, architecture: str) -> bool:
        return architecture == "UNet2DModel"

    def build_preparer(
        self, model: torch.nn.Module, tokenizer: Any = None, max_length: int | None = None, seed: int = 0
    ) -> tuple[DiffusionPreparer, DiffusionCollator]:
        from ..data.common import unwrap_model

        setup = diffusion_setup(model)  # checks the class embedding
        config = unwrap_model(model).config
        size = config.sample_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        return DiffusionPreparer(config.in_channels, size, setup.classes), DiffusionCollator()

    def row_key(self, row: dict) -> tuple[Any, Any]:
        return row["pixel_values"].numpy().tobytes(), row["labels"]

    # -- forward and losses --------------------------------------------------------------------------
    def forward(self, model: torch.nn.Module, batch: dict, **kwargs: Any) -> tuple[Denoising, None]:
        """Evaluation: each example's noise and timestep from ``(eval_seed, example index)``."""
        setup = diffusion_setup(model)
        keys = [(setup.args.eval_seed, int(i)) for i in batch["index"]]
        return self._denoise(model, batch, setup, keys), None

    def training_forward(
        self, model: torch.nn.Module, batch: dict, context: ForwardContext, **kwargs: Any
    ) -> tuple[Denoising, None]:
        """A training step: each example's noise and timestep from ``(seed, step, part, example index)``; a
        frozen pass also gives the unconditional prediction (``esd``'s target)."""
        setup = diffusion_setup(model)
        parts = [name for name, rows in context.parts for _ in range(rows)]
        if len(parts) != batch["index"].shape[0]:
            raise ValueError(f"the step's parts {context.parts} do not add up to its {len(parts)} rows.")
        keys = [
            (context.seed, context.step, zlib.crc32(part.encode()), int(i))
            for part, i in zip(parts, batch["index"])
        ]
        out = self._denoise(model, batch, setup, keys)
        if context.frozen:
            out.unconditional = self.unconditional(model, out)
        return out, None

    def _denoise(self, model: torch.nn.Module, batch: dict, setup: DiffusionSetup, keys: list) -> Denoising:
        x0 = batch["pixel_values"]
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
        labels = batch["labels"]
        prediction = model(noisy, timesteps, class_labels=labels).sample
        return Denoising(prediction, target, noisy, timesteps, labels, batch["index"], model, setup)

    def loss_of(self, predictions: Denoising, labels: torch.Tensor) -> torch.Tensor:
        """The denoising MSE per example (mean over channels and pixels)."""
        return _mse(predictions.prediction, predictions.target)

    def wrong_target_loss(self, part: Any, seed: int, step: int) -> torch.Tensor:
        """SalUn's random-label loss for DDPMs: the MSE between the prediction under the example's own class and
        the model's detached prediction on the same ``x_t, t`` under another class (``anchor_class``, or a
        class drawn from ``(seed, step, example index)``)."""
        pred: Denoising = part.logits
        other = self.other_classes(pred, seed, step)
        with torch.no_grad():
            target = pred.model(pred.noisy, pred.timesteps, class_labels=other).sample
        return _mse(pred.prediction, target)

    def other_classes(self, pred: Denoising, seed: int, step: int) -> torch.Tensor:
        """Per example a class other than its own: the anchor class, or a seeded random one."""
        setup = pred.setup
        if setup.args.anchor_class is not None:
            return torch.full_like(pred.labels, setup.args.anchor_class)
        classes = list(setup.classes)
        out = []
        for label, index in zip(pred.labels.tolist(), pred.index.tolist()):
            choices = [c for c in classes if c != label]
            generator = torch.Generator().manual_seed((seed * _MIX + step) * _MIX + index)
            out.append(choices[int(torch.randint(len(choices), (1,), generator=generator))])
        return torch.tensor(out, dtype=pred.labels.dtype, device=pred.labels.device)

    def unconditional(self, model: torch.nn.Module, pred: Denoising) -> torch.Tensor:
        """The unconditional prediction on the same ``x_t, t``: under the null class when the UNet has one
        (``DiffusionArguments.null_class``), else the mean of the predictions under every class."""
        setup = pred.setup
        if setup.args.null_class is not None:
            null = torch.full_like(pred.labels, setup.args.null_class)
            return model(pred.noisy, pred.timesteps, class_labels=null).sample
        count, size = len(setup.classes), pred.labels.shape[0]
        classes = torch.tensor(setup.classes, device=pred.labels.device).repeat_interleave(size)
        noisy = pred.noisy.repeat(count, *([1] * (pred.noisy.dim() - 1)))
        all_classes = model(noisy, pred.timesteps.repeat(count), class_labels=classes).sample
        return all_classes.view(count, *pred.prediction.shape).mean(0)

    def guidance_loss(self, pred: Denoising, frozen: Denoising) -> torch.Tensor:
        """ESD per example: the MSE between the prediction and the frozen original's negatively guided
        ``eps_uncond - eta (eps_cond - eps_uncond)`` on the same ``x_t, t`` (``eta``: ``esd_eta``)."""
        eta = pred.setup.args.esd_eta
        target = frozen.unconditional - eta * (frozen.prediction - frozen.unconditional)
        return _mse(pred.prediction, target.detach())

    def loss_scale(self, model: torch.nn.Module) -> float:
        """1.0: the loss of predicting zero, ``E[target^2]``, which is 1 for the unit-variance noise target and
        at most 1 for the velocity or ``x_0`` of data in ``[-1, 1]``: the ascent cap's default lets the forget
        images' loss rise by about what a UNet that knows nothing about them would score (the analogue of
        ``log C``, the loss of a uniform guess, for classifiers)."""
        return 1.0

    def num_classes(self, model: torch.nn.Module) -> int:
        return len(diffusion_setup(model).classes)

    def lora_defaults(self) -> dict[str, Any]:
        """No ``task_type`` (a plain module for PEFT); LoRA on the attention projections, as diffusers'
        training scripts."""
        return {"target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}


def _mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (prediction.float() - target.float()).pow(2).flatten(1).mean(1)


def _draw(keys: list[tuple[int, ...]], shape: torch.Size, timesteps: tuple[int, int]):
    """Per key, a timestep in ``[low, high)`` and standard normal noise of ``shape``, from a CPU generator seeded
    by the key alone (the same on every device and batch layout)."""
    low, high = timesteps
    noise, steps = [], []
    for key in keys:
        seed = 0
        for value in key:
            seed = (seed * _MIX + int(value)) % (2**63 - 1)
        generator = torch.Generator().manual_seed(seed)
        steps.append(torch.randint(low, high, (1,), generator=generator))
        noise.append(torch.randn(tuple(shape), generator=generator))
    return torch.stack(noise), torch.cat(steps)
