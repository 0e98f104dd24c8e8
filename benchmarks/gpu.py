"""Target 7 (``gpu``): everything that needs a GPU, in one command that fits a ~10-minute slot on one GPU.

``python -m benchmarks.gpu [--out DIR]`` writes ``DIR/gpu.json`` (default ``benchmarks/results``); about 6 minutes
on an H200, never more than ``--budget`` seconds (default 540). Parts, in the order they run (``--parts``):

* ``llama_steps``: bf16 on a Llama-3.2-1B-shaped model built from ``LlamaConfig`` (1.24B parameters), random
  tokens: tokens/s of an IEU step / a plain ``transformers.Trainer`` step on the same sequences (>= 0.95), and
  the grad_diff/plain and ieu/grad_diff step ratios.
* ``llama_memory``: peak ``torch.cuda.max_memory_allocated`` of npo / ft (<= 1.10) and LoRA / full ft there.
* ``zero3``, ``fsdp2``: every causal-LM method a few steps on a tiny Llama under ``accelerate launch`` with
  ``recipes/accelerate/{deepspeed_zero3,fsdp2}_single_gpu.yaml`` (``benchmarks.gpu_smoke``); without
  ``deepspeed`` (optional) the ZeRO-3 row says so.
* ``smoke``: every method x tiny classifier / GPT-2 x full / LoRA, bf16, in one process.
* ``124m``, ``memory``, ``tiny``: step-overhead ratios and tokens/s on GPT-2 124M and 5M, npo/ft memory on 124M.

Each part runs in a subprocess of its own under a time budget (a crash, a hang or a poisoned CUDA context costs
that part only), a target row per part records its wall time. ``--dry-run``: the same on CPU at toy sizes.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

from . import common, memory, step_overhead
from .gpu_smoke import Context, distributed_smoke, section, smoke, watch

NAME = "gpu"
GPU_BUDGET_S = 540  # the whole run: a 10-minute slot less the machine's start
MIN_PART_S = 30  # a part with less time left is skipped
GRACE_S = 15  # between a part's own deadline and its process being stopped

#: Llama-3.2-1B's shape (1.24B parameters with tied embeddings) and a toy one for ``--dry-run``.
LLAMA_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
LLAMA_SHAPES = {
    "llama-1b": dict(zip(LLAMA_FIELDS, (128256, 2048, 8192, 16, 32)), num_key_value_heads=8),
    "llama-toy": dict(zip(LLAMA_FIELDS, (512, 64, 256, 2, 4)), num_key_value_heads=2),
}
LLAMA_LORA_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# -- Llama-3.2-1B shape --------------------------------------------------------------------------------------
def llama(size: str, seq_len: int, device: str, seed: int = 0):
    """A ``LlamaForCausalLM`` of ``LLAMA_SHAPES[size]`` with tied embeddings, built from config on ``device``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    ids = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    config = LlamaConfig(
        **LLAMA_SHAPES[size], **ids, max_position_embeddings=seq_len, tie_word_embeddings=True
    )
    torch.manual_seed(seed)
    with torch.device(device):
        return LlamaForCausalLM(config)


def _llama_sizes(ctx: Context) -> tuple[str, int, int]:
    """(shape, sequence length, sequences per half batch): 4 retain + 4 forget x 1024 tokens on a GPU."""
    return ("llama-toy", 64, 2) if ctx.dry_run else ("llama-1b", 1024, 4)


