"""Causal language models: labels per token (``-100`` on prompt and padding), the token-mean NLL of the
completion per example, optionally through the LM head chunk by chunk (``lm_head.ChunkedLogits``)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .. import lm_head, losses
from ..data.common import unwrap_model
from ._transformers import TransformersKind

CAUSAL_LM = "causal_lm"


class CausalLMKind(TransformersKind):
    name = "causal_lm"
    task = CAUSAL_LM
    token_level = True
    suffixes = ("ForCausalLM", "LMHeadModel")
    input_keys = ("input_ids", "attention_mask")
    capabilities = frozenset({"logits", "wrong_targets", "tokens", "hidden_states"})
    pipeline_tag = "text-generation"
    auto_class = "AutoModelForCausalLM"
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
