"""Pure loss functions: tensors in, tensors out; no model, no trainer.

Shapes: classifiers have ``logits [B, K]`` and ``labels [B]``; causal LMs have ``logits [B, T, V]`` and
``labels [B, T]`` with ``-100`` on positions that carry no loss (prompt, padding). ``positions()`` maps both
to one layout, ``[B, P, C]`` logits with ``[B, P]`` targets and a ``[B, P]`` mask, so every loss below is
written once: a per-position quantity averaged per example (token-mean), then over the batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def positions(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Align predictions with their targets: ``(logits [B, P, C], targets [B, P], mask [B, P])``.

    For LMs the logits at position t predict token t + 1 (the usual shift).
    """
    if logits.dim() == 2:
        return (
            logits.unsqueeze(1),
            labels.unsqueeze(1),
            torch.ones_like(labels, dtype=torch.bool).unsqueeze(1),
        )
    logits, targets = logits[:, :-1], labels[:, 1:]
    mask = targets != IGNORE_INDEX
    return logits, targets.masked_fill(~mask, 0), mask


def example_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values [B, P]`` over the masked positions of each example -> ``[B]``."""
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of ``targets [B, P]`` under ``logits [B, P, C]`` -> ``[B, P]``."""
    return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction="none").view(
        targets.shape
    )


def per_example_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example loss ``l(x, y)``: cross-entropy (classifiers) or token-mean NLL of the completion (LMs)."""
    logits, targets, mask = positions(logits, labels)
    return example_mean(token_nll(logits, targets), mask)


def per_example_logprob(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sequence log-probability ``log p(y | x)`` (summed over completion tokens for LMs) -> ``[B]``."""
    logits, targets, mask = positions(logits, labels)
    return -(token_nll(logits, targets) * mask).sum(-1)


def capped_ascent(
    forget_losses: torch.Tensor, cap: float | None, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Gradient-ascent term ``-mean(min(l, cap))``: examples whose loss passed ``cap`` stop being pushed, and so
    do those whose loss reached their own ``target`` (``below_target_mean``)."""
    capped = forget_losses if cap is None else forget_losses.clamp(max=cap)
    return -below_target_mean(capped, forget_losses, target)


def npo_loss(logprob: torch.Tensor, ref_logprob: torch.Tensor, beta: float) -> torch.Tensor:
    """Negative preference optimization: ``(2 / beta) * mean(log(1 + (pi / pi_ref) ** beta))``.

    Equals ``(2 / beta) * log 2`` when the model equals the reference; decreases as ``pi`` falls below it.
    """
    return npo_per_example(logprob, ref_logprob, beta).mean()


def npo_per_example(logprob: torch.Tensor, ref_logprob: torch.Tensor, beta: float) -> torch.Tensor:
    """The per-example terms of ``npo_loss``: ``(2 / beta) * log(1 + (pi / pi_ref) ** beta)``."""
    return (2.0 / beta) * F.softplus(beta * (logprob - ref_logprob))


def below_target_mean(
    values: torch.Tensor, forget_nll: torch.Tensor, target: torch.Tensor | None
) -> torch.Tensor:
    """``values.mean()`` with the examples whose forget loss reached their ``target`` counted as zero (they stop
    being pushed; the divisor stays the batch size). ``target=None``: the plain mean."""
    if target is None:
        return values.mean()
    below = forget_nll.detach() < target.to(forget_nll)
    return torch.where(below, values, torch.zeros_like(values)).sum() / values.numel()


def wrong_label_kl(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``KL(q || p)`` with ``q`` uniform over every class except the true one, token-averaged -> ``[B]``.

    Closed form, without materialising ``q``: ``-log(C - 1) - mean_{c != y} log p_c``. It is 0 exactly when
    the model puts no mass on the true label and spreads the rest uniformly.
    """
    logits, targets, mask = positions(logits, labels)
    num_classes = logits.shape[-1]
    logp = F.log_softmax(logits.float(), dim=-1)
    true_class = F.one_hot(targets, num_classes).bool()
    sum_wrong = logp.masked_fill(true_class, 0.0).sum(-1)
    kl = -math.log(num_classes - 1) - sum_wrong / (num_classes - 1)
    return example_mean(kl, mask)


def random_wrong_targets(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Replace every target with a uniformly drawn different class (``-100`` positions kept)."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator, device=generator.device)
    wrong = (labels.clamp(min=0) + shift.to(labels.device)) % num_classes
    return torch.where(labels == IGNORE_INDEX, labels, wrong)
