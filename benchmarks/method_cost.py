"""``method_cost``: step time and peak memory of each LM method next to ``grad_diff``.

Each method trains a GPT-2 of ~5M parameters (hidden 256, 4 layers, built from config) for a fixed number of
steps on fictitious-people QA (``testing.fictitious_qa_task``: prompt/completion rows, so that ``idk_*`` get
their default refusals), in a fresh process each (one peak RSS per measurement), full weights and LoRA,
repeats interleaved. Reported per method: seconds per optimizer step of ``train()`` and the peak RSS growth,
both as ratios to ``grad_diff`` in the same arm. ``undial`` and ``rmu`` run the frozen original every step:
with full weights the trainer keeps a frozen copy (one more set of weights), with LoRA the adapters-disabled
model serves (no copy).
"""

from __future__ import annotations

import statistics
import time

from . import common

NAME = "method_cost"
METHODS = ["grad_diff", "npo", "simnpo", "idk_nll", "idk_dpo", "wga", "satimp", "undial", "rmu"]
PRELOAD = ["torch", "transformers", "hf_unlearn", "peft"]


def one_arm(method: str, lora: bool, steps: int, threads: int | None = None) -> dict:
    """One run in this process: train() seconds per step and the peak RSS growth over the process' base."""
    import torch

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.testing.fixtures import fictitious_qa_task
    from hf_unlearn.tiny import tiny_causal_lm

    if threads:
        torch.set_num_threads(threads)
    task = fictitious_qa_task(n_people=60, seed=0)
    with common.PeakMemory("cpu") as peak:
        model = tiny_causal_lm(task.tokenizer, hidden_size=256, num_layers=4)
        args = common.unlearning_config(
            common.WORK_DIR / NAME / f"{method}_{lora}",
            method=method,
            max_steps=steps,
            per_device_train_batch_size=8,
        )
        peft = None
        if lora:
            from peft import LoraConfig

            peft = LoraConfig(task_type="CAUSAL_LM", r=8, target_modules=["c_attn"], fan_in_fan_out=True)
        trainer = UnlearningTrainer(model, args, **common.task_datasets(task), peft_config=peft)
        start = time.perf_counter()
        common.quiet(trainer).train()
        seconds = time.perf_counter() - start
    return {"method": method, "lora": lora, "step_seconds": seconds / steps, "peak_bytes": int(peak.peak)}


def tables_of(details: dict[str, dict], repeats: int) -> list[dict]:
    """One table per arm: ms per step and peak RSS growth, each also as a ratio to ``grad_diff``."""
    tables = []
    for arm, med in details.items():
        base = med["grad_diff"]
        rows = [
            {
                "method": m,
                "ms_per_step": round(1000 * v["step_seconds"], 1),
                "step_vs_grad_diff": round(v["step_seconds"] / base["step_seconds"], 3),
                "peak": common.fmt_bytes(v["peak_bytes"]),
                "peak_vs_grad_diff": round(v["peak_bytes"] / base["peak_bytes"], 3),
            }
            for m, v in med.items()
        ]
        columns = ["ms_per_step", "step_vs_grad_diff", "peak", "peak_vs_grad_diff"]
        title = f"{arm} ({'LoRA r=8' if arm == 'lora' else 'full weights'}; median of {repeats})"
        tables.append({"title": title, "markdown": common.markdown_table(rows, columns, first="method")})
    return tables


def run(quick: bool = False, threads: int | None = None) -> dict:
    report = common.Report(NAME, quick, threads)
    repeats, steps = (1, 5) if quick else (3, 30)
    jobs = []
    for r in range(repeats):
        order = METHODS[r % len(METHODS) :] + METHODS[: r % len(METHODS)]
        jobs += [
            dict(method=m, lora=lora, steps=steps, threads=report.threads)
            for lora in (False, True)
            for m in order
        ]
    from benchmarks.method_cost import one_arm as fn  # by module name, also when run as __main__

    results = common.in_fresh_process(fn, jobs, preload=PRELOAD)
    for lora in (False, True):
        mine = [r for r in results if r["lora"] == lora]
        report.details["lora" if lora else "full"] = {
            m: {
                "step_seconds": statistics.median(r["step_seconds"] for r in mine if r["method"] == m),
                "peak_bytes": statistics.median(r["peak_bytes"] for r in mine if r["method"] == m),
            }
            for m in METHODS
        }
    report.tables = tables_of(report.details, repeats)
    report.notes = [
        f"GPT-2 hidden 256, 4 layers, fictitious-QA rows (batches of 8 forget + 8 retain), {steps} steps per run, "
        "each run in a fresh process; peak = RSS growth over the process after imports."
    ]
    return report.write()


if __name__ == "__main__":
    common.cli(run)
