"""Standard unlearning metrics in one call: utility per split, membership inference, forget quality, distances.

``evaluate_unlearning`` returns a flat dict with stable keys (``docs/metrics.md`` lists them all). Every model
goes over every split once, in batches, without gradients and in eval mode (its training flag is restored);
per-example losses are computed once and reused by the MIA and KS statistics. Keys whose inputs are missing
(no test set, no golden model, no original model) are left out rather than set to None.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from ..data.collate import check_attention_mask
from ..kinds import get_model_kind
from ..weights.unsharded import unsharded_copy
from ._passes import prepare
from ._stats import MIN_K_FRACTION, SplitStats, _min_k_scores, collect_stats  # noqa: F401 (importable from here)
from ._weights import weight_distance
from .mia import membership_auc
from .suite import RESERVED_PREFIXES, SuiteInputs, check_utility_names  # noqa: F401 (importable from here)

logger = logging.getLogger(__name__)


def per_example_losses(
    model: torch.nn.Module, dataset: Any, processing_class: Any = None, batch_size: int = 32
) -> np.ndarray:
    """Per-example losses of ``model`` on ``dataset`` (in dataset order): cross-entropy for classifiers,
    token-mean NLL of the completion for causal LMs; the quantity MIA and KS statistics are built on."""
    rows, collator, kind = prepare(model, dataset, processing_class, "dataset")
    return collect_stats([model], rows, collator, kind, batch_size)[0].loss


def _mia(prefix: str, forget: SplitStats, test: SplitStats, nonmembers: list[int] | None) -> dict[str, float]:
    """The attacks on forget (members) vs the test rows at ``nonmembers`` (None: all of them)."""
    keep = slice(None) if nonmembers is None else np.asarray(nonmembers, dtype=np.int64)
    out = {f"{prefix}mia/auc": membership_auc(-forget.loss, -test.loss[keep])}  # lower loss => member
    if forget.min_k is not None:
        out[f"{prefix}mia/min_k_auc"] = membership_auc(forget.min_k, test.min_k[keep])
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
    attacks: list[Any] | None = None,
    judge_model: torch.nn.Module | None = None,
    judge_processor: Any = None,
    generation_samples: int | None = None,
    generation_steps: int | None = None,
    clip_model: Any = None,
    clip_processor: Any = None,
    concepts: list[str] | None = None,
) -> dict[str, float]:
    """Evaluate an unlearned ``model``; returns a flat dict of floats (keys in ``docs/metrics.md``).

    Args:
        model: the unlearned model (classifier or causal LM, full weights or PEFT).
        forget_dataset: the forget set (any format ``UnlearningTrainer`` accepts).
        retain_dataset: the retain set (same formats).
        test_dataset: held-out data: ``test/*`` metrics, and the non-members of the membership attacks (for
            class-conditional diffusion models its images of the forget set's classes only: docs/metrics.md).
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
        attacks: attack names (``"quantize_8bit"``, ``"quantize_4bit"``, ``"relearn_partial"``) or
            ``hf_unlearn.metrics.attacks.Attack`` objects: the forget metrics of attacked copies of the model, the
            golden and the original model, ``attack/<name>/...`` (``metrics.attacks.evaluate``). The golden and
            original models' attacked results are reused by later calls (same attack settings and data, unchanged
            weights).
        judge_model: class-conditional diffusion models (``UNet2DModel``): a ``transformers`` image classifier over
            the UNet's classes, trained on real images. The model (and ``golden_model``, from the same noise) then
            samples ``generation_samples`` images of each forgotten class (the forget set's labels) and each kept
            class (the retain set's other labels) with DDIM, seeded by ``DiffusionArguments.eval_seed``, and the
            judge scores them: ``forget/generation_accuracy``, ``forget/ua``, ``forget/generation_probability``,
            ``retain/generation_accuracy`` and ``quality/frechet_distance`` (on the judge's penultimate features
            against the retain set's images: not Inception FID); ``golden/<key>`` with ``golden_model``. Text-to-image
            pipelines (their UNet): an image classifier whose ``id2label`` names the concepts judges
            ``generation_samples`` samples of each forget and kept prompt (``diffusion.clip_metrics``). Refused for
            other kinds.
        judge_processor: the judge's image processor (input size, mean and std); None: ``[-1, 1]`` pixels as
            they are.
        generation_samples: samples per class (per prompt) for the judged generation metrics (default 50).
        generation_steps: DDIM steps of those samples (default 25).
        clip_model: text-to-image pipelines: a ``CLIPModel`` (with ``clip_processor``) or a local CLIP folder:
            the zero-shot judge when no ``judge_model`` is given, and ``quality/clip_score`` (kept prompts) and
            ``forget/clip_score``; with ``forget/generation_accuracy``, ``forget/ua``,
            ``retain/generation_accuracy`` and ``golden/<key>`` (docs/metrics.md).
        clip_processor: the ``CLIPProcessor`` of ``clip_model`` (its tokenizer, image size, mean and std).
        concepts: CLIP's candidate labels (e.g. ``["cat", "dog", "car"]``): each prompt is labelled by the
            concept it contains; None: every distinct forget and kept prompt (and the anchor prompt) is a label.

    None of the models is modified; their train/eval modes are restored.
    """
    check_attention_mask(attention_mask)
    kind = get_model_kind(model)
    if golden_model is not None and get_model_kind(golden_model) is not kind:
        raise ValueError("golden_model must be the same kind of model (classifier / causal LM) as model.")
    judged = {
        "judge_model": judge_model,
        "judge_processor": judge_processor,
        "generation_samples": generation_samples,
        "generation_steps": generation_steps,
        "clip_model": clip_model,
        "clip_processor": clip_processor,
        "concepts": concepts,
    }
    kind.check_evaluation_options(utility_datasets, muse_datasets, **judged)
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
        with_golden = golden_model is not None and (name in ("forget", "test") or kind.golden_on_every_split)
        models = [model, golden_model] if with_golden else [model]
        results = collect_stats(
            models, rows, collator, kind, batch_size, kl_to_second=with_golden and name == "forget"
        )
        stats[name] = results[0]
        metrics.update(kind.summarize(name, results[0]))
        if with_golden:
            golden_stats[name] = results[1]
    nonmembers = (
        kind.membership_nonmembers(split_rows["forget"], split_rows["test"]) if "test" in stats else None
    )
    if "test" in stats:
        metrics.update(_mia("", stats["forget"], stats["test"], nonmembers))
    if golden_model is not None:
        for name, values in golden_stats.items():
            metrics.update(kind.summarize(f"golden/{name}", values))
        if "test" in golden_stats:
            metrics.update(_mia("golden/", golden_stats["forget"], golden_stats["test"], nonmembers))
        from scipy.stats import ks_2samp

        ks = ks_2samp(stats["forget"].loss, golden_stats["forget"].loss)
        metrics["forget_quality/ks_pvalue"] = float(ks.pvalue)
        metrics["forget_quality/ks_statistic"] = float(ks.statistic)
        if stats["forget"].kl is not None:
            metrics["forget/kl_to_golden"] = float(np.mean(stats["forget"].kl))
    suite = SuiteInputs(
        model=model,
        metrics=metrics,
        rows=split_rows,
        raw=splits,
        stats=stats,
        golden_stats=golden_stats,
        collator=collator,
        processing_class=processing_class,
        batch_size=batch_size,
        golden_model=golden_model,
        original_model=original_model,
        reference_model=reference_model,
        generation=generation,
        max_new_tokens=max_new_tokens,
        utility_datasets=utility_datasets,
        muse_datasets=muse_datasets,
        attention_mask=attention_mask,
        options={name: value for name, value in judged.items() if value is not None},
    )
    metrics.update(kind.suite_metrics(suite))
    # FSDP2-sharded models: distances of the full weights (gathered on every process)
    weights = unsharded_copy(model) if golden_model is not None or original_model is not None else None
    for key, other in (("golden", golden_model), ("original", original_model)):
        if other is not None:
            try:
                metrics[f"distance/l2_to_{key}"] = weight_distance(weights, unsharded_copy(other))
            except ValueError as err:
                logger.warning("distance/l2_to_%s left out: %s", key, err)
    del weights
    if attacks:
        from .attacks import attack_metrics

        metrics.update(
            attack_metrics(
                model,
                attacks,
                forget_dataset=forget_dataset,
                test_dataset=test_dataset,
                golden_model=golden_model,
                original_model=original_model,
                processing_class=processing_class,
                batch_size=batch_size,
                generation=generation,
                max_new_tokens=max_new_tokens,
                attention_mask=attention_mask,
            )
        )
    return metrics
