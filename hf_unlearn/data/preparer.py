"""``DatasetPreparer``: any accepted raw format -> the canonical tokenized rows (see the package docstring)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from .common import CLASSIFICATION, IGNORE_INDEX, to_dataset
from .images import image_column, image_rows

logger = logging.getLogger(__name__)


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
        dataset = to_dataset(data, name)
        columns = set(dataset.column_names)
        if self.task == CLASSIFICATION:
            rows = self._classification_rows(dataset, columns, name)
            if with_wrong_labels:
                self._add_wrong_labels(rows)
        else:
            rows = self._causal_lm_rows(dataset, columns, name)
        self._truncate(rows, name)
        for i, row in enumerate(rows):
            row["index"] = i
        return rows

    # -- classifiers -------------------------------------------------------------------------------
    def _classification_rows(self, dataset, columns: set[str], name: str) -> list[dict]:
        label_key = "labels" if "labels" in columns else "label" if "label" in columns else None
        if label_key is None:
            raise ValueError(
                f"{name} has no label column: a classifier dataset needs 'label' (or 'labels') next to 'text' "
                f"(or 'input_ids'); found columns {sorted(columns)}."
            )
        labels = [self._check_label(v, name) for v in list(dataset[label_key])]
        if self.images:
            return self._image_rows(dataset, columns, name, labels)
        if image_column(columns) is not None and "text" not in columns and "input_ids" not in columns:
            raise ValueError(
                f"{name} holds images ('{image_column(columns)}') but the model is a text classifier; load an "
                "image classifier (AutoModelForImageClassification)."
            )
        if "input_ids" in columns:
            ids = [self._token_ids(x, name, "input_ids") for x in list(dataset["input_ids"])]
        elif "text" in columns:
            texts = self._texts(dataset["text"], name, "text")
            ids = self._tokenizer(name)(texts, add_special_tokens=True, truncation=False)["input_ids"]
        else:
            raise ValueError(
                f"{name} needs a 'text' or 'input_ids' column for a classifier; found columns {sorted(columns)}."
            )
        return [{"input_ids": x, "labels": y} for x, y in zip(ids, labels)]

    def _image_rows(self, dataset, columns: set[str], name: str, labels: list[int]) -> list[dict]:
        column = image_column(columns)
        if column is None:
            raise ValueError(
                f"{name} needs an 'image' (or 'img') or 'pixel_values' column for an image classifier; found "
                f"columns {sorted(columns)}."
            )
        return image_rows(self, dataset, column, labels, name)

    def _check_label(self, value: Any, name: str) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name}: classifier labels must be integers, got {value!r}.")
        if value < 0 or (self.num_labels is not None and value >= self.num_labels):
            raise ValueError(
                f"{name}: label {int(value)} is outside [0, {self.num_labels}) (the model's num_labels)."
            )
        return int(value)

    def _add_wrong_labels(self, rows: list[dict]) -> None:
        if not self.num_labels or self.num_labels < 2:
            raise ValueError("Unlearning a classifier needs a model with num_labels >= 2.")
        rng = np.random.default_rng(self.seed)
        for row in rows:
            shift = int(rng.integers(1, self.num_labels))
            row["wrong_label"] = (row["labels"] + shift) % self.num_labels

    # -- causal LMs: see lm.py (plain text) and chat.py (chat templates) -----------------------------
    def _causal_lm_rows(self, dataset, columns: set[str], name: str) -> list[dict]:
        from .lm import causal_lm_rows

        return causal_lm_rows(self, dataset, columns, name)

    # -- shared ------------------------------------------------------------------------------------
    def _tokenizer(self, name: str):
        if self.tokenizer is None:
            raise ValueError(f"{name} holds raw text: pass processing_class= (a tokenizer) to tokenize it.")
        return self.tokenizer

    def _token_ids(self, value: Any, name: str, column: str, allow_ignore: bool = False) -> list[int]:
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, (int, np.integer)) for v in value):
            raise ValueError(f"{name}: column '{column}' must hold lists of token ids (integers).")
        low = IGNORE_INDEX if allow_ignore else 0
        high = self.vocab_size if self.vocab_size else None
        for v in value:
            if (v < 0 and v != low) or (high is not None and v >= high):
                raise ValueError(
                    f"{name}: token id {int(v)} in '{column}' is outside the vocabulary [0, {high})."
                )
        return [int(v) for v in value]

    @staticmethod
    def _texts(values: list, name: str, column: str) -> list[str]:
        values = list(values)
        if not all(isinstance(v, str) for v in values):
            raise ValueError(f"{name}: column '{column}' must hold strings.")
        return values

    def _truncate(self, rows: list[dict], name: str) -> None:
        n_long = 0
        for i, row in enumerate(rows):
            for prefix in ("", "alt_"):
                if prefix + "input_ids" in row and len(row[prefix + "input_ids"]) > self.max_length:
                    n_long += 1
                    _truncate_row(row, prefix, self.max_length, self.task)
            if "input_ids" in row and not row["input_ids"]:
                raise ValueError(f"{name}: example {i} has no tokens.")
        if n_long:
            logger.warning(
                "%s: truncated %d sequence(s) to max_length=%d tokens.", name, n_long, self.max_length
            )


def _truncate_row(row: dict, prefix: str, max_length: int, task: str) -> None:
    ids = row[prefix + "input_ids"]
    if task == CLASSIFICATION:
        row[prefix + "input_ids"] = ids[:max_length]
        return
    labels = row[prefix + "labels"]
    n_prompt = next((i for i, y in enumerate(labels) if y != IGNORE_INDEX), len(labels))
    # Keep as much of the completion as fits; drop the oldest prompt tokens first.
    keep_completion = min(len(ids) - n_prompt, max_length - 1) if n_prompt else max_length
    keep_prompt = max_length - keep_completion
    start = n_prompt - keep_prompt
    row[prefix + "input_ids"] = ids[start : n_prompt + keep_completion]
    row[prefix + "labels"] = labels[start : n_prompt + keep_completion]
