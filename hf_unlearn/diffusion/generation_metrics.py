"""Generation metrics of a class-conditional diffusion model, judged by a classifier (SalUn's class-forgetting
protocol, docs/metrics.md "Diffusion models"):

* ``forget/generation_accuracy``: share of the samples generated under the forgotten class(es) that the judge
  assigns to the class they were generated under; ``forget/ua`` = 1 - that (SalUn's unlearning accuracy);
  ``forget/generation_probability``: the judge's mean probability of that class on them;
* ``retain/generation_accuracy``: the same share on samples of the kept classes;
* ``quality/frechet_distance``: Fréchet distance between the Gaussians fitted to the judge's penultimate
  features of generated and of real kept-class images. It is **not** Inception FID (other features, other
  scale); ``quality/inception_fid`` comes only from a feature extractor the user gives, through ``torchmetrics``;
* ``golden/<key>``: the same keys of a golden model, sampled from the same noise, when one is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .judge import judge_images
from .sampling import class_labels_for, sample_images

__all__ = [
    "frechet_distance",
    "forget_generation_scorer",
    "frechet_distance_from_moments",
    "generation_accuracy",
    "generation_metrics",
    "inception_fid",
    "judged_suite_metrics",
    "sample_classes",
    "score_samples",
]

logger = logging.getLogger(__name__)


def frechet_distance_from_moments(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``, the squared 2-Wasserstein distance
    between two Gaussians (``scipy.linalg.sqrtm``; as pytorch-fid: ``eps`` added to both diagonals when the
    product is singular, the imaginary part of the root dropped)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = (
        np.atleast_2d(np.asarray(sigma1, np.float64)),
        np.atleast_2d(np.asarray(sigma2, np.float64)),
    )
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"Fréchet distance: moments of different sizes ({mu1.shape} vs {mu2.shape}).")
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = np.real(covmean)
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)
    return float(max(value, 0.0))


def _moments(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"Fréchet distance needs at least 2 feature vectors [N, D], got shape {x.shape}.")
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(features_a: torch.Tensor | np.ndarray, features_b: torch.Tensor | np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted (mean, unbiased covariance) to two sets of feature
    vectors ``[N, D]``; 0 for a set and itself."""
    return frechet_distance_from_moments(*_moments(features_a), *_moments(features_b))


