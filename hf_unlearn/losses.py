"""Pure loss functions: tensors in, tensors out; no model, no trainer.

Shapes: classifiers have ``logits [B, K]`` and ``labels [B]``; causal LMs have ``logits [B, T, V]`` and
``labels [B, T]`` with ``-100`` on positions that carry no loss (prompt, padding). ``positions()`` maps both
to one layout, ``[B, P, C]`` logits with ``[B, P]`` targets and a ``[B, P]`` mask, so every loss below is
written once: a per-position quantity averaged per example (token-mean), then over the batch.

An LM's logits may also come as ``lm_head.ChunkedLogits`` (the LM head's inputs, ``[B, T, H]``): each loss
is then one per-position function that ``per_position`` evaluates chunk by chunk on the positions that carry
a loss, so that the full logits never exist (same numbers; ``UnlearningConfig.lm_loss_chunk_size``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from .kinds.lm_head import ChunkedLogits, map_positions

IGNORE_INDEX = -100

#: full logits (``[B, C]`` classifier, ``[B, T, V]`` LM) or an LM's chunked ones
Logits = torch.Tensor | ChunkedLogits


def positions(logits: Logits, labels: torch.Tensor) -> tuple[Logits, torch.Tensor, torch.Tensor]:
    """Align predictions with their targets: ``(logits [B, P, C], targets [B, P], mask [B, P])``.

    For LMs the logits at position t predict token t + 1 (the usual shift).
    """
    if isinstance(logits, ChunkedLogits):
        targets = labels[:, 1:]
        mask = targets != IGNORE_INDEX
        return logits.shifted(), targets.masked_fill(~mask, 0), mask
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


def num_classes(logits: Logits) -> int:
    """``C``: the number of classes (the vocabulary size for LMs)."""
    return logits.num_classes if isinstance(logits, ChunkedLogits) else logits.shape[-1]


def per_position(
    fn: Callable[..., torch.Tensor],
    logits: Logits | tuple[Logits, ...],
    mask: torch.Tensor,
    *token_args: torch.Tensor,
) -> torch.Tensor:
    """``fn(logits rows [N, C] of each source, rows of each token_arg) -> [N]`` over aligned positions -> ``[B, P]``.

    Full logits: one call on every position. ``ChunkedLogits``: chunks of the positions in ``mask`` only (the
    others are 0, which every loss below multiplies by the mask anyway).
    """
    sources = logits if isinstance(logits, tuple) else (logits,)
    if isinstance(sources[0], ChunkedLogits):
        return map_positions(fn, sources, mask, token_args)
    rows = [s.flatten(0, 1) for s in sources] + [arg.flatten(0, 1) for arg in token_args]
    return fn(*rows).view(mask.shape)


def _nll_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), targets, reduction="none")


def token_nll(logits: Logits, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Negative log-likelihood of ``targets [B, P]`` under ``logits [B, P, C]`` -> ``[B, P]`` (chunked logits:
    only at the positions in ``mask``, 0 elsewhere)."""
    mask = torch.ones_like(targets, dtype=torch.bool) if mask is None else mask
    return per_position(_nll_rows, logits, mask, targets)


def per_example_nll(logits: Logits, labels: torch.Tensor) -> torch.Tensor:
    """Per-example loss ``l(x, y)``: cross-entropy (classifiers) or token-mean NLL of the completion (LMs)."""
    logits, targets, mask = positions(logits, labels)
    return example_mean(token_nll(logits, targets, mask), mask)


def per_example_logprob(logits: Logits, labels: torch.Tensor) -> torch.Tensor:
    """Sequence log-probability ``log p(y | x)`` (summed over completion tokens for LMs) -> ``[B]``."""
    logits, targets, mask = positions(logits, labels)
    return -(token_nll(logits, targets, mask) * mask).sum(-1)


