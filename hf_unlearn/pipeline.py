"""The end-to-end job behind ``hf-unlearn run`` and ``hf-unlearn quickstart``: load, unlearn, evaluate
against the original and golden models, write the model, report, plots and model card."""

from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

UTILITY_DROP = 0.02  # retain accuracy (or token accuracy) drop below the original that gets flagged


@dataclass
class RunArguments:
    """What to unlearn from what: a built-in scenario, or a local model directory with dataset files."""

    scenario: str | None = field(
        default=None,
        metadata={
            "help": "Built-in scenario (polarity-minilm, news-gpt2, authors-qa, tofu-llama, digits-random10, "
            "digits-random50, digits-class): model, data, original, golden."
        },
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Local model directory (safetensors) to unlearn, when no scenario is given."},
    )
    golden_model_path: str | None = field(
        default=None, metadata={"help": "Local golden model directory (retrained without the forget set)."}
    )
    forget_dataset: str | None = field(
        default=None,
        metadata={"help": "Forget set: a .json/.jsonl/.csv file or a datasets.save_to_disk folder."},
    )
    retain_dataset: str | None = field(default=None, metadata={"help": "Retain set, same formats."})
    test_dataset: str | None = field(
        default=None, metadata={"help": "Held-out set for test metrics and the MIA."}
    )
    data_source: str | None = field(
        default=None,
        metadata={
            "help": "A public benchmark's local copy ('tofu' or 'muse', see docs/benchmarks.md) gives the forget, "
            "retain and test sets instead of forget_dataset/retain_dataset/test_dataset."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "The benchmark's folder (e.g. huggingface-cli download locuslab/TOFU --local-dir DIR)."
        },
    )
    data_subset: str | None = field(
        default=None,
        metadata={
            "help": "The benchmark's forget subset (TOFU: forget01, forget05, forget10 (default); MUSE: forget "
            "(default), scal_forget_K, sust_forget_K; CIFAR: random10 (default), random50, class)."
        },
    )
    forget_class: int = field(
        default=0, metadata={"help": "CIFAR's class-wise protocol (data_subset=class): the class to forget."}
    )
    scenario_cache_dir: str = field(
        default="outputs/scenarios", metadata={"help": "Where scenario original/golden models are cached."}
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains the full weights."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Modules to adapt (default: PEFT's choice for the architecture)."}
    )
    evaluate: bool = field(
        default=True, metadata={"help": "Compute evaluate_unlearning metrics after unlearning."}
    )
    generation: bool | None = field(
        default=None,
        metadata={
            "help": "Causal LMs: also generate greedy answers and score them (ROUGE-L, TOFU model utility). "
            "Default: the scenario's choice (on for tofu-llama), off for your own data."
        },
    )
    max_new_tokens: int | None = field(
        default=None,
        metadata={"help": "Generation budget per answer (default: the scenario's, else 200 as TOFU)."},
    )
    relearn: bool = field(default=True, metadata={"help": "Compute the relearning convergence delay (RCD)."})
    relearn_max_steps: int = field(default=100, metadata={"help": "RCD: relearning step budget."})
    relearn_learning_rate: float = field(default=1e-4, metadata={"help": "RCD: relearning learning rate."})
    relearn_batch_size: int = field(default=8, metadata={"help": "RCD: relearning batch size."})
    relearn_target: str | None = field(
        default=None,
        metadata={
            "help": "RCD: what must recover, 'loss' or 'accuracy' (default: loss for causal LMs, accuracy for "
            "classifiers)."
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Allow writing into a non-empty output_dir."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow custom model code from the model directory (off by default)."}
    )


@dataclass
class LoadedJob:
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


def check_output_dir(output_dir: str, overwrite: bool) -> None:
    if os.path.isdir(output_dir) and os.listdir(output_dir) and not overwrite:
        raise ValueError(
            f"output_dir {output_dir!r} exists and is not empty; choose another one or pass --overwrite_output_dir."
        )


