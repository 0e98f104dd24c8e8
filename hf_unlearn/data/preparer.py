"""``DatasetPreparer``: any accepted raw format -> the canonical tokenized rows (see the package docstring).

Validation runs on whole Arrow columns (``columns.py``), tokenization in one batched ``datasets.map``
(``tokenized.py``); the result is a read-only ``TokenizedRows`` over the Arrow table (``rows.py``). Image
datasets stay a list of rows whose ``pixel_values`` are views into one tensor (``images.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from .columns import arrow_column, check_labels, check_strings, check_token_ids
from .common import kind_of_task, to_dataset
from .images import image_column, image_rows
from .tokenized import Encoder, prepare_rows


@dataclass
class DatasetPreparer:
    """Turns raw datasets into the canonical tokenized layout for one model.

    Args:
        task: ``"classification"`` or ``"causal_lm"``.
        tokenizer: the ``processing_class``; needed unless datasets are pre-tokenized.
        max_length: sequences longer than this are truncated (with a warning).
        num_labels: number of classes (classifiers), used to validate labels and draw wrong labels.
        seed: seed for the wrong labels of classifier forget sets.
        vocab_size: the model's vocabulary size, to reject out-of-range pre-tokenized ids.
        images: the model is an image classifier (datasets hold images or pixel values, see ``images.py``).
        num_channels: image classifiers: the channels the model expects (``config.num_channels``).
        image_size: image classifiers: the ``(H, W)`` a patch-based model requires (None: any size).
    """

    task: str
    tokenizer: Any = None
    max_length: int = 512
    num_labels: int | None = None
    seed: int = 0
    vocab_size: int | None = None
    images: bool = False
    num_channels: int | None = None
    image_size: tuple[int, int] | None = None

    def __call__(self, data: Any, name: str, with_wrong_labels: bool = False):
        """The canonical rows of ``data``: a ``TokenizedRows`` (a list of dicts for image datasets); each
        row a fresh dict on access. ``with_wrong_labels`` (classifiers): add a seeded ``wrong_label``."""
        dataset = to_dataset(data, name)
        columns = set(dataset.column_names)
        if not kind_of_task(self.task).has_classes:
            from .lm import causal_lm_encoder

            encoder = causal_lm_encoder(self, dataset, columns, name)
            return prepare_rows(dataset, encoder, name, self.task, self.max_length)
        label_key = self._label_key(columns, name)
        labels = check_labels(arrow_column(dataset, label_key), name, self.num_labels)
        if self.images:
            return self._image_rows(dataset, columns, name, labels, with_wrong_labels)
        encoder = self._classifier_encoder(dataset, columns, name, label_key)
        wrong = self._wrong_labels(labels) if with_wrong_labels else None
        return prepare_rows(dataset, encoder, name, self.task, self.max_length, wrong)

    # -- classifiers -------------------------------------------------------------------------------
    @staticmethod
    def _label_key(columns: set[str], name: str) -> str:
        label_key = "labels" if "labels" in columns else "label" if "label" in columns else None
        if label_key is None:
            raise ValueError(
                f"{name} has no label column: a classifier dataset needs 'label' (or 'labels') next to 'text' "
                f"(or 'input_ids'); found columns {sorted(columns)}."
            )
        return label_key

    def _classifier_encoder(self, dataset, columns: set[str], name: str, label_key: str) -> Encoder:
        if image_column(columns) is not None and "text" not in columns and "input_ids" not in columns:
            raise ValueError(
                f"{name} holds images ('{image_column(columns)}') but the model is a text classifier; load an "
                "image classifier (AutoModelForImageClassification)."
            )
        if "input_ids" in columns:
            check_token_ids(arrow_column(dataset, "input_ids"), name, "input_ids", self.vocab_size)
            return Encoder(partial(_classifier_ids, label_key=label_key), ("input_ids", label_key))
        if "text" in columns:
            check_strings(arrow_column(dataset, "text"), name, "text")
            encode = partial(_classifier_texts, tokenizer=self._tokenizer(name), label_key=label_key)
            return Encoder(encode, ("text", label_key))
        raise ValueError(
            f"{name} needs a 'text' or 'input_ids' column for a classifier; found columns {sorted(columns)}."
        )

    def _image_rows(
        self, dataset, columns: set[str], name: str, labels: np.ndarray, with_wrong_labels: bool
    ) -> list[dict]:
        column = image_column(columns)
        if column is None:
            raise ValueError(
                f"{name} needs an 'image' (or 'img') or 'pixel_values' column for an image classifier; found "
                f"columns {sorted(columns)}."
            )
        rows = image_rows(self, dataset, column, labels.tolist(), name)
        wrong = self._wrong_labels(labels).tolist() if with_wrong_labels else None
        for i, row in enumerate(rows):
            if wrong is not None:
                row["wrong_label"] = wrong[i]
            row["index"] = i
        return rows

    def _wrong_labels(self, labels: np.ndarray) -> np.ndarray:
        """A seeded random label other than the true one for each row (one draw per row, in row order)."""
        if not self.num_labels or self.num_labels < 2:
            raise ValueError("Unlearning a classifier needs a model with num_labels >= 2.")
        shifts = np.random.default_rng(self.seed).integers(1, self.num_labels, size=len(labels))
        return (labels + shifts) % self.num_labels

    # -- shared ------------------------------------------------------------------------------------
    def _tokenizer(self, name: str):
        if self.tokenizer is None:
            raise ValueError(f"{name} holds raw text: pass processing_class= (a tokenizer) to tokenize it.")
        return self.tokenizer


def _classifier_ids(batch: dict[str, list], label_key: str) -> dict[str, list]:
    return {"input_ids": batch["input_ids"], "labels": batch[label_key]}


def _classifier_texts(batch: dict[str, list], tokenizer: Any, label_key: str) -> dict[str, list]:
    ids = tokenizer(batch["text"], add_special_tokens=True, truncation=False)["input_ids"]
    return {"input_ids": ids, "labels": batch[label_key]}
