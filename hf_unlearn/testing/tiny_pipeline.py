"""A tiny text-to-image ``StableDiffusionPipeline`` built from config, for tests and examples of
``hf_unlearn.diffusion``: a ``UNet2DConditionModel`` on 8x8x4 latents, an ``AutoencoderKL`` for 16x16 RGB
images, a 2-layer ``CLIPTextModel`` and a ``CLIPTokenizer`` over letters and digits (its ``vocab.json`` and
``merges.txt`` written here), and a ``DDPMScheduler``. Needs ``diffusers`` (``pip install "hf-unlearn[diffusion]"``).
"""

from __future__ import annotations

import json
import os
import string
import tempfile
from typing import Any

HIDDEN_SIZE = 32
MAX_TOKENS = 12


def tiny_clip_tokenizer(folder: str | None = None) -> Any:
    """A ``CLIPTokenizer`` whose vocabulary is the lowercase letters and digits (alone and word-final) and no
    merges, ``model_max_length`` ``MAX_TOKENS``; its ``vocab.json`` and ``merges.txt`` are written to ``folder``
    (None: a temporary folder, removed once the tokenizer has read them)."""
    from transformers import CLIPTokenizer

    if folder is None:
        with tempfile.TemporaryDirectory(prefix="tiny-clip-tokenizer-") as temporary:
            return tiny_clip_tokenizer(temporary)
    os.makedirs(folder, exist_ok=True)
    symbols = string.ascii_lowercase + string.digits
    tokens = ["<|startoftext|>", "<|endoftext|>", *symbols, *(f"{s}</w>" for s in symbols)]
    vocab, merges = os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt")
    with open(vocab, "w") as f:
        json.dump({token: i for i, token in enumerate(tokens)}, f)
    with open(merges, "w") as f:
        f.write("#version: 0.2\n")
    return CLIPTokenizer(vocab, merges, model_max_length=MAX_TOKENS)


