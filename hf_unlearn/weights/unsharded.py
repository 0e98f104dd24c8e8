"""A plain, unsharded copy of an FSDP2-sharded model, for what needs the full weights on every process: the
attacks of ``metrics.attacks`` (quantizing a shard's rows is not quantizing the weight: FSDP2 shards a
``Conv1D`` weight ``[in, out]`` across its output channels' entries, and a scale is the maximum over the full
channel) and the weight distances of ``evaluate_unlearning``.

FSDP2 (``fully_shard``) refuses ``copy.deepcopy``; ``unsharded_copy`` gathers every DTensor parameter
(``full_tensor()``, a collective: every process calls it, in the same order) and rebuilds the module tree with
the plain classes underneath FSDP's, without FSDP's hooks.

``on_plain_copies`` runs a computation that trains (the relearning convergence delay) once, on rank 0's plain
copies, and hands its result to every process: the processes report one number even where training is not
bit-identical across devices, and the others do not spend the compute."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

import torch

from .distributed import is_dtensor, reshard

T = TypeVar("T")

#: the hook tables of an ``nn.Module`` that FSDP2 registers into (its entries are dropped from the copy)
_HOOK_TABLES = (
    "_forward_pre_hooks",
    "_forward_hooks",
    "_backward_pre_hooks",
    "_backward_hooks",
    "_state_dict_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)

#: the attributes ``fully_shard`` sets on a module (its state, kept by the composable-API registry)
_FSDP_ATTRIBUTES = ("__composable_api", "_fsdp_", "_is_fsdp_")


def is_fsdp2_sharded(model: torch.nn.Module) -> bool:
    """Whether any parameter of ``model`` is a DTensor (FSDP2's ``fully_shard``, tensor parallelism)."""
    return any(is_dtensor(p) for p in model.parameters())


@torch.no_grad()
def unsharded_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A plain copy of ``model`` whose parameters are the full tensors of its DTensor parameters (gathered on
    every process; plain parameters cloned), buffers copied, in eval/train mode as ``model``; ``model`` itself
    is only resharded (FSDP2's root keeps its gathered parameters after a forward). Every process must call it.
    A model without DTensor parameters is returned as it is."""
    if not is_fsdp2_sharded(model):
        return model
    reshard(model)
    full: dict[int, torch.nn.Parameter] = {}
    for p in model.parameters():  # the same order on every process: the gathers pair up
        value = p.full_tensor() if is_dtensor(p) else p
        # no clone: the deep copy below copies every tensor once
        full[id(p)] = torch.nn.Parameter(value.detach(), requires_grad=p.requires_grad)
    return copy.deepcopy(_rebuild(model, full, {}))


def on_plain_copies(fn: Callable[..., T], *models: torch.nn.Module | None) -> T:
    """``fn(*plain)``, where ``plain`` are ``unsharded_copy`` of ``models`` (None stays None; a model passed twice
    is gathered once, into one copy), computed by rank 0 alone and broadcast to every process; rank 0's exception
    is raised on every process (as its builtin class, else ``RuntimeError``). Every process must call it with
    the same models in the same order (the gathers are collectives); without a process group, ``fn(*plain)``."""
    import torch.distributed as dist

    copies: dict[int, torch.nn.Module] = {}
    for m in models:  # the same order on every process
        if m is not None and id(m) not in copies:
            copies[id(m)] = unsharded_copy(m)
    plain = [None if m is None else copies[id(m)] for m in models]
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return fn(*plain)
    outcome, error = None, None
    if dist.get_rank() == 0:
        try:
            outcome = fn(*plain)
        except Exception as caught:  # handed to the other processes, which would wait for rank 0 forever
            error = caught
    del plain, copies
    cls = type(error) if error is not None and type(error).__module__ == "builtins" else RuntimeError
    box = [(outcome, None if error is None else (cls, f"on rank 0: {error}"))]
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    outcome, failed = box[0]
    if failed is not None:
        raise failed[0](failed[1])
    return outcome


def _plain_class(cls: type) -> type:
    """The class underneath FSDP2's ``FSDP<Name>`` (``cls`` itself when it is not one)."""
    from torch.distributed.fsdp import FSDPModule

    if not issubclass(cls, FSDPModule):
        return cls
    return next(base for base in cls.__mro__[1:] if not issubclass(base, FSDPModule))


def _is_fsdp_hook(hook: object) -> bool:
    owner = getattr(hook, "__self__", None)
    return type(owner).__module__.startswith("torch.distributed.fsdp") or getattr(
        hook, "__module__", ""
    ).startswith("torch.distributed.fsdp")


def _rebuild(module: torch.nn.Module, full: dict, done: dict) -> torch.nn.Module:
    """A shallow copy of ``module`` (and its children, recursively) with plain classes, the ``full``
    parameters and no FSDP hook; ``unsharded_copy`` deep-copies the result so that nothing is shared."""
    if id(module) in done:  # a module registered twice (shared) stays one module
        return done[id(module)]
    new = torch.nn.Module.__new__(_plain_class(type(module)))
    new.__dict__.update({k: v for k, v in module.__dict__.items() if not k.startswith(_FSDP_ATTRIBUTES)})
    done[id(module)] = new
    new._parameters = {name: None if p is None else full[id(p)] for name, p in module._parameters.items()}
    new._buffers = dict(module._buffers)
    new._modules = {
        name: None if child is None else _rebuild(child, full, done)
        for name, child in module._modules.items()
    }
    for table in _HOOK_TABLES:
        hooks = getattr(module, table, None)
        if hooks:
            setattr(new, table, OrderedDict((k, h) for k, h in hooks.items() if not _is_fsdp_hook(h)))
    return new
