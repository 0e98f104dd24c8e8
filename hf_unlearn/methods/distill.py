"""``undial``: self-distillation towards the frozen model's logits with the target token lowered."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import losses
from .base import WEIGHTS, UnlearningMethod, register_method
from .settings import check_at_least_zero, register_settings


@register_settings
@dataclass
class DistillSettings:
    """UNDIAL's logit adjustment."""

    undial_beta: float = field(
        default=10.0,
        metadata={
            "help": "undial: how far the target token's logit is lowered in the distillation target (10)."
        },
    )

    @staticmethod
    def check_settings(config) -> None:
        check_at_least_zero(config, "undial_beta")


@register_method("undial")
class UNDIAL(UnlearningMethod):
    """UNDIAL (Dong et al., 2025): self-distillation on the forget set towards the frozen model's logits with
    each target token's logit lowered by ``undial_beta``, plus ``w_r * l(B_r)`` (OpenUnlearning: beta 10,
    retain_weight 0, lr 1e-4). The frozen logits come from the adapters-disabled model with PEFT, else from a
    frozen copy of the original weights the trainer keeps (it logs the memory)."""

    hyperparameters = (*WEIGHTS, "undial_beta")

    frozen_part = "forget"
    requires = frozenset({"logits"})

    def loss(self, inputs, retain_nll, forget_nll):
        terms = losses.undial_per_example(
            inputs.forget.logits, inputs.frozen.logits, inputs.forget.labels, self.args.undial_beta
        )
        undial = self.forget_mean(terms, forget_nll, inputs)
        return self.args.forget_weight * undial + self.retain_term(retain_nll), {
            "undial_loss": undial.detach()
        }
