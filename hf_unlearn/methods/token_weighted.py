"""Gradient ascent with per-token weights of the token probability: ``wga`` and ``satimp``."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import losses
from .base import WEIGHTS, UnlearningMethod, register_method
from .settings import check_at_least_zero, register_settings


@register_settings
@dataclass
class TokenWeightSettings:
    """The exponents of WGA's and SatImp's token weights."""

    wga_beta: float = field(
        default=1.0, metadata={"help": "wga: exponent of the token-probability weights (1.0)."}
    )
    satimp_beta1: float = field(
        default=5.0,
        metadata={"help": "satimp: exponent of p in the token weights p^beta1 (1-p)^beta2 (5.0)."},
    )
    satimp_beta2: float = field(
        default=1.0, metadata={"help": "satimp: exponent of (1 - p) in the token weights (1.0)."}
    )

    @staticmethod
    def check_settings(config) -> None:
        check_at_least_zero(config, "wga_beta", "satimp_beta1", "satimp_beta2")


class TokenWeightedAscent(UnlearningMethod):
    """Gradient ascent with per-token weights of the (detached) token probability, pooled over the batch's
    completion tokens, plus ``w_r * l(B_r)``; subclasses give the weights."""

    requires = frozenset({"tokens"})

    def weights(self, prob: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, inputs, retain_nll, forget_nll):
        sums, counts = losses.token_weighted_nll(inputs.forget.logits, inputs.forget.labels, self.weights)
        active = (
            None
            if inputs.forget_target is None
            else forget_nll.detach() < inputs.forget_target.to(forget_nll)
        )
        ascent = losses.pooled_ascent(sums, counts, active)
        return self.args.forget_weight * ascent + self.retain_term(retain_nll), {
            "weighted_ascent": ascent.detach()
        }


@register_method("wga")
class WeightedGradientAscent(TokenWeightedAscent):
    """WGA (Wang et al., 2025): token weights ``p ** wga_beta``."""

    hyperparameters = (*WEIGHTS, "wga_beta")

    def weights(self, prob):
        return losses.wga_weights(prob, self.args.wga_beta)


@register_method("satimp")
class SaturationImportance(TokenWeightedAscent):
    """SatImp (Yang et al., 2025): token weights ``p ** satimp_beta1 * (1 - p) ** satimp_beta2``
    (OpenUnlearning: beta1 5, beta2 1, forget_weight 0.1)."""

    hyperparameters = (*WEIGHTS, "satimp_beta1", "satimp_beta2")

    def weights(self, prob):
        return losses.satimp_weights(prob, self.args.satimp_beta1, self.args.satimp_beta2)
