"""Target 2 (``memory``): peak memory of NPO vs naive fine-tuning (ft) on the same model and batches.

NPO needs reference log-probabilities of the forget set; ``UnlearningTrainer`` computes them once before
training and keeps only that cache (one float per forget example), never a second model, so its peak should
be ft's. Target: ``peak(npo) / peak(ft) <= 1.10``. LoRA vs full fine-tuning peak memory is reported as well.

Each measurement is one ``trainer.train()`` of a few steps (model creation, data preparation, the NPO
reference pass, optimizer state, activations): on CPU in a fresh process forked from a preloaded fork server,
peak RSS above the RSS before the model was built; on CUDA ``torch.cuda.max_memory_allocated`` above the
memory allocated before. Arms alternate measurement by measurement.
"""

from __future__ import annotations

import time

from . import common

NAME = "memory"
PRELOAD = ["torch", "transformers", "peft", "hf_unlearn.trainer", "benchmarks.common"]


def lora_config(task: str = "causal_lm"):
    from peft import LoraConfig

    from hf_unlearn.kinds import kind_for_task

    if kind_for_task(task).token_level:
        return LoraConfig(
            task_type="CAUSAL_LM",
            r=8,
            lora_alpha=16,
            target_modules=["c_attn", "c_proj", "c_fc"],
            fan_in_fan_out=True,
        )
    return LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"])


