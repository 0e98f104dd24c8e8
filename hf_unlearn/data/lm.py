"""Causal-LM rows from plain text: ``{"prompt", "completion"}`` (loss on the completion), ``{"text"}`` and
pre-tokenized ``{"input_ids"[, "labels"]}``. Chat formats are routed to ``chat.py``.

The tokenizer's special tokens are applied once, at the start of each sequence: a Llama-style tokenizer that
adds BOS gets exactly one BOS before the prompt (never one before the completion as well), and a GPT-2-style
tokenizer that adds nothing gets nothing. Completions end with EOS.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa

from .columns import arrow_column, check_strings, check_token_ids, list_lengths
from .common import IGNORE_INDEX
from .tokenized import Encoder

_PROBE = "hello"


def causal_lm_encoder(prep: Any, dataset, columns: set[str], name: str) -> Encoder:
    """The ``Encoder`` of a causal-LM dataset (validated here); ``prep`` is the ``DatasetPreparer``."""
    from . import chat

    _refuse_class_labels(dataset, columns, name)
    if "messages" in columns:
        return chat.messages_encoder(prep, columns, name)
    if {"prompt", "completion"} <= columns:
        if chat.is_conversation(dataset[0]["prompt"]):
            return chat.conversational_encoder(prep, columns, name)
        return _prompt_completion_encoder(prep, dataset, columns, name)
    if "text" in columns:
        tokenizer = prep._tokenizer(name)
        check_strings(arrow_column(dataset, "text"), name, "text")
        return Encoder(partial(_texts, tokenizer=tokenizer, start=special_prefix(tokenizer)), ("text",))
    if "input_ids" in columns:
        return _pretokenized_encoder(prep, dataset, columns, name)
    raise ValueError(
        f"{name} has neither 'text' nor 'prompt'/'completion' (nor 'messages' or 'input_ids') columns, which a "
        f"causal LM dataset needs; found columns {sorted(columns)}."
    )


def _refuse_class_labels(dataset, columns: set[str], name: str) -> None:
    """Classifier rows (a ``label`` column, or ``labels`` holding one class per row) given to a causal LM: an
    error, since the LM would train on the text alone and drop the labels without a word."""
    for key in ("label", "labels"):
        if key in columns and not pa.types.is_nested(arrow_column(dataset, key).type):
            raise ValueError(
                f"{name} has a class-label column '{key}' (classifier rows), but the model is a causal LM, which "
                "would ignore it: load a classifier (e.g. AutoModelForSequenceClassification) for "
                f"{{'text', '{key}'}} data, or drop the '{key}' column to train the LM on the text alone."
            )


def _pretokenized_encoder(prep: Any, dataset, columns: set[str], name: str) -> Encoder:
    ids = arrow_column(dataset, "input_ids")
    check_token_ids(ids, name, "input_ids", prep.vocab_size)
    if "labels" not in columns:
        return Encoder(_ids_as_labels, ("input_ids",))
    labels = arrow_column(dataset, "labels")
    check_token_ids(labels, name, "labels", prep.vocab_size, allow_ignore=True)
    if not np.array_equal(list_lengths(ids), list_lengths(labels)):
        raise ValueError(f"{name}: pre-tokenized 'labels' must have the length of 'input_ids'.")
    return Encoder(_ids_and_labels, ("input_ids", "labels"))


def _prompt_completion_encoder(prep: Any, dataset, columns: set[str], name: str) -> Encoder:
    tokenizer = prep._tokenizer(name)
    text_columns = ("prompt", "completion") + (("alternative",) if "alternative" in columns else ())
    for column in text_columns:
        check_strings(arrow_column(dataset, column), name, column)
    encode = partial(_prompts_and_completions, tokenizer=tokenizer, start=special_prefix(tokenizer))
    return Encoder(encode, text_columns, alternatives="alternative" in columns)


def _ids_as_labels(batch: dict[str, list]) -> dict[str, list]:
    return {"input_ids": batch["input_ids"], "labels": [list(x) for x in batch["input_ids"]]}


def _ids_and_labels(batch: dict[str, list]) -> dict[str, list]:
    return {"input_ids": batch["input_ids"], "labels": batch["labels"]}


def _texts(batch: dict[str, list], tokenizer: Any, start: list[int]) -> dict[str, list]:
    ids = [start + x for x in encode(tokenizer, batch["text"], eos=True)]
    return {"input_ids": ids, "labels": [list(x) for x in ids]}


def _prompts_and_completions(batch: dict[str, list], tokenizer: Any, start: list[int]) -> dict[str, list]:
    prompts = [start + p for p in encode(tokenizer, batch["prompt"])]
    out = _columns(prompts, encode(tokenizer, batch["completion"], eos=True))
    if "alternative" in batch:
        alt = _columns(prompts, encode(tokenizer, batch["alternative"], eos=True))
        out.update({f"alt_{k}": v for k, v in alt.items()})
    return out


def _columns(prompts: list[list[int]], completions: list[list[int]]) -> dict[str, list]:
    rows = [prompt_completion(p, c) for p, c in zip(prompts, completions)]
    return {"input_ids": [r["input_ids"] for r in rows], "labels": [r["labels"] for r in rows]}


def encode(tokenizer: Any, texts: list[str], eos: bool = False) -> list[list[int]]:
    """Token ids of each text without special tokens (plus EOS with ``eos``)."""
    ids = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    eos_id = tokenizer.eos_token_id if eos else None  # read once: each read is a vocabulary look-up
    if eos_id is not None:
        ids = [x + [eos_id] for x in ids]
    return ids


def special_prefix(tokenizer: Any) -> list[int]:
    """The special tokens the tokenizer puts *before* a text (e.g. ``[BOS]`` for Llama, ``[]`` for GPT-2),
    read off a probe text encoded with and without special tokens; suffixes (EOS, SEP) are not kept."""
    with_special = tokenizer(_PROBE, add_special_tokens=True)["input_ids"]
    plain = tokenizer(_PROBE, add_special_tokens=False)["input_ids"]
    for k in range(len(with_special) - len(plain) + 1):
        if with_special[k : k + len(plain)] == plain:
            return list(with_special[:k])
    return []


def prompt_completion(prompt: list[int], completion: list[int]) -> dict:
    return {"input_ids": prompt + completion, "labels": [IGNORE_INDEX] * len(prompt) + completion}
