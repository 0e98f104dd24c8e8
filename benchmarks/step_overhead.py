"""Target 1 (``step_overhead``): what an unlearning step costs over the step it is built on.

* IEU vs ``grad_diff`` on the same batches: the two differ only by IEU's decay + noise after the optimizer
  step. Target ``<= 1.03``. Reported at ``ieu_noise_every`` k = 1, 4 and 8 (noise every k steps with std
  ``sigma * sqrt(k)``, the same Gaussian diffusion with k times fewer draws).
* ``grad_diff`` vs a plain ``transformers.Trainer`` step on the same retain + forget examples (one concatenated
  batch, the model's own loss). Target ``<= 1.10``.

One step = ``trainer.training_step(model, batch)`` + ``optimizer.step()`` + ``optimizer.zero_grad()`` on a tiny
GPT-2 built from config. A breakdown times the pieces of the IEU hook on their own (decay pass, noise draw
single-threaded and chunked, noise add) as fractions of a ``grad_diff`` step.
"""

from __future__ import annotations

import copy
import itertools
import time
from typing import Any

from . import common

NAME = "step_overhead"


def _trainers(
    model, rows_r, rows_f, workdir, device: str, bf16: bool, part_batch: int, every: list[int], extra: bool
):
    from transformers import Trainer, TrainingArguments

    from hf_unlearn import UnlearningTrainer

    kw = dict(per_device_train_batch_size=part_batch, bf16=bf16, learning_rate=1e-4)
    trainers: dict[str, Any] = {}
    plain_args = TrainingArguments(
        output_dir=str(workdir / "plain"),
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        **kw,
    )
    trainers["plain"] = Trainer(model=copy.deepcopy(model), args=plain_args)
    specs = {"grad_diff": dict(method="grad_diff")}
    for k in every:
        specs[f"ieu_k{k}"] = dict(method="ieu", ieu_decay=1.0, ieu_noise_std=1e-3, ieu_noise_every=k)
    if extra:
        specs["ieu_k1_unfolded"] = dict(method="ieu", ieu_decay=1.0, ieu_noise_std=1e-3, ieu_noise_every=1)
    for name, spec in specs.items():
        args = common.unlearning_config(workdir / name, device=device, **kw, **spec)
        trainers[name] = UnlearningTrainer(
            copy.deepcopy(model), args, forget_dataset=rows_f, retain_dataset=rows_r
        )
    for name, trainer in trainers.items():
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1
        hooks = trainer.optimizer._optimizer_step_post_hooks
        for key, hook in list(hooks.items()):
            if name == "ieu_k1_unfolded":
                hook.fold_decay = False
            if device == "cpu":  # on CUDA, timing the hook in place needs syncs that would slow the step
                hooks[key] = _TimedHook(hook, None)
    return trainers


class _TimedHook:
    """Wraps the IEU step hook to record the seconds it takes in place (after the optimizer step)."""

    def __init__(self, hook, sync):
        self.hook, self.sync, self.seconds = hook, sync, []

    def __call__(self, *args, **kwargs):
        if self.sync:
            self.sync()
        start = time.perf_counter()
        self.hook(*args, **kwargs)
        if self.sync:
            self.sync()
        self.seconds.append(time.perf_counter() - start)

    def __getattr__(self, name):
        return getattr(self.hook, name)


def _batches(trainer, n_batches: int, part_batch: int):
    """Paired batches from the unlearning trainer's own collator, and the same examples concatenated."""
    import torch

    paired, plain = [], []
    for b in range(n_batches):
        items = [trainer.train_dataset[i] for i in range(b * part_batch, (b + 1) * part_batch)]
        batch = trainer.data_collator(items)
        paired.append(batch)
        plain.append(
            {
                key: torch.cat([batch["retain"][key], batch["forget"][key]])
                for key in ("input_ids", "attention_mask", "labels")
            }
        )
    return paired, plain


def _step_fn(trainer, batches):
    cycle = itertools.cycle(batches)
    model = trainer.model

    def step():
        trainer.training_step(model, next(cycle))
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.state.global_step += 1

    return step


