"""Held-out-referenced stopping: steer unlearning by how the forget set compares with data the model never saw.

A model that never saw the forget set (the golden model) treats it like comparable held-out data. Every
``stopping_eval_steps`` optimizer steps, ``HeldoutStoppingCallback`` measures the model's per-example loss on
the forget set and on the held-out reference (``eval_dataset``, no gradients, batched) and the AUC of the loss
attack between them: the probability that a random forget example has a lower loss than a random held-out one
(1.0 = the forget set is plainly still there, 0.5 = indistinguishable, below 0.5 = pushed past unseen data).
``stopping="heldout"`` stops at the first check with ``AUC <= 0.5 + stopping_tolerance`` through the Trainer's
own ``control.should_training_stop`` (the weights kept are that step's); ``"heldout_pause"`` switches the
forget term off while the AUC is within that bound and ends with the weights of the latest check within
``0.5 +- stopping_tolerance``; ``"heldout_per_example"`` stops pushing each forget example once its loss reaches
its own held-out target (``quantile_targets``).

For a forget set of corrupted labels (mislabeled data), unseen data of the same kind carries the same
corruption: ``heldout_label_corruption="random"`` relabels the held-out classifier examples with seeded random
wrong labels before they serve as the reference.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback

logger = logging.getLogger(__name__)
KEPT_FILE = "stopping_kept.safetensors"  # the pause / per-example rules' kept weights, in checkpoints
FIRST_MOMENTS = ("exp_avg", "momentum_buffer")  # what reset_first_moments zeroes


@dataclass
class StoppingRecord:
    """What the stopping rule saw: one entry per check, and where (and why) it stopped.

    ``trainer.stopping.record`` after ``train()``; ``to_dict()`` gives it as a plain dict (the report's
    ``stopping`` entry).

    Attributes:
        tolerance: the band's half-width around 0.5 (``stopping_tolerance``).
        every: the check interval in optimizer steps.
        rule: ``"heldout"``, ``"heldout_pause"`` or ``"heldout_per_example"``.
        history: one dict per check: ``step``, ``loss_auc``, ``forget_loss``, ``heldout_loss`` (and the rule's
            own entries, e.g. ``forget_active``).
        stopped_step: ``"heldout"``: the step it stopped at (``None``: it never reached the band).
        reason: why the run ended where it did, in words (also in the report and the card).
        check_seconds: wall time spent in the checks (the rule's overhead).
        targets: per-example rule: each forget example's target loss at the latest check.
        kept_step: pause / per-example rules: the latest check within 0.5 +- tolerance, whose weights the run
            ended with (``None``: the last step's).
    """

    tolerance: float
    every: int
    rule: str = "heldout"
    history: list[dict] = field(default_factory=list)  # {"step", "loss_auc", "forget_loss", "heldout_loss"}
    stopped_step: int | None = None
    reason: str = ""
    check_seconds: float = 0.0  # wall time spent in the checks (the rule's overhead)
    targets: list[float] | None = None  # per-example rule: each forget example's target loss, latest check
    kept_step: int | None = None  # pause / per-example rules: the latest check within 0.5 +- tolerance

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


def fixed_subset(rows: list[dict], size: int, seed: int) -> list[dict]:
    """``rows`` itself when ``size`` is 0 or covers it, else a seeded random ``size`` of them (in order)."""
    if not size or len(rows) <= size:
        return rows
    keep = np.sort(np.random.default_rng([seed, 4409]).choice(len(rows), size=size, replace=False))
    return [rows[i] for i in keep]


#: A training step (forward + backward over its forget + retain batches) costs about this many no-gradient
#: forward passes over the same examples (measured on the built-in scenarios on CPU: 2.6-4.4; the low end, so
#: that the checks rather cost less than the budget).
STEP_COST_IN_FORWARDS = 2.5
#: The share of the training time the checks may take when the interval is chosen automatically.
CHECK_BUDGET = 0.10


def auto_interval(examples_per_check: int, examples_per_step: int) -> int:
    """The smallest check interval (in optimizer steps) at which a check over ``examples_per_check`` examples
    costs at most ``CHECK_BUDGET`` of the steps in between, each over ``examples_per_step`` examples."""
    step_cost = STEP_COST_IN_FORWARDS * max(examples_per_step, 1)
    return max(1, math.ceil(examples_per_check / (CHECK_BUDGET * step_cost)))


def quantile_targets(forget_losses: np.ndarray, heldout_losses: np.ndarray) -> np.ndarray:
    """Each forget example's target loss: the held-out loss quantile at the example's rank among the forget
    losses (ties broken by position), so that forget examples pushed to their targets have the held-out loss
    distribution. Non-finite held-out losses are left out."""
    heldout = heldout_losses[np.isfinite(heldout_losses)]
    if heldout.size == 0:
        raise ValueError("stopping: every held-out loss is non-finite; check eval_dataset (labels, padding).")
    ranks = np.argsort(np.argsort(np.nan_to_num(forget_losses, nan=np.inf), kind="stable"), kind="stable")
    return np.quantile(heldout, (ranks + 0.5) / len(forget_losses))


class HeldoutStoppingCallback(TrainerCallback):
    """Steers ``trainer`` by how its forget set compares with the held-out ``reference`` rows: stops it once
    they are indistinguishable (``"heldout"``), pauses its forget term while they are (``"heldout_pause"``), or
    gives each forget example a held-out target loss (``"heldout_per_example"``). See ``docs/stopping.md``.

    Args:
        trainer: the ``UnlearningTrainer`` (its model, forget rows and batched no-gradient passes are used).
        reference: canonical rows of the held-out reference (labels already corrupted when asked).
        every: check every this many optimizer steps (None: ``auto_interval``).
        tolerance: stop when the loss-attack AUC is at most ``0.5 + tolerance``.
        rule: ``"heldout"`` (stop), ``"heldout_pause"`` (switch the forget term off while the AUC is within the
            bound) or ``"heldout_per_example"`` (per-example targets, see ``quantile_targets``).
        max_examples: measure at most this many forget and this many reference rows (fixed seeded subsets).
        seed: the subsets' seed.
        keep: ``"in_band"`` (pause / per-example rules): end with the weights of the latest check whose AUC was
            within ``0.5 +- tolerance`` (a CPU copy of the trainable weights and buffers is kept); ``"last"``:
            the weights of the last step.
        reset_momentum: pause rule: zero the optimizer's first moments when a check pauses the forget term.
    """

    def __init__(
        self,
        trainer: Any,
        reference: list[dict],
        every: int | None,
        tolerance: float,
        rule: str = "heldout",
        max_examples: int = 0,
        seed: int = 0,
        keep: str = "in_band",
        reset_momentum: bool = False,
    ):
        self.trainer = trainer
        self.rule = rule
        self.pause = rule == "heldout_pause"
        self.reset_momentum = reset_momentum
        self.per_example = rule == "heldout_per_example"
        self.keep_in_band = keep == "in_band" and (self.pause or self.per_example)
        self.kept: dict[str, torch.Tensor] | None = None  # CPU copy of the weights at record.kept_step
        # the per-example rule needs every forget example's loss (each gets its own target)
        self.forget = (
            trainer.forget_rows if self.per_example else fixed_subset(trainer.forget_rows, max_examples, seed)
        )
        self.reference = fixed_subset(reference, max_examples, seed + 1)
        args = trainer.args
        if every is None:
            per_step = 2 * args.per_device_train_batch_size * args.gradient_accumulation_steps
            every = auto_interval(len(self.forget) + len(self.reference), per_step)
            logger.info("stopping: checking every %d steps (stopping_eval_steps=None).", every)
        self.record = StoppingRecord(tolerance=tolerance, every=every, rule=rule)
        # the training step already runs forget + retain batches with gradients: twice the train batch fits
        self.batch_size = max(args.per_device_eval_batch_size, 2 * args.per_device_train_batch_size)
        self._check_cache: list[dict] | None = None  # the check's collated batches
        import sklearn.metrics  # noqa: F401  (the AUC's; imported here rather than inside the first timed check)

    def restore(self, saved: dict, checkpoint: str | None = None) -> None:
        """Resume: the checks of the interrupted run, whether the forget term was on (pause rule), the targets
        (per-example rule) and the kept weights (from ``checkpoint``)."""
        self.record.history = list(saved.get("history", []))
        self.record.stopped_step = saved.get("stopped_step")
        self.record.reason = saved.get("reason", "")
        self.record.check_seconds = float(saved.get("check_seconds", 0.0))
        flags = [entry["forget_active"] for entry in self.record.history if "forget_active" in entry]
        if self.pause and flags:
            self.trainer.set_forget_term(active=flags[-1])
        if self.per_example and saved.get("targets") is not None:
            self.record.targets = list(saved["targets"])
            self.trainer.set_forget_term(targets=torch.tensor(self.record.targets, dtype=torch.float32))
        self.record.kept_step = saved.get("kept_step")
        if self.record.kept_step is not None and checkpoint is not None:
            from safetensors.torch import load_file

            self.kept = load_file(os.path.join(checkpoint, KEPT_FILE))

    def save(self, folder: str) -> None:
        """Checkpoint the kept weights (the record itself goes to the trainer's state file)."""
        if self.kept is not None:
            from safetensors.torch import save_file

            save_file(self.kept, os.path.join(folder, KEPT_FILE))

    def in_band(self, auc: float) -> bool:
        return abs(auc - 0.5) <= self.record.tolerance

    def measure(self, step: int) -> dict:
        """One check at ``step``: the loss AUC and the mean losses, appended to the record."""
        start = time.perf_counter()
        forget, heldout = self.check_losses()
        entry = {
            "step": int(step),
            "loss_auc": loss_auc(forget.numpy(), heldout.numpy()),
            "forget_loss": _finite_mean(forget),
            "heldout_loss": _finite_mean(heldout),
        }
        if self.per_example:
            targets = quantile_targets(forget.numpy(), heldout.numpy())
            entry["at_target"] = int((forget.numpy() >= targets).sum())
            self.record.targets = [float(t) for t in targets]
            self.trainer.set_forget_term(targets=torch.tensor(targets, dtype=torch.float32))
        self.record.history.append(entry)
        self.record.check_seconds += time.perf_counter() - start
        return entry

    def check_losses(self, model: torch.nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-example losses of the checked forget rows and of the reference rows, in one no-gradient pass,
        of ``model`` (default: the trainer's; another model, e.g. a golden one, is measured on the same rows)."""
        values = self.trainer.per_example_losses(self._check_batches(), model, desc="stopping check")
        return values[: len(self.forget)], values[len(self.forget) :]

    def _check_batches(self) -> list[dict]:
        """The forget rows' batches, then the reference rows' (collated once, on the CPU: the rows are fixed)."""
        if self._check_cache is None:
            self._check_cache = [
                batch
                for rows in (self.forget, self.reference)
                for batch in self.trainer.collate_rows(rows, self.batch_size)
            ]
        return self._check_cache

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
        if self.keep_in_band and self.in_band(entry["loss_auc"]):
            self.kept = {
                name: t.detach().to("cpu", copy=True) for name, t in _kept_tensors(self.trainer.model)
            }
            self.record.kept_step = state.global_step
        if self.pause:
            self._steer(entry)
            return control
        if self.per_example:
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

    def _steer(self, entry: dict) -> None:
        """The pause rule at one check: the forget term on above the band, off within or below it; when it
        goes off, the optimizer's momentum is cut, so that the ascent stops at this step."""
        trainer = self.trainer
        was_active = trainer.forget_active
        trainer.set_forget_term(active=entry["loss_auc"] > 0.5 + self.record.tolerance)
        if was_active and not trainer.forget_active and self.reset_momentum:
            entry["momentum_reset"] = reset_first_moments(trainer.optimizer)
        entry["forget_active"] = trainer.forget_active

    def on_train_end(self, args, state, control, **kwargs):
        last = self.record.history[-1]["loss_auc"] if self.record.history else math.nan
        if self.keep_in_band:
            last = self._end_with_kept_weights(state.global_step, last)
        if self.pause:
            paused = sum(entry.get("forget_active") is False for entry in self.record.history)
            self.record.reason = (
                f"pause rule: the forget term was paused after {paused} of {len(self.record.history)} checks "
                f"(loss AUC <= {0.5 + self.record.tolerance:.3f}); "
                f"{self._kept_phrase(state.global_step, last)}"
            )
            logger.info("stopping='heldout_pause': %s.", self.record.reason)
        elif self.per_example:
            done = self.record.history[-1].get("at_target", 0) if self.record.history else 0
            self.record.reason = (
                f"per-example rule: {done} of {len(self.forget)} forget examples were at or above their held-out "
                f"targets at the last check; {self._kept_phrase(state.global_step, last)}"
            )
            logger.info("stopping='heldout_per_example': %s.", self.record.reason)
        elif self.record.stopped_step is None:
            self.record.reason = (
                f"ran to max_steps without meeting the rule (last loss AUC {last:.3f} > "
                f"{0.5 + self.record.tolerance:.3f}): raise max_steps or learning_rate, or the forget set is "
                "not separable from the held-out reference by loss"
            )
            logger.warning("stopping='heldout': %s.", self.record.reason)

    def _kept_phrase(self, step: int, auc: float) -> str:
        if self.keep_in_band and self.record.kept_step is not None:
            return f"kept the weights of step {self.record.kept_step} of {step} (loss AUC {auc:.3f}, the latest check within 0.5 +- {self.record.tolerance:g})"
        return f"last loss AUC {auc:.3f} at step {step}"

    def _end_with_kept_weights(self, step: int, last: float) -> float:
        """Load the kept weights (unless the last step is the kept one); returns the AUC of the kept step."""
        kept_step = self.record.kept_step
        if kept_step is None:
            logger.warning(
                "stopping=%r: no check had a loss AUC within 0.5 +- %g; the weights of the last step are kept.",
                self.rule,
                self.record.tolerance,
            )
            return last
        if kept_step != step:
            with torch.no_grad():
                for name, tensor in _kept_tensors(self.trainer.model):
                    tensor.copy_(self.kept[name].to(tensor.device))
            logger.info(
                "stopping=%r: kept the weights of step %d (the latest check within the band).",
                self.rule,
                kept_step,
            )
        return next(e["loss_auc"] for e in self.record.history if e["step"] == kept_step)


def reset_first_moments(optimizer: Any) -> int:
    """Zero the first moments of ``optimizer`` (AdamW's ``exp_avg``, SGD's ``momentum_buffer``; through
    accelerate's wrapper); returns how many tensors were reset (0 for optimizers keeping other state)."""
    inner = getattr(optimizer, "optimizer", optimizer)
    count = 0
    for state in getattr(inner, "state", {}).values():
        for key in FIRST_MOMENTS:
            moment = state.get(key)
            if isinstance(moment, torch.Tensor):
                moment.zero_()
                count += 1
    return count


def _kept_tensors(model: torch.nn.Module):
    """The tensors that unlearning changes: trainable parameters and buffers (e.g. batch-norm statistics)."""
    for name, param in model.named_parameters():
        if param.requires_grad:
            yield name, param
    yield from model.named_buffers()


def _finite_mean(values: torch.Tensor) -> float:
    values = values[torch.isfinite(values)]
    return float(values.mean()) if values.numel() else math.nan
