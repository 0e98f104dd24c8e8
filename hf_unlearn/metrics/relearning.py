"""Relearning convergence delay (RCD): how many fine-tuning steps on the forget set bring its performance back.

This is **our operationalization**. The IEU paper judges unlearning by how hard it is to relearn the forget set,
but its exact formula is not public. The idea is older: the *Anamnesis Index* of Chundawat et al. (zero-shot
unlearning) measures the steps a model needs to regain (a fraction ``alpha`` of) the original's performance on
the forgotten data relative to a model that never saw it, and SCRUB (Kurmanji et al.) reports *relearn time*,
the number of epochs of fine-tuning on the forget set until its loss is back below a threshold. We follow both:

1. Copy the model and fine-tune the copy on the forget set with a fixed protocol (``RelearnConfig``: optimizer,
   learning rate, batch size, seeded shuffling, ``max_steps``) over the parameters that unlearning trained
   (those with ``requires_grad=True``: the LoRA adapters of a PEFT model).
2. Evaluate the forget set before any update (step 0) and after every ``eval_every`` steps. The copy has
   *recovered* when ``acc_f >= (1 - alpha) * acc_f(original)`` (``target="accuracy"``, the default for
   classifiers) or ``loss_f <= (1 + alpha) * loss_f(original)`` (``target="loss"``, the default for causal LMs
   and diffusion models); class-conditional diffusion models also take ``target="generation_accuracy"`` (a judge
   classifier on samples of the forgotten classes, ``>= (1 - alpha)`` x the original's).
   ``steps`` is the first evaluated step at which it has; the original itself recovers in 0 steps.
3. In weight space, track the distance to the original and the path length ``sum_t ||theta_{t+1} - theta_t||``
   until recovery (effective weights: LoRA adapters count as merged into their base weights, see
   ``hf_unlearn.metrics._weights``).
4. With a golden model (trained without the forget set), relearn it with the same protocol and seed and report
   ``ratio_to_golden = steps / steps_golden``: 1.0 is ideal; near 0 means the forget set's information is still in
   the weights (naive fine-tuning scores near 0); above 1 means the model is *harder* to teach the forget set
   than a model that never saw it, which is not automatically better (e.g. a wrecked model).
5. Without a golden model, ``heldout_dataset`` gives a stand-in for its relearning time: the *original* model is
   taught held-out examples of the same kind, which it never saw (as many as the forget set has, the first
   ones), with the same protocol, seed and target, and ``ratio_to_heldout = steps / steps_heldout``. A model that
   never saw the forget set needs about as long to learn it as the original needs to learn unseen data. The
   held-out examples must be of the forget set's *kind*: for a forget set of wrong labels (mislabeled data),
   ``heldout_label_corruption="random"`` gives them seeded wrong labels too. When the reference cannot match
   (a causal LM's examples cannot be relabeled), or when the original already meets the target on them before
   any update (they are not unseen data of that kind, and the ratio would divide by zero), ``ratio_to_heldout``
   is None and ``heldout_note`` says why.

Relearning counts are heavy-tailed and depend on the seed (and on the CPU thread count even at a fixed seed):
prefer medians over several seeds, and always report RCD next to retain utility: wrecking the model also makes
relearning slow.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from typing import Any

import torch

from ..weights.unsharded import is_fsdp2_sharded, on_plain_copies
from ._heldout import heldout_note, learn_heldout
from ._passes import make_batches, model_device, prepare
from ._relearn_protocol import OWN_TARGETS, _BatchStream, _forget_metrics, _make_optimizer, _Protocol  # noqa: F401
from .relearn_types import OPTIMIZERS, TARGETS, RelearnConfig, RelearnResult  # noqa: F401 (public here)

logger = logging.getLogger(__name__)

LABEL_CORRUPTIONS = ("none", "random")  # as UnlearningConfig's (not imported: it would import transformers)


def relearning_convergence_delay(
    model: torch.nn.Module,
    forget_dataset: Any,
    *,
    original_model: torch.nn.Module,
    golden_model: torch.nn.Module | None = None,
    processing_class: Any = None,
    config: RelearnConfig | None = None,
    golden_result: RelearnResult | None = None,
    heldout_dataset: Any = None,
    heldout_result: RelearnResult | None = None,
    heldout_label_corruption: str = "none",
    judge_model: torch.nn.Module | None = None,
    judge_processor: Any = None,
) -> RelearnResult:
    """Relearning convergence delay of ``model`` on ``forget_dataset`` (see the module docstring).

    Args:
        model: the unlearned model (sequence classifier or causal LM, full weights or PEFT). It is not
            modified, and its train/eval mode is kept: a deep copy on the same device is relearned. An
            FSDP2-sharded model (``fully_shard``; and a sharded original or golden model) is gathered into a plain
            copy on every process (``weights.unsharded.on_plain_copies``: every process must call this), rank 0
            relearns it and every process returns rank 0's result. Plain models under several processes (DDP)
            are relearned by every process on its own, with no collective.
        forget_dataset: the forget set, in any format ``UnlearningTrainer`` accepts.
        original_model: the model before unlearning; sets the recovery target (its forget-set accuracy or loss)
            and the weight-space origin. Not modified. Note that ``peft.get_peft_model`` modifies the model it
            wraps: keep a deep copy of the original before wrapping it.
        golden_model: optional model trained without the forget set; relearned with the same protocol and seed
            to give ``ratio_to_golden``.
        processing_class: the tokenizer, for raw-text datasets.
        config: the protocol (``RelearnConfig()`` by default).
        golden_result: the golden model's ``RelearnResult`` from an earlier call with the same forget set,
            original model and config (e.g. ``earlier.golden``): reused instead of relearning the golden model
            again when several unlearned models are compared.
        heldout_dataset: optional held-out examples of the same kind as the forget set (never trained on): the
            original model learns the first ``len(forget_dataset)`` of them with the same protocol and target,
            giving the golden-free ``ratio_to_heldout``. For a forget set of wrong labels, set
            ``heldout_label_corruption="random"`` (or pass held-out examples with wrong labels).
        heldout_result: that run's ``RelearnResult`` from an earlier call (``earlier.heldout``), reused.
        heldout_label_corruption: ``"random"``: the held-out examples get seeded random wrong labels
            (``hf_unlearn.stopping.corrupt_labels``, seed ``config.seed``) before the original learns them, as
            ``UnlearningConfig.heldout_label_corruption`` does for the stopping rule: the reference of a forget set
            of mislabeled classifier examples. ``"none"``: their own labels.
        judge_model: ``config.target="generation_accuracy"`` (class-conditional diffusion models): the image
            classifier that judges the samples of the forgotten classes at every evaluation.
        judge_processor: that judge's image processor (None: ``[-1, 1]`` pixels as they are).

    ``ratio_to_golden`` is ``steps / golden.steps``. When the golden model already meets the target before any
    update (``golden.steps == 0``: the forget set is predicted from the retain set alone), the ratio is 1.0 if the
    model also needs 0 steps, and otherwise ``steps`` divided by the step resolution (1, or ``eval_every``
    without refinement), i.e. the golden's 0 is counted as one step. If the model (or the golden) did not
    recover, the ratio is computed from the censored count and is a lower (upper) bound; a warning says so.
    """
    config = config or RelearnConfig()
    if heldout_label_corruption not in LABEL_CORRUPTIONS:
        raise ValueError(
            f"heldout_label_corruption must be one of {list(LABEL_CORRUPTIONS)}, got {heldout_label_corruption!r}."
        )
    options = {
        "processing_class": processing_class,
        "golden_result": golden_result,
        "heldout_dataset": heldout_dataset,
        "heldout_result": heldout_result,
        "heldout_label_corruption": heldout_label_corruption,
        "judge_model": judge_model,
        "judge_processor": judge_processor,
    }
    models = (model, original_model, golden_model)
    if not any(m is not None and is_fsdp2_sharded(m) for m in models):
        return _delay(models, forget_dataset, config, set(), **options)

    def on_copies(*plain: torch.nn.Module | None) -> RelearnResult:
        # copies made here and used once are relearned in place (no second full copy); the original never is
        owned = {
            id(c)
            for c, m in zip(plain, models)
            if c is not m and c is not plain[1] and sum(x is c for x in plain) == 1
        }
        return _delay(plain, forget_dataset, config, owned, **options)

    return on_plain_copies(on_copies, *models)


def _delay(
    models: tuple,
    forget_dataset: Any,
    config: RelearnConfig,
    owned: set[int],
    *,
    processing_class: Any,
    golden_result: RelearnResult | None,
    heldout_dataset: Any,
    heldout_result: RelearnResult | None,
    heldout_label_corruption: str,
    judge_model: torch.nn.Module | None,
    judge_processor: Any,
) -> RelearnResult:
    """``relearning_convergence_delay`` of ``models = (model, original, golden)``, none of them sharded;
    ``owned``: the ids of the models that may be relearned in place (copies made by the caller)."""
    model, original_model, golden_model = models
    rows, collator, kind = prepare(
        model, forget_dataset, processing_class, "forget_dataset", config.max_length
    )
    target = config.target or kind.default_rcd_target
    score = None
    if target in OWN_TARGETS:
        if judge_model is not None or judge_processor is not None:
            raise ValueError(
                f"judge_model / judge_processor are for target='generation_accuracy', not {target!r}."
            )
    else:  # the kind's own target (relearn_scorer refuses it where the kind has none)
        options = {"judge_model": judge_model, "judge_processor": judge_processor}
        score = kind.relearn_scorer(target, rows, config, options)
    original_batches = make_batches(
        rows, collator, config.eval_batch_size, model_device(original_model), kind=kind
    )
    reference = _forget_metrics(original_model, original_batches, len(rows), target, score)
    del original_batches
    if target == "loss":
        threshold = (1 + config.alpha) * reference["loss"]
    else:
        threshold = (1 - config.alpha) * reference[target]
        if reference[target] == 0:
            logger.warning(
                "The original model has %s 0 on the forget set: every model recovers in 0 steps.", target
            )

    protocol = _Protocol(rows, collator, kind, target, threshold, reference, config, score, frozenset(owned))
    result = protocol.run(model, original_model, "relearning")
    resolution = 1 if config.refine else config.eval_every
    if heldout_result is not None or heldout_dataset is not None:
        if heldout_result is not None:
            _check_reusable(heldout_result, config, target, threshold, "heldout_result", "heldout_dataset")
            result.heldout = heldout_result
        else:
            result.heldout = learn_heldout(
                protocol, original_model, heldout_dataset, processing_class, heldout_label_corruption
            )
        result.heldout_note = heldout_note(result.heldout, kind, heldout_label_corruption)
        if result.heldout_note is None:
            result.ratio_to_heldout = _ratio(result.steps, result.heldout.steps, resolution)
        else:
            logger.warning("RCD: no ratio_to_heldout: %s.", result.heldout_note)
    if golden_result is not None:
        _check_reusable(golden_result, config, target, threshold, "golden_result", "golden_model")
        golden = golden_result
    elif golden_model is not None:
        golden = protocol.run(golden_model, original_model, "relearning (golden)")
    if golden_result is not None or golden_model is not None:
        result.golden = golden
        result.ratio_to_golden = _ratio(result.steps, golden.steps, resolution)
        if not result.recovered or not golden.recovered:
            logger.warning(
                "RCD: %s did not recover within max_steps=%d; ratio_to_golden is computed from a censored count.",
                "the model" if not result.recovered else "the golden model",
                config.max_steps,
            )
    return result


def _check_reusable(
    earlier: RelearnResult, config: RelearnConfig, target: str, threshold: float, name: str, instead: str
) -> None:
    if (earlier.config, earlier.target) != (asdict(config), target) or not math.isclose(
        earlier.threshold, threshold, rel_tol=1e-6
    ):
        raise ValueError(
            f"{name} was computed with another protocol, original model or forget set; pass {instead} instead."
        )


def _ratio(steps: int, golden_steps: int, resolution: int) -> float:
    if golden_steps > 0:
        return steps / golden_steps
    return 1.0 if steps == 0 else steps / resolution
