"""The concept images of the tiny text-to-image pipeline (``hf_unlearn.testing.tiny_pipeline``): the seeded
``concept_image_task`` (sizes, prompts the tiny tokenizer keeps whole, concepts told apart by colour), and
``fit_latent_scale`` (the VAE's scaling factor that gives the UNet unit-std latents)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_unlearn.diffusion import configure_pipeline
from hf_unlearn.testing.tiny_pipeline import (
    CONCEPT_PROMPTS,
    MAX_TOKENS,
    concept_image,
    concept_image_task,
    fit_latent_scale,
    tiny_clip_tokenizer,
    tiny_sd_pipeline,
)


def test_concept_image_task_splits_the_forget_concept_from_the_kept_ones_seeded():
    task = concept_image_task(seed=3, n_train=8, n_test=4)
    assert len(task.forget) == 8 and len(task.info["forget_test"]) == 4
    assert len(task.retain) == 4 * 8 and len(task.test) == 4 * 4
    assert {row["prompt"] for row in task.forget + task.info["forget_test"]} == set(CONCEPT_PROMPTS["cat"])
    assert not {row["prompt"] for row in task.retain + task.test} & set(CONCEPT_PROMPTS["cat"])
    assert all(row["image"].shape == (16, 16, 3) and row["image"].dtype == np.uint8 for row in task.retain)
    again = concept_image_task(seed=3, n_train=8, n_test=4)
    assert all(np.array_equal(a["image"], b["image"]) for a, b in zip(task.forget, again.forget))
    # held-out images are fresh draws, not copies of the training ones
    assert not any(
        np.array_equal(a["image"], b["image"]) for a in task.forget for b in task.info["forget_test"]
    )


def test_every_concept_prompt_fits_the_tiny_tokenizer_whole():
    tokenizer = tiny_clip_tokenizer()
    for prompts in CONCEPT_PROMPTS.values():
        for prompt in prompts:
            ids = tokenizer(prompt, truncation=True).input_ids
            assert (
                len(ids) <= MAX_TOKENS and tokenizer.decode(ids, skip_special_tokens=True).strip() == prompt
            )


def features(image: np.ndarray) -> np.ndarray:
    """Mean colour and mean absolute horizontal and vertical steps (stripes' direction) of one image."""
    pixels = image.astype(float)
    steps = [np.abs(np.diff(pixels, axis=axis)).mean() for axis in (1, 0)]
    return np.concatenate([pixels.reshape(-1, 3).mean(0), steps])


def test_concepts_are_told_apart_by_colour_and_stripes():
    # nearest centroid over 20 seeded draws per concept classifies 20 fresh draws each without a miss
    fit, held_out = np.random.default_rng(0), np.random.default_rng(1)
    centres = {c: np.mean([features(concept_image(c, fit)) for _ in range(20)], 0) for c in CONCEPT_PROMPTS}
    for concept in CONCEPT_PROMPTS:
        for _ in range(20):
            x = features(concept_image(concept, held_out))
            assert min(centres, key=lambda c: np.linalg.norm(x - centres[c])) == concept


def test_unknown_concepts_are_refused():
    with pytest.raises(ValueError, match="unknown concept 'fish'"):
        concept_image_task(forget="fish")
    with pytest.raises(ValueError, match="unknown concept"):
        concept_image("fish", np.random.default_rng(0))


def test_fit_latent_scale_gives_the_unet_unit_std_latents():
    pipe = tiny_sd_pipeline(seed=0)
    images = [row["image"] for row in concept_image_task(seed=0, n_train=4, n_test=1).retain]
    factor = fit_latent_scale(pipe, images)
    assert factor == pipe.vae.config.scaling_factor and factor > 1  # the untrained VAE's latents are small
    setup = configure_pipeline(pipe)
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert float(setup.encode_images(pixels).std()) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="at least one image"):
        fit_latent_scale(pipe, [])
