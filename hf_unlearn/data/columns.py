"""Whole-column validation on the Arrow data, vectorized with NumPy (no per-row Python loop).

Each check raises for the first offending row, with the message (and the value) that a row-by-row check in
row order would give.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .common import IGNORE_INDEX


def arrow_column(dataset: Any, column: str) -> pa.ChunkedArray:
    """``dataset[column]`` as Arrow (a view; gathered when the dataset is a select/shuffle of another)."""
    values = dataset.with_format("arrow")[column]
    return values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values])


def check_labels(column: pa.ChunkedArray, name: str, num_labels: int | None) -> np.ndarray:
    """Classifier labels as an ``int64`` array: integers (not booleans) in ``[0, num_labels)``."""
    if not pa.types.is_integer(column.type):  # then no value is an integer: the first one is reported
        raise ValueError(f"{name}: classifier labels must be integers, got {column[0].as_py()!r}.")
    labels = column.fill_null(0).to_numpy().astype(np.int64, copy=False)
    out_of_range = (labels < 0) | (labels >= num_labels if num_labels is not None else False)
    first_null, first_bad = _first(_null_mask(column)), _first(out_of_range)
    if first_null is not None and (first_bad is None or first_null < first_bad):
        raise ValueError(f"{name}: classifier labels must be integers, got None.")
    if first_bad is not None:
        raise ValueError(
            f"{name}: label {int(labels[first_bad])} is outside [0, {num_labels}) (the model's num_labels)."
        )
    return labels


def check_strings(column: pa.ChunkedArray, name: str, column_name: str) -> None:
    """Every value is a string (no nulls)."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)) or column.null_count:
        raise ValueError(f"{name}: column '{column_name}' must hold strings.")


def check_token_ids(
    column: pa.ChunkedArray,
    name: str,
    column_name: str,
    vocab_size: int | None,
    allow_ignore: bool = False,
) -> None:
    """Every value is a list of integer token ids in ``[0, vocab_size)`` (``-100`` too with ``allow_ignore``)."""
    kind = column.type
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)):
        raise _not_token_ids(name, column_name)
    high = vocab_size if vocab_size else None
    for chunk in column.chunks:
        values = chunk.flatten()
        bad_type = _first_untyped_row(chunk, values)
        bad_range, value = _first_out_of_range(chunk, values, IGNORE_INDEX if allow_ignore else 0, high)
        if bad_type is not None and (bad_range is None or bad_type <= bad_range):
            raise _not_token_ids(name, column_name)
        if bad_range is not None:
            raise ValueError(
                f"{name}: token id {value} in '{column_name}' is outside the vocabulary [0, {high})."
            )


def list_lengths(column: pa.ChunkedArray) -> np.ndarray:
    """The length of each list in a list column."""
    return pc.list_value_length(column).to_numpy(zero_copy_only=False)


def _first_untyped_row(chunk: pa.Array, values: pa.Array) -> int | None:
    """The first row that is not a list of integers: a null, or a list holding a non-integer or a null."""
    rows = [_first(_null_mask(chunk))]
    if len(values) and not pa.types.is_integer(values.type):  # empty lists may be typed as lists of nulls
        rows.append(_row_of(chunk, 0))
    elif len(values) and values.null_count:
        rows.append(_row_of(chunk, _first(_null_mask(values))))
    rows = [r for r in rows if r is not None]
    return min(rows) if rows else None


def _first_out_of_range(
    chunk: pa.Array, values: pa.Array, low: int, high: int | None
) -> tuple[int | None, int | None]:
    """``(row, id)`` of the first id below 0 (other than ``low``) or at least ``high``; ``(None, None)``."""
    if not len(values) or not pa.types.is_integer(values.type):
        return None, None
    ids = values.fill_null(0).to_numpy()
    bad = (ids < 0) & (ids != low)
    if high is not None:
        bad |= ids >= high
    position = _first(bad)
    return (None, None) if position is None else (_row_of(chunk, position), int(ids[position]))


def _row_of(chunk: pa.Array, position: int) -> int:
    """The row of a list chunk that holds its ``position``-th flattened value (only computed on an error)."""
    return int(pc.list_parent_indices(chunk)[position].as_py())


def _null_mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return values.is_null().to_numpy(zero_copy_only=False)


def _first(mask: np.ndarray) -> int | None:
    return int(np.argmax(mask)) if mask.any() else None


def _not_token_ids(name: str, column_name: str) -> ValueError:
    return ValueError(f"{name}: column '{column_name}' must hold lists of token ids (integers).")
