"""``hf-unlearn quickstart``: unlearn a built-in scenario with several methods and compare them with the
original and golden models in one table."""

from __future__ import annotations

import json
import os
import time

from .pipeline import (
    RunArguments,
    build_report,
    check_output_dir,
    evaluate_models,
    load_job,
    save_unlearned,
    unlearn,
    write_outputs,
    write_plots,
)
from .reporting.headline import headline_keys, short_keys

#: The rows ``hf-unlearn quickstart`` runs by default: naive fine-tuning on the retain set, which does not forget
#: (the first seed paper's point), the same after that paper's remedy (resetting the weights only the forget set
#: moves), and the two seed papers' methods at the scenario's defaults.
DEFAULT_METHODS = ("ft", "mask+ft", "dr", "ieu")
REMOVALS = ("mask", "rbm")


def parse_row(spec: str) -> tuple[str, str, dict]:
    """``(row name, method, overrides)`` of one quickstart row: ``"ft"`` -> naive fine-tuning
    (``influence_removal="none"``, ``stopping="none"``); ``"mask+ft"`` or ``"mask + ft"`` -> the row of ``ft``
    with ``influence_removal="mask"`` (likewise ``rbm+`` and any method); any other method -> no overrides (the
    scenario's defaults)."""
    from .methods import METHODS

    parts = [p.strip() for p in spec.split("+")]
    if len(parts) == 1:
        method = parts[0]
        if method not in METHODS:
            raise ValueError(f"quickstart: unknown method {method!r}; choose from {sorted(METHODS)}.")
        overrides = {"influence_removal": "none", "stopping": "none"} if method == "ft" else {}
        return method, method, overrides
    if len(parts) != 2 or parts[0] not in REMOVALS or not parts[1]:
        raise ValueError(
            f"quickstart row {spec!r}: write a method (e.g. 'dr') or '<removal>+<method>' with removal "
            f"'mask' or 'rbm' (e.g. 'mask+ft')."
        )
    _, method, overrides = parse_row(parts[1])
    return f"{parts[0]} + {method}", method, {**overrides, "influence_removal": parts[0]}


def row_settings(spec: str, defaults: dict) -> tuple[str, dict]:
    """``(row name, UnlearningConfig keyword arguments)`` of one quickstart row on a scenario whose suggested
    settings are ``defaults`` (``parse_row``)."""
    name, method, overrides = parse_row(spec)
    return name, {**defaults, **overrides, "method": method}


