"""Weight-space geometry shared by the metrics: effective weights under canonical names, distances, paths.

**The weight space.** Every model is seen through its *effective* weights, named like the parameters of the
plain ``transformers`` model underneath any wrapper:

* a plain model: its parameters (tied tensors counted once, under their first name);
* a PEFT LoRA layer: the merged weight ``W + sum_a scaling_a * B_a @ A_a`` over the active adapters (what the
  layer computes), under the base layer's name (``...c_attn.weight``, not ``...c_attn.base_layer.weight``);
* a PEFT ``modules_to_save`` wrapper: the active copy, under the wrapped module's name.

So a LoRA-unlearned model and its full-weight original are compared weight for weight, as if the adapters
had been merged. Distances are taken over the names both models have with equal shapes; parameters of other
adapter types (no counterpart in the original, e.g. prompt-learning encoders) are left out of distances but count
in path lengths.
DoRA magnitude vectors are not folded into the effective weight.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..data import unwrap_model

_CHUNK = 1 << 26  # elements per fused op when comparing whole models (bounds the temporary memory)


@dataclass
class Entry:
    """One effective weight tensor.

    ``kind`` is ``"plain"`` (a parameter), ``"lora"`` (a LoRA-adapted weight with factors) or ``"derived"``
    (any other computed weight). ``params`` are the parameters it depends on.
    """

    name: str
    kind: str
    params: list[torch.Tensor]
    value: Callable[[], torch.Tensor]
    factors: Callable[[Callable[[torch.Tensor], torch.Tensor]], tuple[torch.Tensor, torch.Tensor]] | None = (
        None
    )


def _peft_classes() -> tuple[type | None, type | None]:
    if "peft" not in sys.modules:  # no PEFT layer can exist if peft was never imported
        return None, None
    try:
        from peft.tuners.lora import LoraLayer
        from peft.utils.other import ModulesToSaveWrapper
    except ImportError:  # pragma: no cover - very old/new peft
        return None, None
    return LoraLayer, ModulesToSaveWrapper


def effective_entries(model: torch.nn.Module) -> dict[str, Entry]:
    """The effective weights of ``model`` by canonical name (see the module docstring)."""
    lora_cls, wrapper_cls = _peft_classes()
    entries: dict[str, Entry] = {}
    seen: set[int] = set()

    def add_plain(name: str, p: torch.Tensor) -> None:
        if id(p) in seen:
            return
        seen.add(id(p))
        entries[name] = Entry(name, "plain", [p], lambda p=p: p.detach())

    def visit(module: torch.nn.Module, prefix: str) -> None:
        if lora_cls is not None and isinstance(module, lora_cls):
            _add_lora(module, prefix, entries, seen, add_plain)
            return
        if wrapper_cls is not None and isinstance(module, wrapper_cls):
            active = module.active_adapters
            if getattr(module, "disable_adapters", False) or not active:
                visit(module.original_module, prefix)
            else:
                visit(module.modules_to_save[active[0]], prefix)
            return
        for pname, p in module.named_parameters(recurse=False):
            add_plain(prefix + pname, p)
        for cname, child in module.named_children():
            visit(child, f"{prefix}{cname}.")

    visit(unwrap_model(model), "")
    return entries


def _add_lora(module, prefix: str, entries: dict, seen: set, add_plain) -> None:
    base = module.get_base_layer()
    merged = bool(getattr(module, "merged", False))
    adapters = []
    if not merged and not module.disable_adapters:
        adapters = [a for a in module.active_adapters if a in module.lora_A or a in module.lora_embedding_A]
    for pname, p in base.named_parameters(recurse=False):
        if pname != "weight" or not adapters:
            add_plain(prefix + pname, p)
            continue
        seen.add(id(p))
        factor_params = [_lora_factor_params(module, a) for a in adapters]
        params = [p] + [t for pair in factor_params for t in pair]
        gram_ok = all(_gram_compatible(module, a) for a in adapters) and not any(
            getattr(module, "use_dora", {}).get(a, False) for a in adapters
        )

        def value(module=module, p=p, adapters=adapters):
            w = p.detach()
            for a in adapters:
                w = w + module.get_delta_weight(a).detach().to(w.dtype)
            return w

        def factors(get, module=module, adapters=adapters, factor_params=factor_params):
            # delta W = B_cat @ A_cat (up to a transpose, which keeps norms): the scaling goes into B.
            a_cat = torch.cat([get(a_p).flatten(1).float() for a_p, _ in factor_params])
            b_cat = torch.cat(
                [
                    get(b_p).flatten(1).float() * module.scaling[a]
                    for a, (_, b_p) in zip(adapters, factor_params)
                ],
                dim=1,
            )
            return a_cat, b_cat

        entries[prefix + pname] = Entry(
            prefix + pname, "lora" if gram_ok else "derived", params, value, factors if gram_ok else None
        )
        seen.update(id(t) for t in params)
    for name, p in module.named_parameters():  # trainable adapter parameters not folded in (e.g. DoRA)
        if id(p) not in seen and p.requires_grad and not name.startswith("base_layer."):
            add_plain(prefix + name, p)


def _lora_factor_params(module, adapter: str) -> tuple[torch.Tensor, torch.Tensor]:
    if adapter in module.lora_A:
        return module.lora_A[adapter].weight, module.lora_B[adapter].weight
    return module.lora_embedding_A[adapter], module.lora_embedding_B[adapter]


def _gram_compatible(module, adapter: str) -> bool:
    if adapter in module.lora_embedding_A:
        return True
    a, b = module.lora_A[adapter], module.lora_B[adapter]
    if isinstance(a, torch.nn.Linear) and isinstance(b, torch.nn.Linear):
        return True
    # conv LoRA with a 1x1 B kernel is still W + B_2d @ A_flat
    return (
        b.weight.dim() > 2
        and all(k == 1 for k in b.weight.shape[2:])
        and b.weight.shape[1] == a.weight.shape[0]
    )


def _sq_norm_of_differences(
    pairs: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device
) -> torch.Tensor:
    """``sum ||a - b||^2`` over the pairs, with fused ops in bounded chunks; returns a 0-d float32 tensor."""
    total = torch.zeros((), device=device, dtype=torch.float32)
    chunk_a: list[torch.Tensor] = []
    chunk_b: list[torch.Tensor] = []
    size = 0

    def flush() -> None:
        nonlocal total, size
        if chunk_a:
            diffs = torch._foreach_sub(chunk_a, chunk_b)
            norms = torch._foreach_norm(diffs)
            total = total + torch.stack([n.float().to(device) for n in norms]).pow(2).sum()
        chunk_a.clear()
        chunk_b.clear()
        size = 0

    for a, b in pairs:
        b = b.to(device=a.device, dtype=a.dtype)
        if chunk_a and (chunk_a[0].device != a.device or chunk_a[0].dtype != a.dtype):
            flush()
        chunk_a.append(a)
        chunk_b.append(b)
        size += a.numel()
        if size >= _CHUNK:
            flush()
    flush()
    return total


def shared_names(a: dict[str, Entry], b: dict[str, Entry]) -> list[str]:
    """Names present in both entry maps whose tensors have the same shape."""
    names = []
    for name, entry in a.items():
        other = b.get(name)
        if other is not None and entry.params[0].shape == other.params[0].shape:
            names.append(name)
    return names


@torch.no_grad()
def weight_distance(model_a: torch.nn.Module, model_b: torch.nn.Module) -> float:
    """L2 distance between the effective weights of two models over their shared canonical names."""
    a, b = effective_entries(model_a), effective_entries(model_b)
    names = shared_names(a, b)
    if not names:
        raise ValueError("The two models share no weight of the same name and shape; cannot compare them.")
    device = a[names[0]].params[0].device
    total = torch.zeros((), device=device)
    for name in names:  # one tensor at a time: derived (merged LoRA) weights are materialised one by one
        total = total + _sq_norm_of_differences([(a[name].value(), b[name].value())], device)
    return math.sqrt(float(total))


@dataclass
class WeightTracker:
    """Distance to a reference model and path length of a model while it trains, in effective weights.

    Call ``step()`` after every optimizer step: it adds ``||theta_{t+1} - theta_t||`` to the path using one
    fused subtract/norm/copy over the trainable parameters (plus ``r x r`` Gram products for LoRA weights, so
    merged LoRA weights are never materialised). ``distance()`` recomputes ``||theta_t - theta_ref||`` over the
    weights that can move; the part from frozen weights is computed once.
    """

    model: torch.nn.Module
    reference: torch.nn.Module | None = None
    entries: dict[str, Entry] = field(init=False)

    def __post_init__(self) -> None:
        self.entries = effective_entries(self.model)
        covered = {id(p) for e in self.entries.values() for p in e.params}
        for name, p in self.model.named_parameters():  # e.g. prompt-learning adapters outside the base model
            if p.requires_grad and id(p) not in covered:
                self.entries[name] = Entry(name, "plain", [p], lambda p=p: p.detach())
        trainable = {id(p) for p in self.model.parameters() if p.requires_grad}
        self.varying = [e for e in self.entries.values() if any(id(p) in trainable for p in e.params)]
        first = next(iter(self.entries.values()), None)
        self.device = first.params[0].device if first is not None else torch.device("cpu")
        # distance bookkeeping
        self.ref_values: dict[str, torch.Tensor] = {}
        self.constant_sq = torch.zeros((), device=self.device)
        self.comparable = 0
        if self.reference is not None:
            ref = effective_entries(self.reference)
            names = shared_names(self.entries, ref)
            self.comparable = len(names)
            varying_names = {e.name for e in self.varying}
            with torch.no_grad():
                for name in names:
                    if name in varying_names:
                        value = ref[name].value()
                        device = self.entries[name].params[0].device
                        self.ref_values[name] = value.to(device, self.entries[name].params[0].dtype)
                    else:
                        self.constant_sq = self.constant_sq + _sq_norm_of_differences(
                            [(self.entries[name].value(), ref[name].value())], self.device
                        ).to(self.device)
        # path bookkeeping: previous values of the trainable parameters (and of derived weights)
        self.plain = [e.params[0] for e in self.varying if e.kind == "plain"]
        self.lora = [e for e in self.varying if e.kind == "lora"]
        self.derived = [e for e in self.varying if e.kind == "derived"]
        self.lora_params = list({id(p): p for e in self.lora for p in e.params[1:]}.values())
        self.path = torch.zeros((), device=self.device, dtype=torch.float32)
        self.reset_previous()

    @torch.no_grad()
    def reset_previous(self) -> None:
        """Take the current weights as ``theta_t`` (after construction, or after restoring a snapshot)."""
        self.prev_plain = [p.detach().clone() for p in self.plain]
        self.prev_lora = {id(p): p.detach().clone() for p in self.lora_params}
        self.prev_derived = [e.value().clone() for e in self.derived]

    @torch.no_grad()
    def step(self) -> None:
        """Add ``||theta_{t+1} - theta_t||`` to the path; stays on the device (no synchronisation)."""
        sq = torch.zeros((), device=self.device, dtype=torch.float32)
        for entry in self.lora:
            sq = sq + _lora_step_sq(entry, self.prev_lora).to(self.device)
        if self.plain:
            torch._foreach_sub_(self.prev_plain, self.plain)
            norms = torch._foreach_norm(self.prev_plain)
            sq = sq + torch.stack([n.float().to(self.device) for n in norms]).pow(2).sum()
            torch._foreach_copy_(self.prev_plain, self.plain)
        if self.lora_params:
            prev = [self.prev_lora[id(p)] for p in self.lora_params]
            torch._foreach_copy_(prev, self.lora_params)
        for i, entry in enumerate(self.derived):
            value = entry.value()
            sq = sq + (value - self.prev_derived[i]).float().pow(2).sum().to(self.device)
            self.prev_derived[i] = value.clone()
        self.path = self.path + sq.sqrt()

    @torch.no_grad()
    def distance(self) -> float | None:
        """``||theta_t - theta_ref||`` over the shared weights, or None without a reference."""
        if self.reference is None or not self.comparable:
            return None
        pairs = [(e.value(), self.ref_values[e.name]) for e in self.varying if e.name in self.ref_values]
        total = self.constant_sq + _sq_norm_of_differences(pairs, self.device)
        return math.sqrt(float(total))

    def path_length(self) -> float:
        return float(self.path)


def _lora_step_sq(entry: Entry, prev: dict[int, torch.Tensor]) -> torch.Tensor:
    """``||B'A' - BA||_F^2`` from ``r x r`` products of the factors and their small differences (exact, and
    free of the cancellation of ``||B'A'||^2 - 2<B'A', BA> + ||BA||^2``)."""
    a_old, b_old = entry.factors(lambda p: prev[id(p)])
    a_new, b_new = entry.factors(lambda p: p.detach())
    d_a, d_b = a_new - a_old, b_new - b_old
    # B'A' - BA = B' dA + dB A
    term_1 = ((b_new.T @ b_new) * (d_a @ d_a.T)).sum()
    term_2 = ((d_b.T @ d_b) * (a_old @ a_old.T)).sum()
    term_3 = ((b_new.T @ d_b) * (d_a @ a_old.T)).sum()
    return (term_1 + term_2 + 2 * term_3).clamp(min=0.0)
