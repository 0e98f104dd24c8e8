"""Causal language models: labels per token (``-100`` on prompt and padding), the token-mean NLL of the
completion per example, optionally through the LM head chunk by chunk (``lm_head.ChunkedLogits``)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import losses
from ..data.common import unwrap_model
from . import lm_head
from ._transformers import TransformersKind

CAUSAL_LM = "causal_lm"


class CausalLMKind(TransformersKind):
    name = "causal_lm"
    task = CAUSAL_LM
    token_level = True
    chunked_head = True
    suffixes = ("ForCausalLM", "LMHeadModel")
    input_keys = ("input_ids", "attention_mask")
    capabilities = frozenset({"logits", "wrong_targets", "tokens", "hidden_states"})
    pipeline_tag = "text-generation"
    auto_class = "AutoModelForCausalLM"
    headline_keys = (
        "forget/loss",
        "retain/token_accuracy",
        "test/perplexity",
        "mia/auc",
        "forget_quality/ks_pvalue",
        "rcd/steps",
        "rcd/ratio_to_golden",
        "rcd/ratio_to_heldout",
    )
    short_keys = ("forget/loss", "retain/token_accuracy", "rcd/ratio_to_golden")
    #: TOFU-shaped data (paraphrased and perturbed answers, generations): OpenUnlearning's headline numbers
    tofu_headline_keys = (
        "forget/rouge_l_recall",
        "forget/truth_ratio",
        "forget_quality/truth_ratio_ks_pvalue",
        "utility/model_utility",
        "privleak",
        "forget/extraction_strength",
        "rcd/ratio_to_golden",
        "rcd/ratio_to_heldout",
    )
    tofu_short_keys = (
        "forget/rouge_l_recall",
        "forget_quality/truth_ratio_ks_pvalue",
        "utility/model_utility",
        "rcd/ratio_to_golden",
    )
    #: a result with any of these keys is summarized the TOFU way
    tofu_markers = ("utility/model_utility", "forget_quality/truth_ratio_ks_pvalue")
    # ROUGE-L needs generation=True; without it the gap is taken on the token accuracy
    attack_metrics = ("forget/rouge_l_recall", "forget/token_accuracy", "forget/loss", "mia/min_k_auc")
    primary_forget_metrics = ("forget/rouge_l_recall", "forget/token_accuracy")

    def forward(
        self, model: torch.nn.Module, batch: dict, head: Any = None, chunk_size: int = 0, **kwargs: Any
    ) -> tuple[losses.Logits, Any]:
        """``(logits, outputs)``; with ``head`` (an ``lm_head`` head of ``model``) the logits are
        ``ChunkedLogits``: the head's inputs, turned into logits ``chunk_size`` positions at a time."""
        if head is None:
            return super().forward(model, batch, **kwargs)
        with lm_head.capture_head_inputs(head.module) as captured:
            outputs = model(**self.model_inputs(batch), **kwargs)
        return lm_head.ChunkedLogits(captured[0], head, chunk_size), outputs

    def num_classes(self, model: torch.nn.Module) -> int:
        config = unwrap_model(model).config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        return int(text_config.vocab_size)

    def loss_scale(self, model: torch.nn.Module) -> float:
        return math.log(self.num_classes(model))

    def wrong_target_loss(self, part: Any, seed: int, step: int) -> torch.Tensor:
        """NLL of random wrong tokens drawn from a generator seeded by (``seed``, ``step``)."""
        generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
        wrong = losses.random_wrong_targets(part.labels, losses.num_classes(part.logits), generator)
        return losses.per_example_nll(part.logits, wrong)

    def lora_defaults(self) -> dict[str, Any]:
        return {"task_type": "CAUSAL_LM"}

    # -- metrics ------------------------------------------------------------------------------------
    def summarize(self, prefix: str, stats: Any) -> dict[str, float]:
        """``{prefix}/loss``, ``{prefix}/token_accuracy`` and ``{prefix}/perplexity`` (token-weighted)."""
        tokens = float(stats.tokens.sum())
        nll = float((stats.loss * stats.tokens).sum()) / tokens if tokens else math.nan
        return {
            **super().summarize(prefix, stats),
            f"{prefix}/token_accuracy": float(stats.correct.sum()) / tokens if tokens else math.nan,
            f"{prefix}/perplexity": math.exp(nll) if nll < 700 else math.inf,
        }

    def check_evaluation_options(
        self, utility_datasets: Any = None, muse_datasets: Any = None, **options: Any
    ) -> None:
        from ..metrics.muse import check_muse_datasets
        from ..metrics.suite import check_utility_names

        check_utility_names(utility_datasets)
        check_muse_datasets(muse_datasets)
        self.check_judge_options(**options)

    def suite_metrics(self, inputs: Any) -> dict[str, float]:
        """Memorization, TOFU's probability and truth ratio, forget quality, model utility, the LM membership
        attacks, PrivLeak, ROUGE-L of generations (``metrics.generative``) and MUSE's numbers (``metrics.muse``)."""
        from ..metrics.generative import LMEvalInputs, lm_metrics
        from ..metrics.muse import muse_metrics

        lm_inputs = LMEvalInputs(
            inputs.rows,
            inputs.raw,
            inputs.stats,
            inputs.golden_stats,
            inputs.collator,
            inputs.processing_class,
            inputs.batch_size,
            inputs.utility_datasets,
            kind=self,
        )
        reference = inputs.reference_model if inputs.reference_model is not None else inputs.original_model
        out = lm_metrics(
            inputs.model, lm_inputs, inputs.golden_model, reference, inputs.generation, inputs.max_new_tokens
        )
        if inputs.muse_datasets:
            muse = muse_metrics(
                inputs.model,
                inputs.muse_datasets,
                golden_model=inputs.golden_model,
                processing_class=inputs.processing_class,
                batch_size=inputs.batch_size,
                attention_mask=inputs.attention_mask,
            )
            if "muse/privleak" in muse:  # MUSE's PrivLeak replaces the one of the forget and test sets
                out.pop("privleak", None)
            out.update(muse)
        return out

    def headline(self, rows: Any = None, short: bool = False) -> list[str]:
        """TOFU's headline numbers when ``rows`` (``{model: {key: value}}``) has TOFU's keys, else the LM ones."""
        tofu = any(key in row for row in (rows or {}).values() for key in self.tofu_markers)
        if tofu:
            return list(self.tofu_short_keys if short else self.tofu_headline_keys)
        return super().headline(rows, short)
