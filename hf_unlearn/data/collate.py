"""Batching canonical rows: paired retain/forget items, plain row sequences, and padding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .common import CLASSIFICATION, IGNORE_INDEX, kind_of_task, row_length

#: How the collator builds the attention mask of a padded batch: ``"length"`` (ours) marks each row's own
#: tokens, ``"pad_token"`` marks every position whose id is not the pad id, as OpenUnlearning's collator does
#: (``input_ids != pad_token_id``): with a pad token that is also EOS, an EOS *inside* a sequence (a chat
#: template's end of turn) is masked too.
ATTENTION_MASKS = ("length", "pad_token")


def check_attention_mask(attention_mask: str) -> None:
    """``ValueError`` unless ``attention_mask`` is one of ``ATTENTION_MASKS``."""
    if attention_mask not in ATTENTION_MASKS:
        raise ValueError(
            f"attention_mask must be 'length' (the default) or 'pad_token' (OpenUnlearning's masking), "
            f"got {attention_mask!r}."
        )


class PairedDataset(torch.utils.data.Dataset):
    """Pairs every retain example with a forget example, cycling the smaller set.

    Item ``i`` is ``(retain[i % n_r], forget[i % n_f])`` and the length is ``max(n_r, n_f)``: under the
    Trainer's seeded shuffling each step sees a fresh random retain batch and a random forget batch, every
    forget example appears ``ceil(n_r / n_f)`` times per epoch, and the order is reproduced exactly on resume.
    """

    def __init__(self, retain: Sequence[dict], forget: Sequence[dict]):
        self.retain, self.forget = retain, forget

    def __len__(self) -> int:
        return max(len(self.retain), len(self.forget))

    def __getitem__(self, i: int) -> dict:
        return {"retain": self.retain[i % len(self.retain)], "forget": self.forget[i % len(self.forget)]}


class RowsDataset(torch.utils.data.Dataset):
    """Canonical rows (a ``TokenizedRows`` or a list) as a torch dataset (eval sets, single-set passes)."""

    def __init__(self, rows: Sequence[dict]):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


@dataclass
class UnlearningCollator:
    """Pads canonical rows. Paired items become ``{"retain": batch, "forget": batch[, "forget_alt": batch]}``.

    All parts of one paired batch are padded to the same length so that the trainer can run them through the
    model in a single forward pass. ``attention_mask`` is one of ``ATTENTION_MASKS`` (the metrics offer
    ``"pad_token"`` to reproduce OpenUnlearning's numbers; training always uses ``"length"``).
    """

    pad_token_id: int = 0
    task: str = CLASSIFICATION
    attention_mask: str = "length"

    def __post_init__(self) -> None:
        check_attention_mask(self.attention_mask)

    def __call__(self, items: list[dict]) -> dict:
        if "retain" not in items[0]:
            return self._collate(items, "", _max_len(items, ""))
        forget = [item["forget"] for item in items]
        retain = [item["retain"] for item in items]
        has_alt = "alt_input_ids" in forget[0]
        length = max(_max_len(retain, ""), _max_len(forget, ""), _max_len(forget, "alt_") if has_alt else 0)
        batch = {"retain": self._collate(retain, "", length), "forget": self._collate(forget, "", length)}
        if has_alt:
            batch["forget_alt"] = self._collate(forget, "alt_", length)
            batch["forget_alt"]["index"] = batch["forget"]["index"]
        return batch

    def _collate(self, rows: list[dict], prefix: str, length: int) -> dict:
        if "pixel_values" in rows[0]:
            batch = {
                "pixel_values": torch.stack([row["pixel_values"] for row in rows]),
                "labels": torch.tensor([row["labels"] for row in rows], dtype=torch.long),
            }
            return self._add_bookkeeping(batch, rows)
        ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            seq = row[prefix + "input_ids"]
            ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            mask[i, : len(seq)] = 1
        if self.attention_mask == "pad_token":
            mask = (ids != self.pad_token_id).long()
        batch = {"input_ids": ids, "attention_mask": mask}
        if kind_of_task(self.task).has_classes:
            batch["labels"] = torch.tensor([row["labels"] for row in rows], dtype=torch.long)
        else:
            labels = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
            for i, row in enumerate(rows):
                labels[i, : len(row[prefix + "labels"])] = torch.tensor(
                    row[prefix + "labels"], dtype=torch.long
                )
            batch["labels"] = labels
        return self._add_bookkeeping(batch, rows)

    @staticmethod
    def _add_bookkeeping(batch: dict, rows: list[dict]) -> dict:
        for key in ("index", "wrong_label"):
            if key in rows[0]:
                batch[key] = torch.tensor([row[key] for row in rows], dtype=torch.long)
        return batch


def _max_len(rows: list[dict], prefix: str) -> int:
    if prefix:
        return max(len(row[prefix + "input_ids"]) for row in rows)
    return max(row_length(row) for row in rows)
