"""The golden-free reference of RCD (``relearning_convergence_delay(heldout_dataset=...)``): the original model
learning held-out examples of the forget set's kind, relabeled with seeded wrong labels for a forget set of
mislabeled examples, and why such a reference may give no ratio."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from ._passes import prepare

if TYPE_CHECKING:
    from .relearn_types import RelearnResult


def learn_heldout(
    protocol: Any,
    original_model: torch.nn.Module,
    heldout_dataset: Any,
    processing_class: Any,
    corruption: str,
) -> RelearnResult | None:
    """The original learning the first ``len(forget)`` held-out examples (relabeled with seeded wrong labels
    when ``corruption="random"``) with ``protocol``; None when a causal LM's examples would need relabeling."""
    if corruption != "none" and not protocol.kind.has_classes:
        return None
    config = protocol.config
    rows, _, _ = prepare(
        original_model, heldout_dataset, processing_class, "heldout_dataset", config.max_length
    )
    rows = rows[: len(protocol.rows)]
    if corruption == "random":
        from ..data import num_classes_of
        from ..stopping import corrupt_labels

        rows = corrupt_labels(list(rows), num_classes_of(original_model), config.seed)
    return replace(protocol, rows=rows).run(original_model, original_model, "learning held-out (original)")


def heldout_note(heldout: RelearnResult | None, kind: Any, corruption: str) -> str | None:
    """Why the held-out run cannot stand in for golden's relearning (None: it can)."""
    if heldout is None:
        return (
            f"heldout_label_corruption={corruption!r} relabels classifier examples: a causal LM's held-out "
            "examples cannot carry the forget set's corruption"
        )
    if heldout.steps > 0:
        return None
    hint = ""
    if kind.has_classes and corruption == "none":
        hint = " (a forget set of wrong labels needs heldout_label_corruption='random')"
    return (
        "the original meets the recovery target on the held-out examples before any update (step 0): they are "
        f"not unseen data of the forget set's kind{hint}, and steps / 0 gives no golden-free ratio"
    )
