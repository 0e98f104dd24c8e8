"""What ``UnlearningTrainer`` measures on the original model before the first step: the ascent cap, the
reference log-probs of NPO and IdkDPO, influence removal and SalUn's saliency masks (``SetupMixin``).

Unsharded, they run on the model before ``Trainer.train()`` wraps it. When the Trainer shards the parameters
(FSDP, DeepSpeed ZeRO-3) they run once it has wrapped it, on the wrapped model, every process on every batch
(the sharded forward gathers the weights): the same numbers as unsharded. The gradient passes (influence
removal, SalUn) score the local shards of FSDP2's DTensors and select over the whole model
(``weights.sharded``); under ZeRO-3 and FSDP1 they are refused before training starts.
"""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext

import torch

from ..config import UnlearningConfig
from ..weights import masking, sharded
from ..weights.distributed import FSDP, ZERO3, reshard
from . import state as run_state

logger = logging.getLogger(__name__)


class SetupMixin:
    """The before-training measurements of ``UnlearningTrainer`` (which provides ``_per_example``,
    ``_batches``, ``_forward`` and ``_heldout_rows``)."""

    def prepare_unlearning(self, checkpoint: str | None, model: torch.nn.Module | None = None) -> None:
        """Everything measured before the first step, in this order: the reference log-probs (NPO, IdkDPO), the
        ascent cap, the stopping record, influence removal and SalUn's masks; from ``checkpoint`` where it
        holds them. ``model``: the model to measure (the wrapped one when the Trainer shards it; default the
        unwrapped ``self.model``)."""
        if self.method.needs_reference and self.ref_logprob is None:
            cached = run_state.load_reference(checkpoint) if checkpoint else None
            if cached is None:
                cached = self.reference_logprobs(model)
            self.ref_logprob, self.ref_alt_logprob = cached.get("ref_logprob"), cached.get("ref_alt_logprob")
        saved = run_state.load_state(checkpoint)
        if self.method.uses_forget_loss_cap:
            self.method.forget_loss_cap = self.resolve_forget_loss_cap(saved, model)
        if self.stopping is not None and saved.get("stopping"):
            self.stopping.restore(saved["stopping"], checkpoint)
        if self.args.influence_removal != "none" and not self.influence_removed and not checkpoint:
            self.influence_removed = self.remove_influence(model)
        ratio = self.method.update_mask_ratio()
        if ratio is not None and self.update_masks is None:
            self.attach_update_masks(ratio, checkpoint, model)
        if model is not None:
            reshard(model)  # the next forward gathers the shards again (they may have been written to)

    def attach_update_masks(
        self, ratio: float, checkpoint: str | None, model: torch.nn.Module | None
    ) -> None:
        """SalUn's update masks (``ratio`` of the weights) from ``checkpoint`` or measured now on ``model`` (default:
        the trainer's), applied to every gradient: by tensor hooks,
        or on FSDP2 shards after each backward (``training_step``; the masks are then local-shard shaped)."""
        shards = sharded.sharded_parameters(model) if model is not None else None
        masks = run_state.load_masks(checkpoint) if checkpoint else None
        if masks is not None and shards is not None:
            masks = sharded.local_masks(shards, masks)
        self.update_masks = masks if masks is not None else self.saliency_masks(ratio, model)
        self.mask_shards = shards
        if shards is None:
            masking.mask_gradients(self.model, self.update_masks)

    def parameter_sharding_by_trainer(self) -> str | None:
        """``"fsdp"`` or ``"deepspeed_zero3"`` when ``Trainer`` shards the parameters as it wraps the model (the
        measurements then wait for it), else None."""
        if self.is_fsdp_enabled:
            return FSDP
        if not self.is_deepspeed_enabled:
            return None
        from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

        plugin = getattr(self.accelerator.state, "deepspeed_plugin", None)
        return ZERO3 if is_deepspeed_zero3_enabled() or getattr(plugin, "zero_stage", None) == 3 else None

    def check_gradient_passes(self, sharding: str) -> None:
        """Refuse, before training, the gradient passes that cannot run on parameters sharded by ``sharding``:
        ZeRO-3 partitions gradients outside the parameters, FSDP1 flattens the parameters."""
        asked = []
        if self.args.influence_removal != "none":
            asked.append(f"influence_removal={self.args.influence_removal!r}")
        if self.method.update_mask_ratio() is not None:
            asked.append(f"method={self.args.method!r} (its saliency masks)")
        fsdp_version = getattr(getattr(self.accelerator.state, "fsdp_plugin", None), "fsdp_version", 1)
        if not asked or (sharding == FSDP and fsdp_version == 2):
            return
        where = "DeepSpeed ZeRO-3" if sharding == ZERO3 else "FSDP1 (fsdp_version: 1)"
        raise ValueError(
            f"{' and '.join(asked)} computes the gradient of every weight before training, which hf_unlearn does "
            f"not support under {where}: use FSDP2 (fsdp_version: 2, recipes/accelerate/fsdp.yaml), DeepSpeed "
            "ZeRO stage 1 or 2, or unsharded training, or drop the option."
        )

    def resolve_forget_loss_cap(
        self, saved: dict | None = None, model: torch.nn.Module | None = None
    ) -> float | None:
        """The cap of the ascent term for this run, decided once before the first step.

        ``forget_loss_cap_from_eval`` -> that factor x the held-out loss; ``forget_loss_cap`` set -> as given;
        otherwise the model's starting mean forget loss + ``forget_loss_cap_margin`` x log C. A cap measured
        on the model (the first two) comes back from ``saved`` (the checkpoint) on resume, since the weights
        have moved since. Warns when the cap is below every forget example's starting loss (a no-op ascent).
        ``model``: the model to measure (default ``self.model``).
        """
        args = self.args
        if saved and saved.get("forget_loss_cap") is not None and self.forget_loss_cap_source != "user":
            return float(saved["forget_loss_cap"])
        if self.forget_loss_cap_source == "user" and math.isinf(args.forget_loss_cap):
            return args.forget_loss_cap
        model = self.model if model is None else model
        start = self._per_example(model, self.forget_rows, "forget loss", self.kind.loss_of)
        # a non-finite loss stops the first step with a clear error (_check_finite); decide on the rest
        start = start[torch.isfinite(start)]
        if start.numel() == 0:
            start = torch.zeros(1)
        if self.forget_loss_cap_source == "heldout":
            cap = self.heldout_cap(model)
        elif self.forget_loss_cap_source == "user":
            cap = float(args.forget_loss_cap)
        else:
            log_c = self.kind.loss_scale(self.model)  # log C of the C classes (or tokens)
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

    def heldout_cap(self, model: torch.nn.Module | None = None) -> float:
        """``forget_loss_cap_from_eval`` x the model's mean per-example loss on ``eval_dataset`` (all of its
        parts when it is a dict), measured now, before unlearning (on ``model``, default ``self.model``)."""
        rows = self._heldout_rows()
        model = self.model if model is None else model
        heldout = float(self._per_example(model, rows, "held-out loss", self.kind.loss_of).mean())
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

    def reference_logprobs(self, model: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
        """``log p_ref(y | x)`` of every forget example (``"ref_logprob"``) and, when the forget set has
        alternative completions, of those (``"ref_alt_logprob"``), from ``ref_model`` or the model as it is now
        (``model``, default ``self.model``; PEFT adapters disabled). Computed once; no second model stays in
        memory."""
        own = self.ref_model is None
        model = self.ref_model if not own else self.model if model is None else model
        disable = getattr(self.model, "disable_adapter", None) if own else None
        fn = self.kind.per_example_logprob
        with disable() if disable else nullcontext():
            cache = {"ref_logprob": self._per_example(model, self.forget_rows, "NPO reference", fn)}
            if "alt_input_ids" in self.forget_rows[0]:
                alt_rows = [_alternative_row(row) for row in self.forget_rows]
                cache["ref_alt_logprob"] = self._per_example(model, alt_rows, "reference (alternatives)", fn)
        if self.ref_model is not None:
            self.ref_model = None  # only the cache is needed from now on
        return cache

    def loss_sum(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        """The summed per-example loss of ``model`` on an on-device batch (``device_batches``), with gradient:
        what the gradient passes (saliency, influence removal) differentiate."""
        logits, _ = self._forward(model, batch)
        return self.kind.loss_of(logits, batch["labels"]).sum()

    def remove_influence(self, model: torch.nn.Module | None = None) -> int:
        """Zero the ``mask_ratio`` fraction of weights that ``influence_removal`` picks: ``"mask"``, those only the
        forget set moves; ``"rbm"``, those the retain data uses least among the ones the forget set moves.
        Returns their count. ``model``: default ``self.model``; on FSDP2 shards the selection is global."""
        model = self.model.to(self.args.device) if model is None else model
        forget = masking.gradient_magnitudes(
            model, self.device_batches(self.forget_rows, "forget gradients"), self.loss_sum
        )
        retain = masking.gradient_magnitudes(
            model, self.device_batches(self.retain_rows, "retain gradients"), self.loss_sum
        )
        shards = sharded.sharded_parameters(model)
        n_forget, n_retain = len(self.forget_rows), len(self.retain_rows)
        if self.args.influence_removal == "mask" and shards is not None:
            scale = sharded.retain_scale(retain, shards, n_retain)
            scores = masking.forget_only_scores(forget, retain, n_forget, n_retain, scale=scale)
        else:
            scores = INFLUENCE_SCORERS[self.args.influence_removal](forget, retain, n_forget, n_retain)
        if shards is None:
            count = masking.mask_top_scores(model, scores, self.args.mask_ratio)
        else:
            reshard(model)  # the shards are written to: no gathered copy may outlive them
            count = sharded.mask_top_scores(shards, scores, self.args.mask_ratio)
        logger.info("influence_removal=%r: reset %d weights.", self.args.influence_removal, count)
        return count

    def saliency_masks(self, ratio: float, model: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
        """SalUn's weight saliency: the ``ratio`` fraction of trainable weights with the largest
        ``|grad_theta sum_f l(x_f, y_f)|`` on the model as it is now (the original; ``model``, default
        ``self.model``). On FSDP2 shards: selected over the whole model, local-shard shaped masks."""
        model = self.model.to(self.args.device) if model is None else model
        saliency = masking.gradient_magnitudes(
            model, self.device_batches(self.forget_rows, "forget saliency"), self.loss_sum, per_batch=False
        )
        shards = sharded.sharded_parameters(model)
        if shards is None:
            masks = masking.top_fraction(saliency, ratio)
            chosen, total = sum(int(m.sum()) for m in masks.values()), sum(m.numel() for m in masks.values())
        else:
            masks = sharded.global_top_fraction(saliency, shards, ratio)
            chosen, total = (
                sharded.count_true(shards, masks),
                sum(p.numel() for p in shards.values()),
            )
        logger.info(
            "salun: updates restricted to %d of %d weights (salun_mask_ratio=%g).", chosen, total, ratio
        )
        return masks


def cap_source(args: UnlearningConfig) -> str:
    """Where the ascent cap comes from: ``"heldout"``, ``"user"`` or ``"default"``."""
    if args.forget_loss_cap_from_eval is not None:
        return "heldout"
    return "user" if args.forget_loss_cap is not None else "default"


def _alternative_row(row: dict) -> dict:
    return {"input_ids": row["alt_input_ids"], "labels": row["alt_labels"], "index": row["index"]}


#: influence_removal -> the per-weight scores whose top mask_ratio fraction is reset
INFLUENCE_SCORERS = {
    "mask": masking.forget_only_scores,
    "rbm": lambda forget, retain, n_forget, n_retain: masking.retention_scores(forget, retain),
}
