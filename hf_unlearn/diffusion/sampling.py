"""Seeded, batched class-conditional sampling from a ``diffusers`` ``UNet2DModel`` (``num_class_embeds``) with a
fast deterministic scheduler, and a PNG grid of the samples (one row per class).

``diffusers`` is imported only when a function here runs. Image ``i`` of a call starts from noise drawn from
``(seed, i)`` alone (all initial noise comes from one CPU generator, in order), and DDIM with ``eta=0`` adds no
noise afterwards: the same seed gives the same images whatever the batch size, device aside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

__all__ = [
    "class_labels_for",
    "ddim_scheduler",
    "sample_images",
    "save_class_grid",
    "save_class_grids",
    "save_sample_grid",
]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    from ..data.common import unwrap_model

    return unwrap_model(model)


def ddim_scheduler(noise_scheduler: Any = None):
    """A ``DDIMScheduler`` built from the training scheduler's config (betas, prediction type, clipping), or
    from ``DDPMScheduler``'s defaults when ``noise_scheduler`` is None."""
    from diffusers import DDIMScheduler, DDPMScheduler

    config = (noise_scheduler or DDPMScheduler()).config
    return DDIMScheduler.from_config(config)


def class_labels_for(classes: Sequence[int], per_class: int) -> torch.Tensor:
    """``[len(classes) * per_class]`` labels: ``per_class`` copies of each class, class by class."""
    return torch.tensor([int(c) for c in classes for _ in range(per_class)], dtype=torch.long)


@torch.no_grad()
def sample_images(
    unet: torch.nn.Module,
    labels: Sequence[int] | torch.Tensor,
    *,
    noise_scheduler: Any = None,
    num_inference_steps: int = 25,
    seed: int = 0,
    batch_size: int = 128,
    progress: bool = False,
    desc: str = "sampling",
) -> torch.Tensor:
    """Generate one image per entry of ``labels`` (class ids) with DDIM (``eta=0``) -> ``[N, C, H, W]`` in
    [-1, 1], on the CPU.

    Args:
        unet: a class-conditional ``UNet2DModel`` (or a PEFT / DDP wrapper of one); left in the mode it was in.
        labels: the class of each image.
        noise_scheduler: the scheduler the UNet was trained with (its betas and prediction type); DDIM is
            built from its config. None: ``DDPMScheduler``'s defaults.
        num_inference_steps: DDIM steps (more: slower, closer to the trained model's distribution).
        seed: seeds the initial noise; image ``i`` depends on ``(seed, i)`` only.
        batch_size: images per UNet call.
        progress: show a tqdm bar over the denoising steps of all batches.
    """
    from tqdm.auto import tqdm

    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    base = _unwrap(unet)
    config = base.config
    if getattr(config, "num_class_embeds", None) is None:
        raise ValueError("sample_images needs a class-conditional UNet2DModel (num_class_embeds set).")
    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if len(labels) and (labels.min() < 0 or labels.max() >= config.num_class_embeds):
        raise ValueError(f"labels must lie in [0, {config.num_class_embeds}), got {labels.tolist()[:8]}...")
    size = config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(len(labels), config.in_channels, height, width, generator=generator)
    scheduler = ddim_scheduler(noise_scheduler)
    scheduler.set_timesteps(num_inference_steps)
    device = next(unet.parameters()).device
    dtype = next(unet.parameters()).dtype
    out = []
    n_batches = math.ceil(len(labels) / batch_size)
    bar = tqdm(total=n_batches * len(scheduler.timesteps), desc=desc, disable=not progress, leave=False)
    for start in range(0, len(labels), batch_size):
        x = noise[start : start + batch_size].to(device, dtype)
        y = labels[start : start + batch_size].to(device)
        for t in scheduler.timesteps:
            model_output = unet(x, t.to(device), class_labels=y).sample
            x = scheduler.step(model_output, t, x, eta=0.0).prev_sample
            bar.update(1)
        out.append(x.float().clamp(-1, 1).cpu())
    bar.close()
    return torch.cat(out) if out else noise


def save_sample_grid(
    images: torch.Tensor,
    labels: Sequence[int] | torch.Tensor,
    path: str,
    *,
    scale: int = 4,
    title: str | None = None,
) -> str:
    """Save ``images`` (``[N, C, H, W]`` in [-1, 1], grey or RGB) as a PNG grid with one row per class (classes
    in increasing order, images in their order within a class), each pixel ``scale`` x ``scale``; ``title``
    goes into the PNG's text metadata. Returns ``path``."""
    import numpy as np
    from PIL import Image, PngImagePlugin

    labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
    if len(labels) != len(images):
        raise ValueError(f"save_sample_grid: {len(images)} images but {len(labels)} labels.")
    if not len(images):
        raise ValueError("save_sample_grid: no images to save.")
    classes = sorted(set(labels.tolist()))
    rows = [images[labels == c] for c in classes]
    n_cols = max(len(r) for r in rows)
    _, channels, height, width = images.shape
    pad = 1
    grid = np.full(
        (len(rows) * (height + pad) + pad, n_cols * (width + pad) + pad, channels), 255, dtype=np.uint8
    )
    for i, row in enumerate(rows):
        pixels = ((row.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for j, image in enumerate(pixels):
            top, left = pad + i * (height + pad), pad + j * (width + pad)
            grid[top : top + height, left : left + width] = image
    grid = grid[..., 0] if channels == 1 else grid
    picture = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    info = PngImagePlugin.PngInfo()
    info.add_text("classes", ",".join(str(c) for c in classes))
    if title:
        info.add_text("Title", title)
    picture.save(path, pnginfo=info)
    return path


def save_class_grid(
    unet: torch.nn.Module,
    path: str,
    classes: Sequence[int],
    *,
    per_class: int = 8,
    noise_scheduler: Any = None,
    num_inference_steps: int = 25,
    seed: int = 0,
    title: str | None = None,
) -> str:
    """Sample ``per_class`` images of each of ``classes`` from a class-conditional ``unet`` (``sample_images``:
    DDIM, image ``i`` from noise ``(seed, i)``, so every UNet sampled with one seed starts from the same noise) and
    save them as a PNG grid with one row per class (``save_sample_grid``). Returns ``path``."""
    labels = class_labels_for(classes, per_class)
    images = sample_images(
        unet, labels, noise_scheduler=noise_scheduler, num_inference_steps=num_inference_steps, seed=seed
    )
    return save_sample_grid(images, labels, path, title=title)


def save_class_grids(
    models: dict[str, torch.nn.Module],
    output_dir: str,
    *,
    seed: int = 0,
    num_inference_steps: int = 25,
    per_class: int = 8,
) -> list[str]:
    """``samples_<name>.png`` in ``output_dir`` for each named class-conditional UNet of ``models``
    (``save_class_grid`` with the UNet's own scheduler and classes, ``configure_unet``; the same noise for every
    model). Returns the file names, in the order of ``models``."""
    import os

    from .args import diffusion_setup

    files = []
    for name, unet in models.items():
        setup = diffusion_setup(unet)
        file = f"samples_{name}.png"
        save_class_grid(
            unet,
            os.path.join(output_dir, file),
            setup.classes,
            per_class=per_class,
            noise_scheduler=setup.scheduler,
            num_inference_steps=num_inference_steps,
            seed=seed,
            title=name,
        )
        files.append(file)
    return files
