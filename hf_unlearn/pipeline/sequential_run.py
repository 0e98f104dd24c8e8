"""``hf-unlearn run`` with unlearning requests that keep coming: a comma-separated ``forget_dataset`` list (one
file per request, optionally one ``golden_model_path`` per request), or ``sequential_requests: k`` (a scenario's
forget set cut into ``k`` requests, with the golden model of each prefix; another forget set cut by its group column (e.g. TOFU's ``author``) or by row).

The requests run one after another (``unlearn_sequentially``); one line per request is printed, the report's
``sequential`` entry holds the per-request table, and its ``metrics`` are those of the final model against the
union of the requests (the golden model after the last one), as a one-shot run's."""

from __future__ import annotations

import copy
import os
from typing import Any

from ..reporting.sequential import LINE_METRICS
from .arguments import RunArguments
from .job import LoadedJob


def forget_files(run_args: RunArguments) -> list[str]:
    """The forget files of ``run_args.forget_dataset`` (comma-separated)."""
    return [p.strip() for p in (run_args.forget_dataset or "").split(",") if p.strip()]


def is_sequential(run_args: RunArguments) -> bool:
    """Whether ``run_args`` asks for sequential requests (``sequential_requests`` or several forget files)."""
    return run_args.sequential_requests > 0 or len(forget_files(run_args)) > 1


def load_requests(run_args: RunArguments, seed: int, progress: bool) -> tuple[LoadedJob, list, Any]:
    """``(job, requests, golden)``: the job (``job.forget`` the union of the requests, ``job.golden`` the golden
    after the last one), the forget sets in order, and the golden of each point (a callable, or ``None``)."""
    from .job import load_job, scenario_job

    k = run_args.sequential_requests
    files = forget_files(run_args)
    if run_args.scenario and files:
        raise ValueError(
            "a scenario brings its forget set: drop forget_dataset (sequential_requests cuts it)."
        )
    if run_args.scenario:
        from ..scenarios.sequential import load_sequential

        seq = load_sequential(run_args.scenario, k, run_args.scenario_cache_dir, seed=seed, progress=progress)
        job = scenario_job(run_args, seed, progress)
        job.golden = seq.golden_model(k)
        return job, seq.requests, seq.golden_for
    goldens = [p.strip() for p in (run_args.golden_model_path or "").split(",") if p.strip()]
    if len(files) > 1 and k not in (0, len(files)):
        raise ValueError(
            f"sequential_requests={k} but forget_dataset lists {len(files)} files: drop one of the two."
        )
    first = copy.copy(run_args)
    first.forget_dataset, first.golden_model_path = (files[0] if files else None), None
    job = load_job(first, seed=seed, progress=progress)
    requests = _file_requests(files, job, k, seed)
    if goldens and len(goldens) != len(requests):
        raise ValueError(
            f"golden_model_path lists {len(goldens)} models for {len(requests)} requests: give one per request "
            "(comma-separated, the golden after each), or none."
        )
    golden = _golden_loader(goldens, run_args) if goldens else None
    job.golden = golden(requests) if golden else None
    return job, requests, golden


def _file_requests(files: list[str], job: LoadedJob, k: int, seed: int) -> list:
    """One forget set per file, or ``job.forget`` cut into ``k`` requests (a single file): by group when it has
    a group column (the first of ``group``, ``person``, ``author``, e.g. TOFU's authors), else by row."""
    if len(files) > 1:
        from ..loading import load_dataset_file

        return [job.forget] + [load_dataset_file(path) for path in files[1:]]
    from ..data import to_dataset
    from ..metrics.attacks.relearn import group_column_of
    from ..scenarios.sequential import split_requests

    forget = to_dataset(job.forget, "forget_dataset")
    group = group_column_of(forget.column_names, "auto")
    return [forget.select(rows) for rows in split_requests(forget, k, seed, group)]


def _golden_loader(paths: list[str], run_args: RunArguments):
    """``golden(requests_so_far)``: the model of ``paths[len(requests_so_far) - 1]``, loaded when asked."""
    from ..loading import load_model

    def golden(requests_so_far: list) -> Any:
        return load_model(paths[len(requests_so_far) - 1], trust_remote_code=run_args.trust_remote_code)

    return golden


