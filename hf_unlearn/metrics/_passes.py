"""Batched, gradient-free passes over canonical rows, shared by the metrics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import Any

import torch

from ..data import build_preparer, model_inputs, model_kind, row_length


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode and restore its training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextmanager
def eval_modes(*models: torch.nn.Module | None) -> Iterator[None]:
    """``eval_mode`` of every model given (None skipped), their training flags restored afterwards."""
    with ExitStack() as stack:
        for model in models:
            if model is not None:
                stack.enter_context(eval_mode(model))
        yield


def prepare(
    model: torch.nn.Module,
    data: Any,
    processing_class: Any,
    name: str,
    max_length: int | None = None,
    attention_mask: str = "length",
):
    """``(rows, collator, kind)`` for ``data`` (any format ``hf_unlearn.data`` accepts) and ``model``; the
    collator builds its attention masks the ``attention_mask`` way (``hf_unlearn.data.collate.ATTENTION_MASKS``)."""
    preparer, collator = build_preparer(model, processing_class, max_length=max_length)
    if (
        attention_mask != "length"
    ):  # the collators' default (a model kind's own collator may have no such field)
        collator = replace(collator, attention_mask=attention_mask)
    return preparer(data, name), collator, model_kind(model)


def make_batches(
    rows: list[dict], collator, batch_size: int, device: torch.device | None = None, kind: Any = None
) -> list[tuple[torch.Tensor, dict]]:
    """Collate ``rows`` into batches of similar length (less padding). Each item is ``(row_positions, batch)``;
    ``row_positions`` gives the rows' positions in ``rows`` so that per-example results can be put back in
    order. Batches are moved to ``device`` when given. ``kind``: the model kind whose inputs and row lengths to
    use (default: the built-in kinds')."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    length = row_length if kind is None else kind.row_length
    inputs_of = model_inputs if kind is None else kind.model_inputs
    order = sorted(range(len(rows)), key=lambda i: length(rows[i]))
    out = []
    for start in range(0, len(order), batch_size):
        positions = order[start : start + batch_size]
        batch = collator([rows[i] for i in positions])
        batch = {**inputs_of(batch), "labels": batch["labels"]}
        if device is not None:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        out.append((torch.tensor(positions, dtype=torch.long), batch))
    return out


def process_rank_and_count() -> tuple[int, int]:
    """``(rank, world size)`` of the default ``torch.distributed`` group; ``(0, 1)`` without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def this_process_share(items: list) -> list[tuple[Any, bool]]:
    """The ``items`` this process evaluates (round robin over the processes), each as ``(item, keep)``.

    Every process makes the same number of passes: one with fewer items repeats its first with
    ``keep=False``, because the forward of a sharded model (FSDP, ZeRO-3) is a collective that every process
    must join."""
    rank, world = process_rank_and_count()
    if world == 1:
        return [(item, True) for item in items]
    mine = items[rank::world]
    calls = -(-len(items) // world)
    return [(item, True) for item in mine] + [(items[0], False)] * (calls - len(mine))


def gather_from_processes(local: Any) -> list[Any]:
    """Every process's ``local`` (picklable), in rank order; ``[local]`` without a process group."""
    import torch.distributed as dist

    _, world = process_rank_and_count()
    if world == 1:
        return [local]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, local)
    return gathered
