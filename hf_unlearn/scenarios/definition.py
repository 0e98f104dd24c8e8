"""What a scenario is: the training recipe of its original and golden models, the builder that each built-in
scenario subclasses (tokenizer, data, initial model), and the ``Scenario`` the cache hands back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .resources import quiet_transformers


@dataclass(frozen=True)
class TrainRecipe:
    """How the original and the golden model are trained (the same recipe for both).

    AdamW, linear warm-up over ``warmup_ratio`` of the steps then linear decay to zero, gradient clipping,
    ``epochs`` passes over the training set in a seeded random order (with ``group_by_length``, batches of
    similar lengths, which pad less but are less random). Parameters whose names start with one of ``frozen``
    keep their initial values.
    """

    learning_rate: float
    epochs: int
    batch_size: int = 16
    warmup_ratio: float = 0.05
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    frozen: tuple[str, ...] = ()
    group_by_length: bool = False


def suggested_unlearning(
    learning_rate: float,
    max_steps: int,
    batch_size: int,
    stopping: str = "heldout_pause",
    influence_removal: str = "mask",
) -> dict:
    """A scenario's ``unlearning_defaults``: ``UnlearningConfig`` keyword arguments with a constant learning rate
    (unlearning runs are short; warm-up and decay would spend most of them), held-out-referenced stopping and
    influence removal before the first step (the first seed paper's remedy, at the library's ``mask_ratio``):
    neither needs a golden model, and together they brought ``dr`` and ``ieu`` nearest it
    (``benchmarks/results/stopping.json``, ``docs/stopping.md``)."""
    return {
        "learning_rate": learning_rate,
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "lr_scheduler_type": "constant",
        "stopping": stopping,
        "influence_removal": influence_removal,
    }


class ScenarioBuilder:
    """What one built-in scenario defines. Subclasses set the class attributes and the four methods."""

    name: str = ""
    task: str = ""
    description: str = ""
    recipe: TrainRecipe
    unlearning_defaults: dict = {}
    #: ``evaluate_unlearning`` keyword arguments this scenario is evaluated with (e.g. ``generation``).
    evaluation: dict = {}
    #: The relearning (RCD) protocol for this scenario, as ``RunArguments.relearn_*`` values.
    relearning: dict = {}
    #: ``"random"`` when the forget set is corrupted labels: golden-free references (the held-out RCD) then use
    #: held-out examples with seeded wrong labels, unseen data with the same corruption.
    heldout_label_corruption: str = "none"
    #: The forget set's column whose rows belong together (one person's questions): sequential requests
    #: (``scenarios.sequential``) split the forget set by it; ``None``: by row.
    group_column: str | None = None
    #: Bump when the data generator or preprocessing changes, so that caches rebuild.
    version: int = 1
    #: The ``Scenario`` subclass this builder's ``load_scenario`` returns (None: ``Scenario``), with the extra
    #: fields of ``scenario_fields``.
    scenario_class: type | None = None

    def scenario_fields(self) -> dict:
        """Keyword arguments of ``scenario_class`` beyond ``Scenario``'s fields."""
        return {}

    def custom_quickstart(self):
        """``hf-unlearn quickstart``'s own function for this scenario (called as
        ``f(output_dir, scenario, methods, seed=, overwrite=, progress=)``), or None (default): the shared one."""
        return None

    def build_models(self, config: dict, seed: int, progress: bool, original_dir: str, golden_dir: str):
        """Train and save the original and golden models itself, returning ``(meta, tokenizer, data)`` as the
        shared build does (a kind whose models the shared training loop does not train, e.g. diffusion); None
        (default): the shared build (``make_tokenizer``, ``build_data``, ``init_model`` and ``recipe``)."""
        return None

    def check_requirements(self) -> None:
        """Raise ``MissingExtraError`` when an optional package is missing."""

    def config(self) -> dict:
        """Model and data settings that, when changed, invalidate the cache (JSON-serializable)."""
        return {}

    def make_tokenizer(self, seed: int):
        """The tokenizer (trained or loaded) used by both models."""
        raise NotImplementedError

    def build_data(self, seed: int, tokenizer) -> dict[str, Any]:
        """``{"forget", "retain", "test"}`` as ``datasets.Dataset`` in the raw formats of ``hf_unlearn.data``,
        plus optional ``"info"`` (extra entries for ``Scenario.sizes``)."""
        raise NotImplementedError

    def init_model(self, tokenizer, seed: int) -> torch.nn.Module:
        """The initial model, identical for the same seed (the start of both original and golden)."""
        raise NotImplementedError

    def load_model(self, path: str) -> torch.nn.Module:
        from ..loading import load_model  # the auto class from config.architectures (LM, text or image)

        with quiet_transformers():
            return load_model(path)

    def load_tokenizer(self, path: str):
        from transformers import AutoTokenizer

        with quiet_transformers():
            return AutoTokenizer.from_pretrained(path, local_files_only=True)


