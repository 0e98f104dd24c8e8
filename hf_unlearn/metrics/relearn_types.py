"""``RelearnConfig`` and ``RelearnResult``: the protocol and the outcome of the relearning convergence delay
(``hf_unlearn.metrics.relearning``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

OPTIMIZERS = ("adamw", "sgd")
TARGETS = ("accuracy", "loss", "generation_accuracy")


@dataclass
class RelearnConfig:
    """The fixed relearning protocol of ``relearning_convergence_delay``.

    Args:
        optimizer: ``"adamw"`` or ``"sgd"``, over the parameters with ``requires_grad=True``.
        learning_rate: constant learning rate. 1e-4 suits pretrained models (1e-3 collapsed a pretrained MiniLM
            to one class); tiny models trained from scratch relearn in reasonable time at 1e-3.
        weight_decay: decoupled weight decay (AdamW) or L2 (SGD).
        momentum: SGD momentum.
        batch_size: forget examples per step (capped at the forget-set size); batches are drawn from seeded
            shuffles of the forget set, epoch after epoch.
        max_steps: relearning stops here; a model that has not recovered is reported with ``steps=max_steps``
            and ``recovered=False`` (a censored count).
        eval_every: evaluate the forget set every this many steps (step 0 is always evaluated).
        refine: with ``eval_every > 1``, keep the trainable weights of the steps since the last evaluation
            (``eval_every - 1`` copies of the trainable parameters, one fused copy per step); when the target is
            first met at an evaluation, evaluate the kept weights oldest first, so ``steps`` is the first step of
            that window meeting the target: one-step resolution at a fraction of the evaluation cost. (A curve
            that crosses the threshold and falls back between two evaluations is still missed, as with any
            evaluation schedule coarser than every step.) Set it False for large full-weight models if the
            copies do not fit in memory.
        alpha: recovery margin: ``acc_f >= (1 - alpha) * acc_f(original)`` or
            ``loss_f <= (1 + alpha) * loss_f(original)``.
        target: ``"accuracy"``, ``"loss"``, or None for the default of the task (accuracy for classifiers, loss
            for causal LMs, where top-1 token accuracy moves too little to judge, and for diffusion models).
            ``"generation_accuracy"`` (class-conditional diffusion models, with ``judge_model``): the share of
            ``generation_samples`` samples per forgotten class that the judge assigns to their class, recovered
            when ``>= (1 - alpha)`` x the original's (docs/metrics.md).
        generation_samples: ``"generation_accuracy"``: samples per forgotten class at every evaluation (the same
            initial noise every time, seeded by the UNet's ``DiffusionArguments.eval_seed``).
        generation_steps: ``"generation_accuracy"``: DDIM steps of those samples.
        max_grad_norm: gradient clipping (None disables it).
        eval_batch_size: batch size of the forget-set evaluations.
        max_length: truncate tokenized sequences to this length (default: the model's maximum).
        seed: seeds the batch order and any dropout; the caller's global RNG state is left untouched.
        progress_bar: show a tqdm progress bar.
    """

    optimizer: str = "adamw"
    learning_rate: float = 1e-4
    weight_decay: float = 0.0
    momentum: float = 0.0
    batch_size: int = 8
    max_steps: int = 200
    eval_every: int = 1
    refine: bool = True
    alpha: float = 0.1
    target: str | None = None
    generation_samples: int = 50
    generation_steps: int = 25
    max_grad_norm: float | None = 1.0
    eval_batch_size: int = 64
    max_length: int | None = None
    seed: int = 0
    progress_bar: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"RelearnConfig.optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}."
            )
        if self.target is not None and self.target not in TARGETS:
            raise ValueError(
                f"RelearnConfig.target must be one of {list(TARGETS)} or None, got {self.target!r}."
            )
        if not self.learning_rate > 0:
            raise ValueError(f"RelearnConfig.learning_rate must be > 0, got {self.learning_rate}.")
        if not 0 <= self.alpha < 1:
            raise ValueError(f"RelearnConfig.alpha must be in [0, 1), got {self.alpha}.")
        for name in (
            "batch_size",
            "max_steps",
            "eval_every",
            "eval_batch_size",
            "generation_samples",
            "generation_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"RelearnConfig.{name} must be >= 1, got {getattr(self, name)}.")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"RelearnConfig.max_grad_norm must be > 0 or None, got {self.max_grad_norm}.")


@dataclass
class RelearnResult:
    """Outcome of ``relearning_convergence_delay``.

    Attributes:
        steps: relearning steps until the target was met (0: it already was); ``max_steps`` if never.
        recovered: whether the target was met within ``max_steps`` (False means ``steps`` is censored).
        weight_path: ``sum_t ||theta_{t+1} - theta_t||`` from the start until recovery (effective weights).
        start_distance: ``||theta_model - theta_original||`` before relearning (None if the two share no weight).
        curve: one row per evaluation: ``step``, ``loss`` (mean per-example forget loss), ``accuracy`` (forget
            accuracy; token accuracy of the completions for causal LMs), ``distance`` (to the original) and
            ``path`` (path length so far).
        target: ``"accuracy"``, ``"loss"`` or ``"generation_accuracy"`` (then each curve row has it too).
        threshold: the value of the target that counts as recovered.
        reference: the original's forget-set ``loss`` and ``accuracy`` (and ``generation_accuracy``).
        ratio_to_golden: ``steps / golden.steps`` (see ``relearning_convergence_delay``), None without golden.
        golden: the golden model's own result, relearned with the same protocol and seed.
        ratio_to_heldout: ``steps / heldout.steps``, the golden-free ratio; None without ``heldout_dataset``, or
            when the held-out reference cannot stand in for golden (``heldout_note``).
        heldout: the original model learning the held-out examples with the same protocol, seed and target.
        heldout_note: why ``ratio_to_heldout`` is None although a held-out reference was given (None otherwise).
        config: the ``RelearnConfig`` used, as a dict.
    """

    steps: int
    recovered: bool
    weight_path: float
    start_distance: float | None
    curve: list[dict] = field(default_factory=list)
    target: str = "accuracy"
    threshold: float = math.nan
    reference: dict = field(default_factory=dict)
    ratio_to_golden: float | None = None
    golden: RelearnResult | None = None
    config: dict = field(default_factory=dict)
    ratio_to_heldout: float | None = None
    heldout: RelearnResult | None = None
    heldout_note: str | None = None

    def to_dict(self) -> dict:
        """A JSON-serializable dict (non-finite floats become None)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("golden", "heldout")}
        for name in ("golden", "heldout"):
            other = getattr(self, name)
            out[name] = other.to_dict() if other is not None else None
        return _json_safe(out)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
