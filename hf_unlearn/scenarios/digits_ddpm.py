"""``digits-ddpm``: class forgetting from a class-conditional diffusion model (SalUn's DDPM protocol in
miniature) on scikit-learn's 1,797 real handwritten 8x8 digits.

A small class-conditional ``diffusers.UNet2DModel`` (built from config, with a null class trained by condition
dropout, so that ``esd`` has a real unconditional branch) learns the 80% training split with a ``DDPMScheduler``;
the golden model is the same initialization trained with the same recipe without the images of the forgotten
digit. A judge (the digits classifiers' small ResNet, on the 16x16 bilinear upsampling they use) is trained on
the real training images of every class; the generation metrics (``hf_unlearn.diffusion.generation_metrics``)
sample each class with DDIM and ask it. Everything lives under ``output_dir/digits-ddpm/{original,golden,judge}``
and is rebuilt when the configuration changes. ``diffusers`` is imported only when the scenario is built or
loaded.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .definition import Scenario, ScenarioBuilder, TrainRecipe
from .digits import FORGET_CLASS, N_CLASSES, load_digits_images, split_digits

JUDGE_DIR = "judge"
#: the judge's input size: the digits classifiers' (bilinear from 8x8)
JUDGE_IMAGE_SIZE = 16


@dataclass
class DiffusionScenario(Scenario):
    """A ``Scenario`` of a class-conditional diffusion model: ``original_model()`` / ``golden_model()`` are
    ``UNet2DModel``s, ``tokenizer`` is None; the judge, the noise scheduler, the ``DiffusionArguments`` and the
    generation settings come from the methods below."""

    forget_classes: tuple[int, ...] = ()
    retain_classes: tuple[int, ...] = ()
    generation: dict | None = None

    @property
    def judge_dir(self) -> str:
        return os.path.join(os.path.dirname(self.original_dir), JUDGE_DIR)

    def noise_scheduler(self):
        """The ``DDPMScheduler`` both models were trained with (saved beside the original)."""
        from diffusers import DDPMScheduler

        return DDPMScheduler.from_pretrained(self.original_dir)

    def diffusion_args(self):
        """``DiffusionArguments`` naming the UNet's null class (ESD's unconditional branch)."""
        from ..diffusion import DiffusionArguments

        return DiffusionArguments(null_class=self.config.get("null_class"), num_classes=N_CLASSES)

    def trainer_kwargs(self) -> dict:
        """``DiffusionUnlearningTrainer``'s ``noise_scheduler`` and ``diffusion_args`` (``hf-unlearn run``)."""
        return {"noise_scheduler": self.noise_scheduler(), "diffusion_args": self.diffusion_args()}

    def evaluation_options(self) -> dict:
        """``evaluate_unlearning``'s judge options: the scenario's judge and its processor, and the generation
        settings (samples per class, DDIM steps), so that a run reports the generation metrics."""
        generation = self.generation or {}
        options = {"judge_model": self.judge_model(), "judge_processor": self.judge_processor()}
        if "num_samples_per_class" in generation:
            options["generation_samples"] = generation["num_samples_per_class"]
        if "num_inference_steps" in generation:
            options["generation_steps"] = generation["num_inference_steps"]
        return {**self.evaluation, **options}

    def judge_model(self):
        """The judge classifier (a ``transformers`` ResNet), in eval mode."""
        from ..loading import load_model
        from .resources import quiet_transformers

        if not os.path.isdir(self.judge_dir):
            raise FileNotFoundError(f"No judge under {self.judge_dir}: rebuild the scenario (rebuild=True).")
        with quiet_transformers():
            return load_model(self.judge_dir).eval()

    def judge_processor(self):
        """The judge's image processor (16x16, pixels normalized to [-1, 1])."""
        from transformers import ViTImageProcessorPil

        return ViTImageProcessorPil.from_pretrained(self.judge_dir, local_files_only=True)

    def real_images(self):
        """The real images of the kept classes the Fréchet distance compares with: the retain split."""
        import torch

        return torch.tensor(np.asarray(self.retain["pixel_values"], dtype=np.float32))

    def evaluate_generation(self, unet, golden_unet=None, judge=None, **overrides: Any) -> dict[str, float]:
        """``generation_metrics`` of ``unet`` (and ``golden_unet``) with this scenario's judge, classes, real
        images, scheduler and generation settings (``overrides`` replace them)."""
        from ..diffusion.generation_metrics import generation_metrics

        settings = {**(self.generation or {}), **overrides}
        return generation_metrics(
            unet,
            judge if judge is not None else self.judge_model(),
            forget_classes=self.forget_classes,
            retain_classes=self.retain_classes,
            real_images=self.real_images(),
            noise_scheduler=self.noise_scheduler(),
            judge_processor=self.judge_processor(),
            golden_unet=golden_unet,
            **settings,
        )

    def save_grid(self, unet, path: str, per_class: int = 8, seed: int = 0, title: str | None = None) -> str:
        """A PNG of ``per_class`` samples of every class (one row per class, the same noise for every model)."""
        from ..diffusion.sampling import save_class_grid

        return save_class_grid(
            unet,
            path,
            range(N_CLASSES),
            per_class=per_class,
            noise_scheduler=self.noise_scheduler(),
            num_inference_steps=(self.generation or {}).get("num_inference_steps", 25),
            seed=seed,
            title=title,
        )


