"""``tofu_seeds``: how much TOFU's headline numbers move with the unlearning seed, for the three compared
methods that met the most ``tofu`` targets (wga, undial, satimp) and for ``npo`` and ``ieu`` beside them.

On the seed-0 ``tofu-llama`` build, each method runs with unlearning seeds 0, 1 and 2 (batch order, random
draws) at the scenario's defaults; every model is scored with generation, as in ``tofu``. Reported: mean and
std over the seeds of forget ROUGE-L, forget quality, model utility, PrivLeak and the RCD ratio, and how many
of ``tofu``'s four targets each seed meets.
"""

from __future__ import annotations

import statistics
from typing import Any

from . import common, quality, tofu

NAME = "tofu_seeds"
METHODS = ["wga", "undial", "satimp", "npo", "ieu"]
SEEDS = (0, 1, 2)
KEYS = [
    "forget/rouge_l_recall",
    "forget_quality/truth_ratio_ks_pvalue",
    "utility/model_utility",
    "privleak",
    "rcd/ratio_to_golden",
]


def run(quick: bool = False, threads: int | None = None) -> dict:
    from hf_unlearn.pipeline import evaluate_models

    report = common.Report(NAME, quick, threads)
    methods, seeds = (METHODS[:1], SEEDS[:1]) if quick else (METHODS, SEEDS)
    job, run_args = quality.scenario_job(tofu.SCENARIO)
    models: dict[str, Any] = {"original": job.original, "golden": job.golden}
    for method in methods:
        for seed in seeds:
            run = quality.unlearn_run(job, run_args, method, {}, seed=seed, tag=f"{method}_{seed}")
            models[f"{method} seed {seed}"] = run.model
    metrics, _ = evaluate_models(job, models, run_args, seed=0, progress=False)  # with generation
    rows = []
    report.details = {"metrics": metrics}
    for method in methods:
        per_seed = [metrics[f"{method} seed {seed}"] for seed in seeds]
        met = []
        for seed in seeds:
            result = {
                "metrics": {k: metrics[k] for k in ("original", "golden")}
                | {method: metrics[f"{method} seed {seed}"]}
            }
            met.append(sum(t["pass"] for t in tofu.targets_of(result) if t["name"].startswith(f"{method}:")))
        row: dict[str, Any] = {"model": method, "targets_met": "/".join(map(str, met))}
        for key in KEYS:
            values = [m[key] for m in per_seed if m.get(key) is not None]
            mean = statistics.fmean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            row[key] = f"{mean:.3f} +- {std:.3f}"
        rows.append(row)
    table = common.markdown_table(rows, ["targets_met", *KEYS], first="model")
    report.tables = [
        {"title": f"{tofu.SCENARIO}, unlearning seeds {list(seeds)} (mean +- std)", "markdown": table}
    ]
    report.notes = [
        "targets_met: per seed, how many of tofu's four targets (ROUGE-L, forget quality, utility, PrivLeak)."
    ]
    return report.write()


if __name__ == "__main__":
    common.cli(run)