class TinyCausalLMBuilder(ScenarioBuilder):
    """A scenario on a small causal LM built from config: a GPT-2 (``hf_unlearn.tiny.tiny_causal_lm``) or another
    ``architecture`` of ``hf_unlearn.tiny.tiny_decoder``. Subclasses set its sizes and ``data_config`` (the data
    settings), which with the architecture make the cache key."""

    task = "causal_lm"
    architecture: str = "gpt2"
    vocab_size: int
    max_length: int
    hidden_size: int
    num_layers: int
    data_config: dict = {}

    # tiny models trained from scratch relearn at 1e-3 (design notes, section 11)
    relearning = {"relearn_learning_rate": 1e-3, "relearn_max_steps": 100}

    def config(self) -> dict:
        return {
            "vocab_size": self.vocab_size,
            "max_length": self.max_length,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            # GPT-2 caches predate the key: naming it there would rebuild them
            **({} if self.architecture == "gpt2" else {"architecture": self.architecture}),
            **self.data_config,
        }

    def init_model(self, tokenizer, seed: int) -> torch.nn.Module:
        from ..tiny import tiny_causal_lm, tiny_decoder

        sizes = {
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "max_length": self.max_length,
        }
        if self.architecture == "gpt2":
            return tiny_causal_lm(tokenizer, **sizes, seed=seed)
        return tiny_decoder(tokenizer, self.architecture, **sizes, seed=seed)


@dataclass
class Scenario:
    """A built-in unlearning scenario: datasets, tokenizer, and the cached original and golden models.

    Attributes:
        name, task, description: what it is (``task`` is ``"classification"`` or ``"causal_lm"``).
        tokenizer: the tokenizer of both models.
        forget, retain, test: ``datasets.Dataset`` in the raw formats of ``hf_unlearn.data``.
        original_dir, golden_dir: ``save_pretrained`` directories (weights + tokenizer).
        sizes: ``n_forget``, ``n_retain``, ``n_test``, ``n_params`` and scenario-specific counts.
        train_seconds: ``{"original", "golden"}`` wall time of training each from scratch (measured when built).
        unlearning_defaults: suggested ``UnlearningConfig`` keyword arguments for this scenario.
        evaluation: ``evaluate_unlearning`` keyword arguments for this scenario (e.g. ``generation=True``).
        metrics: memorization measured when built: ``{"original": {...}, "golden": {...}}`` with accuracy
            (classifiers) or per-token NLL and token accuracy (causal LMs) on forget / retain / test.
        init_fingerprint: SHA-256 of the initial weights both models were trained from.
        config: the configuration the cached models were built with.
        from_cache: whether the models were loaded from the cache rather than trained by this call.
    """

    name: str
    task: str
    description: str
    tokenizer: Any
    forget: Any
    retain: Any
    test: Any
    original_dir: str
    golden_dir: str
    sizes: dict
    train_seconds: dict
    unlearning_defaults: dict
    seed: int = 0
    evaluation: dict = field(default_factory=dict)
    heldout_label_corruption: str = "none"
    metrics: dict = field(default_factory=dict)
    init_fingerprint: str = ""
    config: dict = field(default_factory=dict)
    from_cache: bool = False
    _load: Callable[[str], torch.nn.Module] | None = field(default=None, repr=False)

    def original_model(self) -> torch.nn.Module:
        """A fresh instance of the original model (trained on forget + retain), in eval mode."""
        return self._load(self.original_dir)

    def golden_model(self) -> torch.nn.Module:
        """A fresh instance of the golden model (same init and recipe, retain set only), in eval mode."""
        return self._load(self.golden_dir)

    def trainer_kwargs(self) -> dict:
        """The extra keyword arguments of the trainer of the scenario's model kind (``hf-unlearn run``); none."""
        return {}

    def evaluation_options(self) -> dict:
        """``evaluate_unlearning`` keyword arguments of a run on this scenario: ``evaluation``."""
        return dict(self.evaluation)