def quickstart(
    output_dir: str = "outputs/quickstart",
    scenario: str = "polarity-minilm",
    methods: list[str] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Returns ``{"metrics", "table", "seconds"}`` and writes, under ``output_dir``: one folder per row
    (model, report, card, plots; ``mask + ft`` in ``mask+ft/``), ``summary.md``, ``summary.json`` and the
    comparison plots.

    ``methods`` are the rows (``parse_row``; default ``DEFAULT_METHODS``): a method at the scenario's
    defaults, except ``"ft"``, naive fine-tuning (no influence removal, no stopping), and
    ``"<removal>+<method>"`` (``"mask+ft"``), the same with ``influence_removal=<removal>`` first.

    With ``progress``, prints one line per stage (the Trainer's logs still go to ``report_to`` and to each
    trainer's log history, not to the terminal)."""
    from .config import UnlearningConfig
    from .scenarios import get_builder

    custom = get_builder(scenario).custom_quickstart()  # a kind the shared pipeline does not run (diffusion)
    if custom is not None:
        return custom(output_dir, scenario, methods, seed=seed, overwrite=overwrite, progress=progress)
    rows = [parse_row(spec)[0] for spec in methods or DEFAULT_METHODS]  # bad names fail before any work
    check_output_dir(output_dir, overwrite)
    say = _stage_printer(progress)
    start = time.perf_counter()
    run_args = RunArguments(
        scenario=scenario,
        scenario_cache_dir=os.path.join(output_dir, "scenarios"),
        **get_builder(scenario).relearning,
    )
    say(f"scenario {scenario}: loading the original and golden models (trained once, then cached)")
    job = load_job(run_args, seed=seed, progress=progress)
    say(f"scenario {scenario}: {_sizes(job.info.get('sizes'))}")
    metrics, relearn = evaluate_models(
        job, {"original": job.original, "golden": job.golden}, run_args, seed=seed, progress=False
    )
    say("original and golden: evaluated, with their relearning runs (" + _summary(metrics, job.task) + ")")
    for spec in rows:
        method, settings = row_settings(spec, job.defaults)  # method: the row's name, e.g. "mask + ft"
        config = UnlearningConfig(
            output_dir=os.path.join(output_dir, method.replace(" ", "")),
            seed=seed,
            report_to=[],
            save_strategy="no",
            disable_tqdm=True,
            **settings,
        )
        job.model = job.make_model()
        say(f"{method}: unlearning ({config.max_steps} steps)")
        trainer, seconds = unlearn(job, config, run_args, quiet=True)
        save_unlearned(trainer, job, config.output_dir)
        row, curves = evaluate_models(job, {method: trainer.model}, run_args, seed=seed, progress=False)
        metrics.update(row)
        relearn.update(curves)
        per_run = {"original": metrics["original"], "golden": metrics["golden"], "unlearned": row[method]}
        write_outputs(
            config.output_dir,
            build_report(job, config, run_args, per_run, curves, seconds, trainer),
            {"original": relearn["original"], "golden": relearn["golden"], method: curves[method]},
        )
        metrics[method]["seconds"] = seconds
        say(f"{method}: unlearned in {seconds:.0f} s, evaluated (" + _summary(row, job.task) + ")")
    table = comparison_table(metrics, headline_keys(job.task, metrics))
    summary = {
        "scenario": scenario,
        "sizes": job.info.get("sizes"),
        "metrics": metrics,
        "reference_train_seconds": job.info.get("train_seconds"),
        "seconds": time.perf_counter() - start,
    }
    write_plots(output_dir, metrics, relearn, job.task)
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    with open(os.path.join(output_dir, "summary.md"), "w") as f:
        f.write(f"# hf-unlearn quickstart: {scenario}\n\n{job.info.get('description', '')}\n\n{table}\n")
    say(f"wrote {output_dir}/summary.md, summary.json, plots and one folder per method")
    return {"metrics": metrics, "table": table, "seconds": time.perf_counter() - start}


def _stage_printer(enabled: bool):
    """``say(text)``: one line per stage, with the time since the first stage."""
    start = time.perf_counter()

    def say(text: str) -> None:
        if enabled:
            print(f"[{time.perf_counter() - start:5.0f} s] {text}", flush=True)

    return say


def _sizes(sizes: dict | None) -> str:
    sizes = sizes or {}
    parts = [f"{sizes[k]} {k[2:]}" for k in ("n_forget", "n_retain", "n_test") if k in sizes]
    return ", ".join(parts) + " examples" if parts else "ready"


def _summary(metrics: dict[str, dict], task: str) -> str:
    """Headline numbers of each model, e.g. ``golden: forget/accuracy 0.062, retain/accuracy 1.000, ...``."""
    keys = short_keys(task, metrics)
    return "; ".join(
        f"{name}: " + ", ".join(f"{k} {_cell(row[k])}" for k in keys if k in row)
        for name, row in metrics.items()
    )


def comparison_table(metrics: dict[str, dict], keys: list[str]) -> str:
    """A markdown table: one row per model, one column per metric."""
    keys = [k for k in keys if any(k in row for row in metrics.values())]
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, row in metrics.items():
        cells = [_cell(row.get(k)) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if 1e-3 <= abs(value) < 1000 or value == 0 else f"{value:.3g}"
    return str(value)
