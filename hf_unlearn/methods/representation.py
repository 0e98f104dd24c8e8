"""``rmu``: representation misdirection at one decoder layer's output."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import losses
from .base import WEIGHTS, UnlearningMethod, register_method
from .settings import check_at_least_zero, register_settings


@register_settings
@dataclass
class RMUSettings:
    """RMU's steered layer and steering norm."""

    rmu_layer: int = field(
        default=-1,
        metadata={
            "help": "rmu: the decoder layer whose output is steered (0-based; -1: the middle layer, "
            "(num_layers - 1) // 2). OpenUnlearning steers layer 7 of 32 on Llama-2-7B."
        },
    )
    rmu_steering_coeff: float = field(
        default=2.0,
        metadata={"help": "rmu: c, the norm of the random target direction (OpenUnlearning's config: 2)."},
    )

    @staticmethod
    def check_settings(config) -> None:
        check_at_least_zero(config, "rmu_steering_coeff")


@register_method("rmu")
class RepresentationMisdirection(UnlearningMethod):
    """RMU (Li et al., 2024, WMDP), as OpenUnlearning's: at the output of decoder layer ``rmu_layer``, push
    the forget tokens' hidden states to a fixed random direction of norm ``rmu_steering_coeff`` and keep the
    retain tokens' hidden states at the frozen model's: ``gamma * MSE(h_f, c u) + w_r * MSE(h_r, h_r^frozen)``
    (per-token mean over the hidden size, token-mean per example, batch mean; completion tokens only)."""

    hyperparameters = (*WEIGHTS, "rmu_layer", "rmu_steering_coeff")

    frozen_part = "retain"
    needs_hidden_states = True
    requires = frozenset({"tokens", "hidden_states"})

    def __init__(self, args, kind):
        super().__init__(args, kind)
        self.direction: torch.Tensor | None = None

    def layer_output(self, states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        layer = self.args.rmu_layer if self.args.rmu_layer >= 0 else (len(states) - 1) // 2
        if not 0 <= layer < len(states) - 1:
            raise ValueError(
                f"rmu_layer={self.args.rmu_layer} is outside the model's {len(states) - 1} layers."
            )
        return states[layer + 1]

    def control(self, size: int, like: torch.Tensor) -> torch.Tensor:
        if self.direction is None:  # seeded, fixed for the run: u ~ U[0, 1)^H, scaled to norm c
            generator = torch.Generator().manual_seed(self.args.seed * 1_000_003 + 17)
            u = torch.rand(size, generator=generator)
            self.direction = u / u.norm() * self.args.rmu_steering_coeff
        return self.direction.to(like)

    def loss(self, inputs, retain_nll, forget_nll):
        forget_h = self.layer_output(inputs.forget.hidden_states)
        control = self.control(forget_h.shape[-1], forget_h).expand_as(forget_h)
        forget_terms = losses.masked_activation_mse(
            forget_h, control, inputs.forget.labels != losses.IGNORE_INDEX
        )
        retain_terms = losses.masked_activation_mse(
            self.layer_output(inputs.retain.hidden_states),
            self.layer_output(inputs.frozen.hidden_states),
            inputs.retain.labels != losses.IGNORE_INDEX,
        )
        rmu = self.forget_mean(forget_terms, forget_nll, inputs)
        retain = retain_terms.mean()
        loss = self.args.forget_weight * rmu + self.args.retain_weight * retain
        return loss, {"rmu_forget": rmu.detach(), "rmu_retain": retain.detach()}