class DigitsDDPM(ScenarioBuilder):
    """The ``digits-ddpm`` scenario; the keyword arguments shrink it (tests) and change its cache key."""

    name = "digits-ddpm"
    task = "diffusion"
    scenario_class = DiffusionScenario
    description = (
        "Class forgetting from a diffusion model: a small class-conditional DDPM (a diffusers UNet2DModel built "
        "from config, 8x8 grey like the scans themselves, with a null class for classifier-free guidance) trained "
        f"on scikit-learn's real handwritten digits (80% of 1,797); every training image of the digit {FORGET_CLASS} "
        "must go. The golden model is the same start and recipe without them. A small ResNet judge trained on the "
        "real digits (16x16, as the digits classifiers) scores DDIM samples of each class: the original draws "
        f"recognisable {FORGET_CLASS}s most of the time, the golden model almost never (it draws other digits when "
        "asked for a class it never saw), both draw the kept digits well. The Fréchet distance is on the judge's "
        "features, not Inception FID. A CPU-sized model: its samples are rough, and its per-example denoising "
        "losses hardly tell training images from held-out ones (MIA AUC near 0.5 even for the original)."
    )

    def __init__(
        self,
        recipe: TrainRecipe | None = None,
        block_out_channels: tuple[int, ...] = (16, 32),
        judge_epochs: int = 15,
        num_samples_per_class: int = 50,
        num_inference_steps: int = 25,
    ):
        self.recipe = recipe or TrainRecipe(learning_rate=2e-3, epochs=70, batch_size=64, warmup_ratio=0.03)
        self.block_out_channels = tuple(block_out_channels)
        self.judge_recipe = TrainRecipe(learning_rate=3e-3, epochs=judge_epochs, batch_size=32)
        self.generation = {
            "num_samples_per_class": num_samples_per_class,
            "num_inference_steps": num_inference_steps,
        }

    image_size = 8  # the digits' own resolution: the 16x16 of the classifiers is a bilinear upsampling of it
    null_class = N_CLASSES  # the extra class embedding "no class"
    label_dropout = 0.1
    relearning = {"relearn_learning_rate": 1e-3, "relearn_max_steps": 100, "relearn_target": "loss"}
    # 3e-4 (constant, 100 steps of 32 + 32 images): rl, salun and esd bring the forget generation accuracy to
    # golden's (<= 0.02) keeping the kept classes' at 0.89-0.90 (original 0.94); at 1e-3 they lose 8-12 points
    # and even ft drops to 0.88 (quickstart, seed 0)
    unlearning_defaults = {
        "learning_rate": 3e-4,
        "max_steps": 100,
        "per_device_train_batch_size": 32,
        "lr_scheduler_type": "constant",
    }

    def check_requirements(self) -> None:
        import importlib.util

        from .resources import MissingExtraError

        if importlib.util.find_spec("diffusers") is None:
            raise MissingExtraError(
                "The 'digits-ddpm' scenario needs diffusers: pip install \"hf-unlearn[diffusion]\""
            )

    def config(self) -> dict:
        from dataclasses import asdict

        return {
            "forget_class": FORGET_CLASS,
            "image_size": self.image_size,
            "block_out_channels": list(self.block_out_channels),
            "null_class": self.null_class,
            "label_dropout": self.label_dropout,
            "judge": {"model": "resnet", "image_size": JUDGE_IMAGE_SIZE, "recipe": asdict(self.judge_recipe)},
            "generation": self.generation,
        }

    def make_tokenizer(self, seed: int):
        return None

    def load_tokenizer(self, path: str):
        return None

    def build_data(self, seed: int, tokenizer) -> dict:
        data = split_digits(*load_digits_images(self.image_size), seed=seed, protocol="class")
        data["info"] = {"n_images": sum(len(data[s]) for s in ("forget", "retain", "test"))}
        return data

    def init_model(self, tokenizer, seed: int):
        import torch
        from diffusers import UNet2DModel

        levels = len(self.block_out_channels)
        torch.manual_seed(seed)
        return UNet2DModel(
            sample_size=self.image_size,
            in_channels=1,
            out_channels=1,
            block_out_channels=self.block_out_channels,
            down_block_types=("DownBlock2D",) * (levels - 1) + ("AttnDownBlock2D",),
            up_block_types=("AttnUpBlock2D",) + ("UpBlock2D",) * (levels - 1),
            layers_per_block=1,
            norm_num_groups=8,
            attention_head_dim=8,
            num_class_embeds=N_CLASSES + 1,
        )

    def load_model(self, path: str):
        from diffusers import UNet2DModel

        return UNet2DModel.from_pretrained(path).eval()

    def noise_scheduler(self):
        from diffusers import DDPMScheduler

        return DDPMScheduler(num_train_timesteps=1000)

    def scenario_fields(self) -> dict:
        """The ``DiffusionScenario`` fields beyond ``Scenario``'s."""
        return {
            "forget_classes": (FORGET_CLASS,),
            "retain_classes": tuple(c for c in range(N_CLASSES) if c != FORGET_CLASS),
            "generation": dict(self.generation),
        }

    def custom_quickstart(self):
        from ..diffusion.quickstart import diffusion_quickstart

        return diffusion_quickstart

    def build_models(self, config: dict, seed: int, progress: bool, original_dir: str, golden_dir: str):
        """Train and save the original and golden UNets and the judge; returns ``(meta, tokenizer, data)``."""
        from .ddpm_build import build_digits_ddpm

        return build_digits_ddpm(self, config, seed, progress, original_dir, golden_dir)

    def with_recipe(self, **changes: Any) -> DigitsDDPM:
        """A copy with ``recipe`` fields changed (e.g. ``epochs=2`` for a quick build)."""
        other = copy.copy(self)
        other.recipe = replace(self.recipe, **changes)
        return other
