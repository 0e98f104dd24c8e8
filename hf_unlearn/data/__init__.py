"""Dataset formats, tokenization and collation for unlearning.

Every dataset is normalised into one canonical, tokenized layout before training or evaluation, held in Arrow
(a ``datasets.Dataset``, read through the read-only ``TokenizedRows``: ``rows[i]`` is a fresh dict of Python
lists and ints; image datasets are lists of rows):

* ``input_ids``: token ids (unpadded lists; the collator builds the attention mask).
* ``labels``: an ``int`` class for classifiers; for causal LMs a list aligned with ``input_ids`` where
  prompt tokens are ``-100`` (the loss is taken on completion tokens only).
* ``index``: the example's position in its dataset (used for cached reference values).
* ``wrong_label`` (classifier forget sets only): a fixed, seeded random label different from the true one.
* ``alt_input_ids``/``alt_labels`` (causal LM forget sets with an ``alternative``
  column): the prompt followed by the alternative completion.

Accepted raw formats: classifiers ``{"text", "label"}`` (or ``labels``) or pre-tokenized ``{"input_ids",
"labels"}``; image classifiers ``{"image", "label"}`` (or ``img``; through the image processor) or
``{"pixel_values", "label"}`` (``images.py``, whose rows hold ``pixel_values`` instead of token ids); causal LMs ``{"prompt", "completion"}``, ``{"text"}`` or pre-tokenized ``{"input_ids"}`` (``lm.py``),
and chat data, ``{"messages"}`` or conversational ``{"prompt", "completion"}`` (``chat.py``).

Modules: ``common`` (task, limits, reading datasets), ``preparer`` (``DatasetPreparer``, classifiers), ``lm``
(plain-text causal LM), ``chat`` (chat templates), ``images`` (image classifiers), ``columns`` (vectorized
column checks), ``tokenized`` (the batched ``datasets.map``, truncation), ``rows`` (``TokenizedRows``),
``alternatives`` (default refusals), ``collate`` (padding, paired batches).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from .alternatives import DEFAULT_REFUSALS, with_default_alternatives
from .collate import PairedDataset, RowsDataset, UnlearningCollator
from .common import (
    CAUSAL_LM,
    CLASSIFICATION,
    IGNORE_INDEX,
    infer_task,
    is_image_model,
    kind_of_task,
    max_length_of,
    model_inputs,
    model_kind,
    num_classes_of,
    num_labels_of,
    row_length,
    to_dataset,
    unwrap_model,
)
from .preparer import DatasetPreparer
from .rows import TokenizedRows

logger = logging.getLogger(__name__)

__all__ = [
    "CAUSAL_LM",
    "CLASSIFICATION",
    "DEFAULT_REFUSALS",
    "IGNORE_INDEX",
    "DatasetPreparer",
    "PairedDataset",
    "RowsDataset",
    "TokenizedRows",
    "UnlearningCollator",
    "build_preparer",
    "infer_task",
    "is_image_model",
    "kind_of_task",
    "max_length_of",
    "model_inputs",
    "model_kind",
    "num_classes_of",
    "num_labels_of",
    "pad_token_id_for",
    "row_length",
    "to_dataset",
    "unwrap_model",
    "with_default_alternatives",
]


def pad_token_id_for(model: torch.nn.Module, tokenizer: Any, task: str) -> int:
    """The pad id to use, giving a causal LM tokenizer without one its EOS token (with a warning)."""
    lm = kind_of_task(task).token_level
    if tokenizer is not None and getattr(tokenizer, "pad_token_id", 0) is None and lm:
        if tokenizer.eos_token is None:
            raise ValueError(
                "The tokenizer has neither a pad token nor an EOS token; set tokenizer.pad_token."
            )
        logger.warning(
            "The tokenizer has no pad token; using its EOS token %r for padding.", tokenizer.eos_token
        )
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "pad_token_id", None) is not None:  # an image processor has none
        return int(tokenizer.pad_token_id)
    pad = getattr(unwrap_model(model).config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def build_preparer(
    model: torch.nn.Module, tokenizer: Any = None, max_length: int | None = None, seed: int = 0
):
    """A preparer and collator configured for ``model``, by its kind (``ModelKind.build_preparer``; for the
    built-in kinds a ``DatasetPreparer`` and an ``UnlearningCollator``)."""
    return model_kind(model).build_preparer(model, tokenizer, max_length, seed)
