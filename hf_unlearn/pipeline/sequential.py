"""Unlearning requests that keep coming (MUSE's sustainability): ``k`` forget sets applied one after another to
the same model, each request an ``UnlearningTrainer`` run that starts from the previous request's weights, with
the metrics after each request against the golden model of that point (retrained without every set so far).

```python
from hf_unlearn.pipeline import unlearn_sequentially

result = unlearn_sequentially(model, config, [forget_1, forget_2, forget_3], retain, test_dataset=test,
                              processing_class=tokenizer, golden=[golden_1, golden_2, golden_3])
result.metrics[2]["request_1/forget/loss"]  # does the first request's forgetting hold after the third?
```

Keys of each request's metrics are in ``docs/metrics.md`` ("Sequential requests")."""

from __future__ import annotations

import copy
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

#: request ``i`` (0-based) trains with seed ``seed + SEED_STRIDE * i``: request 0 keeps the run's seed, and the
#: requests of neighbouring seeds (0, 1, 2 in a benchmark) never share a stream
SEED_STRIDE = 7919
#: the keys of ``evaluate_unlearning`` that describe the forget set it was given (renamed per subset)
FORGET_PREFIXES = ("forget/", "forget_quality/", "golden/forget/")

Golden = Sequence[Any] | Callable[[list], Any] | None


@dataclass
class SequentialResult:
    """What ``unlearn_sequentially`` returns: the model after the last request, one metrics dict per request
    (``metrics[i]`` after request ``i + 1``), and each request's wall time and optimizer steps."""

    model: Any
    metrics: list[dict] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)


def request_seed(seed: int, index: int) -> int:
    """The training seed of request ``index`` (0-based) of a sequential run with seed ``seed``."""
    return seed + SEED_STRIDE * index


def check_requests(forget_sets: Sequence[Any], model: Any, processing_class: Any = None) -> list[Any]:
    """The forget sets as ``datasets.Dataset``; ``ValueError`` when there are none, one is empty, or two share an
    example (same inputs and labels, by the model kind's ``row_key``): each request must ask for new data."""
    from ..data import build_preparer, to_dataset
    from ..kinds import get_model_kind

    if isinstance(forget_sets, (str, bytes)) or not forget_sets:
        raise ValueError("forget_sets must be a non-empty list of forget sets, one per unlearning request.")
    datasets_ = []
    for i, data in enumerate(forget_sets, 1):
        if data is None or len(data) == 0:
            raise ValueError(f"forget set of request {i} is empty: every request needs at least one example.")
        datasets_.append(to_dataset(data, f"forget set of request {i}"))
    preparer, _ = build_preparer(model, processing_class)
    row_key = get_model_kind(model).row_key
    seen: dict = {}
    for i, data in enumerate(datasets_, 1):
        for row in preparer(data, f"forget set of request {i}"):
            first = seen.setdefault(row_key(row), i)
            if first != i:
                raise ValueError(
                    f"the forget sets of requests {first} and {i} share an example: requests must be disjoint; "
                    "remove it from one of them."
                )
    return datasets_


def union(forget_sets: Sequence[Any]) -> Any:
    """The forget sets concatenated in order (``datasets.Dataset``s with the same columns)."""
    import datasets

    if len(forget_sets) == 1:
        return forget_sets[0]
    try:
        return datasets.concatenate_datasets(list(forget_sets))
    except ValueError as err:
        raise ValueError(
            f"the forget sets must have the same columns to be evaluated together: {err}"
        ) from None


def golden_at(golden: Golden, requests_so_far: list[Any], k: int) -> Any:
    """The golden model after ``len(requests_so_far)`` requests: ``golden[i - 1]`` of a list of ``k`` models,
    ``golden(requests_so_far)`` of a callable, ``None`` without one."""
    if golden is None:
        return None
    if callable(golden):
        return golden(list(requests_so_far))
    if len(golden) != k:
        raise ValueError(
            f"golden has {len(golden)} models for {k} requests: give one per request (or a callable)."
        )
    return golden[len(requests_so_far) - 1]


