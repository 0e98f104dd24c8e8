"""The ``attack/*`` keys of ``evaluate_unlearning``: each attack's copies of the model, the golden model and the
original, measured on the forget set (the attack's held-out part), with the gap to golden under the attack.

Keys, for each attack ``<name>`` and each key ``<k>`` of the kind's ``attack_metrics`` (classifiers:
``forget/accuracy``, ``forget/loss``; causal LMs: ``forget/rouge_l_recall`` (with ``generation``),
``forget/token_accuracy``, ``forget/loss``, ``mia/min_k_auc`` (with a test set))::

    attack/<name>/<k>                  the attacked model
    attack/<name>/golden/<k>           the attacked golden model
    attack/<name>/original/<k>         the attacked original model
    attack/<name>/gap_to_golden        |model - golden| of the primary forget metric under the attack
    attack/none/...                    the same without attack (the comparison)
    attack/<name>/gap_to_golden_unattacked   for an attack measured on part of the forget set
                                       (relearn_partial): the gap on that part without the attack

The golden and original results of an attack are computed once per model, forget set and settings, and reused
when the same ``Attack`` objects evaluate further models (``hf-unlearn run`` evaluates three).

Under several processes (``accelerate launch``, ``torchrun``) every process applies each attack to its own copy
and evaluates its share of the forget set, and the shares are gathered (``metrics._passes``): one result, on
every process. An attack that trains (``Attack.trains``: ``relearn_partial``) has rank 0's copy broadcast first.
An FSDP2-sharded model (DTensor parameters) is gathered first (``weights.unsharded.unsharded_copy``, on every
process): the attacks act on the full weights, never on a shard's rows, and give one process's numbers.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ...weights.unsharded import unsharded_copy
from . import Attack, get_attack


class _NoAttack(Attack):
    """The identity (the model itself, not a copy): ``attack/none/*``."""

    name = "none"

    def __init__(self, eval_data: Any = None):
        self.eval_data = eval_data

    def split(self, forget_dataset: Any) -> tuple[Any, Any]:
        return None, forget_dataset if self.eval_data is None else self.eval_data

    def apply(
        self, model: torch.nn.Module, attack_data: Any = None, processing_class: Any = None
    ) -> torch.nn.Module:
        return model


# attack settings -> {model: {measurement key: metrics}}: the golden / original results reused across calls
_CACHE: dict[tuple, weakref.WeakKeyDictionary] = {}


def attack_metrics(
    model: torch.nn.Module,
    attacks: Sequence[str | Attack],
    *,
    forget_dataset: Any,
    test_dataset: Any = None,
    golden_model: torch.nn.Module | None = None,
    original_model: torch.nn.Module | None = None,
    processing_class: Any = None,
    batch_size: int = 32,
    generation: bool = False,
    max_new_tokens: int = 200,
    attention_mask: str = "length",
    progress: bool = False,
) -> dict[str, float]:
    """The ``attack/*`` keys (module docstring) of ``model`` under each of ``attacks`` (names or ``Attack``
    objects). None of the models is modified."""
    from ...kinds import get_model_kind

    kind = get_model_kind(model)
    resolved = [get_attack(a) for a in attacks]
    names = [a.name for a in resolved]
    if len(set(names)) != len(names):
        raise ValueError(f"attacks {names} repeat a name; give each Attack its own name.")
    measure = _Measure(
        kind, test_dataset, processing_class, batch_size, generation, max_new_tokens, attention_mask
    )
    models = {"": model, "golden/": golden_model, "original/": original_model}
    models = {prefix: m for prefix, m in models.items() if m is not None}
    # FSDP2-sharded models: every attack acts on the full weights (gathered on every process), as in one process
    plain = {prefix: unsharded_copy(m) for prefix, m in models.items()}
    out: dict[str, float] = {}
    for attack in tqdm([_NoAttack(), *resolved], desc="attacks", disable=not progress, leave=False):
        attack_data, eval_data = attack.split(forget_dataset)
        values = {
            prefix: measure.cached(
                attack, plain[prefix], attack_data, eval_data, prefix != "", models[prefix]
            )
            for prefix in models
        }
        out.update(_keys(attack.name, values, kind))
        if eval_data is not forget_dataset and golden_model is not None:
            identity = _NoAttack(eval_data)
            before = {
                p: measure.cached(identity, plain[p], None, eval_data, p != "", models[p])
                for p in ("", "golden/")
            }
            gap = _gap(before, kind)
            if gap is not None:
                out[f"attack/{attack.name}/gap_to_golden_unattacked"] = gap
    return out


def _keys(name: str, values: dict[str, dict[str, float]], kind: Any) -> dict[str, float]:
    out = {
        f"attack/{name}/{prefix}{key}": v for prefix, metrics in values.items() for key, v in metrics.items()
    }
    gap = _gap(values, kind)
    if gap is not None:
        out[f"attack/{name}/gap_to_golden"] = gap
    return out


def _gap(values: dict[str, dict[str, float]], kind: Any) -> float | None:
    """``|model - golden|`` of the first of the kind's primary forget metrics both have; None without golden."""
    if "golden/" not in values:
        return None
    for key in kind.primary_forget_metrics:
        if key in values[""] and key in values["golden/"]:
            return abs(values[""][key] - values["golden/"][key])
    return None


class _Measure:
    """The kind's ``attack_metrics`` of one (attacked) model on one forget part (and the test set)."""

    def __init__(self, kind, test_dataset, tokenizer, batch_size, generation, max_new_tokens, attention_mask):
        self.kind, self.test, self.tokenizer = kind, test_dataset, tokenizer
        self.batch_size, self.generation, self.max_new_tokens = batch_size, generation, max_new_tokens
        self.attention_mask = attention_mask

    def cached(
        self,
        attack: Attack,
        model: torch.nn.Module,
        attack_data: Any,
        eval_data: Any,
        reuse: bool,
        key: torch.nn.Module | None = None,
    ) -> dict:
        """The metrics of ``attack`` applied to ``model``; with ``reuse`` (golden, original), from an earlier call
        with the same attack settings, model (``key``: the model ``model`` is an unsharded copy of) and data when
        there was one."""
        key = model if key is None else key
        rows, collator = self._rows(model, eval_data, "forget_dataset")
        test = self._rows(model, self.test, "test_dataset") if self.test is not None else None
        data_key = (
            _fingerprint(self.kind, rows),
            test and _fingerprint(self.kind, test[0]),
            self._settings(),
        )
        settings = (type(attack).__name__, attack.name, repr(sorted(attack.options().items())))
        store = _CACHE.setdefault(settings, weakref.WeakKeyDictionary()) if reuse else None
        data_key = (*data_key, _weights_key(model))  # a model changed in place is measured again
        if store is not None and data_key in store.get(key, {}):
            return store[key][data_key]
        attacked = attack.apply(model, attack_data, self.tokenizer)
        if attack.trains:
            _broadcast_from_main(attacked)
        values = self._metrics(attacked, rows, collator, test)
        del attacked
        if store is not None:
            store.setdefault(key, {})[data_key] = values
        return values

    def _settings(self) -> tuple:
        return self.batch_size, self.generation, self.max_new_tokens, self.attention_mask

    def _rows(self, model, data, name):
        from .._passes import prepare

        rows, collator, _ = prepare(model, data, self.tokenizer, name, attention_mask=self.attention_mask)
        return rows, collator

    def _metrics(self, model, rows, collator, test) -> dict[str, float]:
        from .._stats import collect_stats
        from ..mia import membership_auc

        forget = collect_stats([model], rows, collator, self.kind, self.batch_size)[0]
        values = self.kind.summarize("forget", forget)
        wanted = self.kind.attack_metrics
        if test is not None and forget.min_k is not None and "mia/min_k_auc" in wanted:
            held = collect_stats([model], test[0], test[1], self.kind, self.batch_size)[0]
            values["mia/min_k_auc"] = membership_auc(forget.min_k, held.min_k)
        if self.generation and "forget/rouge_l_recall" in wanted:
            values["forget/rouge_l_recall"] = self._rouge_recall(model, rows)
        return {k: float(values[k]) for k in wanted if k in values}

    def _rouge_recall(self, model, rows) -> float:
        from ..generation import generate_completions, references_of, rouge_l

        if self.tokenizer is None:
            raise ValueError(
                "attacks with generation=True need processing_class (the tokenizer) for ROUGE-L."
            )
        texts = generate_completions(
            model,
            rows,
            self.tokenizer,
            self.max_new_tokens,
            self.batch_size,
            attention_mask=self.attention_mask,
        )
        recall = rouge_l(texts, references_of(rows, self.tokenizer))["recall"]
        return float(np.mean(recall)) if len(recall) else math.nan


@torch.no_grad()
def _broadcast_from_main(model: torch.nn.Module) -> None:
    """Under several processes, overwrite every process's weights and buffers of ``model`` with rank 0's (every
    process attacks its own copy, then evaluates its share of the forget set: the shares must be of one
    model). Nothing without a process group."""
    import torch.distributed as dist

    from .._passes import process_rank_and_count

    if process_rank_and_count()[1] == 1:
        return
    for tensor in [*model.parameters(), *model.buffers()]:
        dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def _weights_key(model: torch.nn.Module) -> tuple[float, float]:
    """Sums of the weights and of their absolute values: a cheap check that a cached model is unchanged."""
    params = [p.detach() for p in model.parameters()]
    if not params:
        return 0.0, 0.0
    total = torch.stack([p.double().sum() for p in params]).sum()
    absolute = torch.stack([p.double().abs().sum() for p in params]).sum()
    return float(total), float(absolute)


def _fingerprint(kind: Any, rows: list[dict]) -> int:
    return hash(tuple(kind.row_key(row) for row in rows))
