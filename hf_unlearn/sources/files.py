"""Finding and reading one split of a downloaded benchmark: JSON-lines / JSON files or parquet shards, with a
check of the keys every row must carry. Everything is read in memory (no ``datasets`` cache is written)."""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Split:
    """Where one split may live in a download folder and what it must hold.

    Attributes:
        label: the split's public name, for messages (``"forget10"``, ``"raw/forget"``).
        patterns: glob patterns relative to the folder, tried in order; the first that matches is read.
        columns: the keys every row must have.
    """

    label: str
    patterns: tuple[str, ...]
    columns: tuple[str, ...]


class SplitReader:
    """Reads the splits of one download folder and records, for ``BenchmarkData.info``, the files read per
    role and the optional splits that were not found."""

    def __init__(self, root: str, source: str):
        self.root, self.source = root, source
        self.files: dict[str, list[str]] = {}
        self.missing: list[str] = []

    def required(self, role: str, split: Split):
        dataset, self.files[role] = read_split(self.root, split, self.source)
        return dataset

    def optional(self, role: str, split: Split):
        dataset, files = read_optional(self.root, split, self.source)
        if dataset is None:
            self.missing.append(split.label)
        else:
            self.files[role] = files
        return dataset


def read_split(root: str, split: Split, source: str) -> tuple[Any, list[str]]:
    """``(dataset, files read)`` of a split that must be there; ``ValueError`` says what was expected where."""
    found = read_optional(root, split, source)
    if found[0] is None:
        raise ValueError(
            f"{source}: split {split.label!r} not found in {root!r}: expected a file matching one of "
            f"{list(split.patterns)}."
        )
    return found


def read_optional(root: str, split: Split, source: str) -> tuple[Any, list[str]]:
    """``(dataset, files read)``, or ``(None, [])`` when no pattern of the split matches."""
    for pattern in split.patterns:
        files = sorted(glob.glob(os.path.join(root, pattern)))
        if files:
            dataset = _read_files(files, f"{source} {split.label}")
            _check_columns(dataset, split, files, source)
            return dataset, [os.path.relpath(f, root) for f in files]
    return None, []


def _read_files(files: list[str], where: str):
    import datasets

    if all(f.endswith(".parquet") for f in files):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.concat_tables([pq.read_table(f) for f in files])
        dataset = datasets.Dataset(datasets.table.InMemoryTable(table))
    else:
        dataset = datasets.Dataset.from_list([row for f in files for row in _json_rows(f)])
    if len(dataset) == 0:
        raise ValueError(f"{where}: {files[0]!r} holds no rows.")
    return dataset


def _json_rows(path: str) -> list[dict]:
    """Rows of a JSON-lines file (one object per line) or of a JSON file holding a list of objects."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    try:
        if text.lstrip().startswith("["):
            rows = json.loads(text)
        else:
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as err:
        raise ValueError(f"{path!r} is not JSON lines or a JSON list of objects: {err}") from None
    if not all(isinstance(row, dict) for row in rows):
        raise ValueError(f"{path!r}: every row must be a JSON object.")
    return rows


def _check_columns(dataset, split: Split, files: list[str], source: str) -> None:
    missing = [c for c in split.columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{source}: {files[0]!r} (split {split.label!r}) lacks the key(s) {missing}: expected "
            f"{list(split.columns)}, found {sorted(dataset.column_names)}."
        )
