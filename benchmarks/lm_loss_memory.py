"""``lm_loss_memory`` (issue 15): peak memory of an unlearning step on a 128k-vocabulary LM, full vs chunked logits.

A bf16 Llama-shaped causal LM built from config (vocabulary 128,256 as Llama 3's, hidden 256, 2 layers, untied
embeddings: the LM head is most of the model and its logits the largest tensor of a step) takes one optimizer
step of ``grad_diff`` and of ``npo`` on 8 forget + 8 retain sequences of 256 random tokens, with the LM losses on
the full ``[B, T, V]`` logits (``lm_loss_chunk_size=0``, as before) and chunked (the default), next to one step
of a plain ``transformers.Trainer`` on the same 16 sequences (the model's own causal-LM loss). Each arm runs in a
fresh process (``common.in_fresh_process``); its figure is the peak RSS growth during ``train()`` (optimizer
state, the passes before the first step, the step) above the RSS once the model and trainer are built
(``common.PeakMemory``). Target: a chunked step grows the peak by at most 0.5x the plain Trainer's step.
"""

from __future__ import annotations

import statistics
import time

from . import common

NAME = "lm_loss_memory"
PRELOAD = ["torch", "transformers", "hf_unlearn.trainer", "benchmarks.common"]
VOCAB, HIDDEN, LAYERS, SEQ_LEN, PART_BATCH = 128_256, 256, 2, 256, 8
ARMS = {
    "trainer": {"method": None, "chunk": 0},
    "grad_diff_full": {"method": "grad_diff", "chunk": 0},
    "grad_diff_chunked": {"method": "grad_diff", "chunk": 256},
    "npo_full": {"method": "npo", "chunk": 0},
    "npo_chunked": {"method": "npo", "chunk": 256},
}


def llama_128k(seed: int = 0):
    """The bf16 Llama-shaped model of this benchmark (66M parameters, 65.7M of them embeddings and LM head)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=SEQ_LEN,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).to(torch.bfloat16)


def _plain_trainer(model, rows: list[dict], workdir):
    """A ``transformers.Trainer`` taking one step on all of ``rows`` at once (labels = the inputs)."""
    import torch
    from transformers import Trainer, TrainingArguments

    data = [{"input_ids": torch.tensor(r["input_ids"]), "labels": torch.tensor(r["input_ids"])} for r in rows]
    args = TrainingArguments(
        output_dir=str(workdir),
        per_device_train_batch_size=len(rows),
        max_steps=1,
        learning_rate=1e-4,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
        seed=0,
        dataloader_num_workers=0,
    )
    return Trainer(model=model, args=args, train_dataset=data)


def one_arm(arm: str, threads: int | None = None) -> dict:
    """Peak RSS growth and seconds of one ``train()`` of a single step (call it in a fresh process)."""
    import torch

    from hf_unlearn import UnlearningTrainer

    if threads:
        torch.set_num_threads(threads)
    method, chunk = ARMS[arm]["method"], ARMS[arm]["chunk"]
    retain = common.random_lm_rows(PART_BATCH, SEQ_LEN, VOCAB, seed=1)
    forget = common.random_lm_rows(PART_BATCH, SEQ_LEN, VOCAB, seed=2)
    model = llama_128k()
    workdir = common.WORK_DIR / NAME / arm
    if method is None:
        trainer = _plain_trainer(model, retain + forget, workdir)
    else:
        args = common.unlearning_config(
            workdir,
            method=method,
            max_steps=1,
            per_device_train_batch_size=PART_BATCH,
            per_device_eval_batch_size=PART_BATCH,
            lm_loss_chunk_size=chunk,
        )
        trainer = UnlearningTrainer(model, args, forget_dataset=forget, retain_dataset=retain)
        assert (trainer.lm_heads is not None) == bool(chunk)
    common.quiet(trainer)
    start = time.perf_counter()
    with common.PeakMemory("cpu") as peak:
        trainer.train()
    return {
        "arm": arm,
        "peak_growth_bytes": int(peak.peak),
        "base_bytes": int(peak.base),
        "train_seconds": time.perf_counter() - start,
        "n_params": common.n_params(model),
    }


def summarize(samples: dict[str, list[dict]]) -> dict:
    """Median peak growth and seconds per arm, and each as a ratio to the plain Trainer's."""
    med = {
        arm: {
            "peak_growth_bytes": statistics.median(r["peak_growth_bytes"] for r in rows),
            "train_seconds": statistics.median(r["train_seconds"] for r in rows),
        }
        for arm, rows in samples.items()
    }
    base = med["trainer"]
    for values in med.values():
        values["peak_vs_trainer"] = values["peak_growth_bytes"] / base["peak_growth_bytes"]
        values["seconds_vs_trainer"] = values["train_seconds"] / base["train_seconds"]
    return med


def targets_of(med: dict) -> list[dict]:
    return [
        common.target(
            f"{method} chunked / Trainer",
            f"peak RSS growth of one {method} step with chunked LM losses / one plain Trainer step on the same "
            "16 sequences (bf16, vocabulary 128k)",
            med[f"{method}_chunked"]["peak_vs_trainer"],
            0.5,
            full_logits_ratio=med[f"{method}_full"]["peak_vs_trainer"],
        )
        for method in ("grad_diff", "npo")
    ]


def table_of(med: dict) -> str:
    rows = [
        {
            "arm": arm,
            "peak growth (MiB)": round(v["peak_growth_bytes"] / 2**20),
            "vs Trainer": round(v["peak_vs_trainer"], 3),
            "train() s": round(v["train_seconds"], 1),
            "s vs Trainer": round(v["seconds_vs_trainer"], 2),
        }
        for arm, v in med.items()
    ]
    return common.markdown_table(
        rows, ["peak growth (MiB)", "vs Trainer", "train() s", "s vs Trainer"], "arm"
    )


def run(quick: bool = False, threads: int | None = None) -> dict:
    threads = common.set_threads(threads or common.default_threads())
    start = time.perf_counter()
    repeats = 1 if quick else 2
    names = list(ARMS)
    jobs = []
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        jobs += [{"arm": arm, "threads": threads} for arm in order]
    from benchmarks.lm_loss_memory import one_arm as fn  # by module name, also when run as __main__

    results = common.in_fresh_process(fn, jobs, preload=PRELOAD)
    samples = {arm: [r for r in results if r["arm"] == arm] for arm in names}
    med = summarize(samples)
    notes = [
        f"Llama from config: vocabulary {VOCAB}, hidden {HIDDEN}, {LAYERS} layers, untied embeddings, bf16 weights "
        f"({results[0]['n_params'] / 1e6:.1f}M parameters); {PART_BATCH} forget + {PART_BATCH} retain sequences of "
        f"{SEQ_LEN} random tokens (every token a target); AdamW; one step; median of {repeats} fresh processes.",
        "Peak = peak RSS (VmHWM, reset through /proc/self/clear_refs) during train() above the RSS after the model "
        "and trainer were built; train() includes the passes before the first step (grad_diff's forget-loss cap, "
        "NPO's reference log-probs, both without gradients) and AdamW's state.",
        "Chunked = lm_loss_chunk_size=256 (the default): the LM head and the per-token losses over 256 tokens at a "
        "time, recomputed in the backward pass; full = lm_loss_chunk_size=0 (the earlier behaviour).",
    ]
    return common.write_cpu_result(
        NAME,
        targets_of(med),
        start,
        quick,
        details={"samples": samples, "median": med},
        tables=[{"title": "Peak memory growth and train() time per arm (CPU)", "markdown": table_of(med)}],
        notes=notes,
    )


if __name__ == "__main__":
    common.cli(run)
