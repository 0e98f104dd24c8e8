"""A small hyperparameter sweep for ``dr`` and ``ieu`` on the fastest scenario(s), scored against the quality
targets of ``benchmarks/quality.py``:

* forget accuracy (token accuracy for LMs) within 2 points of the golden model's;
* MIA AUC within 0.05 of the golden model's;
* retain accuracy (token accuracy) within 2 points of the original's;
* RCD ratio to golden >= 0.8.

Search: greedy coordinate descent from the scenario's ``unlearning_defaults`` (plus the library defaults):
for each axis in turn (``forget_loss_cap`` / ``dr_alpha``, ``learning_rate``, ``max_steps``, ``ieu_decay``,
``ieu_noise_std``) try its values with the others fixed, keep the best, and go on; a second pass when the first
changed something (``--passes``). Score: the number of targets met, then the smallest total shortfall (each
miss in units of its tolerance). Writes ``results/sweep.json`` with every trial and the recommended settings.

    python -m benchmarks.sweep [--scenarios authors-qa] [--methods dr,ieu] [--quick]
"""

from __future__ import annotations

import time
from typing import Any

from . import common, quality

NAME = "sweep"


def axes_for(method: str, defaults: dict, quick: bool) -> dict[str, list[Any]]:
    """Values per axis. The ascent cap is swept as ``forget_loss_cap_from_eval``, a multiple of the original
    model's mean loss on held-out data (where a golden model's forget loss sits; no golden model needed);
    ``None`` keeps the absolute ``forget_loss_cap``."""
    lr = defaults.get("learning_rate", 1e-4)
    steps = defaults.get("max_steps", 50)
    axes: dict[str, list[Any]] = {}
    if method == "ieu":
        axes["forget_loss_cap_from_eval"] = [None, 0.5, 0.6, 0.75, 1.0, 1.5]
    if method == "dr":
        axes["dr_alpha"] = [0.1, 0.25, 0.5, 1.0]
    axes["learning_rate"] = [lr / 2, lr, lr * 2]
    axes["max_steps"] = [max(5, steps // 2), steps, steps * 2]
    if method == "ieu":
        axes["ieu_decay"] = [0.0, 1.0, 2.5, 5.0, 10.0]
        axes["ieu_noise_std"] = [0.0, 1e-4, 1e-3, 3e-3]
    if quick:
        axes = {k: v for k, v in list(axes.items())[:3]}
    return axes


def score(row: dict, golden: dict, original: dict, keys: dict) -> tuple[int, float, dict]:
    """``(targets met, total shortfall, per-target shortfall)`` of one model's metrics."""
    checks = {
        "forget": (abs(row[keys["forget"]] - golden[keys["forget"]]) - 0.02) / 0.02,
        "retain": (original[keys["retain"]] - row[keys["retain"]] - 0.02) / 0.02,
        "rcd": (0.8 - (row.get("rcd/ratio_to_golden") or 0.0)) / 0.8,
    }
    if "mia/auc" in row and "mia/auc" in golden:
        checks["mia"] = (abs(row["mia/auc"] - golden["mia/auc"]) - 0.05) / 0.05
    short = {k: max(0.0, v) for k, v in checks.items()}
    met = sum(v <= 0 for v in checks.values())
    return met, sum(short.values()), short


def rank(trial: dict) -> tuple:
    """Sort key of a trial: keeping retain utility comes first (decay and ascent that wreck the model also slow
    relearning and can meet the other targets: RCD rewards damage), then targets met, then total shortfall."""
    return (trial["shortfalls"]["retain"] == 0, trial["met"], -trial["shortfall"])


def sweep_scenario(
    name: str, methods: list[str], quick: bool, passes: int, seed: int = 0, only_axes: list[str] | None = None
) -> dict:
    from hf_unlearn.pipeline import evaluate_models

    job, run_args = quality.scenario_job(name, seed)
    keys = quality.keys_of(job.task)
    refs, _ = evaluate_models(
        job, {"original": job.original, "golden": job.golden}, run_args, seed, progress=False
    )
    golden, original = refs["golden"], refs["original"]
    trials: list[dict] = []
    cache: dict[tuple, dict] = {}

    def trial(method: str, settings: dict) -> dict:
        key = (method, tuple(sorted(settings.items())))
        if key in cache:
            return cache[key]
        start = time.perf_counter()
        overrides = {k: v for k, v in settings.items() if job.defaults.get(k) != v}
        model, seconds, _ = quality.unlearn_once(
            job, run_args, method, overrides, seed, tag=f"sweep_{method}"
        )
        metrics, _ = evaluate_models(job, {method: model}, run_args, seed, progress=False)
        row = metrics[method]
        met, shortfall, short = score(row, golden, original, keys)
        record = {
            "method": method,
            "settings": dict(settings),
            "overrides": overrides,
            "met": met,
            "of": len(short),
            "shortfall": shortfall,
            "shortfalls": short,
            "metrics": {
                k: row.get(k)
                for k in (
                    keys["forget"],
                    keys["retain"],
                    "forget/loss",
                    "mia/auc",
                    "rcd/steps",
                    "rcd/ratio_to_golden",
                )
            },
            "unlearn_seconds": seconds,
            "trial_seconds": time.perf_counter() - start,
        }
        cache[key] = record
        trials.append(record)
        print(
            f"[{name}] {method} {overrides}: met {met}/{len(short)} shortfall {shortfall:.2f} "
            f"forget {row[keys['forget']]:.3f} retain {row[keys['retain']]:.3f} mia {row.get('mia/auc', float('nan')):.3f} "
            f"rcd {row.get('rcd/ratio_to_golden')}",
            flush=True,
        )
        return record

    def better(a: dict, b: dict) -> bool:
        return rank(a) > rank(b)

    best: dict[str, dict] = {}
    for method in methods:
        from hf_unlearn import UnlearningConfig

        lib = UnlearningConfig(output_dir=str(common.WORK_DIR / NAME / "defaults"), report_to=[])
        own = ("dr_alpha",) if method == "dr" else ("forget_loss_cap_from_eval", "ieu_decay", "ieu_noise_std")
        settings = {k: getattr(lib, k) for k in own}
        settings.update(job.defaults)
        current = trial(method, settings)
        axes = axes_for(method, settings, quick)
        if only_axes:
            axes = {k: v for k, v in axes.items() if k in only_axes}
        for _ in range(passes):
            changed = False
            for axis, values in axes.items():
                for value in values:
                    if value == current["settings"].get(axis):
                        continue
                    candidate = trial(method, {**current["settings"], axis: value})
                    if better(candidate, current):
                        current, changed = candidate, True
            if not changed:
                break
        best[method] = current
    return {
        "scenario": name,
        "task": job.task,
        "defaults": job.defaults,
        "golden": {
            k: golden.get(k) for k in (keys["forget"], keys["retain"], "forget/loss", "mia/auc", "rcd/steps")
        },
        "original": {
            k: original.get(k)
            for k in (keys["forget"], keys["retain"], "forget/loss", "test/loss", "mia/auc")
        },
        "best": best,
        "trials": trials,
    }


def recommendations(result: dict) -> list[str]:
    """Readable recommendations from one scenario's sweep."""
    return [
        f"{result['scenario']} / {method}: best {rec['met']}/{rec['of']} targets with {rec['settings']} "
        f"(changed from the defaults: {rec['overrides'] or 'nothing'})."
        for method, rec in result["best"].items()
    ]


def run(
    quick: bool = False,
    threads: int | None = None,
    scenarios: list[str] | None = None,
    methods: list[str] | None = None,
    passes: int = 2,
    result_name: str = NAME,
    only_axes: list[str] | None = None,
) -> dict:
    report = common.Report(result_name, quick, threads)
    methods = methods or ["dr", "ieu"]
    measured = report.scenarios(
        scenarios or quality.default_scenarios(quick=True),
        lambda name: sweep_scenario(name, methods, quick, 1 if quick else passes, only_axes=only_axes),
    )
    for name, result in measured:
        for method, rec in result["best"].items():
            report.targets.append(
                common.target(
                    f"{name}: best {method} meets the quality targets",
                    f"targets met by the best setting found: {rec['overrides'] or 'scenario defaults'}",
                    rec["met"],
                    rec["of"],
                    op=">=",
                    unit="targets",
                    settings=rec["settings"],
                    metrics=rec["metrics"],
                )
            )
        report.notes += recommendations(result)
        rows = [
            {
                "trial": f"{t['method']} {t['overrides'] or '(defaults)'}",
                "met": f"{t['met']}/{t['of']}",
                "shortfall": t["shortfall"],
                **{k.split("/")[-1] if "rcd" not in k else k: v for k, v in t["metrics"].items()},
                "s": t["unlearn_seconds"],
            }
            for t in result["trials"]
        ]
        cols = [c for c in rows[0] if c != "trial"]
        ref = ", ".join(f"{k} {v:.3f}" for k, v in result["golden"].items() if isinstance(v, float))
        report.tables.append(
            {
                "title": f"{name}: every trial (golden: {ref})",
                "markdown": common.markdown_table(rows, cols, "trial"),
            }
        )
    return report.write()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--scenarios")
    parser.add_argument("--methods")
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--name", default=NAME, help="result file name (results/<name>.json)")
    parser.add_argument("--axes", help="comma-separated axes to sweep (default: all)")
    cli = parser.parse_args()
    print(
        run(
            cli.quick,
            cli.threads,
            cli.scenarios.split(",") if cli.scenarios else None,
            cli.methods.split(",") if cli.methods else None,
            cli.passes,
            cli.name,
            cli.axes.split(",") if cli.axes else None,
        )
    )
