"""Training and measuring the original and golden models: a plain seeded loop with the scenario's recipe, the
length-grouped batches it draws, and the memorization metrics recorded in ``scenario.json``."""

from __future__ import annotations

import math
import time

import torch

from ..data import model_kind, row_length
from .definition import TrainRecipe


def train_model(
    model: torch.nn.Module,
    rows: list[dict],
    collator,
    recipe: TrainRecipe,
    seed: int,
    progress: bool = False,
    desc: str = "train",
) -> float:
    """Train ``model`` in place on canonical ``rows``; returns the wall time in seconds.

    A plain loop (no ``Trainer`` start-up cost): seeded shuffling, AdamW, linear warm-up and decay.
    """
    from tqdm.auto import tqdm

    from ..data import RowsDataset

    start = time.perf_counter()
    kind = model_kind(model)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    torch.manual_seed(seed)  # dropout (MiniLM); identical streams for original and golden
    generator = torch.Generator().manual_seed(seed)
    sampler = LengthGroupedBatches(
        rows, recipe.batch_size, generator, group=8 if recipe.group_by_length else 1
    )
    loader = torch.utils.data.DataLoader(RowsDataset(rows), batch_sampler=sampler, collate_fn=collator)
    total = recipe.epochs * len(loader)
    params, frozen = _freeze(model, recipe.frozen)
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate, weight_decay=recipe.weight_decay)
    scheduler = _warmup_then_decay(optimizer, max(1, math.ceil(recipe.warmup_ratio * total)), total)
    model.train()
    bar = tqdm(total=total, desc=desc, disable=not progress, leave=False)
    for _ in range(recipe.epochs):
        for batch in loader:
            loss = kind.training_loss(model, kind.model_inputs(batch, device), batch["labels"].to(device))
            optimizer_step(loss, model, optimizer, scheduler, recipe.max_grad_norm, bar, desc)
    bar.close()
    for param in frozen:
        param.requires_grad_(True)
    model.eval()
    return time.perf_counter() - start


def _freeze(model: torch.nn.Module, prefixes: tuple[str, ...]) -> tuple[list, list]:
    """``(trained, frozen)`` parameters: those named with one of ``prefixes`` stop requiring gradients."""
    params, frozen = [], []
    for name, param in model.named_parameters():
        if prefixes and name.startswith(prefixes) and param.requires_grad:
            param.requires_grad_(False)
            frozen.append(param)
        elif param.requires_grad:
            params.append(param)
    return params, frozen


def _warmup_then_decay(optimizer, warmup: int, total: int):
    """Linear warm-up over ``warmup`` steps, then linear decay to zero at ``total``."""

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)


class LengthGroupedBatches:
    """Seeded random batches of similar lengths: shuffle, sort chunks of ``group`` batches by length, then
    shuffle the order of the batches (like ``group_by_length`` of ``transformers.Trainer``). With ``group=1``
    these are plain random batches."""

    def __init__(self, rows: list[dict], batch_size: int, generator: torch.Generator, group: int = 8):
        self.lengths = [row_length(row) for row in rows]
        self.batch_size, self.generator, self.group = batch_size, generator, group

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.lengths), generator=self.generator).tolist()
        chunk = self.batch_size * self.group
        batches = []
        for i in range(0, len(order), chunk):
            part = sorted(order[i : i + chunk], key=lambda j: -self.lengths[j])
            batches += [part[k : k + self.batch_size] for k in range(0, len(part), self.batch_size)]
        for b in torch.randperm(len(batches), generator=self.generator).tolist():
            yield batches[b]


def optimizer_step(loss: torch.Tensor, model: torch.nn.Module, optimizer, scheduler, max_grad_norm: float, bar,
                   desc: str) -> None:  # fmt: skip
    """One step of a scenario's training loop on ``loss`` (a non-finite loss stops the build), with the progress
    bar ``bar`` updated."""
    if not torch.isfinite(loss):
        raise RuntimeError(f"{desc}: the training loss became {loss.item()}.")
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    bar.update(1)
    bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)


@torch.no_grad()
def evaluate_rows(
    model: torch.nn.Module, rows: list[dict], collator, task: str, batch_size: int = 16
) -> dict:
    """Accuracy (classifiers) or per-token NLL and next-token accuracy on completion tokens (causal LMs).
    ``task``: the model's task string (its kind decides; kept for callers)."""
    kind = model_kind(model)
    model.eval()
    rows = sorted(rows, key=row_length)  # less padding; the totals do not change
    device = next(model.parameters()).device
    correct = count = 0
    nll = 0.0
    for i in range(0, len(rows), batch_size):
        batch = collator(rows[i : i + batch_size])
        predictions = kind.forward(model, kind.model_inputs(batch, device))[0]
        stats = kind.batch_stats(predictions, batch["labels"].to(device))
        tokens = stats["tokens"].float()
        nll += float((stats["loss"].float() * tokens).sum())
        correct += int(stats["correct"].sum())
        count += int(tokens.sum())
    if kind.has_classes:
        return {"accuracy": round(correct / max(1, count), 4)}
    return {"nll": round(nll / max(1, count), 4), "token_accuracy": round(correct / max(1, count), 4)}
