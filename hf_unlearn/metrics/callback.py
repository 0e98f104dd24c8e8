"""``UnlearningMetricsCallback``: run ``evaluate_unlearning`` at every Trainer evaluation."""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback

from .evaluation import evaluate_unlearning


class UnlearningMetricsCallback(TrainerCallback):
    """Adds the ``evaluate_unlearning`` metrics to every evaluation of a ``Trainer`` / ``UnlearningTrainer``.

    At ``on_evaluate`` it evaluates the trainer's model and adds every value, with keys prefixed by ``prefix``
    (default ``"eval_unlearn/"``, e.g. ``eval_unlearn/forget/accuracy``), to

    * the metrics dict that ``trainer.evaluate()`` returns, so ``metric_for_best_model="unlearn/forget/loss"``
      works with ``load_best_model_at_end``;
    * the evaluation's entry of ``trainer.state.log_history`` (saved in ``trainer_state.json``).

    ``on_evaluate`` runs after the Trainer has logged the evaluation, so to send the values to the
    ``report_to`` integrations (TensorBoard, W&B, ...) as well, register the callback with ``attach``, which
    gives it the trainer: the values are then logged with ``trainer.log`` at the same step::

        UnlearningMetricsCallback(forget, retain, test, golden_model=golden, processing_class=tok).attach(trainer)

    With a dict of eval datasets the metrics are computed once per evaluation step, not once per dataset.

    Args:
        forget_dataset: as for ``evaluate_unlearning``.
        retain_dataset: as for ``evaluate_unlearning``.
        test_dataset: as for ``evaluate_unlearning`` (optional).
        golden_model: reference model (optional), as for ``evaluate_unlearning``; moved to the trainer's model's
            device at the first evaluation, as ``original_model`` is.
        original_model: reference model (optional), as for ``evaluate_unlearning``.
        processing_class: the tokenizer; defaults to the trainer's ``processing_class``.
        prefix: prepended to every key.
        batch_size: evaluation batch size.
    """

    def __init__(
        self,
        forget_dataset: Any,
        retain_dataset: Any,
        test_dataset: Any = None,
        golden_model: torch.nn.Module | None = None,
        original_model: torch.nn.Module | None = None,
        processing_class: Any = None,
        prefix: str = "eval_unlearn/",
        batch_size: int = 32,
    ):
        self.forget_dataset, self.retain_dataset, self.test_dataset = (
            forget_dataset,
            retain_dataset,
            test_dataset,
        )
        self.golden_model, self.original_model = golden_model, original_model
        self.processing_class, self.prefix, self.batch_size = processing_class, prefix, batch_size
        self.trainer = None
        self.history: list[dict] = []  # (step, metrics) of every evaluation, un-prefixed
        self._last: tuple[int, dict] | None = None

    def attach(self, trainer) -> UnlearningMetricsCallback:
        """Add this callback to ``trainer`` and let it log through ``trainer.log`` (reaches ``report_to``)."""
        self.trainer = trainer
        trainer.add_callback(self)
        return self

    def compute(self, model: torch.nn.Module, processing_class: Any = None) -> dict[str, float]:
        """``evaluate_unlearning`` on ``model`` with this callback's datasets and reference models."""
        device = next(model.parameters()).device
        for ref in (self.golden_model, self.original_model):
            if ref is not None:
                ref.to(device)
        return evaluate_unlearning(
            model,
            forget_dataset=self.forget_dataset,
            retain_dataset=self.retain_dataset,
            test_dataset=self.test_dataset,
            original_model=self.original_model,
            golden_model=self.golden_model,
            processing_class=self.processing_class or processing_class,
            batch_size=self.batch_size,
        )

    def on_evaluate(self, args, state, control, model=None, processing_class=None, metrics=None, **kwargs):
        if model is None:
            return control
        if self._last is not None and self._last[0] == state.global_step:
            values, fresh = self._last[1], False  # several eval datasets at one step: compute once
        else:
            values, fresh = self.compute(model, processing_class), True
            self._last = (state.global_step, values)
            self.history.append({"step": state.global_step, **values})
        prefixed = {self.prefix + key: value for key, value in values.items()}
        if metrics is not None:
            metrics.update(prefixed)
        if not fresh:
            return control
        if self.trainer is not None:
            self.trainer.log(dict(prefixed))
        elif state.log_history:
            state.log_history[-1].update(prefixed)
        return control
