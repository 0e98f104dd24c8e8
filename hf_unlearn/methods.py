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


@dataclass
class Part:
    """Model outputs for one part of the batch (``hidden_states`` only for methods with
    ``needs_hidden_states``: transformers' tuple, embeddings first). A causal LM's ``logits`` are usually
    ``lm_head.ChunkedLogits`` (``lm_loss_chunk_size``): pass them to the losses of ``losses.py``, which accept
    both kinds; ``losses.num_classes`` gives their size."""

    logits: losses.Logits
    labels: torch.Tensor
    index: torch.Tensor | None = None
    wrong_label: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class StepInputs:
    retain: Part
    forget: Part
    forget_alt: Part | None = None
    step: int = 0
    ref_logprob: torch.Tensor | None = None  # cached reference log-probs of the forget batch (NPO)
    ref_alt_logprob: torch.Tensor | None = None  # ... and of its alternative completions (IdkDPO)
    # the frozen original model's outputs (logits; hidden states when asked) on the part ``frozen_part`` names
    frozen: Part | None = None
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


WEIGHTS = ("forget_weight", "retain_weight")


class UnlearningMethod:
    """Base class. ``args`` is the ``UnlearningConfig``; ``kind`` the model's ``hf_unlearn.kinds.ModelKind`` (or
    its task string, ``"classification"`` or ``"causal_lm"``, for a built-in kind)."""

    name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = False  # cache reference log-probs of the forget set before training
    uses_forget_loss_cap: ClassVar[bool] = False  # the trainer resolves forget_loss_cap before training
    # False: the loss never looks at the forget set (naive fine-tuning)
    has_forget_term: ClassVar[bool] = True
    # the forget set needs an ``alternative`` completion (default refusals are added when it has none)
    needs_alternative: ClassVar[bool] = False
    # "forget" / "retain": the frozen original model runs on that part of every batch (no gradient)
    frozen_part: ClassVar[str | None] = None
    # the forward pass also returns the hidden states (of the model, and of the frozen one)
    needs_hidden_states: ClassVar[bool] = False
    # what the method needs of a model kind beyond per-example losses (``hf_unlearn.kinds.ModelKind.capabilities``:
    # "logits", "wrong_targets", "tokens", "hidden_states"); a method needing none runs on any kind
    requires: ClassVar[frozenset[str]] = frozenset()
    # the UnlearningConfig fields the method reads (the report and card list them with the training fields)
    hyperparameters: ClassVar[tuple[str, ...]] = WEIGHTS

    def __init__(self, args: Any, kind: Any):
        from .kinds import kind_for_task

        kind = kind_for_task(kind) if isinstance(kind, str) else kind
        if not self.supports(kind):
            missing = ", ".join(sorted(self.requires - kind.capabilities))
            raise ValueError(
                f"method {self.name!r} is defined for {' and '.join(self.supported_tasks())} models, not "
                f"{kind.task} (it needs {missing})."
            )
        self.args, self.kind, self.task = args, kind, kind.task
        self.forget_loss_cap: float | None = args.forget_loss_cap  # resolved by the trainer before training

    @classmethod
    def supports(cls, kind: Any) -> bool:
        """Whether the method runs on models of ``kind`` (a ``ModelKind``): it has every capability needed."""
        return cls.requires <= kind.capabilities

    @classmethod
    def supported_tasks(cls) -> list[str]:
        """The task strings of the registered model kinds the method runs on (e.g. for choosing methods)."""
        from .kinds import model_kinds

        return sorted({kind.task for kind in model_kinds() if kind.task and cls.supports(kind)})

    def compute(self, inputs: StepInputs) -> MethodOutput:
        retain_nll = self.kind.loss_of(inputs.retain.logits, inputs.retain.labels)
        forget_nll = self.kind.loss_of(inputs.forget.logits, inputs.forget.labels)
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
            return self.kind.loss_of(inputs.forget_alt.logits, inputs.forget_alt.labels)
        return self.kind.wrong_target_loss(inputs.forget, self.args.seed, inputs.step)


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


@register_method("rl")
class RandomLabels(UnlearningMethod):
    """Train the forget set towards random wrong labels (SalUn-style), plus ``w_r * l(B_r)``."""

    requires = frozenset({"wrong_targets"})

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


@register_method("ieu")
class InfluenceEliminatingUnlearning(UnlearningMethod):
    """``w_r * l(B_r) - gamma * min(l(B_f), cap)``, then weight decay + noise after every optimizer step."""

    hyperparameters = (*WEIGHTS, "ieu_decay", "ieu_noise_std", "ieu_noise_schedule", "ieu_noise_every")

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

    hyperparameters = (*WEIGHTS, "salun_mask_ratio")

    def update_mask_ratio(self) -> float | None:
        return self.args.salun_mask_ratio


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
