"""Target 5 (``rcd_cost``): the relearning convergence delay metric's total time over the bare relearning
fine-tune it is built on (same model, data, optimizer and steps, no evaluation, no weight tracking).
Target ``<= 1.25``, reported at ``eval_every=1`` and at ``eval_every=5`` with ``refine``.

So that both arms run exactly the same number of steps, the relearned model is the golden model and the
learning rate is tiny (1e-8): it never meets the recovery target, so the metric runs to ``max_steps`` (compute
does not depend on the learning rate). The metric call includes everything a user pays: tokenization, the
original model's reference evaluation, the copy, the evaluations and the weight-space tracking.
"""

from __future__ import annotations

import copy

from . import common, quality

NAME = "rcd_cost"


def bare_relearn(model, forget, tokenizer, config) -> None:
    """The relearning fine-tune of ``relearning_convergence_delay`` without evaluations or weight tracking."""
    import torch

    from hf_unlearn.kinds import get_model_kind
    from hf_unlearn.metrics._passes import model_device, prepare
    from hf_unlearn.metrics.relearning import _BatchStream, _make_optimizer

    rows, collator, _ = prepare(model, forget, tokenizer, "forget_dataset", config.max_length)
    device = model_device(model)
    kind = get_model_kind(model)
    learner = copy.deepcopy(model)
    params = [p for p in learner.parameters() if p.requires_grad]
    optimizer = _make_optimizer(params, config)
    stream = _BatchStream(len(rows), config.batch_size, config.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        learner.train()
        for step in range(config.max_steps):
            batch = collator([rows[i] for i in stream.indices(step)])
            loss = kind.per_example_losses(learner, batch, device).mean()
            loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)


def measure(name: str, max_steps: int, repeats: int, seed: int = 0) -> dict:
    from hf_unlearn.metrics import RelearnConfig, relearning_convergence_delay

    job, _ = quality.scenario_job(name, seed)
    base = dict(learning_rate=1e-8, max_steps=max_steps, batch_size=8, seed=seed, progress_bar=False)
    configs = {
        "eval_every=1": RelearnConfig(eval_every=1, **base),
        "eval_every=5+refine": RelearnConfig(eval_every=5, refine=True, **base),
    }
    results = {}

    def metric(cfg, key):
        def call():
            results[key] = relearning_convergence_delay(
                job.golden,
                job.forget,
                original_model=job.original,
                processing_class=job.tokenizer,
                config=cfg,
            )

        return call

    arms = {"bare": lambda: bare_relearn(job.golden, job.forget, job.tokenizer, configs["eval_every=1"])}
    arms.update({key: metric(cfg, key) for key, cfg in configs.items()})
    times = common.interleaved_times(arms, repeats=repeats, warmup=1)
    out = {
        "scenario": name,
        "n_forget": len(job.forget),
        "max_steps": max_steps,
        "times": times,
        "ratios": {key: common.ratio_stats(times[key], times["bare"]) for key in configs},
        "steps_run": {key: r.curve[-1]["step"] for key, r in results.items()},
        "recovered": {key: r.recovered for key, r in results.items()},
        "evaluations": {key: len(r.curve) for key, r in results.items()},
    }
    return out


def run(quick: bool = False, threads: int | None = None, scenarios: list[str] | None = None) -> dict:
    report = common.Report(NAME, quick, threads)
    rows = []
    measured = report.scenarios(
        scenarios or quality.default_scenarios(quick),
        lambda name: measure(name, max_steps=20 if quick else 30, repeats=5),
    )
    for name, result in measured:
        for key, stats in result["ratios"].items():
            report.targets.append(
                common.ratio_target(
                    f"{name}: RCD ({key}) / bare relearning",
                    f"{result['max_steps']} relearning steps on {result['n_forget']} forget examples",
                    stats,
                    1.25,
                )
            )
            rows.append(
                {
                    "case": f"{name}, {key}",
                    "metric (s)": stats["median_s"],
                    "bare (s)": stats["baseline_median_s"],
                    "ratio": stats["ratio"],
                    "evaluations": result["evaluations"][key],
                    "steps": result["steps_run"][key],
                }
            )
    columns = ["metric (s)", "bare (s)", "ratio", "evaluations", "steps"]
    report.tables.append(
        {
            "title": "Relearning metric vs bare relearning",
            "markdown": common.markdown_table(rows, columns, first="case"),
        }
    )
    report.notes.append(
        "Each evaluation is a forward pass over the whole forget set (eval_batch_size 64); its cost relative to "
        "one training step (batch 8) grows with the forget-set size, so eval_every=1 costs most on large forget sets."
    )
    return report.write()


if __name__ == "__main__":
    common.cli(run, scenarios=True)
