"""``hf-unlearn quickstart --scenario digits-ddpm``: unlearn the forgotten digit from the scenario's DDPM with
several methods and compare them with the original and golden models in one table, with a grid of samples per
class for every model."""

from __future__ import annotations

import json
import os
import time
from typing import Any

#: The rows of the diffusion quickstart: naive fine-tuning, the ascent family, SalUn's relabelling and mask, ESD.
DEFAULT_DIFFUSION_METHODS = ("ft", "ga", "grad_diff", "rl", "salun", "esd", "ieu")
#: The table's columns.
TABLE_KEYS = (
    "forget/generation_accuracy",
    "retain/generation_accuracy",
    "quality/frechet_distance",
    "mia/auc",
    "rcd/ratio_to_golden",
    "seconds",
    "time/ratio_to_retraining",
)
#: images per UNet call in the quickstart's evaluation (sampling and per-example losses)
EVAL_BATCH_SIZE = 128


def diffusion_quickstart(
    output_dir: str = "outputs/quickstart",
    scenario: str = "digits-ddpm",
    methods: list[str] | None = None,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    relearning: bool = True,
) -> dict:
    """Returns ``{"metrics", "table", "seconds"}`` and writes under ``output_dir``: ``summary.md``,
    ``summary.json``, ``samples_<row>.png`` (one row of samples per class, the same noise for every model) and one
    folder per method with the unlearned UNet, its ``unlearning_report.json``, its model card ``README.md`` (the
    shared reporting code: ``pipeline.build_report``, ``pipeline.write_outputs``) and the figures the card shows
    (the relearning curves, the metrics, the sample grids of the method, golden and original). ``methods``: ``DiffusionUnlearningTrainer`` methods at the
    scenario's suggested settings (default ``DEFAULT_DIFFUSION_METHODS``)."""
    from ..methods import METHODS
    from ..pipeline import check_output_dir
    from ..quickstart import _stage_printer, comparison_table
    from ..scenarios import load_scenario

    methods = list(methods or DEFAULT_DIFFUSION_METHODS)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"quickstart: unknown method(s) {unknown}; choose from {sorted(METHODS)}.")
    check_output_dir(output_dir, overwrite)
    os.makedirs(output_dir, exist_ok=True)
    say = _stage_printer(progress)
    start = time.perf_counter()
    say(
        f"scenario {scenario}: loading the original and golden DDPMs and the judge (trained once, then cached)"
    )
    sc = load_scenario(scenario, os.path.join(output_dir, "scenarios"), seed=seed, progress=progress)
    ev = _Evaluator(sc, seed, relearning)
    references: dict[str, dict] = {}
    for name, model in (
        ("golden", sc.golden_model()),
        ("original", sc.original_model()),
    ):  # golden's RCD first
        references[name] = ev.evaluate(name, model, output_dir)
        say(f"{name}: evaluated ({_summary(references[name])})")
    metrics = {name: references[name] for name in ("original", "golden")}
    for method in methods:
        trainer, seconds = _unlearn(sc, method, os.path.join(output_dir, method), seed)
        metrics[method] = ev.evaluate(method, trainer.model, output_dir)
        metrics[method]["seconds"] = round(seconds, 2)
        metrics[method]["time/ratio_to_retraining"] = round(seconds / sc.train_seconds["golden"], 4)
        _write_row(sc, ev, trainer, metrics, method, seconds, output_dir)
        say(f"{method}: unlearned in {seconds:.0f} s, evaluated ({_summary(metrics[method])})")
    table = comparison_table(metrics, list(TABLE_KEYS))
    summary = {
        "scenario": scenario,
        "sizes": sc.sizes,
        "metrics": metrics,
        "reference_train_seconds": sc.train_seconds,
        "seconds": time.perf_counter() - start,
    }
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, default=str)
    grids = "\n".join(f"![{name}](samples_{name}.png)" for name in metrics)
    with open(os.path.join(output_dir, "summary.md"), "w") as f:
        f.write(f"# hf-unlearn quickstart: {scenario}\n\n{sc.description}\n\n{table}\n\n{grids}\n")
    say(
        f"wrote {output_dir}/summary.md, summary.json, samples_*.png and one folder per method (model, report, "
        "card)"
    )
    return {"metrics": metrics, "table": table, "seconds": time.perf_counter() - start}


