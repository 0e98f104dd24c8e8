"""``sd_mechanics``: concept erasure on the tiny text-to-image pipeline (issue 31, "the same table for concept
erasure": mechanics), from a *trained* starting point. Per seed, ``hf_unlearn.testing.tiny_pipeline``'s
``tiny_sd_pipeline`` (built from config; its VAE and text encoder stay random and frozen) gets a VAE scaling
factor that gives unit-std latents (``fit_latent_scale``), then its whole UNet is fine-tuned with method ``ft``
(``DiffusionUnlearningTrainer``, the kind's denoising loss) on ``concept_image_task``'s five image concepts (cat,
dog, car, tree, bird: a prompt family and a colour/stripe pattern each), so that the prompts condition it (prompt
sensitivity measured before and after).

From that pipeline every method that supports the text-conditioned UNet (ft, ga, grad_diff, rl, salun, esd, ieu,
npo) x {full, LoRA on the attention projections} unlearns the cat concept (forget rows: the cat training images
under their prompts; retain rows: the kept concepts' training images), seeded, one learning rate per setting
for all methods; per run: whether every logged training loss is finite, the relative change of the UNet's
(merged) weights ``||W' - W|| / ||W||``, and the kind's per-example denoising losses on fixed evaluation draws
before and after, on held-out cat images, the cat training images, the kept training images and held-out kept
images. The claim checked: the forget concept's denoising loss on its held-out images rises more than the kept
concepts'. A tiny pipeline with a random VAE and text encoder, so mechanics and direction, not erasure quality
(no generation metrics).
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
    "forget train after",
    "kept loss before",
    "kept loss after",
    "held-out kept before",
    "held-out kept after",
    "forget up - kept up",
    "forget rises more",
]
SETTINGS = {"full": {"learning_rate": 1e-3}, "lora": {"learning_rate": 1e-2}}
#: the starting point: ``ft`` on every concept's training images (full weights), cosine schedule
PRETRAIN = {"max_steps": 1500, "learning_rate": 2e-3, "per_device_train_batch_size": 16}
N_TRAIN, N_TEST = 48, 16  # images per concept: training (forget / retain rows), held-out


def losses(unet: Any, task: Any) -> dict[str, float]:
    """The kind's mean denoising losses on fixed evaluation draws: ``forget`` the held-out images of the forget
    concept, ``forget_train`` its training images, ``retain`` the kept concepts' training images, ``test`` their
    held-out images (each under its own prompt)."""
    from hf_unlearn.metrics import evaluate_unlearning

    held_out = task.info["forget_test"]
    metrics = evaluate_unlearning(
        unet, forget_dataset=held_out, retain_dataset=task.retain, test_dataset=task.test, batch_size=32
    )
    # the forget concept's training images: a second pass (its retain part, the 16 held-out rows, is unused)
    train = evaluate_unlearning(unet, forget_dataset=task.forget, retain_dataset=held_out, batch_size=32)
    out = {split: metrics[f"{split}/loss"] for split in ("forget", "retain", "test")}
    return {**out, "forget_train": train["forget/loss"]}


def pretrain(seed: int, task: Any, workdir: Any, steps: int) -> tuple[dict, float, dict]:
    """The starting point of seed ``seed``: ``tiny_sd_pipeline(seed)`` with its VAE's latent scale fitted to the
    training images (``fit_latent_scale``), its UNet fine-tuned with ``ft`` (``DiffusionUnlearningTrainer``:
    the kind's denoising loss on the retain part) on every concept's training images, the forget concept's
    included. Returns the UNet's state dict, the scale and facts of the run (seconds, first and last loss,
    prompt sensitivity before and after)."""
    import time

    from hf_unlearn.diffusion import DiffusionUnlearningTrainer, configure_pipeline
    from hf_unlearn.testing.tiny_pipeline import CONCEPT_PROMPTS, fit_latent_scale, tiny_sd_pipeline

    pipe = tiny_sd_pipeline(seed)
    scale = fit_latent_scale(pipe, [row["image"] for row in task.retain + task.forget])
    configure_pipeline(pipe)
    forget_prompt = task.forget[0]["prompt"]
    kept = [CONCEPT_PROMPTS[c][0] for c in task.info["kept"]]  # "a dog", "a red car", "a tree", "a bird"
    facts = {"sensitivity_before": prompt_sensitivity(pipe.unet, forget_prompt, kept, seed)}
    config = common.unlearning_config(
        workdir / "pretrain",
        "ft",
        seed=seed,
        lr_scheduler_type="cosine",
        logging_strategy="steps",
        logging_steps=max(1, steps // 10),
        allow_overlap=True,  # ft reads only the retain part: every concept's images, the forget concept's too
        **{**PRETRAIN, "max_steps": steps},
    )
    start = time.perf_counter()
    trainer = DiffusionUnlearningTrainer(
        pipe, config, forget_dataset=task.forget, retain_dataset=task.retain + task.forget
    )
    common.quiet(trainer).train()
    logged = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    unet = trainer.model.eval()
    facts.update(
        steps=steps,
        seconds=round(time.perf_counter() - start, 1),
        first_loss=logged[0],
        last_loss=logged[-1],
        sensitivity_after=prompt_sensitivity(unet, forget_prompt, kept, seed),
    )
    return {k: v.detach().clone() for k, v in unet.state_dict().items()}, scale, facts


def starting_pipeline(seed: int, state: dict, scale: float) -> Any:
    """A fresh ``tiny_sd_pipeline(seed)`` with the pretrained UNet weights ``state`` and latent scale ``scale``."""
    from hf_unlearn.testing.tiny_pipeline import tiny_sd_pipeline

    pipe = tiny_sd_pipeline(seed)
    pipe.vae.register_to_config(scaling_factor=scale)
    pipe.unet.load_state_dict(state)
    return pipe


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


def run_one(
    method: str, setting: str, task: Any, seed: int, steps: int, workdir: Any, start_point: tuple
) -> dict:
    """Unlearn the forget concept from the seed's pretrained pipeline (``start_point``: the UNet's state dict
    and the latent scale) with ``method`` (full or LoRA); its mechanics."""
    from peft import LoraConfig

    from hf_unlearn.diffusion import DiffusionUnlearningTrainer, TextConditionedUNetKind

    pipe = starting_pipeline(seed, *start_point)
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
        "forget train after": med([r["after"].get("forget_train", math.nan) for r in runs]),
        "kept loss before": med([r["before"]["retain"] for r in runs]),
        "kept loss after": med([r["after"]["retain"] for r in runs]),
        "held-out kept before": med([r["before"]["test"] for r in runs]),
        "held-out kept after": med([r["after"]["test"] for r in runs]),
        "forget up - kept up": med([f - k for f, k in zip(up_forget, up_kept)]),
        "forget rises more": f"{more}/{len(runs)}",
    }


def run(quick: bool = False, threads: int | None = None, seeds: list[int] | None = None) -> dict:
    """Pretrain the tiny pipeline on the concept images, then every method x {full, LoRA} from it, per seed
    (default 0, 1, 2; ``quick``: seed 0 with ft, grad_diff and esd, fewer steps)."""
    from hf_unlearn.diffusion import configure_pipeline
    from hf_unlearn.testing.tiny_pipeline import concept_image_task

    report = common.Report(NAME, quick, threads)
    steps = 10 if quick else 40
    pretrain_steps = 200 if quick else PRETRAIN["max_steps"]
    methods = ["ft", "grad_diff", "esd"] if quick else METHODS
    seeds = seeds or ([0] if quick else [0, 1, 2])
    workdir = common.WORK_DIR / NAME
    results: dict[str, dict[int, dict]] = {}
    pretraining: dict[int, dict] = {}
    for seed in seeds:
        task = concept_image_task(seed, n_train=N_TRAIN, n_test=N_TEST)
        state, scale, pretraining[seed] = pretrain(seed, task, workdir, pretrain_steps)
        original = starting_pipeline(seed, state, scale)
        configure_pipeline(original)
        before = losses(original.unet.eval(), task)
        pretraining[seed].update(scale=scale, losses=before)
        print(seed, "pretrained", pretraining[seed], flush=True)
        for setting in ("full", "lora"):
            for method in methods:
                name = f"{method} ({setting})"
                result = run_one(method, setting, task, seed, steps, workdir, (state, scale))
                results.setdefault(name, {})[seed] = {**result, "before": before}
                print(seed, name, result["after"], f"{result['weight_change']:.3g}", flush=True)
    rows = [table_row(name, per_seed) for name, per_seed in results.items()]
    runs = [r for per_seed in results.values() for r in per_seed.values()]
    report.details = {
        "seeds": seeds,
        "steps": steps,
        "settings": SETTINGS,
        "pretrain": {**PRETRAIN, "max_steps": pretrain_steps},
        "images_per_concept": {"train": N_TRAIN, "held_out": N_TEST},
        "pretraining": pretraining,
        "runs": results,
    }
    report.tables = [
        {
            "title": "Concept erasure on the tiny pipeline pretrained on five image concepts: forget 'cat' "
            f"(its 4 prompts, {N_TRAIN} images), keep dog, car, tree, bird; {steps} steps, median over seeds "
            f"{', '.join(map(str, seeds))}",
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
        common.target(
            "pretraining_conditions",
            "seeds whose prompt sensitivity rose by half or more in pretraining",
            sum(p["sensitivity_after"] >= 1.5 * p["sensitivity_before"] for p in pretraining.values()),
            len(seeds),
            ">=",
            unit="seeds",
        ),
    ]
    report.notes = notes(rows, seeds, pretraining)
    return report.write()


def notes(rows: list[dict], seeds: list[int], pretraining: dict[int, dict]) -> list[str]:
    """The report's notes: the starting point (measured), what the losses are, the settings, the misses."""
    misses = [r["model"] for r in rows if not r["forget rises more"].startswith(str(len(seeds)))]
    facts = pretraining.values()
    return [
        "Starting point, per seed: tiny_sd_pipeline(seed) (built from config; its VAE and CLIP text encoder stay "
        "random and frozen) with the VAE's scaling_factor set to 1/std of the training images' latents "
        "(fit_latent_scale: "
        + ", ".join(f"{p['scale']:.1f}" for p in facts)
        + "; at SD's 0.18215 the untrained VAE's latents have std ~0.05 and the denoising loss sees almost no "
        f"image), then its whole UNet fine-tuned with method ft ({PRETRAIN['learning_rate']} cosine, batch "
        f"{PRETRAIN['per_device_train_batch_size']}, {pretraining[seeds[0]]['steps']}"
        + " steps; DiffusionUnlearningTrainer, the kind's denoising loss on the retain part) on "
        f"concept_image_task's training images of all five concepts ({N_TRAIN} each: cat orange/black vertical "
        "stripes, dog brown/white horizontal stripes, car a red block on grey, tree a green disc on sky blue, "
        "bird a yellow/blue checkerboard, random phase/position, colour jitter and pixel noise; 3-4 prompts "
        "each). Training loss "
        + ", ".join(f"{p['first_loss']:.2f} -> {p['last_loss']:.2f}" for p in facts)
        + "; prompt sensitivity (the UNet's prediction under a kept prompt vs under 'a cat', relative L2, same "
        "noisy latents at t = 50, kept prompts 'a dog', 'a red car', 'a tree', 'a bird') "
        + ", ".join(f"{p['sensitivity_before']:.1%} -> {p['sensitivity_after']:.1%}" for p in facts)
        + "; seconds "
        + ", ".join(f"{p['seconds']:.0f}" for p in facts)
        + " (1 thread). Nothing is cached: each run pretrains again.",
        "Losses: the text-conditioned kind's per-example denoising MSE on fixed evaluation draws "
        "(DiffusionArguments.eval_seed), mean over the rows, each image under its concept's prompt: forget = "
        f"{N_TEST} held-out cat images, forget train = the {N_TRAIN} cat images unlearned, kept = the kept "
        f"concepts' {N_TRAIN} training images each (the retain set), held-out kept = {N_TEST} held-out images "
        "each. 'forget up - kept up' = (forget after - before) - (kept after - before), median over seeds; "
        "'forget rises more': seeds in which the held-out forget loss rose and rose more than the kept loss. "
        "Each seed seeds the pipeline's weights, the images, the pretraining and the unlearning.",
        f"Settings: forget set the {N_TRAIN} cat training images with their prompts (esd reads only the prompts), "
        "retain set the kept training images, per_device_train_batch_size 4 per part; one learning rate per "
        f"setting for every method, kept from the untrained version of this benchmark (not tuned on these "
        f"results): full fine-tuning {SETTINGS['full']['learning_rate']} (half the pretraining rate), LoRA (r 4, "
        f"alpha 8, to_q/to_k/to_v/to_out.0) {SETTINGS['lora']['learning_rate']}; the methods' defaults "
        "otherwise; weight change ||W' - W|| / ||W|| over the UNet's state dict from the pretrained one (LoRA "
        "runs: merged).",
        "Held-out forget loss not rising more than kept in every seed: "
        + (", ".join(misses) if misses else "none")
        + ".",
        reading(rows),
    ]


