"""Target 6 (``scaling``): step time and peak memory against model size (three tiny GPT-2 sizes) and against the
forget-set size; a PNG plot in ``benchmarks/results/scaling.png``.

* Model size: interleaved step times of a plain ``Trainer`` step, a ``grad_diff`` step and an IEU step (noise
  every step) per size, and peak memory of ``ft`` and ``ieu`` runs (fresh process per measurement).
* Forget-set size: NPO (the method whose set-up depends on the forget set: the reference log-prob pass); its
  step time (interleaved across sizes), its set-up time (trainer construction + reference pass) and its peak
  memory. Checks: step time does not grow with the forget set, and IEU's overhead does not grow with the model.
"""

from __future__ import annotations

import time

from . import common, memory, step_overhead

NAME = "scaling"
SIZES = ["gpt2-1m", "gpt2-5m", "gpt2-20m"]
FORGET_SIZES = [16, 64, 256, 1024]


def model_sweep(sizes: list[str], repeats: int, mem_repeats: int, threads: int) -> dict:
    out = {}
    for size in sizes:
        r = step_overhead.measure(size=size, every=(1,), extra=False, repeats=repeats, inner=1)
        mem = memory.summarize(
            memory.measure(
                {"ft": {"method": "ft"}, "ieu": {"method": "ieu"}},
                repeats=mem_repeats,
                threads=threads,
                size=size,
            )
        )
        out[size] = {
            "n_params": r["sizes"]["n_params"],
            "step_s": {k: common.median(v) for k, v in r["times"].items()},
            "step_repeats_s": r["times"],
            "ieu/grad_diff": r["ratios"]["ieu_k1/grad_diff"]["ratio"],
            "ieu/plain": r["ratios"]["ieu_k1/plain"]["ratio"],
            "grad_diff/plain": r["ratios"]["grad_diff/plain"]["ratio"],
            "peak_bytes": mem["median_peak_bytes"],
            "peak_repeats_bytes": mem["peak_bytes"],
        }
    return out


def forget_sweep(n_forgets: list[int], repeats: int, mem_repeats: int, threads: int) -> dict:
    from hf_unlearn import UnlearningTrainer

    model = common.gpt2("gpt2-5m")
    vocab = model.config.vocab_size
    rows_r = common.random_lm_rows(64, 128, vocab, seed=1)
    arms, setup = {}, {}
    for n in n_forgets:
        rows_f = common.random_lm_rows(n, 128, vocab, seed=2)
        start = time.perf_counter()
        args = common.unlearning_config(
            common.WORK_DIR / NAME / f"npo_{n}", method="npo", per_device_train_batch_size=4
        )
        trainer = UnlearningTrainer(model, args, forget_dataset=rows_f, retain_dataset=rows_r)
        trainer.ref_logprob = trainer.reference_logprobs()
        setup[n] = time.perf_counter() - start
        trainer.create_optimizer()
        trainer.current_gradient_accumulation_steps = 1
        batches, _ = step_overhead.device_batches(trainer, 4, 4)
        arms[str(n)] = step_overhead._step_fn(trainer, batches)
        model = common.gpt2("gpt2-5m")  # a fresh copy for the next trainer
    times = common.interleaved_times(arms, repeats=repeats, warmup=1)
    mem = memory.summarize(
        memory.measure(
            {str(n): {"method": "npo", "n_forget": n} for n in n_forgets},
            repeats=mem_repeats,
            threads=threads,
        )
    )
    return {
        str(n): {
            "step_s": common.median(times[str(n)]),
            "step_repeats_s": times[str(n)],
            "setup_s": setup[n],
            "peak_bytes": mem["median_peak_bytes"][str(n)],
            "peak_repeats_bytes": mem["peak_bytes"][str(n)],
        }
        for n in n_forgets
    }


def _label(ax, xlabel: str, ylabel: str, title: str, yscale: str = "log") -> None:
    """Log x axis (and log y unless ``yscale`` says otherwise), labels, title and a small legend."""
    ax.set(xscale="log", yscale=yscale, xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)


