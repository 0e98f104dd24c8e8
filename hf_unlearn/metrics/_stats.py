"""Per-example statistics of models on canonical rows, in one batched no-gradient pass (``collect_stats``): the
numbers ``evaluate_unlearning``, the causal-LM metrics (``generative``) and MUSE's (``muse``) are built on."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import losses
from ._passes import eval_mode, gather_from_processes, make_batches, model_device, this_process_share
from .generation import memorization_scores
from .mia import min_k_plus_plus_scores, min_k_scores

MIN_K_FRACTION = 0.2  # Min-K% Prob (Shi et al., 2024) with k = 20%


@dataclass
class SplitStats:
    """Per-example statistics of one model on one split (arrays in dataset order).

    ``loss``: per-example loss (cross-entropy, or token-mean NLL of the completion). ``correct``: 1/0 per example
    (classifiers) or the number of correctly predicted completion tokens (LMs). ``tokens``: scored positions per
    example (1 for classifiers). ``min_k``: Min-K% Prob score (LMs; higher means "more likely a member").
    ``kl``: per-example KL(golden || model) (forget split with a golden model).
    """

    loss: np.ndarray
    correct: np.ndarray
    tokens: np.ndarray
    min_k: np.ndarray | None = None
    kl: np.ndarray | None = None
    #: causal LMs: per-example "exact_memorization", "extraction_strength", "min_k_04" (OpenUnlearning's Min-K%,
    #: k = 0.4, EOS excluded) and "min_k_plus_plus" (see ``metrics.generation`` and ``metrics.mia``)
    extra: dict[str, np.ndarray] = field(default_factory=dict)


@torch.no_grad()
def collect_stats(
    models: list[torch.nn.Module],
    rows: list[dict],
    collator: Any,
    kind: Any,
    batch_size: int = 32,
    kl_to_second: bool = False,
) -> list[SplitStats]:
    """One batched pass over ``rows`` for each model (models share the batches), each batch's statistics by the
    model ``kind`` (``ModelKind.batch_stats``). With ``kl_to_second`` (kinds with logits), also
    ``KL(models[1] || models[0])`` per example."""
    kl_to_second = kl_to_second and "logits" in kind.capabilities
    records = []  # (row positions, per-model stats, KL) of the batches this process evaluated
    with _all_eval(models):
        for (positions, batch), keep in this_process_share(
            make_batches(rows, collator, batch_size, kind=kind)
        ):
            per_model, for_kl = [], []
            for i, model in enumerate(models):
                logits = predictions_of(kind, model, batch)
                labels = batch["labels"].to(model_device(model))
                if keep:  # else a filler pass: a sharded model needs every process in every forward
                    per_model.append(_batch_stats(kind, logits, labels))
                if keep and kl_to_second and i < 2:
                    for_kl.append((logits, labels))
            if for_kl:
                (logits_m, labels), (logits_g, _) = for_kl
                kl = _kl_per_example(logits_g.to(logits_m.device), logits_m, labels).cpu().numpy()
            if keep:
                records.append((positions.numpy(), per_model, kl if for_kl else None))
    n = len(rows)
    out: list[dict[str, np.ndarray]] = [{} for _ in models]
    kl = np.zeros(n) if kl_to_second else None
    for idx, per_model, kl_values in (r for part in gather_from_processes(records) for r in part):
        for i, stats in enumerate(per_model):
            for key, value in stats.items():
                out[i].setdefault(key, np.zeros(n))[idx] = value
        if kl_to_second:
            kl[idx] = kl_values
    results = []
    for i, values in enumerate(out):
        core = ("loss", "correct", "tokens", "min_k")
        results.append(
            SplitStats(
                loss=values["loss"],
                correct=values["correct"],
                tokens=values["tokens"],
                min_k=values.get("min_k"),
                kl=kl if i == 0 else None,
                extra={k: v for k, v in values.items() if k not in core},
            )
        )
    return results


def predictions_of(kind: Any, model: torch.nn.Module, batch: dict) -> Any:
    """The predictions of ``model`` (of ``kind``) on a collated ``batch`` moved to the model's device."""
    return kind.forward(model, kind.model_inputs(batch, model_device(model)))[0]


class _all_eval:
    def __init__(self, models):
        self.contexts = [eval_mode(m) for m in models]

    def __enter__(self):
        for c in self.contexts:
            c.__enter__()

    def __exit__(self, *exc):
        for c in reversed(self.contexts):
            c.__exit__(*exc)


def _batch_stats(kind: Any, predictions: Any, labels: torch.Tensor) -> dict[str, np.ndarray]:
    return {k: v.float().cpu().numpy() for k, v in kind.batch_stats(predictions, labels).items()}


def token_stats(logits: torch.Tensor, labels: torch.Tensor, token_level: bool) -> dict[str, torch.Tensor]:
    """Per-example loss, correct predictions and scored positions of classifier or causal-LM ``logits``; with
    ``token_level``, also the causal-LM scores of the membership attacks and memorization metrics."""
    aligned, targets, mask = losses.positions(logits, labels)
    token_nll = losses.token_nll(aligned, targets)
    loss = losses.example_mean(token_nll, mask)
    correct = ((aligned.argmax(-1) == targets) & mask).sum(-1)
    stats = {"loss": loss, "correct": correct, "tokens": mask.sum(-1)}
    if token_level:
        stats["min_k"] = _min_k_scores(-token_nll, mask, MIN_K_FRACTION)
        stats.update(memorization_scores(logits, labels))
        stats["min_k_04"] = min_k_scores(logits, labels)
        stats["min_k_plus_plus"] = min_k_plus_plus_scores(logits, labels)
    return stats


def _min_k_scores(token_logprob: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """Min-K% Prob: mean log-prob of the ``ceil(fraction * n)`` least likely completion tokens of each example
    (NaN for an example without completion tokens)."""
    n = mask.sum(-1)
    k = torch.ceil(fraction * n.float()).clamp(min=1)
    lowest, _ = token_logprob.float().masked_fill(~mask, math.inf).sort(-1)
    take = torch.arange(lowest.shape[-1], device=lowest.device)[None, :] < k[:, None]
    score = torch.where(take, lowest, torch.zeros_like(lowest)).sum(-1) / k
    return torch.where(n > 0, score, torch.full_like(score, math.nan))


def _kl_per_example(logits_p: torch.Tensor, logits_q: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` of the predictive distributions, averaged over the scored positions of each example."""
    p, _, mask = losses.positions(logits_p, labels)
    q, _, _ = losses.positions(logits_q, labels)
    logp, logq = F.log_softmax(p.float(), -1), F.log_softmax(q.float(), -1)
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return losses.example_mean(kl, mask)
