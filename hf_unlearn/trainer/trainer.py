"""``UnlearningTrainer``: a ``transformers.Trainer`` that trains on paired retain/forget batches.

Each step runs one retain batch and one forget batch (plus the alternative completions of the forget batch,
when there are any) through the model in a single forward pass, and hands the logits to the configured
method of ``hf_unlearn.methods`` (a causal LM's as ``lm_head.ChunkedLogits``: the LM head's inputs, which the
losses turn into logits chunk by chunk). The optimizer step hook of ``hf_unlearn.weights.decay_noise`` runs after every
optimizer step for methods that use it (IEU). The measurements before the first step live in
``setup``, the checkpoint files in ``state``, the argument checks in ``inputs``.
"""

from __future__ import annotations

import copy
import logging
import os
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import torch
from transformers import Trainer

from .. import losses
from ..config import UnlearningConfig
from ..data import (
    PairedDataset,
    build_preparer,
    num_classes_of,
    with_default_alternatives,
)
from ..kinds import get_model_kind, lm_head
from ..kinds.base import ForwardContext
from ..methods import Part, StepInputs, get_method
from ..weights import decay_noise
from ..weights import sharded as sharded_masks
from ..weights.distributed import check_sharding
from . import inputs as input_checks
from . import state as run_state
from .losses_api import PerExampleLossesMixin
from .setup import INFLUENCE_SCORERS, SetupMixin, cap_source  # noqa: F401 (importable from here)
from .state import MASK_FILE, REFERENCE_FILE, STATE_FILE  # noqa: F401 (importable from here)

logger = logging.getLogger(__name__)

PART_NAMES = ("retain", "forget", "forget_alt")


class UnlearningDivergedError(RuntimeError):
    """Raised when the unlearning loss stops being finite."""