def tiny_sd_pipeline(seed: int = 0) -> Any:
    """A tiny ``StableDiffusionPipeline`` (no safety checker) built from config with weights seeded by ``seed``:
    UNet ``cross_attention_dim`` = the text encoder's hidden size, 4 latent channels, 8x8 latents of 16x16
    images."""
    import torch
    from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=HIDDEN_SIZE,
    )
    vae = AutoencoderKL(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=8,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=2,
        max_position_embeddings=MAX_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    text_encoder = CLIPTextModel(text_config)
    scheduler = DDPMScheduler(num_train_timesteps=100, steps_offset=1, clip_sample=False)
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_tiny_sd_pipeline(folder: str, seed: int = 0) -> str:
    """``tiny_sd_pipeline(seed)`` saved to ``folder`` (safetensors); returns ``folder``, ready for
    ``StableDiffusionPipeline.from_pretrained(folder)``."""
    tiny_sd_pipeline(seed).save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_pipeline_unet(processor: Any = None, seed: int = 0) -> Any:
    """The UNet of ``tiny_sd_pipeline(seed)``, configured (``configure_pipeline``) so that
    ``UnlearningTrainer(unet, ...)`` prepares prompt rows through its pipeline's frozen VAE and text encoder.
    ``processor`` is ignored (the signature of the other tiny builders)."""
    from ..diffusion import configure_pipeline

    pipe = tiny_sd_pipeline(seed)
    configure_pipeline(pipe)
    return pipe.unet


def concept_task(seed: int = 0, n_forget: int = 6, n_retain: int = 12) -> Any:
    """A concept-erasure task for ``tiny_sd_pipeline``: forget rows ``{"prompt"}`` (two phrasings of "a cat", no
    images), retain rows ``{"prompt", "image"}`` (four other prompts, each with seeded 16x16 RGB uint8 images
    of a coloured square on a plain ground), test rows like the retain ones."""
    import numpy as np

    from .fixtures import TextTask

    rng = np.random.default_rng(seed)
    kept = ["a dog", "a red car", "a tree", "a bird"]

    def image(k: int) -> np.ndarray:
        out = np.full((16, 16, 3), int(rng.integers(0, 256)), dtype=np.uint8)
        top, left = rng.integers(0, 8, size=2)
        out[top : top + 8, left : left + 8] = (
            np.array([60, 120, 180, 240])[k] + rng.integers(0, 15, 3)
        ) % 256
        return out

    def rows(n: int) -> list[dict]:
        return [{"prompt": kept[i % 4], "image": image(i % 4)} for i in range(n)]

    forget = [{"prompt": ("a cat", "a photo of a cat")[i % 2]} for i in range(n_forget)]
    return TextTask(retain=rows(n_retain), forget=forget, test=rows(n_retain // 2), info={"seed": seed})


#: prompt families of ``concept_image_task``'s concepts (each prompt at most ``MAX_TOKENS - 2`` letters and
#: digits, so that the tiny tokenizer keeps it whole)
CONCEPT_PROMPTS = {
    "cat": ("a cat", "the cat", "cat pic", "kitty"),
    "dog": ("a dog", "the dog", "dog pic", "puppy"),
    "car": ("a red car", "the car", "car pic"),
    "tree": ("a tree", "the tree", "tree pic"),
    "bird": ("a bird", "the bird", "bird pic"),
}


def concept_image(concept: str, rng: Any) -> Any:
    """One seeded 16x16 RGB uint8 image of ``concept`` (a key of ``CONCEPT_PROMPTS``): cat, orange and black
    vertical stripes; dog, brown and white horizontal stripes; car, a red block on grey; tree, a green disc on
    sky blue; bird, a yellow and blue checkerboard; each with a random phase or position, colour jitter and
    pixel noise."""
    import numpy as np

    if concept not in CONCEPT_PROMPTS:
        raise ValueError(f"unknown concept {concept!r}: pick one of {sorted(CONCEPT_PROMPTS)}.")
    y, x = np.mgrid[0:16, 0:16]
    dy, dx = rng.integers(0, 8, size=2)
    if concept == "cat":
        mask = ((x + dx) // 2) % 2 == 0
        colours = ([230, 130, 30], [20, 20, 20])
    elif concept == "dog":
        mask = ((y + dy) // 3) % 2 == 0
        colours = ([120, 70, 30], [235, 235, 225])
    elif concept == "car":
        mask = (y >= 4 + dy) & (y < 10 + dy) & (x >= dx) & (x < dx + 9)
        colours = ([220, 25, 25], [128, 128, 128])
    elif concept == "tree":
        mask = (y - 4 - dy) ** 2 + (x - 4 - dx) ** 2 <= 16
        colours = ([30, 150, 40], [140, 200, 245])
    else:
        mask = ((x + dx) // 4 + (y + dy) // 4) % 2 == 0
        colours = ([240, 220, 40], [40, 60, 200])
    fore, back = (np.array(c) + rng.integers(-20, 21, 3) for c in colours)
    out = np.where(mask[..., None], fore, back) + rng.integers(-10, 11, (16, 16, 3))
    return np.clip(out, 0, 255).astype(np.uint8)


def concept_rows(concept: str, n: int, rng: Any) -> list[dict]:
    """``n`` rows ``{"prompt", "image"}`` of ``concept``: its prompts in turn, a fresh ``concept_image`` each."""
    prompts = CONCEPT_PROMPTS[concept]
    return [{"prompt": prompts[i % len(prompts)], "image": concept_image(concept, rng)} for i in range(n)]


def concept_image_task(seed: int = 0, forget: str = "cat", n_train: int = 16, n_test: int = 8) -> Any:
    """A concept-erasure task with images of every concept (``CONCEPT_PROMPTS``), seeded: forget rows
    ``n_train`` of ``forget``, retain rows ``n_train`` of each other concept, test rows ``n_test`` held-out
    images of each other concept; ``info["forget_test"]``: ``n_test`` held-out images of ``forget``."""
    import numpy as np

    from .fixtures import TextTask

    rng = np.random.default_rng(seed)
    kept = [c for c in CONCEPT_PROMPTS if c != forget]
    if len(kept) == len(CONCEPT_PROMPTS):
        raise ValueError(f"unknown concept {forget!r}: pick one of {sorted(CONCEPT_PROMPTS)}.")
    train = {c: concept_rows(c, n_train, rng) for c in CONCEPT_PROMPTS}
    test = {c: concept_rows(c, n_test, rng) for c in CONCEPT_PROMPTS}
    return TextTask(
        retain=[row for c in kept for row in train[c]],
        forget=train[forget],
        test=[row for c in kept for row in test[c]],
        info={"seed": seed, "forget": forget, "kept": kept, "forget_test": test[forget]},
    )


def fit_latent_scale(pipe: Any, images: list) -> float:
    """Set ``pipe.vae``'s ``scaling_factor`` to ``1 / std`` of the unscaled latent means of ``images`` (uint8
    ``[H, W, 3]`` arrays of the VAE's input size), as Stable Diffusion's 0.18215 was chosen, so that the latents
    the UNet denoises have unit standard deviation (the untrained tiny VAE's are near 0.05 at 0.18215); returns
    the factor."""
    import numpy as np
    import torch

    if not images:
        raise ValueError("fit_latent_scale needs at least one image.")
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        latents = pipe.vae.encode(pixels).latent_dist.mean
    factor = float(1 / latents.std())
    pipe.vae.register_to_config(scaling_factor=factor)
    return factor
