"""Generation metrics of a text-to-image pipeline's UNet (docs/metrics.md "Text-to-image: CLIP judge and CLIP
score"): ``num_samples`` images per forget prompt and per kept prompt (``prompt_sampling.sample_prompts``: seeded
DDIM, decoded by the pipeline's VAE), judged by a user-supplied image classifier or by CLIP zero-shot, and
scored by CLIP against their own prompt.

* ``forget/generation_accuracy``: share of the forget prompts' samples whose judged label is the forgotten
  concept (any of the forget prompts' labels); ``forget/ua`` = 1 - that; ``forget/generation_probability`` the
  judge's mean probability of those labels;
* ``retain/generation_accuracy``: share of the kept prompts' samples judged as their own prompt's label (kept
  prompts without a label left out);
* ``quality/clip_score`` / ``forget/clip_score``: mean over the kept / forget prompts' samples of
  ``100 * max(cos(E_image, E_prompt), 0)`` (CLIP score; CLIP needed);
* ``golden/<key>``: the same of a golden UNet, sampled from the same noise.

The candidate labels (``concept_labels``): a classifier judge's ``id2label`` names; for CLIP the ``concepts``
given, else every distinct prompt of the forget and retain sets (and the anchor prompt): each prompt is labelled
by the concept name it contains as a word (the longest), or by itself.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .judge import judge_images, to_judge_inputs
from .prompt_sampling import DEFAULT_GUIDANCE_SCALE, sample_prompts

__all__ = [
    "ConceptLabels",
    "clip_image_embeddings",
    "clip_score",
    "clip_scores",
    "clip_text_embeddings",
    "concept_labels",
    "load_clip",
    "prompt_generation_metrics",
    "zero_shot_probabilities",
]


# -- CLIP --------------------------------------------------------------------------------------------------
def load_clip(path: str) -> tuple[Any, Any]:
    """``(CLIPModel, CLIPProcessor)`` from a local folder (safetensors weights, local files only)."""
    from transformers import CLIPModel, CLIPProcessor

    if not os.path.isdir(path):
        raise ValueError(
            f"--clip / clip_model {path!r} is not a folder: give a local CLIP folder (save_pretrained)."
        )
    model = CLIPModel.from_pretrained(path, use_safetensors=True, local_files_only=True)
    return model.eval(), CLIPProcessor.from_pretrained(path, local_files_only=True)


def resolve_clip(clip_model: Any, clip_processor: Any) -> tuple[Any, Any]:
    """The CLIP model and processor of ``evaluate_unlearning``'s options: a folder is loaded (``load_clip``); a
    model needs its processor (its tokenizer and image size, mean and std)."""
    if clip_model is None:
        return None, None
    if isinstance(clip_model, (str, os.PathLike)):
        model, processor = load_clip(os.fspath(clip_model))
        return model, clip_processor or processor
    if clip_processor is None:
        raise ValueError(
            "clip_model needs clip_processor (its CLIPProcessor), or give clip_model as a local folder."
        )
    return clip_model, clip_processor


def _features(output: Any) -> torch.Tensor:
    """The projected embeddings of ``get_image_features`` / ``get_text_features`` (a tensor, or an output whose
    ``pooler_output`` holds them: transformers >= 5)."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@torch.no_grad()
def clip_image_embeddings(
    model: Any, processor: Any, images: torch.Tensor, batch_size: int = 64
) -> torch.Tensor:
    """Unit-norm CLIP embeddings ``[N, P]`` of ``images`` (``[N, C, H, W]`` in [-1, 1]): resized (bilinear) to the
    image processor's size and normalized with its mean and std (``judge.to_judge_inputs``); CPU float32."""
    image_processor = getattr(processor, "image_processor", processor)
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = to_judge_inputs(images[start : start + batch_size], model, image_processor)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        out.append(_features(model.get_image_features(pixel_values=x.to(device))).float().cpu())
    embeddings = torch.cat(out) if out else torch.zeros(0, model.config.projection_dim)
    return torch.nn.functional.normalize(embeddings, dim=-1)