def breakdown(trainer, repeats: int, device: str, sync) -> dict[str, list[float]]:
    """Seconds of each piece of the IEU hook, on clones of the trainer's trainable weights: the decay pass (what
    folding it into AdamW saves), one normal draw over all the weights, one add pass, and the hook's noise as
    implemented (chunked draws into a scratch buffer, added chunk by chunk)."""
    import torch

    from hf_unlearn.weights import decay_noise as influence

    params = [
        p.detach().clone().requires_grad_(True)
        for g in trainer.optimizer.param_groups
        for p in g["params"]
        if p.requires_grad
    ]
    groups = [{"params": params, "lr": 1e-4}]
    hook = influence.DecayNoiseHook(1.0, 1e-3, "constant", 0, lambda: 0, lambda: 1)
    flat = torch.empty(sum(p.numel() for p in params), device=params[0].device, dtype=params[0].dtype)
    views = [chunk.view_as(p) for chunk, p in zip(flat.split([p.numel() for p in params]), params)]
    generator = torch.Generator(device=params[0].device)

    def draw():
        generator.manual_seed(0)
        flat.normal_(0.0, 1e-3, generator=generator)

    def add():
        with torch.no_grad():
            torch._foreach_add_(params, views)

    arms = {
        "decay_pass": lambda: hook.apply_decay(groups),
        "noise_draw_one_pass": draw,
        "noise_add_one_pass": add,
        "noise_as_hooked": lambda: hook.apply_noise(groups, 1e-3, 0),
    }
    with torch.no_grad():
        return common.interleaved_times(arms, repeats=repeats, warmup=1, inner=3, sync=sync)


def measure(
    device: str = "cpu",
    size: str = "gpt2-5m",
    part_batch: int = 4,
    seq_len: int = 128,
    bf16: bool = False,
    every: tuple[int, ...] = (1, 4, 8),
    repeats: int = 7,
    inner: int = 2,
    warmup: int = 1,
    extra: bool = True,
    workdir=None,
) -> dict:
    """Interleaved step times of every arm; returns ratios, raw times and sizes."""
    import torch

    workdir = workdir or common.WORK_DIR / NAME
    model = common.gpt2(size, n_positions=seq_len)
    vocab = model.config.vocab_size
    n_rows = part_batch * 4
    rows_r = common.random_lm_rows(n_rows, seq_len, vocab, seed=1)
    rows_f = common.random_lm_rows(n_rows, seq_len, vocab, seed=2)
    trainers = _trainers(model, rows_r, rows_f, workdir, device, bf16, part_batch, list(every), extra)
    paired, plain = _batches(trainers["grad_diff"], 4, part_batch)
    arms = {name: _step_fn(tr, plain if name == "plain" else paired) for name, tr in trainers.items()}
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    start = time.perf_counter()
    times = common.interleaved_times(arms, repeats=repeats, warmup=warmup, inner=inner, sync=sync)
    seconds = time.perf_counter() - start
    parts = breakdown(trainers["ieu_k1"], repeats, device, sync)
    base = common.median(times["grad_diff"])
    out = {
        "sizes": {
            "model": size,
            "n_params": common.n_params(model),
            "batch": f"{part_batch} retain + {part_batch} forget = {2 * part_batch} x {seq_len} tokens per step",
            "tokens_per_step": 2 * part_batch * seq_len,
            "dtype": "bf16 autocast" if bf16 else "fp32",
            "optimizer": type(trainers["grad_diff"].optimizer).__name__
            + f" ({trainers['grad_diff'].args.optim})",
        },
        "device": device,
        "repeats": repeats,
        "inner_steps_per_repeat": inner,
        "warmup_rounds": warmup,
        "timed_seconds": round(seconds, 2),
        "times": times,
        "ratios": {},
        "breakdown_s": {k: common.median(v) for k, v in parts.items()},
        "breakdown_fraction_of_grad_diff_step": {k: common.median(v) / base for k, v in parts.items()},
        "breakdown_repeats_s": parts,
    }
    out["hook_in_place_s"] = {}
    for name, trainer in trainers.items():
        for hook in trainer.optimizer._optimizer_step_post_hooks.values():
            if isinstance(hook, _TimedHook) and hook.seconds:
                # mean over every step taken (noise every k steps: the mean spreads its cost over k steps)
                out["hook_in_place_s"][name] = sum(hook.seconds) / len(hook.seconds)
    out["hook_in_place_fraction_of_grad_diff_step"] = {k: v / base for k, v in out["hook_in_place_s"].items()}
    for name in times:
        if name.startswith("ieu"):
            out["ratios"][f"{name}/grad_diff"] = common.ratio_stats(times[name], times["grad_diff"])
    out["ratios"]["grad_diff/plain"] = common.ratio_stats(times["grad_diff"], times["plain"])
    for k in every:
        out["ratios"][f"ieu_k{k}/plain"] = common.ratio_stats(times[f"ieu_k{k}"], times["plain"])
    return out


