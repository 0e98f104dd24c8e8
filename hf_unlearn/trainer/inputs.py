"""The checks and preparation of ``UnlearningTrainer``'s arguments and datasets."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..config import UnlearningConfig
from ..data import RowsDataset

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


def check_overlap(forget_rows: list[dict], retain_rows: list[dict], allow: bool, row_key: Callable) -> None:
    """Exact duplicates (same tokens, same labels) in both sets make the goal contradictory: an error, or a
    warning with ``allow``. Classifier inputs in both sets with different labels get a warning (one pass over
    each set, hashing the inputs). ``row_key(row) -> (inputs, label)``: the model kind's ``row_key``."""
    forget_labels: dict = {}
    for row in forget_rows:
        inputs, label = row_key(row)
        forget_labels.setdefault(inputs, set()).add(label)
    shared = conflicting = 0
    for row in retain_rows:
        inputs, label = row_key(row)
        if inputs in forget_labels:
            if label in forget_labels[inputs]:
                shared += 1
            elif isinstance(label, int):  # a classifier's label (a causal LM's labels are its own tokens)
                conflicting += 1
    if shared and not allow:
        raise ValueError(
            f"{shared} retain example(s) are exact duplicates of forget examples: the run would learn and "
            "unlearn the same data. Remove them from the retain set, or set allow_overlap=True to proceed."
        )
    if shared:
        logger.warning("%d retain example(s) duplicate forget examples (allow_overlap=True).", shared)
    if conflicting:
        logger.warning(
            "%d retain example(s) have the same input as a forget example but a different label: the run "
            "teaches the retain label and unlearns the forget label on the same input. Intended for "
            "mislabeled data corrected in the retain set; otherwise check the labels.",
            conflicting,
        )


def warn_about_sets(forget_rows: list[dict], retain_rows: list[dict]) -> None:
    """A warning when the forget set is larger than the retain set (often the two swapped)."""
    if len(forget_rows) > len(retain_rows):
        logger.warning(
            "forget_dataset has %d examples, more than retain_dataset (%d): check that the two are not "
            "swapped. The retain set is what the model keeps (the run's training set); it is cycled to pair "
            "every forget batch, so each retain example is seen about %.1f times per epoch.",
            len(forget_rows),
            len(retain_rows),
            len(forget_rows) / max(len(retain_rows), 1),
        )


def seed_everything(args: UnlearningConfig) -> None:
    """Seed Python, NumPy and torch from ``args.seed`` as ``Trainer`` does (deterministic kernels too with
    ``full_determinism``): called before what draws random numbers ahead of it, e.g. LoRA's initialization."""
    from transformers import enable_full_determinism, set_seed

    if args.full_determinism:
        enable_full_determinism(args.seed)
    else:
        set_seed(args.seed)
