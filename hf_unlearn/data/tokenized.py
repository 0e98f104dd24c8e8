"""Raw columns -> canonical token columns with one batched ``datasets.map`` (see ``DatasetPreparer``).

The map writes Arrow a batch at a time: next to the dataset's own cache files when it has them (a dataset
from ``load_dataset``/``load_from_disk``; a second preparation of the same data with the same tokenizer and
settings then reads the cached, memory-mapped result), in memory otherwise. Python lists only ever exist for
one batch. Truncation, the "no tokens" check, ``index`` and ``wrong_label`` happen inside the same map.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow.compute as pc

from .common import IGNORE_INDEX, kind_of_task
from .rows import TokenizedRows

logger = logging.getLogger(__name__)

#: Datasets smaller than this are prepared without a progress bar.
PROGRESS_MIN_ROWS = 10_000
#: A bookkeeping column (sequences truncated per row), dropped after the map.
_TRUNCATED = "__hf_unlearn_truncated"


@dataclass(frozen=True)
class Encoder:
    """How one raw format becomes token columns, a batch at a time.

    ``encode(batch)`` maps a dict of raw column lists to ``{"input_ids", "labels"}`` lists (plus
    ``"alt_input_ids"``/``"alt_labels"`` when ``alternatives``); ``columns`` are the raw columns it reads.
    """

    encode: Callable[[dict[str, list]], dict[str, list]]
    columns: tuple[str, ...]
    alternatives: bool = False


def prepare_rows(
    dataset: Any,
    encoder: Encoder,
    name: str,
    task: str,
    max_length: int,
    wrong_labels: np.ndarray | None = None,
) -> TokenizedRows:
    """Canonical rows of ``dataset`` (validated already) through ``encoder``, truncated to ``max_length``."""
    function = partial(
        _encode_batch,
        encoder=encoder,
        task=task,
        max_length=max_length,
        name=name,
        wrong_labels=wrong_labels,
    )
    cached = _writable_cache(dataset)
    with _progress_bar(len(dataset)):
        mapped = dataset.select_columns(list(encoder.columns)).map(
            function,
            batched=True,
            with_indices=True,
            remove_columns=list(encoder.columns),
            features=_features(task, encoder.alternatives, wrong_labels is not None),
            desc=f"Preparing {name}",
            new_fingerprint=None if cached else _uncached_fingerprint(),
            keep_in_memory=not cached,
        )
    n_long = int(pc.sum(mapped.with_format("arrow")[_TRUNCATED]).as_py() or 0)
    if n_long:
        logger.warning("%s: truncated %d sequence(s) to max_length=%d tokens.", name, n_long, max_length)
    return TokenizedRows(mapped.remove_columns(_TRUNCATED))


def _encode_batch(
    batch: dict[str, list],
    indices: list[int],
    *,
    encoder: Encoder,
    task: str,
    max_length: int,
    name: str,
    wrong_labels: np.ndarray | None,
) -> dict[str, list]:
    out = encoder.encode(batch)
    truncated = _truncate_columns(out, task, max_length)
    for i, ids in zip(indices, out["input_ids"]):
        if not ids:
            raise ValueError(f"{name}: example {i} has no tokens.")
    if wrong_labels is not None:
        out["wrong_label"] = wrong_labels[indices].tolist()
    out["index"] = list(indices)
    out[_TRUNCATED] = truncated
    return out


def _truncate_columns(out: dict[str, list], task: str, max_length: int) -> list[int]:
    """Truncate the sequences of a batch in place; the number truncated in each row."""
    counts = [0] * len(out["input_ids"])
    classes = kind_of_task(task).has_classes  # one label per row: only the tokens are cut
    for prefix in ("", "alt_"):
        ids_column = out.get(prefix + "input_ids")
        for k, ids in enumerate(ids_column or []):
            if len(ids) <= max_length:
                continue
            counts[k] += 1
            if classes:
                ids_column[k] = ids[:max_length]
            else:
                labels_column = out[prefix + "labels"]
                ids_column[k], labels_column[k] = truncate_lm(ids, labels_column[k], max_length)
    return counts


def truncate_lm(ids: list[int], labels: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """A causal-LM sequence cut to ``max_length``: as much of the completion as fits, the oldest prompt
    tokens dropped first."""
    n_prompt = next((i for i, y in enumerate(labels) if y != IGNORE_INDEX), len(labels))
    keep_completion = min(len(ids) - n_prompt, max_length - 1) if n_prompt else max_length
    keep_prompt = max_length - keep_completion
    start = n_prompt - keep_prompt
    return ids[start : n_prompt + keep_completion], labels[start : n_prompt + keep_completion]


def _features(task: str, alternatives: bool, wrong_labels: bool):
    """The Arrow schema of canonical rows (token ids as int32: half the bytes of Python's default int64)."""
    from datasets import Features, List, Value

    tokens = List(Value("int32"))
    features = {"input_ids": tokens, "labels": Value("int64") if kind_of_task(task).has_classes else tokens}
    if alternatives:
        features.update(alt_input_ids=tokens, alt_labels=tokens)
    if wrong_labels:
        features["wrong_label"] = Value("int64")
    features.update({"index": Value("int64"), _TRUNCATED: Value("int8")})
    return Features(features)


def _writable_cache(dataset: Any) -> bool:
    """Whether the map can write its result next to ``dataset``'s cache files (a read-only copy, e.g. a shared
    or mounted one, is prepared in memory instead of failing inside ``datasets``)."""
    folders = {os.path.dirname(f["filename"]) for f in dataset.cache_files}
    return bool(folders) and all(os.access(folder, os.W_OK) for folder in folders)


def _uncached_fingerprint() -> str:
    """The fingerprint of a map that nothing will look up (an in-memory dataset has no cache to find): saves
    hashing the function, i.e. pickling the tokenizer, megabytes for a large vocabulary, on every call."""
    from datasets.fingerprint import generate_random_fingerprint

    return generate_random_fingerprint()


@contextmanager
def _progress_bar(n_rows: int) -> Iterator[None]:
    """``datasets``' progress bar only for datasets of ``PROGRESS_MIN_ROWS`` rows or more."""
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    hide = n_rows < PROGRESS_MIN_ROWS and not are_progress_bars_disabled()
    if hide:
        disable_progress_bars()
    try:
        yield
    finally:
        if hide:
            enable_progress_bars()