def targets_of(result: dict, prefix: str = "") -> list[dict]:
    rows = []
    for key, stats in result["ratios"].items():
        if "/grad_diff" in key and key.startswith("ieu_k") and "unfolded" not in key:
            k = key.split("/")[0]
            rows.append(
                common.ratio_target(
                    f"{prefix}{key}",
                    f"IEU step ({k.replace('ieu_k', 'noise every k=')}) / grad_diff step, same batches",
                    stats,
                    1.03,
                    ratio_of_medians=stats["ratio_of_medians"],
                )
            )
    for name, fraction in result.get("hook_in_place_fraction_of_grad_diff_step", {}).items():
        if "unfolded" in name:
            continue
        rows.append(
            common.target(
                f"{prefix}{name}/grad_diff (direct)",
                f"1 + IEU hook time timed in place (mean per step, {name.replace('ieu_k', 'noise every k=')}) / "
                "grad_diff step: the same quantity as the row above, without the step-to-step load noise",
                1.0 + fraction,
                1.03,
                hook_s=result["hook_in_place_s"][name],
            )
        )
    stats = result["ratios"]["grad_diff/plain"]
    rows.append(
        common.ratio_target(
            f"{prefix}grad_diff/plain",
            "grad_diff step / plain transformers.Trainer step on the same retain+forget examples",
            stats,
            1.10,
            ratio_of_medians=stats["ratio_of_medians"],
        )
    )
    return rows


def tables_of(result: dict, title: str) -> list[dict]:
    ratio_rows = [
        {
            "ratio": key,
            "median paired ratio": s["ratio"],
            "ratio of medians": s["ratio_of_medians"],
            "min": s["ratio_min"],
            "max": s["ratio_max"],
            "arm median (ms)": s["median_s"] * 1e3,
            "baseline median (ms)": s["baseline_median_s"] * 1e3,
        }
        for key, s in result["ratios"].items()
    ]
    cols = [
        "median paired ratio",
        "ratio of medians",
        "min",
        "max",
        "arm median (ms)",
        "baseline median (ms)",
    ]
    parts = [
        {
            "piece": k,
            "ms": result["breakdown_s"][k] * 1e3,
            "fraction of a grad_diff step": result["breakdown_fraction_of_grad_diff_step"][k],
        }
        for k in result["breakdown_s"]
    ]
    parts += [
        {
            "piece": f"whole hook in place, {k} (mean per step)",
            "ms": v * 1e3,
            "fraction of a grad_diff step": result["hook_in_place_fraction_of_grad_diff_step"][k],
        }
        for k, v in result.get("hook_in_place_s", {}).items()
    ]
    return [
        {"title": f"{title}: all ratios", "markdown": common.markdown_table(ratio_rows, cols, first="ratio")},
        {
            "title": f"{title}: IEU hook breakdown (each piece alone, on clones of the weights)",
            "markdown": common.markdown_table(parts, ["ms", "fraction of a grad_diff step"], first="piece"),
        },
    ]


def run(quick: bool = False, threads: int | None = None) -> dict:
    report = common.Report(NAME, quick, threads)
    result = measure(
        repeats=5,
        inner=2
        if quick
        else 8,  # a multiple of every k: each timed window holds the same number of injections
        every=(1,) if quick else (1, 8),
        extra=not quick,
    )
    s = result["sizes"]
    report.targets, report.details = targets_of(result), result
    report.tables = tables_of(result, "CPU")
    report.notes = [
        f"Model: GPT-2 built from config, {s['n_params'] / 1e6:.1f}M parameters ({s['model']}); {s['batch']}; "
        f"{s['dtype']}; optimizer {s['optimizer']}; IEU decay 1.0, noise std 1e-3.",
        "ieu_k1_unfolded: IEU with the decay applied by the hook as a separate pass (fold_decay=False), the "
        "behaviour before the decay was folded into AdamW's own weight decay.",
        "On CPU the noise costs what the normal sampler costs: drawing one Gaussian per weight per step is the "
        "whole overhead left; noise every k steps divides it by k (the decay is free once folded). Each repeat "
        "times a window of `inner` consecutive steps, a multiple of k, so every window holds the same number of "
        "noise injections.",
        "End-to-end ratios need the steps of both arms to see the same machine: on a shared machine a load burst "
        "during one arm's window moves a paired ratio by far more than the 3% at stake (see min / max); the "
        "'(direct)' rows time the hook itself inside the IEU steps, which the load moves much less.",
    ]
    return {**report.write(), "threads": report.threads}


if __name__ == "__main__":
    common.cli(run)
