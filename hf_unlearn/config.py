"""``UnlearningConfig``: ``TrainingArguments`` plus the unlearning method and its hyperparameters."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, fields

from transformers import TrainingArguments

from .methods import METHODS, SETTINGS, load_optional_method, method_names
from .methods.settings import check_at_least_zero, check_choice, check_fraction

logger = logging.getLogger(__name__)

INFLUENCE_REMOVALS = ("none", "mask", "rbm")
STOPPING_RULES = ("none", "heldout", "heldout_pause", "heldout_per_example")
STOPPING_KEEP = ("in_band", "last")
LABEL_CORRUPTIONS = ("none", "random")


@dataclass
class UnlearningConfig(TrainingArguments, *SETTINGS):
    """Configuration of ``UnlearningTrainer``.

    Every ``transformers.TrainingArguments`` field applies (learning rate, batch size, ``max_steps``,
    gradient accumulation, ...). The retain set plays the role of the training set: an epoch is one pass
    over the retain set (or over the forget set when it is the larger), each step pairing one retain batch
    with one forget batch of ``per_device_train_batch_size`` examples. Each method family's own fields
    (``npo_beta``, ``ieu_decay``, ``dr_alpha``, ...) are declared, and validated, beside the method in
    ``hf_unlearn.methods`` (``register_settings``) and composed in here.
    """

    method: str = field(
        default="grad_diff",
        metadata={
            "help": "Unlearning method: 'ft' (fine-tune on retain), 'ga' (gradient ascent), 'grad_diff', 'npo', "
            "'rl' (random labels), 'salun' (random labels on a forget-saliency mask of the weights), 'dr' "
            "(discriminative regularization), 'ieu' (influence eliminating unlearning), or the LM methods "
            "'simnpo', 'idk_nll', 'idk_dpo', 'wga', 'satimp', 'undial' and 'rmu' (simnpo and undial also "
            "for classifiers); for diffusion models also 'esd' (hf_unlearn.diffusion).",
            "choices": method_names(),
        },
    )
    forget_weight: float = field(
        default=1.0, metadata={"help": "gamma: weight of the forget term (ga, grad_diff, npo, rl, ieu)."}
    )
    retain_weight: float = field(
        default=1.0, metadata={"help": "w_r: weight of the retain loss (grad_diff, npo, rl, ieu)."}
    )
    forget_loss_cap: float | None = field(
        default=None,
        metadata={
            "help": "Upper bound (nats) on each forget example's loss inside ascent terms (ga, grad_diff, ieu): "
            "examples past it stop being pushed, so ascent cannot diverge. None (default): the cap is set "
            "before the first step to the model's mean forget loss + forget_loss_cap_margin x log C (C = number "
            "of classes, or the vocabulary size for LMs), so it scales with the task and ascent always has room "
            "to move. float('inf') disables the cap. A cap below every forget example's starting loss makes "
            "the ascent term a no-op; the trainer warns when that happens."
        },
    )
    forget_loss_cap_margin: float = field(
        default=1.0,
        metadata={
            "help": "Default cap (forget_loss_cap=None): how far above the starting mean forget loss ascent may "
            "push, in units of log C, the loss of a uniform prediction over C classes (or the vocabulary). "
            "1.0 lets a memorized example go to chance level; the cap is saved in checkpoints."
        },
    )
    forget_loss_cap_from_eval: float | None = field(
        default=None,
        metadata={
            "help": "If set, replace forget_loss_cap by this factor x the model's mean per-example loss on "
            "eval_dataset, measured once before unlearning. The held-out loss is where a model that never saw "
            "the forget set puts unseen data, so the cap stops ascent near the golden model instead of at an "
            "absolute number that suits one task only (benchmarks/sweep.py: 0.5 on authors-qa). Needs "
            "eval_dataset; the measured cap is saved in checkpoints."
        },
    )
    influence_removal: str = field(
        default="none",
        metadata={
            "help": "'mask': before unlearning, zero the mask_ratio fraction of weights whose forget-set "
            "gradient is largest relative to their retain-set gradient ('forget-only' weights). 'rbm': "
            "retention-based masking (Ding et al., TMLR 2025): zero the mask_ratio fraction of weights the "
            "retain data uses least (smallest retain-gradient saliency) among those the forget set moves, so "
            "that weights shared with retained data (overlapping features) are kept.",
            "choices": list(INFLUENCE_REMOVALS),
        },
    )
    mask_ratio: float = field(
        default=0.02,
        metadata={
            "help": "Fraction in (0, 1) of trainable weights reset by influence_removal='mask' or 'rbm'."
        },
    )
    stopping: str = field(
        default="none",
        metadata={
            "help": "Held-out-referenced stopping (no golden model needed): every stopping_eval_steps steps, "
            "compare the per-example forget losses with those on eval_dataset (held-out data of the same kind) "
            "by the AUC of a loss attack. 'heldout': stop at the first check where the AUC is <= 0.5 + "
            "stopping_tolerance, keeping that step's weights. 'heldout_pause': pause the forget term (train on "
            "retain only) while the AUC is within that bound and resume it when the forget set drifts back, up "
            "to max_steps, so that retain utility can recover from the ascent. 'heldout_per_example': at each "
            "check, give every forget example a target loss, the held-out loss at its rank among the forget "
            "losses (quantile matching), and stop pushing each example, at every step, while its loss is at or "
            "above its target, up to max_steps. The checks, the step and the reason go to the report and the "
            "model card.",
            "choices": list(STOPPING_RULES),
        },
    )
    stopping_eval_steps: int | None = field(
        default=None,
        metadata={
            "help": "stopping='heldout': check every this many optimizer steps (one no-gradient forward pass over "
            "the checked forget and held-out examples). None: the interval at which the checks cost about 10 percent of "
            "the training time in between (a training step counted as 2.5 forward passes over its forget + "
            "retain batches)."
        },
    )
    stopping_max_examples: int = field(
        default=32,
        metadata={
            "help": "stopping='heldout': each check measures at most this many forget and this many held-out "
            "examples (a fixed seeded subset of each; 0 = all), which bounds its cost on large sets. Smaller "
            "checks come more often at the same cost (stopping_eval_steps=None): 32 against 32 (an AUC standard "
            "error of about 0.07) checked twice as often as 64 landed nearer golden on the built-in scenarios.",
        },
    )
    stopping_keep: str = field(
        default="in_band",
        metadata={
            "help": "stopping='heldout_pause' / 'heldout_per_example': 'in_band' ends with the weights of the "
            "latest check whose loss AUC was within 0.5 +- stopping_tolerance (a CPU copy of the trainable "
            "weights is kept; not under FSDP / DeepSpeed), 'last' with those of the last step.",
            "choices": list(STOPPING_KEEP),
        },
    )
    stopping_tolerance: float = field(
        default=0.05,
        metadata={"help": "stopping='heldout': stop when the forget/held-out loss AUC is <= 0.5 + this."},
    )
    stopping_reset_momentum: bool = field(
        default=True,
        metadata={
            "help": "stopping='heldout_pause': when a check pauses the forget term, zero the optimizer's first "
            "moments (AdamW's exp_avg, SGD's momentum buffer), so that the ascent stops at that step instead of "
            "coasting on its momentum for about 1 / (1 - beta1) more steps."
        },
    )
    heldout_label_corruption: str | None = field(
        default=None,
        metadata={
            "help": "Classifiers whose forget set is corrupted labels (mislabeled data): 'random' relabels the "
            "held-out reference of stopping='heldout' (and, in hf-unlearn run, of the golden-free "
            "rcd/ratio_to_heldout) with seeded random wrong labels, so that the reference is unseen data with "
            "the same kind of corruption; 'none' keeps its labels. None (default): 'none', except in hf-unlearn "
            "run and quickstart on a built-in scenario, which take the scenario's own value.",
            "choices": list(LABEL_CORRUPTIONS),
        },
    )
    max_length: int | None = field(
        default=None,
        metadata={"help": "Truncate tokenized sequences to this length (default: the model's maximum)."},
    )
    lm_loss_chunk_size: int = field(
        default=256,
        metadata={
            "help": "Causal LMs: run the LM head and the per-token losses over this many completion tokens at a "
            "time, recomputed in the backward pass, so that the [batch, length, vocabulary] logits never exist "
            "whole (same losses; at a 128k vocabulary a chunk's fp32 logits are 128 MiB). 0: full logits. A model "
            "whose logits its LM head does not reproduce (checked once on a probe) keeps the full logits.",
        },
    )
    allow_overlap: bool = field(
        default=False,
        metadata={"help": "Allow exact duplicates between the forget and retain sets (an error by default)."},
    )
    # TrainingArguments defaults that do not fit unlearning
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Kept False: the trainer builds its own paired retain/forget batches."},
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "Initial learning rate (AdamW)."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X update steps."})

    def __post_init__(self):
        self._validate_unlearning_fields()
        if self.dataloader_pin_memory and (self.use_cpu or not _has_accelerator()):
            self.dataloader_pin_memory = False  # pinning needs an accelerator; torch warns on every loader
        super().__post_init__()

    def _validate_unlearning_fields(self) -> None:
        load_optional_method(self.method)
        check_choice("method", self.method, sorted(METHODS))
        self._check_numbers()
        check_choice("influence_removal", self.influence_removal, INFLUENCE_REMOVALS)
        check_choice("stopping", self.stopping, STOPPING_RULES)
        check_choice("stopping_keep", self.stopping_keep, STOPPING_KEEP)
        if self.heldout_label_corruption is not None:
            check_choice("heldout_label_corruption", self.heldout_label_corruption, LABEL_CORRUPTIONS)
        if self.stopping_eval_steps is not None and self.stopping_eval_steps < 1:
            raise ValueError(
                f"UnlearningConfig.stopping_eval_steps must be >= 1, got {self.stopping_eval_steps}."
            )
        if self.stopping_max_examples < 0:
            raise ValueError(
                f"UnlearningConfig.stopping_max_examples must be >= 0 (0 = all), got {self.stopping_max_examples}."
            )
        if not 0 <= self.stopping_tolerance < 0.5:
            raise ValueError(
                f"UnlearningConfig.stopping_tolerance must be in [0, 0.5), got {self.stopping_tolerance}."
            )
        check_fraction(self, "mask_ratio")
        check_at_least_zero(self, "forget_weight", "retain_weight", "lm_loss_chunk_size")
        for settings in SETTINGS:
            settings.check_settings(self)
        if self.forget_loss_cap is not None and not self.forget_loss_cap > 0:
            raise ValueError(
                f"UnlearningConfig.forget_loss_cap must be > 0 (inf disables it) or None, got {self.forget_loss_cap}."
            )
        if not self.forget_loss_cap_margin > 0:
            raise ValueError(
                f"UnlearningConfig.forget_loss_cap_margin must be > 0, got {self.forget_loss_cap_margin}."
            )
        if self.forget_loss_cap_from_eval is not None and self.forget_loss_cap_from_eval <= 0:
            raise ValueError(
                "UnlearningConfig.forget_loss_cap_from_eval must be > 0 or None, got "
                f"{self.forget_loss_cap_from_eval}."
            )
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"UnlearningConfig.max_length must be >= 2, got {self.max_length}.")
        self._warn_other_methods_settings()

    def _check_numbers(self) -> None:
        """Every number of ours, and the optimizer's, finite (NaN passes every range check below); the learning
        rate not negative; ``max_steps`` not 0 (``Trainer`` would still take one optimizer step)."""
        own = {f.name for f in fields(UnlearningConfig)} - {f.name for f in fields(TrainingArguments)}
        for name in sorted(own | {"learning_rate", *FINITE_TRAINING_FIELDS}):
            value = getattr(self, name, None)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isnan(value) or (math.isinf(value) and not (name in INF_ALLOWED and value > 0)):
                allowed = " (float('inf') only disables it)" if name in INF_ALLOWED else ""
                raise ValueError(f"UnlearningConfig.{name} must be a finite number{allowed}, got {value}.")
        # learning_rate 0 is allowed: a run that only measures, or only resets weights (influence_removal)
        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and value < 0:
                raise ValueError(f"UnlearningConfig.{name} must be >= 0, got {value}.")
        if self.max_steps == 0:
            raise ValueError(
                "UnlearningConfig.max_steps must be > 0 (optimizer steps), or -1 to train for num_train_epochs; "
                "got 0 (which transformers runs as one step)."
            )

    def _warn_other_methods_settings(self) -> None:
        """A warning for each setting of another method changed from its default: ``method`` ignores it."""
        defaults = {f.name: f.default for f in fields(UnlearningConfig)}
        ignored = []
        for name, users in method_settings().items():
            value = getattr(self, name)
            if self.method not in users and value != defaults[name]:
                readers = ", ".join(users[:3]) + (f" and {len(users) - 3} more" if len(users) > 3 else "")
                ignored.append(f"{name}={value!r} (read by {readers})")
        if ignored:
            logger.warning(
                "UnlearningConfig: method=%r does not use %s; remove the setting or choose the method that "
                "reads it.",
                self.method,
                "; ".join(ignored),
            )


#: TrainingArguments numbers that must be finite too (the optimizer's)
FINITE_TRAINING_FIELDS = ("weight_decay", "max_grad_norm", "adam_beta1", "adam_beta2", "adam_epsilon")
#: numbers where +inf means "off"
INF_ALLOWED = ("forget_loss_cap",)
#: the ascent cap's settings, read by the methods with ``uses_forget_loss_cap``
FORGET_LOSS_CAP_SETTINGS = ("forget_loss_cap", "forget_loss_cap_margin", "forget_loss_cap_from_eval")


def method_settings() -> dict[str, list[str]]:
    """``{UnlearningConfig field: the methods that read it}`` for every field some method reads: each method's
    declared ``hyperparameters``, and the ascent cap's settings for the methods that cap their ascent."""
    users: dict[str, list[str]] = {}
    for name, method in sorted(METHODS.items()):
        reads = method.hyperparameters + (FORGET_LOSS_CAP_SETTINGS if method.uses_forget_loss_cap else ())
        for setting in reads:
            users.setdefault(setting, []).append(name)
    return users


def _has_accelerator() -> bool:
    import torch

    accelerator = getattr(torch, "accelerator", None)
    if accelerator is not None:
        return accelerator.is_available()
    return torch.cuda.is_available()