class UnlearningTrainer(SetupMixin, PerExampleLossesMixin, Trainer):
    """Unlearn ``forget_dataset`` from ``model`` while keeping what ``retain_dataset`` taught it.

    Args:
        model: a ``transformers`` sequence or image classifier, or causal LM (the *original* model).
        args: an ``UnlearningConfig``.
        forget_dataset: the data to remove. Classifier ``{"text", "label"}``; causal LM ``{"prompt",
            "completion"}`` or ``{"text"}`` (optionally with an ``alternative`` column); or pre-tokenized
            ``{"input_ids", "labels"}``; image classifier ``{"image", "label"}`` or ``{"pixel_values", "label"}``.
            A ``datasets.Dataset``, a list of dicts or a dict of lists.
        retain_dataset: the data to keep, in the same formats; it is the training set of the run.
        processing_class: the tokenizer (raw-text datasets) or image processor (``image`` columns).
        eval_dataset: optional data for ``evaluate()`` (same formats; a dict of them is accepted).
        peft_config: a ``peft`` config (e.g. ``LoraConfig``): unlearning then trains adapters only.
        ref_model: reference model for NPO; defaults to the model itself before unlearning (adapters
            disabled with PEFT). Only its forget-set log-probs are kept, computed once before training.
        callbacks: ``TrainerCallback`` list, as for ``Trainer``.
        **kwargs: passed to ``Trainer`` (e.g. ``compute_metrics``, ``optimizers``).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        args: UnlearningConfig | None = None,
        forget_dataset: Any = None,
        retain_dataset: Any = None,
        processing_class: Any = None,
        eval_dataset: Any = None,
        peft_config: Any = None,
        ref_model: torch.nn.Module | None = None,
        callbacks: list | None = None,
        **kwargs: Any,
    ):
        args = input_checks.check_args(args)
        if not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"model must be a transformers model instance, got {type(model).__name__}; load it first, "
                "e.g. AutoModelForSequenceClassification.from_pretrained(path)."
            )
        if forget_dataset is None or retain_dataset is None:
            raise ValueError("UnlearningTrainer needs both forget_dataset and retain_dataset.")
        if peft_config is not None:
            from peft import get_peft_model

            input_checks.seed_everything(args)  # the adapters' initialization follows args.seed
            model = get_peft_model(model, peft_config)
        self.kind = get_model_kind(model)  # the model's ``hf_unlearn.kinds.ModelKind``
        preparer, collator = build_preparer(model, processing_class, args.max_length, args.seed)
        self.preparer = preparer
        self.task = preparer.task
        self.method = get_method(args.method)(args, self.kind)
        if self.method.needs_alternative:
            forget_dataset = with_default_alternatives(forget_dataset, args.seed)
        self.forget_rows = preparer(forget_dataset, "forget_dataset", with_wrong_labels=self.kind.has_classes)
        self.retain_rows = preparer(retain_dataset, "retain_dataset")
        input_checks.check_overlap(self.forget_rows, self.retain_rows, args.allow_overlap, self.kind.row_key)
        input_checks.warn_about_sets(self.forget_rows, self.retain_rows)
        if args.label_names is None:
            args.label_names = ["labels"]
        super().__init__(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=PairedDataset(self.retain_rows, self.forget_rows),
            eval_dataset=input_checks.prepare_eval(preparer, eval_dataset),
            processing_class=processing_class,
            callbacks=callbacks,
            **kwargs,
        )
        self.loss_is_scaled_for_ga = False  # our losses are per-batch means; Trainer divides by GA steps
        self.ref_model = ref_model
        self.ref_logprob: torch.Tensor | None = None
        self.ref_alt_logprob: torch.Tensor | None = None  # IdkDPO: of the alternative completions
        self.frozen_model = self._frozen_copy() if self.method.frozen_part else None
        self.lm_heads = self._head_cache()
        self.influence_removed = 0
        self.update_masks: dict[str, torch.Tensor] | None = (
            None  # salun: which weights the updates may change
        )
        self.mask_shards: dict[str, torch.Tensor] | None = (
            None  # their FSDP2 parameters, when local-shard masks
        )
        self._prepare_after_wrapping: tuple | None = None  # (checkpoint,) while prepare_unlearning waits
        # where the ascent cap comes from: "heldout", "user" or "default" (None: the method has no cap)
        self.forget_loss_cap_source = cap_source(args) if self.method.uses_forget_loss_cap else None
        self._step_metrics: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._hook_handle = None
        if args.forget_loss_cap_from_eval is not None and self.eval_dataset is None:
            raise ValueError(
                "forget_loss_cap_from_eval needs eval_dataset (held-out examples of the same task) to measure "
                "the model's loss on unseen data; pass eval_dataset or set forget_loss_cap instead."
            )
        # the forget term's state, steered by ``set_forget_term`` (the held-out stopping rules): off while
        # stopping="heldout_pause" pauses it; per forget example target losses (stopping="heldout_per_example")
        self.forget_active = True
        self.forget_targets: torch.Tensor | None = None
        self.stopping = self._stopping_callback()
        if self.stopping is not None:
            self.add_callback(self.stopping)

    def _stopping_callback(self):
        """The held-out stopping rule (``stopping="heldout"``), or None."""
        args = self.args
        corruption = args.heldout_label_corruption or "none"  # None: not set
        if corruption != "none" and not self.kind.has_classes:
            raise ValueError(
                "heldout_label_corruption relabels classifier examples; this model is a causal LM."
            )
        if args.stopping == "none":
            return None
        if self.eval_dataset is None:
            raise ValueError(
                "stopping='heldout' compares the forget set with held-out data of the same kind: pass "
                "eval_dataset (e.g. the test split, TOFU's holdout), which the model never trained on."
            )
        from ..stopping import HeldoutStoppingCallback, corrupt_labels

        reference = self._heldout_rows()
        if corruption == "random":
            reference = corrupt_labels(reference, num_classes_of(self.model), args.seed)
        return HeldoutStoppingCallback(
            self,
            reference,
            args.stopping_eval_steps,
            args.stopping_tolerance,
            rule=args.stopping,
            max_examples=args.stopping_max_examples,
            seed=args.seed,
            keep=self._stopping_keep(),
            # nothing to pause without a forget term (ft): the optimizer is left alone
            reset_momentum=args.stopping_reset_momentum and self.method.has_forget_term,
        )

    def _stopping_keep(self) -> str:
        if not self.method.has_forget_term:  # nothing pushes the forget set: keeping a copy buys nothing
            return "last"
        if self.args.stopping_keep == "in_band" and (self.is_fsdp_enabled or self.is_deepspeed_enabled):
            logger.warning(
                "stopping_keep='in_band' keeps a copy of the weights, which sharded training (FSDP, DeepSpeed) "
                "does not support here: the weights of the last step are kept."
            )
            return "last"
        return self.args.stopping_keep

    def _heldout_rows(self) -> list[dict]:
        parts = self.eval_dataset.values() if isinstance(self.eval_dataset, dict) else [self.eval_dataset]
        return [row for part in parts for row in part.rows]

    # -- set-up before the first step --------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """Run unlearning. Caches NPO reference log-probs and applies influence removal first
        (``prepare_unlearning``): on the model as it is, or, when the Trainer shards it (FSDP, ZeRO-3), on the
        wrapped model once it is.

        With ``resume_from_checkpoint`` the run continues bit-for-bit where it stopped: the batch order and
        optimizer come back through ``Trainer``, the IEU noise and random wrong labels are functions of
        (seed, step), and the reference cache is read back from the checkpoint.
        """
        checkpoint = run_state.resolve_checkpoint(self.args.output_dir, resume_from_checkpoint)
        sharding = self.parameter_sharding_by_trainer()
        if sharding is None:
            self.prepare_unlearning(checkpoint)
        else:
            self.check_gradient_passes(sharding)
            self._prepare_after_wrapping = (checkpoint,)  # run by _prepare_for_training
        return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def _save(self, output_dir: str | None = None, state_dict: Any = None) -> None:
        """Like ``Trainer._save``, but the arguments go to JSON instead of a pickled ``training_args.bin``."""
        super()._save(output_dir, state_dict=state_dict)
        output_dir = output_dir or self.args.output_dir
        pickled = os.path.join(output_dir, "training_args.bin")
        if os.path.isfile(pickled):
            os.remove(pickled)
        with open(os.path.join(output_dir, "training_args.json"), "w") as f:
            f.write(self.args.to_json_string())

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        super()._save_checkpoint(model, trial)
        masks = self.update_masks
        if self.mask_shards is not None:  # gathered on every process, the full masks saved
            masks = sharded_masks.gather_masks(self.mask_shards, masks)
        if not self.args.should_save:
            return
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        run_state.save_run_state(self, folder, masks)

    def _frozen_copy(self) -> torch.nn.Module | None:
        """The frozen original for methods that need its logits every step: None with PEFT (the
        adapters-disabled model is the original), else a copy of the weights in eval mode (logged: it doubles
        the weights' memory)."""
        if hasattr(self.model, "disable_adapter"):
            return None
        frozen = copy.deepcopy(self.model).eval().requires_grad_(False).to(self.args.device)
        size = sum(p.numel() * p.element_size() for p in frozen.parameters())
        logger.info(
            "%s keeps a frozen copy of the original weights (%.1f MiB).", self.args.method, size / 2**20
        )
        return frozen

    def _frozen_outputs(self, inputs: dict[str, torch.Tensor], part: str) -> Part:
        """The frozen original's outputs on one part of the batch (``method.frozen_part``), no gradient; its
        chunked logits run the head adapters-disabled (PEFT) or the frozen copy's, also without gradient."""
        kwargs = {"output_hidden_states": self.method.needs_hidden_states}
        peft = self.frozen_model is None
        model = self.model if peft else self.frozen_model
        context = self._context(((part, inputs["labels"].shape[0]),), frozen=True)
        with torch.no_grad(), self.model.disable_adapter() if peft else nullcontext():
            logits, outputs = self._forward(model, inputs, context=context, **kwargs)
        if isinstance(logits, lm_head.ChunkedLogits):
            frozen = logits.head.frozen(self.model.disable_adapter if peft else None)
            logits = replace(logits, head=frozen)
        hidden_states = outputs.hidden_states if self.method.needs_hidden_states else None
        return Part(logits=logits, labels=inputs["labels"], hidden_states=hidden_states)

    def _head_cache(self) -> lm_head.HeadCache | None:
        """The LM heads the losses run chunk by chunk (None: full logits for classifiers, with
        ``lm_loss_chunk_size=0``, and with sharded weights)."""
        if not self.kind.chunked_head or not self.args.lm_loss_chunk_size:
            return None
        if self.is_fsdp_enabled or self.is_deepspeed_enabled:
            logger.info("lm_loss_chunk_size: sharded training (FSDP, DeepSpeed) keeps the full logits.")
            return None
        probe = torch.tensor([self.forget_rows[0]["input_ids"][: lm_head.PROBE_TOKENS]])
        return lm_head.HeadCache(probe)

    def _forward(
        self,
        model: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        head_of: torch.nn.Module | None = None,
        full_logits: bool = False,
        context: ForwardContext | None = None,
        **kwargs: Any,
    ) -> tuple[losses.Logits, Any]:
        """``(logits, outputs)`` of ``model`` on ``batch`` (its model inputs are used), by the model kind:
        ``ChunkedLogits`` when the LM head of ``head_of`` (default ``model``; the unwrapped model when ``model``
        is DDP's) runs chunked, else the full logits (a kind's own predictions for other kinds). ``context``:
        a training step's (``ModelKind.training_forward``); None for evaluation passes."""
        head = None if full_logits or self.lm_heads is None else self.lm_heads(head_of or model)
        if head is not None:
            kwargs.update(head=head, chunk_size=self.args.lm_loss_chunk_size)
        if context is None:
            return self.kind.forward(model, batch, **kwargs)
        return self.kind.training_forward(model, batch, context, **kwargs)

    def _context(self, parts: tuple[tuple[str, int], ...], frozen: bool = False) -> ForwardContext:
        """The ``ForwardContext`` of the step being computed."""
        return ForwardContext(self.args.seed, self.state.global_step, parts, frozen)

    def _prepare_for_training(self, *args: Any, **kwargs: Any):
        model, dataloader = super()._prepare_for_training(*args, **kwargs)
        check_sharding(self, model)  # FSDP / ZeRO-3 asked for but not applied (e.g. on CPU): say so
        if self._prepare_after_wrapping is not None:
            (checkpoint,), self._prepare_after_wrapping = self._prepare_after_wrapping, None
            self.prepare_unlearning(checkpoint, model)
        return model, dataloader

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any):
        loss = super().training_step(model, inputs, *args, **kwargs)
        if self.mask_shards is not None:  # SalUn on FSDP2 shards: after the reduce-scatter, before clipping
            sharded_masks.mask_local_gradients(self.model, self.update_masks)
        return loss

    def create_optimizer(self, *args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(*args, **kwargs)
        if self.method.post_step_hook_enabled() and self._hook_handle is None:
            sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
            hook = decay_noise.DecayNoiseHook(
                decay=self.args.ieu_decay,
                noise_std=self.args.ieu_noise_std,
                schedule=self.args.ieu_noise_schedule,
                seed=self.args.seed,
                step_fn=lambda: self.state.global_step,
                max_steps_fn=lambda: self.state.max_steps,
                every=self.args.ieu_noise_every,
                rank_offset=self.args.process_index if sharded else 0,
            )
            self._hook_handle = hook.attach(optimizer)  # ready for sharded checkpoints too
        return optimizer

    # -- the step ----------------------------------------------------------------------------------
    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ):
        if "forget" not in inputs:
            return self._plain_loss(model, inputs, return_outputs)
        names = [name for name in PART_NAMES if name in inputs]
        batch = {
            key: torch.cat([inputs[n][key] for n in names])
            for key in self.kind.model_inputs(inputs["forget"])
        }
        hidden = self.method.needs_hidden_states
        sizes = [inputs[n]["labels"].shape[0] for n in names]
        logits, outputs = self._forward(
            model,
            batch,
            head_of=self.model,
            full_logits=return_outputs,
            context=self._context(tuple(zip(names, sizes))),
            output_hidden_states=hidden,
        )
        chunks = logits.split(sizes)
        states = (
            list(zip(*(h.split(sizes) for h in outputs.hidden_states))) if hidden else [None] * len(names)
        )
        parts = {
            name: Part(
                logits=chunk,
                labels=inputs[name]["labels"],
                index=inputs[name].get("index"),
                wrong_label=inputs[name].get("wrong_label"),
                hidden_states=part_states,
            )
            for name, chunk, part_states in zip(names, chunks, states)
        }
        index = parts["forget"].index

        def of_batch(per_forget_example: torch.Tensor | None) -> torch.Tensor | None:
            return None if per_forget_example is None else per_forget_example[index.cpu()].to(index.device)

        step = StepInputs(
            **parts,
            step=self.state.global_step,
            ref_logprob=of_batch(self.ref_logprob),
            ref_alt_logprob=of_batch(self.ref_alt_logprob),
            frozen=self._frozen_outputs(inputs[part], part) if (part := self.method.frozen_part) else None,
            forget_active=self.forget_active,
            forget_target=of_batch(self.forget_targets),
        )
        output = self.method.compute(step)
        self._check_finite(output.loss)
        for key, value in output.metrics.items():
            self._step_metrics[key].append(value.detach())
        return (output.loss, {"logits": logits}) if return_outputs else output.loss

    def _check_finite(self, loss: torch.Tensor) -> None:
        # One host sync per step: the price of stopping before a NaN reaches the weights or a checkpoint.
        if not bool(torch.isfinite(loss.detach())):
            raise UnlearningDivergedError(
                f"Unlearning diverged: method {self.args.method!r} gave a non-finite loss ({loss.item()}) at step "
                f"{self.state.global_step + 1}. This step did not update the weights, and checkpoints already in "
                f"{self.args.output_dir!r} are intact. Lower learning_rate or set forget_loss_cap."
            )

    def _plain_loss(self, model: torch.nn.Module, inputs: dict[str, Any], return_outputs: bool):
        logits, _ = self._forward(model, inputs, head_of=self.model, full_logits=return_outputs)
        loss = self.kind.loss_of(logits, inputs["labels"]).mean()
        return (loss, {"logits": logits}) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds the mean of each method metric (``retain_loss``, ``forget_loss``, ...) since the last log."""
        if self._step_metrics and not any(key.startswith("eval_") for key in logs):
            for key, values in self._step_metrics.items():
                mean = torch.stack(values).float().mean().reshape(1)
                logs[key] = round(float(self.accelerator.gather(mean).mean()), 6)
            self._step_metrics.clear()
        super().log(logs, *args, **kwargs)
