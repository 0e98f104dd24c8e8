"""``images``: the seed papers' image protocol on the digits scenarios, in SalUn's layout.

For random forgetting (``digits-random10``) and class-wise forgetting (``digits-class``), 3 scenario seeds
(each its own split, initialization, original and golden model): UA, RA, TA, MIA-efficacy, their average gap
to golden, the RCD ratio to golden and the unlearning time relative to retraining (golden's training time
in the same build), for ft, ga, rl, salun, dr, ieu, mask (+ft), rbm (+ft) and golden (mean +- std). Every
method runs with the scenario's defaults (``unlearning_defaults``; no per-method tuning).

Targets: unlearning costs at most 10% of retraining (median over methods and seeds); on class-wise
forgetting the best method's average gap is at most 0.02.
"""

from __future__ import annotations

import statistics
from typing import Any

from . import common, quality

NAME = "images"
SCENARIOS = ["digits-random10", "digits-class"]
SEEDS = (0, 1, 2)
#: row -> (method, overrides): SalUn's comparison set plus the seeds' methods and the two pre-masks
#: (the methods as their papers run them: no influence removal, which digits-random10's defaults now have)
PLAIN = {"influence_removal": "none"}
ROWS: dict[str, tuple[str, dict]] = {
    "ft": ("ft", PLAIN),
    "ga": ("ga", PLAIN),
    "rl": ("rl", PLAIN),
    "salun": ("salun", PLAIN),
    "dr": ("dr", PLAIN),
    "ieu": ("ieu", PLAIN),
    "mask": ("ft", {"influence_removal": "mask", "mask_ratio": 0.01}),
    "rbm": ("ft", {"influence_removal": "rbm", "mask_ratio": 0.01}),
}
KEYS = ["forget/ua", "retain/accuracy", "test/accuracy", "mia/efficacy", "gap/average", "rcd/ratio_to_golden"]


def run_seed(name: str, seed: int, rows: dict[str, tuple[str, dict]]) -> dict:
    """Build (or load) the seed's scenario, unlearn with every row, score everything against its golden."""
    from hf_unlearn.pipeline import RunArguments, evaluate_models, load_job
    from hf_unlearn.scenarios import get_builder

    cache = common.WORK_DIR / NAME / f"seed{seed}"
    run_args = RunArguments(scenario=name, scenario_cache_dir=str(cache), **get_builder(name).relearning)
    job = load_job(run_args, seed=seed, progress=False)
    models: dict[str, Any] = {"original": job.original, "golden": job.golden}
    seconds, train_seconds = {}, {}
    for label, (method, overrides) in rows.items():
        run = quality.unlearn_run(job, run_args, method, overrides, seed=seed, tag=f"{label}_{seed}")
        models[label], seconds[label], train_seconds[label] = run.model, run.seconds, run.train_seconds
    metrics, _ = evaluate_models(job, models, run_args, seed=0, progress=False)
    retrain = job.info["train_seconds"]["golden"]
    return {
        "metrics": {label: {k: metrics[label].get(k) for k in KEYS} for label in metrics},
        "seconds": seconds,
        "train_seconds": train_seconds,
        "retrain_seconds": retrain,
        "time_ratio": {label: s / retrain for label, s in seconds.items()},
        "train_time_ratio": {label: s / retrain for label, s in train_seconds.items()},
    }


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(per_seed: dict[int, dict], labels: list[str]) -> dict[str, dict]:
    """Per model: mean and std over seeds of every key and of the time ratio."""
    out = {}
    for label in labels:
        row = {}
        for key in KEYS + ["time_ratio"]:
            if key == "time_ratio":
                values = [r["time_ratio"][label] for r in per_seed.values() if label in r["time_ratio"]]
            else:
                values = [
                    r["metrics"][label][key]
                    for r in per_seed.values()
                    if r["metrics"][label].get(key) is not None
                ]
            if values:
                row[key] = _mean_std(values)
        out[label] = row
    return out


def table_of(summary: dict[str, dict]) -> str:
    rows = []
    for label, row in summary.items():
        cells = {"model": label}
        for key in KEYS + ["time_ratio"]:
            if key in row:
                mean, std = row[key]
                cells[key] = f"{mean:.3f} +- {std:.3f}"
        rows.append(cells)
    return common.markdown_table(rows, KEYS + ["time_ratio"], first="model")


def run(
    quick: bool = False, threads: int | None = None, scenarios: list[str] | None = None, seeds=SEEDS
) -> dict:
    report = common.Report(NAME, quick, threads)
    rows = dict(ROWS)
    if quick:
        seeds, rows = seeds[:1], {k: ROWS[k] for k in ("ft", "salun", "rbm")}
    scenarios = scenarios or SCENARIOS
    ratios, train_ratios = [], []
    for name in scenarios:
        per_seed = {seed: run_seed(name, seed, rows) for seed in seeds}
        summary = summarize(per_seed, ["golden", "original", *rows])
        report.details[name] = {"summary": summary, "seeds": per_seed}
        ratios += [r["time_ratio"][label] for r in per_seed.values() for label in rows]
        train_ratios += [r["train_time_ratio"][label] for r in per_seed.values() for label in rows]
        report.tables.append(
            {"title": f"{name} (mean +- std over {len(seeds)} scenario seeds)", "markdown": table_of(summary)}
        )
        if name == "digits-class":
            best = min(summary[label]["gap/average"][0] for label in rows)
            report.targets.append(
                common.target(
                    "digits-class: the best method's average gap to golden",
                    "min over methods of the mean gap/average (UA, RA, TA, MIA-efficacy)",
                    best,
                    0.02,
                )
            )
    report.targets.append(
        common.target(
            "unlearning time / retraining time",
            "median over methods and seeds of the unlearn() wall time (data preparation, pre-passes and "
            f"train()) over golden's training time; train() alone: {statistics.median(train_ratios):.3f}",
            statistics.median(ratios),
            0.10,
        )
    )
    report.notes = [
        "Each method runs with the scenario's unlearning_defaults (digits-random10: lr 1e-3, 50 steps, batch 32, "
        "stopping heldout_pause; digits-class: the same without stopping) but without influence removal; mask / "
        "rbm reset mask_ratio=0.01 of the weights, then fine-tune on the retain set (ft). ieu's rows were measured "
        "with ieu_noise_every=1 (the default before 2026-12-02).",
        "Retraining time is golden's training time in the same build (30 epochs over the retain images).",
    ]
    return report.write()


if __name__ == "__main__":
    common.cli(run, scenarios=True)
