"""``PerExampleLossesMixin``: the public per-example losses of ``UnlearningTrainer`` (a model's loss on rows, the
one the methods train on), the collation of rows for them, and the forget term's switch that the held-out
stopping rules steer. The set-up passes (``trainer.setup``), stopping and the tests go through these."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data import RowsDataset, TokenizedRows
from ..weights.distributed import parameter_sharding


class PerExampleLossesMixin:
    """Per-example losses of a model on rows, for ``UnlearningTrainer`` (which provides ``kind``, ``preparer``,
    ``_forward``, ``data_collator`` and ``args``)."""

    def per_example_losses(
        self,
        data: Any,
        model: torch.nn.Module | None = None,
        batch_size: int | None = None,
        desc: str = "per-example losses",
    ) -> torch.Tensor:
        """Per-example losses of ``model`` (default: the trainer's model as it is now) on ``data``, in order, in
        eval mode without gradients, as one float CPU tensor: the loss the methods train on (cross-entropy for
        classifiers, token-mean NLL of the completion for causal LMs, the model kind's ``loss_of`` for others).

        ``data``: raw data in any format the trainer accepts (a ``datasets.Dataset``, a list of dicts or a dict
        of lists; prepared like the training data), canonical rows (e.g. ``trainer.forget_rows``), or batches
        already collated by ``collate_rows`` (reused as they are; they are moved to the device one by one).
        ``batch_size``: rows per batch (default ``per_device_eval_batch_size``). A sharded model runs as it is
        placed, every process on every row."""
        model = self.model if model is None else model
        if _is_collated(data):
            return self._per_batch(model, self._on_device(data, desc), self.kind.loss_of)
        if not _is_canonical(data):
            data = self.preparer(data, "data")
        return self._per_example(model, data, desc, self.kind.loss_of, batch_size)

    def collate_rows(self, rows: Any, batch_size: int | None = None) -> list[dict]:
        """Canonical ``rows`` collated in order into CPU batches of ``batch_size`` rows (default
        ``per_device_eval_batch_size``): to measure the same rows many times, pass these to
        ``per_example_losses``."""
        return list(self._collated(rows, batch_size))

    def set_forget_term(self, active: bool | None = None, targets: torch.Tensor | None = None) -> None:
        """Steer the forget term of the next steps (the held-out stopping rules do): ``active=False`` trains on
        the retain term only until it is switched on again; ``targets`` (one loss per forget example, in the
        order of ``forget_rows``) stops pushing each example whose loss reached its target. ``None`` leaves a
        setting as it is. The current settings are ``forget_active`` and ``forget_targets``."""
        if active is not None:
            self.forget_active = bool(active)
        if targets is not None:
            self.forget_targets = torch.as_tensor(targets, dtype=torch.float32)

    def _per_example(
        self, model: torch.nn.Module, rows: list[dict], desc: str, fn, batch_size: int | None = None
    ) -> torch.Tensor:
        """``fn(logits, labels)`` for every row, in eval mode without gradients, as one float CPU tensor
        (batches of ``batch_size`` rows, default ``per_device_eval_batch_size``; chunked LM logits). A sharded
        model runs as it is placed, every process on every row."""
        return self._per_batch(model, self.device_batches(rows, desc, batch_size), fn)

    def _per_batch(self, model: torch.nn.Module, batches: Iterable[dict], fn) -> torch.Tensor:
        """``_per_example`` over batches already collated and on the device (e.g. ``_batches``)."""
        if parameter_sharding(model) is None:
            model = model.to(self.args.device)
        was_training = model.training
        model.eval()
        values = []
        with torch.no_grad():
            for batch in batches:
                logits, _ = self._forward(model, batch)
                values.append(fn(logits, batch["labels"]).float().cpu())
        model.train(was_training)
        return torch.cat(values)

    def _collated(self, rows: list[dict], batch_size: int | None = None) -> DataLoader:
        """``rows`` collated in order, in batches of ``batch_size`` (default ``per_device_eval_batch_size``), on
        the CPU."""
        size = batch_size or self.args.per_device_eval_batch_size
        # an own generator: a loader draws a base seed when iterated, which must not come from torch's global
        # stream (dropout and the batch order of the run would then depend on how often we measure)
        return DataLoader(
            RowsDataset(rows), batch_size=size, collate_fn=self.data_collator, generator=torch.Generator()
        )

    def _on_device(self, batches: Iterable[dict], desc: str):
        """``batches`` moved to the training device one by one, with a progress bar on the main process."""
        disable = self.args.disable_tqdm or not self.is_world_process_zero()
        for batch in tqdm(batches, desc=desc, disable=disable, leave=False):
            yield {k: v.to(self.args.device) for k, v in batch.items()}

    def device_batches(self, rows: list[dict], desc: str = "batches", batch_size: int | None = None):
        """Canonical ``rows`` collated in order (``collate_rows``) and moved to the training device one batch at
        a time, with a progress bar named ``desc``: the batches the gradient passes (``loss_sum``) run on."""
        return self._on_device(self._collated(rows, batch_size), desc)


def _is_collated(data: Any) -> bool:
    """Batches from ``collate_rows``: a list of dicts whose labels are tensors."""
    return (
        isinstance(data, (list, tuple))
        and bool(data)
        and isinstance(data[0], dict)
        and isinstance(data[0].get("labels"), torch.Tensor)
    )


def _is_canonical(data: Any) -> bool:
    """Canonical rows (``forget_rows``, ``retain_rows``, ...): a ``TokenizedRows``, or a list of prepared rows
    (each has its ``index``)."""
    if isinstance(data, TokenizedRows):
        return True
    return isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "index" in data[0]