def _write_row(
    sc: Any, ev: Any, trainer: Any, metrics: dict, method: str, seconds: float, output_dir: str
) -> dict:
    """The method's folder gets what every scenario's rows get (``pipeline.build_report`` +
    ``pipeline.write_outputs``: report JSON, model card, plots), with the sample grids of the method, golden and
    original in the card's figures. Returns the report."""
    import shutil

    from ..pipeline import LoadedJob, RunArguments, build_report, write_outputs
    from ..pipeline.job import scenario_info
    from ..scenarios import get_builder

    folder = os.path.join(output_dir, method)
    job = LoadedJob(
        model=trainer.model,
        tokenizer=None,
        forget=sc.forget,
        retain=sc.retain,
        test=sc.test,
        original=ev.original,
        task=sc.task,
        info=scenario_info(sc),
    )
    run_args = RunArguments(scenario=sc.name, **get_builder(sc.name).relearning)
    per_run = {"original": metrics["original"], "golden": metrics["golden"], "unlearned": metrics[method]}
    curves = {"unlearned": ev.rcd[method]} if method in ev.rcd else {}
    report = build_report(job, trainer.args, run_args, per_run, curves, seconds, trainer)
    grids = []
    for name in (method, "golden", "original"):
        grid = f"samples_{name}.png"
        shutil.copyfile(os.path.join(output_dir, grid), os.path.join(folder, grid))
        grids.append(grid)
    report["plots"] = grids
    relearn = {name: ev.rcd[key] for name, key in (("original", "original"), ("golden", "golden"),
                                                    (method, method)) if key in ev.rcd}  # fmt: skip
    return write_outputs(folder, report, relearn)


def _unlearn(sc: Any, method: str, output_dir: str, seed: int) -> tuple[Any, float]:
    """A ``DiffusionUnlearningTrainer`` run of ``method`` on the scenario's original; ``(trainer, seconds)``."""
    from ..config import UnlearningConfig
    from ..pipeline.training import kind_trainer

    config = UnlearningConfig(
        output_dir=output_dir,
        seed=seed,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        method=method,
        **sc.unlearning_defaults,
    )
    trainer = kind_trainer(  # quiet: the log dicts stay in the log history, off the terminal
        sc.original_model(),
        config,
        forget=sc.forget,
        retain=sc.retain,
        trainer_kwargs=sc.trainer_kwargs(),
        quiet=True,
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.save_model(output_dir)
    return trainer, seconds


class _Evaluator:
    """The quickstart's measurements of one model: ``evaluate_unlearning`` with the scenario's judge (the
    generation metrics, the kind's ``suite_metrics``) and the held-out images of the forgotten class as its test
    set (``mia/auc``: forget vs held-out images of that class, per-example denoising losses at fixed draws), then
    RCD."""

    def __init__(self, sc: Any, seed: int, relearning: bool):
        self.sc, self.seed, self.relearning = sc, seed, relearning
        self.scheduler, self.args = sc.noise_scheduler(), sc.diffusion_args()
        self.options = sc.evaluation_options()  # the judge and the generation settings, as a run's
        self.original = sc.original_model()
        labels = sc.test["label"]
        self.heldout = sc.test.select([i for i, y in enumerate(labels) if y in sc.forget_classes])
        self.golden_rcd = None
        self.rcd: dict[str, Any] = {}  # RelearnResult of each model evaluated (the reports' relearning)

    def metrics(self, model: Any) -> dict[str, float]:
        """``evaluate_unlearning`` of ``model`` (configured with the scenario's scheduler and arguments) at the
        scenario's generation settings."""
        from ..metrics import evaluate_unlearning
        from .args import configure_unet

        configure_unet(model, self.scheduler, self.args)
        return evaluate_unlearning(
            model,
            forget_dataset=self.sc.forget,
            retain_dataset=self.sc.retain,
            test_dataset=self.heldout,
            batch_size=EVAL_BATCH_SIZE,
            **self.options,
        )

    def evaluate(self, name: str, model: Any, output_dir: str) -> dict:
        row = self.metrics(model)
        if self.relearning:
            row.update(self._rcd(name, model))
        self.sc.save_grid(model, os.path.join(output_dir, f"samples_{name}.png"), seed=self.seed, title=name)
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}

    def _rcd(self, name: str, model: Any) -> dict:
        from ..metrics import relearning_convergence_delay
        from ..pipeline import RunArguments
        from ..pipeline.evaluation import relearn_config
        from ..scenarios import get_builder

        # the scenario's relearning protocol, as `hf-unlearn run --scenario` builds it
        run_args = RunArguments(scenario=self.sc.name, **get_builder(self.sc.name).relearning)
        config = relearn_config(run_args, self.seed, progress=False)
        if name == "golden":
            self.golden_rcd = self.rcd[name] = relearning_convergence_delay(
                model, self.sc.forget, original_model=self.original, config=config
            )
            return {"rcd/steps": self.golden_rcd.steps, "rcd/ratio_to_golden": 1.0}
        result = self.rcd[name] = relearning_convergence_delay(
            model, self.sc.forget, original_model=self.original, golden_result=self.golden_rcd, config=config
        )
        out = {"rcd/steps": result.steps, "rcd/ratio_to_golden": result.ratio_to_golden}
        return {k: v for k, v in out.items() if v is not None}  # missing, not None (the original's ratio)


def _summary(row: dict) -> str:
    keys = ("forget/generation_accuracy", "retain/generation_accuracy", "quality/frechet_distance")
    return ", ".join(f"{k} {row[k]:.3f}" for k in keys if isinstance(row.get(k), float))
