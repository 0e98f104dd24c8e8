"""``stopping``: held-out-referenced stopping on every built-in scenario, with the library's default
hyperparameters (no per-task tuning), scored against the golden model (which never steers the run).

For ``dr``, ``ieu``, ``grad_diff`` and ``npo``, with each scenario's defaults (held-out-referenced stopping and
influence removal, ``"<method> + stopping + removal"``) and without either (the plain method), over 3 unlearning seeds: how
many of the four quality targets of ``benchmarks/quality.py`` each meets (forget accuracy / token accuracy
within 2 points of golden's, MIA AUC within 0.05 of golden's, retain within 2 points of the original's, RCD
ratio to golden >= 0.8), the median over seeds; the check's share of the unlearning time; and the golden-free
RCD ratio (``rcd/ratio_to_heldout``) beside ``rcd/ratio_to_golden`` with their rank agreement across methods.

Targets: ``dr`` and ``ieu`` with the defaults meet at least 3 of 4 on every scenario (median over seeds); the
checks cost at most 10% of the unlearning time at the default ``stopping_eval_steps``.

The seeds are the unlearning seeds (batch order, IEU noise, random labels) on the seed-0 scenario build; the
relearning protocol is each scenario's, with relearning seed 0.
"""

from __future__ import annotations

import statistics
from typing import Any

from . import common, quality

NAME = "stopping"
#: every built-in scenario whose defaults stop by the held-out rule (digits-class does not: its held-out reference
#: would be the forgotten class's test images)
SCENARIOS = ["authors-qa", "news-gpt2", "polarity-minilm", "tofu-llama", "digits-random10", "digits-random50"]
METHODS = ["dr", "ieu", "grad_diff", "npo"]
SEEDS = (0, 1, 2)
#: The arm "with": each scenario's defaults as they are (held-out-referenced stopping and influence removal,
#: neither needing a golden model); "without": the same run without either (the plain method).
STOPPING: dict[str, Any] = {}
ARMS = {"without": quality.PLAIN, "with": STOPPING}
WITH_LABEL = "+ stopping + removal"


def label_of(method: str, arm: str) -> str:
    return method if arm == "without" else f"{method} {WITH_LABEL}"


def run_seed(job, run_args, methods: list[str], seed: int) -> dict:
    """Every method in both arms for one unlearning seed: metrics (incl. RCD), steps, timings, records."""
    from hf_unlearn.pipeline import evaluate_models

    models: dict[str, Any] = {"original": job.original, "golden": job.golden}
    runs: dict[str, dict] = {}
    for method in methods:
        for arm, overrides in ARMS.items():
            label = label_of(method, arm)
            run = quality.unlearn_run(job, run_args, method, overrides, seed, tag=f"{method}_{arm}")
            models[label] = run.model
            record = run.stopping or {}
            runs[label] = {
                "steps": run.steps,
                "seconds": run.seconds,
                "train_seconds": run.train_seconds,
                "check_seconds": record.get("check_seconds", 0.0),
                "checks": len(record.get("history", [])),
                "paused_checks": sum(e.get("forget_active") is False for e in record.get("history", [])),
                "reason": record.get("reason", ""),
            }
    metrics, _ = evaluate_models(job, models, run_args, seed=0, progress=False)
    return {"metrics": metrics, "runs": runs}


def targets_met(result: dict, name: str, label: str, task: str) -> list[dict]:
    m = result["metrics"]
    return quality.method_targets(name, label, m[label], m["golden"], m["original"], quality.keys_of(task))


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman's rank correlation (None when either side is constant or missing)."""
    from scipy.stats import spearmanr

    if len(a) < 3 or None in a or None in b or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def summarize(name: str, task: str, seeds: dict[int, dict], methods: list[str]) -> dict:
    """Per (method, arm): targets met per seed and their median, the medians of the headline numbers, the
    check overhead; per arm: the rank agreement of the two RCD ratios across methods."""
    keys = quality.keys_of(task)
    rows, agreement = {}, {}
    for method in methods:
        for arm in ARMS:
            label = label_of(method, arm)
            met = [sum(t["pass"] for t in targets_met(r, name, label, task)) for r in seeds.values()]
            metric = [r["metrics"][label] for r in seeds.values()]
            run = [r["runs"][label] for r in seeds.values()]

            def med(key: str, values: list[dict] = metric) -> float | None:
                found = [v[key] for v in values if v.get(key) is not None]
                return statistics.median(found) if found else None

            overhead = [r["check_seconds"] / max(r["train_seconds"] - r["check_seconds"], 1e-9) for r in run]
            rows[label] = {
                "targets_met": met,
                "targets_met_median": statistics.median(met),
                "of": len(targets_met(next(iter(seeds.values())), name, label, task)),
                "forget": med(keys["forget"]),
                "mia/auc": med("mia/auc"),
                "retain": med(keys["retain"]),
                "rcd/ratio_to_golden": med("rcd/ratio_to_golden"),
                "rcd/ratio_to_heldout": med("rcd/ratio_to_heldout"),
                "privleak": med("privleak"),
                "steps": med("steps", run),
                "paused_checks": med("paused_checks", run),
                "checks": med("checks", run),
                "check_overhead": statistics.median(overhead),
            }
    for arm in ARMS:
        labels = [label_of(m, arm) for m in methods]
        agreement[arm] = spearman(
            [rows[lbl]["rcd/ratio_to_golden"] for lbl in labels],
            [rows[lbl]["rcd/ratio_to_heldout"] for lbl in labels],
        )
    golden = {
        k: statistics.median(r["metrics"]["golden"][v] for r in seeds.values()) for k, v in keys.items()
    }
    golden["mia/auc"] = next(iter(seeds.values()))["metrics"]["golden"].get("mia/auc")
    return {"rows": rows, "rcd_rank_agreement": agreement, "golden": golden}


