"""Seeded, batched text-to-image sampling from a pipeline's UNet (configured by ``configure_pipeline``): DDIM
(``eta=0``) from the training scheduler's config, classifier-free guidance against the empty prompt, latents
decoded by the pipeline's frozen VAE, as ``StableDiffusionPipeline.__call__`` does.

Image ``i`` of a call starts from latent noise drawn from ``(seed, i)`` alone (one CPU generator, in order) and
DDIM with ``eta=0`` adds none afterwards: the same seed gives the same images whatever the batch size, and two
UNets (the unlearned and the golden one) sampled with one seed start from the same noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .pipeline import pipeline_setup
from .sampling import ddim_scheduler, save_sample_grid

__all__ = ["DEFAULT_GUIDANCE_SCALE", "sample_prompts", "save_prompt_grids"]

#: ``StableDiffusionPipeline``'s default classifier-free guidance scale
DEFAULT_GUIDANCE_SCALE = 7.5


@torch.no_grad()
def sample_prompts(
    unet: torch.nn.Module,
    prompts: Sequence[str],
    *,
    num_inference_steps: int = 25,
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
    desc: str = "sampling",
) -> torch.Tensor:
    """One image per entry of ``prompts`` -> ``[N, 3, H, W]`` in [-1, 1], on the CPU.

    Args:
        unet: a pipeline's ``UNet2DConditionModel`` configured by ``configure_pipeline`` (or a PEFT / DDP
            wrapper of one); left in the mode it was in.
        prompts: the prompt of each image.
        num_inference_steps: DDIM steps.
        guidance_scale: classifier-free guidance ``eps_u + s (eps_c - eps_u)`` (``eps_u`` under the empty
            prompt); 1 samples the conditional prediction alone.
        seed: seeds the initial latents; image ``i`` depends on ``(seed, i)`` only.
        batch_size: images per UNet call (each call runs the conditional and unconditional branch).
        progress: a tqdm bar over the denoising steps of all batches.
    """
    from tqdm.auto import tqdm

    if num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    setup = pipeline_setup(unet)
    prompts = list(prompts)
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(len(prompts), *setup.latent_shape, generator=generator)
    if not prompts:
        return torch.zeros(0, 3, *setup.image_size)
    embeddings = setup.encode_prompts(prompts)
    scheduler = ddim_scheduler(setup.scheduler)
    scheduler.set_timesteps(num_inference_steps)
    parameter = next(unet.parameters())
    device, dtype = parameter.device, parameter.dtype
    guided = guidance_scale != 1.0
    out = []
    n_batches = math.ceil(len(prompts) / batch_size)
    bar = tqdm(total=n_batches * len(scheduler.timesteps), desc=desc, disable=not progress, leave=False)
    for start in range(0, len(prompts), batch_size):
        x = latents[start : start + batch_size].to(device, dtype) * scheduler.init_noise_sigma
        cond = embeddings[start : start + batch_size].to(device, dtype)
        states = torch.cat([setup.empty.to(cond).expand_as(cond), cond]) if guided else cond
        for t in scheduler.timesteps:
            model_input = torch.cat([x, x]) if guided else x
            model_input = scheduler.scale_model_input(model_input, t)
            eps = unet(model_input, t.to(device), encoder_hidden_states=states).sample
            if guided:
                uncond, conditional = eps.chunk(2)
                eps = uncond + guidance_scale * (conditional - uncond)
            x = scheduler.step(eps, t, x, eta=0.0).prev_sample
            bar.update(1)
        out.append(_decode(setup, x))
    bar.close()
    return torch.cat(out)


def _decode(setup, latents: torch.Tensor) -> torch.Tensor:
    """The VAE's images of ``latents`` (divided by ``scaling_factor`` first), ``[N, 3, H, W]`` in [-1, 1] on the
    CPU in float32."""
    vae = setup.vae
    parameter = next(vae.parameters())
    scale = float(getattr(vae.config, "scaling_factor", 1.0))
    images = vae.decode(latents.to(parameter.device, parameter.dtype) / scale).sample
    return images.float().clamp(-1, 1).cpu()


def save_prompt_grids(
    models: dict[str, torch.nn.Module],
    output_dir: str,
    prompts: Sequence[str],
    *,
    seed: int = 0,
    num_inference_steps: int = 25,
    per_prompt: int = 4,
) -> list[str]:
    """``samples_<name>.png`` in ``output_dir`` for each named pipeline UNet of ``models``: ``per_prompt``
    samples of each of ``prompts``, one row per prompt in order (``sample_prompts``: the same latent noise for
    every model; the prompts in the PNG's title). Returns the file names, in the order of ``models``; none
    without prompts."""
    import os

    prompts = list(prompts)
    if not prompts:
        return []
    repeated = [prompt for prompt in prompts for _ in range(per_prompt)]
    rows = [row for row in range(len(prompts)) for _ in range(per_prompt)]
    files = []
    for name, unet in models.items():
        images = sample_prompts(unet, repeated, num_inference_steps=num_inference_steps, seed=seed)
        file = f"samples_{name}.png"
        save_sample_grid(images, rows, os.path.join(output_dir, file), title=f"{name}: {' | '.join(prompts)}")
        files.append(file)
    return files
