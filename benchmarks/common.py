"""Shared machinery of the benchmarks: machine description, interleaved timing, peak memory, result files,
the generated README, and the small models and data every benchmark uses.

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

import datetime as _dt
import json
import math
import os
import platform
import re
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
RESULTS_DIR = ROOT / "results"
WORK_DIR = ROOT / "_work"  # scratch: scenario caches, trainer output dirs (git-ignored)
README = ROOT / "README.md"
SCENARIO_CACHE = WORK_DIR / "scenarios"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("DATASETS_VERBOSITY", "error")


# -- machine -----------------------------------------------------------------------------------------------
def default_threads() -> int:
    """One thread unless ``--threads`` says otherwise: single-threaded ratios are the most reproducible, and on a
    shared machine a multi-threaded op waits for its slowest thread (measured here under load: a 5.3M-element
    ``mul_`` took 1.7 ms on one thread and 8 ms on two). On a dedicated machine pass ``--threads N``."""
    return 1


def physical_cores() -> int | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    pairs = set(re.findall(r"physical id\s*:\s*(\d+).*?core id\s*:\s*(\d+)", text, flags=re.S))
    return len(pairs) or None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def set_threads(threads: int) -> int:
    import torch

    torch.set_num_threads(threads)
    return torch.get_num_threads()


def machine_info(device: str = "cpu") -> dict:
    """What the numbers were measured on."""
    import torch
    import transformers

    info = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical_cores(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# -- timing ------------------------------------------------------------------------------------------------
def interleaved_times(
    arms: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    inner: int = 1,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each arm: ``warmup`` uncounted rounds, then ``repeats`` rounds in which every arm
    runs ``inner`` times back to back; the arm order rotates every round. Returns ``{arm: [seconds, ...]}``."""
    sync = sync or (lambda: None)
    names = list(arms)
    for _ in range(warmup):
        for name in names:
            for _ in range(inner):
                arms[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            sync()
            start = time.perf_counter()
            for _ in range(inner):
                arms[name]()
            sync()
            times[name].append((time.perf_counter() - start) / inner)
    return times


def ratio_stats(numerator: list[float], denominator: list[float]) -> dict:
    """Paired (per-repeat) ratios of two interleaved arms: the median paired ratio is the reported figure."""
    pairs = [a / b for a, b in zip(numerator, denominator) if b > 0]
    return {
        "ratio": statistics.median(pairs),
        "ratio_of_medians": statistics.median(numerator) / statistics.median(denominator),
        "paired_ratios": [round(x, 5) for x in pairs],
        "ratio_min": min(pairs),
        "ratio_max": max(pairs),
        "median_s": statistics.median(numerator),
        "baseline_median_s": statistics.median(denominator),
        "repeats_s": [round(x, 6) for x in numerator],
        "baseline_repeats_s": [round(x, 6) for x in denominator],
    }


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- targets and result files ------------------------------------------------------------------------------
def target(
    name: str,
    description: str,
    measured: float | None,
    goal: float,
    op: str = "<=",
    unit: str = "ratio",
    **details: Any,
) -> dict:
    """One target row: ``measured op goal`` passes. ``details`` go into the JSON (repeat times, sizes...)."""
    if measured is None or (isinstance(measured, float) and not math.isfinite(measured)):
        passed = False
    elif op == "<=":
        passed = measured <= goal
    elif op == ">=":
        passed = measured >= goal
    elif op == "abs<=":
        passed = abs(measured) <= goal
    else:
        raise ValueError(f"unknown comparison {op!r}")
    return {
        "name": name,
        "description": description,
        "target": goal,
        "op": op,
        "unit": unit,
        "measured": measured,
        "pass": bool(passed),
        **details,
    }


def write_result(
    name: str,
    targets: list[dict],
    machine: dict,
    *,
    quick: bool = False,
    seconds: float | None = None,
    details: dict | None = None,
    tables: list[dict] | None = None,
    notes: list[str] | None = None,
    results_dir: Path | None = None,
) -> Path:
    """Write ``results/<name>.json``. ``tables``: ``[{"title", "markdown"}]`` copied into the README."""
    results_dir = Path(results_dir or RESULTS_DIR)
    results_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "quick": quick,
        "machine": machine,
        "seconds": None if seconds is None else round(seconds, 2),
        "targets": targets,
        "passed": sum(t["pass"] for t in targets),
        "total": len(targets),
        "notes": notes or [],
        "tables": tables or [],
        "details": details or {},
    }
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(_json_safe(payload), indent=1) + "\n")
    return path