COLUMNS = [
    "targets_met_median",
    "forget",
    "mia/auc",
    "retain",
    "rcd/ratio_to_golden",
    "rcd/ratio_to_heldout",
    "privleak",
    "steps",
    "paused_checks",
    "check_overhead",
]


def table_of(summary: dict) -> str:
    rows = [{"model": label, **row} for label, row in summary["rows"].items()]
    return common.markdown_table(rows, COLUMNS, first="model")


def scenario_targets(name: str, summary: dict) -> list[dict]:
    out = []
    for method in ("dr", "ieu"):
        row = summary["rows"][label_of(method, "with")]
        out.append(
            common.target(
                f"{name}: {method} {WITH_LABEL} meets >= 3 of {row['of']} quality targets",
                f"median over seeds of the targets met (per seed {row['targets_met']}; without either "
                f"{summary['rows'][method]['targets_met']})",
                row["targets_met_median"],
                3,
                op=">=",
                unit="targets",
            )
        )
    overheads = [r["check_overhead"] for label, r in summary["rows"].items() if label.endswith(WITH_LABEL)]
    out.append(
        common.target(
            f"{name}: stopping checks' share of the unlearning time",
            "check seconds / (train() seconds - check seconds), median over methods of the seed-median",
            statistics.median(overheads),
            0.10,
        )
    )
    return out


def run(
    quick: bool = False,
    threads: int | None = None,
    scenarios: list[str] | None = None,
    seeds: tuple[int, ...] = SEEDS,
) -> dict:
    report = common.Report(NAME, quick, threads)
    if quick:
        scenarios, seeds = scenarios or ["testing:qa"], seeds[:1]
    scenarios = scenarios or [n for n in SCENARIOS if quality.scenario_cached(n)] or ["testing:qa"]
    for name, (job, run_args) in report.scenarios(scenarios, quality.scenario_job, keep=False):
        per_seed = {seed: run_seed(job, run_args, METHODS, seed) for seed in seeds}
        summary = summarize(name, job.task, per_seed, METHODS)
        report.details[name] = {
            "defaults": job.defaults,
            "stopping": STOPPING,
            "summary": summary,
            "seeds": per_seed,
        }
        report.targets += scenario_targets(name, summary)
        golden = ", ".join(f"{k} {v:.3f}" for k, v in summary["golden"].items() if v is not None)
        agreement = ", ".join(
            f"{arm} {'n/a' if v is None else f'{v:+.2f}'}" for arm, v in summary["rcd_rank_agreement"].items()
        )
        report.tables.append(
            {
                "title": f"{name} (golden: {golden}; RCD ratio rank agreement golden vs held-out: {agreement})",
                "markdown": table_of(summary),
            }
        )
        settings = ", ".join(f"{k}={v}" for k, v in {**job.defaults, **STOPPING}.items())
        report.notes.append(f"{name}: {WITH_LABEL} = {settings}; seeds {list(seeds)}.")
    report.notes.append(
        "targets_met_median: median over seeds of the four quality targets met (forget within 2 points of "
        "golden, MIA AUC within 0.05, retain within 2 points of the original, RCD ratio >= 0.8). The golden "
        "model only scores; the rule sees the forget set and the scenario's test split."
    )
    return report.write()


if __name__ == "__main__":
    common.cli(run, scenarios=True)