def llama_steps(ctx: Context) -> dict:
    """Part ``llama_steps``: interleaved times of a plain ``transformers.Trainer`` step (retain + forget
    sequences concatenated, the model's own loss), a grad_diff step and an IEU step on the same sequences."""
    size, seq_len, half = _llama_sizes(ctx)
    model = llama(size, seq_len, ctx.device)
    n_params, vocab = common.n_params(model), model.config.vocab_size
    rows_r = common.random_lm_rows(4 * half, seq_len, vocab, seed=1)
    rows_f = common.random_lm_rows(4 * half, seq_len, vocab, seed=2)
    workdir = common.WORK_DIR / "gpu_llama_steps"
    trainers = step_overhead._trainers(model, rows_r, rows_f, workdir, ctx.device, ctx.bf16, half, [1], False)
    del model
    paired, plain = step_overhead.device_batches(trainers["grad_diff"], 4, half)
    arms = {n: step_overhead._step_fn(t, plain if n == "plain" else paired) for n, t in trainers.items()}
    repeats, inner = (3, 1) if ctx.dry_run else (7, 3)
    times = common.interleaved_times(arms, repeats=repeats, warmup=1, inner=inner, sync=ctx.sync)
    optimizer = trainers["ieu_k1"].args.optim
    tokens = 2 * half * seq_len
    ratios = {
        "ieu_k1/grad_diff": common.ratio_stats(times["ieu_k1"], times["grad_diff"]),
        "grad_diff/plain": common.ratio_stats(times["grad_diff"], times["plain"]),
        "ieu_k1/plain": common.ratio_stats(times["ieu_k1"], times["plain"]),
    }
    tps = {name: tokens / common.median(t) for name, t in times.items()}
    targets = step_overhead.targets_of({"ratios": ratios}, prefix=f"{size}: ")
    targets.append(
        _throughput_target(f"{size}: tokens/s IEU (k=1) / plain Trainer", ratios, tps, tokens, 0.95)
    )
    rows = [{"arm": k, "step (ms)": common.median(t) * 1e3, "tokens/s": tps[k]} for k, t in times.items()]
    title = (
        f"{size} ({n_params / 1e9:.2f}B parameters, {'bf16 autocast' if ctx.bf16 else 'fp32'}): step times"
    )
    details = {
        "model": size,
        "shape": LLAMA_SHAPES[size],
        "n_params": n_params,
        "batch": f"{half} retain + {half} forget = {2 * half} x {seq_len} tokens per step",
        "optimizer": optimizer,
        "times": times,
        "ratios": ratios,
        "tokens_per_second": tps,
    }
    table = {"title": title, "markdown": common.markdown_table(rows, ["step (ms)", "tokens/s"], first="arm")}
    return section(targets, [table], details, summary=f"tokens/s {_rounded(tps, 0)}")


def llama_memory_arm(method: str, ctx: Context, lora: bool = False, steps: int = 3) -> dict:
    """Peak memory above the level before the model was built of one short unlearning run of the Llama shape
    (model, NPO reference pass, optimizer state, activations); ``memory.one_arm``'s record."""
    from peft import LoraConfig

    size, seq_len, half = _llama_sizes(ctx)
    vocab = LLAMA_SHAPES[size]["vocab_size"]
    rows_r = common.random_lm_rows(4 * half, seq_len, vocab, seed=1)
    rows_f = common.random_lm_rows(4 * half, seq_len, vocab, seed=2)
    tag = f"{method}{'_lora' if lora else ''}"
    peft = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, target_modules=LLAMA_LORA_MODULES)
    args = common.unlearning_config(
        common.WORK_DIR / "gpu_llama_memory" / tag,
        method=method,
        device=ctx.device,
        max_steps=steps,
        per_device_train_batch_size=half,
        per_device_eval_batch_size=half,
        bf16=ctx.bf16,
    )
    build = lambda: llama(size, seq_len, ctx.device)  # noqa: E731
    out = memory.train_peak(tag, ctx.device, build, args, rows_f, rows_r, peft if lora else None)
    ctx.free_memory()
    return out


