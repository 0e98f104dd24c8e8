"""What ``evaluate_unlearning`` hands a model kind for its own metrics (``ModelKind.suite_metrics``), and the
checks of the options only some kinds have metrics for."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

#: the first part of the keys ``evaluate_unlearning`` writes itself: a utility split cannot be named so
RESERVED_PREFIXES = (
    "forget",
    "retain",
    "test",
    "golden",
    "mia",
    "utility",
    "forget_quality",
    "distance",
    "rcd",
    "gap",
    "muse",
    "attack",
)


@dataclass
class SuiteInputs:
    """The models, each split's canonical rows, raw data and per-example statistics (``SplitStats``, the model's
    and, where measured, the golden model's), the metrics so far, and ``evaluate_unlearning``'s options
    (``options``: those given of ``judge_model``, ``judge_processor``, ``generation_samples``,
    ``generation_steps``, and for text-to-image ``clip_model``, ``clip_processor``, ``concepts``: for kinds with
    ``judged_generation``)."""

    model: torch.nn.Module
    metrics: dict[str, float]
    rows: dict[str, list[dict]]
    raw: dict[str, Any]
    stats: dict[str, Any]
    golden_stats: dict[str, Any]
    collator: Any
    processing_class: Any = None
    batch_size: int = 32
    golden_model: torch.nn.Module | None = None
    original_model: torch.nn.Module | None = None
    reference_model: torch.nn.Module | None = None
    generation: bool = False
    max_new_tokens: int = 200
    utility_datasets: dict[str, Any] | None = None
    muse_datasets: dict[str, Any] | None = None
    attention_mask: str = "length"
    options: dict[str, Any] = field(default_factory=dict)


def check_utility_names(utility_datasets: dict[str, Any] | None) -> None:
    """``ValueError`` unless ``utility_datasets`` is a dict whose names can prefix keys."""
    if not utility_datasets:
        return
    if not isinstance(utility_datasets, dict):
        raise ValueError("utility_datasets must be a dict {name: dataset}.")
    for name in utility_datasets:
        if not isinstance(name, str) or not name or "/" in name or name in RESERVED_PREFIXES:
            raise ValueError(
                f"utility_datasets: {name!r} cannot name a split (a non-empty string without '/', not one of "
                f"{', '.join(RESERVED_PREFIXES)})."
            )