def load_job(run_args: RunArguments, seed: int = 0, progress: bool = True) -> LoadedJob:
    """Resolve the model, tokenizer, datasets and reference models of a run."""
    if run_args.scenario:
        from .scenarios import load_scenario

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
    if not run_args.model_name_or_path:
        raise ValueError("Give either scenario or model_name_or_path.")
    from .loading import check_model_dir, load_model, load_tokenizer

    check_model_dir(run_args.model_name_or_path)
    tokenizer = load_tokenizer(run_args.model_name_or_path)
    forget, retain, test, evaluation_sets = job_datasets(run_args, tokenizer)
    model = load_model(run_args.model_name_or_path, trust_remote_code=run_args.trust_remote_code)
    golden = None
    if run_args.golden_model_path:
        golden = load_model(run_args.golden_model_path, trust_remote_code=run_args.trust_remote_code)
    from .data import infer_task

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
    from .loading import load_dataset_file

    files = [k for k in ("forget_dataset", "retain_dataset", "test_dataset") if getattr(run_args, k)]
    if run_args.data_source is None:
        if run_args.data_dir or run_args.data_subset:
            raise ValueError("data_dir / data_subset need data_source ('tofu' or 'muse').")
        if not (run_args.forget_dataset and run_args.retain_dataset):
            raise ValueError("With model_name_or_path, forget_dataset and retain_dataset are required.")
        forget = load_dataset_file(run_args.forget_dataset)
        retain = load_dataset_file(run_args.retain_dataset)
        test = load_dataset_file(run_args.test_dataset) if run_args.test_dataset else None
        return forget, retain, test, {}
    if files:
        raise ValueError(
            f"data_source={run_args.data_source!r} supplies the forget, retain and test sets: remove {', '.join(files)}."
        )
    if not run_args.data_dir:
        raise ValueError("data_source needs data_dir, the folder of the benchmark's local copy.")
    from .sources import load_source, source_options

    chat = getattr(tokenizer, "chat_template", None) is not None
    accepted = source_options(run_args.data_source)
    offered = {"tokenizer": tokenizer, "chat": chat, "forget_class": run_args.forget_class}
    options = {k: v for k, v in offered.items() if k in accepted}
    data = load_source(run_args.data_source, run_args.data_dir, run_args.data_subset, **options)
    sets = {"retain_eval": data.extra.get("retain_eval"), "utility": data.utility_datasets()}
    return data.forget, data.retain, data.test, sets


def peft_config_of(run_args: RunArguments, task: str, images: bool = False):
    if run_args.lora_r <= 0:
        return None
    from peft import LoraConfig

    if images:  # PEFT's image-classification recipe: no task type, the new head trained in full
        return LoraConfig(
            r=run_args.lora_r,
            lora_alpha=run_args.lora_alpha,
            lora_dropout=run_args.lora_dropout,
            target_modules=run_args.lora_target_modules,
            modules_to_save=["classifier"],
        )
    return LoraConfig(
        task_type="SEQ_CLS" if task == "classification" else "CAUSAL_LM",
        r=run_args.lora_r,
        lora_alpha=run_args.lora_alpha,
        lora_dropout=run_args.lora_dropout,
        target_modules=run_args.lora_target_modules,
    )


def unlearn(job: LoadedJob, config: Any, run_args: RunArguments, quiet: bool = False):
    """Run ``UnlearningTrainer`` on the job; returns ``(trainer, seconds)``. ``quiet`` keeps the Trainer's
    progress bar and log dicts off the terminal (they still reach ``report_to`` and the log history)."""
    from transformers import PrinterCallback, ProgressCallback

    from .data import is_image_model
    from .trainer import UnlearningTrainer

    needs_heldout = config.forget_loss_cap_from_eval is not None or config.stopping != "none"
    if needs_heldout and job.test is None:
        raise ValueError(
            "forget_loss_cap_from_eval and stopping='heldout' measure the model on held-out data: set "
            "test_dataset (or use a scenario or data_source, which have one)."
        )
    if config.stopping != "none" and config.heldout_label_corruption != job.heldout_label_corruption:
        logger.warning(
            "This job's forget set is %r-corrupted labels but heldout_label_corruption=%r: the stopping rule's "
            "held-out reference should carry the same corruption (set heldout_label_corruption=%r).",
            job.heldout_label_corruption,
            config.heldout_label_corruption,
            job.heldout_label_corruption,
        )
    trainer = UnlearningTrainer(
        job.model,
        config,
        forget_dataset=job.forget,
        retain_dataset=job.retain,
        processing_class=job.tokenizer,
        peft_config=peft_config_of(run_args, job.task, images=is_image_model(job.model)),
        # the held-out set, needed only for the forget-loss cap and the stopping rule
        eval_dataset=job.test if needs_heldout else None,
    )
    if quiet:
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
    start = time.perf_counter()
    trainer.train()
    return trainer, time.perf_counter() - start


