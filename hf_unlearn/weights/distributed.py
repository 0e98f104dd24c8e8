"""How a model's parameters are sharded across processes, and a check that the sharding asked for is there.

``accelerate launch`` with an FSDP or DeepSpeed config sets environment variables that the training script's
``Accelerator`` reads; on a machine without accelerators accelerate keeps the multi-CPU (DDP) path and drops
FSDP and DeepSpeed without a word, so every process trains a full replica. ``check_sharding`` turns that into
an error.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

import torch

FSDP = "fsdp"
ZERO3 = "deepspeed_zero3"
_TRUE = ("1", "true", "yes", "y", "on", "t")


class ShardingNotAppliedError(RuntimeError):
    """The launcher or the training arguments asked for sharded parameters, and the model has none."""


@functools.cache
def _dtensor_type():
    if not torch.distributed.is_available():
        return None
    from torch.distributed.tensor import DTensor

    return DTensor


def is_dtensor(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` is a ``torch.distributed.tensor.DTensor`` (an FSDP2 / tensor-parallel parameter)."""
    dtensor = _dtensor_type()
    return dtensor is not None and isinstance(tensor, dtensor)


def local_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """The part of ``tensor`` this process holds: the local shard of a DTensor (same storage, so in-place
    operations on it change the parameter), ``tensor`` itself otherwise."""
    return tensor._local_tensor if is_dtensor(tensor) else tensor


def local_tensors(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """``local_tensor`` of each of ``tensors`` (one type check for the list)."""
    dtensor = _dtensor_type()
    if dtensor is None:
        return list(tensors)
    return [t._local_tensor if isinstance(t, dtensor) else t for t in tensors]


def shard_offset(tensor: torch.Tensor) -> tuple[int, ...]:
    """Where this process's shard of a DTensor starts in the global tensor (one index per dimension; the same
    on replicas of a shard), from the chunk metadata distributed checkpoints use; all zeros for a plain tensor."""
    if not is_dtensor(tensor):
        return (0,) * tensor.dim()
    return tuple(int(i) for i in tensor.__create_chunk_list__()[0].offsets)


def reshard(model: torch.nn.Module) -> None:
    """Free the all-gathered parameters FSDP2 keeps after a forward without backward (its root module keeps
    them by default), so that the next forward gathers the shards again, e.g. after they were written to."""
    if not torch.distributed.is_available():
        return
    from torch.distributed.fsdp import FSDPModule

    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()


class HookHandles:
    """Hook handles registered together, removed together."""

    def __init__(self, *handles):
        self.handles = handles

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def is_state_init_step(optimizer: torch.optim.Optimizer) -> bool:
    """Whether the optimizer step about to run is the one ``torch.distributed.checkpoint`` takes to create an
    empty optimizer's state (``_init_optim_state``, before loading into it or saving a stateless optimizer):
    no state yet, every lr 0 and every gradient a zero tensor (only checked in the rare case of the first two)."""
    if optimizer.state or any(float(group["lr"]) != 0.0 for group in optimizer.param_groups):
        return False
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
    return all(g is not None for g in grads) and not any(bool(g.any()) for g in local_tensors(grads))


def parameter_sharding(model: torch.nn.Module) -> str | None:
    """How ``model``'s parameters are sharded: ``"fsdp2"`` (DTensor parameters), ``"fsdp1"`` (FSDP's flat
    parameters or wrapper modules), ``"deepspeed_zero3"`` (parameters partitioned by ZeRO-3, which carry a
    ``ds_id``), or None (plain tensors: every process holds all of them)."""
    params = list(model.parameters())
    if any(is_dtensor(p) for p in params):
        return "fsdp2"
    if any(hasattr(p, "ds_id") for p in params):
        return ZERO3
    if any(getattr(p, "_fsdp_flattened", False) for p in params) or any(
        type(m).__name__ == "FullyShardedDataParallel" for m in model.modules()
    ):
        return "fsdp1"
    return None


def requested_sharding(environ: Mapping[str, str] | None = None, args: Any = None) -> tuple[str, str] | None:
    """The parameter sharding that the launcher's environment (accelerate's ``ACCELERATE_USE_FSDP``,
    ``ACCELERATE_USE_DEEPSPEED`` with ``ACCELERATE_DEEPSPEED_ZERO_STAGE`` or the stage in
    ``ACCELERATE_DEEPSPEED_CONFIG_FILE``) or the training arguments (``fsdp``, a ``deepspeed`` config at
    ZeRO stage 3) ask for, as ``(kind, where it was asked)``; None when none is. DeepSpeed stages 1-2 shard
    optimizer state and gradients only, so they ask for no parameter sharding."""
    environ = os.environ if environ is None else environ
    if environ.get("ACCELERATE_USE_FSDP", "").lower() in _TRUE:
        return FSDP, f"ACCELERATE_USE_FSDP={environ['ACCELERATE_USE_FSDP']}"
    if args is not None and getattr(args, "fsdp", None):
        return FSDP, f"TrainingArguments.fsdp={args.fsdp!r}"
    if environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in _TRUE:
        stage = environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") or _config_file_stage(
            environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
        )
        if str(stage) == "3":
            return ZERO3, f"ACCELERATE_USE_DEEPSPEED with ZeRO stage {stage}"
    ds_config = getattr(args, "hf_deepspeed_config", None) if args is not None else None
    if ds_config is not None and ds_config.is_zero3():
        return ZERO3, "TrainingArguments.deepspeed (ZeRO stage 3)"
    return None


