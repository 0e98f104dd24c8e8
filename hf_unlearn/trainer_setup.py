"""What ``UnlearningTrainer`` measures on the original model before the first step: the ascent cap, the
reference log-probs of NPO and IdkDPO, influence removal and SalUn's saliency masks (``SetupMixin``)."""

from __future__ import annotations

import logging
import math
from contextlib import nullcontext

import torch

from . import influence, losses
from .config import UnlearningConfig
from .data import model_inputs, num_classes_of

logger = logging.getLogger(__name__)


class SetupMixin:
    """The before-training measurements of ``UnlearningTrainer`` (which provides ``_per_example``,
    ``_batches``, ``_forward`` and ``_heldout_rows``)."""

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

    def _nll_sum(self, model: torch.nn.Module, batch: dict) -> torch.Tensor:
        logits, _ = self._forward(model, model_inputs(batch))
        return losses.per_example_nll(logits, batch["labels"]).sum()

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


def cap_source(args: UnlearningConfig) -> str:
    """Where the ascent cap comes from: ``"heldout"``, ``"user"`` or ``"default"``."""
    if args.forget_loss_cap_from_eval is not None:
        return "heldout"
    return "user" if args.forget_loss_cap is not None else "default"


def _alternative_row(row: dict) -> dict:
    return {"input_ids": row["alt_input_ids"], "labels": row["alt_labels"], "index": row["index"]}


#: influence_removal -> the per-weight scores whose top mask_ratio fraction is reset
INFLUENCE_SCORERS = {
    "mask": influence.forget_only_scores,
    "rbm": lambda forget, retain, n_forget, n_retain: influence.retention_scores(forget, retain),
}
