"""Held-out-referenced stopping: stop unlearning when the forget set looks like data the model never saw.

A model that never saw the forget set (the golden model) treats it like comparable held-out data. Every
``stopping_eval_steps`` optimizer steps, ``HeldoutStoppingCallback`` measures the model's per-example loss on
the forget set and on the held-out reference (``eval_dataset``, no gradients, batched) and the AUC of the loss
attack between them: the probability that a random forget example has a lower loss than a random held-out one
(1.0 = the forget set is plainly still there, 0.5 = indistinguishable, below 0.5 = pushed past unseen data).
Training stops at the first check with ``AUC <= 0.5 + stopping_tolerance``, through the Trainer's own
``control.should_training_stop``, so the weights kept are those of that step.

For a forget set of corrupted labels (mislabeled data), unseen data of the same kind carries the same
corruption: ``heldout_label_corruption="random"`` relabels the held-out classifier examples with seeded random
wrong labels before they serve as the reference.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

from . import losses

logger = logging.getLogger(__name__)


@dataclass
class StoppingRecord:
    """What the stopping rule saw: one entry per check, and where (and why) it stopped."""

    tolerance: float
    every: int
    history: list[dict] = field(default_factory=list)  # {"step", "loss_auc", "forget_loss", "heldout_loss"}
    stopped_step: int | None = None
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def loss_auc(forget_losses: np.ndarray, heldout_losses: np.ndarray) -> float:
    """P(a forget example has a lower loss than a held-out one), ties counted half: the loss attack's AUC."""
    from .metrics.mia import attack_auc

    return attack_auc(forget_losses, heldout_losses)


def corrupt_labels(rows: list[dict], num_classes: int, seed: int, key: str = "labels") -> list[dict]:
    """Copies of classifier ``rows`` whose label (``key``: ``"labels"`` in canonical rows, ``"label"`` in raw
    ones) is replaced by a seeded random *wrong* label."""
    rng = np.random.default_rng([seed, 7727])
    out = []
    for row in rows:
        shift = int(rng.integers(1, num_classes))
        out.append({**row, key: (int(row[key]) + shift) % num_classes})
    return out


class HeldoutStoppingCallback(TrainerCallback):
    """Stops ``trainer`` once its forget set is indistinguishable from the held-out ``reference`` rows.

    Args:
        trainer: the ``UnlearningTrainer`` (its model, forget rows and batched no-gradient passes are used).
        reference: canonical rows of the held-out reference (labels already corrupted when asked).
        every: check every this many optimizer steps.
        tolerance: stop when the loss-attack AUC is at most ``0.5 + tolerance``.
    """

    def __init__(
        self, trainer: Any, reference: list[dict], every: int, tolerance: float, pause: bool = False
    ):
        self.trainer = trainer
        self.pause = pause
        self.reference = reference
        self.record = StoppingRecord(tolerance=tolerance, every=every)

    def restore(self, saved: dict) -> None:
        """Resume: the checks of the interrupted run, and (pause rule) whether the forget term was on."""
        self.record.history = list(saved.get("history", []))
        self.record.stopped_step = saved.get("stopped_step")
        self.record.reason = saved.get("reason", "")
        flags = [entry["forget_active"] for entry in self.record.history if "forget_active" in entry]
        if self.pause and flags:
            self.trainer.forget_active = flags[-1]

    def measure(self, step: int) -> dict:
        """One check at ``step``: the loss AUC and the mean losses, appended to the record."""
        trainer = self.trainer
        nll = losses.per_example_nll
        forget = trainer._per_example(trainer.model, trainer.forget_rows, "stopping: forget", nll)
        heldout = trainer._per_example(trainer.model, self.reference, "stopping: held-out", nll)
        entry = {
            "step": int(step),
            "loss_auc": loss_auc(forget.numpy(), heldout.numpy()),
            "forget_loss": _finite_mean(forget),
            "heldout_loss": _finite_mean(heldout),
        }
        self.record.history.append(entry)
        return entry

    def on_train_begin(self, args, state, control, **kwargs):
        if not self.record.history:  # a fresh run (a resumed one brings its checks back from the checkpoint)
            entry = self.measure(state.global_step)
            logger.info(
                "stopping='heldout': at step %d the forget/held-out loss AUC is %.3f (stop at <= %.3f).",
                state.global_step,
                entry["loss_auc"],
                0.5 + self.record.tolerance,
            )

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.record.every or self.record.stopped_step is not None:
            return control
        entry = self.measure(state.global_step)
        state.log_history.append(
            {"step": state.global_step, "stopping/loss_auc": round(entry["loss_auc"], 6)}
        )
        if self.pause:
            self.trainer.forget_active = entry["loss_auc"] > 0.5 + self.record.tolerance
            entry["forget_active"] = self.trainer.forget_active
            return control
        if entry["loss_auc"] <= 0.5 + self.record.tolerance:
            self.record.stopped_step = state.global_step
            self.record.reason = (
                f"the forget set became indistinguishable from the held-out reference: loss AUC "
                f"{entry['loss_auc']:.3f} <= 0.5 + {self.record.tolerance:g} (forget loss "
                f"{entry['forget_loss']:.4g}, held-out loss {entry['heldout_loss']:.4g})"
            )
            logger.info("stopping='heldout': stopped at step %d: %s.", state.global_step, self.record.reason)
            control.should_training_stop = True
        return control

    def on_train_end(self, args, state, control, **kwargs):
        last = self.record.history[-1]["loss_auc"] if self.record.history else math.nan
        if self.pause:
            paused = sum(entry.get("forget_active") is False for entry in self.record.history)
            self.record.reason = (
                f"pause rule: the forget term was paused after {paused} of {len(self.record.history)} checks "
                f"(loss AUC <= {0.5 + self.record.tolerance:.3f}); last loss AUC {last:.3f} at step {state.global_step}"
            )
            logger.info("stopping='heldout_pause': %s.", self.record.reason)
        elif self.record.stopped_step is None:
            self.record.reason = (
                f"ran to max_steps without meeting the rule (last loss AUC {last:.3f} > "
                f"{0.5 + self.record.tolerance:.3f}): raise max_steps or learning_rate, or the forget set is "
                "not separable from the held-out reference by loss"
            )
            logger.warning("stopping='heldout': %s.", self.record.reason)


def _finite_mean(values: torch.Tensor) -> float:
    values = values[torch.isfinite(values)]
    return float(values.mean()) if values.numel() else math.nan
