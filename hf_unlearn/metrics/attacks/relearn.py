"""``relearn_partial``: fine-tune a copy on a seeded half of the forget set, measure the other half.

Knowledge that comes back on forget examples the attack never showed was only hidden, not removed (Hu et al.,
arXiv 2406.13356). The split keeps groups together (one person's questions are all on one side), so the held-out
half cannot be learned from its own near-duplicates. The fine-tuning is the relearning convergence delay's
(``hf_unlearn.metrics.relearning``: its seeded batch stream and optimizer) for a fixed number of steps, over
every weight of the copy (a LoRA model merged first): the same attack for the unlearned, golden and original
models.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from . import Attack, register_attack
from .quantize import plain_copy

logger = logging.getLogger(__name__)

#: columns that name an example's group when ``group_column="auto"`` (the first one present is used)
GROUP_COLUMNS = ("group", "person", "author")


def partial_split(
    forget_dataset: Any, seed: int = 0, group_column: str | None = "auto"
) -> tuple[list[int], list[int]]:
    """``(attack_indices, eval_indices)`` of the forget set's rows: a seeded permutation of the groups (or of
    the rows, without a group column), its first ``n // 2`` to the attack, the rest held out. Disjoint, sorted,
    both non-empty; groups are never split.

    Args:
        forget_dataset: the forget set (any format ``UnlearningTrainer`` accepts).
        seed: seeds the permutation.
        group_column: the column whose equal values stay together; ``"auto"``: the first of ``GROUP_COLUMNS`` the
            rows have (else split by example); None: split by example.
    """
    from ...data.common import to_dataset

    dataset = to_dataset(forget_dataset, "forget_dataset")
    column = group_column_of(dataset.column_names, group_column)
    groups = [str(v) for v in dataset[column]] if column else [str(i) for i in range(len(dataset))]
    names = list(dict.fromkeys(groups))  # in order of first appearance
    if len(names) < 2:
        what = f"groups (column {column!r})" if column else "examples"
        raise ValueError(f"relearn_partial needs at least 2 forget {what} to split, got {len(names)}.")
    order = np.random.default_rng(seed).permutation(len(names))
    attack_groups = {names[i] for i in order[: len(names) // 2]}
    attack = [i for i, g in enumerate(groups) if g in attack_groups]
    held_out = [i for i, g in enumerate(groups) if g not in attack_groups]
    return attack, held_out


def group_column_of(columns: list[str], group_column: str | None) -> str | None:
    """The column that groups rows (a person's questions): ``group_column`` itself, the first of
    ``GROUP_COLUMNS`` present for ``"auto"``, or None (split by row)."""
    if group_column is None:
        return None
    if group_column == "auto":
        return next((c for c in GROUP_COLUMNS if c in columns), None)
    if group_column not in columns:
        raise ValueError(
            f"group_column {group_column!r} is not a forget-set column ({columns}); pass None to split by example."
        )
    return group_column


@register_attack("relearn_partial")
class RelearnPartialAttack(Attack):
    """Fine-tune a copy on half of the forget set (``partial_split``) for ``max_steps`` steps; measure the rest.

    Args:
        max_steps: the budget: optimizer steps on the attack half (default 25).
        learning_rate: constant learning rate (default 1e-4, ``RelearnConfig``'s; the pipeline uses the run's
            RCD learning rate, e.g. 1e-3 for the tiny scenario models trained from scratch).
        batch_size: attack examples per step (capped at the half's size; default 8).
        optimizer: ``"adamw"`` (default) or ``"sgd"``; no weight decay, gradients clipped at norm 1.
        seed: seeds the split, the batch order and any dropout.
        group_column: see ``partial_split`` (default ``"auto"``).
        progress_bar: show a tqdm bar over the steps.
    """

    trains = True  # rank 0's fine-tuned copy is the one every process measures

    def __init__(
        self,
        max_steps: int = 25,
        learning_rate: float = 1e-4,
        batch_size: int = 8,
        optimizer: str = "adamw",
        seed: int = 0,
        group_column: str | None = "auto",
        progress_bar: bool = False,
    ):
        from ..relearn_types import RelearnConfig

        self.config = RelearnConfig(
            optimizer=optimizer,
            learning_rate=learning_rate,
            batch_size=batch_size,
            max_steps=max_steps,
            seed=seed,
            progress_bar=progress_bar,
        )
        self.group_column = group_column

    def options(self) -> dict[str, Any]:
        config = self.config
        return {
            "max_steps": config.max_steps,
            "learning_rate": config.learning_rate,
            "batch_size": config.batch_size,
            "optimizer": config.optimizer,
            "seed": config.seed,
            "group_column": self.group_column,
        }

    def split(self, forget_dataset: Any) -> tuple[Any, Any]:
        from ...data.common import to_dataset

        dataset = to_dataset(forget_dataset, "forget_dataset")
        attack, held_out = partial_split(dataset, self.config.seed, self.group_column)
        return dataset.select(attack), dataset.select(held_out)

    def apply(
        self, model: torch.nn.Module, attack_data: Any = None, processing_class: Any = None
    ) -> torch.nn.Module:
        if attack_data is None:
            raise ValueError("relearn_partial needs its half of the forget set (attack_data, from split()).")
        from .._passes import prepare

        rows, collator, _ = prepare(model, attack_data, processing_class, "forget_dataset (attack half)")
        return fine_tune_copy(model, rows, collator, self.config)


def fine_tune_copy(model: torch.nn.Module, rows: list[dict], collator: Any, config: Any) -> torch.nn.Module:
    """A copy of ``model`` (merged, every weight trainable) fine-tuned on ``rows`` for ``config.max_steps`` steps
    with RCD's protocol (``RelearnConfig``: optimizer, learning rate, seeded batches, clipping); eval mode."""
    from ...kinds import get_model_kind
    from .._passes import model_device
    from .._relearn_protocol import _BatchStream, _make_optimizer, relearn_step

    learner = plain_copy(model)
    params = list(learner.parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = _make_optimizer(params, config)
    kind = get_model_kind(learner)
    device = model_device(learner)
    stream = _BatchStream(len(rows), config.batch_size, config.seed)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed)
        learner.train()
        for step in tqdm(
            range(config.max_steps), desc="relearn_partial", disable=not config.progress_bar, leave=False
        ):
            batch = collator([rows[i] for i in stream.indices(step)])
            relearn_step(learner, kind, batch, device, params, optimizer, config)
    learner.eval()
    for p in params:
        p.requires_grad_(False)
    return learner
