"""Influence removal by masking and SalUn's saliency masks: per-weight gradient magnitudes, the scores built
from them, the top fraction of the scores, and the weights or gradients it masks (re-exported by ``decay_noise``;
the selection over FSDP2 shards is ``weights.sharded``'s)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from .distributed import local_tensor


def gradient_magnitudes(
    model: torch.nn.Module,
    batches: Iterable[dict],
    loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor],
    per_batch: bool = True,
) -> dict[str, torch.Tensor]:
    """``sum_b |d loss_b / d theta|`` over batches for every trainable parameter (``per_batch=False``:
    ``|sum_b d loss_b / d theta|``, SalUn's saliency: the gradient of the whole set's loss). The model is
    left in eval mode. DTensor parameters (FSDP2) give their local shards' magnitudes: every process must run
    the same batches (FSDP averages the identical gradients over processes)."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    totals = {name: torch.zeros_like(local_tensor(p), dtype=torch.float32) for name, p in params.items()}
    was_training = model.training
    model.eval()
    for batch in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        for name, p in params.items():
            if p.grad is not None:
                grad = local_tensor(p.grad).detach().float()
                totals[name] += grad.abs() if per_batch else grad
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return totals if per_batch else {name: total.abs() for name, total in totals.items()}


def forget_only_scores(
    forget_grads: dict[str, torch.Tensor],
    retain_grads: dict[str, torch.Tensor],
    n_forget: int,
    n_retain: int,
    scale: float | None = None,
) -> dict[str, torch.Tensor]:
    """Score = mean forget-gradient magnitude / (mean retain-gradient magnitude + eps): high for weights that
    only the forget set moves (the neural analogue of the forget-only coordinates of the linear theory). ``eps``
    is 1e-3 x ``scale``, the mean retain magnitude over all weights (given: measured across shards)."""
    if scale is None:
        scale = torch.cat([g.flatten() for g in retain_grads.values()]).mean() / max(n_retain, 1)
    eps = float(scale) * 1e-3 + 1e-12
    return {
        name: (forget_grads[name] / max(n_forget, 1)) / (retain_grads[name] / max(n_retain, 1) + eps)
        for name in forget_grads
    }


def top_fraction(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """Boolean masks of the ``ratio`` fraction of all entries (over every tensor together) with the highest
    finite score: exactly ``max(1, int(ratio * n))`` of them, fewer when fewer scores are finite."""
    flat = torch.cat([s.detach().flatten().float().cpu() for s in scores.values()])
    finite = torch.isfinite(flat)
    k = min(max(1, int(ratio * flat.numel())), int(finite.sum()))
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    if k:
        chosen[torch.topk(torch.where(finite, flat, torch.full_like(flat, -math.inf)), k).indices] = True
    masks, start = {}, 0
    for name, score in scores.items():
        masks[name] = chosen[start : start + score.numel()].view(score.shape)
        start += score.numel()
    return masks


def retention_scores(
    forget_grads: dict[str, torch.Tensor], retain_grads: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Retention-based masking (RBM): among the weights the forget set moves (forget saliency > 0), the ones
    the retain data uses least score highest (score = -retain saliency); weights the forget set does not move
    are never candidates (-inf). The retain data decides; the forget set only says where to look."""
    return {
        name: torch.where(
            forget_grads[name] > 0, -retain_grads[name], torch.full_like(retain_grads[name], -math.inf)
        )
        for name in retain_grads
    }


def mask_top_scores(model: torch.nn.Module, scores: dict[str, torch.Tensor], ratio: float) -> int:
    """Zero the ``ratio`` fraction of trainable weights with the highest score. Returns how many were reset."""
    params = dict(model.named_parameters())
    reset = 0
    with torch.no_grad():
        for name, mask in top_fraction(scores, ratio).items():
            reset += int(mask.sum())
            params[name].masked_fill_(mask.to(params[name].device), 0.0)
    return reset


def mask_gradients(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> list:
    """Multiply the gradient of every trainable weight by its 0/1 mask as it is computed (before gradient
    clipping, accumulation and any all-reduce), so that the optimizer only moves the masked-in weights.
    Returns the hook handles."""
    handles = []
    for name, param in model.named_parameters():
        if param.requires_grad and name in masks:
            keep = masks[name].to(device=param.device, dtype=param.dtype)
            handles.append(param.register_hook(lambda grad, keep=keep: grad * keep))
    return handles
