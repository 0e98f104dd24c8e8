"""``digits_ddpm``: the ``digits-ddpm`` quickstart (issue 31) over several seeds. Each seed builds the scenario
anew (original and golden DDPMs, the judge) with that seed and unlearns the digit 3 with every default method
(``hf_unlearn.diffusion.quickstart.DEFAULT_DIFFUSION_METHODS``) at the scenario's settings; the table is the
median over seeds with (min-max) of the quickstart's columns: forget and kept-class generation accuracy,
Fréchet distance on the judge's features, MIA AUC, RCD ratio to golden and unlearning time over retraining time.
"""

from __future__ import annotations

import statistics
from typing import Any

from . import common
from .paths import RESULTS_DIR, WORK_DIR
from .result_files import target

NAME = "digits_ddpm"
COLUMNS = {
    "forget/generation_accuracy": "forget gen. acc.",
    "retain/generation_accuracy": "kept gen. acc.",
    "quality/frechet_distance": "Fréchet (judge)",
    "mia/auc": "MIA AUC",
    "rcd/ratio_to_golden": "RCD ratio",
    "time/ratio_to_retraining": "time / retraining",
}


def measure(seed: int, quick: bool) -> dict:
    """One seed of the quickstart in a fresh folder; returns its metrics and timings."""
    from hf_unlearn.diffusion.quickstart import DEFAULT_DIFFUSION_METHODS, diffusion_quickstart

    methods = ["ft", "esd"] if quick else list(DEFAULT_DIFFUSION_METHODS)
    out = diffusion_quickstart(
        str(WORK_DIR / NAME / f"seed{seed}"), methods=methods, seed=seed, overwrite=True, progress=False
    )
    return {"metrics": out["metrics"], "seconds": out["seconds"]}


def seed_rows(per_seed: dict[int, dict]) -> list[dict]:
    """Per model: each column's median over seeds, with (min-max) when the seeds differ."""
    first = next(iter(per_seed.values()))["metrics"]
    rows = []
    for name in first:
        row: dict[str, Any] = {"model": name}
        for key, label in COLUMNS.items():
            values = [r["metrics"][name].get(key) for r in per_seed.values()]
            row[label] = _spread([v for v in values if isinstance(v, (int, float))])
        rows.append(row)
    return rows


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    mid, low, high = statistics.median(values), min(values), max(values)
    return f"{mid:.3f}" if low == high else f"{mid:.3f} ({low:.3f}-{high:.3f})"


#: issue 31's cost target: unlearning takes at most this share of retraining (the golden model's training)
TIME_GOAL = 0.10


def time_targets(per_seed: dict) -> list[dict]:
    """Per method: the median over seeds of its unlearning seconds over the golden model's training seconds."""
    first = next(iter(per_seed.values()))["metrics"]
    rows = []
    for name in first:
        values = [r["metrics"][name].get("time/ratio_to_retraining") for r in per_seed.values()]
        values = [v for v in values if isinstance(v, (int, float))]
        if values:
            rows.append(
                target(
                    f"{name}: unlearning / retraining time",
                    "median over seeds of the method's train() seconds over the golden DDPM's training seconds",
                    statistics.median(values),
                    TIME_GOAL,
                    per_seed=values,
                )
            )
    return rows


def fill(report: common.Report, per_seed: dict) -> None:
    """The report's targets, table, notes and details from the seeds measured so far."""
    done = ", ".join(map(str, per_seed))
    report.details = {"seeds": list(per_seed), "per_seed": per_seed}
    report.targets = time_targets(per_seed)
    report.tables = [
        {
            "title": f"digits-ddpm (forget the digit 3), median (min-max) over seeds {done}",
            "markdown": common.markdown_table(seed_rows(per_seed), list(COLUMNS.values())),
        }
    ]
    report.notes = [
        "Each seed rebuilds the scenario (original, golden, judge) with that seed; 50 DDIM samples of 25 steps "
        "per class; RCD: relearning steps to the original's forget denoising loss x 1.1, over golden's.",
        "time / retraining: the method's unlearning seconds (train(), 100 steps, which includes the Trainer's "
        "end-of-training garbage collection) over the golden model's training seconds, same process and threads; "
        "ratios taken while other jobs share the cores spread (the load at the start is in the header).",
    ]


def run(quick: bool = False, threads: int | None = None, seeds: list[int] | None = None) -> dict:
    """Every seed of ``seeds`` (default ``[0]``) in turn; the result file is rewritten after each."""
    report = common.Report(NAME, quick, threads)
    per_seed: dict[int, dict] = {}
    for seed in seeds or [0]:
        per_seed[seed] = measure(seed, quick)
        fill(report, per_seed)
        written = report.write()
    return written


def rederive() -> None:
    """Rewrite the targets, table and notes of ``results/digits_ddpm.json`` from its stored seeds (machine, date
    and wall time kept)."""
    import json

    path = RESULTS_DIR / f"{NAME}.json"
    payload = json.loads(path.read_text())
    per_seed = payload["details"]["per_seed"]
    report = common.Report(NAME, payload["quick"], payload["machine"]["torch_threads"])
    fill(report, per_seed)
    payload.update(targets=report.targets, tables=report.tables, notes=report.notes)
    payload["passed"] = sum(row["pass"] for row in report.targets)
    payload["total"] = len(report.targets)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def main() -> None:
    """``python -m benchmarks.digits_ddpm [--quick] [--threads N] [--seeds 0,1,2]``."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument("--rederive", action="store_true", help="rewrite the result from its stored seeds")
    args = parser.parse_args()
    if args.rederive:
        return rederive()
    print(run(args.quick, args.threads, [int(s) for s in args.seeds.split(",")]))


if __name__ == "__main__":
    main()