def validate_result(payload: dict) -> None:
    """Raise ``ValueError`` unless ``payload`` has the shape ``write_result`` writes."""
    for key in ("benchmark", "machine", "targets", "quick"):
        if key not in payload:
            raise ValueError(f"result lacks {key!r}")
    for key in ("cpu_model", "torch", "torch_threads", "device", "date"):
        if key not in payload["machine"]:
            raise ValueError(f"machine description lacks {key!r}")
    for row in payload["targets"]:
        for key in ("name", "target", "op", "measured", "pass"):
            if key not in row:
                raise ValueError(f"target row lacks {key!r}: {row}")
        if not isinstance(row["pass"], bool):
            raise ValueError("'pass' must be a boolean")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _json_safe(value.item())
    return value


def load_results(results_dir: Path | None = None) -> dict[str, dict]:
    results_dir = Path(results_dir or RESULTS_DIR)
    out = {}
    for path in sorted(results_dir.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except ValueError:
            continue
    return out


# -- README ------------------------------------------------------------------------------------------------
ORDER = [
    "step_overhead",
    "memory",
    "cost_vs_retrain",
    "quality",
    "tofu",
    "generation_cost",
    "rcd_cost",
    "scaling",
    "gpu",
    "sweep",
    "sweep_polarity",
]

INTRO = """# Benchmarks

Speed, memory and unlearning quality of `hf_unlearn`, each against a stated target. Generated by
`python -m benchmarks.run` from the JSON files in `benchmarks/results/` (do not edit by hand).

```bash
python -m benchmarks.run                      # everything on CPU (~50 min on 2 idle cores)
python -m benchmarks.run --quick              # smaller, faster (< 3 min); numbers are rougher
python -m benchmarks.run --only step_overhead,memory
python -m benchmarks.run --readme-only        # regenerate this file from results/*.json
python -m benchmarks.sweep                    # hyperparameter sweep (results/sweep.json)
python -m benchmarks.sweep --methods ieu --axes forget_loss_cap_from_eval,ieu_decay --passes 1 --name sweep_cap --scenarios authors-qa,news-gpt2,polarity-minilm
python -m benchmarks.gpu                      # on a CUDA machine (results/gpu.json)
```

How the numbers are taken: every figure is a ratio of two arms measured in one process (the arm and its
baseline), interleaved repeat by repeat with a rotating order after warm-up, and the median of the per-repeat
ratios is reported (>= 5 repeats; each JSON keeps every repeat's time). `torch.set_num_threads` is fixed
(default 1: on a shared machine multi-threaded ops stall on their slowest thread; `--threads N` on a dedicated one)
and recorded. CPU peak memory is the peak resident set size above the resident size before the model was built,
one fresh process per measurement; CUDA peak memory is `torch.cuda.max_memory_allocated`. On a shared machine
absolute times move with the load; the ratios are what the targets are about.
"""


def render_readme(results_dir: Path | None = None, path: Path | None = None) -> str:
    results = load_results(results_dir)
    names = [n for n in ORDER if n in results] + sorted(n for n in results if n not in ORDER)
    lines = [INTRO]
    summary = ["## Summary", "", "| benchmark | passed | machine | date | mode |", "|---|---:|---|---|---|"]
    for name in names:
        r = results[name]
        summary.append(
            f"| [{name}](#{name.replace('_', '-')}) | {r.get('passed', 0)}/{r.get('total', 0)} | "
            f"{_machine_short(r['machine'])} | {r['machine'].get('date', '')[:10]} | "
            f"{'quick' if r.get('quick') else 'full'} |"
        )
    lines += summary + [""]
    for name in names:
        r = results[name]
        lines += [f"## {name}", "", f"Machine: {_machine_long(r['machine'])}."]
        if r.get("seconds") is not None:
            lines[-1] += (
                f" Benchmark wall time: {r['seconds']:.0f} s{' (quick mode)' if r.get('quick') else ''}."
            )
        lines.append("")
        if r["targets"]:
            lines += ["| target | what | goal | measured | result |", "|---|---|---:|---:|---|"]
            for t in r["targets"]:
                goal = f"{_op(t['op'])} {_fmt(t['target'])}"
                lines.append(
                    f"| {t['name']} | {t.get('description', '')} | {goal} | {_fmt(t['measured'])} | "
                    f"{'pass' if t['pass'] else '**miss**'} |"
                )
            lines.append("")
        for table in r.get("tables", []):
            lines += [f"**{table['title']}**", "", table["markdown"], ""]
        for note in r.get("notes", []):
            lines.append(f"* {note}")
        if r.get("notes"):
            lines.append("")
    text = "\n".join(lines).rstrip() + "\n"
    Path(path or README).write_text(text)
    return text


def _op(op: str) -> str:
    return {"<=": "≤", ">=": "≥", "abs<=": "|x| ≤"}.get(op, op)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000 or abs(value) < 1e-3:
            return f"{value:.3g}"
        return f"{value:.3f}"
    return str(value)


def _machine_short(m: dict) -> str:
    if m.get("gpu"):
        return f"{m['gpu']}"
    return f"{m.get('cpu_model', '?')}, threads: {m.get('torch_threads')}"


def _machine_long(m: dict) -> str:
    parts = [
        f"{m.get('cpu_model', '?')} ({m.get('physical_cores') or '?'} physical / {m.get('logical_cores')} logical cores)",
        f"torch {m.get('torch')}, torch threads: {m.get('torch_threads')}",
        f"transformers {m.get('transformers')}",
        f"device {m.get('gpu') or m.get('device')}",
    ]
    if m.get("load_average_at_start"):
        parts.append(f"load average at start {m['load_average_at_start']}")
    return ", ".join(parts)


def markdown_table(rows: list[dict], columns: list[str], first: str = "model") -> str:
    """Rows of dicts -> a markdown table (``first`` is the key of the row label)."""
    head = "| " + " | ".join([first] + columns) + " |"
    sep = "|---|" + "---:|" * len(columns)
    body = [
        "| " + " | ".join([str(r.get(first, ""))] + [_fmt(r.get(c)) for c in columns]) + " |" for r in rows
    ]
    return "\n".join([head, sep, *body])


# -- memory ------------------------------------------------------------------------------------------------
def _status_kb(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+)\s+kB", text, flags=re.M)
    return int(match.group(1)) if match else 0


def rss_bytes() -> int:
    """Current resident set size."""
    return _status_kb("VmRSS") * 1024


def reset_peak_rss() -> bool:
    """Reset the peak RSS (``VmHWM``) to the current RSS (Linux >= 4.0). False where not supported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """Peak RSS since the process start or the last ``reset_peak_rss``."""
    hwm = _status_kb("VmHWM")
    if hwm:
        return hwm * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


class PeakMemory:
    """Context manager: ``.peak`` = peak bytes above the level at entry (CPU RSS or CUDA allocated)."""

    def __init__(self, device: str = "cpu"):
        self.device = device
        self.peak = 0
        self.base = 0

    def __enter__(self):
        import gc

        gc.collect()
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            reset_peak_rss()
            self.base = rss_bytes()
        return self

    def __exit__(self, *exc):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.peak = peak_rss_bytes() - self.base
        return False


def in_fresh_process(fn: Callable, kwargs_list: list[dict], preload: list[str] | None = None) -> list[Any]:
    """Run ``fn(**kwargs)`` for each item, each in a fresh process forked from a preloaded fork server (so that
    a peak RSS belongs to one measurement only), one at a time, in the given order."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # Freed tensors must go back to the OS (mmap) rather than stay in glibc's heap between phases.
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(preload or [])
    results = []
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx, max_tasks_per_child=1) as pool:
        for kwargs in kwargs_list:
            results.append(pool.submit(fn, **kwargs).result())
    return results


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
    return int(sum(p.numel() for p in model.parameters()))


def random_lm_rows(n: int, seq_len: int, vocab: int, seed: int) -> list[dict]:
    """Pre-tokenized causal-LM rows of random token ids (ids 1..vocab-1; 0 is the pad id)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(1, vocab, size=(n, seq_len))
    return [{"input_ids": row.tolist()} for row in ids]


def unlearning_config(output_dir: str | Path, method: str, device: str = "cpu", **kwargs: Any):
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


def quiet(trainer):
    """Stop a trainer from printing its logs (``PrinterCallback``); the log history is still kept."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    return trainer


def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def write_cpu_result(name: str, targets: list[dict], start: float, quick: bool, **sections: Any) -> dict:
    """``write_result`` for a CPU benchmark that started at ``start`` (``time.perf_counter()``); returns
    ``{"path": ...}``. ``sections``: ``details``, ``tables``, ``notes``."""
    path = write_result(
        name, targets, machine_info("cpu"), quick=quick, seconds=time.perf_counter() - start, **sections
    )
    return {"path": str(path)}


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
