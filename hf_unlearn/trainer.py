"""``UnlearningTrainer``: a ``transformers.Trainer`` that trains on paired retain/forget batches.

Each step runs one retain batch and one forget batch (plus the alternative completions of the forget batch,
when there are any) through the model in a single forward pass, and hands the logits to the configured
method of ``hf_unlearn.methods``. The optimizer step hook of ``hf_unlearn.influence`` runs after every
optimizer step for methods that use it (IEU).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
from collections import defaultdict
from contextlib import nullcontext
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import Trainer

from . import influence, losses
from .config import UnlearningConfig
from .data import (
    CLASSIFICATION,
    PairedDataset,
    RowsDataset,
    build_preparer,
    model_inputs,
    num_classes_of,
    with_default_alternatives,
)
from .methods import Part, StepInputs, get_method

logger = logging.getLogger(__name__)

PART_NAMES = ("retain", "forget", "forget_alt")
REFERENCE_FILE = "npo_reference.safetensors"
MASK_FILE = "saliency_mask.safetensors"  # salun's update mask, computed once on the original model
STATE_FILE = "unlearning_state.json"


class UnlearningDivergedError(RuntimeError):
    """Raised when the unlearning loss stops being finite."""


class UnlearningTrainer(Trainer):
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
        args = _check_args(args)
        if not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"model must be a transformers model instance, got {type(model).__name__}; load it first, "
                "e.g. AutoModelForSequenceClassification.from_pretrained(path)."
            )
        if forget_dataset is None or retain_dataset is None:
            raise ValueError("UnlearningTrainer needs both forget_dataset and retain_dataset.")
        if peft_config is not None:
            from peft import get_peft_model

            model = get_peft_model(model, peft_config)
        preparer, collator = build_preparer(model, processing_class, args.max_length, args.seed)
        self.task = preparer.task
        self.method = get_method(args.method)(args, self.task)
        if self.method.needs_alternative:
            forget_dataset = with_default_alternatives(forget_dataset, args.seed)
        self.forget_rows = preparer(
            forget_dataset, "forget_dataset", with_wrong_labels=self.task == CLASSIFICATION
        )
        self.retain_rows = preparer(retain_dataset, "retain_dataset")
        _check_overlap(self.forget_rows, self.retain_rows, args.allow_overlap)
        if args.label_names is None:
            args.label_names = ["labels"]
        super().__init__(
            model=model,
            args=args,
            data_collator=collator,
            train_dataset=PairedDataset(self.retain_rows, self.forget_rows),
            eval_dataset=_prepare_eval(preparer, eval_dataset),
            processing_class=processing_class,
            callbacks=callbacks,
            **kwargs,
        )
        self.loss_is_scaled_for_ga = False  # our losses are per-batch means; Trainer divides by GA steps
        self.ref_model = ref_model
        self.ref_logprob: torch.Tensor | None = None
        self.ref_alt_logprob: torch.Tensor | None = None  # IdkDPO: of the alternative completions
        self.frozen_model = self._frozen_copy() if self.method.frozen_part else None
        self.influence_removed = 0
        self.update_masks: dict[str, torch.Tensor] | None = (
            None  # salun: which weights the updates may change
        )
        # where the ascent cap comes from: "heldout", "user" or "default" (None: the method has no cap)
        self.forget_loss_cap_source = _cap_source(args) if self.method.uses_forget_loss_cap else None
        self._step_metrics: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._hook_handle = None
        if args.forget_loss_cap_from_eval is not None and self.eval_dataset is None:
            raise ValueError(
                "forget_loss_cap_from_eval needs eval_dataset (held-out examples of the same task) to measure "
                "the model's loss on unseen data; pass eval_dataset or set forget_loss_cap instead."
            )
        self.forget_active = True  # the held-out rule may pause the forget term (stopping="heldout_pause")
        self.forget_targets: torch.Tensor | None = None  # per forget example (stopping="heldout_per_example")
        self.stopping = self._stopping_callback()
        if self.stopping is not None:
            self.add_callback(self.stopping)

    def _stopping_callback(self):
        """The held-out stopping rule (``stopping="heldout"``), or None."""
        args = self.args
        if args.heldout_label_corruption != "none" and self.task != CLASSIFICATION:
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
        from .stopping import HeldoutStoppingCallback, corrupt_labels

        reference = self._heldout_rows()
        if args.heldout_label_corruption == "random":
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
        """Run unlearning. Caches NPO reference log-probs and applies influence removal first.

        With ``resume_from_checkpoint`` the run continues bit-for-bit where it stopped: the batch order and
        optimizer come back through ``Trainer``, the IEU noise and random wrong labels are functions of
        (seed, step), and the reference cache is read back from the checkpoint.
        """
        checkpoint = self._resolve_checkpoint(resume_from_checkpoint)
        if self.method.needs_reference and self.ref_logprob is None:
            cached = _load_reference(checkpoint) if checkpoint else None
            if cached is None:
                cached = self.reference_logprobs()
            self.ref_logprob, self.ref_alt_logprob = cached.get("ref_logprob"), cached.get("ref_alt_logprob")
        saved = _load_state(checkpoint)
        if self.method.uses_forget_loss_cap:
            self.method.forget_loss_cap = self.resolve_forget_loss_cap(saved)
        if self.stopping is not None and saved.get("stopping"):
            self.stopping.restore(saved["stopping"], checkpoint)
        if self.args.influence_removal != "none" and not self.influence_removed and not checkpoint:
            self.influence_removed = self.remove_influence()
        ratio = self.method.update_mask_ratio()
        if ratio is not None and self.update_masks is None:
            self.update_masks = _load_masks(checkpoint) if checkpoint else None
            if self.update_masks is None:
                self.update_masks = self.saliency_masks(ratio)
            influence.mask_gradients(self.model, self.update_masks)
        return super().train(resume_from_checkpoint=checkpoint, **kwargs)

    def _resolve_checkpoint(self, resume_from_checkpoint: str | bool | None) -> str | None:
        if resume_from_checkpoint is True:
            from transformers.trainer_utils import get_last_checkpoint

            found = get_last_checkpoint(self.args.output_dir)
            if found is None:
                raise ValueError(
                    f"No checkpoint found in output_dir {self.args.output_dir!r} to resume from."
                )
            return found
        return resume_from_checkpoint or None

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
        if not self.args.should_save:
            return
        folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
        if self.ref_logprob is not None:
            from safetensors.torch import save_file

            cache = {"ref_logprob": self.ref_logprob, "ref_alt_logprob": self.ref_alt_logprob}
            cache = {k: v.contiguous() for k, v in cache.items() if v is not None}
            save_file(cache, os.path.join(folder, REFERENCE_FILE))
        if self.update_masks is not None:
            from safetensors.torch import save_file

            masks = {name: mask.to(torch.uint8).contiguous() for name, mask in self.update_masks.items()}
            save_file(masks, os.path.join(folder, MASK_FILE))
        state = {}
        if self.forget_loss_cap_source in ("default", "heldout"):
            state["forget_loss_cap"] = self.method.forget_loss_cap
        if self.stopping is not None:
            state["stopping"] = self.stopping.record.to_dict()
            self.stopping.save(folder)
        if state:
            with open(os.path.join(folder, STATE_FILE), "w") as f:
                json.dump(state, f)

    def resolve_forget_loss_cap(self, saved: dict | None = None) -> float | None:
        """The cap of the ascent term for this run, decided once before the first step.

        ``forget_loss_cap_from_eval`` -> that factor x the held-out loss; ``forget_loss_cap`` set -> as given;
        otherwise the model's starting mean forget loss + ``forget_loss_cap_margin`` x log C. A cap measured
        on the model (the first two) comes back from ``saved`` (the checkpoint) on resume, since the weights
        have moved since. Warns when the cap is below every forget example's starting loss (a no-op ascent).
        """
        args = self.args
        if saved and saved.get("forget_loss_cap") is not None and self.forget_loss_cap_source != "user":
            return float(saved["forget_loss_cap"])
        if self.forget_loss_cap_source == "user" and math.isinf(args.forget_loss_cap):
            return args.forget_loss_cap
        start = self._per_example(self.model, self.forget_rows, "forget loss", losses.per_example_nll)
        # a non-finite loss stops the first step with a clear error (_check_finite); decide on the rest
        start = start[torch.isfinite(start)]
        if start.numel() == 0:
            start = torch.zeros(1)
        if self.forget_loss_cap_source == "heldout":
            cap = self.heldout_cap()
        elif self.forget_loss_cap_source == "user":
            cap = float(args.forget_loss_cap)
        else:
            log_c = math.log(num_classes_of(self.model))
            cap = float(start.mean()) + args.forget_loss_cap_margin * log_c
            logger.info(
                "forget_loss_cap = %.4g (starting mean forget loss %.4g + %g x log C = %.4g).",
                cap,
                float(start.mean()),
                args.forget_loss_cap_margin,
                log_c,
            )
        if bool((start >= cap).all()):
            logger.warning(
                "forget_loss_cap=%.4g (%s) is at or below the starting loss of every forget example (min %.4g, "
                "mean %.4g nats): the ascent term of %r has zero gradient and only its other terms train. Raise "
                "the cap, or leave forget_loss_cap unset for the default (mean forget loss + margin x log C).",
                cap,
                self.forget_loss_cap_source,
                float(start.min()),
                float(start.mean()),
                args.method,
            )
        return cap

    def heldout_cap(self) -> float:
        """``forget_loss_cap_from_eval`` x the model's mean per-example loss on ``eval_dataset`` (all of its
        parts when it is a dict), measured now, before unlearning."""
        rows = self._heldout_rows()
        heldout = float(self._per_example(self.model, rows, "held-out loss", losses.per_example_nll).mean())
        if not heldout > 0 or not math.isfinite(heldout):
            raise ValueError(
                f"forget_loss_cap_from_eval: the model's mean loss on eval_dataset is {heldout}, which gives no "
                "usable cap; check eval_dataset (labels, padding) or set forget_loss_cap instead."
            )
        cap = self.args.forget_loss_cap_from_eval * heldout
        logger.info(
            "forget_loss_cap = %.4g (held-out loss %.4g x %g).",
            cap,
            heldout,
            self.args.forget_loss_cap_from_eval,
        )
        return cap

    def reference_logprobs(self) -> dict[str, torch.Tensor]:
        """``log p_ref(y | x)`` of every forget example (``"ref_logprob"``) and, when the forget set has
        alternative completions, of those (``"ref_alt_logprob"``), from ``ref_model`` or the model as it is now
        (with PEFT adapters disabled). Computed once; no second model stays in memory."""
        model = self.ref_model if self.ref_model is not None else self.model
        disable = getattr(model, "disable_adapter", None) if self.ref_model is None else None
        fn = losses.per_example_logprob
        with disable() if disable else nullcontext():
            cache = {"ref_logprob": self._per_example(model, self.forget_rows, "NPO reference", fn)}
            if "alt_input_ids" in self.forget_rows[0]:
                alt_rows = [_alternative_row(row) for row in self.forget_rows]
                cache["ref_alt_logprob"] = self._per_example(model, alt_rows, "reference (alternatives)", fn)
        if self.ref_model is not None:
            self.ref_model = None  # only the cache is needed from now on
        return cache

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

    def _frozen_outputs(self, inputs: dict[str, torch.Tensor]):
        """The frozen original's outputs on one part of the batch (``method.frozen_part``), no gradient."""
        kwargs = {**model_inputs(inputs), "output_hidden_states": self.method.needs_hidden_states}
        with torch.no_grad():
            if self.frozen_model is None:
                with self.model.disable_adapter():
                    return self.model(**kwargs)
            return self.frozen_model(**kwargs)

    def _per_example(
        self, model: torch.nn.Module, rows: list[dict], desc: str, fn, batch_size: int | None = None
    ) -> torch.Tensor:
        """``fn(logits, labels)`` for every row, in eval mode without gradients, as one float CPU tensor
        (batches of ``batch_size`` rows, default ``per_device_eval_batch_size``)."""
        model = model.to(self.args.device)
        was_training = model.training
        model.eval()
        values = []
        with torch.no_grad():
            for batch in self._batches(rows, desc, batch_size):
                logits = model(**model_inputs(batch)).logits
                values.append(fn(logits, batch["labels"]).float().cpu())
        model.train(was_training)
        return torch.cat(values)

    def _nll_sum(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        return losses.per_example_nll(model(**model_inputs(batch)).logits, batch["labels"]).sum()

    def remove_influence(self) -> int:
        """Zero the ``mask_ratio`` fraction of weights that ``influence_removal`` picks: ``"mask"``, those only the
        forget set moves; ``"rbm"``, those the retain data uses least among the ones the forget set moves.
        Returns their count."""
        model = self.model.to(self.args.device)
        forget = influence.gradient_magnitudes(
            model, self._batches(self.forget_rows, "forget gradients"), self._nll_sum
        )
        retain = influence.gradient_magnitudes(
            model, self._batches(self.retain_rows, "retain gradients"), self._nll_sum
        )
        scorer = INFLUENCE_SCORERS[self.args.influence_removal]
        scores = scorer(forget, retain, len(self.forget_rows), len(self.retain_rows))
        count = influence.mask_top_scores(model, scores, self.args.mask_ratio)
        logger.info("influence_removal=%r: reset %d weights.", self.args.influence_removal, count)
        return count

    def saliency_masks(self, ratio: float) -> dict[str, torch.Tensor]:
        """SalUn's weight saliency: the ``ratio`` fraction of trainable weights with the largest
        ``|grad_theta sum_f l(x_f, y_f)|`` on the model as it is now (the original)."""
        model = self.model.to(self.args.device)
        saliency = influence.gradient_magnitudes(
            model, self._batches(self.forget_rows, "forget saliency"), self._nll_sum, per_batch=False
        )
        masks = influence.top_fraction(saliency, ratio)
        logger.info(
            "salun: updates restricted to %d of %d weights (salun_mask_ratio=%g).",
            sum(int(m.sum()) for m in masks.values()),
            sum(m.numel() for m in masks.values()),
            ratio,
        )
        return masks

    def _batches(self, rows: list[dict], desc: str, batch_size: int | None = None):
        size = batch_size or self.args.per_device_eval_batch_size
        # an own generator: a loader draws a base seed when iterated, which must not come from torch's global
        # stream (dropout and the batch order of the run would then depend on how often we measure)
        loader = DataLoader(
            RowsDataset(rows), batch_size=size, collate_fn=self.data_collator, generator=torch.Generator()
        )
        disable = self.args.disable_tqdm or not self.is_world_process_zero()
        for batch in tqdm(loader, desc=desc, disable=disable, leave=False):
            yield {k: v.to(self.args.device) for k, v in batch.items()}

    def create_optimizer(self, *args: Any, **kwargs: Any) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(*args, **kwargs)
        if self.method.post_step_hook_enabled() and self._hook_handle is None:
            sharded = self.is_fsdp_enabled or self.is_deepspeed_enabled
            hook = influence.DecayNoiseHook(
                decay=self.args.ieu_decay,
                noise_std=self.args.ieu_noise_std,
                schedule=self.args.ieu_noise_schedule,
                seed=self.args.seed,
                step_fn=lambda: self.state.global_step,
                max_steps_fn=lambda: self.state.max_steps,
                every=self.args.ieu_noise_every,
                rank_offset=self.args.process_index if sharded else 0,
            )
            self._hook_handle = optimizer.register_step_post_hook(hook)
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
        keys = model_inputs(inputs["forget"])
        hidden = self.method.needs_hidden_states
        outputs = model(
            **{key: torch.cat([inputs[n][key] for n in names]) for key in keys}, output_hidden_states=hidden
        )
        logits = outputs.logits
        sizes = [inputs[n]["labels"].shape[0] for n in names]
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
            return None if per_forget_example is None else per_forget_example[index.cpu()].to(logits.device)

        step = StepInputs(
            **parts,
            step=self.state.global_step,
            ref_logprob=of_batch(self.ref_logprob),
            ref_alt_logprob=of_batch(self.ref_alt_logprob),
            frozen=self._frozen_outputs(inputs[part]) if (part := self.method.frozen_part) else None,
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
        logits = model(**model_inputs(inputs)).logits
        loss = losses.per_example_nll(logits, inputs["labels"]).mean()
        return (loss, {"logits": logits}) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """Adds the mean of each method metric (``retain_loss``, ``forget_loss``, ...) since the last log."""
        if self._step_metrics and not any(key.startswith("eval_") for key in logs):
            for key, values in self._step_metrics.items():
                mean = torch.stack(values).float().mean().reshape(1)
                logs[key] = round(float(self.accelerator.gather(mean).mean()), 6)
            self._step_metrics.clear()
        super().log(logs, *args, **kwargs)


def _check_args(args: UnlearningConfig | None) -> UnlearningConfig:
    if args is None:
        return UnlearningConfig(output_dir="unlearning_output")
    if not isinstance(args, UnlearningConfig):
        raise ValueError(f"args must be an UnlearningConfig, got {type(args).__name__}.")
    return args


def _prepare_eval(preparer, eval_dataset: Any):
    if eval_dataset is None:
        return None
    if isinstance(eval_dataset, dict) and all(_is_dataset(v) for v in eval_dataset.values()):
        return {
            name: RowsDataset(preparer(data, f"eval_dataset[{name!r}]"))
            for name, data in eval_dataset.items()
        }
    return RowsDataset(preparer(eval_dataset, "eval_dataset"))


def _is_dataset(value: Any) -> bool:
    """A dataset-like value (``datasets.Dataset`` or list of dicts), as opposed to one column of data."""
    return hasattr(value, "column_names") or (
        isinstance(value, list) and bool(value) and isinstance(value[0], dict)
    )


def _cap_source(args: UnlearningConfig) -> str:
    if args.forget_loss_cap_from_eval is not None:
        return "heldout"
    return "user" if args.forget_loss_cap is not None else "default"


def _load_reference(checkpoint: str) -> dict[str, torch.Tensor] | None:
    path = os.path.join(checkpoint, REFERENCE_FILE)
    if not os.path.isfile(path):
        return None
    from safetensors.torch import load_file

    return load_file(path)


def _alternative_row(row: dict) -> dict:
    return {"input_ids": row["alt_input_ids"], "labels": row["alt_labels"], "index": row["index"]}


def _load_masks(checkpoint: str) -> dict[str, torch.Tensor] | None:
    path = os.path.join(checkpoint, MASK_FILE)
    if not os.path.isfile(path):
        return None
    from safetensors.torch import load_file

    return {name: mask.bool() for name, mask in load_file(path).items()}


#: influence_removal -> the per-weight scores whose top mask_ratio fraction is reset
INFLUENCE_SCORERS = {
    "mask": influence.forget_only_scores,
    "rbm": lambda forget, retain, n_forget, n_retain: influence.retention_scores(forget, retain),
}


def _load_state(checkpoint: str | None) -> dict:
    path = os.path.join(checkpoint, STATE_FILE) if checkpoint else ""
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _row_key(row: dict) -> tuple:
    labels = row["labels"]
    if "pixel_values" in row:
        return row["pixel_values"].numpy().tobytes(), labels
    return tuple(row["input_ids"]), tuple(labels) if isinstance(labels, list) else labels


def _check_overlap(forget_rows: list[dict], retain_rows: list[dict], allow: bool) -> None:
    """Exact duplicates (same tokens, same labels) in both sets make the goal contradictory."""
    forget_keys = {_row_key(row) for row in forget_rows}
    shared = sum(_row_key(row) in forget_keys for row in retain_rows)
    if shared and not allow:
        raise ValueError(
            f"{shared} retain example(s) are exact duplicates of forget examples: the run would learn and "
            "unlearn the same data. Remove them from the retain set, or set allow_overlap=True to proceed."
        )
    if shared:
        logger.warning("%d retain example(s) duplicate forget examples (allow_overlap=True).", shared)