def evaluate_models(
    job: LoadedJob, models: dict[str, Any], run_args: RunArguments, seed: int = 0, progress: bool = True
) -> tuple[dict, dict]:
    """``evaluate_unlearning`` + RCD for each named model (the golden model, if named, goes first so that its
    relearning run is done once and reused). Returns ``(metrics, relearn_results)``."""
    order = list(models)
    if "golden" in models:
        models = {"golden": models["golden"], **{k: v for k, v in models.items() if k != "golden"}}
    from .metrics import RelearnConfig, evaluate_unlearning, relearning_convergence_delay

    metrics, relearn = {}, {}
    relearn_config = RelearnConfig(
        learning_rate=run_args.relearn_learning_rate,
        batch_size=run_args.relearn_batch_size,
        max_steps=run_args.relearn_max_steps,
        target=run_args.relearn_target,
        seed=seed,
        progress_bar=progress,
    )
    options = evaluation_options(job, run_args)
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
                config=relearn_config,
                heldout_dataset=heldout_reference(job) if job.heldout_relearn is None else None,
                heldout_result=job.heldout_relearn,
            )
            job.heldout_relearn = job.heldout_relearn or result.heldout
            if name == "golden":
                job.golden_relearn = result
            elif job.golden_relearn is None and result.golden is not None:
                job.golden_relearn = result.golden
            relearn[name] = result
            row["rcd/steps"] = result.steps
            row["rcd/recovered"] = float(result.recovered)
            row["rcd/start_distance"] = result.start_distance
            row["rcd/weight_path"] = result.weight_path
            if name == "golden":
                row["rcd/ratio_to_golden"] = 1.0
            elif result.ratio_to_golden is not None:
                row["rcd/ratio_to_golden"] = result.ratio_to_golden
            if result.ratio_to_heldout is not None:
                row["rcd/ratio_to_heldout"] = result.ratio_to_heldout
        metrics[name] = row
    return {name: metrics[name] for name in order}, {name: relearn[name] for name in order if name in relearn}


def heldout_reference(job: LoadedJob) -> Any:
    """Held-out data of the forget set's kind (golden-free RCD): the test set, relabeled with seeded wrong
    labels when the forget set is corrupted labels."""
    if job.test is None or job.heldout_label_corruption == "none" or job.task != "classification":
        return job.test
    from .data import num_classes_of, to_dataset
    from .stopping import corrupt_labels

    rows = to_dataset(job.test, "test_dataset").to_list()
    return corrupt_labels(rows, num_classes_of(job.original), seed=0, key="label")


def evaluation_options(job: LoadedJob, run_args: RunArguments) -> dict:
    """``evaluate_unlearning`` keyword arguments: the scenario's, overridden by those the user set."""
    options = dict(job.evaluation)
    if run_args.generation is not None:
        options["generation"] = run_args.generation
    if run_args.max_new_tokens is not None:
        options["max_new_tokens"] = run_args.max_new_tokens
    return options


def utility_flags(metrics: dict) -> list[str]:
    """Warnings for results whose retain utility dropped (a wrecked model relearns slowly too)."""
    flags = []
    original = metrics.get("original", {})
    for key in ("retain/accuracy", "retain/token_accuracy"):
        if key not in original:
            continue
        for name, row in metrics.items():
            if name not in ("original", "golden") and key in row and row[key] < original[key] - UTILITY_DROP:
                flags.append(
                    f"{name}: {key} fell from {original[key]:.3f} (original) to {row[key]:.3f}; read its forgetting "
                    "and RCD numbers with care."
                )
    return flags


def write_plots(output_dir: str, metrics: dict, relearn: dict, task: str) -> list[str]:
    from .metrics.plots import plot_relearning_curves
    from .plots import plot_metric_bars

    paths = []
    if relearn:
        path = os.path.join(output_dir, "relearning_curves.png")
        plot_relearning_curves(relearn, path, metric="accuracy" if task == "classification" else "loss")
        paths.append(path)
    if metrics:
        path = os.path.join(output_dir, "metrics.png")
        plot_metric_bars(metrics, path)
        paths.append(path)
    return paths


