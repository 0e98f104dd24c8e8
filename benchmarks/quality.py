"""Target 4 (``quality``): per built-in scenario, forget / retain / test utility, MIA AUC, KS forget quality and
the relearning convergence delay (RCD) ratio of the original, the golden model and every method.

Targets (for ``dr`` and ``ieu``; the rows "dr (tuned)" / "ieu (tuned)" use ``tuned_settings``, else the scenario's
``unlearning_defaults``):

* forget accuracy (token accuracy for causal LMs) within 2 points of the golden model's;
* MIA AUC within 0.05 of the golden model's;
* retain accuracy (token accuracy) within 2 points of the original's;
* RCD ratio to golden >= 0.8, while naive fine-tuning (``ft``) stays far below (<= 0.5).

Uses ``hf_unlearn.pipeline``: ``load_job`` (scenario cache under ``benchmarks/_work/scenarios``), ``unlearn``
and ``evaluate_models`` (``evaluate_unlearning`` + RCD, the golden model relearned once).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from hf_unlearn.kinds import kind_for_task

from . import common

NAME = "quality"
SCENARIOS = ["authors-qa", "news-gpt2", "polarity-minilm"]
METHODS = ["ft", "ga", "grad_diff", "npo", "rl", "dr", "ieu"]
#: the methods of issue 16, measured next to the ones above (each where it is defined: LMs, or both)
COMPARED = ["salun", "simnpo", "idk_nll", "idk_dpo", "wga", "satimp", "undial", "rmu"]

# Settings found by ``benchmarks/sweep.py`` (results/sweep.json: dr and every ieu axis on authors-qa;
# results/sweep_cap.json: IEU's ascent cap and decay on every scenario; results/sweep_news.json: every IEU axis on
# news-gpt2), applied on top of each scenario's
# ``unlearning_defaults`` for the rows "dr (tuned)" and "ieu (tuned)". IEU's cap is ``forget_loss_cap_from_eval``:
# a multiple of the original model's held-out loss instead of the absolute default (5 nats), which pushes
# authors-qa's forget set far past the golden model. news-gpt2 keeps the absolute cap (golden's forget loss is
# 6.0: the default cap already sits there), drops the decay, which costs retain accuracy on that model, and runs
# 120 steps.
TUNED: dict[str, dict[str, dict[str, Any]]] = {
    "authors-qa": {
        "dr": {"dr_alpha": 0.5, "learning_rate": 5e-4, "max_steps": 50},
        "ieu": {"forget_loss_cap_from_eval": 0.6, "ieu_decay": 2.5},
    },
    "news-gpt2": {"ieu": {"ieu_decay": 0.0, "max_steps": 120}},
    "polarity-minilm": {"ieu": {"forget_loss_cap_from_eval": 1.0}},
}


#: Without the two golden-free defaults (held-out-referenced stopping, influence removal): the control row
#: "ft (plain)" (naive fine-tuning, which keeps the forget set; with the defaults' reset, ``ft`` is no longer
#: naive) and the tuned rows run so.
PLAIN: dict[str, Any] = {"stopping": "none", "influence_removal": "none"}
CONTROL = "ft (plain)"

# The scenarios' defaults before held-out-referenced stopping became one of them: what the tuned rows were
# tuned on (``recipes/*-tuned.yaml``).
PRE_STOPPING: dict[str, dict[str, Any]] = {
    "authors-qa": {"learning_rate": 1e-3, "max_steps": 100},
    "news-gpt2": {"learning_rate": 1e-3, "max_steps": 60},
}


def tuned_settings(name: str, job=None) -> dict[str, dict[str, Any]]:
    """``TUNED[name]`` on top of the pre-stopping defaults, without stopping and influence removal (as they were
    tuned; empty for scenarios where the defaults are the sweep's best)."""
    base = {**PLAIN, **PRE_STOPPING.get(name, {})}
    return {method: {**base, **settings} for method, settings in TUNED.get(name, {}).items()}


def scenario_job(name: str, seed: int = 0, **relearn: Any):
    """``(job, run_args)`` of a built-in scenario, or of a synthetic task (``"testing:qa"``,
    ``"testing:mislabeled"``, see ``task_job``). Raises ``MissingExtraError`` when an extra is missing."""
    from hf_unlearn.pipeline import RunArguments, load_job
    from hf_unlearn.scenarios import get_builder

    protocol = RELEARN[name] if name.startswith("testing:") else get_builder(name).relearning
    settings = {**protocol, **relearn}
    if name.startswith("testing:"):
        run_args = RunArguments(scenario_cache_dir=str(common.SCENARIO_CACHE), **settings)
        return task_job(name, seed), run_args
    run_args = RunArguments(scenario=name, scenario_cache_dir=str(common.SCENARIO_CACHE), **settings)
    return load_job(run_args, seed=seed, progress=False), run_args


def scenario_cached(name: str, seed: int = 0) -> bool:
    """Whether ``load_scenario`` would load ``name`` from ``benchmarks/_work/scenarios`` instead of training it
    (building one takes minutes to tens of minutes on 2 CPU cores). Synthetic tasks always count as cached."""
    if name.startswith("testing:"):
        return True
    import json
    from dataclasses import asdict

    try:
        from hf_unlearn.scenarios import base, get_builder

        builder = get_builder(name)
        builder.check_requirements()
        config = {
            "scenario": builder.name,
            "version": builder.version,
            "format": base.FORMAT_VERSION,
            "seed": seed,
            "recipe": asdict(builder.recipe),
            **builder.config(),
        }
        config = json.loads(json.dumps(config))  # as read back from JSON (tuples become lists)
        meta = json.loads((common.SCENARIO_CACHE / name / base.META_FILE).read_text())
        return meta.get("config") == config
    except Exception:  # not importable, extra missing, no cache, another layout: not cached
        return False


# -- synthetic fallback tasks (hf_unlearn.testing), trained here in seconds -----------------------------------
TASKS = {
    # name: (task factory kwargs, model kind, hidden size, epochs, lr, unlearning defaults)
    "testing:mislabeled": (
        {"n_train": 200, "n_test": 100},
        "classifier",
        64,
        40,
        3e-3,
        {
            "learning_rate": 1e-3,
            "max_steps": 60,
            "per_device_train_batch_size": 8,
            "lr_scheduler_type": "constant",
        },
    ),
    "testing:qa": (
        {"n_people": 60},
        "causal_lm",
        64,
        60,
        3e-3,
        {
            "learning_rate": 1e-3,
            "max_steps": 60,
            "per_device_train_batch_size": 8,
            "lr_scheduler_type": "constant",
        },
    ),
}
# Relearning protocol of the synthetic tasks (the built-in scenarios carry theirs: ``builder.relearning``).
RELEARN = {
    "testing:mislabeled": {"relearn_learning_rate": 1e-3, "relearn_max_steps": 100},
    "testing:qa": {"relearn_learning_rate": 1e-3, "relearn_max_steps": 100},
}
TASK_VERSION = 1


def train_tiny(
    model, rows: list[dict], collator, epochs: int, lr: float, batch_size: int = 16, seed: int = 0
) -> float:
    """AdamW with 5% warm-up and linear decay, clipped, seeded shuffles; returns the wall time."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    total = epochs * ((len(rows) + batch_size - 1) // batch_size)
    warm = max(1, int(0.05 * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: min(1.0, (t + 1) / warm) * max(0.0, 1 - t / total)
    )
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(rows), generator=generator).tolist()
        for i in range(0, len(rows), batch_size):
            batch = collator([rows[j] for j in order[i : i + batch_size]])
            out = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
            )
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    model.eval()
    return time.perf_counter() - start


def task_parts(name: str, seed: int = 0):
    """``(task, init_model, rows, collator, spec)`` of a synthetic task."""
    import copy

    from hf_unlearn.data import build_preparer
    from hf_unlearn.testing.fixtures import fictitious_qa_task, mislabeled_task
    from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier

    spec = TASKS[name]
    kwargs, kind, hidden = spec[0], spec[1], spec[2]
    if kind == "classifier":
        task = mislabeled_task(seed=seed, **kwargs)
        init = tiny_classifier(task.tokenizer, hidden_size=hidden, seed=seed)
    else:
        task = fictitious_qa_task(seed=seed, **kwargs)
        init = tiny_causal_lm(task.tokenizer, hidden_size=hidden, seed=seed)
    preparer, collator = build_preparer(init, task.tokenizer)
    rows = {split: preparer(getattr(task, split), split) for split in ("forget", "retain", "test")}
    return task, copy.deepcopy(init), rows, collator, spec


def task_job(name: str, seed: int = 0):
    """A ``LoadedJob`` for a synthetic task: original (forget + retain) and golden (retain only) trained from the
    same initialization with the same recipe, cached under ``benchmarks/_work/tasks``."""
    import copy
    import json

    import torch

    from hf_unlearn.data import infer_task
    from hf_unlearn.pipeline import LoadedJob

    task, init, rows, collator, spec = task_parts(name, seed)
    folder = common.WORK_DIR / "tasks" / f"{name.split(':')[1]}-s{seed}-v{TASK_VERSION}"
    models = {"original": copy.deepcopy(init), "golden": copy.deepcopy(init)}
    meta_path = folder / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        for key, model in models.items():
            model.load_state_dict(torch.load(folder / f"{key}.pt", weights_only=True))
            model.eval()
    else:
        seconds = {
            "original": train_tiny(
                models["original"], rows["retain"] + rows["forget"], collator, spec[3], spec[4], seed=seed
            ),
            "golden": train_tiny(models["golden"], rows["retain"], collator, spec[3], spec[4], seed=seed),
        }
        folder.mkdir(parents=True, exist_ok=True)
        for key, model in models.items():
            torch.save(model.state_dict(), folder / f"{key}.pt")
        meta = {"train_seconds": seconds}
        meta_path.write_text(json.dumps(meta))
    original = models["original"]
    sizes = {
        "n_forget": len(task.forget),
        "n_retain": len(task.retain),
        "n_test": len(task.test),
        "n_params": common.n_params(original),
    }
    return LoadedJob(
        model=copy.deepcopy(original),
        tokenizer=task.tokenizer,
        forget=task.forget,
        retain=task.retain,
        test=task.test,
        golden=models["golden"],
        original=original,
        task=infer_task(original),
        info={"scenario": name, "sizes": sizes, "train_seconds": meta["train_seconds"], "description": name},
        make_model=lambda: copy.deepcopy(original),
        defaults=dict(spec[5]),
    )


@dataclass
class UnlearnRun:
    """One ``unlearn`` call: the model, the whole call's and ``train()``'s wall time, the optimizer steps taken
    and the stopping rule's record (None without one)."""

    model: Any
    seconds: float
    train_seconds: float
    steps: int
    stopping: dict | None


def unlearn_run(
    job, run_args, method: str, overrides: dict | None = None, seed: int = 0, tag: str = ""
) -> UnlearnRun:
    """Unlearn a fresh copy of the original with the job's defaults updated by ``overrides``."""
    from hf_unlearn import UnlearningConfig
    from hf_unlearn.pipeline import unlearn

    settings = {**job.defaults, **(overrides or {})}
    config = UnlearningConfig(
        output_dir=str(common.WORK_DIR / NAME / (job.info.get("scenario") or "task") / (tag or method)),
        method=method,
        seed=seed,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        **settings,
    )
    job.model = job.make_model()
    start = time.perf_counter()
    trainer, train_seconds = unlearn(job, config, run_args)
    seconds = time.perf_counter() - start
    stopping = trainer.stopping.record.to_dict() if trainer.stopping is not None else None
    run = UnlearnRun(trainer.model, seconds, train_seconds, trainer.state.global_step, stopping)
    del trainer
    return run


def unlearn_once(job, run_args, method: str, overrides: dict | None = None, seed: int = 0, tag: str = ""):
    """``unlearn_run`` as ``(model, seconds, train_seconds)``: ``seconds`` is the whole ``unlearn`` call
    (trainer set-up, tokenization, NPO reference pass, training), ``train_seconds`` the ``train()`` call alone."""
    run = unlearn_run(job, run_args, method, overrides, seed, tag)
    return run.model, run.seconds, run.train_seconds


def keys_of(task: str) -> dict[str, str]:
    from hf_unlearn.kinds import kind_for_task

    if kind_for_task(task).has_classes:
        return {"forget": "forget/accuracy", "retain": "retain/accuracy", "test": "test/accuracy"}
    return {
        "forget": "forget/token_accuracy",
        "retain": "retain/token_accuracy",
        "test": "test/token_accuracy",
    }


def applies(method: Any, job) -> bool:
    """Whether ``method`` (an ``UnlearningMethod`` class) can run on ``job``: its task, and for the methods that
    train the forget prompts towards refusals, a forget set with prompts (raw text has none)."""
    from hf_unlearn.data.alternatives import with_default_alternatives

    if job.task not in method.supported_tasks():
        return False
    if method.needs_alternative:
        try:
            with_default_alternatives(job.forget, seed=0)
        except ValueError:
            return False
    return True


def evaluate_scenario(name: str, methods: list[str], tuned: dict | None = None, seed: int = 0) -> dict:
    from hf_unlearn.methods import get_method
    from hf_unlearn.pipeline import evaluate_models

    job, run_args = scenario_job(name, seed)
    tuned = tuned_settings(name, job) if tuned is None else tuned
    skipped = [m for m in methods if not applies(get_method(m), job)]
    methods = [m for m in methods if m not in skipped]
    models: dict[str, Any] = {"original": job.original, "golden": job.golden}
    seconds: dict[str, float] = {}
    settings: dict[str, dict] = {}
    for method in methods:
        models[method], seconds[method], _ = unlearn_once(job, run_args, method, seed=seed)
        settings[method] = dict(job.defaults)
    for method, overrides in (tuned or {}).items():
        label = f"{method} (tuned)"
        models[label], seconds[label], _ = unlearn_once(
            job, run_args, method, overrides, seed, tag=f"{method}_tuned"
        )
        settings[label] = {**job.defaults, **overrides}
    if "ft" in methods:
        models[CONTROL], seconds[CONTROL], _ = unlearn_once(job, run_args, "ft", PLAIN, seed, tag="ft_plain")
        settings[CONTROL] = {**job.defaults, **PLAIN}
    start = time.perf_counter()
    metrics, relearn = evaluate_models(job, models, run_args, seed=seed, progress=False)
    eval_seconds = time.perf_counter() - start
    for label, s in seconds.items():
        metrics[label]["seconds"] = s
    return {
        "scenario": name,
        "task": job.task,
        "skipped": skipped,
        "sizes": job.info.get("sizes"),
        "train_seconds": job.info.get("train_seconds"),
        "defaults": job.defaults,
        "settings": settings,
        "relearn_protocol": {
            k: getattr(run_args, k) for k in ("relearn_learning_rate", "relearn_max_steps", "relearn_target")
        },
        "metrics": metrics,
        "relearn_curves": {
            k: [(row["step"], row["loss"], row["accuracy"]) for row in r.curve] for k, r in relearn.items()
        },
        "eval_seconds": eval_seconds,
    }


def golden_gap_target(
    name: str, key: str, row: dict, golden: dict, tolerance: float, unit: str, shown: str | None = None
) -> dict:
    """Target ``|row[key] - golden[key]| <= tolerance``; ``shown`` names the metric in the description (default
    ``key``)."""
    return common.target(
        name,
        f"|{shown or key} - golden's| (golden {golden[key]:.3f}, got {row[key]:.3f})",
        row[key] - golden[key],
        tolerance,
        op="abs<=",
        unit=unit,
    )


def method_targets(name: str, label: str, row: dict, golden: dict, original: dict, keys: dict) -> list[dict]:
    """The four quality targets of one unlearned model (``row``): forget within 2 points of golden, MIA AUC
    within 0.05 of golden's, retain within 2 points of the original, RCD ratio to golden >= 0.8."""
    rows = [
        golden_gap_target(
            f"{name}: {label} forget vs golden", keys["forget"], row, golden, 0.02, "points/100"
        )
    ]
    if "mia/auc" in row:
        rows.append(
            golden_gap_target(f"{name}: {label} MIA AUC vs golden", "mia/auc", row, golden, 0.05, "AUC")
        )
    rows.append(
        common.target(
            f"{name}: {label} retain vs original",
            f"original's {keys['retain']} - this (original {original[keys['retain']]:.3f}, got "
            f"{row[keys['retain']]:.3f})",
            original[keys["retain"]] - row[keys["retain"]],
            0.02,
            unit="points/100",
        )
    )
    rows.append(
        common.target(
            f"{name}: {label} RCD ratio",
            f"relearning steps / golden's (golden {golden.get('rcd/steps')} steps)",
            row.get("rcd/ratio_to_golden"),
            0.8,
            op=">=",
        )
    )
    return rows


def targets_of(result: dict) -> list[dict]:
    m, keys, name = result["metrics"], keys_of(result["task"]), result["scenario"]
    rows = []
    for method in ("dr", "ieu"):
        label = f"{method} (tuned)" if f"{method} (tuned)" in m else method
        rows += method_targets(name, label, m[label], m["golden"], m["original"], keys)
    if CONTROL in m:
        rows.append(
            common.target(
                f"{name}: ft RCD ratio (must stay far below)",
                "naive fine-tuning's relearning ratio (no stopping, no influence removal): the baseline that "
                "keeps the forget set",
                m[CONTROL].get("rcd/ratio_to_golden"),
                0.5,
            )
        )
    return rows


COLUMNS = {
    "classification": [*kind_for_task("classification").headline_keys, "seconds"],
    "causal_lm": ["forget/token_accuracy", *kind_for_task("causal_lm").headline_keys, "seconds"],
}


def table_of(result: dict) -> str:
    rows = [{"model": name, **row} for name, row in result["metrics"].items()]
    return common.markdown_table(rows, COLUMNS[result["task"]], first="model")


def default_scenarios(quick: bool) -> list[str]:
    """``--quick``: the synthetic QA task (trained here in seconds). Otherwise the built-in scenarios whose
    original and golden models are cached under ``benchmarks/_work/scenarios`` (building one takes minutes),
    else the synthetic tasks. ``--scenarios NAME,...`` overrides (an uncached scenario is then built)."""
    if quick:
        return ["testing:qa"]
    cached = [name for name in SCENARIOS if scenario_cached(name)]
    return cached or ["testing:qa", "testing:mislabeled"]


def run(quick: bool = False, threads: int | None = None, scenarios: list[str] | None = None) -> dict:
    report = common.Report(NAME, quick, threads)
    methods = ["ft", "dr", "ieu"] if quick else METHODS + COMPARED
    measured = report.scenarios(
        scenarios or default_scenarios(quick), lambda n: evaluate_scenario(n, methods)
    )
    for name, result in measured:
        report.targets += targets_of(result)
        settings = ", ".join(f"{k}={v}" for k, v in result["defaults"].items())
        report.tables.append(
            {"title": f"{name} ({result['task']}; defaults: {settings})", "markdown": table_of(result)}
        )
        for label, s in result["settings"].items():
            if "tuned" in label or label == CONTROL:
                report.notes.append(f"{name}: {label} = {s}")
        if result["skipped"]:
            report.notes.append(
                f"{name}: not run (they do not apply to its data): {', '.join(result['skipped'])}"
            )
        report.notes.append(
            f"{name}: sizes {result['sizes']}; relearning protocol {result['relearn_protocol']}; evaluation "
            f"(metrics + RCD of {len(result['metrics'])} models) took {result['eval_seconds']:.0f} s."
        )
    report.notes.append(
        "Forget / retain 'points' are accuracy points (token accuracy for the causal LMs, where DR rarely flips "
        "the top-1 token: read forget/loss too). RCD counts are heavy-tailed; one seed here."
    )
    return report.write()


if __name__ == "__main__":
    common.cli(run, scenarios=True)