def unlearn_sequentially(
    model: Any,
    config: Any,
    forget_sets: Sequence[Any],
    retain_dataset: Any,
    *,
    test_dataset: Any = None,
    processing_class: Any = None,
    golden: Golden = None,
    original_model: Any = None,
    peft_config: Any = None,
    evaluate: bool = True,
    evaluation: dict | None = None,
    relearning: Any = None,
    trainer_kwargs: dict | None = None,
    quiet: bool = True,
    on_request: Callable[[int, dict], None] | None = None,
) -> SequentialResult:
    """Apply ``forget_sets`` one after another to ``model`` (trained in place), evaluating after each request.

    Args:
        model: the model to unlearn from (the original).
        config: the ``UnlearningConfig`` of every request; request ``i`` (0-based) trains with seed
            ``request_seed(config.seed, i)`` into ``config.output_dir/request_<i + 1>``.
        forget_sets: ``k`` disjoint, non-empty forget sets, in the order they arrive.
        retain_dataset: the retain set of every request (and of the ``retain/*`` metrics).
        test_dataset: held-out data: ``test/*``, membership attacks, and the held-out stopping rule.
        processing_class: the tokenizer.
        golden: the golden model of each point, retrained without every forget set so far: a list of ``k``
            models (``golden[i]`` after request ``i + 1``) or a callable ``golden(requests_so_far) -> model``;
            ``None``: no ``golden/*`` references.
        original_model: the model before any request (``distance/l2_to_original``); default a copy of ``model``.
        peft_config: LoRA: each request trains a fresh adapter, merged into the weights before the next one.
        evaluate: compute the metrics after each request.
        evaluation: further ``evaluate_unlearning`` keyword arguments (``generation``, ``max_new_tokens``...).
        relearning: a ``RelearnConfig``: after each request, the relearning convergence delay of that request's
            forget set for the model and for that point's golden model (``current/rcd/*``,
            ``current/golden/rcd/*``; the target is the original's loss or accuracy on it). None (default): none.
        trainer_kwargs: further keyword arguments of the model kind's trainer (``noise_scheduler``,
            ``diffusion_args`` of a diffusion UNet's ``DiffusionUnlearningTrainer``).
        quiet: keep the Trainer's progress bar and log lines off the terminal.
        on_request: called as ``on_request(i, metrics)`` after request ``i`` (1-based), e.g. to print a line.

    Returns:
        ``SequentialResult``: the final model and, per request, the metrics (keys in ``docs/metrics.md``),
        seconds and steps.
    """
    forget_sets = check_requests(forget_sets, model, processing_class)
    if original_model is None and (evaluate or relearning is not None):
        original_model = copy.deepcopy(model)
    result = SequentialResult(model=model)
    for i, forget in enumerate(forget_sets):
        start = time.perf_counter()
        model, steps = _unlearn_one(
            model,
            _request_config(config, i),
            forget,
            retain_dataset,
            test_dataset,
            processing_class,
            peft_config,
            quiet,
            trainer_kwargs or {},
        )
        result.seconds.append(time.perf_counter() - start)
        result.steps.append(steps)
        row = {"request": i + 1, "n_forget": len(forget), "steps": steps, "seconds": result.seconds[-1]}
        so_far = forget_sets[: i + 1]
        reference = (
            golden_at(golden, so_far, len(forget_sets)) if evaluate or relearning is not None else None
        )
        if evaluate:
            row.update(
                evaluate_request(
                    model,
                    so_far,
                    retain_dataset,
                    test_dataset,
                    processing_class,
                    reference,
                    original_model,
                    evaluation or {},
                )
            )
        if relearning is not None:
            row.update(request_rcd(model, forget, original_model, reference, processing_class, relearning))
        result.metrics.append(row)
        if on_request is not None:
            on_request(i + 1, row)
    result.model = model
    return result


def _request_config(config: Any, index: int) -> Any:
    """A copy of ``config`` for request ``index`` (0-based): its seed and output folder."""
    if config.resume_from_checkpoint not in (None, False, ""):
        raise ValueError("resume_from_checkpoint is not supported with sequential requests; run without it.")
    request = copy.deepcopy(config)
    request.seed = request_seed(config.seed, index)
    if config.data_seed is not None:
        request.data_seed = request_seed(config.data_seed, index)
    request.output_dir = os.path.join(config.output_dir, f"request_{index + 1}")
    return request


