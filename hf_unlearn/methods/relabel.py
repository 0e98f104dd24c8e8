"""Training the forget set towards wrong targets: ``rl`` (random labels), ``salun`` (random labels on a
saliency mask of the weights) and ``dr`` (discriminative regularization, a seed method)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import losses
from .base import WEIGHTS, UnlearningMethod, register_method
from .settings import check_choice, check_fraction, register_settings

DR_VARIANTS = ("kl", "ce", "inverse")


@register_settings
@dataclass
class RelabelSettings:
    """The settings of the wrong-target methods: DR's weight and form, SalUn's mask ratio."""

    dr_alpha: float = field(
        default=0.5,
        metadata={
            "help": "alpha in (0, 1]: weight of the discriminative regularizer, never above the retain loss "
            "('kl', 'ce'); with dr_variant='inverse', the weight of the retain loss instead."
        },
    )
    dr_variant: str = field(
        default="kl",
        metadata={
            "help": "DR regularizer: 'kl' (KL from the uniform wrong-label distribution to the prediction), "
            "'ce' (cross-entropy on a sampled wrong label, or on the 'alternative' completion), or 'inverse' "
            "(the seed paper's inverse form, ICE-FT: alpha x retain loss + the 'ce' term).",
            "choices": list(DR_VARIANTS),
        },
    )
    salun_mask_ratio: float = field(
        default=0.5,
        metadata={
            "help": "salun: fraction in (0, 1) of trainable weights the updates may change, those with the "
            "largest forget-loss gradient on the original model (SalUn's default mask keeps 0.5)."
        },
    )

    @staticmethod
    def check_settings(config) -> None:
        check_choice("dr_variant", config.dr_variant, DR_VARIANTS)
        if not 0 < config.dr_alpha <= 1:
            raise ValueError(f"UnlearningConfig.dr_alpha must be in (0, 1], got {config.dr_alpha}.")
        check_fraction(config, "salun_mask_ratio")


@register_method("rl")
class RandomLabels(UnlearningMethod):
    """Train the forget set towards random wrong labels (SalUn-style), plus ``w_r * l(B_r)``."""

    requires = frozenset({"wrong_targets"})

    def loss(self, inputs, retain_nll, forget_nll):
        wrong = self.forget_mean(self.wrong_target_nll(inputs), forget_nll, inputs)
        return self.args.forget_weight * wrong + self.retain_term(retain_nll), {
            "wrong_label_loss": wrong.detach()
        }


@register_method("salun")
class SaliencyUnlearning(RandomLabels):
    """SalUn (Fan et al., ICLR 2024): the random-label loss of ``rl``, with every update restricted to the
    ``salun_mask_ratio`` fraction of weights with the largest forget-loss gradient ``|grad l(D_f; theta_o)|``,
    computed once on the original model (``UnlearningTrainer.saliency_masks``)."""

    hyperparameters = (*WEIGHTS, "salun_mask_ratio")

    def update_mask_ratio(self) -> float | None:
        return self.args.salun_mask_ratio


@register_method("dr")
class DiscriminativeRegularization(UnlearningMethod):
    """``l(B_r) + alpha * R(B_f)``: ``R`` is KL to the wrong-label distribution (``dr_variant="kl"``) or
    cross-entropy on a sampled wrong label / the ``alternative`` completion (``dr_variant="ce"``). The seed
    paper's inverse form (``dr_variant="inverse"``, its ICE-FT) puts alpha on the retain term instead:
    ``alpha * l(B_r) + CE(B_f, y')``."""

    hyperparameters = ("dr_alpha", "dr_variant")

    requires = frozenset({"logits", "wrong_targets"})

    def loss(self, inputs, retain_nll, forget_nll):
        if self.args.dr_variant == "kl" and inputs.forget_alt is None:
            per_example = losses.wrong_label_kl(inputs.forget.logits, inputs.forget.labels)
        else:
            per_example = self.wrong_target_nll(inputs)
        reg = self.forget_mean(per_example, forget_nll, inputs)
        retain_weight, reg_weight = (
            (self.args.dr_alpha, 1.0) if self.args.dr_variant == "inverse" else (1.0, self.args.dr_alpha)
        )
        return retain_weight * retain_nll.mean() + reg_weight * reg, {"dr_regularizer": reg.detach()}
