"""The causal-LM keys of ``evaluate_unlearning`` that stand next to OpenUnlearning's TOFU / MUSE numbers:
memorization, TOFU probability and truth ratio, forget quality, model utility, the LM membership attacks,
PrivLeak and (with ``generation=True``) ROUGE-L of greedy generations. ``evaluate_unlearning`` has already
made one pass per model and split (``SplitStats``); this module adds what needs more: the paraphrased and
perturbed answers, a reference model, generations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import mia, tofu
from .generation import TOFU_MAX_NEW_TOKENS, generate_completions, references_of, rouge_l


@dataclass
class LMEvalInputs:
    """What ``evaluate_unlearning`` hands over: canonical rows, raw data and per-example stats per split."""

    rows: dict[str, list[dict]]
    raw: dict[str, Any]
    stats: dict[str, Any]
    golden_stats: dict[str, Any]
    collator: Any
    tokenizer: Any
    batch_size: int = 32
    # extra model-utility splits by name (TOFU: real authors, world facts)
    utility: dict[str, Any] | None = None
    kind: Any = None  # the model kind (its batch statistics)

    @property
    def attention_mask(self) -> str:
        """How every further pass masks its batches: the same way as the collator of the first passes."""
        return self.collator.attention_mask


def lm_metrics(
    model: torch.nn.Module,
    inputs: LMEvalInputs,
    golden_model: torch.nn.Module | None = None,
    reference_model: torch.nn.Module | None = None,
    generation: bool = False,
    max_new_tokens: int = TOFU_MAX_NEW_TOKENS,
) -> dict[str, float]:
    out: dict[str, float] = {}
    stats, golden = inputs.stats, inputs.golden_stats
    for split in ("forget", "retain"):
        out[f"{split}/probability"] = float(np.mean(tofu.probability(stats[split].loss)))
    out["forget/exact_memorization"] = _nanmean(stats["forget"].extra["exact_memorization"])
    out["forget/extraction_strength"] = _nanmean(stats["forget"].extra["extraction_strength"])
    if "test" in stats:
        texts = None
        if inputs.tokenizer is not None:  # the zlib attack compresses the decoded completions
            texts = {
                split: references_of(inputs.rows[split], inputs.tokenizer) for split in ("forget", "test")
            }
        out.update(_attacks("", stats, texts))
        if reference_model is not None:
            out["mia/reference_auc"] = _reference_auc(model, reference_model, inputs)
        if "test" in golden:
            golden_attacks = _attacks("golden/", golden, texts)
            out.update(golden_attacks)
            out["privleak"] = mia.privleak(out["mia/min_k_04_auc"], golden_attacks["golden/mia/min_k_04_auc"])
    ratios = _truth_ratios(model, golden_model, inputs)
    if "forget" in ratios:
        out["forget/truth_ratio"] = tofu.truth_ratio_forget_score(ratios["forget"][0])
        if ratios["forget"][1] is not None:
            out["forget_quality/truth_ratio_ks_pvalue"] = tofu.forget_quality(*ratios["forget"])
    if "retain" in ratios:
        out["retain/truth_ratio"] = tofu.truth_ratio_retain_score(ratios["retain"][0])
    utility_rows = {}
    for name, data in (inputs.utility or {}).items():
        values, utility_rows[name] = _utility_split(model, name, data, inputs)
        out.update(values)
    if generation:
        for split, rows in {**inputs.rows, **utility_rows}.items():
            texts = generate_completions(
                model,
                rows,
                inputs.tokenizer,
                max_new_tokens,
                inputs.batch_size,
                attention_mask=inputs.attention_mask,
            )
            scores = rouge_l(texts, references_of(rows, inputs.tokenizer))
            out[f"{split}/rouge_l_recall"] = float(scores["recall"].mean())
            out[f"{split}/rouge_l_f1"] = float(scores["f1"].mean())
        if "retain/truth_ratio" in out:
            parts = [
                out[f"{split}/{key}"]
                for split in ("retain", *utility_rows)
                for key in ("probability", "rouge_l_recall", "truth_ratio")
            ]
            out["utility/model_utility"] = tofu.model_utility(parts) if min(parts) > 0 else 0.0
    return out


def _utility_split(model, name: str, data: Any, inputs: LMEvalInputs) -> tuple[dict[str, float], list[dict]]:
    """TOFU's probability (normalised over the options) and truth ratio (the perturbed answers against the
    answer itself) on a utility split; returns them and the split's canonical rows (for the generations)."""
    from ._passes import prepare
    from ._stats import collect_stats

    rows, collator, kind = prepare(
        model, data, inputs.tokenizer, f"utility_datasets[{name!r}]", attention_mask=inputs.attention_mask
    )
    correct = collect_stats([model], rows, collator, kind, inputs.batch_size)[0].loss
    variants = tofu.perturbed_variants(data, f"utility_datasets[{name!r}]")
    perturbed = np.stack(
        [_losses([model], v, f"utility_datasets[{name!r}] (perturbed)", inputs)[0] for v in variants], axis=1
    )
    values = {
        f"{name}/probability": float(np.mean(tofu.normalised_probability(correct, perturbed))),
        f"{name}/truth_ratio": tofu.truth_ratio_retain_score(tofu.truth_ratio(correct, perturbed)),
    }
    return values, rows


