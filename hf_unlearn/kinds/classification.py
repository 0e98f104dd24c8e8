"""Sequence and image classifiers: one class label per example, cross-entropy per example."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from .. import losses
from ..data.common import unwrap_model
from ._transformers import TransformersKind

CLASSIFICATION = "classification"


class ClassifierKind(TransformersKind):
    """What sequence and image classifiers share: ``num_labels`` classes, a fixed wrong label per forget
    example, ``log C`` as the loss scale."""

    task = CLASSIFICATION
    has_classes = True
    # SalUn's layout (UA, RA, TA, MIA-efficacy, average gap to golden), then the loss attack and RCD
    headline_keys = (
        "forget/ua",
        "retain/accuracy",
        "test/accuracy",
        "mia/efficacy",
        "gap/average",
        "mia/auc",
        "rcd/ratio_to_golden",
        "rcd/ratio_to_heldout",
    )
    short_keys = ("forget/accuracy", "retain/accuracy", "rcd/ratio_to_golden")
    golden_on_every_split = True
    default_rcd_target = "accuracy"
    attack_metrics = ("forget/accuracy", "forget/loss")
    primary_forget_metrics = ("forget/accuracy",)

    def num_classes(self, model: torch.nn.Module) -> int:
        return int(unwrap_model(model).config.num_labels)

    def loss_scale(self, model: torch.nn.Module) -> float:
        return math.log(self.num_classes(model))

    def wrong_target_loss(self, part: Any, seed: int, step: int) -> torch.Tensor:
        """Cross-entropy on the forget row's fixed, seeded wrong label."""
        return losses.per_example_nll(part.logits, part.wrong_label)

    def summarize(self, prefix: str, stats: Any) -> dict[str, float]:
        """``{prefix}/loss`` and ``{prefix}/accuracy``."""
        return {**super().summarize(prefix, stats), f"{prefix}/accuracy": float(np.mean(stats.correct))}

    def suite_metrics(self, inputs: Any) -> dict[str, float]:
        """SalUn's layout: ``forget/ua``, ``mia/efficacy`` (and golden's), ``gap/average``
        (``metrics.classifier``), next to the accuracies already measured."""
        from ..metrics.classifier import average_gap, efficacy_metrics

        metrics = inputs.metrics
        out = {"forget/ua": 1.0 - metrics["forget/accuracy"]}
        out.update(efficacy_metrics("", {name: s.loss for name, s in inputs.stats.items()}))
        if inputs.golden_stats:
            out["golden/forget/ua"] = 1.0 - metrics["golden/forget/accuracy"]
            out.update(efficacy_metrics("golden/", {name: s.loss for name, s in inputs.golden_stats.items()}))
            out.update(average_gap({**metrics, **out}))
        return out


class TextClassifierKind(ClassifierKind):
    name = "text_classifier"
    suffixes = ("ForSequenceClassification",)
    input_keys = ("input_ids", "attention_mask")
    pipeline_tag = "text-classification"
    auto_class = "AutoModelForSequenceClassification"

    def lora_defaults(self) -> dict[str, Any]:
        return {"task_type": "SEQ_CLS"}


class ImageClassifierKind(ClassifierKind):
    name = "image_classifier"
    suffixes = ("ForImageClassification",)
    images = True
    input_keys = ("pixel_values",)
    pipeline_tag = "image-classification"
    auto_class = "AutoModelForImageClassification"

    def lora_defaults(self) -> dict[str, Any]:
        # PEFT's image-classification recipe: no task type, the new head trained in full
        return {"modules_to_save": ["classifier"]}
