"""Fine-tuning and gradient ascent: ``ft``, ``ga``, ``grad_diff`` and ``ieu`` (ascent, then weight decay
and noise after every optimizer step). They need only per-example losses, so they run on every model kind."""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import WEIGHTS, UnlearningMethod, register_method
from .settings import check_at_least_zero, check_choice, register_settings

NOISE_SCHEDULES = ("constant", "linear", "cosine")


@register_settings
@dataclass
class IEUSettings:
    """IEU's weight decay and noise (``ieu``): the optimizer hook of ``hf_unlearn.weights.decay_noise``."""

    ieu_decay: float = field(
        default=1.0,
        metadata={
            "help": "lambda >= 0: after each optimizer step the trainable weights are multiplied by "
            "(1 - lr_t * lambda). At Adam learning rates (1e-4) lambda must be large (1-100) to matter."
        },
    )
    ieu_noise_std: float = field(
        default=1e-3,
        metadata={
            "help": "sigma >= 0: std of the Gaussian noise added to every trainable weight after each step."
        },
    )
    ieu_noise_schedule: str = field(
        default="constant",
        metadata={
            "help": "How sigma changes over training: 'constant', 'linear' (to 0) or 'cosine' (to 0).",
            "choices": list(NOISE_SCHEDULES),
        },
    )
    ieu_noise_every: int = field(
        default=8,
        metadata={
            "help": "Inject noise every k optimizer steps with std sigma * sqrt(k): the same Gaussian diffusion "
            "(variance sigma**2 per step), k times fewer random draws. The default 8 keeps the CPU draw under "
            "a hundredth of a step (benchmarks/results/ieu_overhead.json); 1 draws every step."
        },
    )

    @staticmethod
    def check_settings(config) -> None:
        check_at_least_zero(config, "ieu_decay", "ieu_noise_std")
        check_choice("ieu_noise_schedule", config.ieu_noise_schedule, NOISE_SCHEDULES)
        if config.ieu_noise_every < 1:
            raise ValueError(f"UnlearningConfig.ieu_noise_every must be >= 1, got {config.ieu_noise_every}.")


@register_method("ft")
class FineTune(UnlearningMethod):
    """Naive fine-tuning on the retain set: ``l(B_r)``."""

    hyperparameters = ()

    has_forget_term = False

    def loss(self, inputs, retain_nll, forget_nll):
        return retain_nll.mean(), {}


@register_method("ga")
class GradientAscent(UnlearningMethod):
    """Gradient ascent on the forget set: ``-gamma * min(l(B_f), cap)``."""

    hyperparameters = ("forget_weight",)

    uses_forget_loss_cap = True

    def loss(self, inputs, retain_nll, forget_nll):
        return self.ascent_term(forget_nll, inputs), {}


@register_method("grad_diff")
class GradientDifference(UnlearningMethod):
    """``-gamma * min(l(B_f), cap) + w_r * l(B_r)``."""

    uses_forget_loss_cap = True

    def loss(self, inputs, retain_nll, forget_nll):
        return self.ascent_term(forget_nll, inputs) + self.retain_term(retain_nll), {}


@register_method("ieu")
class InfluenceEliminatingUnlearning(UnlearningMethod):
    """``w_r * l(B_r) - gamma * min(l(B_f), cap)``, then weight decay + noise after every optimizer step."""

    hyperparameters = (*WEIGHTS, "ieu_decay", "ieu_noise_std", "ieu_noise_schedule", "ieu_noise_every")

    uses_forget_loss_cap = True

    def loss(self, inputs, retain_nll, forget_nll):
        return self.ascent_term(forget_nll, inputs) + self.retain_term(retain_nll), {}

    def post_step_hook_enabled(self) -> bool:
        return self.args.ieu_decay > 0 or self.args.ieu_noise_std > 0
