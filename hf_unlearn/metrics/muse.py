"""MUSE's own numbers (Shi et al., 2025: VerbMem, KnowMem, PrivLeak) on MUSE's evaluation sets, as
OpenUnlearning computes them (``configs/eval/muse_metrics/{forget_verbmem_ROUGE,forget_knowmem_ROUGE,
retain_knowmem_ROUGE,privleak,mia_min_k}.yaml``; ``src/evals/metrics/memorization.py:rouge``,
``utils.py:eval_text_similarity``, ``privacy.py:privleak``, ``mia/min_k.py``).

``evaluate_unlearning(..., muse_datasets={...})`` adds, for the sets given (names as ``MUSE_SETS``; rows as
``hf_unlearn.sources`` makes them from a MUSE copy):

* ``muse/verbmem_rouge`` (VerbMem): mean ROUGE-L F1 of the greedy continuation (128 new tokens, stopped at
  EOS) of each ``verbmem_forget`` prompt against its true continuation.
* ``muse/knowmem_forget_rouge`` / ``muse/knowmem_retain_rouge`` (KnowMem): mean ROUGE-L F1 of the greedy answer
  (32 new tokens, cut at EOS, ``"\\n\\n"``, ``"\\nQuestion"`` and ``"Question:"``) to each few-shot knowmem
  question against its answer.
* ``muse/min_k_auc``: the ROC AUC of telling ``privleak_forget`` (members) from ``privleak_holdout``
  (non-members) by Min-K% (k = 0.4), 1 = the forget excerpts plainly still in the model (``metrics.mia``);
  with a golden model also ``golden/muse/min_k_auc`` and ``muse/privleak`` (PrivLeak):
  ``((1 - AUC) - (1 - AUC_golden)) / (1 - AUC_golden) x 100``, MUSE's ``(AUC - AUC_retrain) / AUC_retrain``
  in MUSE's AUC convention (``1 - ours``): 0 = like the golden model, negative = under-unlearned.

ROUGE-L is ``rouge_score``'s with the Porter stemmer (OpenUnlearning's; MUSE's own scripts score without it).
Greedy generations are batched and left-padded (``metrics.generation``); the reference is the decoded
completion.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import mia
from .generation import generate_completions, references_of, rouge_l

VERBMEM_MAX_NEW_TOKENS = 128  # forget_verbmem_ROUGE.yaml
KNOWMEM_MAX_NEW_TOKENS = 32  # forget_knowmem_ROUGE.yaml, retain_knowmem_ROUGE.yaml
KNOWMEM_STOP = ("\n\n", "\nQuestion", "Question:")  # their generation_args.stopwords
MUSE_SETS = ("verbmem_forget", "knowmem_forget", "knowmem_retain", "privleak_forget", "privleak_holdout")
#: (set, key, new tokens, stop strings) of the generated metrics
GENERATED = (
    ("verbmem_forget", "muse/verbmem_rouge", VERBMEM_MAX_NEW_TOKENS, ()),
    ("knowmem_forget", "muse/knowmem_forget_rouge", KNOWMEM_MAX_NEW_TOKENS, KNOWMEM_STOP),
    ("knowmem_retain", "muse/knowmem_retain_rouge", KNOWMEM_MAX_NEW_TOKENS, KNOWMEM_STOP),
)


def check_muse_datasets(muse_datasets: dict[str, Any] | None) -> None:
    """``ValueError`` unless ``muse_datasets`` is ``None`` or a dict of ``MUSE_SETS`` names."""
    if muse_datasets is None:
        return
    if not isinstance(muse_datasets, dict):
        raise ValueError("muse_datasets must be a dict {name: dataset}.")
    unknown = sorted(set(muse_datasets) - set(MUSE_SETS))
    if unknown:
        raise ValueError(f"muse_datasets: unknown set(s) {unknown}; the names are {list(MUSE_SETS)}.")
    pair = [name for name in ("privleak_forget", "privleak_holdout") if name in muse_datasets]
    if len(pair) == 1:
        raise ValueError(
            f"muse_datasets has {pair[0]!r} without its pair: PrivLeak needs privleak_forget and privleak_holdout."
        )


def muse_metrics(
    model: torch.nn.Module,
    muse_datasets: dict[str, Any],
    *,
    golden_model: torch.nn.Module | None = None,
    processing_class: Any = None,
    batch_size: int = 32,
    attention_mask: str = "length",
) -> dict[str, float]:
    """MUSE's keys (module docstring) of ``model`` on the sets of ``muse_datasets`` that are given."""
    out: dict[str, float] = {}
    for name, key, new_tokens, stop in GENERATED:
        if name in muse_datasets:
            out[key] = _rouge_f1(
                model,
                muse_datasets[name],
                name,
                processing_class,
                new_tokens,
                stop,
                batch_size,
                attention_mask,
            )
    if "privleak_forget" in muse_datasets:
        models = [model] if golden_model is None else [model, golden_model]
        scores = {
            name: _min_k(models, muse_datasets[name], name, processing_class, batch_size, attention_mask)
            for name in ("privleak_forget", "privleak_holdout")
        }
        aucs = [
            mia.attack_auc(scores["privleak_forget"][i], scores["privleak_holdout"][i])
            for i in range(len(models))
        ]
        out["muse/min_k_auc"] = aucs[0]
        if golden_model is not None:
            out["golden/muse/min_k_auc"] = aucs[1]
            out["muse/privleak"] = mia.privleak(aucs[0], aucs[1])
    return out


def _rouge_f1(
    model: torch.nn.Module,
    data: Any,
    name: str,
    tokenizer: Any,
    new_tokens: int,
    stop: tuple[str, ...],
    batch_size: int,
    attention_mask: str,
) -> float:
    from ._passes import prepare

    rows, _, _ = prepare(model, data, tokenizer, f"muse_datasets[{name!r}]", attention_mask=attention_mask)
    texts = generate_completions(
        model, rows, tokenizer, new_tokens, batch_size, attention_mask=attention_mask, stop=stop
    )
    return float(rouge_l(texts, references_of(rows, tokenizer))["f1"].mean())


def _min_k(
    models: list[torch.nn.Module], data: Any, name: str, tokenizer: Any, batch_size: int, attention_mask: str
) -> list[np.ndarray]:
    """Min-K% (k = 0.4) scores of each model on ``data`` (one shared batched pass)."""
    from ._passes import prepare
    from ._stats import collect_stats

    rows, collator, kind = prepare(
        models[0], data, tokenizer, f"muse_datasets[{name!r}]", attention_mask=attention_mask
    )
    return [s.extra["min_k_04"] for s in collect_stats(models, rows, collator, kind, batch_size)]
