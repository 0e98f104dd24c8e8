"""The checks and preparation of ``UnlearningTrainer``'s arguments and datasets."""

from __future__ import annotations

import logging
from typing import Any

from .config import UnlearningConfig
from .data import RowsDataset

logger = logging.getLogger(__name__)


def check_args(args: UnlearningConfig | None) -> UnlearningConfig:
    """``args``, or the default config when None; anything else is an error."""
    if args is None:
        return UnlearningConfig(output_dir="unlearning_output")
    if not isinstance(args, UnlearningConfig):
        raise ValueError(f"args must be an UnlearningConfig, got {type(args).__name__}.")
    return args


def prepare_eval(preparer, eval_dataset: Any):
    """``eval_dataset`` as rows (a dict of datasets: one ``RowsDataset`` per name)."""
    if eval_dataset is None:
        return None
    if isinstance(eval_dataset, dict) and all(_is_dataset(v) for v in eval_dataset.values()):
        return {
            name: RowsDataset(preparer(data, f"eval_dataset[{name!r}]"))
            for name, data in eval_dataset.items()
        }
    return RowsDataset(preparer(eval_dataset, "eval_dataset"))


def _is_dataset(value: Any) -> bool:
    """A dataset-like value (``datasets.Dataset`` or list of dicts), as opposed to one column of data."""
    return hasattr(value, "column_names") or (
        isinstance(value, list) and bool(value) and isinstance(value[0], dict)
    )


def _row_key(row: dict) -> tuple:
    labels = row["labels"]
    if "pixel_values" in row:
        return row["pixel_values"].numpy().tobytes(), labels
    return tuple(row["input_ids"]), tuple(labels) if isinstance(labels, list) else labels


def check_overlap(forget_rows: list[dict], retain_rows: list[dict], allow: bool) -> None:
    """Exact duplicates (same tokens, same labels) in both sets make the goal contradictory."""
    forget_keys = {_row_key(row) for row in forget_rows}
    shared = sum(_row_key(row) in forget_keys for row in retain_rows)
    if shared and not allow:
        raise ValueError(
            f"{shared} retain example(s) are exact duplicates of forget examples: the run would learn and "
            "unlearn the same data. Remove them from the retain set, or set allow_overlap=True to proceed."
        )
    if shared:
        logger.warning("%d retain example(s) duplicate forget examples (allow_overlap=True).", shared)
