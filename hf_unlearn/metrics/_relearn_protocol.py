"""The relearning protocol of ``relearning_convergence_delay`` (``hf_unlearn.metrics.relearning``): the forget-set
measures of a model, the seeded batch stream, the optimizer, and the run that fine-tunes a copy of the model until
the target is met (refined between evaluations)."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ..data import model_kind
from ._passes import eval_mode, make_batches, model_device
from ._weights import WeightTracker
from .relearn_types import RelearnConfig, RelearnResult

OWN_TARGETS = ("accuracy", "loss")  # the targets every kind has; others are the kind's (relearn_scorer)


@torch.no_grad()
def _forget_metrics(
    model: torch.nn.Module, batches: list, n_examples: int, target: str = "loss", score: Any = None
) -> dict:
    """Mean per-example loss and (token) accuracy over the batches, with a single device synchronisation; with
    ``score`` (a kind's own target), also ``{target: score(model)}``."""
    device = model_device(model)
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device)
    count = torch.zeros((), device=device)
    kind = model_kind(model)
    with eval_mode(model):
        for _, batch in batches:
            predictions, _ = kind.forward(model, batch)
            loss_sum += kind.loss_of(predictions, batch["labels"]).sum()
            scored = kind.correct(predictions, batch["labels"])
            if scored is not None:
                correct += scored[0].sum()
                count += scored[1].sum()
        loss_sum, correct, count = torch.stack([loss_sum.float(), correct.float(), count.float()]).tolist()
        out = {"loss": loss_sum / n_examples, "accuracy": correct / count if count else math.nan}
        if score is not None:
            out[target] = float(score(model))
    return out


class _BatchStream:
    """Batch ``t`` of seeded shuffles of the forget set, epoch after epoch: a pure function of ``t``."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, min(batch_size, n)
        self.generator = torch.Generator().manual_seed(seed)
        self.order: list[int] = []

    def indices(self, step: int) -> list[int]:
        end = (step + 1) * self.batch_size
        while len(self.order) < end:
            self.order.extend(torch.randperm(self.n, generator=self.generator).tolist())
        return self.order[step * self.batch_size : end]


@dataclass
class _Protocol:
    rows: list[dict]
    collator: Any
    kind: Any
    target: str
    threshold: float
    reference: dict
    config: RelearnConfig
    score: Any = None  # the kind's own target: model -> value (``ModelKind.relearn_scorer``)
    owned: frozenset = frozenset()  # ids of the models that are copies made for this run: relearned in place

    def recovered(self, metrics: dict) -> bool:
        if self.target == "loss":
            return metrics["loss"] <= self.threshold  # False for NaN
        return metrics[self.target] >= self.threshold

    def run(self, model: torch.nn.Module, original: torch.nn.Module, desc: str) -> RelearnResult:
        """Relearn a deep copy of ``model`` (``model`` itself when it is one of ``owned``)."""
        config = self.config
        device = model_device(model)
        learner = model if id(model) in self.owned else copy.deepcopy(model)
        kind = model_kind(model)
        params = [p for p in learner.parameters() if p.requires_grad]
        if not params:
            raise ValueError("The model has no trainable parameter (requires_grad=True): nothing to relearn.")
        optimizer = _make_optimizer(params, config)
        tracker = WeightTracker(learner, original)
        eval_batches = make_batches(self.rows, self.collator, config.eval_batch_size, device, kind=kind)
        stream = _BatchStream(len(self.rows), config.batch_size, config.seed)
        curve: list[dict] = []

        def evaluate(step: int) -> bool:
            metrics = _forget_metrics(learner, eval_batches, len(self.rows), self.target, self.score)
            curve.append(
                {
                    "step": step,
                    "loss": metrics["loss"],
                    "accuracy": metrics["accuracy"],
                    **({self.target: metrics[self.target]} if self.target not in OWN_TARGETS else {}),
                    "distance": tracker.distance(),
                    "path": tracker.path_length(),
                }
            )
            return self.recovered(metrics)

        def train_step(step: int) -> None:
            batch = self.collator([self.rows[i] for i in stream.indices(step)])
            relearn_step(learner, kind, batch, device, params, optimizer, config)
            tracker.step()

        rng_devices = [device] if device.type == "cuda" else []
        bar = tqdm(total=config.max_steps, desc=desc, disable=not config.progress_bar, leave=False)
        refine = config.refine and config.eval_every > 1
        # with refine: the weights and path length after each step since the last evaluation
        window: list[tuple[list[torch.Tensor], torch.Tensor]] = []
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(config.seed)
            done = evaluate(0)
            start_distance = curve[0]["distance"]
            step, last_eval = 0, 0
            learner.train()
            while not done and step < config.max_steps:
                train_step(step)
                step += 1
                bar.update(1)
                if step % config.eval_every and step != config.max_steps:
                    if refine:
                        _keep(window, step - last_eval - 1, params, tracker.path)
                    continue
                done = evaluate(step)
                if done and refine and step > last_eval + 1:
                    # first recovery in the window (last_eval, step]: evaluate the kept weights, oldest first
                    checkpoint_row = curve.pop()
                    with torch.no_grad():
                        for offset in range(step - last_eval - 1):
                            weights, tracker.path = window[offset]
                            torch._foreach_copy_(params, weights)
                            if evaluate(last_eval + 1 + offset):
                                break
                        else:
                            curve.append(checkpoint_row)
                last_eval = step
                row = curve[-1]
                shown = {
                    "loss": row["loss"],
                    "acc": row.get("accuracy"),
                    "gen_acc": row.get("generation_accuracy"),
                }
                bar.set_postfix(  # what the kind measures (no accuracy for a diffusion model's loss target)
                    {k: f"{v:.4g}" for k, v in shown.items() if v is not None and v == v}, refresh=False
                )
        bar.close()
        return RelearnResult(
            steps=curve[-1]["step"],
            recovered=done,
            weight_path=curve[-1]["path"],
            start_distance=start_distance,
            curve=curve,
            target=self.target,
            threshold=self.threshold,
            reference=dict(self.reference),
            config=asdict(config),
        )


def relearn_step(
    learner: torch.nn.Module,
    kind: Any,
    batch: dict,
    device: torch.device,
    params: list[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    config: RelearnConfig,
) -> None:
    """One fine-tuning step of ``learner`` on ``batch``: the mean of the kind's per-example losses, gradients
    clipped to ``config.max_grad_norm`` (if set), then the optimizer step."""
    kind.per_example_losses(learner, batch, device).mean().backward()
    if config.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _make_optimizer(params: list[torch.Tensor], config: RelearnConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.learning_rate, momentum=config.momentum, weight_decay=config.weight_decay
    )


@torch.no_grad()
def _keep(window: list, slot: int, params: list[torch.Tensor], path: torch.Tensor) -> None:
    """Store the current weights (and path length) in ``window[slot]``, reusing its buffers."""
    if slot < len(window):
        torch._foreach_copy_(window[slot][0], params)
        window[slot] = (window[slot][0], path.clone())
    else:
        window.append(([p.detach().clone() for p in params], path.clone()))
