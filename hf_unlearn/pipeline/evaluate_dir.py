"""``hf-unlearn eval``: unlearning metrics of a saved model directory (a full model, or a PEFT adapter folder)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from .arguments import RELEARN_FIELDS

REPORT_FILE = "unlearning_report.json"  # what hf-unlearn run writes beside the model (hub.REPORT_FILE)


def evaluate_directory(args: Any) -> dict:
    """Metrics of ``args.model`` against the original and golden models (from dirs or a scenario). A PEFT adapter
    folder is measured on its base model with its adapters as the run had them (relearning trains the adapters,
    as the run's RCD did). The RCD protocol: ``--relearn_*`` when given, else the run's (``args.model``'s
    report), else the scenario's, else ``RunArguments``' defaults."""
    from ..loading import load_model
    from . import RunArguments, evaluate_models

    if args.seed is None:
        args.seed = read_report(args.model).get("hyperparameters", {}).get("seed", 0)
    model = load_model(args.model, base_model=args.base_model, merge_adapter=False)
    job = _job(args, model)
    if args.original:
        job.original = load_model(args.original)
    if args.golden:
        job.golden = load_model(args.golden)
    relearn = not args.no_relearn
    if relearn and job.original is None:
        notice(
            "RCD skipped: it counts the steps back to the original model's forget-set fit; pass --original DIR."
        )
    run_args = RunArguments(
        relearn=relearn and job.original is not None,
        generation=True if args.generation else None,
        max_new_tokens=args.max_new_tokens,
        attacks=getattr(args, "attacks", None),
        attack_relearn_steps=getattr(args, "attack_relearn_steps", 25),
        **(relearn_protocol(args) if relearn and job.original is not None else {}),
    )
    corruption = label_corruption(args)
    if corruption is not None:
        job.heldout_label_corruption = corruption
    job.evaluation.update(judge_options(args))
    metrics, _ = evaluate_models(job, {"model": model}, run_args, seed=args.seed)
    return metrics["model"]


def judge_options(args: Any) -> dict:
    """``evaluate_unlearning``'s judge options of ``--judge DIR`` (the classifier and, when saved with it, its image
    processor), ``--clip DIR`` (text-to-image) and ``--generation_samples``; empty without them."""
    from ..loading import has_processor_files, load_model, load_tokenizer

    options: dict = {}
    if getattr(args, "judge", None):
        options["judge_model"] = load_model(args.judge)
        if has_processor_files(args.judge):
            options["judge_processor"] = load_tokenizer(args.judge)
    if getattr(args, "clip", None):
        options["clip_model"] = args.clip  # a folder: loaded by diffusion.clip_metrics.load_clip
    if getattr(args, "generation_samples", None) is not None:
        options["generation_samples"] = args.generation_samples
    return options


def label_corruption(args: Any) -> str | None:
    """``--heldout_label_corruption`` when given, else the run's (its report's hyperparameters, said on stderr);
    ``None`` leaves the job's own (a scenario's, or none)."""
    given = getattr(args, "heldout_label_corruption", None)
    if given is not None:
        return given
    recorded = read_report(args.model).get("hyperparameters", {}).get("heldout_label_corruption")
    if recorded not in (None, "none"):
        notice(f"held-out labels corrupted as the run's were (heldout_label_corruption={recorded!r}).")
    return recorded


def _job(args: Any, model: Any):
    """The ``LoadedJob`` of ``args``: a scenario's, or one of the dataset files given."""
    from . import LoadedJob, RunArguments, load_job

    if args.scenario:
        return load_job(
            RunArguments(scenario=args.scenario, scenario_cache_dir=args.scenario_cache_dir), args.seed
        )
    if not (args.forget_dataset and args.retain_dataset):
        raise ValueError("eval needs --scenario, or --forget_dataset and --retain_dataset.")
    from ..data import infer_task
    from ..loading import adapter_base, has_processor_files, is_adapter_dir, load_dataset_file, load_tokenizer

    processor_dir = args.model
    if is_adapter_dir(args.model) and not has_processor_files(args.model):
        processor_dir = adapter_base(args.model, args.base_model)
    return LoadedJob(
        model=model,
        # a folder without a tokenizer or image processor (a diffusers UNet) has no processing class
        tokenizer=load_tokenizer(processor_dir) if has_processor_files(processor_dir) else None,
        forget=load_dataset_file(args.forget_dataset),
        retain=load_dataset_file(args.retain_dataset),
        test=load_dataset_file(args.test_dataset) if args.test_dataset else None,
        task=infer_task(model),
    )


def relearn_protocol(args: Any) -> dict:
    """The ``relearn_*`` values of this evaluation: each ``--relearn_*`` given, else the run's, read from
    ``args.model``'s report (said on stderr, so the numbers are known to be comparable with the run's), else the
    scenario's (``args.scenario``); the rest keep ``RunArguments``' defaults."""
    protocol: dict = {}
    if args.scenario:
        from ..scenarios import get_builder

        protocol.update(get_builder(args.scenario).relearning)
    given = {name: getattr(args, name) for name in RELEARN_FIELDS if getattr(args, name, None) is not None}
    recorded = {k: v for k, v in report_protocol(args.model).items() if k not in given}
    if recorded:
        values = ", ".join(f"{k}={v}" for k, v in recorded.items())
        notice(f"RCD protocol of the run (from {os.path.join(args.model, REPORT_FILE)}): {values}.")
    return {**protocol, **recorded, **given}


def report_protocol(model_dir: str) -> dict:
    """``{relearn_option: value}`` of the RCD protocol recorded in ``model_dir``'s ``unlearning_report.json``
    (each relearning result carries its ``RelearnConfig``); empty when there is no report or no RCD in it."""
    relearning = read_report(model_dir).get("relearning") or {}
    result = relearning.get("unlearned") or next(iter(relearning.values()), None) or {}
    config = result.get("config") or {}
    return {option: config[key] for option, key in RELEARN_FIELDS.items() if config.get(key) is not None}


def read_report(model_dir: str) -> dict:
    """``model_dir``'s ``unlearning_report.json`` (empty when there is none)."""
    path = os.path.join(model_dir, REPORT_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def notice(text: str) -> None:
    """One line on stderr (stdout holds the metrics' JSON)."""
    print(f"hf-unlearn eval: {text}", file=sys.stderr)
