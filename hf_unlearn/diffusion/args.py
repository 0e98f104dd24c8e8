"""``DiffusionArguments``: the settings only diffusion models have (timesteps, ESD's guidance scale, the null and
anchor classes), next to the diffusion code instead of flat ``UnlearningConfig`` fields; and ``DiffusionSetup``,
what a UNet carries for its model kind (its noise scheduler and these arguments)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

#: where ``configure_unet`` keeps a UNet's ``DiffusionSetup`` (a plain attribute: deep copies keep it)
SETUP_ATTRIBUTE = "hf_unlearn_diffusion"
ARGS_FILE = "diffusion_args.json"


@dataclass
class DiffusionArguments:
    """Diffusion-only settings of an unlearning run (``DiffusionUnlearningTrainer(diffusion_args=...)``).

    Attributes:
        min_timestep: the smallest training timestep drawn (inclusive).
        max_timestep: the largest training timestep drawn (exclusive); None: the scheduler's
            ``num_train_timesteps``. Timesteps are drawn uniformly in ``[min_timestep, max_timestep)``, in
            training and evaluation passes alike.
        eval_seed: evaluation passes (per-example losses for stopping, the ascent cap, MIA, RCD) draw each
            example's noise and timestep from ``(eval_seed, example index)``: fixed, so that they measure the
            weights, not the draw.
        esd_eta: ESD's negative guidance scale ``eta``: the target of the forget class is the frozen original's
            ``eps_uncond - eta (eps_cond - eps_uncond)`` (1.0 as in the ESD paper).
        null_class: the class-embedding index the UNet was trained with as "no class" (classifier-free
            guidance's condition dropout): ESD's unconditional prediction. None (default): the UNet has no
            null class, and the unconditional prediction is the mean of the predictions under every class.
        anchor_class: ``rl`` / ``salun``: the class whose (detached) prediction the forget images' prediction
            under their own class is trained towards (SalUn's DDPM code uses ``(forgotten + 1) mod 10``). None
            (default): a seeded random other class per example and step.
        num_classes: the number of real classes; None: ``num_class_embeds``, less the null class when it is
            the last embedding.
        anchor_prompt: text-to-image pipelines, ``rl`` / ``salun``: the prompt whose (detached) prediction the
            forget prompt's prediction is trained towards (Concept Ablation's anchor concept, e.g. ``"a dog"``
            to map ``"a golden retriever"`` away). None (default): the empty prompt, the unconditional branch.
    """

    min_timestep: int = 0
    max_timestep: int | None = None
    eval_seed: int = 0
    esd_eta: float = 1.0
    null_class: int | None = None
    anchor_class: int | None = None
    num_classes: int | None = field(default=None)
    anchor_prompt: str | None = None

    def to_json_string(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def check_settings(settings: dict | None) -> None:
    """``ValueError`` (one line, naming every field) when ``settings`` (a recipe's ``diffusion`` mapping) has a key
    that is not a ``DiffusionArguments`` field. Checked when ``RunArguments`` is built, before anything loads;
    importing this module imports no ``diffusers``."""
    known = sorted(f.name for f in fields(DiffusionArguments))
    unknown = sorted(set(settings or {}) - set(known))
    if unknown:
        raise ValueError(
            f"unknown diffusion setting(s) {unknown}: the diffusion mapping takes DiffusionArguments fields "
            f"({', '.join(known)})."
        )


@dataclass
class DiffusionSetup:
    """What the diffusion kind needs besides the UNet: its noise scheduler (the forward process and
    ``prediction_type``), the arguments, and the checked timestep range and classes."""

    scheduler: Any
    args: DiffusionArguments
    timesteps: tuple[int, int]
    classes: tuple[int, ...]

    @property
    def prediction_type(self) -> str:
        return getattr(self.scheduler.config, "prediction_type", "epsilon")


def configure_unet(
    unet: torch.nn.Module, noise_scheduler: Any = None, diffusion_args: DiffusionArguments | None = None
) -> DiffusionSetup:
    """Check ``diffusion_args`` against ``unet`` and ``noise_scheduler`` and attach both to the UNet, where the
    model kind, the metrics and RCD find them. ``noise_scheduler`` None: a ``DDPMScheduler`` with diffusers'
    defaults (1000 steps, linear betas, epsilon prediction)."""
    from ..data.common import unwrap_model

    inner = unwrap_model(unet)
    embeds = getattr(inner.config, "num_class_embeds", None)
    if not embeds:
        raise ValueError(
            f"{type(inner).__name__} has no class embedding (num_class_embeds is {embeds}): hf_unlearn.diffusion "
            "unlearns classes of a class-conditional UNet; build it with num_class_embeds=<number of classes>."
        )
    if noise_scheduler is None:
        from diffusers import DDPMScheduler

        noise_scheduler = DDPMScheduler()
    args = diffusion_args or DiffusionArguments()
    setup = DiffusionSetup(
        noise_scheduler, args, timestep_range(noise_scheduler, args), _classes(args, int(embeds))
    )
    object.__setattr__(
        inner, SETUP_ATTRIBUTE, setup
    )  # not a submodule nor a parameter: kept out of state dicts
    return setup


def timestep_range(noise_scheduler: Any, args: DiffusionArguments) -> tuple[int, int]:
    """``[low, high)`` of the training timesteps, checked against the scheduler (and its prediction type)."""
    total = int(noise_scheduler.config.num_train_timesteps)
    high = total if args.max_timestep is None else args.max_timestep
    if not 0 <= args.min_timestep < high <= total:
        raise ValueError(
            f"the timestep range [{args.min_timestep}, {high}) is not inside the scheduler's [0, {total}); set "
            "DiffusionArguments.min_timestep and max_timestep within it."
        )
    prediction = getattr(noise_scheduler.config, "prediction_type", "epsilon")
    if prediction not in ("epsilon", "v_prediction", "sample"):
        raise ValueError(f"unsupported prediction_type {prediction!r}: use epsilon, v_prediction or sample.")
    return args.min_timestep, high


def _classes(args: DiffusionArguments, embeds: int) -> tuple[int, ...]:
    for name in ("null_class", "anchor_class"):
        value = getattr(args, name)
        if value is not None and not 0 <= value < embeds:
            raise ValueError(
                f"DiffusionArguments.{name}={value} is not a class of the UNet (0..{embeds - 1})."
            )
    count = args.num_classes
    if count is None:
        count = embeds - 1 if args.null_class == embeds - 1 else embeds
    if not 0 < count <= embeds:
        raise ValueError(f"DiffusionArguments.num_classes={count} must be in 1..{embeds} (num_class_embeds).")
    classes = tuple(c for c in range(count) if c != args.null_class)
    if len(classes) < 2:
        raise ValueError(
            "a class-conditional UNet to unlearn from needs at least 2 classes besides the null one."
        )
    return classes


def diffusion_setup(unet: torch.nn.Module) -> DiffusionSetup:
    """The ``DiffusionSetup`` attached to ``unet`` by ``configure_unet``, or a default one attached now."""
    from ..data.common import unwrap_model

    setup = getattr(unwrap_model(unet), SETUP_ATTRIBUTE, None)
    return setup if setup is not None else configure_unet(unet)


def saved_setup(path: str) -> tuple[Any, DiffusionArguments | None]:
    """``(noise scheduler, DiffusionArguments)`` saved in folder ``path`` beside a UNet: the scheduler of
    ``scheduler_config.json`` (its ``_class_name``, a ``diffusers`` scheduler) and ``diffusion_args.json``;
    None for each one absent."""
    import os

    import diffusers

    scheduler, args = None, None
    config = os.path.join(path, "scheduler_config.json")
    if os.path.isfile(config):
        with open(config) as f:
            name = json.load(f).get("_class_name", "DDPMScheduler")
        cls = getattr(diffusers, str(name), None)
        if not (isinstance(cls, type) and issubclass(cls, diffusers.SchedulerMixin)):
            raise ValueError(f"{config}: {name!r} is not a diffusers scheduler.")
        scheduler = cls.from_pretrained(path)
    saved = os.path.join(path, ARGS_FILE)
    if os.path.isfile(saved):
        with open(saved) as f:
            args = DiffusionArguments(**json.load(f))
    return scheduler, args
