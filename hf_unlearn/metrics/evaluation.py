"""Standard unlearning metrics in one call: utility per split, membership inference, forget quality, distances.

``evaluate_unlearning`` returns a flat dict with stable keys (``docs/metrics.md`` lists them all). Every model
goes over every split once, in batches, without gradients and in eval mode (its training flag is restored);
per-example losses are computed once and reused by the MIA and KS statistics. Keys whose inputs are missing
(no test set, no golden model, no original model) are left out rather than set to None.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .. import losses
from ..data import CLASSIFICATION, infer_task
from ..data.collate import check_attention_mask
from ._passes import eval_mode, gather_from_processes, logits_of, make_batches, prepare, this_process_share
from ._weights import weight_distance
from .classifier import average_gap, efficacy_metrics
from .generation import memorization_scores
from .mia import membership_auc, min_k_plus_plus_scores, min_k_scores
from .muse import check_muse_datasets, muse_metrics

logger = logging.getLogger(__name__)

MIN_K_FRACTION = 0.2  # Min-K% Prob (Shi et al., 2024) with k = 20%


@dataclass
class SplitStats:
    """Per-example statistics of one model on one split (arrays in dataset order).

    ``loss``: per-example loss (cross-entropy, or token-mean NLL of the completion). ``correct``: 1/0 per example
    (classifiers) or the number of correctly predicted completion tokens (LMs). ``tokens``: scored positions per
    example (1 for classifiers). ``min_k``: Min-K% Prob score (LMs; higher means "more likely a member").
    ``kl``: per-example KL(golden || model) (forget split with a golden model).
    """

    loss: np.ndarray
    correct: np.ndarray
    tokens: np.ndarray
    min_k: np.ndarray | None = None
    kl: np.ndarray | None = None
    #: causal LMs: per-example "exact_memorization", "extraction_strength", "min_k_04" (OpenUnlearning's Min-K%,
    #: k = 0.4, EOS excluded) and "min_k_plus_plus" (see ``metrics.generation`` and ``metrics.mia``)
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def per_example_losses(
    model: torch.nn.Module, dataset: Any, processing_class: Any = None, batch_size: int = 32
) -> np.ndarray:
    """Per-example losses of ``model`` on ``dataset`` (in dataset order): cross-entropy for classifiers,
    token-mean NLL of the completion for causal LMs; the quantity MIA and KS statistics are built on."""
    rows, collator, task = prepare(model, dataset, processing_class, "dataset")
    return collect_stats([model], rows, collator, task, batch_size)[0].loss


@torch.no_grad()
def collect_stats(
    models: list[torch.nn.Module],
    rows: list[dict],
    collator: Any,
    task: str,
    batch_size: int = 32,
    kl_to_second: bool = False,
) -> list[SplitStats]:
    """One batched pass over ``rows`` for each model (models share the batches). With ``kl_to_second``, also
    ``KL(models[1] || models[0])`` per example."""
    records = []  # (row positions, per-model stats, KL) of the batches this process evaluated
    with _all_eval(models):
        for (positions, batch), keep in this_process_share(make_batches(rows, collator, batch_size)):
            per_model, for_kl = [], []
            for i, model in enumerate(models):
                logits = logits_of(model, batch)
                labels = batch["labels"].to(logits.device)
                if keep:  # else a filler pass: a sharded model needs every process in every forward
                    per_model.append(_batch_stats(logits, labels, task))
                if keep and kl_to_second and i < 2:
                    for_kl.append((logits, labels))
            if for_kl:
                (logits_m, labels), (logits_g, _) = for_kl
                kl = _kl_per_example(logits_g.to(logits_m.device), logits_m, labels).cpu().numpy()
            if keep:
                records.append((positions.numpy(), per_model, kl if for_kl else None))
    n = len(rows)
    out: list[dict[str, np.ndarray]] = [{} for _ in models]
    kl = np.zeros(n) if kl_to_second else None
    for idx, per_model, kl_values in (r for part in gather_from_processes(records) for r in part):
        for i, stats in enumerate(per_model):
            for key, value in stats.items():
                out[i].setdefault(key, np.zeros(n))[idx] = value
        if kl_to_second:
            kl[idx] = kl_values
    results = []
    for i, values in enumerate(out):
        core = ("loss", "correct", "tokens", "min_k")
        results.append(
            SplitStats(
                loss=values["loss"],
                correct=values["correct"],
                tokens=values["tokens"],
                min_k=values.get("min_k"),
                kl=kl if i == 0 else None,
                extra={k: v for k, v in values.items() if k not in core},
            )
        )
    return results


class _all_eval:
    def __init__(self, models):
        self.contexts = [eval_mode(m) for m in models]

    def __enter__(self):
        for c in self.contexts:
            c.__enter__()

    def __exit__(self, *exc):
        for c in reversed(self.contexts):
            c.__exit__(*exc)


def _batch_stats(logits: torch.Tensor, labels: torch.Tensor, task: str) -> dict[str, np.ndarray]:
    aligned, targets, mask = losses.positions(logits, labels)
    token_nll = losses.token_nll(aligned, targets)
    loss = losses.example_mean(token_nll, mask)
    correct = ((aligned.argmax(-1) == targets) & mask).sum(-1)
    stats = {"loss": loss, "correct": correct, "tokens": mask.sum(-1)}
    if task != CLASSIFICATION:
        stats["min_k"] = _min_k_scores(-token_nll, mask, MIN_K_FRACTION)
        stats.update(memorization_scores(logits, labels))
        stats["min_k_04"] = min_k_scores(logits, labels)
        stats["min_k_plus_plus"] = min_k_plus_plus_scores(logits, labels)
    return {k: v.float().cpu().numpy() for k, v in stats.items()}


def _min_k_scores(token_logprob: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """Min-K% Prob: mean log-prob of the ``ceil(fraction * n)`` least likely completion tokens of each example
    (NaN for an example without completion tokens)."""
    n = mask.sum(-1)
    k = torch.ceil(fraction * n.float()).clamp(min=1)
    lowest, _ = token_logprob.float().masked_fill(~mask, math.inf).sort(-1)
    take = torch.arange(lowest.shape[-1], device=lowest.device)[None, :] < k[:, None]
    score = torch.where(take, lowest, torch.zeros_like(lowest)).sum(-1) / k
    return torch.where(n > 0, score, torch.full_like(score, math.nan))


def _kl_per_example(logits_p: torch.Tensor, logits_q: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``KL(p || q)`` of the predictive distributions, averaged over the scored positions of each example."""
    p, _, mask = losses.positions(logits_p, labels)
    q, _, _ = losses.positions(logits_q, labels)
    logp, logq = F.log_softmax(p.float(), -1), F.log_softmax(q.float(), -1)
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return losses.example_mean(kl, mask)