def request_line(i: int, k: int, row: dict, kind: Any = None) -> str:
    """One printed line per request: its size, steps, time, and the forget metric on the current request, the
    earlier ones and the union (golden in brackets), and the retain one."""
    preferred = tuple(getattr(kind, "primary_forget_metrics", ())) + LINE_METRICS
    metric = next((m for m in preferred if f"current/{m}" in row), None)
    parts = [f"request {i}/{k}: {row['n_forget']} examples, {row['steps']} steps, {row['seconds']:.1f} s"]
    if metric is not None:
        for prefix in ("current/", "earlier/", "union/"):
            if prefix + metric in row:
                golden = row.get(prefix + "golden/" + metric)
                reference = f" (golden {golden:.3f})" if golden is not None else ""
                parts.append(f"{prefix}{metric} {row[prefix + metric]:.3f}{reference}")
        retain = "retain/" + metric.split("/", 1)[1]
        if retain in row:
            parts.append(f"{retain} {row[retain]:.3f}")
    if "current/rcd/steps" in row:
        golden = row.get("current/golden/rcd/steps")
        ratio = row.get("current/rcd/ratio_to_golden")
        rcd = f"current/rcd/steps {row['current/rcd/steps']}" + (
            f" (golden {golden})" if golden is not None else ""
        )
        parts.append(rcd + (f", ratio_to_golden {ratio:.2f}" if ratio is not None else ""))
    return "; ".join(parts)


def run_sequential(run_args: RunArguments, config: Any) -> dict:
    """``hf-unlearn run`` with sequential requests: unlearn them in order, save the final model, evaluate it
    (as a one-shot run, on the union), and write the report (``sequential``: the per-request table) and card."""
    from . import check_output_dir, peft_config_of, resolve_label_corruption
    from .evaluation import evaluate_models, evaluation_options, relearn_config
    from .report import build_report, write_outputs
    from .sequential import union, unlearn_sequentially

    if config.resume_from_checkpoint not in (None, False, "") or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("sequential requests run in one process without resume_from_checkpoint; drop those.")
    check_output_dir(config.output_dir, run_args.overwrite_output_dir)
    progress = not config.disable_tqdm
    job, requests, golden = load_requests(run_args, config.seed, progress)
    resolve_label_corruption(job, config)
    from ..kinds import get_model_kind

    kind = get_model_kind(job.model)
    result = unlearn_sequentially(
        job.model,
        config,
        requests,
        job.retain,
        test_dataset=job.test,
        processing_class=job.tokenizer,
        golden=golden,
        original_model=job.original,
        peft_config=peft_config_of(run_args, job.model),
        trainer_kwargs=get_model_kind(job.model).trainer_kwargs(job.trainer_kwargs, run_args.diffusion),
        evaluate=run_args.evaluate,
        evaluation=evaluation_options(job, run_args, config.seed),
        relearning=relearn_config(run_args, config.seed, progress) if run_args.relearn else None,
        quiet=not progress,
        on_request=lambda i, row: print(request_line(i, len(requests), row, kind), flush=True),
    )
    _save(result.model, job, config.output_dir)
    job.forget = union(result_requests(requests))
    models = {"original": job.original, "golden": job.golden, "unlearned": result.model}
    models = {name: model for name, model in models.items() if model is not None}
    metrics, relearn = evaluate_models(job, models, run_args, seed=config.seed, progress=progress)
    report = build_report(job, config, run_args, metrics, relearn, sum(result.seconds))
    report["sequential"] = sequential_record(requests, result)
    return write_outputs(config.output_dir, report, relearn)


def result_requests(requests: list) -> list:
    """The requests as ``datasets.Dataset``s (a request read from a file may be a list of rows)."""
    from ..data import to_dataset

    return [to_dataset(r, f"forget set of request {i}") for i, r in enumerate(requests, 1)]


def sequential_record(requests: list, result: Any) -> dict:
    """The report's ``sequential`` entry: each request's size and fingerprint (never its content), and the
    per-request metrics table (``unlearn_sequentially``'s rows)."""
    from ..reporting.card import forget_fingerprint

    return {
        "k": len(requests),
        "requests": [{"n_forget": len(r), "fingerprint": forget_fingerprint(r)} for r in requests],
        "table": result.metrics,
        "steps": result.steps,
        "seconds": result.seconds,
    }


def _save(model: Any, job: LoadedJob, output_dir: str) -> None:
    from ..scenarios.resources import quiet_transformers

    with quiet_transformers():
        model.save_pretrained(output_dir)
        if job.tokenizer is not None:
            job.tokenizer.save_pretrained(output_dir)
