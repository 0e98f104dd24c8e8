"""``sd_mechanics``: concept erasure on the tiny text-to-image pipeline (issue 31, "the same table for concept
erasure": mechanics). The pipeline is ``hf_unlearn.testing.tiny_pipeline.tiny_sd_pipeline`` (built from config,
**untrained**); the task is ``concept_task``: forget rows ``{"prompt"}`` ("a cat", "a photo of a cat", no images),
kept rows ``{"prompt", "image"}`` of four other prompts (coloured squares), held-out kept rows like them.

Every method that supports the text-conditioned UNet (ft, ga, grad_diff, rl, salun, esd, ieu, npo) x {full,
LoRA on the attention projections} unlearns from the same pipeline weights, seeded; per run: whether every logged
training loss is finite, the relative change of the UNet's (merged) weights ``||W' - W|| / ||W||``, and the
kind's per-example denoising losses on fixed evaluation draws (``evaluate_unlearning``'s ``forget/loss``,
``retain/loss``, ``test/loss``) before and after. The claim checked is mechanical: the forget prompts' denoising
loss should rise more than the kept prompts'. An untrained pipeline has no concept to erase, so this is no
measure of erasure quality.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from . import common

NAME = "sd_mechanics"
METHODS = ["ft", "ga", "grad_diff", "rl", "salun", "esd", "ieu", "npo"]
COLUMNS = [
    "finite losses",
    "weight change",
    "forget loss before",
    "forget loss after",
    "kept loss before",
    "kept loss after",
    "held-out kept after",
    "forget up - kept up",
    "forget rises more",
]
SETTINGS = {"full": {"learning_rate": 1e-3}, "lora": {"learning_rate": 1e-2}}


def losses(unet: Any, task: Any) -> dict[str, float]:
    """The kind's mean denoising losses of the forget, kept and held-out kept rows (fixed evaluation draws)."""
    from hf_unlearn.metrics import evaluate_unlearning

    metrics = evaluate_unlearning(
        unet, forget_dataset=task.forget, retain_dataset=task.retain, test_dataset=task.test, batch_size=16
    )
    return {split: metrics[f"{split}/loss"] for split in ("forget", "retain", "test")}


def prompt_sensitivity(unet: Any, forget: str, kept: list[str], seed: int = 0) -> float:
    """How much the UNet's prediction depends on the prompt: the mean over kept prompts of
    ``||f(x_t, t, forget) - f(x_t, t, kept)|| / ||f(x_t, t, forget)||`` on 8 seeded noisy latents at mid-range
    timesteps (near 0: the prompts barely condition the output, so no update can single one out)."""
    import torch

    from hf_unlearn.diffusion.pipeline import pipeline_setup

    setup = pipeline_setup(unet)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(8, *setup.latent_shape, generator=generator)
    t = torch.full((8,), setup.scheduler.config.num_train_timesteps // 2)
    states = setup.encode_prompts([forget, *kept])
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=states[0].expand(8, -1, -1)).sample
        ratios = [
            float((unet(x, t, encoder_hidden_states=s.expand(8, -1, -1)).sample - ref).norm() / ref.norm())
            for s in states[1:]
        ]
    return sum(ratios) / len(ratios)


def relative_change(before: dict, after: dict) -> float:
    """``||W' - W|| / ||W||`` over every tensor of the UNet's state dict."""
    num = sum(float((after[k].float() - v.float()).pow(2).sum()) for k, v in before.items())
    den = sum(float(v.float().pow(2).sum()) for v in before.values())
    return math.sqrt(num / den)


def run_one(method: str, setting: str, task: Any, seed: int, steps: int, workdir: Any) -> dict:
    """Unlearn a fresh tiny pipeline with ``method`` (full or LoRA); its mechanics."""
    from peft import LoraConfig

    from hf_unlearn.diffusion import DiffusionUnlearningTrainer, TextConditionedUNetKind
    from hf_unlearn.testing.tiny_pipeline import tiny_sd_pipeline

    pipe = tiny_sd_pipeline(seed)
    start = {k: v.detach().clone() for k, v in pipe.unet.state_dict().items()}
    lora = (
        LoraConfig(r=4, lora_alpha=8, **TextConditionedUNetKind().lora_defaults())
        if setting == "lora"
        else None
    )
    config = common.unlearning_config(
        workdir / f"{method}-{setting}",
        method,
        max_steps=steps,
        per_device_train_batch_size=4,
        logging_strategy="steps",
        logging_steps=1,
        seed=seed,
        **SETTINGS[setting],
    )
    trainer = DiffusionUnlearningTrainer(
        pipe, config, forget_dataset=task.forget, retain_dataset=task.retain, peft_config=lora
    )
    common.quiet(trainer).train()
    logged = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    model = trainer.model
    unet = copy.deepcopy(model).merge_and_unload() if hasattr(model, "peft_config") else model
    after = losses(unet.eval(), task)
    return {
        "finite": bool(logged) and all(math.isfinite(x) for x in logged),
        "steps_logged": len(logged),
        "train_losses": logged,
        "weight_change": relative_change(start, unet.state_dict()),
        "after": after,
    }


