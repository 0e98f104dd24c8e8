"""What a run writes besides the model: the JSON report (hyperparameters, metrics, relearning, stopping,
utility flags), the plots and, through ``hf_unlearn.reporting.card``, the model card."""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

from .arguments import RunArguments
from .evaluation import relearning_notes
from .job import LoadedJob

UTILITY_DROP = 0.02  # retain accuracy (or token accuracy) drop below the original that gets flagged

TRAINING_FIELDS = (
    "method",
    "learning_rate",
    "lr_scheduler_type",
    "weight_decay",
    "max_steps",
    "num_train_epochs",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
)
# fields of the trainer's optional parts, reported when the part is on
FORGET_LOSS_CAP_FIELDS = ("forget_loss_cap", "forget_loss_cap_margin", "forget_loss_cap_from_eval")
STOPPING_FIELDS = (
    "stopping",
    "stopping_eval_steps",
    "stopping_tolerance",
    "stopping_max_examples",
    "stopping_keep",
    "heldout_label_corruption",
)
INFLUENCE_REMOVAL_FIELDS = ("influence_removal", "mask_ratio")


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


def write_plots(
    output_dir: str, metrics: dict, relearn: dict, task: str, method: str | None = None
) -> list[str]:
    """``relearning_curves.png`` and ``metrics.png`` under ``output_dir`` (those there is data for); their paths.
    With ``method``, the ``"unlearned"`` model is drawn as ``"<method> (unlearned)"``, in its method's colour."""
    from ..metrics.plots import plot_relearning_curves
    from ..reporting.plots import plot_metric_bars

    if method is not None:
        label = f"{method} (unlearned)"
        metrics = {label if name == "unlearned" else name: row for name, row in metrics.items()}
        relearn = {label if name == "unlearned" else name: row for name, row in relearn.items()}
    paths = []
    if relearn:
        path = os.path.join(output_dir, "relearning_curves.png")
        from ..kinds import kind_for_task

        metric = kind_for_task(task).default_rcd_target
        plot_relearning_curves(relearn, path, metric=metric)
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
    """The JSON report of one unlearning run (never any forget-set content: counts and a fingerprint; the data's
    source, folder name and files, never a local path).
    With ``trainer``, the hyperparameters carry what it decided at run time (the forget-loss cap)."""
    from ..reporting.card import base_model_facts, forget_fingerprint

    return {
        "method": config.method,
        "task": job.task,
        "scenario": job.info.get("scenario"),
        # the data of a run without a scenario: a benchmark copy (source, folder name, subset, files read, row
        # counts, splits not found, options) or the user's files (their names)
        "data": job.data_source,
        # base_model (a Hub id or None), the base folder's name (never its path) and the base model's license
        **base_model_facts(job.info.get("base_model")),
        "architecture": type(job.original).__name__ if job.original is not None else None,
        "scenario_description": job.info.get("description"),
        "hyperparameters": hyperparameters(config, run_args, trainer),
        "reproducibility": reproducibility(config, trainer),
        "forget_fingerprint": forget_fingerprint(job.forget),
        "sizes": job.info.get("sizes") or {"n_forget": len(job.forget), "n_retain": len(job.retain)},
        "timing": {"unlearning_seconds": seconds, "reference_train_seconds": job.info.get("train_seconds")},
        "metrics": metrics,
        "relearning": {name: r.to_dict() for name, r in relearn.items()},
        "stopping": trainer.stopping.record.to_dict() if getattr(trainer, "stopping", None) else None,
        "flags": utility_flags(metrics) + relearning_notes(relearn),
    }


def write_outputs(output_dir: str, report: dict, relearn: dict) -> dict:
    """Plots, ``unlearning_report.json`` and the model card ``README.md``. Figures the report already lists
    (``report["plots"]``: files in ``output_dir``, e.g. a diffusion model's sample grids) follow the plots."""
    from ..reporting import card as hub

    plots = write_plots(output_dir, report["metrics"], relearn, report["task"], report.get("method"))
    written = [os.path.basename(p) for p in plots]
    report["plots"] = written + [p for p in report.get("plots") or [] if p not in written]
    return hub.write_report(output_dir, report)


def unlearning_fields(config: Any, method: type | None = None) -> tuple[str, ...]:
    """The ``UnlearningConfig`` fields a run of ``config`` uses: the training fields, those its method reads
    (``UnlearningMethod.hyperparameters``) and those of the optional parts that are on (forget-loss cap,
    held-out stopping, influence removal)."""
    from ..methods import get_method

    method = method or get_method(config.method)
    fields = [f for f in TRAINING_FIELDS if not (f == "num_train_epochs" and config.max_steps > 0)]
    fields += method.hyperparameters
    if method.uses_forget_loss_cap:
        fields += FORGET_LOSS_CAP_FIELDS
    if config.stopping != "none":
        fields += STOPPING_FIELDS
    if config.heldout_label_corruption not in (None, "none"):  # golden-free RCD relabels the held-out set too
        fields += ("heldout_label_corruption",)
    if config.influence_removal != "none":
        fields += INFLUENCE_REMOVAL_FIELDS
    return tuple(dict.fromkeys(fields))


def hyperparameters(config: Any, run_args: RunArguments, trainer: Any = None) -> dict:
    """The report's hyperparameters: the ``unlearning_fields`` of ``config``, the forget-loss cap the trainer
    decided, the LoRA settings when LoRA was used, and with ``trainer`` the optimizer steps that ran
    (``steps_run``, ``trainer.state.global_step``)."""
    values = {name: getattr(config, name) for name in unlearning_fields(config)}
    if getattr(trainer, "forget_loss_cap_source", None) and "forget_loss_cap" in values:
        values["forget_loss_cap"] = trainer.method.forget_loss_cap
        values["forget_loss_cap_source"] = trainer.forget_loss_cap_source
    values["lr_scheduler_type"] = str(values["lr_scheduler_type"]).split(".")[-1].lower()
    lora = {k: v for k, v in asdict(run_args).items() if k.startswith("lora_")}
    if run_args.lora_r > 0:
        values["lora"] = lora
    # the user's DiffusionArguments fields (every field: diffusion_args.json beside the model)
    if getattr(run_args, "diffusion", None):
        values["diffusion"] = dict(run_args.diffusion)
    if trainer is not None:  # what ran, next to max_steps (a stopping rule can end a run early)
        values["steps_run"] = trainer.state.global_step
    return values


def reproducibility(config: Any, trainer: Any = None) -> dict:
    """What it takes to rerun this run the same way: seeds, processes, the effective batch, precision and device
    (the library versions are in the report's ``versions``)."""
    import platform

    world = getattr(getattr(trainer, "args", config), "world_size", 1)
    per_part = config.per_device_train_batch_size * config.gradient_accumulation_steps * world
    precision = "bf16" if config.bf16 else "fp16" if config.fp16 else "fp32"
    return {
        "seed": config.seed,
        "data_seed": config.data_seed,
        "world_size": world,
        "effective_batch_per_part": per_part,  # forget and retain examples per optimizer step, each
        "precision": precision,
        "device": _device_name(trainer),
        "full_determinism": config.full_determinism,
        "python": platform.python_version(),
    }


def _device_name(trainer: Any) -> str:
    import torch

    device = getattr(getattr(trainer, "args", None), "device", None)
    if device is not None and device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type if device is not None else "cpu"
