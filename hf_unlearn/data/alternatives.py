"""Default "I don't know"-style alternatives for methods that train the forget prompts towards a refusal."""

from __future__ import annotations

from typing import Any

import numpy as np

from .common import to_dataset

#: "I don't know"-style answers for forget sets without an ``alternative`` column (idk_nll, idk_dpo), in the
#: spirit of TOFU's idontknow.jsonl (our own wording).
DEFAULT_REFUSALS = (
    "I'm not sure about that.",
    "I don't know the answer to that.",
    "I have no information about that.",
    "That is not something I can answer.",
    "I'm afraid I don't know.",
    "I can't say; I don't have that information.",
    "I don't have any details on that.",
    "Sorry, I don't know.",
)


def with_default_alternatives(data: Any, seed: int):
    """``data`` with an ``alternative`` column of seeded ``DEFAULT_REFUSALS`` when it has none."""
    dataset = to_dataset(data, "forget_dataset")
    if "alternative" in dataset.column_names:
        return dataset
    if not ({"prompt", "completion"} <= set(dataset.column_names) or "messages" in dataset.column_names):
        raise ValueError(
            "This method trains the forget prompts towards refusals: the forget set needs a prompt "
            "('prompt'/'completion' or 'messages'), or an 'alternative' column of its own."
        )
    rng = np.random.default_rng([seed, 5501])
    choice = rng.integers(0, len(DEFAULT_REFUSALS), size=len(dataset))
    return dataset.add_column("alternative", [DEFAULT_REFUSALS[i] for i in choice])