def plot(models: dict, forgets: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(9, 6.5))
    params = [models[s]["n_params"] / 1e6 for s in models]
    ax = axes[0, 0]
    for arm, label in (
        ("plain", "plain Trainer"),
        ("grad_diff", "grad_diff"),
        ("ieu_k1", "ieu (noise every step)"),
    ):
        ax.plot(params, [models[s]["step_s"][arm] * 1e3 for s in models], "o-", label=label)
    _label(ax, "parameters (M)", "step time (ms)", "Step time vs model")
    ax = axes[0, 1]
    for arm in ("ft", "ieu"):
        ax.plot(params, [models[s]["peak_bytes"][arm] / 2**20 for s in models], "o-", label=arm)
    _label(ax, "parameters (M)", "peak memory (MiB)", "Peak memory vs model")
    n = [int(k) for k in forgets]
    ax = axes[1, 0]
    ax.plot(n, [forgets[k]["step_s"] * 1e3 for k in forgets], "o-", label="npo step")
    ax.plot(n, [forgets[k]["setup_s"] * 1e3 for k in forgets], "s--", label="set-up + reference pass")
    _label(ax, "forget examples", "ms", "Time vs forget-set size")
    ax = axes[1, 1]
    ax.plot(n, [forgets[k]["peak_bytes"] / 2**20 for k in forgets], "o-", label="npo run")
    _label(ax, "forget examples", "peak memory (MiB)", "Peak memory vs forget-set size", yscale="linear")
    fig.suptitle("hf_unlearn scaling (CPU, GPT-2 built from config, 4+4 x 128 tokens per step)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)


def run(quick: bool = False, threads: int | None = None) -> dict:
    report = common.Report(NAME, quick, threads)
    threads = report.threads
    sizes = SIZES[:2] if quick else SIZES
    n_forgets = [16, 256] if quick else FORGET_SIZES
    models = model_sweep(sizes, repeats=5, mem_repeats=1 if quick else 3, threads=threads)
    forgets = forget_sweep(n_forgets, repeats=5, mem_repeats=1 if quick else 3, threads=threads)
    common.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    plot(models, forgets, common.RESULTS_DIR / "scaling.png")
    largest, smallest = str(n_forgets[-1]), str(n_forgets[0])
    step_growth = forgets[largest]["step_s"] / forgets[smallest]["step_s"]
    report.targets = [
        common.target(
            f"ieu/grad_diff at {s}",
            f"IEU step overhead (noise every step) at {models[s]['n_params'] / 1e6:.1f}M parameters (check)",
            models[s]["ieu/grad_diff"],
            1.03,
        )
        for s in sizes
    ]
    report.targets.append(
        common.target(
            f"npo step time, {largest} / {smallest} forget examples",
            "a step does not depend on the forget-set size (check)",
            step_growth,
            1.10,
        )
    )
    model_rows = [
        {
            "model": s,
            "params (M)": m["n_params"] / 1e6,
            "plain (ms)": m["step_s"]["plain"] * 1e3,
            "grad_diff (ms)": m["step_s"]["grad_diff"] * 1e3,
            "ieu (ms)": m["step_s"]["ieu_k1"] * 1e3,
            "ieu/grad_diff": m["ieu/grad_diff"],
            "grad_diff/plain": m["grad_diff/plain"],
            "ft peak (MiB)": m["peak_bytes"]["ft"] / 2**20,
            "ieu peak (MiB)": m["peak_bytes"]["ieu"] / 2**20,
        }
        for s, m in models.items()
    ]
    forget_rows = [
        {
            "forget examples": k,
            "npo step (ms)": f["step_s"] * 1e3,
            "set-up + reference pass (ms)": f["setup_s"] * 1e3,
            "peak (MiB)": f["peak_bytes"] / 2**20,
        }
        for k, f in forgets.items()
    ]
    report.tables = [
        {
            "title": "Against model size",
            "markdown": common.markdown_table(
                model_rows, [c for c in model_rows[0] if c != "model"], "model"
            ),
        },
        {
            "title": "Against forget-set size (gpt2-5m, npo)",
            "markdown": common.markdown_table(
                forget_rows, [c for c in forget_rows[0] if c != "forget examples"], "forget examples"
            ),
        },
        {"title": "Plot", "markdown": "![scaling](results/scaling.png)"},
    ]
    report.details = {"models": models, "forget_sizes": forgets}
    report.notes = [
        "Step times: 5 interleaved repeats per size after warm-up; peak memory: "
        f"{1 if quick else 3} fresh process(es) per point (deterministic to within a few MiB).",
    ]
    return report.write()


if __name__ == "__main__":
    common.cli(run)
