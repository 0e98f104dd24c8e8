"""Preference-style forget losses: ``npo`` (against cached reference log-probs), ``simnpo`` (reference-free)
and ``idk_dpo`` (the refusal preferred over the forget answer)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import losses
from .base import WEIGHTS, UnlearningMethod, register_method
from .settings import check_positive, register_settings


@register_settings
@dataclass
class PreferenceSettings:
    """The temperatures of NPO, SimNPO and IdkDPO."""

    npo_beta: float = field(default=0.1, metadata={"help": "beta > 0 of NPO and of IdkDPO's DPO loss."})
    simnpo_beta: float = field(
        default=4.5,
        metadata={"help": "simnpo: beta > 0 (OpenUnlearning's TOFU config: 4.5; use forget_weight 0.125)."},
    )
    simnpo_delta: float = field(
        default=0.0,
        metadata={"help": "simnpo: margin delta on the length-normalized NLL (OpenUnlearning: 0)."},
    )

    @staticmethod
    def check_settings(config) -> None:
        check_positive(config, "npo_beta", "simnpo_beta")


@register_method("npo")
class NegativePreferenceOptimization(UnlearningMethod):
    """NPO on the forget set against cached reference log-probs, plus ``w_r * l(B_r)``."""

    hyperparameters = (*WEIGHTS, "npo_beta")

    needs_reference = True

    def loss(self, inputs, retain_nll, forget_nll):
        logprob = losses.logprob_from_nll(forget_nll, inputs.forget.labels)
        terms = losses.npo_per_example(logprob, inputs.ref_logprob.to(logprob), self.args.npo_beta)
        npo = self.forget_mean(terms, forget_nll, inputs)
        return self.args.forget_weight * npo + self.retain_term(retain_nll), {"npo_loss": npo.detach()}


@register_method("simnpo")
class SimNPO(UnlearningMethod):
    """SimNPO (Fan et al., 2024), as OpenUnlearning's: ``gamma * mean(-(2 / beta) log sigmoid(beta (l - delta)))``
    on the length-normalized forget NLL ``l`` (no reference model), plus ``w_r * l(B_r)``. OpenUnlearning's TOFU
    config: beta 4.5, delta 0, forget_weight (gamma) 0.125."""

    hyperparameters = (*WEIGHTS, "simnpo_beta", "simnpo_delta")

    def loss(self, inputs, retain_nll, forget_nll):
        terms = losses.simnpo_per_example(forget_nll, self.args.simnpo_beta, self.args.simnpo_delta)
        simnpo = self.forget_mean(terms, forget_nll, inputs)
        return self.args.forget_weight * simnpo + self.retain_term(retain_nll), {
            "simnpo_loss": simnpo.detach()
        }


@register_method("idk_dpo")
class IdkDPO(UnlearningMethod):
    """DPO with the refusal (``alternative``) as the preferred and the forget answer as the rejected
    completion, against reference log-probs cached once before training: ``gamma * DPO + w_r * l(B_r)``
    (OpenUnlearning's IdkDPO; beta ``npo_beta``, 0.1 as theirs)."""

    hyperparameters = (*WEIGHTS, "npo_beta")

    needs_alternative = True
    needs_reference = True
    requires = frozenset({"tokens"})

    def loss(self, inputs, retain_nll, forget_nll):
        lose = losses.logprob_from_nll(forget_nll, inputs.forget.labels)
        win = self.kind.per_example_logprob(inputs.forget_alt.logits, inputs.forget_alt.labels)
        terms = losses.dpo_per_example(
            win - inputs.ref_alt_logprob.to(win), lose - inputs.ref_logprob.to(lose), self.args.npo_beta
        )
        dpo = self.forget_mean(terms, forget_nll, inputs)
        return self.args.forget_weight * dpo + self.retain_term(retain_nll), {"dpo_loss": dpo.detach()}