def build_report(
    job: LoadedJob,
    config: Any,
    run_args: RunArguments,
    metrics: dict,
    relearn: dict,
    seconds: float,
    trainer: Any = None,
) -> dict:
    """The JSON report of one unlearning run (never any forget-set content: counts and a fingerprint).
    With ``trainer``, the hyperparameters carry what it decided at run time (the forget-loss cap)."""
    from .hub import forget_fingerprint

    return {
        "method": config.method,
        "task": job.task,
        "scenario": job.info.get("scenario"),
        "base_model": _base_model_name(job.info.get("base_model")),
        "hyperparameters": hyperparameters(config, run_args, trainer),
        "forget_fingerprint": forget_fingerprint(job.forget),
        "sizes": job.info.get("sizes") or {"n_forget": len(job.forget), "n_retain": len(job.retain)},
        "timing": {"unlearning_seconds": seconds, "reference_train_seconds": job.info.get("train_seconds")},
        "metrics": metrics,
        "relearning": {name: r.to_dict() for name, r in relearn.items()},
        "stopping": trainer.stopping.record.to_dict() if getattr(trainer, "stopping", None) else None,
        "flags": utility_flags(metrics),
    }


def write_outputs(output_dir: str, report: dict, relearn: dict) -> dict:
    """Plots, ``unlearning_report.json`` and the model card ``README.md``."""
    from . import hub

    report["plots"] = [
        os.path.basename(p) for p in write_plots(output_dir, report["metrics"], relearn, report["task"])
    ]
    return hub.write_report(output_dir, report)


def save_unlearned(trainer: Any, job: LoadedJob, output_dir: str) -> None:
    from .scenarios.base import quiet_transformers

    with quiet_transformers():  # no per-shard progress bar for a one-line stage
        trainer.save_model(output_dir)
        if job.tokenizer is not None:
            job.tokenizer.save_pretrained(output_dir)


def run(run_args: RunArguments, config: Any) -> dict:
    """``hf-unlearn run``: unlearn, save the model, evaluate, write the report and card. Returns the report."""
    check_output_dir(config.output_dir, run_args.overwrite_output_dir)
    progress = not config.disable_tqdm
    job = load_job(run_args, seed=config.seed, progress=progress)
    trainer, seconds = unlearn(job, config, run_args)
    report: dict[str, Any] = {}
    if trainer.is_world_process_zero():
        save_unlearned(trainer, job, config.output_dir)
        models = {"original": job.original, "golden": job.golden, "unlearned": trainer.model}
        models = {name: model for name, model in models.items() if model is not None}
        metrics, relearn = evaluate_models(job, models, run_args, seed=config.seed, progress=progress)
        report = write_outputs(
            config.output_dir,
            build_report(job, config, run_args, metrics, relearn, seconds, trainer),
            relearn,
        )
        if config.push_to_hub:
            from . import hub

            hub.push_to_hub(config.output_dir, config.hub_model_id or os.path.basename(config.output_dir))
    trainer.accelerator.wait_for_everyone()
    return report


def _base_model_name(path: str | None) -> str | None:
    # A local path says nothing to a Hub reader and can leak a user's directory layout.
    return None if path is None or os.path.isabs(path) or path.startswith(".") else path


UNLEARNING_FIELDS = (
    "method",
    "learning_rate",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "forget_weight",
    "retain_weight",
    "dr_alpha",
    "dr_variant",
    "npo_beta",
    "ieu_decay",
    "ieu_noise_std",
    "ieu_noise_schedule",
    "ieu_noise_every",
    "forget_loss_cap",
    "forget_loss_cap_margin",
    "forget_loss_cap_from_eval",
    "stopping",
    "stopping_eval_steps",
    "stopping_tolerance",
    "stopping_max_examples",
    "stopping_keep",
    "heldout_label_corruption",
    "influence_removal",
    "mask_ratio",
    "seed",
    "lr_scheduler_type",
    "weight_decay",
)


def hyperparameters(config: Any, run_args: RunArguments, trainer: Any = None) -> dict:
    values = {name: getattr(config, name) for name in UNLEARNING_FIELDS}
    if getattr(trainer, "forget_loss_cap_source", None):
        values["forget_loss_cap"] = trainer.method.forget_loss_cap
        values["forget_loss_cap_source"] = trainer.forget_loss_cap_source
    values["lr_scheduler_type"] = str(values["lr_scheduler_type"]).split(".")[-1].lower()
    lora = {k: v for k, v in asdict(run_args).items() if k.startswith("lora_")}
    if run_args.lora_r > 0:
        values["lora"] = lora
    return values
