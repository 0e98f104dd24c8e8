"""A plain seeded training loop for a class-conditional DDPM (the scenario's original and golden models): the
noise-prediction MSE at uniform timesteps, AdamW with linear warm-up and decay, classifier-free guidance's
condition dropout to a null class when the UNet has one."""

from __future__ import annotations

import math
import time
from typing import Any

import torch

__all__ = ["train_ddpm"]


def train_ddpm(
    unet: torch.nn.Module,
    pixel_values: torch.Tensor,
    labels: torch.Tensor,
    noise_scheduler: Any,
    recipe: Any,
    seed: int,
    *,
    null_class: int | None = None,
    label_dropout: float = 0.0,
    progress: bool = False,
    desc: str = "train",
) -> float:
    """Train ``unet`` in place on ``pixel_values`` (``[N, C, H, W]`` in [-1, 1]) with class ``labels``; returns
    the wall time in seconds.

    ``recipe`` is a ``scenarios.TrainRecipe`` (learning rate, epochs, batch size, warm-up ratio, weight decay,
    gradient clipping). Batch order, noise, timesteps and dropped labels come from one generator seeded with
    ``seed``: the same seed and data give the same weights. With ``null_class``, each label is replaced by it
    with probability ``label_dropout`` (classifier-free guidance's training, giving an unconditional branch).
    """
    from tqdm.auto import tqdm

    from ..scenarios.training import optimizer_step

    if label_dropout and null_class is None:
        raise ValueError("train_ddpm: label_dropout needs a null_class to drop the labels to.")
    start = time.perf_counter()
    device = next(unet.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    n = len(labels)
    per_epoch = math.ceil(n / recipe.batch_size)
    total = recipe.epochs * per_epoch
    optimizer = torch.optim.AdamW(
        unet.parameters(), lr=recipe.learning_rate, weight_decay=recipe.weight_decay
    )
    warmup = max(1, math.ceil(recipe.warmup_ratio * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)),
    )
    num_timesteps = int(noise_scheduler.config.num_train_timesteps)
    unet.train()
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    for _ in range(recipe.epochs):
        for batch in torch.randperm(n, generator=generator).split(recipe.batch_size):
            x0, y = pixel_values[batch], labels[batch].clone()
            if null_class is not None and label_dropout:
                y[torch.rand(len(y), generator=generator) < label_dropout] = null_class
            noise = torch.randn(x0.shape, generator=generator)
            t = torch.randint(0, num_timesteps, (len(y),), generator=generator)
            loss = _denoising_loss(unet, noise_scheduler, x0, noise, t, y, device)
            optimizer_step(loss, unet, optimizer, scheduler, recipe.max_grad_norm, bar, desc)
    bar.close()
    unet.eval()
    return time.perf_counter() - start


def _denoising_loss(unet, noise_scheduler, x0, noise, t, y, device) -> torch.Tensor:
    """Mean squared error of the UNet's prediction against the scheduler's target (eps, v or x_0)."""
    x0, noise, t, y = x0.to(device), noise.to(device), t.to(device), y.to(device)
    noisy = noise_scheduler.add_noise(x0, noise, t)
    prediction_type = getattr(noise_scheduler.config, "prediction_type", "epsilon")
    if prediction_type == "epsilon":
        target = noise
    elif prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(x0, noise, t)
    else:
        target = x0
    return torch.nn.functional.mse_loss(unet(noisy, t, class_labels=y).sample.float(), target.float())
