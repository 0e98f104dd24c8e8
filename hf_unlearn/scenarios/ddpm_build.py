"""Building ``digits-ddpm``'s cache: the original and golden DDPMs, the judge, and the numbers recorded in
``scenario.json`` (training seconds, the judge's test accuracy, both models' generation metrics)."""

from __future__ import annotations

import copy
import os
import shutil
import time

import numpy as np

from .base import _config_hash, _sizes, data_fingerprint, weights_fingerprint
from .definition import TrainRecipe
from .digits import N_CLASSES, load_digits_images, split_digits
from .resources import quiet_transformers
from .training import evaluate_rows, train_model

__all__ = ["build_digits_ddpm", "train_judge"]


def _tensors(dataset) -> tuple:
    import torch

    pixels = torch.tensor(np.asarray(dataset["pixel_values"], dtype=np.float32))
    return pixels, torch.tensor(dataset["label"], dtype=torch.long)


def _save_unet(unet, scheduler, path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    unet.save_pretrained(path, safe_serialization=True)
    scheduler.save_pretrained(path)


def train_judge(splits: dict, recipe: TrainRecipe, seed: int, progress: bool = False):
    """``(judge, processor, seconds, test accuracy)``: the digits classifiers' small ResNet trained on the real
    training images (``splits``' forget + retain at 16x16, every class, the forgotten one included)."""
    from ..data import build_preparer
    from ..tiny import tiny_image_classifier, tiny_image_processor

    processor = tiny_image_processor(num_channels=1, image_size=16)
    judge = tiny_image_classifier("resnet", num_labels=N_CLASSES, num_channels=1, hidden_size=16, seed=seed)
    preparer, collator = build_preparer(judge, processor)
    train_rows = list(preparer(splits["retain"], "retain")) + list(preparer(splits["forget"], "forget"))
    seconds = train_model(judge, train_rows, collator, recipe, seed, progress, "judge")
    accuracy = evaluate_rows(judge, preparer(splits["test"], "test"), collator, "classification")["accuracy"]
    return judge.eval(), processor, seconds, float(accuracy)


def build_digits_ddpm(builder, config: dict, seed: int, progress: bool, original_dir: str, golden_dir: str):
    """Train and save ``builder``'s (``DigitsDDPM``) models; returns ``(meta, tokenizer, data)``."""
    import torch

    from ..diffusion.ddpm_training import train_ddpm

    data = builder.build_data(seed, None)
    scheduler = builder.noise_scheduler()
    original = builder.init_model(None, seed)
    golden = copy.deepcopy(original)
    init_fp = {"original": weights_fingerprint(original), "golden": weights_fingerprint(golden)}
    forget, retain = _tensors(data["forget"]), _tensors(data["retain"])
    train_sets = {
        "original": (torch.cat([retain[0], forget[0]]), torch.cat([retain[1], forget[1]])),
        "golden": retain,
    }
    seconds = {}
    for name, model, path in (("original", original, original_dir), ("golden", golden, golden_dir)):
        pixels, labels = train_sets[name]
        seconds[name] = train_ddpm(
            model,
            pixels,
            labels,
            scheduler,
            builder.recipe,
            seed,
            null_class=builder.null_class,
            label_dropout=builder.label_dropout,
            progress=progress,
            desc=name,
        )
        _save_unet(model, scheduler, path)

    judge_dir = os.path.join(os.path.dirname(original_dir), "judge")
    judge_splits = split_digits(*load_digits_images(16), seed=seed, protocol="class")
    judge, processor, judge_seconds, judge_accuracy = train_judge(
        judge_splits, builder.judge_recipe, seed, progress
    )
    if os.path.isdir(judge_dir):
        shutil.rmtree(judge_dir)
    with quiet_transformers():
        judge.save_pretrained(judge_dir)
        processor.save_pretrained(judge_dir)
    seconds["judge"] = judge_seconds

    start = time.perf_counter()
    metrics = {"judge": {"test_accuracy": round(judge_accuracy, 4)}}
    from .base import _scenario  # the scenario object as a cached load makes it, to score the fresh models

    root = os.path.dirname(original_dir)
    scenario = _scenario(builder, root, config, seed, {"sizes": {}, "train_seconds": {}}, None, data, False)
    scores = scenario.evaluate_generation(original, golden_unet=golden, judge=judge, progress=progress)
    metrics["original"] = {k: round(v, 4) for k, v in scores.items() if not k.startswith("golden/")}
    metrics["golden"] = {
        k[len("golden/") :]: round(v, 4) for k, v in scores.items() if k.startswith("golden/")
    }
    meta = {
        "config": config,
        "config_hash": _config_hash(config),
        "data_fingerprint": data_fingerprint(data),
        "init_fingerprint": init_fp["original"],
        "init_fingerprints": init_fp,
        "sizes": _sizes(data, None, original),
        "train_seconds": {k: round(v, 2) for k, v in seconds.items()},
        "evaluation_seconds": round(time.perf_counter() - start, 2),
        "metrics": metrics,
        "description": builder.description,
    }
    return meta, None, data
