"""Causal-LM rows from chat data, rendered with the tokenizer's chat template (``apply_chat_template``).

* ``{"messages": [{"role", "content"}, ...]}``: the loss is on every assistant turn, nothing else.
* TRL's conversational prompt/completion, ``{"prompt": [messages], "completion": [messages]}``: the loss is
  on the assistant turns of the completion (the prompt may hold few-shot assistant turns; they carry none).

``alternative`` (forget sets): a string replaces the content of the last assistant turn; a list of messages
replaces the assistant turns at the end of the conversation. The template decides the special tokens (BOS,
end-of-turn); nothing is added on top, so each appears exactly as often as the template writes it.

How the loss positions are found: the conversation up to each assistant turn is rendered with
``add_generation_prompt=True`` and up to the end of that turn; both must be prefixes of the full rendering
(true of every template that renders turns in order), and the tokens whose text starts between the two
lengths are that turn's. This needs a fast tokenizer (character offsets).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from .common import IGNORE_INDEX
from .tokenized import Encoder


def is_conversation(value: Any) -> bool:
    """A list of ``{"role", "content"}`` dicts (TRL's conversational format)."""
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) and "role" in m for m in value)


def messages_encoder(prep: Any, columns: set[str], name: str) -> Encoder:
    """The ``Encoder`` of ``{"messages"[, "alternative"]}`` data (messages are checked batch by batch)."""
    tokenizer = _chat_tokenizer(prep, name)
    read = ("messages", "alternative") if "alternative" in columns else ("messages",)
    encode = partial(_encode_messages, tokenizer=tokenizer, name=name)
    return Encoder(encode, read, alternatives="alternative" in columns)


def conversational_encoder(prep: Any, columns: set[str], name: str) -> Encoder:
    """The ``Encoder`` of TRL's conversational ``{"prompt", "completion"[, "alternative"]}`` data."""
    tokenizer = _chat_tokenizer(prep, name)
    alternatives = "alternative" in columns
    read = ("prompt", "completion", "alternative") if alternatives else ("prompt", "completion")
    encode = partial(_encode_prompts_and_completions, tokenizer=tokenizer, name=name)
    return Encoder(encode, read, alternatives=alternatives)


def _encode_messages(batch: dict[str, list], tokenizer: Any, name: str) -> dict[str, list]:
    conversations = [_check_messages(m, name, "messages") for m in batch["messages"]]
    rows = [encode_conversation(tokenizer, conv, 0, name) for conv in conversations]
    if "alternative" in batch:
        for row, conv, alt in zip(rows, conversations, batch["alternative"]):
            alt_conv = _with_alternative(conv, alt, name)
            row.update({f"alt_{k}": v for k, v in encode_conversation(tokenizer, alt_conv, 0, name).items()})
    return _to_columns(rows)


def _encode_prompts_and_completions(batch: dict[str, list], tokenizer: Any, name: str) -> dict[str, list]:
    prompts = [_check_messages(p, name, "prompt") for p in batch["prompt"]]
    completions = [_check_messages(c, name, "completion") for c in batch["completion"]]
    rows = [encode_conversation(tokenizer, p + c, len(p), name) for p, c in zip(prompts, completions)]
    if "alternative" in batch:
        for row, prompt, alt in zip(rows, prompts, batch["alternative"]):
            alt_messages = [{"role": "assistant", "content": alt}] if isinstance(alt, str) else alt
            alt_messages = _check_messages(alt_messages, name, "alternative")
            encoded = encode_conversation(tokenizer, prompt + alt_messages, len(prompt), name)
            row.update({f"alt_{k}": v for k, v in encoded.items()})
    return _to_columns(rows)


def _to_columns(rows: list[dict]) -> dict[str, list]:
    return {key: [row[key] for row in rows] for key in rows[0]}


def encode_conversation(tokenizer: Any, messages: list[dict], first: int, name: str) -> dict:
    """``input_ids`` of the rendered conversation and ``labels`` on the assistant turns from ``first`` on."""
    full = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if i < first or message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], generation_prompt=True) if i else ""
        through = render(tokenizer, messages[: i + 1])
        if not (full.startswith(through) and through.startswith(before)):
            raise ValueError(
                f"{name}: the tokenizer's chat template does not render the conversation turn by turn (the text "
                f"up to assistant turn {i} is not a prefix of the whole), so the assistant tokens cannot be "
                "located; pre-tokenize the data ({'input_ids', 'labels'}) instead."
            )
        spans.append((len(before), len(through)))
    if not spans:
        raise ValueError(f"{name}: a conversation has no assistant turn to put the loss on.")
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    labels = [
        token if any(start <= begin < end for start, end in spans) else IGNORE_INDEX
        for token, (begin, _) in zip(ids, encoded["offset_mapping"])
    ]
    if all(label == IGNORE_INDEX for label in labels):
        raise ValueError(f"{name}: the assistant turns of a conversation produced no tokens.")
    return {"input_ids": ids, "labels": labels}


def render(tokenizer: Any, messages: list[dict], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _chat_tokenizer(prep: Any, name: str):
    tokenizer = prep._tokenizer(name)
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            f"{name} holds chat messages, but the tokenizer has no chat template; set tokenizer.chat_template "
            "(or pass the tokenizer of a chat/instruct model)."
        )
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{name}: chat data needs a fast tokenizer (character offsets locate the turns).")
    return tokenizer


def _check_messages(value: Any, name: str, column: str) -> list[dict]:
    if not is_conversation(value) or not all(isinstance(m.get("content"), str) for m in value):
        raise ValueError(
            f"{name}: column '{column}' must hold lists of {{'role', 'content'}} messages with string contents."
        )
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _with_alternative(messages: list[dict], alternative: Any, name: str) -> list[dict]:
    if isinstance(alternative, str):
        last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=None)
        if last is None:
            raise ValueError(f"{name}: an 'alternative' needs an assistant turn to replace.")
        return messages[:last] + [{**messages[last], "content": alternative}] + messages[last + 1 :]
    alternative = _check_messages(alternative, name, "alternative")
    cut = len(messages)
    while cut and messages[cut - 1]["role"] == "assistant":
        cut -= 1
    return messages[:cut] + alternative
