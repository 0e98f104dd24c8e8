"""Shared machinery of the benchmarks: the small models and data every benchmark uses, the ``Report`` a CPU
benchmark fills and writes, and its command line. The rest lives by concern in sibling modules, re-exported
here so that ``common.X`` serves every benchmark: ``paths``, ``machine`` (machine description, threads),
``timing`` (interleaved timing, paired ratios), ``peak_memory``, ``result_files`` (targets, result JSON) and
``readme`` (the generated README, markdown tables).

Conventions (every benchmark follows them):

* A figure is a **ratio** of two arms measured in one process run (the arm and its baseline), so that the
  machine's speed cancels out. Arms are interleaved repeat by repeat, with the order rotated each repeat, so
  that drifting machine load hits both alike; the reported value is the median over repeats of the per-repeat
  ratio (the ratio of the medians is stored too), after warm-up repeats that are not counted.
* ``torch.set_num_threads`` is fixed (``--threads``, default 1, see ``default_threads``) and recorded.
* Peak memory on CPU is the peak resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``) above
  the resident size just before the model was built, in a fresh process per measurement (glibc's mmap
  threshold pinned so that freed tensors go back to the OS); on CUDA it is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .machine import cpu_model, default_threads, machine_info, physical_cores, set_threads
from .paths import README, RESULTS_DIR, ROOT, SCENARIO_CACHE, WORK_DIR
from .peak_memory import PeakMemory, fmt_bytes, in_fresh_process, peak_rss_bytes, reset_peak_rss, rss_bytes
from .readme import INTRO, ORDER, markdown_table, render_readme
from .result_files import (
    load_results,
    ratio_target,
    target,
    validate_result,
    write_cpu_result,
    write_result,
)
from .timing import interleaved_times, median, ratio_stats

__all__ = [
    "GPT2_SIZES",
    "INTRO",
    "ORDER",
    "README",
    "RESULTS_DIR",
    "ROOT",
    "SCENARIO_CACHE",
    "WORK_DIR",
    "PeakMemory",
    "Report",
    "cli",
    "cpu_model",
    "default_threads",
    "fmt_bytes",
    "gpt2",
    "in_fresh_process",
    "interleaved_times",
    "load_results",
    "machine_info",
    "markdown_table",
    "median",
    "n_params",
    "peak_rss_bytes",
    "physical_cores",
    "quiet",
    "random_lm_rows",
    "ratio_stats",
    "ratio_target",
    "render_readme",
    "reset_peak_rss",
    "rss_bytes",
    "set_threads",
    "target",
    "task_datasets",
    "unlearning_config",
    "validate_result",
    "write_cpu_result",
    "write_result",
]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DATASETS_VERBOSITY", "error")


# -- models and data ---------------------------------------------------------------------------------------
GPT2_SIZES = {
    # name: (vocab, n_embd, n_layer, n_head)
    "gpt2-1m": (4096, 128, 2, 2),
    "gpt2-5m": (8192, 256, 4, 4),
    "gpt2-20m": (16384, 384, 8, 6),
    "gpt2-124m": (50257, 768, 12, 12),
}


def gpt2(size: str = "gpt2-5m", n_positions: int = 128, seed: int = 0):
    """A GPT-2 causal LM built from config (no tokenizer: the benchmarks feed random token ids)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    vocab, n_embd, n_layer, n_head = GPT2_SIZES[size]
    config = GPT2Config(
        vocab_size=vocab,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_positions=n_positions,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        loss_type="ForCausalLM",
    )
    torch.manual_seed(seed)
    return GPT2LMHeadModel(config)


def n_params(model) -> int:
    """The model's parameter count."""
    return int(sum(p.numel() for p in model.parameters()))


def random_lm_rows(n: int, seq_len: int, vocab: int, seed: int) -> list[dict]:
    """Pre-tokenized causal-LM rows of random token ids (ids 1..vocab-1; 0 is the pad id)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(n, seq_len))
    return [{"input_ids": row.tolist()} for row in ids]


def unlearning_config(output_dir: str | Path, method: str, device: str = "cpu", **kwargs: Any):
    """An ``UnlearningConfig`` that saves, logs and reports nothing; ``kwargs`` override its defaults."""
    from hf_unlearn import UnlearningConfig

    defaults = dict(
        output_dir=str(output_dir),
        method=method,
        learning_rate=1e-4,
        per_device_train_batch_size=8,
        max_steps=10,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        use_cpu=device == "cpu",
        seed=0,
        dataloader_num_workers=0,
    )
    defaults.update(kwargs)
    return UnlearningConfig(**defaults)


def task_datasets(task) -> dict[str, Any]:
    """``UnlearningTrainer`` keyword arguments for a synthetic task (``hf_unlearn.testing.TextTask``): its forget
    and retain sets, and its tokenizer as the processing class."""
    return {"forget_dataset": task.forget, "retain_dataset": task.retain, "processing_class": task.tokenizer}


def quiet(trainer):
    """Stop a trainer from printing its logs (``PrinterCallback``); the log history is still kept."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


# -- a CPU benchmark's run ---------------------------------------------------------------------------------
class Report:
    """What a CPU benchmark collects while it runs (target rows, tables, notes, details) and writes to
    ``results/<name>.json`` at the end. Creating it fixes the torch threads (``.threads``: the count set) and
    starts the clock of the recorded wall time."""

    def __init__(self, name: str, quick: bool, threads: int | None = None):
        self.name, self.quick = name, quick
        self.threads = set_threads(threads or default_threads())
        self.start = time.perf_counter()
        self.targets: list[dict] = []
        self.tables: list[dict] = []
        self.notes: list[str] = []
        self.details: dict[str, Any] = {}

    def scenarios(
        self, names: Iterable[str], measure: Callable[[str], Any], keep: bool = True
    ) -> Iterator[tuple[str, Any]]:
        """``(name, measure(name))`` per scenario, the result kept as ``details[name]`` unless ``keep`` is
        False; a scenario whose optional extra is missing gets a "skipped" note instead."""
        from hf_unlearn.scenarios import MissingExtraError

        for name in names:
            try:
                result = measure(name)
            except MissingExtraError as err:
                self.notes.append(f"{name} skipped: {err}")
                continue
            if keep:
                self.details[name] = result
            yield name, result

    def write(self) -> dict:
        """Write the result file with the wall time since creation; returns ``{"path": ...}``."""
        return write_cpu_result(
            self.name,
            self.targets,
            self.start,
            self.quick,
            details=self.details,
            tables=self.tables,
            notes=self.notes,
        )


def cli(run: Callable[..., dict], scenarios: bool = False) -> None:
    """The command line shared by the CPU benchmarks: ``--quick``, ``--threads`` (and ``--scenarios A,B``)."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int)
    if scenarios:
        parser.add_argument("--scenarios", help="comma-separated scenario names")
    args = parser.parse_args()
    extra = [args.scenarios.split(",") if args.scenarios else None] if scenarios else []
    print(run(args.quick, args.threads, *extra))