def one_arm(
    method: str,
    lora: bool = False,
    size: str = "gpt2-5m",
    part_batch: int = 4,
    seq_len: int = 128,
    n_retain: int = 64,
    n_forget: int = 64,
    steps: int = 4,
    device: str = "cpu",
    threads: int | None = None,
    bf16: bool = False,
) -> dict:
    """Peak memory of one short unlearning run (call it in a fresh process on CPU)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    vocab = common.GPT2_SIZES[size][0]
    rows_r = common.random_lm_rows(n_retain, seq_len, vocab, seed=1)
    rows_f = common.random_lm_rows(n_forget, seq_len, vocab, seed=2)
    tag = f"{method}{'_lora' if lora else ''}"
    args = common.unlearning_config(
        common.WORK_DIR / NAME / tag,
        method=method,
        device=device,
        max_steps=steps,
        per_device_train_batch_size=part_batch,
        bf16=bf16,
    )
    build = lambda: common.gpt2(size, n_positions=seq_len)  # noqa: E731
    return train_peak(tag, device, build, args, rows_f, rows_r, lora_config() if lora else None)


def train_peak(tag: str, device: str, build_model, args, rows_f, rows_r, peft_config=None) -> dict:
    """Peak memory (above the memory before ``build_model()``) and wall time of one ``UnlearningTrainer`` run
    on ``rows_f`` / ``rows_r``: model creation, data preparation, the passes before training, optimizer state,
    activations."""
    from hf_unlearn import UnlearningTrainer

    start = time.perf_counter()
    with common.PeakMemory(device) as peak:
        model = build_model()
        trainer = UnlearningTrainer(
            model, args, forget_dataset=rows_f, retain_dataset=rows_r, peft_config=peft_config
        )
        common.quiet(trainer).train()
        trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    out = {
        "arm": tag,
        "peak_bytes": int(peak.peak),
        "base_bytes": int(peak.base),
        "trainable_params": int(trainable),
        "n_params": common.n_params(model),
        "seconds": time.perf_counter() - start,
    }
    del trainer, model
    return out


def measure(
    arms: dict[str, dict],
    repeats: int = 5,
    device: str = "cpu",
    threads: int | None = None,
    **kwargs,
) -> dict[str, list[dict]]:
    """``{arm: [one_arm result per repeat]}``, arms alternating (rotated order each repeat)."""
    names = list(arms)
    jobs = []
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        jobs += [(name, {**kwargs, **arms[name], "device": device, "threads": threads}) for name in order]
    if device == "cpu":
        from benchmarks.memory import one_arm as fn  # by module name, also when this file runs as __main__

        results = common.in_fresh_process(fn, [kw for _, kw in jobs], preload=PRELOAD)
    else:
        import gc

        import torch

        results = []
        for _, kw in jobs:
            results.append(one_arm(**kw))
            gc.collect()
            torch.cuda.empty_cache()
    out: dict[str, list[dict]] = {name: [] for name in names}
    for (name, _), res in zip(jobs, results):
        out[name].append(res)
    return out


def summarize(samples: dict[str, list[dict]]) -> dict:
    peaks = {name: [r["peak_bytes"] for r in rows] for name, rows in samples.items()}
    out = {"peak_bytes": peaks, "median_peak_bytes": {n: common.median(v) for n, v in peaks.items()}}
    out["ratios"] = {}
    for num, den in (("npo", "ft"), ("ft_lora", "ft"), ("npo_lora", "ft_lora")):
        if num in peaks and den in peaks:
            out["ratios"][f"{num}/{den}"] = common.ratio_stats(peaks[num], peaks[den])
    out["trainable_params"] = {n: rows[0]["trainable_params"] for n, rows in samples.items()}
    return out


ARMS = {
    "ft": {"method": "ft"},
    "npo": {"method": "npo"},
    "ft_lora": {"method": "ft", "lora": True},
    "npo_lora": {"method": "npo", "lora": True},
}


def targets_of(summary: dict, prefix: str = "") -> list[dict]:
    rows = []
    stats = summary["ratios"]["npo/ft"]
    rows.append(
        common.target(
            f"{prefix}npo/ft",
            "peak memory of an NPO run / an ft run (same model, batches and steps)",
            stats["ratio"],
            1.10,
            peaks_bytes=summary["peak_bytes"]["npo"],
            baseline_peaks_bytes=summary["peak_bytes"]["ft"],
            paired_ratios=stats["paired_ratios"],
        )
    )
    if "ft_lora/ft" in summary["ratios"]:
        stats = summary["ratios"]["ft_lora/ft"]
        rows.append(
            common.target(
                f"{prefix}ft_lora/ft (reported)",
                "peak memory of LoRA (r=8) ft / full-weight ft (no target; reported, must be <= 1)",
                stats["ratio"],
                1.0,
                peaks_bytes=summary["peak_bytes"]["ft_lora"],
                baseline_peaks_bytes=summary["peak_bytes"]["ft"],
                paired_ratios=stats["paired_ratios"],
            )
        )
    return rows


def table_of(summary: dict) -> str:
    rows = [
        {
            "arm": name,
            "median peak (MiB)": summary["median_peak_bytes"][name] / 2**20,
            "min (MiB)": min(v) / 2**20,
            "max (MiB)": max(v) / 2**20,
            "trainable params": summary["trainable_params"][name],
        }
        for name, v in summary["peak_bytes"].items()
    ]
    return common.markdown_table(
        rows, ["median peak (MiB)", "min (MiB)", "max (MiB)", "trainable params"], "arm"
    )


def run(quick: bool = False, threads: int | None = None) -> dict:
    threads = common.set_threads(threads or common.default_threads())
    start = time.perf_counter()
    arms = {k: v for k, v in ARMS.items() if not quick or k in ("ft", "npo")}
    samples = measure(arms, repeats=5, threads=threads, steps=2 if quick else 4)
    summary = summarize(samples)
    notes = [
        "Tiny GPT-2 (gpt2-5m: 5.3M parameters), 4 retain + 4 forget sequences of 128 tokens per step, 64 + 64 "
        "examples, AdamW (fused); per_device_eval_batch_size left at its default (8) for the NPO reference pass.",
        "CPU peak = peak RSS (VmHWM, reset via /proc/self/clear_refs) above the RSS before the model was built, in "
        "a fresh process per measurement (glibc MALLOC_MMAP_THRESHOLD_=65536 so freed tensors leave the RSS).",
    ]
    return common.write_cpu_result(
        NAME,
        targets_of(summary),
        start,
        quick,
        details={"samples": samples, "summary": summary},
        tables=[{"title": "Peak memory per arm (CPU)", "markdown": table_of(summary)}],
        notes=notes,
    )


if __name__ == "__main__":
    common.cli(run)
