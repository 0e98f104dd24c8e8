"""Target 3 (``cost_vs_retrain``): wall time of unlearning with ``ieu`` and ``dr`` over the wall time of training
the golden model from scratch (what unlearning saves). Target ``<= 0.10`` per scenario, at the settings whose
quality ``benchmarks/quality.py`` reports (scenario defaults plus ``quality.tuned_settings``).

The unlearning time is the whole ``hf_unlearn.pipeline.unlearn`` call (trainer set-up, tokenization, training).
The baseline is measured in the same process: the scenario's own recipe (``hf_unlearn.scenarios.base.train_model``)
retraining the golden model from its initial weights on the retain set, interleaved with the unlearning runs;
the ``train_seconds["golden"]`` recorded when the scenario was built is reported beside it.
"""

from __future__ import annotations

from . import common, quality

NAME = "cost_vs_retrain"


def golden_retrain_seconds(job, name: str, seed: int = 0) -> float:
    """Retrain the golden model from scratch with the scenario's recipe; returns the training wall time."""
    if name.startswith("testing:"):
        _, init, rows, collator, spec = quality.task_parts(name, seed)
        return quality.train_tiny(init, rows["retain"], collator, spec[3], spec[4], seed=seed)
    from hf_unlearn.data import build_preparer
    from hf_unlearn.scenarios import get_builder
    from hf_unlearn.scenarios.base import train_model

    builder = get_builder(name)
    model = builder.init_model(job.tokenizer, seed)
    preparer, collator = build_preparer(model, job.tokenizer)
    rows = preparer(job.retain, "retain")
    return train_model(model, rows, collator, builder.recipe, seed)


def measure(name: str, repeats: int, golden_repeats: int, seed: int = 0) -> dict:
    job, run_args = quality.scenario_job(name, seed)
    tuned = quality.tuned_settings(name, job)
    arms = {m: tuned.get(m, {}) for m in ("ieu", "dr")}
    times: dict[str, list[float]] = {m: [] for m in arms}
    train_only: dict[str, list[float]] = {m: [] for m in arms}
    golden: list[float] = []
    for r in range(repeats):
        if golden_repeats and r in _spread(golden_repeats, repeats):
            golden.append(golden_retrain_seconds(job, name, seed))
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]
        for method in order:
            _, seconds, train_seconds = quality.unlearn_once(job, run_args, method, arms[method], seed)
            times[method].append(seconds)
            train_only[method].append(train_seconds)
    cached = float(job.info["train_seconds"]["golden"])
    baseline = common.median(golden) if golden else cached
    out = {
        "scenario": name,
        "sizes": job.info.get("sizes"),
        "settings": {m: {**job.defaults, **o} for m, o in arms.items()},
        "golden_retrain_s": golden,
        "golden_cached_train_s": cached,
        "baseline": "retrained in this process" if golden else "cached train_seconds['golden']",
        "baseline_s": baseline,
        "unlearn_s": times,
        "unlearn_train_only_s": train_only,
        "ratios": {},
    }
    for method, t in times.items():
        ratios = [x / baseline for x in t]
        out["ratios"][method] = {
            "ratio": common.median(ratios),
            "per_repeat": ratios,
            "ratio_to_cached": common.median(t) / cached,
        }
    return out


def breakeven_retain_size(n_retain: int, ratio: float, target: float = 0.10) -> int:
    """Retain-set size at which retraining (linear in it) costs ``1 / target`` times the unlearning run."""
    return int(round(n_retain * ratio / target))


def _spread(k: int, n: int) -> set[int]:
    """``k`` repeat indices spread over ``range(n)`` (one: the middle one)."""
    if k >= n:
        return set(range(n))
    if k == 1:
        return {n // 2}
    return {round(i * (n - 1) / (k - 1)) for i in range(k)}


def run(quick: bool = False, threads: int | None = None, scenarios: list[str] | None = None) -> dict:
    report = common.Report(NAME, quick, threads)
    rows = []
    measured = report.scenarios(
        scenarios or quality.default_scenarios(quick), lambda name: measure(name, repeats=5, golden_repeats=1)
    )
    for name, result in measured:
        for method, r in result["ratios"].items():
            report.targets.append(
                common.target(
                    f"{name}: {method} / golden retrain",
                    f"unlearning wall time / golden training from scratch ({result['baseline']})",
                    r["ratio"],
                    0.10,
                    repeats_s=result["unlearn_s"][method],
                    baseline_s=result["golden_retrain_s"] or [result["golden_cached_train_s"]],
                    ratio_to_cached=r["ratio_to_cached"],
                )
            )
            rows.append(
                {
                    "case": f"{name} / {method}",
                    "unlearn median (s)": common.median(result["unlearn_s"][method]),
                    "train() only (s)": common.median(result["unlearn_train_only_s"][method]),
                    "golden retrain (s)": result["baseline_s"],
                    "golden at build (s)": result["golden_cached_train_s"],
                    "ratio": r["ratio"],
                    "ratio to build-time golden": r["ratio_to_cached"],
                    "n_retain": result["sizes"]["n_retain"],
                    "n_retain for 0.10": breakeven_retain_size(result["sizes"]["n_retain"], r["ratio"]),
                }
            )
    cols = [
        "unlearn median (s)",
        "train() only (s)",
        "golden retrain (s)",
        "golden at build (s)",
        "ratio",
        "ratio to build-time golden",
        "n_retain",
        "n_retain for 0.10",
    ]
    report.tables.append(
        {"title": "Unlearning vs retraining", "markdown": common.markdown_table(rows, cols, first="case")}
    )
    report.notes.append(
        "Unlearning time = the whole pipeline.unlearn call (trainer set-up + tokenization + train()); 5 repeats "
        "per method, ieu and dr alternating; the golden model retrained once in the same process, between the "
        "repeats (the build-time figure, measured when the scenario was built under another load, is shown "
        "beside it). The ratio is bounded below by the work done: (max_steps x 2 x batch) / (epochs x n_retain) "
        "example-steps. 'n_retain for 0.10' extrapolates: retraining with the scenario's fixed-epoch recipe costs "
        "time linear in the retain-set size while unlearning (a fixed number of steps) does not depend on it, so "
        "the ratio reaches 0.10 at n_retain x ratio / 0.10 examples."
    )
    return report.write()


if __name__ == "__main__":
    common.cli(run, scenarios=True)