def table_row(name: str, per_seed: dict[int, dict]) -> dict:
    """One method's row: medians over seeds of the losses (before: the seed's untouched pipeline), the weight
    change, and in how many seeds the forget loss rose, and rose more than the kept loss."""
    import statistics

    def med(values):
        return statistics.median(values)

    runs = list(per_seed.values())
    up_forget = [r["after"]["forget"] - r["before"]["forget"] for r in runs]
    up_kept = [r["after"]["retain"] - r["before"]["retain"] for r in runs]
    more = sum(f > 0 and f > k for f, k in zip(up_forget, up_kept))
    return {
        "model": name,
        "finite losses": f"{sum(r['finite'] for r in runs)}/{len(runs)}",
        "weight change": f"{med([r['weight_change'] for r in runs]):.2e}",
        "forget loss before": med([r["before"]["forget"] for r in runs]),
        "forget loss after": med([r["after"]["forget"] for r in runs]),
        "kept loss before": med([r["before"]["retain"] for r in runs]),
        "kept loss after": med([r["after"]["retain"] for r in runs]),
        "held-out kept after": med([r["after"]["test"] for r in runs]),
        "forget up - kept up": med([f - k for f, k in zip(up_forget, up_kept)]),
        "forget rises more": f"{more}/{len(runs)}",
    }


def run(quick: bool = False, threads: int | None = None, seeds: list[int] | None = None) -> dict:
    """Every method x {full, LoRA} on the tiny pipeline, per seed (default 0, 1, 2; ``quick``: seed 0 with ft,
    grad_diff and esd, fewer steps)."""
    from hf_unlearn.diffusion import configure_pipeline
    from hf_unlearn.testing.tiny_pipeline import concept_task, tiny_sd_pipeline

    report = common.Report(NAME, quick, threads)
    steps = 10 if quick else 40
    methods = ["ft", "grad_diff", "esd"] if quick else METHODS
    seeds = seeds or ([0] if quick else [0, 1, 2])
    workdir = common.WORK_DIR / NAME
    results: dict[str, dict[int, dict]] = {}
    sensitivity: dict[int, float] = {}
    for seed in seeds:
        task = concept_task(seed)
        original = tiny_sd_pipeline(seed)
        configure_pipeline(original)
        before = losses(original.unet.eval(), task)
        kept = sorted({row["prompt"] for row in task.retain})
        sensitivity[seed] = prompt_sensitivity(original.unet, task.forget[0]["prompt"], kept, seed)
        for setting in ("full", "lora"):
            for method in methods:
                name = f"{method} ({setting})"
                result = run_one(method, setting, task, seed, steps, workdir)
                results.setdefault(name, {})[seed] = {**result, "before": before}
                print(seed, name, result["after"], f"{result['weight_change']:.3g}", flush=True)
    rows = [table_row(name, per_seed) for name, per_seed in results.items()]
    runs = [r for per_seed in results.values() for r in per_seed.values()]
    report.details = {
        "seeds": seeds,
        "steps": steps,
        "settings": SETTINGS,
        "prompt_sensitivity": sensitivity,
        "runs": results,
    }
    report.tables = [
        {
            "title": "Concept erasure on the tiny (untrained) pipeline: forget 'a cat' / 'a photo of a cat', "
            f"{steps} steps, median over seeds {', '.join(map(str, seeds))}",
            "markdown": common.markdown_table(rows, COLUMNS),
        }
    ]
    report.targets = [
        common.target(
            "finite_losses",
            "runs whose every logged training loss is finite",
            sum(r["finite"] for r in runs),
            len(runs),
            ">=",
            unit="runs",
        ),
        common.target(
            "weights_change",
            "runs whose UNet weights moved (relative change > 0)",
            sum(r["weight_change"] > 0 for r in runs),
            len(runs),
            ">=",
            unit="runs",
        ),
    ]
    misses = [r["model"] for r in rows if not r["forget rises more"].startswith(str(len(seeds)))]
    report.notes = [
        "The tiny pipeline is untrained (random weights built from config): this checks the mechanics (losses "
        "finite, weights change, which way the denoising losses move), not erasure quality. There is no concept "
        "to erase, so a method that does not raise the forget prompts' loss more than the kept prompts' is "
        "reported as it is, not tuned. Measured: the untrained UNet's prediction under a kept prompt differs "
        "from its prediction under the forget prompt by "
        + ", ".join(f"{v:.1%}" for v in sensitivity.values())
        + " (relative L2, same noisy latents, per seed): the prompts barely condition it, so updates move the "
        "forget and kept prompts' losses together.",
        "Losses: the text-conditioned kind's per-example denoising MSE on fixed evaluation draws "
        "(DiffusionArguments.eval_seed), mean over the rows: forget rows have no image (x_0 = the zero latent "
        "under the forget prompt), kept rows have their image's latent under their prompt; held-out kept: "
        "concept_task's test rows. 'forget up - kept up' = (forget after - before) - (kept after - before), median "
        "over seeds; 'forget rises more': seeds in which the forget loss rose and rose more than the kept loss. "
        "Each seed seeds the pipeline's weights, the task's images and the training.",
        f"Settings: per_device_train_batch_size 4 per part, full fine-tuning lr {SETTINGS['full']['learning_rate']},"
        f" LoRA (r 4, alpha 8, to_q/to_k/to_v/to_out.0) lr {SETTINGS['lora']['learning_rate']}, the methods' "
        "defaults otherwise; weight change ||W' - W|| / ||W|| over the UNet's state dict (LoRA runs: merged).",
        "Forget loss not rising more than kept in every seed: "
        + (", ".join(misses) if misses else "none")
        + ".",
    ]
    return report.write()


def main() -> None:
    """``python -m benchmarks.sd_mechanics [--quick] [--threads N] [--seeds 0,1,2]``."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--seeds", help="comma-separated seeds (default 0,1,2; quick: 0)")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    print(run(args.quick, args.threads, seeds))


if __name__ == "__main__":
    main()
