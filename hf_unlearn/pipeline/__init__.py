"""The end-to-end job behind ``hf-unlearn run`` and ``hf-unlearn quickstart``: load, unlearn, evaluate
against the original and golden models, write the model, report, plots and model card.

``arguments`` holds ``RunArguments``, ``job`` the loading of a ``LoadedJob``, ``evaluation`` the metrics and RCD
of its models, ``report`` the report and plots; this module runs them in order."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from .arguments import RunArguments
from .evaluation import evaluate_models, evaluation_options, heldout_reference, rcd_columns
from .job import (
    LoadedJob,
    job_datasets,
    load_job,
    missing_heldout,
    resolve_label_corruption,
    scenario_defaults,
    scenario_job,
)
from .report import (
    TRAINING_FIELDS,
    UTILITY_DROP,
    build_report,
    hyperparameters,
    unlearning_fields,
    utility_flags,
    write_outputs,
    write_plots,
)
from .sequential import SequentialResult, request_seed, unlearn_sequentially

__all__ = [
    "TRAINING_FIELDS",
    "unlearning_fields",
    "UTILITY_DROP",
    "LoadedJob",
    "SequentialResult",
    "RunArguments",
    "build_report",
    "card_figures",
    "check_output_dir",
    "evaluate_models",
    "evaluation_options",
    "heldout_reference",
    "hyperparameters",
    "job_datasets",
    "load_job",
    "peft_config_of",
    "rcd_columns",
    "request_seed",
    "resolve_label_corruption",
    "resume_checkpoint",
    "run",
    "save_unlearned",
    "scenario_defaults",
    "scenario_job",
    "unlearn",
    "unlearn_sequentially",
    "utility_flags",
    "write_outputs",
    "write_plots",
]

logger = logging.getLogger(__name__)


def check_output_dir(output_dir: str, overwrite: bool, resume_from: str | None = None) -> None:
    """``ValueError`` when ``output_dir`` holds files and ``overwrite`` is off, unless the run resumes from a
    checkpoint inside it (``resume_from``): that folder is the interrupted run's own."""
    if overwrite or not (os.path.isdir(output_dir) and os.listdir(output_dir)):
        return
    if resume_from is not None and _inside(resume_from, output_dir):
        return
    raise ValueError(
        f"output_dir {output_dir!r} exists and is not empty; choose another one or pass --overwrite_output_dir."
    )


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def resume_checkpoint(config: Any) -> str | None:
    """The checkpoint folder ``config.resume_from_checkpoint`` names, checked before anything is loaded:
    ``"true"`` (or ``True``) is the last ``checkpoint-*`` in ``output_dir``, as in ``Trainer.train``; any other
    value a folder. ``None`` when unset; ``ValueError`` when there is nothing to resume from."""
    value = config.resume_from_checkpoint
    if value in (None, False, "") or (isinstance(value, str) and value.lower() == "false"):
        return None
    if value is True or (isinstance(value, str) and value.lower() == "true" and not os.path.isdir(value)):
        from transformers.trainer_utils import get_last_checkpoint

        found = get_last_checkpoint(config.output_dir) if os.path.isdir(config.output_dir) else None
        if found is None:
            raise ValueError(
                f"resume_from_checkpoint=true but output_dir {config.output_dir!r} holds no checkpoint-* folder "
                "to resume from; give a checkpoint folder, or run without it to start afresh."
            )
        return found
    if not os.path.isdir(value):
        raise ValueError(
            f"resume_from_checkpoint {value!r} is not a folder: give a checkpoint-* folder of an earlier run "
            "(or true for the last one in output_dir)."
        )
    return value


def peft_config_of(run_args: RunArguments, kind: Any):
    """The ``LoraConfig`` of ``run_args`` (``None`` for full fine-tuning, ``lora_r <= 0``) for a model of
    ``kind`` (an ``hf_unlearn.kinds.ModelKind``, or a model), with the kind's defaults (``lora_defaults``:
    task type, modules trained in full)."""
    if run_args.lora_r <= 0:
        return None
    from peft import LoraConfig

    from ..kinds import ModelKind, get_model_kind

    kind = kind if isinstance(kind, ModelKind) else get_model_kind(kind)
    defaults = kind.lora_defaults()
    default_targets = defaults.pop("target_modules", None)  # the user's, when named, replace them
    return LoraConfig(
        r=run_args.lora_r,
        lora_alpha=run_args.lora_alpha,
        lora_dropout=run_args.lora_dropout,
        target_modules=run_args.lora_target_modules or default_targets,
        **defaults,
    )


