"""``LoadedJob``: the model, tokenizer, datasets and reference models of one run, from a scenario, from local
files or from a benchmark's local copy."""

from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from .arguments import RunArguments

logger = logging.getLogger(__name__)


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
    # "random": the forget set is wrong labels, "none": true labels (scenarios say which); None: not known (the
    # user's data): the run takes UnlearningConfig.heldout_label_corruption (resolve_label_corruption)
    heldout_label_corruption: str | None = None
    defaults: dict = field(default_factory=dict)  # suggested UnlearningConfig values (scenarios)
    evaluation: dict = field(default_factory=dict)  # evaluate_unlearning options (scenarios)
    retain_eval: Any = None  # the retain set of the metrics, if not the training one (TOFU: retain_perturbed)
    utility: dict = field(default_factory=dict)  # extra model-utility splits (TOFU: real authors...)
    muse: dict = field(default_factory=dict)  # MUSE's evaluation sets (evaluate_unlearning's muse_datasets)
    data_source: dict | None = None  # where the data came from: the report's "data" (job_datasets)
    # what the kind's trainer is given instead of ``model`` (a text-to-image pipeline around its UNet), if anything
    trainer_input: Any = None
    # the kind's trainer's extra keyword arguments (a diffusion model's noise_scheduler and diffusion_args)
    trainer_kwargs: dict = field(default_factory=dict)


def load_job(run_args: RunArguments, seed: int = 0, progress: bool = True) -> LoadedJob:
    """Resolve the model, tokenizer, datasets and reference models of a run."""
    if run_args.scenario:
        return scenario_job(run_args, seed, progress)
    if not run_args.model_name_or_path:
        raise ValueError("Give either scenario or model_name_or_path.")
    from ..kinds import kind_for_folder
    from ..loading import check_model_dir, load_model

    check_model_dir(run_args.model_name_or_path)
    # the model kind of the folder reads its processing class and model (a diffusers UNet: no tokenizer; a
    # pipeline folder: the pipeline, whose UNet is unlearned)
    kind = kind_for_folder(run_args.model_name_or_path)
    trust = run_args.trust_remote_code
    tokenizer = kind.load_processing_class(run_args.model_name_or_path, trust_remote_code=trust)
    forget, retain, test, evaluation_sets = job_datasets(run_args, tokenizer)
    loaded = kind.load_run_model(run_args.model_name_or_path, trust_remote_code=trust)
    model = loaded.model
    golden = None
    if run_args.golden_model_path:
        golden = load_model(run_args.golden_model_path, trust_remote_code=trust)
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
        trainer_input=loaded.trainer_input,
        trainer_kwargs=loaded.trainer_kwargs,
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
        info=scenario_info(sc),
        make_model=sc.original_model,
        defaults=scenario_defaults(sc),
        evaluation=sc.evaluation_options(),
        heldout_label_corruption=sc.heldout_label_corruption,
        trainer_kwargs=sc.trainer_kwargs(),
    )


def scenario_info(sc: Any) -> dict:
    """What a job's report records of the built-in scenario ``sc`` it runs on."""
    return {
        "scenario": sc.name,
        "sizes": sc.sizes,
        "train_seconds": sc.train_seconds,
        "base_model": None,
        "description": sc.description,
    }


def resolve_label_corruption(job: LoadedJob, config: Any) -> str:
    """The held-out reference's label corruption of this run, set on both ``job`` (golden-free RCD) and
    ``config`` (the stopping rule, the report): the user's ``config.heldout_label_corruption`` when set, else the
    job's (a scenario knows whether its forget set is mislabeled; the user's own data: ``"none"``). A user's
    value that contradicts a scenario's gets a warning."""
    user, known = config.heldout_label_corruption, job.heldout_label_corruption
    if user is not None and known is not None and user != known:
        logger.warning(
            "%s's forget set is %s but heldout_label_corruption=%r: the held-out references of the stopping "
            "rule and of rcd/ratio_to_heldout should carry the forget set's corruption; set "
            "heldout_label_corruption=%r (or leave it unset).",
            job.info.get("scenario") or "This job",
            "wrong labels ('random')" if known == "random" else "true labels ('none')",
            user,
            known,
        )
    used = user or known or "none"
    job.heldout_label_corruption = config.heldout_label_corruption = used
    return used


def scenario_defaults(sc: Any) -> dict:
    """A scenario's suggested ``UnlearningConfig`` values, with the corruption its held-out reference needs
    (a forget set of wrong labels is compared with held-out data relabeled the same way)."""
    defaults = dict(sc.unlearning_defaults)
    if sc.heldout_label_corruption != "none":
        defaults.setdefault("heldout_label_corruption", sc.heldout_label_corruption)
    return defaults


