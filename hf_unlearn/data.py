"""Dataset formats, tokenization and collation for unlearning.

Every dataset is normalised into one canonical, tokenized layout before training or evaluation:

* ``input_ids``, ``attention_mask``: token ids and mask (unpadded lists).
* ``labels``: an ``int`` class for classifiers; for causal LMs a list aligned with ``input_ids`` where
  prompt tokens are ``-100`` (the loss is taken on completion tokens only).
* ``index``: the example's position in its dataset (used for cached reference values).
* ``wrong_label`` (classifier forget sets only): a fixed, seeded random label different from the true one.
* ``alt_input_ids``/``alt_attention_mask``/``alt_labels`` (causal LM forget sets with an ``alternative``
  column): the prompt followed by the alternative completion.

Accepted raw formats: classifiers ``{"text", "label"}`` (or ``labels``) or pre-tokenized ``{"input_ids",
"labels"}``; causal LMs ``{"prompt", "completion"}``, ``{"text"}`` or pre-tokenized ``{"input_ids"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

CLASSIFICATION = "classification"
CAUSAL_LM = "causal_lm"
IGNORE_INDEX = -100

_CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")
_CLASSIFIER_SUFFIXES = ("ForSequenceClassification",)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """Return the underlying ``transformers`` model of a PEFT / DDP / compiled wrapper."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "get_base_model"):
            model = model.get_base_model()
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def infer_task(model: torch.nn.Module) -> str:
    """``"classification"`` for sequence classifiers, ``"causal_lm"`` for causal language models."""
    name = type(unwrap_model(model)).__name__
    if name.endswith(_CAUSAL_SUFFIXES):
        return CAUSAL_LM
    if name.endswith(_CLASSIFIER_SUFFIXES):
        return CLASSIFICATION
    raise ValueError(
        f"Unsupported model class {name}: hf_unlearn works with *ForSequenceClassification and *ForCausalLM "
        "(or *LMHeadModel) models."
    )


def num_labels_of(model: torch.nn.Module) -> int | None:
    return getattr(unwrap_model(model).config, "num_labels", None)


def num_classes_of(model: torch.nn.Module) -> int:
    """C of the model's predictions: the number of labels (classifiers) or the vocabulary size (LMs)."""
    config = unwrap_model(model).config
    if infer_task(model) == CLASSIFICATION:
        return int(config.num_labels)
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    return int(text_config.vocab_size)


def max_length_of(model: torch.nn.Module, tokenizer: Any = None) -> int:
    """The longest sequence the model accepts (position embeddings), capped by the tokenizer's limit."""
    config = unwrap_model(model).config
    limits = [getattr(config, key, None) for key in ("max_position_embeddings", "n_positions")]
    if tokenizer is not None and 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        limits.append(tokenizer.model_max_length)
    limits = [int(x) for x in limits if isinstance(x, int) and x > 0]
    return min(limits) if limits else 512


def to_dataset(data: Any, name: str):
    """Accept a ``datasets.Dataset``, a list of dicts or a dict of lists; reject empty input clearly."""
    import datasets

    if isinstance(data, datasets.DatasetDict):
        raise ValueError(f"{name} is a DatasetDict; pass one split, e.g. {name}=ds['train'].")
    if isinstance(data, datasets.Dataset):
        dataset = data
    elif isinstance(data, dict):
        dataset = _arrow(datasets.Dataset.from_dict, data, name)
    elif isinstance(data, Sequence) and not isinstance(data, str):
        if len(data) == 0:
            raise ValueError(f"{name} is empty: it needs at least one example.")
        if not all(isinstance(row, dict) for row in data):
            raise ValueError(f"{name} must be a datasets.Dataset, a list of dicts or a dict of lists.")
        dataset = _arrow(datasets.Dataset.from_list, list(data), name)
    else:
        raise ValueError(
            f"{name} must be a datasets.Dataset, a list of dicts or a dict of lists, got {type(data).__name__}."
        )
    if len(dataset) == 0:
        raise ValueError(f"{name} is empty: it needs at least one example.")
    return dataset


