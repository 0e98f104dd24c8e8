"""The model kind of a class-conditional ``diffusers.UNet2DModel`` (``num_class_embeds`` set).

Per-example loss: the denoising MSE ``mean_(c,h,w) (f_theta(x_t, t, y) - target)^2`` of one noisy version
``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps`` of the example, where the target is ``eps``, the velocity
``sqrt(abar_t) eps - sqrt(1 - abar_t) x_0`` or ``x_0`` by the scheduler's ``prediction_type``. The noise ``eps``
and timestep ``t`` of an example come from its own generator: seeded by ``(seed, step, part, example index)``
in training steps (``training_forward``: resume is bit-exact) and by ``(eval_seed, example index)`` in
evaluation passes (``forward``: the same draw at every call, so stopping, MIA and RCD measure the weights).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from ..kinds.base import RunModel
from .args import SETUP_ATTRIBUTE, DiffusionSetup, configure_unet, diffusion_setup, saved_setup
from .data import DiffusionCollator, DiffusionPreparer
from .denoising import _MIX, DenoisingKind, SplitsLikeATensor, mse

logger = logging.getLogger(__name__)

#: DDIM steps of a run's sample grids (the card's figures) when the run sets no ``generation_steps``
GRID_STEPS = 25


@dataclass
class Denoising(SplitsLikeATensor):
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

    _TENSORS = ("prediction", "target", "noisy", "timesteps", "labels", "index", "unconditional")


class ClassConditionalUNetKind(DenoisingKind):
    """A class-conditional ``diffusers.UNet2DModel``: rows ``{"pixel_values", "labels", "index"}``, the denoising
    MSE per example, wrong targets (the prediction under another class) and guidance (the unconditional
    prediction: ``esd``). No logits: ``dr`` and the token methods refuse it."""

    name = "class_conditional_unet"
    diffusers_class = "UNet2DModel"
    setup_attribute = SETUP_ATTRIBUTE
    input_keys = ("pixel_values", "labels", "index")
    # the Hub has no class-conditional generation tag; diffusers' own DDPM/DiT cards use this one
    pipeline_tag = "unconditional-image-generation"
    judged_generation = True
    # what the samples show first (with a judge), then the denoising-loss keys every run has
    headline_keys = (
        "forget/generation_accuracy",
        "retain/generation_accuracy",
        "quality/frechet_distance",
        "forget/loss",
        "retain/loss",
        "mia/auc",
        "rcd/ratio_to_golden",
        "rcd/ratio_to_heldout",
    )
    short_keys = ("forget/generation_accuracy", "retain/generation_accuracy", "quality/frechet_distance")
    # a denoiser has no accuracy: relearning recovers the forget images' denoising loss
    default_rcd_target = "loss"

    def headline(self, rows: Any = None, short: bool = False) -> list[str]:
        """The generation keys first; without them in ``rows`` (no judge), the denoising-loss keys."""
        keys = list(self.short_keys if short else self.headline_keys)
        generation = set(self.short_keys)
        if rows and not any(k in row for row in rows.values() for k in generation):
            keys = [k for k in keys if k not in generation] or list(DenoisingKind.short_keys)
        return keys

    def membership_nonmembers(self, forget_rows: list[dict], test_rows: list[dict]) -> list[int] | None:
        """The test images of the forget set's classes: ``mia/auc`` asks whether the forget images are told from
        held-out images *of the same class* by their denoising loss (against other classes it would measure how
        well the UNet draws each class, not membership). None (every test row, with a warning) when the test
        set has no image of those classes."""
        forgotten = {int(row["labels"]) for row in forget_rows}
        same = [i for i, row in enumerate(test_rows) if int(row["labels"]) in forgotten]
        if not same:
            logger.warning(
                "mia/auc: the test set has no image of the forgotten class(es) %s; the attack compares the forget "
                "images with every test image (other classes), which measures more than membership.",
                sorted(forgotten),
            )
            return None
        return same

    def relearn_scorer(self, target: str, rows: list[dict], config: Any, options: dict) -> Any:
        """``target="generation_accuracy"``: the judged generation accuracy of the forget rows' classes
        (``generation_metrics.forget_generation_scorer``)."""
        if target != "generation_accuracy":
            return super().relearn_scorer(target, rows, config, options)
        from .generation_metrics import forget_generation_scorer

        return forget_generation_scorer(
            sorted({int(row["labels"]) for row in rows}),
            options.get("judge_model"),
            options.get("judge_processor"),
            config.generation_samples,
            config.generation_steps,
            config.eval_batch_size,
        )

    def suite_metrics(self, inputs: Any) -> dict[str, float]:
        """With ``judge_model`` (``evaluate_unlearning``): the judged generation metrics of the model and the
        golden model (``generation_metrics.judged_suite_metrics``), sampled with DDIM from the UNet's training
        scheduler, seeded by ``DiffusionArguments.eval_seed``."""
        from .generation_metrics import judged_suite_metrics

        setup = diffusion_setup(inputs.model)
        return judged_suite_metrics(inputs, setup.scheduler, setup.args.eval_seed)

    def card_figures(
        self,
        models: dict[str, torch.nn.Module],
        output_dir: str,
        seed: int = 0,
        options: dict | None = None,
        data: dict[str, Any] | None = None,
    ) -> list[str]:
        """``samples_<name>.png`` for each model: 8 DDIM samples of every class, one row per class, the same noise
        for every model (``sampling.save_class_grids``; ``generation_steps`` of ``options``, default 25)."""
        from .sampling import save_class_grids

        steps = (options or {}).get("generation_steps") or GRID_STEPS
        return save_class_grids(models, output_dir, seed=seed, num_inference_steps=steps)

    def configure_loaded(self, model: torch.nn.Module, path: str) -> None:
        """``configure_unet`` with the scheduler (``scheduler_config.json``) and ``DiffusionArguments``
        (``diffusion_args.json``) saved beside the weights (``DiffusionUnlearningTrainer.save_model``), when
        there; else the defaults."""
        configure_unet(model, *saved_setup(path))

    def load_run_model(self, path: str, trust_remote_code: bool = False) -> RunModel:
        """The UNet of folder ``path``, with the scheduler and ``DiffusionArguments`` saved beside it (else the
        defaults) as its trainer's ``noise_scheduler`` and ``diffusion_args``."""
        model = self.load(path)
        setup = diffusion_setup(model)
        return RunModel(
            model, trainer_kwargs={"noise_scheduler": setup.scheduler, "diffusion_args": setup.args}
        )

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
    def setup_of(self, model: torch.nn.Module) -> DiffusionSetup:
        return diffusion_setup(model)

    def predict(self, model: torch.nn.Module, batch: dict, noised: dict, setup: DiffusionSetup) -> Denoising:
        labels = batch["labels"]
        prediction = model(noised["noisy"], noised["timesteps"], class_labels=labels).sample
        return Denoising(
            prediction,
            noised["target"],
            noised["noisy"],
            noised["timesteps"],
            labels,
            batch["index"],
            model,
            setup,
        )

    def wrong_target_loss(self, part: Any, seed: int, step: int) -> torch.Tensor:
        """SalUn's random-label loss for DDPMs: the MSE between the prediction under the example's own class and
        the model's detached prediction on the same ``x_t, t`` under another class (``anchor_class``, or a
        class drawn from ``(seed, step, example index)``)."""
        pred: Denoising = part.logits
        other = self.other_classes(pred, seed, step)
        with torch.no_grad():
            target = pred.model(pred.noisy, pred.timesteps, class_labels=other).sample
        return mse(pred.prediction, target)

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

    def num_classes(self, model: torch.nn.Module) -> int:
        return len(diffusion_setup(model).classes)