def unlearn(job: LoadedJob, config: Any, run_args: RunArguments, quiet: bool = False):
    """Run the trainer of the job's model kind (``UnlearningTrainer``, or a kind's subclass such as
    ``DiffusionUnlearningTrainer``, with the kind's extra arguments) on the job; returns ``(trainer, seconds)``.
    ``quiet`` keeps the Trainer's progress bar and log dicts off the terminal (they still reach ``report_to`` and
    the log history)."""
    from ..kinds import get_model_kind
    from .training import kind_trainer, needs_heldout

    if needs_heldout(config) and job.test is None:
        raise ValueError(
            "forget_loss_cap_from_eval and stopping='heldout' measure the model on held-out data: "
            + missing_heldout(job)
        )
    resolve_label_corruption(job, config)  # the user's setting, else the scenario's: stopping and RCD alike
    kind = get_model_kind(job.model)
    trainer = kind_trainer(
        job.model,
        config,
        forget=job.forget,
        retain=job.retain,
        test=job.test,
        processing_class=job.tokenizer,
        peft_config=peft_config_of(run_args, job.model),
        trainer_input=job.trainer_input,
        # a diffusion model's scheduler and DiffusionArguments, with the run's diffusion settings
        trainer_kwargs=kind.trainer_kwargs(job.trainer_kwargs, run_args.diffusion),
        quiet=quiet,
    )
    kind.align_references(job.model, (job.original, job.golden))  # measured as the trained model
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_checkpoint(config))
    return trainer, time.perf_counter() - start


def save_unlearned(trainer: Any, job: LoadedJob, output_dir: str) -> None:
    """The unlearned model (and the job's tokenizer) saved under ``output_dir``."""
    from ..scenarios.resources import quiet_transformers

    with quiet_transformers():  # no per-shard progress bar for a one-line stage
        trainer.save_model(output_dir)  # writes on the main process only (TrainingArguments.should_save)
        if job.tokenizer is not None and trainer.is_world_process_zero():
            job.tokenizer.save_pretrained(output_dir)


def card_figures(job: LoadedJob, models: dict[str, Any], run_args: RunArguments, config: Any) -> list[str]:
    """The figures the model kind draws for the card into ``config.output_dir`` (``ModelKind.card_figures``: a
    diffusion model's sample grids of the unlearned, golden and original models, seeded by the run's seed); none
    with ``run_args.sample_grids`` off."""
    if not run_args.sample_grids:
        return []
    from ..kinds import get_model_kind

    order = [name for name in ("unlearned", "golden", "original") if name in models]
    kind = get_model_kind(job.model)
    return kind.card_figures(
        {name: models[name] for name in order},
        config.output_dir,
        seed=config.seed,
        options=job.evaluation,  # the scenario's generation settings (generation_steps)
        data={"forget": job.forget, "retain": job.retain},
    )


def run(run_args: RunArguments, config: Any) -> dict:
    """``hf-unlearn run``: unlearn, save the model, evaluate, write the report and card. Returns the report."""
    config.resume_from_checkpoint = resume_checkpoint(config)  # before any loading: a bad value fails fast
    check_output_dir(config.output_dir, run_args.overwrite_output_dir, config.resume_from_checkpoint)
    progress = not config.disable_tqdm
    job = load_job(run_args, seed=config.seed, progress=progress)
    trainer, seconds = unlearn(job, config, run_args)
    report: dict[str, Any] = {}
    main_process = trainer.is_world_process_zero()
    save_unlearned(trainer, job, config.output_dir)  # on every process: sharded weights are gathered
    models = {"original": job.original, "golden": job.golden, "unlearned": trainer.model}
    models = {name: model for name, model in models.items() if model is not None}
    # every process evaluates its share of the batches (metrics.evaluation gathers them)
    progress = progress and main_process
    metrics, relearn = evaluate_models(job, models, run_args, seed=config.seed, progress=progress)
    if main_process:
        report = build_report(job, config, run_args, metrics, relearn, seconds, trainer)
        report["plots"] = card_figures(job, models, run_args, config)
        report = write_outputs(config.output_dir, report, relearn)
        if config.push_to_hub:
            from ..reporting import card as hub

            hub.push_to_hub(config.output_dir, config.hub_model_id or os.path.basename(config.output_dir))
    trainer.accelerator.wait_for_everyone()
    return report
