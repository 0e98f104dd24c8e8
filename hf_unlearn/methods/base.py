"""The method registry and the base class: each method binds the pure losses of ``hf_unlearn.losses`` to the
batch parts.

The trainer runs the retain, forget (and, when the forget set has an ``alternative`` column, the
forget-alternative) batches through the model in one forward pass and hands the method a ``StepInputs``;
the method returns the loss and the numbers to log. Adding a method is one class with ``@register_method`` in
a module of this package (its own config fields, if any, a ``@register_settings`` dataclass beside it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from .. import losses


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


#: methods that optional packages register, by name: ``(module that registers them, pip extra it needs)``;
#: naming one imports its module (``load_optional_method``)
OPTIONAL_METHODS = {"esd": ("hf_unlearn.diffusion", "diffusion")}


def method_names() -> list[str]:
    """Every method name a config may give: the registered ones and the optional packages'."""
    return sorted({*METHODS, *OPTIONAL_METHODS})


def load_optional_method(name: str) -> None:
    """Import the optional package that registers method ``name`` (``OPTIONAL_METHODS``), if not registered yet;
    a one-line ``ValueError`` naming the extra to install when the package cannot be imported."""
    if name in METHODS or name not in OPTIONAL_METHODS:
        return
    import importlib

    module, extra = OPTIONAL_METHODS[name]
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ValueError(
            f'method {name!r} comes with {module}, which needs `pip install "hf-unlearn[{extra}]"` ({err}).'
        ) from None


def get_method(name: str) -> type[UnlearningMethod]:
    load_optional_method(name)
    if name not in METHODS:
        raise ValueError(f"Unknown unlearning method {name!r}; choose one of {method_names()}.")
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
        from ..kinds import kind_for_task

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
        from ..kinds import model_kinds

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