def _unlearn_one(
    model, config, forget, retain, test, processing_class, peft_config, quiet: bool, trainer_kwargs: dict
):
    """One request: a run of the model kind's trainer (``UnlearningTrainer`` or its subclass) on ``model``;
    returns ``(model, steps)``, LoRA merged."""
    from .training import kind_trainer, needs_heldout

    if needs_heldout(config) and test is None:
        raise ValueError(
            "forget_loss_cap_from_eval and stopping='heldout' need test_dataset (held-out data)."
        )
    trainer = kind_trainer(
        model,
        config,
        forget=forget,
        retain=retain,
        test=test,
        processing_class=processing_class,
        peft_config=peft_config,
        trainer_kwargs=trainer_kwargs,
        quiet=quiet,
    )
    trainer.train()
    model = trainer.accelerator.unwrap_model(trainer.model)
    if hasattr(model, "merge_and_unload"):  # the next request trains a fresh adapter on these weights
        model = model.merge_and_unload()
    model.eval()
    return model, trainer.state.global_step


def evaluate_request(
    model: Any,
    requests_so_far: Sequence[Any],
    retain_dataset: Any,
    test_dataset: Any,
    processing_class: Any,
    golden: Any,
    original_model: Any,
    evaluation: dict,
) -> dict:
    """The metrics after request ``i = len(requests_so_far)``: ``evaluate_unlearning`` with the union of the
    forget sets so far (its forget keys under ``union/``, the others as they are), and the forget keys of each
    request so far (``request_<j>/``, ``current/`` for request ``i``) and of the earlier ones together
    (``earlier/``), all against ``golden``."""
    from ..metrics import evaluate_unlearning

    common = {"processing_class": processing_class, "golden_model": golden, **evaluation}
    metrics = evaluate_unlearning(
        model,
        forget_dataset=union(requests_so_far),
        retain_dataset=retain_dataset,
        test_dataset=test_dataset,
        original_model=original_model,
        **common,
    )
    row = {_rename(key, "union/"): value for key, value in metrics.items()}
    subsets = {f"request_{j}/": forget for j, forget in enumerate(requests_so_far, 1)}
    if len(requests_so_far) > 1:
        subsets["earlier/"] = union(requests_so_far[:-1])
    one_retain_row = _first_row(retain_dataset)  # evaluate_unlearning needs one; its keys are not kept
    # attacks (metrics.attacks) run on the union only: once per request, not once per subset
    subset_options = {key: value for key, value in common.items() if key != "attacks"}
    for prefix, forget in subsets.items():
        values = evaluate_unlearning(
            model, forget_dataset=forget, retain_dataset=one_retain_row, **subset_options
        )
        values = {key: value for key, value in values.items() if key.startswith(FORGET_PREFIXES)}
        row.update({prefix + key: value for key, value in values.items()})
    current = f"request_{len(requests_so_far)}/"
    row.update({"current/" + k[len(current) :]: v for k, v in list(row.items()) if k.startswith(current)})
    return row


def request_rcd(
    model: Any, forget: Any, original_model: Any, golden: Any, processing_class: Any, config: Any
) -> dict:
    """``current/rcd/*`` (and ``current/golden/rcd/*`` with a golden model): the relearning convergence delay of
    the current request's forget set, model and golden relearned with the same protocol and seed (a model
    without trainable weights, e.g. merged LoRA, relearns all of them, as the golden does)."""
    from ..metrics import relearning_convergence_delay
    from .evaluation import rcd_columns

    result = relearning_convergence_delay(
        _trainable(model),
        forget,
        original_model=original_model,
        golden_model=_trainable(golden) if golden is not None else None,
        processing_class=processing_class,
        config=config,
    )
    row = {"current/" + k: v for k, v in rcd_columns("model", result).items()}
    if result.golden is not None:
        row.update({"current/golden/" + k: v for k, v in rcd_columns("golden", result.golden).items()})
    return row


def _trainable(model: Any) -> Any:
    """``model``, or a copy with every weight trainable when none is (a merged LoRA model)."""
    if any(p.requires_grad for p in model.parameters()):
        return model
    return copy.deepcopy(model).requires_grad_(True)


def _rename(key: str, prefix: str) -> str:
    return prefix + key if key.startswith(FORGET_PREFIXES) else key


def _first_row(data: Any) -> Any:
    from ..data import to_dataset

    return to_dataset(data, "retain_dataset").select(range(1))
