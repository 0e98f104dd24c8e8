"""``robustness``: is the forgetting in the weights, or only hidden? (issue 32). On a classifier scenario
(``polarity-minilm``: mislabeled sentences, a fine-tuned pretrained MiniLM), ``tofu-llama`` and ``authors-qa``, the original, the golden model and each method at the scenario's
defaults are measured without attack and under ``quantize_8bit``, ``quantize_4bit`` and ``relearn_partial``
(``hf_unlearn.metrics.attacks``), each against the golden model under the same attack.

Reported per model and attack: the kind's primary forget metric (digits: forget accuracy; tofu-llama: forget
ROUGE-L recall of greedy answers; authors-qa: forget token accuracy, its evaluation does not generate) and ``gap_to_golden``. A method's forgetting is *undone* by an attack when its
gap under the attack exceeds its gap without it by more than ``TOLERANCE`` (for ``relearn_partial``: the gap on the
same held-out half without attack) **and** the attacked model lies on the attacked original's side of the attacked
golden model (a model that relearns *less* than golden is not "undone"). Cost: seconds of each attack (all models; golden and original attacked once)
next to the seconds of the evaluation without attacks.

Seeds (``--seeds 0,1,2``): each seed builds the scenario anew (original and golden trained with that seed) and
unlearns with it; the tables give the median over seeds with the range (min-max), and per method and attack the
number of seeds in which the forgetting was undone. The JSON keeps every seed's full result under
``details[scenario]["per_seed"]``; the file is rewritten after every seed, so a stopped run keeps what it measured,
and ``--merge`` continues from it (other scenarios and seeds kept).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import replace
from typing import Any

from . import common, quality

NAME = "robustness"
SCENARIOS = ["polarity-minilm", "tofu-llama", "authors-qa"]
METHODS = ["ft", "grad_diff", "npo", "dr", "ieu"]
ATTACKS = ["quantize_8bit", "quantize_4bit", "relearn_partial"]
TOLERANCE = 0.02  # a gap this much larger than without attack still counts as "survives"
# ... or one example of the measured set, for an accuracy (the fixture's resolution): see ``tolerance``


def primary_key(row: dict, kind: Any) -> str:
    """The primary forget metric the gaps were taken on (the first of the kind's that was measured)."""
    return next(k for k in kind.primary_forget_metrics if f"attack/none/{k}" in row)


def measure(name: str, methods: list[str], seed: int = 0) -> dict:
    from hf_unlearn.kinds import kind_for_task
    from hf_unlearn.methods import get_method
    from hf_unlearn.metrics import evaluate_unlearning
    from hf_unlearn.metrics.attacks import attack_metrics
    from hf_unlearn.pipeline.evaluation import evaluation_options, run_attacks

    job, run_args = quality.scenario_job(name, seed)
    methods = [m for m in methods if quality.applies(get_method(m), job)]
    models: dict[str, Any] = {"original": job.original, "golden": job.golden}
    unlearn_seconds = {}
    for method in methods:
        models[method], unlearn_seconds[method], _ = quality.unlearn_once(job, run_args, method, seed=seed)
    options = evaluation_options(job, run_args, seed)
    common_args = {
        "forget_dataset": job.forget,
        "test_dataset": job.test,
        "golden_model": job.golden,
        "original_model": job.original,
        "processing_class": job.tokenizer,
    }
    start = time.perf_counter()
    plain = {
        label: evaluate_unlearning(
            model, retain_dataset=job.retain if job.retain_eval is None else job.retain_eval,
            utility_datasets=job.utility or None, **common_args, **options,
        )
        for label, model in models.items()
    }  # fmt: skip
    eval_seconds = time.perf_counter() - start
    rows: dict[str, dict] = {label: {} for label in models}
    attack_seconds = {}
    generation = {k: options[k] for k in ("generation", "max_new_tokens", "attention_mask") if k in options}
    for attack in run_attacks(replace(run_args, attacks=",".join(ATTACKS)), seed):
        start = time.perf_counter()
        for label in ("golden", "original", *methods):  # golden and original first: cached for the rest
            rows[label].update(attack_metrics(models[label], [attack], **common_args, **generation))
        attack_seconds[attack.name] = time.perf_counter() - start
    kind = kind_for_task(job.task)
    key = primary_key(rows["golden"], kind)
    return {
        "scenario": name,
        "task": job.task,
        "primary_metric": key,
        "defaults": job.defaults,
        "relearn_partial": {
            "max_steps": run_args.attack_relearn_steps,
            "learning_rate": run_args.relearn_learning_rate,
            "batch_size": run_args.relearn_batch_size,
        },
        "metrics": rows,
        "unattacked": {
            label: {k: v for k, v in m.items() if k.startswith(("forget/", "golden/forget/"))}
            for label, m in plain.items()
        },
        "unlearn_seconds": unlearn_seconds,
        "eval_seconds": eval_seconds,
        "attack_seconds": attack_seconds,
        "n_models": len(models),
        "n_forget": len(job.forget),
    }


def tolerance(key: str, attack: str, n_forget: int | None) -> float:
    """How much larger a gap may be under ``attack`` and still count as "survives": ``TOLERANCE``, or for an
    example accuracy (``forget/accuracy``, classifiers) one example of the measured set (the whole forget set; for
    ``relearn_partial`` its held-out half)."""
    if n_forget and key == "forget/accuracy":
        measured = n_forget // 2 if attack == "relearn_partial" else n_forget
        return max(TOLERANCE, 1.0 / max(measured, 1) + 1e-9)
    return TOLERANCE


def undone(row: dict, attack: str, key: str, n_forget: int | None = None) -> bool | None:
    """Whether ``attack`` undoes the forgetting: the gap to golden grows by more than ``tolerance`` over the gap
    without attack, towards the original (the attacked model on the attacked original's side of golden)."""
    gap = row.get(f"attack/{attack}/gap_to_golden")
    before = row.get(f"attack/{attack}/gap_to_golden_unattacked", row.get("attack/none/gap_to_golden"))
    values = [row.get(f"attack/{attack}/{who}{key}") for who in ("", "golden/", "original/")]
    if gap is None or before is None or None in values:
        return None
    model, golden, original = values
    towards_original = (model - golden) * (original - golden) > 0
    return gap > before + tolerance(key, attack, n_forget) and towards_original


def table_of(result: dict) -> str:
    key = result["primary_metric"]
    lines = []
    for label, row in result["metrics"].items():
        line: dict[str, Any] = {"model": label}
        for attack in ["none", *ATTACKS]:
            line[f"{attack}: {key}"] = row.get(f"attack/{attack}/{key}")
            line[f"{attack}: gap"] = row.get(f"attack/{attack}/gap_to_golden")
        line["relearn_partial: gap unattacked"] = row.get("attack/relearn_partial/gap_to_golden_unattacked")
        line["undone by"] = (
            ", ".join(a for a in ATTACKS if undone(row, a, key, result.get("n_forget"))) or "-"
            if label not in ("original", "golden")
            else ""
        )
        lines.append(line)
    columns = [c for c in lines[0] if c != "model"]
    return common.markdown_table(lines, columns, first="model")


def cost_table(result: dict) -> str:
    rows = [{"attack": "none (evaluation without attacks)", "seconds": result["eval_seconds"]}]
    rows += [{"attack": name, "seconds": s} for name, s in result["attack_seconds"].items()]
    for row in rows:
        row["x evaluation"] = row["seconds"] / result["eval_seconds"]
    return common.markdown_table(rows, ["seconds", "x evaluation"], first="attack")


COLUMNS = ["none", *ATTACKS]


def _spread(values: list[float]) -> dict[str, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def seed_summary(per_seed: dict[int, dict]) -> dict:
    """Per model: the median, min and max over seeds of the primary forget metric and the gap to golden under each
    attack (``"none"``: without), and in how many seeds each attack undid the forgetting (``undone``)."""
    results = list(per_seed.values())
    key = results[0]["primary_metric"]
    summary: dict[str, dict] = {}
    for label in results[0]["metrics"]:
        rows = [r["metrics"][label] for r in results if label in r["metrics"]]
        out: dict[str, Any] = {}
        for attack in COLUMNS:
            out[f"{attack}/metric"] = _spread([row.get(f"attack/{attack}/{key}") for row in rows])
            out[f"{attack}/gap"] = _spread([row.get(f"attack/{attack}/gap_to_golden") for row in rows])
        out["relearn_partial/gap_unattacked"] = _spread(
            [row.get("attack/relearn_partial/gap_to_golden_unattacked") for row in rows]
        )
        if label not in ("original", "golden"):
            out["undone"] = {
                attack: sum(
                    bool(undone(r["metrics"][label], attack, key, r.get("n_forget"))) for r in results
                )
                for attack in ATTACKS
            }
        summary[label] = out
    return {"primary_metric": key, "seeds": sorted(per_seed), "models": summary}


def _cell(spread: dict | None) -> str:
    if spread is None:
        return "-"
    if spread["n"] == 1 or spread["min"] == spread["max"]:
        return f"{spread['median']:.3f}"
    return f"{spread['median']:.3f} ({spread['min']:.3f}-{spread['max']:.3f})"


def seed_table(summary: dict) -> str:
    """Median (min-max) over seeds of the primary forget metric and the gap per attack, and the seeds undone."""
    n = len(summary["seeds"])
    lines = []
    for label, row in summary["models"].items():
        line: dict[str, Any] = {"model": label}
        for attack in COLUMNS:
            line[f"{attack}: metric"] = _cell(row[f"{attack}/metric"])
            line[f"{attack}: gap"] = _cell(row[f"{attack}/gap"])
        line["relearn_partial: gap unattacked"] = _cell(row["relearn_partial/gap_unattacked"])
        undone_by = row.get("undone")
        line[f"undone by (of {n} seeds)"] = (
            "" if undone_by is None else ", ".join(f"{a} {c}" for a, c in undone_by.items() if c) or "-"
        )
        lines.append(line)
    return common.markdown_table(lines, [c for c in lines[0] if c != "model"], first="model")


def seed_cost_table(per_seed: dict[int, dict]) -> str:
    """Median seconds over seeds of each attack (all models) next to the evaluation without attacks."""
    results = list(per_seed.values())
    evaluation = statistics.median(r["eval_seconds"] for r in results)
    rows = [{"attack": "none (evaluation without attacks)", "seconds": evaluation}]
    rows += [
        {"attack": name, "seconds": statistics.median(r["attack_seconds"][name] for r in results)}
        for name in results[0]["attack_seconds"]
    ]
    for row in rows:
        row["x evaluation"] = row["seconds"] / evaluation
    return common.markdown_table(rows, ["seconds", "x evaluation"], first="attack")


def run(
    quick: bool = False,
    threads: int | None = None,
    scenarios: list[str] | None = None,
    seeds: list[int] | None = None,
    merge: bool = False,
) -> dict:
    """Measure ``scenarios`` (default ``SCENARIOS``) with each of ``seeds`` (default ``[0]``); the result file is
    rewritten after every seed. ``merge``: keep the seeds and scenarios of the existing result file that this run
    does not measure (a run in parts)."""
    report = common.Report(NAME, quick, threads)
    methods = ["ft", "ieu"] if quick else METHODS
    seeds = seeds or [0]
    previous = previous_seeds() if merge else {}
    tables = {name: _scenario_tables(name, seed_summary(r), r) for name, r in previous.items()}
    for name, per_seed in previous.items():
        report.details[name] = {
            "seeds": sorted(per_seed),
            "summary": seed_summary(per_seed),
            "per_seed": per_seed,
        }
    for name in scenarios or SCENARIOS:
        per_seed = {s: r for s, r in previous.get(name, {}).items() if s not in seeds}
        for seed in seeds:
            for _, result in report.scenarios([name], lambda n, s=seed: measure(n, methods, s), keep=False):
                per_seed[seed] = result
            if not per_seed:
                break  # skipped: the note says why
            per_seed = dict(sorted(per_seed.items()))
            summary = seed_summary(per_seed)
            report.details[name] = {"seeds": sorted(per_seed), "summary": summary, "per_seed": per_seed}
            tables[name] = _scenario_tables(name, summary, per_seed)
            report.tables = [t for ts in tables.values() for t in ts]
            report.notes = _notes()
            report.write()
    report.tables, report.notes = [t for ts in tables.values() for t in ts], _notes()
    return report.write()


def previous_seeds() -> dict[str, dict[int, dict]]:
    """The per-seed results of every scenario in the existing ``results/robustness.json`` (none without one)."""
    path = common.RESULTS_DIR / f"{NAME}.json"
    if not path.exists():
        return {}
    details = json.loads(path.read_text()).get("details", {})
    return {
        name: {int(seed): result for seed, result in entry["per_seed"].items()}
        for name, entry in details.items()
        if isinstance(entry, dict) and "per_seed" in entry
    }


def _scenario_tables(name: str, summary: dict, per_seed: dict[int, dict]) -> list[dict]:
    seeds = ", ".join(map(str, summary["seeds"]))
    n_models = next(iter(per_seed.values()))["n_models"]
    return [
        {
            "title": f"{name}: {summary['primary_metric']} and gap to golden under each attack, median "
            f"(min-max) over seeds {seeds}",
            "markdown": seed_table(summary),
        },
        {
            "title": f"{name}: seconds per attack ({n_models} models), median over seeds {seeds}, vs the "
            "evaluation without attacks",
            "markdown": seed_cost_table(per_seed),
        },
    ]


def _notes() -> list[str]:
    return [
        "Seeds (in each table's title): each seed trains the scenario's original and golden model anew and "
        "unlearns and attacks with that seed; cells are the median over seeds with (min-max). 'seconds' at the "
        "top is the last run's wall time (a run with --merge adds to an earlier one's scenarios and seeds).",
        f"A method's forgetting is 'undone by' an attack in a seed when its gap to golden under the attack exceeds "
        f"its gap without it by more than the tolerance (relearn_partial: the gap on the same held-out half "
        f"without attack) and the attacked model lies on the attacked original's side of the attacked golden "
        f"model. Tolerance: {TOLERANCE}, or for a classifier's forget/accuracy one example of the measured set (polarity-minilm: "
        "1/16 of the forget set, 1/8 of relearn_partial's held-out half), the fixture's resolution.",
        "relearn_partial: the run's RCD learning rate and batch size (the scenario's), 25 steps on half the forget "
        "set (people kept together), measured on the other half. Evaluation without attacks: evaluate_unlearning "
        "of every model, without RCD.",
    ]


def main() -> None:
    """``python -m benchmarks.robustness [--quick] [--threads N] [--scenarios A,B] [--seeds 0,1,2]``."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int)
    parser.add_argument(
        "--scenarios", help=f"comma-separated scenario names (default: {','.join(SCENARIOS)})"
    )
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    parser.add_argument(
        "--merge", action="store_true", help="keep the existing result file's other seeds/scenarios"
    )
    args = parser.parse_args()
    scenarios = args.scenarios.split(",") if args.scenarios else None
    print(run(args.quick, args.threads, scenarios, [int(s) for s in args.seeds.split(",")], args.merge))


if __name__ == "__main__":
    main()
