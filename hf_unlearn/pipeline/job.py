"""``LoadedJob``: the model, tokenizer, datasets and reference models of one run, from a scenario, from local
files or from a benchmark's local copy."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .arguments import RunArguments


@dataclass
class LoadedJob:
    """What a run unlearns and measures: the model to unlearn, its data and the reference models."""

    model: Any
    tokenizer: Any
    forget: Any
    retain: Any
    test: Any = None
    golden: Any = None
    original: Any = None
    task: str = "classification"
    info: dict = field(default_factory=dict)
    make_model: Any = None  # returns a fresh copy of the original model
    golden_relearn: Any = None  # the golden model's RelearnResult, computed once per job
    heldout_relearn: Any = None  # the original learning held-out data (golden-free RCD), once per job
    heldout_label_corruption: str = "none"  # "random": the forget set is wrong labels (scenarios say so)
    defaults: dict = field(default_factory=dict)  # suggested UnlearningConfig values (scenarios)
    evaluation: dict = field(default_factory=dict)  # evaluate_unlearning options (scenarios)
    retain_eval: Any = None  # the retain set of the metrics, if not the training one (TOFU: retain_perturbed)
    utility: dict = field(default_factory=dict)  # extra model-utility splits (TOFU: real authors...)


def load_job(run_args: RunArguments, seed: int = 0, progress: bool = True) -> LoadedJob:
    """Resolve the model, tokenizer, datasets and reference models of a run."""
    if run_args.scenario:
        return scenario_job(run_args, seed, progress)
    if not run_args.model_name_or_path:
        raise ValueError("Give either scenario or model_name_or_path.")
    from ..loading import check_model_dir, load_model, load_tokenizer

    check_model_dir(run_args.model_name_or_path)
    tokenizer = load_tokenizer(run_args.model_name_or_path)
    forget, retain, test, evaluation_sets = job_datasets(run_args, tokenizer)
    model = load_model(run_args.model_name_or_path, trust_remote_code=run_args.trust_remote_code)
    golden = None
    if run_args.golden_model_path:
        golden = load_model(run_args.golden_model_path, trust_remote_code=run_args.trust_remote_code)
    from ..data import infer_task

    original = copy.deepcopy(model)
    return LoadedJob(
        model=model,
        tokenizer=tokenizer,
        forget=forget,
        retain=retain,
        test=test,
        **evaluation_sets,
        golden=golden,
        original=original,
        task=infer_task(model),
        info={"scenario": None, "base_model": run_args.model_name_or_path},
        make_model=lambda: copy.deepcopy(original),
    )


def scenario_job(run_args: RunArguments, seed: int = 0, progress: bool = True) -> LoadedJob:
    """The job of built-in scenario ``run_args.scenario`` (trained into its cache first if needed)."""
    from ..scenarios import load_scenario

    sc = load_scenario(
        run_args.scenario, output_dir=run_args.scenario_cache_dir, seed=seed, progress=progress
    )
    return LoadedJob(
        model=sc.original_model(),
        tokenizer=sc.tokenizer,
        forget=sc.forget,
        retain=sc.retain,
        test=sc.test,
        golden=sc.golden_model(),
        original=sc.original_model(),
        task=sc.task,
        info={
            "scenario": sc.name,
            "sizes": sc.sizes,
            "train_seconds": sc.train_seconds,
            "base_model": None,
            "description": sc.description,
        },
        make_model=sc.original_model,
        defaults=scenario_defaults(sc),
        evaluation=dict(sc.evaluation),
        heldout_label_corruption=sc.heldout_label_corruption,
    )


def scenario_defaults(sc: Any) -> dict:
    """A scenario's suggested ``UnlearningConfig`` values, with the corruption its held-out reference needs
    (a forget set of wrong labels is compared with held-out data relabeled the same way)."""
    defaults = dict(sc.unlearning_defaults)
    if sc.heldout_label_corruption != "none":
        defaults.setdefault("heldout_label_corruption", sc.heldout_label_corruption)
    return defaults


def job_datasets(run_args: RunArguments, tokenizer: Any) -> tuple[Any, Any, Any, dict]:
    """``(forget, retain, test, evaluation_sets)`` from dataset files, or from a benchmark's local copy
    (``data_source``: chat rows when the tokenizer has a chat template, MUSE's corpora cut into chunks by the
    tokenizer). ``evaluation_sets`` holds ``LoadedJob`` fields: ``retain_eval`` (the benchmark's retain
    evaluation set, TOFU's ``retain_perturbed``) and ``utility`` (TOFU's real authors and world facts)."""
    if run_args.data_source is None:
        return (*_dataset_files(run_args), {})
    files = [k for k in ("forget_dataset", "retain_dataset", "test_dataset") if getattr(run_args, k)]
    if files:
        raise ValueError(
            f"data_source={run_args.data_source!r} supplies the forget, retain and test sets: remove {', '.join(files)}."
        )
    if not run_args.data_dir:
        raise ValueError("data_source needs data_dir, the folder of the benchmark's local copy.")
    from ..sources import load_source, source_options

    chat = getattr(tokenizer, "chat_template", None) is not None
    accepted = source_options(run_args.data_source)
    offered = {"tokenizer": tokenizer, "chat": chat, "forget_class": run_args.forget_class}
    options = {k: v for k, v in offered.items() if k in accepted}
    data = load_source(run_args.data_source, run_args.data_dir, run_args.data_subset, **options)
    sets = {"retain_eval": data.extra.get("retain_eval"), "utility": data.utility_datasets()}
    return data.forget, data.retain, data.test, sets


def _dataset_files(run_args: RunArguments) -> tuple[Any, Any, Any]:
    """``(forget, retain, test)`` from the dataset files of ``run_args`` (no ``data_source``)."""
    from ..loading import load_dataset_file

    if run_args.data_dir or run_args.data_subset:
        raise ValueError("data_dir / data_subset need data_source ('tofu' or 'muse').")
    if not (run_args.forget_dataset and run_args.retain_dataset):
        raise ValueError("With model_name_or_path, forget_dataset and retain_dataset are required.")
    forget = load_dataset_file(run_args.forget_dataset)
    retain = load_dataset_file(run_args.retain_dataset)
    test = load_dataset_file(run_args.test_dataset) if run_args.test_dataset else None
    return forget, retain, test
