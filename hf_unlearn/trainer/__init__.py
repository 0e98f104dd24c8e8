"""The trainer: ``UnlearningTrainer`` (the step: batches in, ``kind.forward``, ``method.compute``, log),
``setup`` (the passes before the first step: ascent cap, masks, reference log-probs), ``state`` (checkpoint
extras), ``inputs`` (argument checks) and ``losses_api`` (the public per-example losses of a model on rows)."""

from __future__ import annotations

from .trainer import UnlearningDivergedError, UnlearningTrainer

__all__ = ["UnlearningDivergedError", "UnlearningTrainer"]
