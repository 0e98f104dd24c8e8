"""``hf-unlearn eval``: unlearning metrics of a saved model directory."""

from __future__ import annotations

from typing import Any


def evaluate_directory(args: Any) -> dict:
    """Metrics of ``args.model`` against the original and golden models (from dirs or a scenario)."""
    from .loading import load_dataset_file, load_model, load_tokenizer
    from .pipeline import LoadedJob, RunArguments, evaluate_models, load_job

    model = load_model(args.model)
    protocol: dict = {}
    if args.scenario:
        from .scenarios import get_builder

        protocol = get_builder(args.scenario).relearning
        job = load_job(
            RunArguments(scenario=args.scenario, scenario_cache_dir=args.scenario_cache_dir), args.seed
        )
    else:
        if not (args.forget_dataset and args.retain_dataset):
            raise ValueError("eval needs --scenario, or --forget_dataset and --retain_dataset.")
        from .data import infer_task

        job = LoadedJob(
            model=model,
            tokenizer=load_tokenizer(args.model),
            forget=load_dataset_file(args.forget_dataset),
            retain=load_dataset_file(args.retain_dataset),
            test=load_dataset_file(args.test_dataset) if args.test_dataset else None,
            task=infer_task(model),
        )
    if args.original:
        job.original = load_model(args.original)
    if args.golden:
        job.golden = load_model(args.golden)
    run_args = RunArguments(
        relearn=not args.no_relearn and job.original is not None,
        generation=True if args.generation else None,
        max_new_tokens=args.max_new_tokens,
        **protocol,
    )
    metrics, _ = evaluate_models(job, {"model": model}, run_args, seed=args.seed)
    return metrics["model"]
