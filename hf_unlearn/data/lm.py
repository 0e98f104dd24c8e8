"""Causal-LM rows from plain text: ``{"prompt", "completion"}`` (loss on the completion), ``{"text"}`` and
pre-tokenized ``{"input_ids"[, "labels"]}``. Chat formats are routed to ``chat.py``.

The tokenizer's special tokens are applied once, at the start of each sequence: a Llama-style tokenizer that
adds BOS gets exactly one BOS before the prompt (never one before the completion as well), and a GPT-2-style
tokenizer that adds nothing gets nothing. Completions end with EOS.
"""

from __future__ import annotations

from typing import Any

from .common import IGNORE_INDEX

_PROBE = "hello"


def causal_lm_rows(prep: Any, dataset, columns: set[str], name: str) -> list[dict]:
    """Rows of a causal-LM dataset; ``prep`` is the ``DatasetPreparer`` (tokenizer, validation helpers)."""
    from . import chat

    if "messages" in columns:
        return chat.messages_rows(prep, dataset, columns, name)
    if {"prompt", "completion"} <= columns:
        if chat.is_conversation(dataset[0]["prompt"]):
            return chat.conversational_rows(prep, dataset, columns, name)
        return _prompt_completion_rows(prep, dataset, columns, name)
    if "text" in columns:
        tokenizer = prep._tokenizer(name)
        ids = encode(tokenizer, prep._texts(dataset["text"], name, "text"), eos=True)
        start = special_prefix(tokenizer)
        return [{"input_ids": start + x, "labels": start + x} for x in ids]
    if "input_ids" in columns:
        ids = [prep._token_ids(x, name, "input_ids") for x in list(dataset["input_ids"])]
        if "labels" not in columns:
            return [{"input_ids": x, "labels": list(x)} for x in ids]
        labels = [prep._token_ids(y, name, "labels", allow_ignore=True) for y in list(dataset["labels"])]
        if any(len(x) != len(y) for x, y in zip(ids, labels)):
            raise ValueError(f"{name}: pre-tokenized 'labels' must have the length of 'input_ids'.")
        return [{"input_ids": x, "labels": y} for x, y in zip(ids, labels)]
    raise ValueError(
        f"{name} has neither 'text' nor 'prompt'/'completion' (nor 'messages' or 'input_ids') columns, which a "
        f"causal LM dataset needs; found columns {sorted(columns)}."
    )


def _prompt_completion_rows(prep: Any, dataset, columns: set[str], name: str) -> list[dict]:
    tokenizer = prep._tokenizer(name)
    start = special_prefix(tokenizer)
    prompts = [start + p for p in encode(tokenizer, prep._texts(dataset["prompt"], name, "prompt"))]
    completions = encode(tokenizer, prep._texts(dataset["completion"], name, "completion"), eos=True)
    rows = [prompt_completion(p, c) for p, c in zip(prompts, completions)]
    if "alternative" in columns:
        alternatives = encode(tokenizer, prep._texts(dataset["alternative"], name, "alternative"), eos=True)
        for row, p, a in zip(rows, prompts, alternatives):
            row.update({f"alt_{k}": v for k, v in prompt_completion(p, a).items()})
    return rows


def encode(tokenizer: Any, texts: list[str], eos: bool = False) -> list[list[int]]:
    """Token ids of each text without special tokens (plus EOS with ``eos``)."""
    ids = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    if eos and tokenizer.eos_token_id is not None:
        ids = [x + [tokenizer.eos_token_id] for x in ids]
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
