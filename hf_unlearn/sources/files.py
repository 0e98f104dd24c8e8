"""Finding and reading one split of a downloaded benchmark: JSON-lines / JSON files or parquet shards, with a
check of the keys every row must carry. Everything is read in memory (no ``datasets`` cache is written).

When a split is not found, the error names the patterns tried and, where the folder shows why, a hint: a
Hugging Face cache folder (``datasets--org--name``, whose files live under ``snapshots/<revision>/``) or a file
of an older layout of the benchmark (``Split.older``)."""

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
        older: glob patterns of the split's files in older layouts of the benchmark: not read, but named in
            the error when the split is not found.
    """

    label: str
    patterns: tuple[str, ...]
    columns: tuple[str, ...]
    older: tuple[str, ...] = ()


class SplitReader:
    """Reads the splits of one download folder and records, for ``BenchmarkData.info``, the files read per
    role and the optional splits that were not found (``{label: {"role", "expected": patterns}}``)."""

    def __init__(self, root: str, source: str):
        self.root, self.source = root, source
        self.files: dict[str, list[str]] = {}
        self.missing: dict[str, dict[str, Any]] = {}

    def required(self, role: str, split: Split):
        dataset, self.files[role] = read_split(self.root, split, self.source)
        return dataset

    def optional(self, role: str, split: Split):
        dataset, files = read_optional(self.root, split, self.source)
        if dataset is None:
            self.missing[split.label] = {"role": role, "expected": list(split.patterns)}
        else:
            self.files[role] = files
        return dataset


def read_split(root: str, split: Split, source: str) -> tuple[Any, list[str]]:
    """``(dataset, files read)`` of a split that must be there; ``ValueError`` says what was expected where."""
    found = read_optional(root, split, source)
    if found[0] is None:
        raise ValueError(not_found_message(root, split, source))
    return found


def not_found_message(root: str, split: Split, source: str) -> str:
    """Split ``split`` is not in ``root``: the patterns tried, and a hint when the folder shows why."""
    return (
        f"{source}: split {split.label!r} not found in {root!r}: expected a file matching one of "
        f"{list(split.patterns)}.{layout_hint(root, split)}"
    )


def layout_hint(root: str, split: Split) -> str:
    """`` <hint>`` when ``root`` is a Hugging Face cache folder or holds ``split``'s file of an older layout,
    else ``""``."""
    snapshots = sorted(glob.glob(os.path.join(glob.escape(root), "snapshots", "*")))
    if os.path.basename(os.path.normpath(root)).startswith("datasets--") or snapshots:
        where = f" (here: {[os.path.relpath(s, root) for s in snapshots]})" if snapshots else ""
        return (
            " This is a Hugging Face cache folder: its files live under snapshots/<revision>/; point at that "
            f"folder{where}, or download a copy with --local-dir DIR."
        )
    for pattern in split.older:
        files = sorted(glob.glob(os.path.join(glob.escape(root), pattern)))
        if files:
            return (
                f" Found {os.path.relpath(files[0], root)!r}, a file of an older layout of this benchmark: download "
                "the current copy (the command is in docs/benchmarks.md)."
            )
    return ""


def read_optional(root: str, split: Split, source: str) -> tuple[Any, list[str]]:
    """``(dataset, files read)``, or ``(None, [])`` when no pattern of the split matches."""
    for pattern in split.patterns:
        files = sorted(glob.glob(os.path.join(glob.escape(root), pattern)))
        if files:
            dataset = _read_files(files, f"{source} {split.label}")
            _check_columns(dataset, split, files, source)
            return dataset, [os.path.relpath(f, root) for f in files]
    return None, []


def _read_files(files: list[str], where: str):
    import datasets
    import pyarrow as pa

    if all(f.endswith(".parquet") for f in files):
        import pyarrow.parquet as pq

        try:
            table = pa.concat_tables([pq.read_table(f) for f in files])
        except pa.ArrowException as err:
            raise ValueError(f"{where}: the files {files} could not be read as one table: {err}") from None
        dataset = datasets.Dataset(datasets.table.InMemoryTable(table))
    else:
        rows = [(f, i, row) for f in files for i, row in enumerate(_json_rows(f))]
        try:
            dataset = datasets.Dataset.from_list([row for _, _, row in rows])
        except pa.ArrowException as err:
            raise ValueError(f"{where}: {_mixed_types(rows) or err}") from None
    if len(dataset) == 0:
        raise ValueError(f"{where}: {files[0]!r} holds no rows.")
    return dataset


_KINDS = {bool: "bool", int: "number", float: "number", str: "str", list: "list", dict: "dict"}


def _mixed_types(rows: list[tuple[str, int, dict]]) -> str | None:
    """The first row whose value of some key has another type than the same key's first value, as a message."""
    first: dict[str, tuple[str, int, str]] = {}
    for path, i, row in rows:
        for key, value in row.items():
            if value is None:
                continue
            kind = _KINDS.get(type(value), type(value).__name__)
            seen = first.setdefault(key, (path, i, kind))
            if seen[2] != kind:
                return (
                    f"{path!r}: row {i} holds {key!r} as {kind} ({value!r}) where row {seen[1]} of "
                    f"{os.path.basename(seen[0])!r} holds a {seen[2]}: every row needs the same type per key."
                )
    return None


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