def llama_memory(ctx: Context) -> dict:
    """Part ``llama_memory``: peak memory of ft, npo, ft + LoRA and npo + LoRA (r=8, every projection) on the
    Llama shape, arms alternating."""
    size = _llama_sizes(ctx)[0]
    repeats = 1 if ctx.quick else 2  # the CUDA allocator's peak repeats to the byte; the second shows it does
    names = list(memory.ARMS)
    samples: dict[str, list[dict]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(llama_memory_arm(ctx=ctx, **memory.ARMS[name]))
    return _memory_section(size, samples, "CPU in-process RSS (dry run)" if ctx.dry_run else "CUDA")


# -- GPT-2 parts ----------------------------------------------------------------------------------------------
def _step_overhead(ctx: Context, size: str, label: str, workdir: str, **sizes) -> tuple[dict, list[dict]]:
    result = step_overhead.measure(
        device=ctx.device,
        bf16=ctx.bf16,
        every=(1, 4, 8),
        workdir=common.WORK_DIR / workdir,
        size=size,
        **sizes,
    )
    tables = step_overhead.tables_of(result, f"{'CUDA bf16' if ctx.bf16 else 'CPU dry run'}, {label}")
    return result, tables


def tiny(ctx: Context) -> dict:
    """Part ``tiny``: the step-overhead ratios on GPT-2 5M, where the IEU hook weighs most."""
    full = dict(repeats=5 if ctx.quick else 9, inner=10, warmup=2)
    sizes = ("gpt2-1m", dict(repeats=3, inner=1, warmup=1)) if ctx.dry_run else ("gpt2-5m", full)
    result, tables = _step_overhead(ctx, sizes[0], "tiny GPT-2", "gpu_step", **sizes[1])
    ratios = {k: v["ratio"] for k, v in result["ratios"].items()}
    return section(
        step_overhead.targets_of(result, prefix="tiny: "), tables, result, summary=_rounded(ratios, 4)
    )


def gpt2_124m(ctx: Context) -> dict:
    """Part ``124m``: the step-overhead ratios and tokens/s of each arm on GPT-2 124M."""
    toy = dict(part_batch=2, seq_len=64, repeats=3, inner=1, warmup=1)
    full = dict(part_batch=8, seq_len=512, repeats=7, inner=4, warmup=2)
    size = "gpt2-1m" if ctx.dry_run else "gpt2-124m"
    result, tables = _step_overhead(
        ctx, size, "GPT-2 124M", "gpu_step_124m", extra=True, **(toy if ctx.dry_run else full)
    )
    tokens = result["sizes"]["tokens_per_step"]
    tps = {name: tokens / common.median(t) for name, t in result["times"].items()}
    targets = step_overhead.targets_of(result, prefix="124M: ")
    name = "124M: tokens/s IEU (k=1) / plain SFT (reported against the 1/1.10 grad_diff's target implies)"
    targets.append(_throughput_target(name, result["ratios"], tps, tokens, 1 / 1.10))
    rows = [{"arm": k, "tokens/s": v} for k, v in tps.items()]
    tables.append(
        {
            "title": "GPT-2 124M: tokens per second per arm",
            "markdown": common.markdown_table(rows, ["tokens/s"], first="arm"),
        }
    )
    return section(
        targets, tables, {**result, "tokens_per_second": tps}, summary=f"tokens/s {_rounded(tps, 0)}"
    )


def gpt2_memory(ctx: Context) -> dict:
    """Part ``memory``: npo / ft and LoRA / full peak memory on GPT-2 124M."""
    size = "gpt2-1m" if ctx.dry_run else "gpt2-124m"
    samples = memory.measure(
        memory.ARMS,
        repeats=2 if ctx.dry_run else 3,
        device=ctx.device,
        size=size,
        part_batch=2 if ctx.dry_run else 8,
        seq_len=64 if ctx.dry_run else 512,
        n_retain=32,
        n_forget=32,
        steps=3,
        bf16=ctx.bf16,
    )
    return _memory_section(size, samples, "CPU (dry run)" if ctx.dry_run else "CUDA")


def _throughput_target(name: str, ratios: dict, tps: dict, tokens: int, goal: float) -> dict:
    return common.target(
        name,
        "throughput of an IEU step relative to a plain transformers.Trainer step on the same sequences "
        "(the inverse of the median paired step-time ratio)",
        1.0 / ratios["ieu_k1/plain"]["ratio"],
        goal,
        op=">=",
        tokens_per_step=tokens,
        tokens_per_second=tps,
    )


def _memory_section(size: str, samples: dict, kind: str) -> dict:
    summary = memory.summarize(samples)
    return section(
        memory.targets_of(summary, prefix=f"{size} memory: "),
        [{"title": f"Peak {kind} memory per arm ({size})", "markdown": memory.table_of(summary)}],
        {"model": size, "samples": samples, "summary": summary},
        summary=f"peak ratios {_rounded({k: v['ratio'] for k, v in summary['ratios'].items()}, 3)}",
    )


def _rounded(values: dict, digits: int) -> str:
    return ", ".join(f"{k} {v:.{digits}f}" for k, v in values.items())


#: name: (function, seconds it may take on an H200) in the order the parts run: the issue's checks first
PARTS = {
    "llama_steps": (llama_steps, 110),
    "llama_memory": (llama_memory, 110),
    "zero3": (functools.partial(distributed_smoke, "zero3"), 140),
    "fsdp2": (functools.partial(distributed_smoke, "fsdp2"), 110),
    "smoke": (smoke, 90),
    "124m": (gpt2_124m, 75),
    "memory": (gpt2_memory, 60),
    "tiny": (tiny, 45),
}


# -- one part per subprocess --------------------------------------------------------------------------------
def run_part(name: str, ctx: Context) -> tuple[dict, dict | None]:
    """Run part ``name`` in a subprocess stopped after ``ctx.seconds``; returns its record (status, seconds,
    exit code, output tail if it failed) and its section (None if it wrote none)."""
    workdir = common.WORK_DIR / "gpu_parts"
    workdir.mkdir(parents=True, exist_ok=True)
    out, log = workdir / f"{name}.json", workdir / f"{name}.log"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.gpu", "--part", name, "--part-out", str(out)]
    cmd += (
        ["--seconds", f"{ctx.seconds - GRACE_S:.0f}"] + ["--dry-run"] * ctx.dry_run + ["--quick"] * ctx.quick
    )
    result = watch(cmd, log, ctx.seconds)
    part = json.loads(out.read_text()) if out.exists() else None
    ok = result["status"] == "exited" and result["rc"] == 0 and part is not None
    record = {"status": "ok" if ok else result["status"] if result["status"] != "exited" else "failed"}
    record.update(seconds=result["seconds"], budget_s=round(ctx.seconds), rc=result["rc"])
    if not ok:
        record["tail"] = result["tail"]
    return record, part


def _part_child(name: str, out: Path, ctx: Context) -> None:
    """In the part's subprocess: set torch up, run the part, write its section to ``out``."""
    import torch

    if ctx.dry_run:
        common.set_threads(common.default_threads())
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
    part = PARTS[name][0](ctx)
    scratch = out.with_suffix(".partial")  # renamed when complete: a part stopped mid-write leaves no result
    scratch.write_text(json.dumps(part, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
    scratch.replace(out)


def _part_row(name: str, record: dict) -> dict:
    done = record["status"] == "ok"
    return common.target(
        f"part {name}: completed in its time budget",
        f"wall seconds of the part's subprocess ({record['status']})",
        record["seconds"] if done else None,
        record["budget_s"],
        op="<=",
        unit="s",
        **{k: v for k, v in record.items() if k not in ("seconds", "budget_s")},
    )


def run_within(name: str, dry_run: bool, quick: bool, end: float) -> tuple[dict, dict | None]:
    """``run_part`` with the part's budget cut to the time left before ``end`` (``time.monotonic()``); a part
    that would get less than ``MIN_PART_S`` is skipped. Prints a line on how it went."""
    seconds = min(PARTS[name][1] * (10 if dry_run else 1), end - time.monotonic())
    record, part = {"status": "skipped (no time left)", "seconds": 0, "budget_s": 0}, None
    if seconds >= MIN_PART_S:
        record, part = run_part(name, Context(dry_run, quick, seconds))
    summary = part["summary"] if part and record["status"] == "ok" else record.get("tail", "")[-1500:]
    print(f"[{name}] {record['status']} in {record['seconds']:.0f} s: {summary}", flush=True)
    return record, part


def _machine(dry_run: bool) -> dict:
    try:
        return common.machine_info("cpu" if dry_run else "cuda")
    except RuntimeError as err:  # a device left unusable by a part: still write what was measured
        return {**common.machine_info("cpu"), "device": "cuda", "gpu": f"unknown ({err})"}


def run(
    out_dir: str | None = None,
    dry_run: bool = False,
    quick: bool = False,
    parts: tuple[str, ...] = tuple(PARTS),
    budget: float | None = None,
) -> dict:
    """Run ``parts`` one after the other within ``budget`` seconds (default 540; unlimited in a dry run), then
    write ``gpu.json``; a part that fails or runs out of time is recorded as such and the next one runs."""
    import torch

    start = time.monotonic()
    if unknown := sorted(set(parts) - set(PARTS)):
        raise SystemExit(f"unknown parts {unknown}; the parts are {tuple(PARTS)}")
    if not dry_run and not torch.cuda.is_available():
        raise SystemExit("benchmarks.gpu needs a CUDA device (or --dry-run).")
    end = start + (budget or (1e9 if dry_run else GPU_BUDGET_S))
    out = {"targets": [], "tables": [], "notes": [], "details": {"parts": {}}}
    for name in parts:
        record, part = run_within(name, dry_run, quick, end)
        out["details"]["parts"][name] = record
        for key in ("targets", "tables", "notes") if part else ():
            out[key] += part[key]
        if part:
            out["details"][name] = part["details"]
        out["targets"].append(_part_row(name, record))
    rows = [{"part": n, **r} for n, r in out["details"]["parts"].items()]
    markdown = common.markdown_table(rows, ["status", "seconds", "budget_s"], "part")
    out["tables"].append({"title": "Parts: status and wall time", "markdown": markdown})
    out["notes"].append(
        "Step = trainer.training_step + optimizer.step + zero_grad (fused AdamW, bf16 autocast on fp32 weights); "
        "UnlearningTrainer.compute_loss checks the loss is finite, one host sync per step, which the plain "
        "Trainer arm does not do."
    )
    if dry_run:
        out["notes"].append("DRY RUN on CPU at toy sizes: not GPU numbers.")
    machine = _machine(dry_run)
    out["details"]["device_name"] = machine.get("gpu", "cpu")
    results_dir = Path(out_dir) if out_dir else common.RESULTS_DIR
    path = common.write_result(
        NAME, machine=machine, quick=quick, seconds=time.monotonic() - start, results_dir=results_dir, **out
    )
    passed = sum(t["pass"] for t in out["targets"])
    print(f"wrote {path} in {time.monotonic() - start:.0f} s: {passed}/{len(out['targets'])} targets met")
    return {"path": str(path)}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="directory for gpu.json (default benchmarks/results)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: check the script")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {tuple(PARTS)}")
    parser.add_argument("--budget", type=float, help=f"seconds for the whole run (default {GPU_BUDGET_S})")
    parser.add_argument("--part", help=argparse.SUPPRESS)  # internal: run one part in this process
    parser.add_argument("--part-out", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=600.0, help=argparse.SUPPRESS)
    cli = parser.parse_args()
    if cli.part:
        _part_child(cli.part, Path(cli.part_out), Context(cli.dry_run, cli.quick, cli.seconds))
    else:
        run(cli.out, cli.dry_run, cli.quick, tuple(cli.parts.split(",")), cli.budget)