def generation_accuracy(probabilities: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of samples whose judge's top class is the class they were generated under (nan for none)."""
    if not len(labels):
        return float("nan")
    return float((probabilities.argmax(-1) == labels).float().mean())


def sample_classes(
    unet: torch.nn.Module, classes: Sequence[int], per_class: int, **sampling: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images, labels)``: ``per_class`` samples of each class (``sample_images`` keyword arguments)."""
    labels = class_labels_for(classes, per_class)
    return sample_images(unet, labels, **sampling), labels


def inception_fid(
    real: torch.Tensor, generated: torch.Tensor, feature_extractor: torch.nn.Module
) -> float | None:
    """Inception FID through ``torchmetrics`` with the user's local ``feature_extractor`` (a module taking
    float RGB images in [0, 1], e.g. a locally loaded FID Inception); None, with a warning, when
    ``torchmetrics`` is not installed (it is not a dependency)."""
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
    except ImportError:
        logger.warning(
            "quality/inception_fid skipped: torchmetrics is not installed (pip install torchmetrics)."
        )
        return None
    fid = FrechetInceptionDistance(feature=feature_extractor, normalize=True)
    for images, is_real in ((real, True), (generated, False)):
        rgb = (
            images.float()
            if images.shape[1] == 3
            else images.float().mean(1, keepdim=True).repeat(1, 3, 1, 1)
        )
        fid.update(((rgb + 1) / 2).clamp(0, 1), real=is_real)
    return float(fid.compute())


def _check_judge_classes(probs: torch.Tensor, labels: torch.Tensor) -> None:
    """Refuse samples of a class the judge has no output for (e.g. a UNet's null class)."""
    if len(labels) and int(labels.max()) >= probs.shape[1]:
        raise ValueError(
            f"The judge scores {probs.shape[1]} classes but samples were generated under class "
            f"{int(labels.max())}: leave it out of the generated classes (a null class is not a class), or pass a "
            "judge over every generated class."
        )


def score_samples(
    judge: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    forget_classes: Sequence[int],
    real_images: torch.Tensor | None = None,
    judge_processor: Any = None,
    inception: torch.nn.Module | None = None,
) -> dict[str, float]:
    """The generation metrics of generated ``images`` (``[N, C, H, W]`` in [-1, 1]) with their conditioning
    ``labels``: accuracies on the forgotten and kept classes; with ``real_images`` of the kept classes, the
    Fréchet distance of the kept-class samples to them on the judge's penultimate features (and Inception
    FID with ``inception``)."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    probs, features = judge_images(judge, images, judge_processor)
    _check_judge_classes(probs, labels)
    is_forget = torch.isin(labels, torch.as_tensor(list(forget_classes), dtype=torch.long))
    out: dict[str, float] = {}
    if is_forget.any():
        accuracy = generation_accuracy(probs[is_forget], labels[is_forget])
        out["forget/generation_accuracy"] = accuracy
        out["forget/ua"] = 1.0 - accuracy
        out["forget/generation_probability"] = float(
            probs[is_forget].gather(1, labels[is_forget, None]).mean()
        )
    if (~is_forget).any():
        out["retain/generation_accuracy"] = generation_accuracy(probs[~is_forget], labels[~is_forget])
        if real_images is not None:
            _, real_features = judge_images(judge, real_images, judge_processor)
            out["quality/frechet_distance"] = frechet_distance(features[~is_forget], real_features)
            if inception is not None:
                fid = inception_fid(real_images, images[~is_forget], inception)
                if fid is not None:
                    out["quality/inception_fid"] = fid
    return out


def generation_metrics(
    unet: torch.nn.Module,
    judge: torch.nn.Module,
    *,
    forget_classes: Sequence[int],
    retain_classes: Sequence[int],
    real_images: torch.Tensor | None = None,
    num_samples_per_class: int = 50,
    noise_scheduler: Any = None,
    num_inference_steps: int = 25,
    seed: int = 0,
    batch_size: int = 128,
    judge_processor: Any = None,
    golden_unet: torch.nn.Module | None = None,
    inception: torch.nn.Module | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Sample ``num_samples_per_class`` images of every forgotten and kept class (DDIM, seeded) and score them
    with the judge (``score_samples``); with ``golden_unet``, the same from the same noise as ``golden/<key>``.

    Args:
        unet: the class-conditional ``UNet2DModel`` to evaluate.
        judge: a ``transformers`` image classifier over the same classes (trained on real images).
        forget_classes, retain_classes: class ids.
        real_images: real images of the kept classes (``[N, C, H, W]`` in [-1, 1]) for the Fréchet distance.
        noise_scheduler: the training scheduler (DDIM is built from its config).
        judge_processor: the judge's image processor (size, mean, std); None: [-1, 1] pixels as they are.
        inception: a local feature extractor for Inception FID through ``torchmetrics`` (optional).
    """
    if not forget_classes and not retain_classes:
        raise ValueError("generation_metrics: give forget_classes and/or retain_classes.")
    if num_samples_per_class < 1:
        raise ValueError(f"num_samples_per_class must be >= 1, got {num_samples_per_class}.")
    classes = [*forget_classes, *retain_classes]
    sampling = {
        "noise_scheduler": noise_scheduler,
        "num_inference_steps": num_inference_steps,
        "seed": seed,
        "batch_size": batch_size,
        "progress": progress,
    }
    out: dict[str, float] = {}
    models = [("", unet)] + ([("golden/", golden_unet)] if golden_unet is not None else [])
    for prefix, model in models:
        images, labels = sample_classes(model, classes, num_samples_per_class, **sampling)
        metrics = score_samples(
            judge, images, labels, forget_classes, real_images, judge_processor, inception
        )
        out.update({prefix + key: value for key, value in metrics.items()})
    return out


def forget_generation_scorer(
    classes: Sequence[int],
    judge: torch.nn.Module | None,
    judge_processor: Any,
    num_samples_per_class: int,
    num_inference_steps: int,
    batch_size: int,
) -> Callable[[torch.nn.Module], float]:
    """RCD's ``target="generation_accuracy"``: a function of a UNet giving the share of its
    ``num_samples_per_class`` samples of each of ``classes`` (DDIM from the UNet's training scheduler, initial
    noise seeded by its ``DiffusionArguments.eval_seed``: the same at every call) that ``judge`` assigns to their
    class."""
    from ..metrics._passes import eval_mode
    from .args import diffusion_setup

    if judge is None:
        raise ValueError(
            "RCD target='generation_accuracy' needs judge_model= (an image classifier over the UNet's classes)."
        )

    def score(unet: torch.nn.Module) -> float:
        setup = diffusion_setup(unet)
        with eval_mode(unet):
            images, labels = sample_classes(
                unet, classes, num_samples_per_class, noise_scheduler=setup.scheduler,
                num_inference_steps=num_inference_steps, seed=setup.args.eval_seed, batch_size=batch_size,
            )  # fmt: skip
        probs, _ = judge_images(judge, images, judge_processor)
        _check_judge_classes(probs, labels)
        return generation_accuracy(probs, labels)

    return score


#: ``evaluate_unlearning``'s defaults for the judged generation metrics (``generation_samples`` per class,
#: ``generation_steps`` DDIM steps)
DEFAULT_GENERATION_SAMPLES = 50
DEFAULT_GENERATION_STEPS = 25


def judged_suite_metrics(inputs: Any, noise_scheduler: Any, seed: int) -> dict[str, float]:
    """``generation_metrics`` inside ``evaluate_unlearning`` (``ModelKind.suite_metrics``; ``inputs`` a
    ``SuiteInputs`` whose ``options`` hold ``judge_model``): the forgotten classes are the forget set's labels,
    the kept ones the retain set's other labels, the real images the retain set's images of the kept classes;
    ``golden_model`` sampled from the same noise. Models in eval mode (their modes restored); empty without a
    judge."""
    from ..metrics._passes import eval_modes

    options = inputs.options
    judge = options.get("judge_model")
    if judge is None:
        return {}
    forgotten = sorted({int(row["labels"]) for row in inputs.rows["forget"]})
    kept = sorted({int(row["labels"]) for row in inputs.rows["retain"]} - set(forgotten))
    real = [row["pixel_values"] for row in inputs.rows["retain"] if int(row["labels"]) in kept]
    with eval_modes(inputs.model, inputs.golden_model, judge):
        return generation_metrics(
            inputs.model,
            judge,
            forget_classes=forgotten,
            retain_classes=kept,
            real_images=torch.stack(real).float() if len(real) > 1 else None,
            num_samples_per_class=options.get("generation_samples", DEFAULT_GENERATION_SAMPLES),
            noise_scheduler=noise_scheduler,
            num_inference_steps=options.get("generation_steps", DEFAULT_GENERATION_STEPS),
            seed=seed,
            batch_size=inputs.batch_size,
            judge_processor=options.get("judge_processor"),
            golden_unet=inputs.golden_model,
        )
