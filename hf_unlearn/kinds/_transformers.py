"""What the built-in kinds (``transformers`` classifiers and causal LMs) share: the class-name test, the
canonical rows and collator of ``hf_unlearn.data``, and cross-entropy per-example losses."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from .. import losses
from ..data.common import max_length_of, num_labels_of, unwrap_model
from .base import ModelKind


class TransformersKind(ModelKind):
    """A ``transformers`` model recognised by how its class name ends (``suffixes``)."""

    suffixes: ClassVar[tuple[str, ...]] = ()
    capabilities = frozenset({"logits", "wrong_targets"})

    def recognises(self, model: torch.nn.Module) -> bool:
        return type(model).__name__.endswith(self.suffixes)

    def recognises_architecture(self, architecture: str) -> bool:
        return architecture.endswith(self.suffixes)

    def recognises_folder(self, path: str) -> bool:
        """Whether ``config.json``'s ``architectures`` in folder ``path`` name a class of this kind."""
        import json
        import os

        try:
            with open(os.path.join(path, "config.json")) as f:
                architectures = json.load(f).get("architectures") or []
        except (OSError, ValueError):
            return False
        return any(self.recognises_architecture(a) for a in architectures)

    def load(self, path: str, trust_remote_code: bool = False, **kwargs: Any) -> torch.nn.Module:
        """``auto_class.from_pretrained`` of the local folder, safetensors only."""
        import transformers

        auto = getattr(transformers, self.auto_class)
        return auto.from_pretrained(
            path, local_files_only=True, use_safetensors=True, trust_remote_code=trust_remote_code, **kwargs
        )

    def build_preparer(
        self, model: torch.nn.Module, tokenizer: Any = None, max_length: int | None = None, seed: int = 0
    ):
        from ..data import DatasetPreparer, UnlearningCollator, pad_token_id_for
        from ..data.images import fixed_image_size

        limit = max_length_of(model, tokenizer)
        config = unwrap_model(model).config
        preparer = DatasetPreparer(
            task=self.task,
            tokenizer=tokenizer,
            max_length=min(max_length, limit) if max_length else limit,
            num_labels=num_labels_of(model) if self.has_classes else None,
            seed=seed,
            vocab_size=getattr(config, "vocab_size", None),
            images=self.images,
            num_channels=getattr(config, "num_channels", None) if self.images else None,
            image_size=fixed_image_size(config) if self.images else None,
        )
        collator = UnlearningCollator(
            pad_token_id=pad_token_id_for(model, tokenizer, self.task), task=self.task
        )
        return preparer, collator

    def row_length(self, row: dict) -> int:
        return len(row["input_ids"]) if "input_ids" in row else 1

    def row_key(self, row: dict) -> tuple[Any, Any]:
        labels = row["labels"]
        if "pixel_values" in row:
            return row["pixel_values"].numpy().tobytes(), labels
        return tuple(row["input_ids"]), tuple(labels) if isinstance(labels, list) else labels

    def loss_of(self, predictions: losses.Logits, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy (classifiers) or the token-mean NLL of the completion (causal LMs)."""
        return losses.per_example_nll(predictions, labels)

    def correct(self, predictions: losses.Logits, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The argmax class (classifiers) or next token (causal LMs) against the label, per scored position."""
        logits, targets, mask = losses.positions(predictions, labels)
        return ((logits.argmax(-1) == targets) & mask).sum(-1), mask.sum(-1)

    def per_example_logprob(self, predictions: losses.Logits, labels: torch.Tensor) -> torch.Tensor:
        return losses.per_example_logprob(predictions, labels)

    def training_loss(self, model: torch.nn.Module, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
        """The model's own loss (``transformers`` computes it when given ``labels``: a causal LM's is the mean
        over every completion token of the batch, not over examples)."""
        return model(**inputs, labels=labels).loss

    def batch_stats(self, predictions: losses.Logits, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss, correct predictions and scored positions from the logits (and, for token-level kinds, the
        causal-LM membership and memorization scores: ``metrics._stats.token_stats``)."""
        from ..metrics._stats import token_stats

        return token_stats(predictions, labels, self.token_level)
