"""Unlearning methods only diffusion models have, registered in ``hf_unlearn.methods.METHODS`` on import of
``hf_unlearn.diffusion``."""

from __future__ import annotations

from ..methods import WEIGHTS, UnlearningMethod, register_method


@register_method("esd")
class ErasingStableDiffusion(UnlearningMethod):
    """ESD (Gandikota et al., ICCV 2023): train the prediction under the forget class towards the frozen
    original's negatively guided ``eps_uncond - eta (eps_cond - eps_uncond)`` on the same noisy forget images
    (``eta``: ``DiffusionArguments.esd_eta``; the unconditional branch: the null class, or the mean over classes),
    plus ``w_r * l(B_r)`` (``retain_weight=0`` is the paper's ESD, which has no retain term).
    ``gamma * MSE(eps_theta(x_t, c_f), target) + w_r * l(B_r)``."""

    hyperparameters = WEIGHTS
    frozen_part = "forget"
    requires = frozenset({"guidance"})

    def loss(self, inputs, retain_nll, forget_nll):
        terms = self.kind.guidance_loss(inputs.forget.logits, inputs.frozen.logits)
        esd = self.forget_mean(terms, forget_nll, inputs)
        return self.args.forget_weight * esd + self.retain_term(retain_nll), {"esd_loss": esd.detach()}
