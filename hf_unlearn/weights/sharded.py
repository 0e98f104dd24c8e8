"""Influence removal and SalUn's masks on FSDP2 shards: scores on each process's local shards, one selection
over the whole model.

``influence.top_fraction`` picks the ``ratio`` fraction of highest scores over every tensor together. On a
model whose parameters are DTensors sharded along dimension 0 (FSDP2 on a 1-D mesh) each process only holds
its rows of the scores, so a per-process top-k would pick a different set. ``global_top_fraction`` finds the
exact k-th largest score of the whole model instead (bisection on the float bits, one all-reduced count per
step, ~32 steps) and marks, on each shard, the scores above it plus, among the scores equal to it, the first
ones in the order of the unsharded flat vector (parameters in ``named_parameters`` order, row-major) until
exactly ``k`` are marked. It is the unsharded selection wherever no two scores tie at the threshold; among tied
scores ``torch.topk`` (unsharded) picks any, this picks the first.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from .distributed import is_dtensor, local_tensor, shard_offset

_NON_FINITE = -(2**31)  # below the key of every finite float32
_MAGNITUDE_BITS = 0x7FFFFFFF


def sharded_parameters(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The trainable parameters of ``model`` by name when they are FSDP2 DTensors sharded along dimension 0 of
    a 1-D mesh; None when none is a DTensor. Raises ``NotImplementedError`` for other layouts (a mix of plain
    and DTensor parameters, tensor parallelism, HSDP's 2-D mesh)."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    sharded = [name for name, p in params.items() if is_dtensor(p)]
    if not sharded:
        return None
    from torch.distributed.tensor import Shard

    unsupported = [
        name
        for name, p in params.items()
        if not is_dtensor(p) or p.device_mesh.ndim != 1 or tuple(p.placements) != (Shard(0),)
    ]
    if unsupported:
        raise NotImplementedError(
            "influence_removal and SalUn's masks on sharded parameters support FSDP2 on a 1-D mesh (every "
            f"trainable parameter a DTensor sharded along dimension 0); {unsupported[0]!r} is not. Shard the "
            "whole model with fully_shard (accelerate's FSDP with fsdp_version: 2) or train unsharded."
        )
    return params


def _keys(score: torch.Tensor) -> torch.Tensor:
    """int32 keys ordered as the float32 scores (-0.0 and 0.0 the same); non-finite scores get ``_NON_FINITE``."""
    value = score.detach().float() + 0.0  # -0.0 + 0.0 = 0.0: topk treats them as equal, so must the keys
    bits = value.view(torch.int32)
    keys = bits ^ ((bits >> 31) & _MAGNITUDE_BITS)
    return torch.where(torch.isfinite(value), keys, torch.full_like(keys, _NON_FINITE))


class _Reducer:
    """All-reduces of Python numbers over the process group of the sharded parameters."""

    def __init__(self, param: torch.Tensor):
        self.group = param.device_mesh.get_group()
        self.device = local_tensor(param).device

    def __call__(self, value: int, op=dist.ReduceOp.SUM) -> int:
        tensor = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.all_reduce(tensor, op=op, group=self.group)
        return int(tensor.item())

    def gather(self, values: list[int]) -> torch.Tensor:
        """``values`` of every rank, as a (world, len(values)) CPU tensor."""
        tensor = torch.tensor(values, dtype=torch.int64, device=self.device)
        out = [torch.empty_like(tensor) for _ in range(dist.get_world_size(self.group))]
        dist.all_gather(out, tensor, group=self.group)
        return torch.stack(out).cpu()


def global_top_fraction(
    scores: dict[str, torch.Tensor], params: dict[str, torch.Tensor], ratio: float
) -> dict[str, torch.Tensor]:
    """Local-shard boolean masks of the ``ratio`` fraction of all entries of the global ``scores`` (local
    shards of ``params``, in their order) with the highest finite score: exactly ``max(1, int(ratio * n))`` of
    them over all processes, fewer when fewer scores are finite (as ``influence.top_fraction``; ties at the
    threshold go to the first in global flat order). Every process of the mesh must call it."""
    reduce = _Reducer(next(iter(params.values())))
    keys = {name: _keys(score).flatten() for name, score in scores.items()}
    total = sum(params[name].numel() for name in scores)
    finite = reduce(sum(int((key != _NON_FINITE).sum()) for key in keys.values()))
    k = min(max(1, int(ratio * total)), finite)
    if k == 0:
        return {name: torch.zeros_like(score, dtype=torch.bool) for name, score in scores.items()}
    threshold = _kth_largest(keys, k, reduce)
    above = {name: key > threshold for name, key in keys.items()}
    need = k - reduce(sum(int(mask.sum()) for mask in above.values()))
    ties = _first_ties(keys, threshold, need, params, reduce)
    return {name: (above[name] | ties[name]).view(scores[name].shape) for name in scores}


def _kth_largest(keys: dict[str, torch.Tensor], k: int, reduce: _Reducer) -> int:
    """The largest key ``t`` with at least ``k`` keys >= ``t`` over all processes: the k-th largest."""
    finite = [key[key != _NON_FINITE] for key in keys.values()]
    local_min = min((int(key.min()) for key in finite if key.numel()), default=2**31 - 1)
    local_max = max((int(key.max()) for key in finite if key.numel()), default=_NON_FINITE)
    low, high = reduce(local_min, dist.ReduceOp.MIN), reduce(local_max, dist.ReduceOp.MAX)
    while low < high:
        mid = (low + high + 1) // 2
        if reduce(sum(int((key >= mid).sum()) for key in keys.values())) >= k:
            low = mid
        else:
            high = mid - 1
    return low


def _first_ties(
    keys: dict[str, torch.Tensor],
    threshold: int,
    need: int,
    params: dict[str, torch.Tensor],
    reduce: _Reducer,
) -> dict[str, torch.Tensor]:
    """Of the keys equal to ``threshold``, the first ``need`` in global flat order, as local masks: the shards
    of one parameter follow each other by offset, the parameters in the order of ``keys``."""
    ties = {name: key == threshold for name, key in keys.items()}
    names = list(keys)
    counts = reduce.gather([int(ties[name].sum()) for name in names])  # (world, parameters)
    offsets = reduce.gather([shard_offset(params[name])[0] for name in names])
    rank = dist.get_rank(reduce.group)
    before = 0  # ties in the parameters before this one
    chosen = {}
    for j, name in enumerate(names):
        # shards earlier in the tensor (empty shards hold no ties, so their offset does not matter)
        earlier = (offsets[:, j] < offsets[rank, j]) | (
            (offsets[:, j] == offsets[rank, j]) & (torch.arange(len(offsets)) < rank)
        )
        take = max(0, min(int(counts[rank, j]), need - before - int(counts[earlier, j].sum())))
        chosen[name] = ties[name] & (ties[name].cumsum(0) <= take)
        before += int(counts[:, j].sum())
    return chosen


def retain_scale(retain: dict[str, torch.Tensor], params: dict[str, torch.Tensor], n_retain: int) -> float:
    """``influence.forget_only_scores``'s scale, the mean retain-gradient magnitude over the whole model per
    retain example, from local shards (summed in float64 across processes; the unsharded mean is float32's)."""
    first = next(iter(params.values()))
    local = sum(float(shard.double().sum()) for shard in retain.values())
    tensor = torch.tensor([local], dtype=torch.float64, device=local_tensor(first).device)
    dist.all_reduce(tensor, group=first.device_mesh.get_group())
    total = sum(params[name].numel() for name in retain)
    mean = torch.tensor(float(tensor.item()) / max(total, 1), dtype=torch.float32)
    return float(mean / max(n_retain, 1))


@torch.no_grad()
def mask_top_scores(params: dict[str, torch.Tensor], scores: dict[str, torch.Tensor], ratio: float) -> int:
    """Zero, on the local shards, the ``ratio`` fraction of weights of the whole model with the highest score
    (``global_top_fraction``). Returns how many were reset over all processes."""
    masks = global_top_fraction(scores, params, ratio)
    for name, mask in masks.items():
        local_tensor(params[name]).masked_fill_(mask.to(local_tensor(params[name]).device), 0.0)
    return count_true(params, masks)


def count_true(params: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> int:
    """How many entries of the local-shard ``masks`` are set, over all processes."""
    return _Reducer(next(iter(params.values())))(sum(int(mask.sum()) for mask in masks.values()))


@torch.no_grad()
def mask_local_gradients(model: torch.nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the gradient shards outside ``masks`` (local-shard shaped): FSDP2 writes the sharded gradients after
    its reduce-scatter, outside autograd, so ``influence.mask_gradients``' tensor hooks never see them; call
    this after each backward (masking the sum again is harmless: the masks are 0/1)."""
    for name, param in model.named_parameters():
        if param.grad is not None and name in masks:
            grad = local_tensor(param.grad)
            grad.masked_fill_(~masks[name].to(grad.device), 0.0)


def gather_masks(params: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The full masks from the local-shard ones (on CPU; every process of the mesh must call it)."""
    from torch.distributed.tensor import DTensor

    full = {}
    for name, mask in masks.items():
        param = params[name]
        local = mask.to(device=local_tensor(param).device, dtype=torch.uint8)
        gathered = DTensor.from_local(
            local,
            param.device_mesh,
            param.placements,
            run_check=False,
            shape=param.shape,
            stride=param.stride(),
        ).full_tensor()
        full[name] = gathered.bool().cpu()
    return full


def local_masks(params: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The local-shard rows of full ``masks`` (a checkpoint's), for this process's shards of ``params``."""
    local = {}
    for name, mask in masks.items():
        start, rows = shard_offset(params[name])[0], local_tensor(params[name]).shape[0]
        local[name] = mask[start : start + rows]
    return local
