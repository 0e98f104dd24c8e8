"""The smoke runs of ``benchmarks.gpu`` and the subprocess machinery its parts run under.

* ``smoke``: every registered method (``hf_unlearn.methods.METHODS``) x {tiny classifier, tiny GPT-2} x {full
  weights, LoRA}, a few ``train()`` steps each in one process.
* ``zero3`` / ``fsdp2``: every causal-LM method, a few steps each on a tiny Llama, under ``accelerate launch``
  with the single-GPU DeepSpeed ZeRO-3 / FSDP2 recipes of ``recipes/accelerate/``. One launch runs the methods
  one after the other; a crash, a hang or a timeout is charged to the method it happened in and the launch is
  restarted with the methods left. ``python -m benchmarks.gpu_smoke`` is the worker ``accelerate launch`` runs.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from . import common, memory

REPO = common.ROOT.parent
RECIPES = REPO / "recipes" / "accelerate"


@dataclasses.dataclass
class Context:
    """How a part runs: toy sizes on CPU (``dry_run``) or the real ones on CUDA, and the seconds it may take."""

    dry_run: bool
    quick: bool = False
    seconds: float = 600.0

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    @property
    def bf16(self) -> bool:
        return not self.dry_run

    def sync(self) -> None:
        """Wait for the device (a no-op on CPU)."""
        if not self.dry_run:
            import torch

            torch.cuda.synchronize()

    def free_memory(self) -> None:
        """Collect garbage and hand cached CUDA blocks back, between runs that each measure from scratch."""
        gc.collect()
        if not self.dry_run:
            import torch

            torch.cuda.empty_cache()


def section(targets=(), tables=(), details=None, notes=(), summary: str = "") -> dict:
    """What a part returns: target rows, README tables, details, notes and a one-line summary to print."""
    return {
        "targets": list(targets),
        "tables": list(tables),
        "details": details or {},
        "notes": list(notes),
        "summary": summary,
    }


def tail(path: Path, chars: int = 3000) -> str:
    """The last ``chars`` characters of a text file ("" if it does not exist)."""
    try:
        return path.read_bytes()[-chars:].decode(errors="replace")
    except OSError:
        return ""


def watch(
    cmd: list[str],
    log: Path,
    seconds: float,
    progress: Path | None = None,
    idle: float | None = None,
    env: dict | None = None,
) -> dict:
    """Run ``cmd`` in a session of its own, its output to ``log``, until it exits, ``seconds`` pass, or the file
    ``progress`` stays unchanged for ``idle`` seconds; then SIGTERM its process group (torchrun passes it on to
    the workers it started in sessions of their own) and SIGKILL it 15 s later. Returns status ("exited",
    "timeout", "stalled"), the exit code, the seconds taken and the tail of the log."""
    start = last = time.monotonic()
    size, status = -1, "exited"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True
        )
        while proc.poll() is None:
            time.sleep(0.5)
            now = time.monotonic()
            if progress is not None and progress.exists() and progress.stat().st_size != size:
                size, last = progress.stat().st_size, now
            if now - start > seconds or (idle and now - last > idle):
                status = "timeout" if now - start > seconds else "stalled"
                _stop(proc)
                break
    return {
        "status": status,
        "rc": proc.returncode,
        "seconds": round(time.monotonic() - start, 2),
        "tail": tail(log),
    }


def _stop(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=grace)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


# -- one smoke case -----------------------------------------------------------------------------------------
def methods_for(task: str) -> list[str]:
    """The registered methods (``hf_unlearn.methods.METHODS``) defined for ``task``."""
    from hf_unlearn.methods import METHODS

    return [name for name, method in METHODS.items() if task in method.supported_tasks()]


def smoke_task(kind: str):
    """The synthetic task of a smoke model kind: mislabeled sentences for the classifier, QA otherwise."""
    from hf_unlearn.testing.fixtures import fictitious_qa_task, mislabeled_task

    return mislabeled_task(seed=0) if kind == "classifier" else fictitious_qa_task(seed=0)


def _smoke_model(kind: str, tokenizer):
    from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier, tiny_decoder

    if kind == "classifier":
        return tiny_classifier(tokenizer, hidden_size=64)
    if kind == "llama":
        return tiny_decoder(tokenizer, "llama", hidden_size=64)
    return tiny_causal_lm(tokenizer, hidden_size=64)


def _weights_changed(before: dict, after: dict, lora: bool) -> bool:
    """Whether training moved a weight: a LoRA B matrix is no longer zero, or a full weight changed (compared
    in the dtype of ``after``: the gathered 16-bit weights under ZeRO-3)."""
    if lora:
        return any("lora_B" in n and bool(t.abs().sum() > 0) for n, t in after.items())
    return any(
        n in before and t.numel() > 0 and not t.float().cpu().equal(before[n].to(t.dtype).float())
        for n, t in after.items()
    )


def smoke_case(kind: str, method: str, task, ctx: Context, lora: bool = False, steps: int = 3) -> dict:
    """A few ``train()`` steps of ``method`` on a tiny model of ``kind`` ("classifier", "gpt2", "llama"): whether
    it trained (finite loss, a weight moved, read from the gathered state dict) and, if not, why. Never raises."""
    import torch

    from hf_unlearn import UnlearningTrainer

    tag = f"{kind}{'+lora' if lora else ''}/{method}"
    row: dict[str, Any] = {"case": tag, "model": kind, "lora": lora, "method": method}
    start = time.perf_counter()
    try:
        model = _smoke_model(kind, task.tokenizer)
        before = {n: t.detach().float().cpu().clone() for n, t in model.state_dict().items()}
        peft = memory.lora_config("classification" if kind == "classifier" else "causal_lm") if lora else None
        args = common.unlearning_config(
            common.WORK_DIR / "gpu_smoke" / tag.replace("/", "_").replace("+", "_"),
            method=method,
            device=ctx.device,
            bf16=ctx.bf16,
            max_steps=steps,
            per_device_train_batch_size=4,
            learning_rate=1e-3,
            forget_loss_cap=20.0,  # a fixed cap, as in the measured results (the default now scales with log V)
            logging_strategy="steps",
            logging_steps=1,
        )
        trainer = UnlearningTrainer(model, args, **common.task_datasets(task), peft_config=peft)
        out = common.quiet(trainer).train()
        after = trainer.accelerator.get_state_dict(trainer.model_wrapped)
        changed = _weights_changed(before, after, lora)
        loss = float(out.training_loss)
        row.update(
            ok=bool(torch.isfinite(torch.tensor(loss))) and changed,
            training_loss=loss,
            weights_changed=changed,
            backend=trainer.accelerator.distributed_type.value,
            param_device=str(next(trainer.model.parameters()).device),
            logged=[
                {k: v for k, v in e.items() if k in ("loss", "retain_loss", "forget_loss")}
                for e in trainer.state.log_history
                if "loss" in e
            ],
        )
        if not row["ok"]:
            row["error"] = "non-finite loss or no trainable weight changed"
    except Exception as err:  # report, do not stop the smoke run
        row.update(ok=False, error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc()[-3000:])
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _smoke_table(title: str, rows: list[dict]) -> dict:
    cells = [
        {
            "case": r["case"],
            "ok": r["ok"],
            "loss": r.get("training_loss"),
            "s": r.get("seconds"),
            "error": " ".join((r.get("error") or "").split())[:160].replace("|", "/"),
        }
        for r in rows
    ]
    return {"title": title, "markdown": common.markdown_table(cells, ["ok", "loss", "s", "error"], "case")}


def smoke(ctx: Context) -> dict:
    """Part ``smoke``: every method x {tiny classifier, tiny GPT-2} x {full, LoRA}, in this process."""
    rows = []
    for kind, task_name in (("classifier", "classification"), ("gpt2", "causal_lm")):
        task = smoke_task(kind)
        for lora in (False, True):
            for method in methods_for(task_name):
                rows.append(smoke_case(kind, method, task, ctx, lora=lora))
                ctx.free_memory()
    failed = [r["case"] for r in rows if not r["ok"]]
    target = common.target(
        f"smoke: methods x models x LoRA ({'bf16' if ctx.bf16 else 'fp32'})",
        f"runs that trained with a finite loss and moved a weight ({len(rows)} cases: every registered method "
        "defined for the model x tiny classifier / GPT-2 x full / LoRA)",
        len(rows) - len(failed),
        len(rows),
        op=">=",
        unit="runs",
        failed=failed,
    )
    return section(
        [target],
        [_smoke_table("Smoke check, one process", rows)],
        {"rows": rows},
        summary=f"{len(rows) - len(failed)}/{len(rows)} ok; failed: {', '.join(failed) or 'none'}",
    )


# -- every method under ZeRO-3 and FSDP2 (accelerate launch) ----------------------------------------------
#: backend: (recipe, the package it needs, the accelerate distributed type its runs must report)
BACKENDS = {
    "zero3": ("deepspeed_zero3_single_gpu.yaml", "deepspeed", "DEEPSPEED"),
    "fsdp2": ("fsdp2_single_gpu.yaml", None, "FSDP"),
}
IDLE_S = {False: 90.0, True: 300.0}  # no new event for this long (GPU, dry run on CPU): the launch hangs


def distributed_smoke(backend: str, ctx: Context) -> dict:
    """Every causal-LM method, a few steps each on a tiny Llama, under ``accelerate launch`` with the backend's
    single-GPU recipe (on CPU in a dry run); a row per method: pass/fail and the error tail."""
    recipe, package, expected = BACKENDS[backend]
    methods = methods_for("causal_lm")
    name = f"{backend} smoke: methods that train under accelerate launch ({recipe})"
    what = f"of the {len(methods)} causal-LM methods, those that trained a tiny Llama 3 steps (finite loss, weights moved)"
    if package and importlib.util.find_spec(package) is None:
        reason = f"{package} is not installed (optional: pip install {package}): not run"
        target = common.target(name, what, None, len(methods), op=">=", unit="methods", skipped=reason)
        details = {"recipe": recipe, "skipped": reason, "methods": methods}
        return section([target], details=details, notes=[f"{backend}: {reason}."], summary=reason)
    rows, launches = run_methods(recipe, methods, ctx, common.WORK_DIR / f"gpu_{backend}")
    notes = []
    if ctx.dry_run:  # accelerate's FSDP needs a GPU: with use_cpu the recipe runs as one-process CPU DDP
        expected = "MULTI_CPU"
        notes.append(
            f"{backend}: dry run on CPU, where the recipe runs as {expected}: checks the launch, not {backend}."
        )
    for row in rows:
        if row["ok"] and row.get("backend") != expected:  # a silently non-distributed run proves nothing
            row.update(ok=False, error=f"ran under {row.get('backend')}, not {expected}")
    failed = [r["method"] for r in rows if not r["ok"]]
    target = common.target(
        name, what, len(rows) - len(failed), len(methods), op=">=", unit="methods", failed=failed
    )
    return section(
        [target],
        [_smoke_table(f"{backend} smoke, accelerate launch ({recipe}, 1 process)", rows)],
        {"recipe": recipe, "rows": rows, "launches": launches},
        notes,
        summary=f"{len(rows) - len(failed)}/{len(methods)} ok; failed: {', '.join(failed) or 'none'}",
    )


def run_methods(
    recipe: str, methods: list[str], ctx: Context, workdir: Path
) -> tuple[list[dict], list[dict]]:
    """``smoke_case`` of each method inside ``accelerate launch``, relaunching after a crash or hang with the
    methods left, within ``ctx.seconds``. Returns a row per method (in order) and what each launch did."""
    workdir.mkdir(parents=True, exist_ok=True)
    end = time.time() + ctx.seconds
    rows: dict[str, dict] = {}
    launches: list[dict] = []
    remaining, reason = list(methods), "out of time"
    while remaining and end - time.time() > 20:
        events, log = workdir / f"events_{len(launches)}.jsonl", workdir / f"launch_{len(launches)}.log"
        events.unlink(missing_ok=True)
        result = watch(
            _launch_command(recipe, remaining, events, ctx, end),
            log,
            end - time.time(),
            progress=events,
            idle=IDLE_S[ctx.dry_run],
            env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        )
        launches.append({"methods": remaining, **result})
        started = None
        for event in _read_events(events):
            if event.pop("event") == "done":
                rows[event["method"]] = event
            else:
                started = event["method"]
        if started is None or started in rows:  # exited cleanly, or failed before the first method
            reason = (
                f"the launch ended ({result['status']}, rc {result['rc']}) before: {result['tail'][-600:]}"
            )
            break
        rows[started] = {
            "case": f"llama/{started}",
            "method": started,
            "ok": False,
            "error": f"the launch {result['status']} (rc {result['rc']}) in this method: {result['tail'][-600:]}",
            "log_tail": result["tail"],
        }
        remaining = [m for m in remaining if m not in rows]
    for m in methods:
        rows.setdefault(m, {"case": f"llama/{m}", "method": m, "ok": False, "error": f"not run: {reason}"})
    return [rows[m] for m in methods], launches


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_command(recipe: str, methods: list[str], events: Path, ctx: Context, end: float) -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(RECIPES / recipe)]
    cmd += ["--main_process_port", str(_free_port())]  # others may be using the default 29500
    if ctx.dry_run:
        cmd += ["--mixed_precision", "no"]
    cmd += ["-m", "benchmarks.gpu_smoke", "--methods", ",".join(methods), "--events", str(events)]
    return cmd + ["--deadline", f"{end:.0f}"] + (["--cpu"] if ctx.dry_run else [])


def _read_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def worker(methods: list[str], events: Path, cpu: bool, deadline: float) -> None:
    """Inside ``accelerate launch``: ``smoke_case`` of each method on a tiny Llama, appending a "start" and a
    "done" JSON line per method to ``events`` (a crash is thus charged to its method); exits at ``deadline``
    (seconds since the epoch) even if a method hangs."""
    watchdog = threading.Timer(max(1.0, deadline - time.time()), os._exit, args=(124,))
    watchdog.daemon = True
    watchdog.start()
    task, ctx = smoke_task("llama"), Context(dry_run=cpu)
    for method in methods:
        _append(events, {"event": "start", "method": method})
        row = smoke_case("llama", method, task, ctx)
        _append(events, {"event": "done", **row})
        print(f"{method}: {'ok' if row['ok'] else 'FAILED ' + row['error'][:300]}", flush=True)
        ctx.free_memory()


def _append(path: Path, event: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(event, default=str) + "\n")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="worker of the ZeRO-3 / FSDP2 smoke run (accelerate launch)")
    parser.add_argument("--methods", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--deadline", type=float, required=True, help="seconds since the epoch")
    parser.add_argument("--cpu", action="store_true")
    cli = parser.parse_args()
    worker(cli.methods.split(","), Path(cli.events), cli.cpu, cli.deadline)