def _arrow(build, data: Any, name: str):
    try:
        return build(data)
    except (ValueError, TypeError, OverflowError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"{name} could not be read as a table of columns: {err}") from None


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
    """

    task: str
    tokenizer: Any = None
    max_length: int = 512
    num_labels: int | None = None
    seed: int = 0
    vocab_size: int | None = None

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

    # -- causal LMs --------------------------------------------------------------------------------
    def _causal_lm_rows(self, dataset, columns: set[str], name: str) -> list[dict]:
        if {"prompt", "completion"} <= columns:
            prompts = self._encode(self._texts(dataset["prompt"], name, "prompt"), name)
            completions = self._encode(self._texts(dataset["completion"], name, "completion"), name, eos=True)
            rows = [_prompt_completion(p, c) for p, c in zip(prompts, completions)]
            if "alternative" in columns:
                alternatives = self._encode(
                    self._texts(dataset["alternative"], name, "alternative"), name, eos=True
                )
                for row, p, a in zip(rows, prompts, alternatives):
                    alt = _prompt_completion(p, a)
                    row.update({f"alt_{k}": v for k, v in alt.items()})
            return rows
        if "text" in columns:
            ids = self._encode(self._texts(dataset["text"], name, "text"), name, eos=True)
            return [{"input_ids": x, "labels": list(x)} for x in ids]
        if "input_ids" in columns:
            ids = [self._token_ids(x, name, "input_ids") for x in list(dataset["input_ids"])]
            if "labels" not in columns:
                return [{"input_ids": x, "labels": list(x)} for x in ids]
            labels = [self._token_ids(y, name, "labels", allow_ignore=True) for y in list(dataset["labels"])]
            if any(len(x) != len(y) for x, y in zip(ids, labels)):
                raise ValueError(f"{name}: pre-tokenized 'labels' must have the length of 'input_ids'.")
            return [{"input_ids": x, "labels": y} for x, y in zip(ids, labels)]
        raise ValueError(
            f"{name} has neither 'text' nor 'prompt'/'completion' (nor 'input_ids') columns, which a causal LM "
            f"dataset needs; found columns {sorted(columns)}."
        )

    def _encode(self, texts: list[str], name: str, eos: bool = False) -> list[list[int]]:
        tokenizer = self._tokenizer(name)
        ids = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
        if eos and tokenizer.eos_token_id is not None:
            ids = [x + [tokenizer.eos_token_id] for x in ids]
        return ids

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
            if not row["input_ids"]:
                raise ValueError(f"{name}: example {i} has no tokens.")
        if n_long:
            logger.warning(
                "%s: truncated %d sequence(s) to max_length=%d tokens.", name, n_long, self.max_length
            )


def _prompt_completion(prompt: list[int], completion: list[int]) -> dict:
    return {"input_ids": prompt + completion, "labels": [IGNORE_INDEX] * len(prompt) + completion}


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


class PairedDataset(torch.utils.data.Dataset):
    """Pairs every retain example with a forget example, cycling the smaller set.

    Item ``i`` is ``(retain[i % n_r], forget[i % n_f])`` and the length is ``max(n_r, n_f)``: under the
    Trainer's seeded shuffling each step sees a fresh random retain batch and a random forget batch, every
    forget example appears ``ceil(n_r / n_f)`` times per epoch, and the order is reproduced exactly on resume.
    """

    def __init__(self, retain: list[dict], forget: list[dict]):
        self.retain, self.forget = retain, forget

    def __len__(self) -> int:
        return max(len(self.retain), len(self.forget))

    def __getitem__(self, i: int) -> dict:
        return {"retain": self.retain[i % len(self.retain)], "forget": self.forget[i % len(self.forget)]}


class RowsDataset(torch.utils.data.Dataset):
    """A plain list of canonical rows (eval sets, single-set passes)."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


@dataclass
class UnlearningCollator:
    """Pads canonical rows. Paired items become ``{"retain": batch, "forget": batch[, "forget_alt": batch]}``.

    All parts of one paired batch are padded to the same length so that the trainer can run them through the
    model in a single forward pass.
    """

    pad_token_id: int = 0
    task: str = CLASSIFICATION

    def __call__(self, items: list[dict]) -> dict:
        if "retain" not in items[0]:
            return self._collate(items, "", _max_len(items, ""))
        forget = [item["forget"] for item in items]
        retain = [item["retain"] for item in items]
        has_alt = "alt_input_ids" in forget[0]
        length = max(_max_len(retain, ""), _max_len(forget, ""), _max_len(forget, "alt_") if has_alt else 0)
        batch = {"retain": self._collate(retain, "", length), "forget": self._collate(forget, "", length)}
        if has_alt:
            batch["forget_alt"] = self._collate(forget, "alt_", length)
            batch["forget_alt"]["index"] = batch["forget"]["index"]
        return batch

    def _collate(self, rows: list[dict], prefix: str, length: int) -> dict:
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            seq = row[prefix + "input_ids"]
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[i, : len(seq)] = 1
        batch = {"input_ids": ids, "attention_mask": mask}
        if self.task == CLASSIFICATION:
            batch["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.long)
        else:
            labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
            for i, row in enumerate(rows):
                labels[i, : len(row[prefix + "labels"])] = torch.tensor(
                    row[prefix + "labels"], dtype=torch.long
                )
            batch["labels"] = labels
        for key in ("index", "wrong_label"):
            if key in rows[0]:
                batch[key] = torch.tensor([row[key] for row in rows], dtype=torch.long)
        return batch


def _max_len(rows: list[dict], prefix: str) -> int:
    return max(len(row[prefix + "input_ids"]) for row in rows)


def pad_token_id_for(model: torch.nn.Module, tokenizer: Any, task: str) -> int:
    """The pad id to use, giving a causal LM tokenizer without one its EOS token (with a warning)."""
    if tokenizer is not None and tokenizer.pad_token_id is None and task == CAUSAL_LM:
        if tokenizer.eos_token is None:
            raise ValueError(
                "The tokenizer has neither a pad token nor an EOS token; set tokenizer.pad_token."
            )
        logger.warning(
            "The tokenizer has no pad token; using its EOS token %r for padding.", tokenizer.eos_token
        )
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer is not None and tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    pad = getattr(unwrap_model(model).config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def build_preparer(
    model: torch.nn.Module, tokenizer: Any = None, max_length: int | None = None, seed: int = 0
):
    """A ``DatasetPreparer`` and ``UnlearningCollator`` configured for ``model``."""
    task = infer_task(model)
    limit = max_length_of(model, tokenizer)
    preparer = DatasetPreparer(
        task=task,
        tokenizer=tokenizer,
        max_length=min(max_length, limit) if max_length else limit,
        num_labels=num_labels_of(model) if task == CLASSIFICATION else None,
        seed=seed,
        vocab_size=getattr(unwrap_model(model).config, "vocab_size", None),
    )
    collator = UnlearningCollator(pad_token_id=pad_token_id_for(model, tokenizer, task), task=task)
    return preparer, collator
