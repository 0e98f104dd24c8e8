"""Measuring a job's models: ``evaluate_unlearning`` and the relearning convergence delay (RCD) of each, with
the golden and held-out relearning runs done once per job and reused."""

from __future__ import annotations

from typing import Any

from .arguments import RELEARN_FIELDS, RunArguments
from .job import LoadedJob


def evaluate_models(
    job: LoadedJob, models: dict[str, Any], run_args: RunArguments, seed: int = 0, progress: bool = True
) -> tuple[dict, dict]:
    """``evaluate_unlearning`` + RCD for each named model (the golden model, if named, goes first so that its
    relearning run is done once and reused). Returns ``(metrics, relearn_results)``."""
    order = list(models)
    if "golden" in models:
        models = {"golden": models["golden"], **{k: v for k, v in models.items() if k != "golden"}}
    from ..metrics import evaluate_unlearning, relearning_convergence_delay

    metrics, relearn = {}, {}
    config = relearn_config(run_args, seed, progress)
    options = evaluation_options(job, run_args, seed)
    for name, model in models.items():
        row = {}
        if run_args.evaluate:
            row.update(
                evaluate_unlearning(
                    model,
                    forget_dataset=job.forget,
                    retain_dataset=job.retain if job.retain_eval is None else job.retain_eval,
                    test_dataset=job.test,
                    original_model=job.original,
                    golden_model=job.golden,
                    processing_class=job.tokenizer,
                    utility_datasets=job.utility or None,
                    muse_datasets=job.muse or None,  # MUSE's VerbMem, KnowMem, PrivLeak sets
                    **options,
                )
            )
        if run_args.relearn:
            result = relearning_convergence_delay(
                model,
                job.forget,
                original_model=job.original,
                golden_model=job.golden if name != "golden" else None,
                golden_result=job.golden_relearn,
                processing_class=job.tokenizer,
                config=config,
                heldout_dataset=job.test if job.heldout_relearn is None else None,
                heldout_result=job.heldout_relearn,
                heldout_label_corruption=job.heldout_label_corruption or "none",
            )
            if job.test is None and job.golden is None:
                result.heldout_note = NO_REFERENCE
            _keep_reference_runs(job, name, result)
            relearn[name] = result
            row.update(rcd_columns(name, result))
        metrics[name] = row
    return {name: metrics[name] for name in order}, {name: relearn[name] for name in order if name in relearn}


def relearn_config(run_args: RunArguments, seed: int = 0, progress: bool = True) -> Any:
    """The run's RCD protocol: a ``RelearnConfig`` from its ``relearn_*`` options (``RELEARN_FIELDS``), seeded
    with the run's seed."""
    from ..metrics import RelearnConfig

    protocol = {field: getattr(run_args, option) for option, field in RELEARN_FIELDS.items()}
    return RelearnConfig(**protocol, seed=seed, progress_bar=progress)


def _keep_reference_runs(job: LoadedJob, name: str, result: Any) -> None:
    """Store the golden and held-out relearning runs on ``job`` so that later models reuse them."""
    job.heldout_relearn = job.heldout_relearn or result.heldout
    if name == "golden":
        job.golden_relearn = result
    elif job.golden_relearn is None and result.golden is not None:
        job.golden_relearn = result.golden


def rcd_columns(name: str, result: Any) -> dict:
    """The ``rcd/*`` metrics of model ``name`` from its ``RelearnResult`` (golden's ratio to itself is 1)."""
    row = {
        "rcd/steps": result.steps,
        "rcd/recovered": float(result.recovered),
        "rcd/start_distance": result.start_distance,
        "rcd/weight_path": result.weight_path,
    }
    if name == "golden":
        row["rcd/ratio_to_golden"] = 1.0
    elif result.ratio_to_golden is not None:
        row["rcd/ratio_to_golden"] = result.ratio_to_golden
    if result.ratio_to_heldout is not None:
        row["rcd/ratio_to_heldout"] = result.ratio_to_heldout
    return row


NO_REFERENCE = "no golden model, and no held-out set (test_dataset) to stand in for it"


def relearning_notes(relearn: dict) -> list[str]:
    """One line per reason a golden-free ``rcd/ratio_to_heldout`` was not computed, naming the models it
    concerns (the report's flags: the metrics hold numbers only)."""
    models_by_note: dict[str, list[str]] = {}
    for name, result in relearn.items():
        if getattr(result, "heldout_note", None):
            models_by_note.setdefault(result.heldout_note, []).append(name)
    return [
        f"rcd/ratio_to_heldout not computed ({', '.join(names)}): {note}."
        for note, names in models_by_note.items()
    ]


def heldout_reference(job: LoadedJob, seed: int = 0) -> Any:
    """Held-out data of the forget set's kind (golden-free RCD): the test set, relabeled with seeded wrong
    labels when the forget set is corrupted labels (``job.heldout_label_corruption="random"``, classifiers), as
    ``relearning_convergence_delay(..., heldout_label_corruption=...)`` relabels it with ``RelearnConfig.seed``
    = ``seed``."""
    from ..kinds import kind_for_task

    if (
        job.test is None
        or job.heldout_label_corruption in (None, "none")
        or not kind_for_task(job.task).has_classes
    ):
        return job.test
    from ..data import num_classes_of, to_dataset
    from ..stopping import corrupt_labels

    rows = to_dataset(job.test, "test_dataset").to_list()
    return corrupt_labels(rows, num_classes_of(job.original), seed=seed, key="label")


def evaluation_options(job: LoadedJob, run_args: RunArguments, seed: int = 0) -> dict:
    """``evaluate_unlearning`` keyword arguments: the scenario's, overridden by those the user set (``seed``:
    the attacks')."""
    options = dict(job.evaluation)
    if run_args.generation is not None:
        options["generation"] = run_args.generation
    if run_args.max_new_tokens is not None:
        options["max_new_tokens"] = run_args.max_new_tokens
    if run_args.eval_attention_mask != "length":
        options["attention_mask"] = run_args.eval_attention_mask
    if run_args.attacks:
        options["attacks"] = run_attacks(run_args, seed)
    return options


def run_attacks(run_args: RunArguments, seed: int = 0) -> list:
    """The ``Attack`` objects of ``run_args.attacks``: ``relearn_partial`` with the run's RCD learning rate and
    batch size and ``attack_relearn_steps`` steps, seeded with the run's seed; the others at their defaults."""
    from ..metrics.attacks import RelearnPartialAttack, get_attack, parse_attacks

    attacks = []
    for name in parse_attacks(run_args.attacks):
        if name == "relearn_partial":
            attacks.append(
                RelearnPartialAttack(
                    max_steps=run_args.attack_relearn_steps,
                    learning_rate=run_args.relearn_learning_rate,
                    batch_size=run_args.relearn_batch_size,
                    seed=seed,
                )
            )
        else:
            attacks.append(get_attack(name))
    return attacks
