"""What the diffusion kinds share: the per-example denoising MSE of one noisy version of each example, its noise
and timestep drawn per example from ``(seed, step, part, example index)`` in training steps (resume is bit-exact)
and from ``(eval_seed, example index)`` in evaluation passes (stopping, MIA and RCD measure the weights, not the
draw); ESD's negatively guided target; the ascent cap's scale; LoRA on the attention projections."""

from __future__ import annotations

import zlib
from dataclasses import replace
from typing import Any, ClassVar

import torch

from ..kinds.base import ForwardContext, ModelKind
from .data import TASK

_MIX = 1_000_003


class SplitsLikeATensor:
    """A dataclass of per-example tensors that ``split(sizes)`` cuts into the batch's parts like a tensor."""

    _TENSORS: ClassVar[tuple[str, ...]] = ()

    def split(self, sizes: list[int]) -> list[Any]:
        pieces = {
            name: [None] * len(sizes) if getattr(self, name) is None else getattr(self, name).split(sizes)
            for name in self._TENSORS
        }
        return [replace(self, **{name: pieces[name][i] for name in self._TENSORS}) for i in range(len(sizes))]


class DenoisingKind(ModelKind):
    """A diffusion UNet as a model kind. Subclasses give ``setup_of(model)`` (scheduler, settings), the batch key
    of the clean inputs (``clean_key``), ``predict`` (the UNet's prediction and the kind's prediction record) and
    ``unconditional`` (the frozen pass's unconditional prediction)."""

    task = TASK
    images = True
    capabilities = frozenset({"wrong_targets", "guidance"})
    library_name = "diffusers"
    clean_key: ClassVar[str] = "pixel_values"
    #: the ``diffusers`` class of the kind's models (a saved folder's ``config.json`` ``_class_name``)
    diffusers_class: ClassVar[str] = ""
    #: the UNet attribute its setup is kept in (``configure_unet``, ``configure_pipeline``)
    setup_attribute: ClassVar[str] = ""

    # -- recognising and loading -----------------------------------------------------------------------
    def recognises(self, model: torch.nn.Module) -> bool:
        cls = type(model)
        return cls.__module__.startswith("diffusers.") and cls.__name__ == self.diffusers_class

    def recognises_architecture(self, architecture: str) -> bool:
        return architecture == self.diffusers_class

    def recognises_folder(self, path: str) -> bool:
        """A ``diffusers`` model folder whose ``config.json`` names the kind's class (``_class_name``)."""
        return diffusers_class_name(path) == self.diffusers_class

    def load(self, path: str, trust_remote_code: bool = False, **kwargs: Any) -> torch.nn.Module:
        """The UNet saved in folder ``path`` (``save_pretrained``: safetensors only, local files only), in eval
        mode, configured by ``configure_loaded``."""
        import diffusers

        model = getattr(diffusers, self.diffusers_class).from_pretrained(
            path, use_safetensors=True, local_files_only=True, **kwargs
        )
        self.configure_loaded(model, path)
        return model.eval()

    def configure_loaded(self, model: torch.nn.Module, path: str) -> None:
        """Attach what was saved beside the weights (the scheduler, the diffusion arguments); nothing here."""

    # -- runs (hf-unlearn run) -------------------------------------------------------------------------
    def load_processing_class(self, path: str, trust_remote_code: bool = False) -> None:
        """None: a UNet's data needs no tokenizer (a pipeline's text encoder and tokenizer travel with it)."""
        return None

    def trainer_class(self) -> type:
        from .trainer import DiffusionUnlearningTrainer

        return DiffusionUnlearningTrainer

    def align_references(self, model: torch.nn.Module, references: Any) -> None:
        """The trained UNet's setup (scheduler, ``DiffusionArguments``, a pipeline's frozen encoders) attached to
        the original and golden UNets too: the same forward process and evaluation draws for all."""
        from ..data.common import unwrap_model

        setup = self.setup_of(model)
        for reference in references:
            if reference is not None:
                object.__setattr__(unwrap_model(reference), self.setup_attribute, setup)

    def trainer_kwargs(self, given: dict, settings: dict | None = None) -> dict:
        """``given`` (``noise_scheduler``, ``diffusion_args``: the scenario's or the folder's) with the user's
        ``DiffusionArguments`` fields (``settings``, a recipe's ``diffusion`` mapping) replacing the given ones."""
        from .args import DiffusionArguments

        args = given.get("diffusion_args") or DiffusionArguments()
        return {**given, "diffusion_args": with_settings(args, settings)}

    def setup_of(self, model: torch.nn.Module) -> Any:
        raise NotImplementedError

    def predict(self, model: torch.nn.Module, batch: dict, noised: dict, setup: Any) -> Any:
        """The prediction record (``Denoising``-like) of ``model`` on ``noised`` (``noisy``, ``timesteps``,
        ``target``) of ``batch``."""
        raise NotImplementedError

    def unconditional(self, model: torch.nn.Module, pred: Any) -> torch.Tensor:
        raise NotImplementedError

    # -- forward and losses --------------------------------------------------------------------------
    def forward(self, model: torch.nn.Module, batch: dict, **kwargs: Any) -> tuple[Any, None]:
        """Evaluation: each example's noise and timestep from ``(eval_seed, example index)``."""
        setup = self.setup_of(model)
        keys = [(setup.args.eval_seed, int(i)) for i in batch["index"]]
        return self._denoise(model, batch, setup, keys), None

    def training_forward(
        self, model: torch.nn.Module, batch: dict, context: ForwardContext, **kwargs: Any
    ) -> tuple[Any, None]:
        """A training step: each example's noise and timestep from ``(seed, step, part, example index)``; a
        frozen pass also gives the unconditional prediction (``esd``'s target)."""
        setup = self.setup_of(model)
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

    def _denoise(self, model: torch.nn.Module, batch: dict, setup: Any, keys: list) -> Any:
        x0 = batch[self.clean_key]
        noise, timesteps = draw(keys, x0.shape[1:], setup.timesteps)
        noise, timesteps = noise.to(x0), timesteps.to(x0.device)
        scheduler = setup.scheduler
        noisy = scheduler.add_noise(x0, noise, timesteps)
        if setup.prediction_type == "epsilon":
            target = noise
        elif setup.prediction_type == "v_prediction":
            target = scheduler.get_velocity(x0, noise, timesteps)
        else:
            target = x0
        return self.predict(model, batch, {"noisy": noisy, "timesteps": timesteps, "target": target}, setup)

    def loss_of(self, predictions: Any, labels: torch.Tensor) -> torch.Tensor:
        """The denoising MSE per example (mean over channels and positions)."""
        return mse(predictions.prediction, predictions.target)

    def guidance_loss(self, pred: Any, frozen: Any) -> torch.Tensor:
        """ESD per example: the MSE between the prediction and the frozen original's negatively guided
        ``eps_uncond - eta (eps_cond - eps_uncond)`` on the same ``x_t, t`` (``eta``: ``esd_eta``)."""
        eta = pred.setup.args.esd_eta
        target = frozen.unconditional - eta * (frozen.prediction - frozen.unconditional)
        return mse(pred.prediction, target.detach())

    def loss_scale(self, model: torch.nn.Module) -> float:
        """1.0: the loss of predicting zero, ``E[target^2]``, which is 1 for the unit-variance noise target and
        at most 1 for the velocity or ``x_0`` of data in ``[-1, 1]``: the ascent cap's default lets the forget
        images' loss rise by about what a UNet that knows nothing about them would score (the analogue of
        ``log C``, the loss of a uniform guess, for classifiers)."""
        return 1.0

    def lora_defaults(self) -> dict[str, Any]:
        """No ``task_type`` (a plain module for PEFT); LoRA on the attention projections (self- and
        cross-attention), as diffusers' training scripts."""
        return {"target_modules": ["to_q", "to_k", "to_v", "to_out.0"]}


def with_settings(args: Any, settings: dict | None) -> Any:
    """``DiffusionArguments`` ``args`` with the fields of ``settings`` replaced; ``ValueError`` naming the
    fields for an unknown one (``args.check_settings``)."""
    from .args import check_settings

    check_settings(settings)
    return replace(args, **(settings or {}))


def mse(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-example mean squared error over every dimension but the first, in float32."""
    return (prediction.float() - target.float()).pow(2).flatten(1).mean(1)


def draw(keys: list[tuple[int, ...]], shape: torch.Size, timesteps: tuple[int, int]):
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


def diffusers_class_name(path: str) -> str | None:
    """The ``_class_name`` of the ``diffusers`` model saved in folder ``path`` (its ``config.json``), None for a
    folder without one (a ``transformers`` model, an unreadable config)."""
    import json
    import os

    config = os.path.join(path, "config.json")
    if not os.path.isfile(config):
        return None
    try:
        with open(config) as f:
            value = json.load(f).get("_class_name")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None