def reading(rows: list[dict]) -> str:
    """How to read the table: ft as the no-forget-term baseline, and the runs that raise every concept's loss."""
    by_name = {r["model"]: r for r in rows}
    baseline = [
        f"{by_name[n]['forget up - kept up']:.3f} ({n})" for n in ("ft (full)", "ft (lora)") if n in by_name
    ]
    collapsed = [r["model"] for r in rows if r["kept loss after"] > 2 * r["kept loss before"]]
    return (
        "Reading: ft has no forget term, so its 'forget up - kept up' ("
        + (", ".join(baseline) or "not run")
        + ") is what fine-tuning on the kept concepts alone does to the cat loss; a method erases the concept in "
        "this sense by how far it exceeds that while the kept losses hold. Runs whose kept loss more than "
        "doubled (the UNet broken for every prompt, not the cat erased): "
        + (", ".join(collapsed) or "none")
        + ". Gradient ascent alone (ga) has no retain term: most of a denoising loss is the noise prediction "
        "every prompt shares, so ascending the cat's loss raises every concept's nearly as much (full) or as "
        "much (LoRA); the methods with a retain term or a target prediction (grad_diff, npo, ieu, rl, salun, "
        "esd) separate in every seed, the anchor/guidance ones (rl, salun, esd) with the smallest kept cost."
    )


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