def _nanmean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def _attacks(prefix: str, stats: dict, texts: dict[str, list[str]] | None) -> dict[str, float]:
    forget, test = stats["forget"], stats["test"]
    out = {
        f"{prefix}mia/min_k_04_auc": mia.attack_auc(forget.extra["min_k_04"], test.extra["min_k_04"]),
        f"{prefix}mia/min_k_plus_plus_auc": mia.attack_auc(
            forget.extra["min_k_plus_plus"], test.extra["min_k_plus_plus"]
        ),
    }
    if texts is not None:
        out[f"{prefix}mia/zlib_auc"] = mia.attack_auc(
            mia.zlib_scores(forget.loss, texts["forget"]), mia.zlib_scores(test.loss, texts["test"])
        )
    return out


def _reference_auc(model: torch.nn.Module, reference: torch.nn.Module, inputs: LMEvalInputs) -> float:
    from ._stats import collect_stats

    diffs = {}
    for split in ("forget", "test"):
        ref = collect_stats([reference], inputs.rows[split], inputs.collator, inputs.kind, inputs.batch_size)[
            0
        ]
        diffs[split] = inputs.stats[split].loss - ref.loss
    return mia.attack_auc(diffs["forget"], diffs["test"])


def _truth_ratios(
    model, golden_model, inputs: LMEvalInputs
) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """``{split: (R of the model, R of the golden model or None)}`` for the splits with the TOFU columns."""

    out = {}
    for split in ("forget", "retain"):
        if not tofu.has_truth_ratio_columns(inputs.raw[split]):
            continue
        models = [model] + ([golden_model] if golden_model is not None and split == "forget" else [])
        paraphrased, perturbed = tofu.answer_variants(inputs.raw[split], f"{split}_dataset")

        para = _losses(models, paraphrased, f"{split}_dataset (paraphrased)", inputs)
        pert = [_losses(models, rows, f"{split}_dataset (perturbed)", inputs) for rows in perturbed]
        ratios = [
            tofu.truth_ratio(para[m], np.stack([p[m] for p in pert], axis=1)) for m in range(len(models))
        ]
        out[split] = (ratios[0], ratios[1] if len(ratios) > 1 else None)
    return out


def _losses(models: list, data: list[dict], name: str, inputs: LMEvalInputs) -> list[np.ndarray]:
    """Per-example losses of each model on ``data`` (one shared batched pass)."""
    from ._passes import prepare
    from ._stats import collect_stats

    rows, collator, kind = prepare(
        models[0], data, inputs.tokenizer, name, attention_mask=inputs.attention_mask
    )
    return [s.loss for s in collect_stats(models, rows, collator, kind, inputs.batch_size)]
