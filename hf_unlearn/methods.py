"""Registry of unlearning methods: each binds the pure losses of ``losses.py`` to the batch parts.

The trainer runs the retain, forget (and, when the forget set has an ``alternative`` column, the
forget-alternative) batches through the model in one forward pass and hands the method a ``StepInputs``;
the method returns the loss and the numbers to log. Adding a method is one class with ``@register_method``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from . import losses
from .data import CLASSIFICATION


@dataclass
class Part:
    """Model outputs for one part of the batch."""

    logits: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor | None = None
    wrong_label: torch.Tensor | None = None


@dataclass
class StepInputs:
    retain: Part
    forget: Part
    forget_alt: Part | None = None
    step: int = 0
    ref_logprob: torch.Tensor | None = None  # cached reference log-probs of the forget batch (NPO)
    # False while the held-out rule pauses the forget term: the step trains on retain only
    forget_active: bool = True
    # per-example rule: each forget example's held-out target loss; examples at or above it stop being pushed
    forget_target: torch.Tensor | None = None


@dataclass
class MethodOutput:
    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


METHODS: dict[str, type[UnlearningMethod]] = {}


def register_method(name: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


def get_method(name: str) -> type[UnlearningMethod]:
    if name not in METHODS:
        raise ValueError(f"Unknown unlearning method {name!r}; choose one of {sorted(METHODS)}.")
    return METHODS[name]


class UnlearningMethod:
    """Base class. ``args`` is the ``UnlearningConfig``; ``task`` is ``"classification"`` or ``"causal_lm"``."""

    name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = False  # cache reference log-probs of the forget set before training
    uses_forget_loss_cap: ClassVar[bool] = False  # the trainer resolves forget_loss_cap before training
    # False: the loss never looks at the forget set (naive fine-tuning)
    has_forget_term: ClassVar[bool] = True

    def __init__(self, args: Any, task: str):
        self.args, self.task = args, task
        self.forget_loss_cap: float | None = args.forget_loss_cap  # resolved by the trainer before training

    def compute(self, inputs: StepInputs) -> MethodOutput:
        retain_nll = losses.per_example_nll(inputs.retain.logits, inputs.retain.labels)
        forget_nll = losses.per_example_nll(inputs.forget.logits, inputs.forget.labels)
        if inputs.forget_active:
            loss, extra = self.loss(inputs, retain_nll, forget_nll)
        else:
            loss, extra = retain_nll.mean(), {}
        metrics = {
            "retain_loss": retain_nll.detach().mean(),
            "forget_loss": forget_nll.detach().mean(),
            **extra,
        }
        return MethodOutput(loss=loss, metrics=metrics)

    def loss(
        self, inputs: StepInputs, retain_nll: torch.Tensor, forget_nll: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def post_step_hook_enabled(self) -> bool:
        """Whether the decay + noise optimizer hook (``influence.DecayNoiseHook``) runs after each step."""
        return False

    def update_mask_ratio(self) -> float | None:
        """The fraction of weights a forget-saliency mask lets the updates reach (None: no mask)."""
        return None

    # helpers shared by several methods
    def retain_term(self, retain_nll: torch.Tensor) -> torch.Tensor:
        return self.args.retain_weight * retain_nll.mean()

    def ascent_term(self, forget_nll: torch.Tensor, inputs: StepInputs | None = None) -> torch.Tensor:
        target = inputs.forget_target if inputs is not None else None
        return self.args.forget_weight * losses.capped_ascent(forget_nll, self.forget_loss_cap, target)

    def forget_mean(self, values: torch.Tensor, forget_nll: torch.Tensor, inputs: StepInputs) -> torch.Tensor:
        """The batch mean of a per-example forget term, less the examples that reached their held-out target."""
        return losses.below_target_mean(values, forget_nll, inputs.forget_target)

    def wrong_target_nll(self, inputs: StepInputs) -> torch.Tensor:
        """Per-example loss on a wrong target: the ``alternative`` completion, the fixed random wrong label
        (classifiers) or random wrong tokens drawn from a generator seeded by (seed, step) (LMs)."""
        if inputs.forget_alt is not None:
            return losses.per_example_nll(inputs.forget_alt.logits, inputs.forget_alt.labels)
        forget = inputs.forget
        if self.task == CLASSIFICATION:
            return losses.per_example_nll(forget.logits, forget.wrong_label)
        generator = torch.Generator().manual_seed(self.args.seed * 1_000_003 + inputs.step)
        wrong = losses.random_wrong_targets(forget.labels, forget.logits.shape[-1], generator)
        return losses.per_example_nll(forget.logits, wrong)


@register_method("ft")
class FineTune(UnlearningMethod):
    """Naive fine-tuning on the retain set: ``l(B_r)``."""

    has_forget_term = False

    def loss(self, inputs, retain_nll, forget_nll):
        return retain_nll.mean(), {}


@register_method("ga")
class GradientAscent(UnlearningMethod):
    """Gradient ascent on the forget set: ``-gamma * min(l(B_f), cap)``."""

    uses_forget_loss_cap = True

    def loss(self, inputs, retain_nll, forget_nll):
        return self.ascent_term(forget_nll, inputs), {}


@register_method("grad_diff")
class GradientDifference(UnlearningMethod):
    """``-gamma * min(l(B_f), cap) + w_r * l(B_r)``."""

    uses_forget_loss_cap = True

    def loss(self, inputs, retain_nll, forget_nll):
        return self.ascent_term(forget_nll, inputs) + self.retain_term(retain_nll), {}


@register_method("npo")
class NegativePreferenceOptimization(UnlearningMethod):
    """NPO on the forget set against cached reference log-probs, plus ``w_r * l(B_r)``."""

    needs_reference = True

    def loss(self, inputs, retain_nll, forget_nll):
        logprob = losses.per_example_logprob(inputs.forget.logits, inputs.forget.labels)
        terms = losses.npo_per_example(logprob, inputs.ref_logprob.to(logprob), self.args.npo_beta)
        npo = self.forget_mean(terms, forget_nll, inputs)
        return self.args.forget_weight * npo + self.retain_term(retain_nll), {"npo_loss": npo.detach()}


@register_method("rl")
class RandomLabels(UnlearningMethod):
    """Train the forget set towards random wrong labels (SalUn-style), plus ``w_r * l(B_r)``."""

    def loss(self, inputs, retain_nll, forget_nll):
        wrong = self.forget_mean(self.wrong_target_nll(inputs), forget_nll, inputs)
        return self.args.forget_weight * wrong + self.retain_term(retain_nll), {
            "wrong_label_loss": wrong.detach()
        }


@register_method("dr")
class DiscriminativeRegularization(UnlearningMethod):
    """``l(B_r) + alpha * R(B_f)``: ``R`` is KL to the wrong-label distribution (``dr_variant="kl"``) or
    cross-entropy on a sampled wrong label / the ``alternative`` completion (``dr_variant="ce"``). The seed
    paper's inverse form (``dr_variant="inverse"``, its ICE-FT) puts alpha on the retain term instead:
    ``alpha * l(B_r) + CE(B_f, y')``."""

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


@register_method("ieu")
class InfluenceEliminatingUnlearning(UnlearningMethod):
    """``w_r * l(B_r) - gamma * min(l(B_f), cap)``, then weight decay + noise after every optimizer step."""

    uses_forget_loss_cap = True

    def loss(self, inputs, retain_nll, forget_nll):
        return self.ascent_term(forget_nll, inputs) + self.retain_term(retain_nll), {}

    def post_step_hook_enabled(self) -> bool:
        return self.args.ieu_decay > 0 or self.args.ieu_noise_std > 0


@register_method("salun")
class SaliencyUnlearning(RandomLabels):
    """SalUn (Fan et al., ICLR 2024): the random-label loss of ``rl``, with every update restricted to the
    ``salun_mask_ratio`` fraction of weights with the largest forget-loss gradient ``|grad l(D_f; theta_o)|``,
    computed once on the original model (``UnlearningTrainer.saliency_masks``)."""

    def update_mask_ratio(self) -> float | None:
        return self.args.salun_mask_ratio
