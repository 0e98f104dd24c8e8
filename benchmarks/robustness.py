"""``robustness``: is the forgetting in the weights, or only hidden? (issue 32). On a classifier scenario
(``polarity-minilm``: mislabeled sentences, a fine-tuned pretrained MiniLM) and ``tofu-llama``, the original, the golden model and each method at the scenario's
defaults are measured without attack and under ``quantize_8bit``, ``quantize_4bit`` and ``relearn_partial``
(``hf_unlearn.metrics.attacks``), each against the golden model under the same attack.

Reported per model and attack: the kind's primary forget metric (digits: forget accuracy; tofu-llama: forget
ROUGE-L recall of greedy answers) and ``gap_to_golden``. A method's forgetting is *undone* by an attack when its
gap under the attack exceeds its gap without it by more than ``TOLERANCE`` (for ``relearn_partial``: the gap on the
same held-out half without attack) **and** the attacked model lies on the attacked original's side of the attacked
golden model (a model that relearns *less* than golden is not "undone"). Cost: seconds of each attack (all models; golden and original attacked once)
next to the seconds of the evaluation without attacks. One seed.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from . import common, quality

NAME = "robustness"
SCENARIOS = ["polarity-minilm", "tofu-llama"]
METHODS = ["ft", "grad_diff", "npo", "dr", "ieu"]
ATTACKS = ["quantize_8bit", "quantize_4bit", "relearn_partial"]
TOLERANCE = 0.02  # a gap this much larger than without attack still counts as "survives"


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
    }


def undone(row: dict, attack: str, key: str) -> bool | None:
    """Whether ``attack`` undoes the forgetting: the gap to golden grows by more than ``TOLERANCE`` over the gap
    without attack, towards the original (the attacked model on the attacked original's side of golden)."""
    gap = row.get(f"attack/{attack}/gap_to_golden")
    before = row.get(f"attack/{attack}/gap_to_golden_unattacked", row.get("attack/none/gap_to_golden"))
    values = [row.get(f"attack/{attack}/{who}{key}") for who in ("", "golden/", "original/")]
    if gap is None or before is None or None in values:
        return None
    model, golden, original = values
    towards_original = (model - golden) * (original - golden) > 0
    return gap > before + TOLERANCE and towards_original


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
            ", ".join(a for a in ATTACKS if undone(row, a, key)) or "-"
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


def run(quick: bool = False, threads: int | None = None, seed: int = 0) -> dict:
    report = common.Report(NAME, quick, threads)
    methods = ["ft", "ieu"] if quick else METHODS
    for name, result in report.scenarios(SCENARIOS, lambda n: measure(n, methods, seed)):
        n = result["n_models"]
        report.tables.append(
            {
                "title": f"{name}: {result['primary_metric']} and gap to golden under each attack (seed {seed})",
                "markdown": table_of(result),
            }
        )
        report.tables.append(
            {
                "title": f"{name}: seconds per attack ({n} models) vs the evaluation without attacks",
                "markdown": cost_table(result),
            }
        )
    report.notes = [
        f"A method's forgetting is 'undone by' an attack when its gap to golden under the attack exceeds its gap "
        f"without it by more than {TOLERANCE} (relearn_partial: the gap on the same held-out half without attack) "
        "and the attacked model lies on the attacked original's side of the attacked golden model.",
        "relearn_partial: the run's RCD learning rate and batch size (the scenario's), 25 steps on half the forget "
        "set (people kept together), measured on the other half. Evaluation without attacks: evaluate_unlearning "
        "of every model, without RCD.",
    ]
    return report.write()


if __name__ == "__main__":
    common.cli(run)
