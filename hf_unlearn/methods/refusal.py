"""``idk_nll``: train the forget prompts towards refusals (the ``alternative`` column)."""

from __future__ import annotations

from .base import UnlearningMethod, register_method


@register_method("idk_nll")
class IdkNLL(UnlearningMethod):
    """Train the forget prompts towards "I don't know"-style answers (the ``alternative`` column, or seeded
    default refusals): ``gamma * l(B_f with the alternative) + w_r * l(B_r)``."""

    needs_alternative = True
    requires = frozenset({"tokens"})

    def loss(self, inputs, retain_nll, forget_nll):
        alt = self.kind.loss_of(inputs.forget_alt.logits, inputs.forget_alt.labels)
        idk = self.forget_mean(alt, forget_nll, inputs)
        return self.args.forget_weight * idk + self.retain_term(retain_nll), {"idk_loss": idk.detach()}