def _config_file_stage(path: str | None) -> Any:
    """``zero_optimization.stage`` of a DeepSpeed JSON config file (None when it cannot be read)."""
    if not path or path == "none" or not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f).get("zero_optimization", {}).get("stage")
    except (OSError, ValueError, AttributeError):
        return None


def check_sharding(trainer_or_accelerator: Any, model: torch.nn.Module, strict: bool = True) -> str | None:
    """Raise (``strict``) or warn when the launcher or the training arguments asked for sharded parameters
    (FSDP, DeepSpeed ZeRO-3) but ``model``'s parameters are not sharded, e.g. ``accelerate launch`` with an
    FSDP config on a CPU-only machine, where accelerate trains full replicas instead. Call it once the model is
    wrapped (a ``Trainer`` has done this when its training loop starts). Returns ``parameter_sharding(model)``.

    Args:
        trainer_or_accelerator: a ``transformers.Trainer`` (its ``accelerator`` and ``args`` are read) or an
            ``accelerate.Accelerator`` (only the environment is read for what was asked).
        model: the model as training sees it (wrapped or not).
        strict: raise ``ShardingNotAppliedError`` (default) rather than warn.
    """
    found = parameter_sharding(model)
    asked = requested_sharding(args=getattr(trainer_or_accelerator, "args", None))
    if asked is None or found is not None:
        return found
    accelerator = getattr(trainer_or_accelerator, "accelerator", trainer_or_accelerator)
    distributed_type = getattr(accelerator, "distributed_type", "unknown")
    processes = getattr(accelerator, "num_processes", "?")
    message = (
        f"Sharded training was asked for ({asked[0]}, from {asked[1]}), but the model's parameters are not "
        f"sharded: they are plain tensors (no DTensor, FSDP flat parameter or ZeRO-3 ds_id), so each of the "
        f"{processes} processes holds a full copy (accelerate's distributed type: {distributed_type}). "
        "Accelerate applies FSDP and DeepSpeed only on accelerators and falls back to replicated (DDP) "
        "training on CPUs without saying so. Launch on GPUs for sharding, or drop the FSDP / DeepSpeed "
        "settings to train replicated on purpose."
    )
    if strict:
        raise ShardingNotAppliedError(message)
    warnings.warn(message, stacklevel=2)
    return found