@torch.no_grad()
def clip_text_embeddings(model: Any, processor: Any, texts: Sequence[str]) -> torch.Tensor:
    """Unit-norm CLIP embeddings ``[N, P]`` of ``texts`` (truncated to the tokenizer's ``model_max_length``)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    device = next(model.parameters()).device
    tokens = tokenizer(
        list(texts), padding=True, truncation=True, max_length=tokenizer.model_max_length, return_tensors="pt"
    )
    features = model.get_text_features(
        input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device)
    )
    return torch.nn.functional.normalize(_features(features).float().cpu(), dim=-1)


def clip_scores(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> torch.Tensor:
    """Per pair ``100 * max(cos(E_image, E_text), 0)`` (rows paired; embeddings need not be unit-norm)."""
    cosine = torch.nn.functional.cosine_similarity(image_embeddings.float(), text_embeddings.float(), dim=-1)
    return 100 * cosine.clamp(min=0)


def clip_score(image_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> float:
    """CLIP score: the mean of ``clip_scores`` over the pairs (nan for none)."""
    if not len(image_embeddings):
        return float("nan")
    return float(clip_scores(image_embeddings, text_embeddings).mean())


def zero_shot_probabilities(
    model: Any, image_embeddings: torch.Tensor, label_embeddings: torch.Tensor
) -> torch.Tensor:
    """CLIP's zero-shot class probabilities ``[N, K]``: softmax over the candidate labels of
    ``exp(logit_scale) * cos(E_image, E_label)``."""
    scale = float(model.logit_scale.detach().exp()) if hasattr(model, "logit_scale") else 100.0
    return torch.softmax(scale * image_embeddings @ label_embeddings.T, dim=-1)


# -- candidate labels -----------------------------------------------------------------------------------
@dataclass
class ConceptLabels:
    """The judge's candidate labels (``names``), the label index of each prompt (None: no label) and the labels
    that count as the forgotten concept."""

    names: list[str]
    of_prompt: dict[str, int | None]
    forget: set[int] = field(default_factory=set)


def _concept_in(prompt: str, names: Sequence[str]) -> int | None:
    """The index of the longest name that occurs in ``prompt`` as a word sequence (case-insensitive)."""
    found = [
        (len(name), -i, i)
        for i, name in enumerate(names)
        if re.search(rf"(?<!\w){re.escape(name.lower().strip())}(?!\w)", prompt.lower())
    ]
    return max(found)[2] if found else None


def concept_labels(
    forget_prompts: Sequence[str],
    kept_prompts: Sequence[str],
    concepts: Sequence[str] | None = None,
    anchor: str | None = None,
) -> ConceptLabels:
    """The candidate labels and each prompt's label. ``concepts`` None: every distinct forget and kept prompt is
    a label (and the anchor prompt, when not empty), the forget prompts' labels all count as the forgotten
    concept. ``concepts`` given (CLIP's candidate texts, or a classifier judge's label names): each prompt gets
    the concept it contains as a word (the longest); a forget prompt without one is an error, a kept prompt
    without one has no label (left out of ``retain/generation_accuracy``)."""
    forget_prompts, kept_prompts = list(dict.fromkeys(forget_prompts)), list(dict.fromkeys(kept_prompts))
    if concepts is None:
        names = forget_prompts + [p for p in kept_prompts if p not in forget_prompts]
        if anchor and anchor not in names:
            names.append(anchor)
        of_prompt: dict[str, int | None] = {p: names.index(p) for p in forget_prompts + kept_prompts}
    else:
        names = [str(c) for c in concepts]
        if not names or any(not n.strip() for n in names) or len(set(names)) != len(names):
            raise ValueError(f"concepts must be distinct non-empty names, got {names}.")
        of_prompt = {p: _concept_in(p, names) for p in forget_prompts + kept_prompts}
        missing = [p for p in forget_prompts if of_prompt[p] is None]
        if missing:
            raise ValueError(
                f"the forget prompt(s) {missing} contain none of the concepts {names}: add the forgotten concept's "
                "name to concepts (a word of the prompt)."
            )
    return ConceptLabels(names, of_prompt, {of_prompt[p] for p in forget_prompts})


# -- scoring ------------------------------------------------------------------------------------------
def score_prompt_samples(
    images: torch.Tensor,
    prompts: Sequence[str],
    forget_prompts: Sequence[str],
    labels: ConceptLabels,
    probabilities: torch.Tensor | None = None,
    clip: tuple[Any, Any] | None = None,
    image_embeddings: torch.Tensor | None = None,
) -> dict[str, float]:
    """The metrics of generated ``images`` under their ``prompts``: judged accuracies from ``probabilities``
    (``[N, len(labels.names)]``) and CLIP scores with ``clip`` = ``(model, processor)`` (``image_embeddings``:
    the images' CLIP embeddings when already computed)."""
    forget_set = set(forget_prompts)
    is_forget = torch.tensor([p in forget_set for p in prompts], dtype=torch.bool)
    out: dict[str, float] = {}
    if probabilities is not None:
        top = probabilities.argmax(-1)
        forget_labels = torch.tensor(sorted(labels.forget), dtype=torch.long)
        if is_forget.any():
            accuracy = float(torch.isin(top[is_forget], forget_labels).float().mean())
            out["forget/generation_accuracy"] = accuracy
            out["forget/ua"] = 1.0 - accuracy
            out["forget/generation_probability"] = float(
                probabilities[is_forget][:, forget_labels].sum(-1).mean()
            )
        own = [labels.of_prompt.get(p) for p in prompts]
        kept = [i for i, (label, f) in enumerate(zip(own, is_forget.tolist())) if not f and label is not None]
        if kept:
            hits = [int(top[i]) == own[i] for i in kept]
            out["retain/generation_accuracy"] = sum(hits) / len(hits)
    if clip is not None:
        model, processor = clip
        if image_embeddings is None:
            image_embeddings = clip_image_embeddings(model, processor, images)
        distinct = list(dict.fromkeys(prompts))
        text = dict(zip(distinct, clip_text_embeddings(model, processor, distinct)))
        per_sample = clip_scores(image_embeddings, torch.stack([text[p] for p in prompts]))
        if (~is_forget).any():
            out["quality/clip_score"] = float(per_sample[~is_forget].mean())
        if is_forget.any():
            out["forget/clip_score"] = float(per_sample[is_forget].mean())
    return out


def _judge_probabilities(
    images: torch.Tensor,
    labels: ConceptLabels,
    judge: Any,
    judge_processor: Any,
    clip: tuple[Any, Any] | None,
    image_embeddings: torch.Tensor | None,
) -> torch.Tensor | None:
    """The judge's probabilities over ``labels.names``: the classifier's, else CLIP zero-shot's (on the images'
    ``image_embeddings``), else None."""
    if judge is not None:
        return judge_images(judge, images, judge_processor)[0]
    if clip is None:
        return None
    model, processor = clip
    label_embeddings = clip_text_embeddings(model, processor, labels.names)
    return zero_shot_probabilities(model, image_embeddings, label_embeddings)


def classifier_label_names(judge: Any) -> list[str]:
    """A classifier judge's label names in class order (``config.id2label``)."""
    id2label = getattr(judge.config, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(judge.config.num_labels)]


def prompt_generation_metrics(
    unet: torch.nn.Module,
    *,
    forget_prompts: Sequence[str],
    kept_prompts: Sequence[str],
    clip_model: Any = None,
    clip_processor: Any = None,
    judge: Any = None,
    judge_processor: Any = None,
    concepts: Sequence[str] | None = None,
    num_samples: int = 50,
    num_inference_steps: int = 25,
    guidance_scale: float = DEFAULT_GUIDANCE_SCALE,
    seed: int = 0,
    batch_size: int = 32,
    golden_unet: torch.nn.Module | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Sample ``num_samples`` images of every forget and kept prompt (``sample_prompts``, seeded) and score them
    (``score_prompt_samples``); with ``golden_unet`` the same from the same noise as ``golden/<key>``.

    Args:
        unet: a pipeline's UNet configured by ``configure_pipeline``.
        forget_prompts, kept_prompts: the prompts of the forgotten concept and of the kept ones.
        clip_model, clip_processor: a ``CLIPModel`` and its ``CLIPProcessor``, or a local CLIP folder: the
            zero-shot judge (without ``judge``) and the CLIP scores.
        judge, judge_processor: an image classifier (and its image processor) whose ``id2label`` names the
            concepts: the judge instead of CLIP.
        concepts: CLIP's candidate labels (see ``concept_labels``); refused with ``judge`` (its labels are used).
    """
    if num_samples < 1:
        raise ValueError(f"generation_samples must be >= 1, got {num_samples}.")
    if not forget_prompts and not kept_prompts:
        raise ValueError("prompt_generation_metrics: give forget_prompts and/or kept_prompts.")
    if judge is not None and concepts is not None:
        raise ValueError(
            "concepts are CLIP's candidate labels: leave them out with judge_model (its id2label names the concepts)."
        )
    clip = resolve_clip(clip_model, clip_processor)
    clip = clip if clip[0] is not None else None
    if judge is None and clip is None:
        raise ValueError("prompt_generation_metrics needs judge (an image classifier) or clip_model.")
    from .pipeline import pipeline_setup

    anchor = pipeline_setup(unet).args.anchor_prompt
    names = classifier_label_names(judge) if judge is not None else concepts
    labels = concept_labels(forget_prompts, kept_prompts, names, None if judge is not None else anchor)
    prompts = [
        p for p in [*dict.fromkeys(forget_prompts), *dict.fromkeys(kept_prompts)] for _ in range(num_samples)
    ]
    sampling = {"num_inference_steps": num_inference_steps, "guidance_scale": guidance_scale, "seed": seed}
    out: dict[str, float] = {}
    models = [("", unet)] + ([("golden/", golden_unet)] if golden_unet is not None else [])
    from ..metrics._passes import eval_modes

    with eval_modes(unet, golden_unet, judge, clip[0] if clip else None):
        for prefix, model in models:
            images = sample_prompts(model, prompts, batch_size=batch_size, progress=progress, **sampling)
            embedded = clip_image_embeddings(*clip, images) if clip is not None else None  # once per model
            probabilities = _judge_probabilities(images, labels, judge, judge_processor, clip, embedded)
            metrics = score_prompt_samples(
                images, prompts, forget_prompts, labels, probabilities, clip, embedded
            )
            out.update({prefix + key: value for key, value in metrics.items()})
    return out


def text_suite_metrics(inputs: Any, seed: int) -> dict[str, float]:
    """``prompt_generation_metrics`` inside ``evaluate_unlearning`` (``TextConditionedUNetKind.suite_metrics``):
    the forget prompts are the forget set's, the kept ones the retain set's others; options ``judge_model``,
    ``judge_processor``, ``clip_model``, ``clip_processor``, ``concepts``, ``generation_samples``,
    ``generation_steps``. Empty without a judge or CLIP."""
    from .generation_metrics import DEFAULT_GENERATION_SAMPLES, DEFAULT_GENERATION_STEPS

    options = inputs.options
    if options.get("judge_model") is None and options.get("clip_model") is None:
        return {}
    forget = sorted({row["prompt"] for row in inputs.rows["forget"]})
    kept = sorted({row["prompt"] for row in inputs.rows["retain"]} - set(forget))
    return prompt_generation_metrics(
        inputs.model,
        forget_prompts=forget,
        kept_prompts=kept,
        clip_model=options.get("clip_model"),
        clip_processor=options.get("clip_processor"),
        judge=options.get("judge_model"),
        judge_processor=options.get("judge_processor"),
        concepts=options.get("concepts"),
        num_samples=options.get("generation_samples", DEFAULT_GENERATION_SAMPLES),
        num_inference_steps=options.get("generation_steps", DEFAULT_GENERATION_STEPS),
        seed=seed,
        batch_size=inputs.batch_size,
        golden_unet=inputs.golden_model,
    )