def summarize(prefix: str, stats: SplitStats, task: str) -> dict[str, float]:
    """``{prefix}/loss`` and ``{prefix}/accuracy`` (classifiers) or ``{prefix}/token_accuracy`` and
    ``{prefix}/perplexity`` (causal LMs)."""
    out = {f"{prefix}/loss": float(np.mean(stats.loss))}
    if task == CLASSIFICATION:
        out[f"{prefix}/accuracy"] = float(np.mean(stats.correct))
    else:
        tokens = float(stats.tokens.sum())
        out[f"{prefix}/token_accuracy"] = float(stats.correct.sum()) / tokens if tokens else math.nan
        nll = float((stats.loss * stats.tokens).sum()) / tokens if tokens else math.nan
        out[f"{prefix}/perplexity"] = math.exp(nll) if nll < 700 else math.inf
    return out


def _mia(prefix: str, forget: SplitStats, test: SplitStats) -> dict[str, float]:
    out = {f"{prefix}mia/auc": membership_auc(-forget.loss, -test.loss)}  # lower loss => member
    if forget.min_k is not None:
        out[f"{prefix}mia/min_k_auc"] = membership_auc(forget.min_k, test.min_k)
    return out


def evaluate_unlearning(
    model: torch.nn.Module,
    *,
    forget_dataset: Any,
    retain_dataset: Any,
    test_dataset: Any = None,
    original_model: torch.nn.Module | None = None,
    golden_model: torch.nn.Module | None = None,
    processing_class: Any = None,
    batch_size: int = 32,
    generation: bool = False,
    max_new_tokens: int = 200,
    reference_model: torch.nn.Module | None = None,
    utility_datasets: dict[str, Any] | None = None,
    attention_mask: str = "length",
    muse_datasets: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Evaluate an unlearned ``model``; returns a flat dict of floats (keys in ``docs/metrics.md``).

    Args:
        model: the unlearned model (classifier or causal LM, full weights or PEFT).
        forget_dataset: the forget set (any format ``UnlearningTrainer`` accepts).
        retain_dataset: the retain set (same formats).
        test_dataset: held-out data: ``test/*`` metrics, and the non-members of the membership attacks.
        original_model: the model before unlearning: ``distance/l2_to_original``.
        golden_model: a model trained without the forget set: ``golden/*`` reference values, the KS forget
            quality, ``forget/kl_to_golden`` and ``distance/l2_to_golden``.
        processing_class: the tokenizer, for raw-text datasets.
        batch_size: evaluation batch size (also of the generations).
        generation: causal LMs: also generate greedy answers and score them with ROUGE-L (``*/rouge_l_*``,
            and ``utility/model_utility`` when the retain set has TOFU's paraphrased/perturbed answers).
        max_new_tokens: generation budget (TOFU: 200, MUSE: 128 verbatim / 32 knowledge QA).
        reference_model: causal LMs: the reference of the reference-model attack (``mia/reference_auc``);
            defaults to ``original_model``.
        utility_datasets: causal LMs: further model-utility splits by name, each with a
            ``perturbed_completions`` column (TOFU: ``{"real_authors": ..., "world_facts": ...}``): keys
            ``<name>/probability`` (normalised over the options), ``<name>/truth_ratio`` and, with
            ``generation``, ``<name>/rouge_l_recall``, all three in ``utility/model_utility``.
        attention_mask: how padded batches are masked: ``"length"`` (default) masks the padding only;
            ``"pad_token"`` masks every token equal to the pad id, as OpenUnlearning's collator does
            (``input_ids != pad_token_id``; a tokenizer without a pad token pads with EOS, so an EOS inside a
            sequence, e.g. a chat template's end of turn, is masked too): for matching OpenUnlearning's
            published numbers (``docs/metrics.md``).
        muse_datasets: causal LMs: MUSE's evaluation sets by name (``verbmem_forget``, ``knowmem_forget``,
            ``knowmem_retain``, ``privleak_forget`` + ``privleak_holdout``; ``hf_unlearn.sources.muse``'s
            ``evaluation_sets``): MUSE's own numbers, ``muse/verbmem_rouge``, ``muse/knowmem_*_rouge``,
            ``muse/min_k_auc`` and, with ``golden_model``, ``muse/privleak`` (``metrics.muse``); the
            forget-vs-test ``privleak`` is then left out.

    None of the models is modified; their train/eval modes are restored.
    """
    check_attention_mask(attention_mask)
    task = infer_task(model)
    if golden_model is not None and infer_task(golden_model) != task:
        raise ValueError("golden_model must be the same kind of model (classifier / causal LM) as model.")
    _check_utility_datasets(utility_datasets, task)
    check_muse_datasets(muse_datasets, task)
    splits = {"forget": forget_dataset, "retain": retain_dataset}
    if test_dataset is not None:
        splits["test"] = test_dataset
    stats: dict[str, SplitStats] = {}
    golden_stats: dict[str, SplitStats] = {}
    split_rows: dict[str, list[dict]] = {}
    metrics: dict[str, float] = {}
    for name, data in splits.items():
        rows, collator, _ = prepare(
            model, data, processing_class, f"{name}_dataset", attention_mask=attention_mask
        )
        split_rows[name] = rows
        # classifiers: golden's retain accuracy and membership features are references too (gap/average)
        with_golden = golden_model is not None and (name in ("forget", "test") or task == CLASSIFICATION)
        models = [model, golden_model] if with_golden else [model]
        results = collect_stats(
            models, rows, collator, task, batch_size, kl_to_second=with_golden and name == "forget"
        )
        stats[name] = results[0]
        metrics.update(summarize(name, results[0], task))
        if with_golden:
            golden_stats[name] = results[1]
    if "test" in stats:
        metrics.update(_mia("", stats["forget"], stats["test"]))
    if golden_model is not None:
        for name, values in golden_stats.items():
            metrics.update(summarize(f"golden/{name}", values, task))
        if "test" in golden_stats:
            metrics.update(_mia("golden/", golden_stats["forget"], golden_stats["test"]))
        from scipy.stats import ks_2samp

        ks = ks_2samp(stats["forget"].loss, golden_stats["forget"].loss)
        metrics["forget_quality/ks_pvalue"] = float(ks.pvalue)
        metrics["forget_quality/ks_statistic"] = float(ks.statistic)
        metrics["forget/kl_to_golden"] = float(np.mean(stats["forget"].kl))
    if task == CLASSIFICATION:
        metrics.update(_classifier_metrics(metrics, stats, golden_stats))
    else:
        from .generative import LMEvalInputs, lm_metrics

        inputs = LMEvalInputs(
            split_rows, splits, stats, golden_stats, collator, processing_class, batch_size, utility_datasets
        )
        reference = reference_model if reference_model is not None else original_model
        metrics.update(lm_metrics(model, inputs, golden_model, reference, generation, max_new_tokens))
        if muse_datasets:
            muse = muse_metrics(
                model,
                muse_datasets,
                golden_model=golden_model,
                processing_class=processing_class,
                batch_size=batch_size,
                attention_mask=attention_mask,
            )
            if "muse/privleak" in muse:  # MUSE's PrivLeak replaces the one of the forget and test sets
                metrics.pop("privleak", None)
            metrics.update(muse)
    for key, other in (("golden", golden_model), ("original", original_model)):
        if other is not None:
            try:
                metrics[f"distance/l2_to_{key}"] = weight_distance(model, other)
            except ValueError as err:
                logger.warning("distance/l2_to_%s left out: %s", key, err)
    return metrics


def _classifier_metrics(
    metrics: dict[str, float], stats: dict[str, SplitStats], golden_stats: dict[str, SplitStats]
) -> dict[str, float]:
    """SalUn's layout: ``forget/ua``, ``mia/efficacy`` (and golden's), ``gap/average`` (``metrics.classifier``),
    next to the accuracies already in ``metrics``."""
    out = {"forget/ua": 1.0 - metrics["forget/accuracy"]}
    out.update(efficacy_metrics("", {name: s.loss for name, s in stats.items()}))
    if golden_stats:
        out["golden/forget/ua"] = 1.0 - metrics["golden/forget/accuracy"]
        out.update(efficacy_metrics("golden/", {name: s.loss for name, s in golden_stats.items()}))
        out.update(average_gap({**metrics, **out}))
    return out


RESERVED_PREFIXES = (
    "forget",
    "retain",
    "test",
    "golden",
    "mia",
    "utility",
    "forget_quality",
    "distance",
    "rcd",
    "gap",
    "muse",
)


def _check_utility_datasets(utility_datasets: dict[str, Any] | None, task: str) -> None:
    if not utility_datasets:
        return
    if task == CLASSIFICATION:
        raise ValueError("utility_datasets (TOFU's extra model-utility splits) is for causal LMs.")
    if not isinstance(utility_datasets, dict):
        raise ValueError("utility_datasets must be a dict {name: dataset}.")
    for name in utility_datasets:
        if not isinstance(name, str) or not name or "/" in name or name in RESERVED_PREFIXES:
            raise ValueError(
                f"utility_datasets: {name!r} cannot name a split (a non-empty string without '/', not one of "
                f"{', '.join(RESERVED_PREFIXES)})."
            )
