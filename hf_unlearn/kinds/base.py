"""``ModelKind``: what differs between the kinds of model ``hf_unlearn`` serves, behind one seam, and the
registry that picks the kind of a model.

A kind recognises its models, prepares and collates their data, runs a collated batch through the model to
its outputs and **per-example losses**, gives the scale of its loss (the ascent cap's ``log C``), its model
card metadata and its LoRA defaults. The trainer, the set-up passes, stopping, the metrics and the pipeline
ask the kind instead of comparing task strings. A new kind is a ``ModelKind`` subclass registered with
``register_model_kind``: nothing else in the package needs an edit for ``ft``, ``ga``, ``grad_diff`` and
``ieu`` (methods that need only per-example losses) to train it.

The hooks ``hf-unlearn run`` and the model card ask (loading a run's model folder, the kind's trainer and its
arguments, the card's metadata and figures, LoRA defaults) live in ``run_hooks.py`` (``RunHooks``, inherited).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..data.common import unwrap_model
from .run_hooks import RunHooks, RunModel  # noqa: F401 (RunModel: importable from here, as before)


@dataclass(frozen=True)
class ForwardContext:
    """What the trainer tells a kind about a training step's forward pass (``ModelKind.training_forward``),
    for kinds that draw randomness inside it (a diffusion model's noise and timesteps): drawn as a pure
    function of this context, the draws come back bit for bit when a run resumes. Kinds without such draws
    ignore it.

    Attributes:
        seed: the run's seed (``UnlearningConfig.seed``).
        step: the optimizer step being computed (``state.global_step``, 0 for the first).
        parts: ``(part name, rows)`` of the batch in order (``("retain", 8), ("forget", 8)``): the batch holds
            the parts' rows one after the other.
        frozen: the pass is the frozen original's (``UnlearningMethod.frozen_part``), without gradient.
    """

    seed: int
    step: int
    parts: tuple[tuple[str, int], ...]
    frozen: bool = False


class ModelKind(RunHooks):
    """One kind of model. Subclasses set the class attributes and override what differs.

    Attributes:
        name: the kind's own name (``"text_classifier"``, ``"image_classifier"``, ``"causal_lm"``, ...).
        task: the task string reports, configs and methods know it by (``"classification"``, ``"causal_lm"``).
        has_classes: one class label per example (wrong labels, accuracy, ``forget/ua``).
        token_level: labels per token (completion masks, chunked LM heads, generation metrics).
        images: the inputs are images (pixel values).
        input_keys: the keys of a collated batch that are model inputs (the rest, labels and bookkeeping,
            are not).
        capabilities: what the kind gives a method beyond per-example losses: ``"logits"`` (a predictive
            distribution), ``"wrong_targets"`` (a per-example loss on a wrong target), ``"tokens"``,
            ``"hidden_states"``.
        pipeline_tag: the Hub's pipeline tag of its model cards.
        auto_class: the ``transformers`` auto class that loads such a model.
        attack_metrics: the ``evaluate_unlearning`` keys an attack (``hf_unlearn.metrics.attacks``) measures on
            the attacked copies: the kind's primary forget metrics.
        primary_forget_metrics: the keys ``attack/<name>/gap_to_golden`` is taken on, in order of preference
            (the first one measured is used).
    """

    name: ClassVar[str] = ""
    task: ClassVar[str] = ""
    has_classes: ClassVar[bool] = False
    token_level: ClassVar[bool] = False
    images: ClassVar[bool] = False
    input_keys: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[frozenset[str]] = frozenset()
    pipeline_tag: ClassVar[str | None] = None
    library_name: ClassVar[str] = "transformers"
    auto_class: ClassVar[str | None] = None
    #: the few keys that summarize a result (quickstart table, stage lines, card summary), and the shortest
    headline_keys: ClassVar[tuple[str, ...]] = (
        "forget/loss",
        "retain/loss",
        "test/loss",
        "mia/auc",
        "forget_quality/ks_pvalue",
        "rcd/ratio_to_golden",
        "rcd/ratio_to_heldout",
    )
    short_keys: ClassVar[tuple[str, ...]] = ("forget/loss", "retain/loss", "rcd/ratio_to_golden")
    #: the golden model's statistics on every split are references (classifiers: its retain accuracy enters
    #: the average gap), not only on the forget and test sets
    golden_on_every_split: ClassVar[bool] = False
    #: what relearning (RCD) recovers by default: ``"accuracy"`` (kinds with ``correct``) or ``"loss"``
    default_rcd_target: ClassVar[str] = "loss"
    #: the kind's output layer can run chunk by chunk (``lm_loss_chunk_size``: a causal LM's head)
    chunked_head: ClassVar[bool] = False
    #: the forget-set keys measured on attacked copies (``metrics.attacks``), and the primary one(s) whose gap to
    #: golden is reported (the first one present)
    attack_metrics: ClassVar[tuple[str, ...]] = ("forget/loss",)
    primary_forget_metrics: ClassVar[tuple[str, ...]] = ("forget/loss",)
    #: ``evaluate_unlearning(judge_model=...)`` samples the model and asks a judge classifier (generation
    #: accuracy, Fréchet distance): class-conditional diffusion models
    judged_generation: ClassVar[bool] = False
    #: the ``evaluate_unlearning`` options of the kind's judged generation metrics (kinds with
    #: ``judged_generation``), and those of them of which one must be given for the others (the judges)
    generation_options: ClassVar[tuple[str, ...]] = (
        "judge_model",
        "judge_processor",
        "generation_samples",
        "generation_steps",
    )
    judges: ClassVar[tuple[str, ...]] = ("judge_model",)

    # -- recognising -------------------------------------------------------------------------------
    def recognises(self, model: torch.nn.Module) -> bool:
        """Whether ``model`` (already unwrapped from PEFT / DDP / compile) is of this kind."""
        raise NotImplementedError

    def resolve(self, model: torch.nn.Module) -> ModelKind:
        """The kind that serves ``model`` once recognised: ``self``, or, for a stand-in registered so that an
        optional package is imported only when its models appear, the kind that package registers."""
        return self

    def recognises_architecture(self, architecture: str) -> bool:
        """Whether a recorded architecture class name (a report's ``"architecture"``) is of this kind."""
        return False

    def recognises_folder(self, path: str) -> bool:
        """Whether the saved model in folder ``path`` is of this kind (read from its config, not loaded)."""
        return False

    def load(self, path: str, trust_remote_code: bool = False, **kwargs: Any) -> torch.nn.Module:
        """The model saved in folder ``path`` (local files only, safetensors only)."""
        raise NotImplementedError(f"model kind {self.name!r} cannot load a folder.")

    # -- data ---------------------------------------------------------------------------------------
    def build_preparer(
        self, model: torch.nn.Module, tokenizer: Any = None, max_length: int | None = None, seed: int = 0
    ) -> tuple[Any, Any]:
        """``(preparer, collator)``: ``preparer(data, name, with_wrong_labels=False)`` turns any accepted raw
        dataset into canonical rows (a sequence of dicts; ``index`` the position in the dataset) and has a
        ``task`` attribute; ``collator(rows)`` pads rows into a batch, ``collator(paired items)`` into
        ``{"retain": batch, "forget": batch}`` (see ``hf_unlearn.data.UnlearningCollator``)."""
        raise NotImplementedError

    def model_inputs(self, batch: dict, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """The model's keyword inputs of a collated ``batch`` (on ``device`` when given)."""
        return {k: batch[k] if device is None else batch[k].to(device) for k in self.input_keys if k in batch}

    def row_length(self, row: dict) -> int:
        """A canonical row's length, for batching rows of similar length (1 for fixed-size inputs)."""
        return 1

    def row_key(self, row: dict) -> tuple[Any, Any]:
        """``(hashable inputs, hashable label)`` of a canonical row, to find rows in both forget and retain."""
        inputs = tuple(_hashable(row[k]) for k in self.input_keys if k in row)
        return inputs, _hashable(row["labels"])

    # -- forward and losses --------------------------------------------------------------------------
    def forward(self, model: torch.nn.Module, batch: dict, **kwargs: Any) -> tuple[Any, Any]:
        """``(predictions, outputs)`` of ``model`` on a collated ``batch`` (its model inputs, already on the
        model's device): the predictions are what ``loss_of`` takes (the logits of ``transformers`` models),
        ``outputs`` the model's own return value (hidden states when asked with ``output_hidden_states``)."""
        outputs = model(**self.model_inputs(batch), **kwargs)
        return outputs.logits, outputs

    def training_forward(
        self, model: torch.nn.Module, batch: dict, context: ForwardContext, **kwargs: Any
    ) -> tuple[Any, Any]:
        """``forward`` in a training step (the trainer's step and frozen passes): ``context`` says which step,
        seed and parts, so that a kind drawing randomness in its forward draws it from them (resume bit-exact).
        Default: ``forward``, ignoring ``context``. Evaluation passes (per-example losses for stopping, the
        cap, MIA, RCD) call ``forward``: their draws, if any, must be fixed per example."""
        return self.forward(model, batch, **kwargs)

    def loss_of(self, predictions: Any, labels: torch.Tensor) -> torch.Tensor:
        """Per-example losses ``l(x, y)`` -> ``[B]`` from ``forward``'s predictions and the batch's labels."""
        raise NotImplementedError

    def per_example_losses(
        self, model: torch.nn.Module, batch: dict, device: torch.device | str | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Per-example losses of ``model`` on a collated ``batch`` -> ``[B]``: its model inputs and labels are
        moved to ``device`` when given (else they must be on the model's device already)."""
        predictions, _ = self.forward(model, self.model_inputs(batch, device), **kwargs)
        labels = batch["labels"] if device is None else batch["labels"].to(device)
        return self.loss_of(predictions, labels)

    def training_loss(self, model: torch.nn.Module, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
        """The loss a plain training step minimises (the scenarios train their original and golden models with
        it): the mean per-example loss unless the kind's models compute their own."""
        predictions, _ = self.forward(model, inputs)
        return self.loss_of(predictions, labels).mean()

    def per_example_logprob(self, predictions: Any, labels: torch.Tensor) -> torch.Tensor:
        """``log p(y | x)`` per example (NPO's and DPO's reference): ``-loss`` unless the kind knows better."""
        return -self.loss_of(predictions, labels)

    def wrong_target_loss(self, part: Any, seed: int, step: int) -> torch.Tensor:
        """Per-example loss of a batch part (``methods.Part``) on a wrong target (``rl``, ``dr``, ``salun``), a
        pure function of (``seed``, ``step``); kinds without targets to get wrong do not have the
        ``"wrong_targets"`` capability."""
        raise NotImplementedError(f"model kind {self.name!r} has no wrong targets.")

    def correct(self, predictions: Any, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(correct [B], scored [B])``: per example, the correct predictions (classes or tokens) and the
        positions scored; None for a kind without accuracy (its RCD target is then the loss)."""
        return None

    def loss_scale(self, model: torch.nn.Module) -> float:
        """The scale of one nat of the loss: the ascent cap's default margin is a multiple of it (``log C`` of
        C classes or tokens)."""
        return 1.0

    def num_classes(self, model: torch.nn.Module) -> int | None:
        """C of the model's predictions (labels or vocabulary), None without classes."""
        return None

    # -- metrics ------------------------------------------------------------------------------------
    def batch_stats(self, predictions: Any, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example statistics of one evaluated batch: ``loss``, ``correct`` and ``tokens`` (scored
        positions) at least; more keys (e.g. a causal LM's Min-K% scores) are kept in ``SplitStats.extra``."""
        loss = self.loss_of(predictions, labels)
        scored = self.correct(predictions, labels)
        correct, tokens = scored if scored is not None else (torch.zeros_like(loss), torch.ones_like(loss))
        return {"loss": loss, "correct": correct, "tokens": tokens}

    def summarize(self, prefix: str, stats: Any) -> dict[str, float]:
        """The per-split keys of ``evaluate_unlearning`` from a split's ``SplitStats``: ``{prefix}/loss``."""
        import numpy as np

        return {f"{prefix}/loss": float(np.mean(stats.loss))}

    def membership_nonmembers(self, forget_rows: list[dict], test_rows: list[dict]) -> list[int] | None:
        """The positions in ``test_rows`` of the non-members the membership attacks (``mia/*``) compare the forget
        rows with; None: every test row."""
        return None

    def relearn_scorer(self, target: str, rows: list[dict], config: Any, options: dict) -> Any:
        """RCD's measurement of a target of the kind's own (beyond ``"accuracy"`` and ``"loss"``), as a function
        ``model -> value`` (recovered when ``>= (1 - alpha)`` x the original's), for the forget ``rows``, the
        ``RelearnConfig`` and ``options`` (``judge_model``, ``judge_processor``); no such target by default."""
        raise ValueError(
            f"RCD target {target!r} is not available for {self.name} models; use 'loss' or 'accuracy'."
        )

    def suite_metrics(self, inputs: Any) -> dict[str, float]:
        """The kind's own metrics after the shared ones (``metrics.suite.SuiteInputs``: the models, the splits'
        rows and statistics, the options of ``evaluate_unlearning``); none by default."""
        return {}

    def check_evaluation_options(
        self, utility_datasets: Any = None, muse_datasets: Any = None, **options: Any
    ) -> None:
        """Refuse ``evaluate_unlearning`` options the kind has no metrics for (TOFU's utility splits, MUSE's
        sets: causal LMs only; ``options``, the judge of generated samples: ``check_judge_options``)."""
        for name, given in (("utility_datasets", utility_datasets), ("muse_datasets", muse_datasets)):
            if given:
                raise ValueError(f"{name} is for causal LMs, not {self.name} models.")
        self.check_judge_options(**options)

    def check_judge_options(self, **options: Any) -> None:
        """Refuse the options of judged generation metrics (``judge_model``, ``judge_processor``,
        ``generation_samples``, ``generation_steps``; ``clip_model``, ``clip_processor``, ``concepts`` for
        text-to-image) unless the kind has them (``judged_generation``, ``generation_options``), and the other
        options without one of the kind's ``judges``."""
        given = [name for name, value in options.items() if value is not None]
        if given and not self.judged_generation:
            raise ValueError(
                f"{', '.join(given)}: judged generation metrics are for class-conditional diffusion models and "
                f"text-to-image pipelines, not {self.name} models; leave these options out."
            )
        foreign = [name for name in given if name not in self.generation_options]
        if foreign:
            raise ValueError(
                f"{', '.join(foreign)}: not an option of {self.name} models' generation metrics (CLIP is for "
                "text-to-image pipelines); leave it out."
            )
        if given and not any(options.get(name) is not None for name in self.judges):
            raise ValueError(
                f"{', '.join(given)} needs {' or '.join(self.judges)} (an image classifier over the classes"
                f"{', or a local CLIP' if 'clip_model' in self.judges else ''})."
            )

    def headline(self, rows: Any = None, short: bool = False) -> list[str]:
        """The keys that summarize a result of this kind (``rows``: the reported metrics, for kinds whose
        summary depends on what was measured)."""
        return list(self.short_keys if short else self.headline_keys)


def _hashable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.numpy().tobytes()
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value


#: the registered kinds, most recently registered first (a later kind may take over models of an earlier one)
_KINDS: list[ModelKind] = []


def register_model_kind(kind: ModelKind | type[ModelKind]) -> ModelKind | type[ModelKind]:
    """Register a model kind (an instance, or a class, instantiated without arguments; usable as a class
    decorator). Kinds registered later are asked first. Returns its argument."""
    instance = kind() if isinstance(kind, type) else kind
    if not instance.name:
        raise ValueError(f"{type(instance).__name__} has no name.")
    _KINDS[:] = [k for k in _KINDS if k.name != instance.name]
    _KINDS.insert(0, instance)
    return kind


def unregister_model_kind(name: str) -> None:
    """Remove the kind registered as ``name`` (tests)."""
    _KINDS[:] = [k for k in _KINDS if k.name != name]


def model_kinds() -> list[ModelKind]:
    """The registered kinds, in the order they are asked."""
    return list(_KINDS)


def get_model_kind(model: torch.nn.Module) -> ModelKind:
    """The registered kind that recognises ``model`` (unwrapped from PEFT / DDP / compile first)."""
    inner = unwrap_model(model)
    for kind in _KINDS:
        if kind.recognises(inner):
            return kind.resolve(inner)
    raise ValueError(
        f"Unsupported model class {type(inner).__name__}: hf_unlearn works with *ForSequenceClassification, "
        "*ForImageClassification and *ForCausalLM (or *LMHeadModel) models, and the kinds registered with "
        "hf_unlearn.kinds.register_model_kind."
    )


def kind_for_folder(path: str) -> ModelKind:
    """The registered kind of the model saved in folder ``path``; a ``transformers`` architecture no kind claims
    is loaded as a sequence classifier (``AutoModelForSequenceClassification``), as before kinds existed."""
    for kind in _KINDS:
        if kind.recognises_folder(path):
            return kind
    return kind_for_task("classification")


#: tasks whose kinds an optional package registers: ``{task: module}``, imported when a report names the task
OPTIONAL_KIND_MODULES = {"diffusion": "hf_unlearn.diffusion"}


def kind_for_task(task: str | None, architecture: str | None = None) -> ModelKind:
    """The kind a recorded ``task`` string (and, when known, architecture class name) stands for: reports
    and configs keep the task string, not the model. ``task=None``: the kind of the architecture, else the
    text classifier. A task of an optional package (``OPTIONAL_KIND_MODULES``) imports it first."""
    if task in OPTIONAL_KIND_MODULES and not any(kind.task == task for kind in _KINDS):
        import importlib

        importlib.import_module(OPTIONAL_KIND_MODULES[task])
    if task is None:
        found = [kind for kind in _KINDS if architecture and kind.recognises_architecture(architecture)]
        return found[0] if found else kind_for_task("classification")
    matching = [kind for kind in _KINDS if kind.task == task]
    if architecture:
        for kind in matching:
            if kind.recognises_architecture(architecture):
                return kind
    if not matching:
        raise ValueError(f"no registered model kind has the task {task!r}.")
    return matching[-1]  # the first registered of the task (the built-in one)
