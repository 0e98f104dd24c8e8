"""The hooks of a ``ModelKind`` that ``hf-unlearn run`` and the model card ask (``RunHooks``, a mixin of
``hf_unlearn.kinds.base.ModelKind``): how a run loads a model folder and its processing class, which trainer
it builds with which extra arguments, how the reference models are aligned with the trained one, and the card's
metadata and figures and the LoRA defaults. ``RunModel`` is what a run loads. Both stay importable from
``hf_unlearn.kinds.base``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch


@dataclass
class RunModel:
    """What ``hf-unlearn run`` loads from a model folder (``ModelKind.load_run_model``).

    Attributes:
        model: the module that is unlearned (and measured, copied as the original, relearned by RCD).
        trainer_input: what the kind's trainer is given instead of ``model``, if anything (a text-to-image
            pipeline whose UNet is ``model``: the trainer saves the whole pipeline).
        trainer_kwargs: the kind's trainer's extra keyword arguments read from the folder (a diffusion
            model's noise scheduler and ``DiffusionArguments``), before the user's settings
            (``ModelKind.trainer_kwargs``).
    """

    model: Any
    trainer_input: Any = None
    trainer_kwargs: dict = field(default_factory=dict)


class RunHooks:
    """The run, card and adapter hooks of ``ModelKind`` (which inherits them); defaults serve ``transformers``
    models."""

    name: ClassVar[str]
    pipeline_tag: ClassVar[str | None]
    library_name: ClassVar[str]

    # -- runs (hf-unlearn run) ----------------------------------------------------------------------
    def load_processing_class(self, path: str, trust_remote_code: bool = False) -> Any:
        """The processing class saved with the model in folder ``path`` (its tokenizer or image processor), which
        the run's data files are read with; None for kinds without one."""
        from ..loading import load_tokenizer

        return load_tokenizer(path, trust_remote_code=trust_remote_code)

    def load_run_model(self, path: str, trust_remote_code: bool = False) -> RunModel:
        """What a run unlearns from folder ``path``: by default the model ``loading.load_model`` loads (a PEFT
        adapter folder on its base), given to the trainer as it is, with no extra trainer arguments."""
        from ..loading import load_model

        return RunModel(load_model(path, trust_remote_code=trust_remote_code))

    def trainer_class(self) -> type:
        """The trainer a run of this kind uses (``UnlearningTrainer`` or a subclass taking the same arguments
        plus ``trainer_kwargs``)."""
        from ..trainer import UnlearningTrainer

        return UnlearningTrainer

    def trainer_kwargs(self, given: dict, settings: dict | None = None) -> dict:
        """The trainer's extra keyword arguments of a run: ``given`` (from the scenario or the model folder:
        ``LoadedJob.trainer_kwargs``) with the user's kind settings applied (``RunArguments.diffusion``: only
        diffusion models have any; other kinds refuse them)."""
        if settings:
            raise ValueError(
                f"the diffusion settings {sorted(settings)} are for diffusers models, not {self.name} models: "
                "remove the diffusion mapping from the recipe."
            )
        return dict(given)

    def align_references(self, model: torch.nn.Module, references: Any) -> None:
        """Give the reference models of a run (``references``: the original, the golden model; None skipped) what
        the trained ``model`` carries besides its weights, once its trainer is built, so that every model is
        measured alike (a diffusion UNet's scheduler, timesteps and evaluation draws); nothing by default."""

    # -- cards and adapters --------------------------------------------------------------------------
    def card_metadata(self, adapter: bool = False) -> dict[str, Any]:
        """The model card's ``pipeline_tag`` and ``library_name`` (``peft`` for an adapter)."""
        return {"pipeline_tag": self.pipeline_tag, "library_name": "peft" if adapter else self.library_name}

    def card_figures(
        self,
        models: dict[str, torch.nn.Module],
        output_dir: str,
        seed: int = 0,
        options: dict | None = None,
        data: dict[str, Any] | None = None,
    ) -> list[str]:
        """Figures of the run's ``models`` (``{"unlearned": ..., "golden": ..., "original": ...}``, those present)
        that the kind draws into ``output_dir`` for the model card, beside the metric plots: the file names
        written (a diffusion model's sample grids, the same noise for every model, seeded by ``seed``).
        ``options``: the run's ``evaluate_unlearning`` options (``generation_steps``); ``data``: the run's raw
        ``forget`` and ``retain`` sets. None by default."""
        return []

    def lora_defaults(self) -> dict[str, Any]:
        """The ``LoraConfig`` fields this kind needs besides the rank, alpha and dropout (``task_type``,
        ``modules_to_save``; ``target_modules`` where PEFT has no default for the architecture, used unless
        the user names them)."""
        return {}