def logprob_from_nll(nll: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``per_example_logprob`` from ``per_example_nll`` (the token mean) and the labels: ``-nll * tokens``, so
    that a method that has the per-example loss needs no second pass over the logits (the LM head, chunked)."""
    if labels.dim() == 1:  # classifiers: one target per example
        return -nll
    return -nll * (labels[:, 1:] != IGNORE_INDEX).sum(-1).to(nll.dtype)


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


def wrong_label_kl(logits: Logits, labels: torch.Tensor) -> torch.Tensor:
    """``KL(q || p)`` with ``q`` uniform over every class except the true one, token-averaged -> ``[B]``.

    Closed form, without materialising ``q``: ``-log(C - 1) - mean_{c != y} log p_c``. It is 0 exactly when
    the model puts no mass on the true label and spreads the rest uniformly.
    """
    logits, targets, mask = positions(logits, labels)
    return example_mean(per_position(_wrong_label_kl_rows, logits, mask, targets), mask)


def _wrong_label_kl_rows(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    classes = logits.shape[-1]
    logp = F.log_softmax(logits.float(), dim=-1)
    sum_wrong = logp.masked_fill(F.one_hot(targets, classes).bool(), 0.0).sum(-1)
    return -math.log(classes - 1) - sum_wrong / (classes - 1)


def random_wrong_targets(labels: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Replace every target with a uniformly drawn different class (``-100`` positions kept)."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator, device=generator.device)
    wrong = (labels.clamp(min=0) + shift.to(labels.device)) % num_classes
    return torch.where(labels == IGNORE_INDEX, labels, wrong)


# -- the methods recent papers compare against (OpenUnlearning's definitions, src/trainer/utils.py) ----------
def simnpo_per_example(nll_mean: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    """SimNPO (Fan et al., 2024): ``-(2 / beta) * log sigmoid(beta * (l - delta))`` per example, ``l`` the
    length-normalized (token-mean) NLL of the completion: reference-free; falls as ``l`` grows."""
    return -(2.0 / beta) * F.logsigmoid(beta * (nll_mean - delta))


def dpo_per_example(win_logratio: torch.Tensor, lose_logratio: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO per example: ``-(2 / beta) * log sigmoid(beta * (win - lose))``; each log-ratio is ``log pi(y|x) -
    log pi_ref(y|x)`` of a whole completion (IdkDPO: win = the refusal, lose = the forget answer)."""
    return -(2.0 / beta) * F.logsigmoid(beta * (win_logratio - lose_logratio))


def token_weighted_nll(
    logits: Logits, labels: torch.Tensor, weight_of_prob
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_t w_t * nll_t, number of tokens)`` per example, the weights ``w_t = weight_of_prob(p_t)`` of the
    (detached) probability ``p_t`` of each completion token (WGA, SatImp)."""
    aligned, targets, mask = positions(logits, labels)
    nll = token_nll(aligned, targets, mask)
    weights = weight_of_prob(torch.exp(-nll.detach()))
    maskf = mask.to(nll.dtype)
    return (weights * nll * maskf).sum(-1), maskf.sum(-1)


def wga_weights(prob: torch.Tensor, beta: float) -> torch.Tensor:
    """WGA (Wang et al., 2025): ``p ** beta``: ascent leans on the tokens the model still predicts well."""
    return prob**beta


def satimp_weights(prob: torch.Tensor, beta1: float, beta2: float) -> torch.Tensor:
    """SatImp (Yang et al., 2025): ``p ** beta1 * (1 - p) ** beta2`` (saturation x importance)."""
    return prob**beta1 * (1.0 - prob) ** beta2


def pooled_ascent(
    sums: torch.Tensor, counts: torch.Tensor, active: torch.Tensor | None = None
) -> torch.Tensor:
    """``-sum(sums) / sum(counts)``: the token-level mean over the whole batch, as OpenUnlearning's WGA and
    SatImp take it; examples with ``active`` False contribute nothing (the divisor keeps their tokens)."""
    if active is not None:
        sums = torch.where(active, sums, torch.zeros_like(sums))
    return -sums.sum() / counts.sum().clamp(min=1.0)


def undial_per_example(logits: Logits, ref_logits: Logits, labels: torch.Tensor, beta: float) -> torch.Tensor:
    """UNDIAL (Dong et al., 2025): cross-entropy to the frozen model's distribution with the logit of each
    target token lowered by ``beta`` (self-distillation away from the memorized token), token-mean per example."""
    aligned, targets, mask = positions(logits, labels)
    ref, _, _ = positions(ref_logits, labels)
    ce = per_position(partial(_undial_rows, beta=beta), (aligned, ref), mask, targets)
    return example_mean(ce, mask)


def _undial_rows(logits: torch.Tensor, ref: torch.Tensor, targets: torch.Tensor, beta: float) -> torch.Tensor:
    lowered = (
        ref.detach()
        .float()
        .scatter_add(-1, targets.unsqueeze(-1), torch.full_like(ref[..., :1], -beta, dtype=torch.float32))
    )
    soft = F.softmax(lowered, dim=-1)
    return -(soft * F.log_softmax(logits.float(), dim=-1)).sum(-1)


def masked_activation_mse(hidden: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """RMU's activation loss per example: the squared difference averaged over the hidden size, then over the
    positions in ``mask`` (``[B, T]``) -> ``[B]``."""
    squared = (hidden.float() - target.detach().float()).pow(2).mean(-1)
    return example_mean(squared, mask)
