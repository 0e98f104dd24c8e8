"""The trainer of a run: the model kind's (``UnlearningTrainer``, or a kind's subclass such as
``DiffusionUnlearningTrainer`` with its extra arguments), shared by ``hf-unlearn run``, sequential requests and the
diffusion quickstart."""

from __future__ import annotations

from typing import Any


def needs_heldout(config: Any) -> bool:
    """Whether training measures held-out data (the forget-loss cap from it, or a stopping rule)."""
    return config.forget_loss_cap_from_eval is not None or config.stopping != "none"


def kind_trainer(
    model: Any,
    config: Any,
    *,
    forget: Any,
    retain: Any,
    test: Any = None,
    processing_class: Any = None,
    peft_config: Any = None,
    trainer_input: Any = None,
    trainer_kwargs: dict | None = None,
    quiet: bool = False,
) -> Any:
    """The model kind's trainer of ``model`` (``trainer_input``, e.g. a text-to-image pipeline around the UNet,
    when the trainer takes something else), with ``test`` as its held-out set only where training needs one
    (``needs_heldout``). ``quiet`` keeps the Trainer's progress bar and log dicts off the terminal (they still
    reach ``report_to`` and the log history)."""
    from transformers import PrinterCallback, ProgressCallback

    from ..kinds import get_model_kind

    trainer = get_model_kind(model).trainer_class()(
        model if trainer_input is None else trainer_input,
        config,
        forget_dataset=forget,
        retain_dataset=retain,
        processing_class=processing_class,
        peft_config=peft_config,
        eval_dataset=test if needs_heldout(config) else None,
        **(trainer_kwargs or {}),
    )
    if quiet:
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    return trainer