def job_datasets(run_args: RunArguments, tokenizer: Any) -> tuple[Any, Any, Any, dict]:
    """``(forget, retain, test, evaluation_sets)`` from dataset files, or from a benchmark's local copy
    (``data_source``: chat rows when the tokenizer has a chat template, MUSE's corpora cut into chunks that fit
    the model with the special tokens the data layer adds). ``evaluation_sets`` holds ``LoadedJob`` fields:
    ``retain_eval`` (the benchmark's retain evaluation set, TOFU's ``retain_perturbed``), ``utility`` (TOFU's
    real authors and world facts), ``muse`` (MUSE's verbmem, knowmem and privleak sets) and ``data_source``
    (what was read, for the report)."""
    if not (run_args.data_source or "").strip():  # an empty --data_source "" is no data source
        forget, retain, test = _dataset_files(run_args)
        return forget, retain, test, {"data_source": _files_record(run_args)}
    files = [k for k in ("forget_dataset", "retain_dataset", "test_dataset") if getattr(run_args, k)]
    if files:
        raise ValueError(
            f"data_source={run_args.data_source!r} supplies the forget, retain and test sets: remove {', '.join(files)}."
        )
    if not run_args.data_dir:
        raise ValueError("data_source needs data_dir, the folder of the benchmark's local copy.")
    from ..sources import load_source, source_options
    from ..sources.muse import evaluation_sets

    accepted = source_options(run_args.data_source)
    offered = {
        "tokenizer": lambda: tokenizer,
        "chat": lambda: getattr(tokenizer, "chat_template", None) is not None,
        "forget_class": lambda: run_args.forget_class,
        "max_length": lambda: _sequence_limit(run_args, tokenizer),
    }
    options = {k: make() for k, make in offered.items() if k in accepted}
    data = load_source(run_args.data_source, run_args.data_dir, run_args.data_subset, **options)
    sets = {
        "retain_eval": data.extra.get("retain_eval"),
        "utility": data.utility_datasets(),
        "muse": evaluation_sets(data) if run_args.data_source == "muse" else {},
        "data_source": {"folder": _folder_name(run_args.data_dir), **data.info},
    }
    return data.forget, data.retain, data.test, sets


def missing_heldout(job: LoadedJob) -> str:
    """Why ``job`` has no held-out set, and what to do: the split its benchmark copy lacks, or ``test_dataset``."""
    record = job.data_source or {}
    missing = {k: v for k, v in (record.get("missing") or {}).items() if v.get("role") == "test"}
    if not missing:
        return "set test_dataset (or use a scenario or data_source, which have one)."
    label, entry = next(iter(missing.items()))
    return (
        f"the {record.get('source')} copy in {record.get('folder')!r} has no held-out split: {label!r} not found "
        f"(expected a file matching one of {entry['expected']}); add it to the folder (download the copy again)."
    )


def _sequence_limit(run_args: RunArguments, tokenizer: Any) -> int:
    """The longest sequence the model of ``run_args`` takes (``data.max_length_of``, read from its config),
    at most MUSE's 2,048-token chunks."""
    from types import SimpleNamespace

    from transformers import AutoConfig

    from ..data import max_length_of
    from ..sources.muse import CHUNK_TOKENS

    config = AutoConfig.from_pretrained(
        run_args.model_name_or_path, trust_remote_code=run_args.trust_remote_code
    )
    return min(CHUNK_TOKENS, max_length_of(SimpleNamespace(config=config), tokenizer))


def _folder_name(path: str) -> str:
    # the folder's name, not its path: the report travels with the model (push_to_hub)
    return os.path.basename(os.path.normpath(path))


def _files_record(run_args: RunArguments) -> dict:
    names = {
        "forget": run_args.forget_dataset,
        "retain": run_args.retain_dataset,
        "test": run_args.test_dataset,
    }
    return {"source": "files", "files": {k: _folder_name(v) for k, v in names.items() if v}}


def _dataset_files(run_args: RunArguments) -> tuple[Any, Any, Any]:
    """``(forget, retain, test)`` from the dataset files of ``run_args`` (no ``data_source``)."""
    from ..loading import load_dataset_file

    if run_args.data_dir or run_args.data_subset:
        from ..sources import SOURCES

        raise ValueError(f"data_dir / data_subset need data_source (one of {sorted(SOURCES)}).")
    if not (run_args.forget_dataset and run_args.retain_dataset):
        raise ValueError("With model_name_or_path, forget_dataset and retain_dataset are required.")
    forget = load_dataset_file(run_args.forget_dataset)
    retain = load_dataset_file(run_args.retain_dataset)
    test = load_dataset_file(run_args.test_dataset) if run_args.test_dataset else None
    return forget, retain, test
