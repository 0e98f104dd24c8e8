"""Smoke test of the benchmark harness (``benchmarks/``): its machinery on a trivial workload, no timing claims."""

import json

import pytest

from benchmarks import common


def test_harness_writes_a_well_formed_result_and_readme(tmp_path):
    calls = {"fast": 0, "slow": 0}

    def fast():
        calls["fast"] += 1

    def slow():
        calls["slow"] += 1
        sum(i * i for i in range(20_000))  # real work, a few ms

    times = common.interleaved_times({"fast": fast, "slow": slow}, repeats=5, warmup=1, inner=2)
    assert calls == {"fast": 12, "slow": 12} and all(len(v) == 5 for v in times.values())
    stats = common.ratio_stats(times["slow"], times["fast"])
    assert len(stats["paired_ratios"]) == 5 and stats["ratio"] > 0
    targets = [
        common.target("slow/fast", "a trivial ratio", stats["ratio"], 1e9, repeats_s=stats["repeats_s"]),
        common.target("never", "a miss", 2.0, 1.0),
        common.target("close", "abs", -0.01, 0.02, op="abs<="),
    ]
    assert [t["pass"] for t in targets] == [True, False, True]
    with common.PeakMemory("cpu") as peak:
        block = bytearray(32 * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touch every page
    assert peak.peak >= 16 * 2**20
    path = common.write_result(
        "trivial",
        targets,
        common.machine_info("cpu"),
        quick=True,
        seconds=0.1,
        details={"times": times},
        tables=[{"title": "t", "markdown": common.markdown_table([{"model": "a", "x": 1.5}], ["x"])}],
        results_dir=tmp_path,
    )
    payload = json.loads(path.read_text())
    common.validate_result(payload)
    assert payload["passed"] == 2 and payload["total"] == 3
    assert payload["machine"]["torch_threads"] >= 1 and payload["machine"]["cpu_model"]
    text = common.render_readme(results_dir=tmp_path, path=tmp_path / "README.md")
    assert "| slow/fast |" in text and "**miss**" in text and "## trivial" in text


def test_breakeven_retain_size_scales_the_retain_set_until_the_ratio_meets_the_target():
    from benchmarks.cost_vs_retrain import breakeven_retain_size

    assert breakeven_retain_size(540, 0.3) == 1620  # 3x the data makes retraining 3x dearer: 0.3 -> 0.1
    assert breakeven_retain_size(1000, 0.05) == 500


def test_sweep_ranks_a_trial_that_keeps_retain_above_one_that_meets_more_by_wrecking_it():
    from benchmarks.sweep import rank

    kept = {"met": 2, "shortfall": 1.8, "shortfalls": {"retain": 0.0}}
    wrecked = {"met": 3, "shortfall": 26.8, "shortfalls": {"retain": 26.0}}
    assert rank(kept) > rank(wrecked)
    assert rank({**kept, "met": 3}) > rank(kept)


def test_stopping_summary_counts_the_targets_met_per_seed_and_ranks_the_two_rcd_ratios():
    from benchmarks import stopping

    def metrics(forget: float, ratio: float, heldout: float) -> dict:
        return {
            "forget/accuracy": forget,
            "retain/accuracy": 1.0,
            "test/accuracy": 0.8,
            "mia/auc": 0.5,
            "rcd/ratio_to_golden": ratio,
            "rcd/ratio_to_heldout": heldout,
        }

    run = {"steps": 10, "seconds": 2.0, "train_seconds": 1.1, "check_seconds": 0.1, "checks": 2}
    methods = ["a", "b", "c"]
    seeds = {}
    for seed in (0, 1):
        rows = {"original": metrics(0.9, 0.1, 0.1), "golden": metrics(0.3, 1.0, 1.2)}
        runs = {}
        for i, method in enumerate(methods):
            for arm in stopping.ARMS:
                label = stopping.label_of(method, arm)
                # "a" misses the forget target on seed 1 only; the RCD ratios rank a < b < c on both scales
                forget = 0.3 if (method != "a" or seed == 0) else 0.5
                rows[label] = metrics(forget, 0.5 + 0.3 * i, 0.6 + 0.4 * i)
                runs[label] = dict(run)
        seeds[seed] = {"metrics": rows, "runs": runs}
    summary = stopping.summarize("toy", "classification", seeds, methods)
    assert summary["rows"]["a"]["targets_met"] == [3, 2] and summary["rows"]["a"]["targets_met_median"] == 2.5
    assert summary["rows"][stopping.label_of("c", "with")]["targets_met"] == [4, 4]  # RCD ratio 1.1 >= 0.8
    assert summary["rcd_rank_agreement"] == {"without": 1.0, "with": 1.0}
    assert summary["rows"]["b"]["check_overhead"] == 0.1 / 1.0


def test_images_summary_gives_mean_and_std_over_seeds_per_model():
    from benchmarks import images

    per_seed = {
        seed: {
            "metrics": {
                "golden": {k: 0.5 for k in images.KEYS},
                "rl": {**{k: 0.1 * (seed + 1) for k in images.KEYS}},
            },
            "time_ratio": {"rl": 0.05 * (seed + 1)},
        }
        for seed in (0, 1, 2)
    }
    summary = images.summarize(per_seed, ["golden", "rl"])
    assert summary["golden"]["gap/average"] == (0.5, 0.0) and "time_ratio" not in summary["golden"]
    mean, std = summary["rl"]["forget/ua"]
    assert mean == pytest.approx(0.2) and std == pytest.approx(0.1)
    assert summary["rl"]["time_ratio"][0] == pytest.approx(0.1)
    assert "0.200 +- 0.100" in images.table_of(summary)


_FAKE_WORKER = """
import json, os, sys, time
events, methods = sys.argv[1], sys.argv[2].split(",")
for m in methods:
    with open(events, "a") as f:
        f.write(json.dumps({"event": "start", "method": m}) + "\\n")
    if m == "crash":
        os._exit(3)
    if m == "hang":
        time.sleep(60)
    with open(events, "a") as f:
        f.write(json.dumps({"event": "done", "case": m, "method": m, "ok": True, "backend": "FSDP"}) + "\\n")
"""


def test_gpu_smoke_charges_a_crash_or_a_hang_to_its_method_and_relaunches_for_the_rest(tmp_path, monkeypatch):
    import sys

    from benchmarks import gpu_smoke

    def fake_launch(recipe, methods, events, ctx, end):
        return [sys.executable, "-c", _FAKE_WORKER, str(events), ",".join(methods)]

    monkeypatch.setattr(gpu_smoke, "_launch_command", fake_launch)
    monkeypatch.setitem(gpu_smoke.IDLE_S, True, 2.0)
    ctx = gpu_smoke.Context(dry_run=True, seconds=60)
    rows, launches = gpu_smoke.run_methods("any.yaml", ["a", "crash", "b", "hang", "c"], ctx, tmp_path)
    assert [r["method"] for r in rows] == ["a", "crash", "b", "hang", "c"]
    assert [r["ok"] for r in rows] == [True, False, True, False, True]
    assert "exited (rc 3) in this method" in rows[1]["error"] and "stalled" in rows[3]["error"]
    assert [launch["methods"] for launch in launches] == [
        ["a", "crash", "b", "hang", "c"],
        ["b", "hang", "c"],
        ["c"],
    ]


def test_gpu_part_that_fails_is_recorded_as_a_missed_row_not_raised(tmp_path, monkeypatch):
    from benchmarks import common, gpu

    monkeypatch.setattr(common, "WORK_DIR", tmp_path)
    record, part = gpu.run_part("no_such_part", gpu.Context(dry_run=True, seconds=120))
    assert part is None and record["status"] == "failed" and "KeyError" in record["tail"]
    row = gpu._part_row("no_such_part", record)
    assert row["pass"] is False and row["measured"] is None


def test_quality_skips_the_refusal_methods_on_a_forget_set_without_prompts():
    from types import SimpleNamespace

    from benchmarks.quality import applies
    from hf_unlearn.methods import get_method

    raw_text = SimpleNamespace(task="causal_lm", forget=[{"text": "an article"}])
    qa = SimpleNamespace(task="causal_lm", forget=[{"prompt": "Q?", "completion": "A."}])
    assert not applies(get_method("idk_nll"), raw_text) and applies(get_method("idk_nll"), qa)
    assert applies(get_method("ga"), raw_text)
    assert not applies(
        get_method("rmu"), SimpleNamespace(task="classification", forget=[{"text": "x", "label": 0}])
    )


def test_stopping_oracle_copies_the_weights_at_every_check_and_the_kept_ones_are_a_check(
    tmp_path, mislabeled
):
    import copy

    import torch
    from conftest import heldout_trainer

    from benchmarks.stopping_oracle import snapshots_at_checks
    from hf_unlearn.stopping import HeldoutStoppingCallback

    trainer = heldout_trainer(
        tmp_path,
        mislabeled,
        method="dr",
        learning_rate=1e-2,
        max_steps=6,
        stopping="heldout_pause",
        stopping_eval_steps=3,
    )
    golden = copy.deepcopy(trainer.model)
    measure = HeldoutStoppingCallback.measure
    with snapshots_at_checks(golden, {"snapshots": {}, "entries": {}}) as seen:
        trainer.train()
    assert HeldoutStoppingCallback.measure is measure  # put back
    assert sorted(seen["snapshots"]) == [0, 3, 6] == sorted(seen["entries"])
    # golden is the untrained copy: its AUC on the checked rows is the first check's
    assert seen["golden_auc"] == trainer.stopping.record.history[0]["loss_auc"]
    kept = trainer.stopping.record.kept_step or 6  # no check in the band: the last step's, also a check
    weights = dict(trainer.model.named_parameters())
    changed = False
    for name, tensor in seen["snapshots"][kept].items():
        if name in weights:
            torch.testing.assert_close(weights[name].detach(), tensor, rtol=0, atol=0)
            changed |= not torch.equal(tensor, seen["snapshots"][0][name])
    assert changed  # copies of the weights as they were at each check, not views of the live ones


def test_rcd_cost_bare_relearning_runs_on_an_image_classifier():
    """``bare_relearn`` goes through the model kind: an image classifier (pixel values, no token ids) relearns."""
    import torch

    from benchmarks.rcd_cost import bare_relearn
    from hf_unlearn.metrics import RelearnConfig
    from hf_unlearn.testing.fixtures import digits_task
    from hf_unlearn.tiny import tiny_image_classifier

    task = digits_task(n_train=20, n_test=4, seed=0)
    model = tiny_image_classifier("resnet")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = RelearnConfig(learning_rate=1e-2, max_steps=2, batch_size=4, seed=0, progress_bar=False)
    bare_relearn(model, task.forget, task.tokenizer, config)  # relearns a copy: the model is left as it was
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def _robustness_result(seed: int) -> dict:
    row = {"attack/none/forget/accuracy": 0.1, "attack/none/gap_to_golden": 0.0}
    row |= {
        "attack/quantize_4bit/forget/accuracy": 0.1 + 0.2 * seed,
        "attack/quantize_4bit/gap_to_golden": 0.2 * seed,
    }
    row |= {
        f"attack/quantize_4bit/{who}forget/accuracy": v for who, v in (("golden/", 0.1), ("original/", 1.0))
    }
    golden = {"attack/none/forget/accuracy": 0.1, "attack/none/gap_to_golden": 0.0}
    return {
        "primary_metric": "forget/accuracy",
        "n_forget": 16,
        "n_models": 2,
        "eval_seconds": 1.0,
        "attack_seconds": {"quantize_4bit": 0.5},
        "metrics": {"golden": golden, "m": row},
    }


def test_robustness_seed_summary_takes_the_median_over_seeds_and_counts_the_seeds_undone():
    from benchmarks import robustness

    summary = robustness.seed_summary({seed: _robustness_result(seed) for seed in (0, 1, 2)})
    gap = summary["models"]["m"]["quantize_4bit/gap"]
    assert (gap["median"], gap["min"], gap["max"]) == pytest.approx((0.2, 0.0, 0.4))
    assert (
        summary["models"]["m"]["undone"]["quantize_4bit"] == 2
    )  # seeds 1 and 2: past 1/16 of the forget set
    assert "0.200 (0.000-0.400)" in robustness.seed_table(summary)


def test_robustness_merge_keeps_the_earlier_runs_seeds_and_scenarios(tmp_path, monkeypatch):
    from benchmarks import result_files, robustness

    monkeypatch.setattr(result_files, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path)
    monkeypatch.setattr(robustness, "measure", lambda name, methods, seed: _robustness_result(seed))
    robustness.run(scenarios=["a", "b"], seeds=[0])
    robustness.run(scenarios=["b"], seeds=[1, 2], merge=True)
    details = json.loads((tmp_path / "robustness.json").read_text())["details"]
    assert details["a"]["seeds"] == [0] and details["b"]["seeds"] == [0, 1, 2]
    assert details["b"]["summary"]["models"]["m"]["undone"]["quantize_4bit"] == 2


def test_sequential_seed_rows_give_each_request_the_median_over_seeds():
    from benchmarks import sequential

    def seed(value: float) -> dict:
        rows = [{"request": i, "steps": 200, "current/forget/rouge_l_recall": value * i} for i in (1, 2)]
        return {"rows": {"ieu": rows}}

    rows = sequential.seed_rows({0: seed(0.1), 1: seed(0.2), 2: seed(0.3)})
    assert [(r["request"], r["current forget ROUGE-L"], r["steps"]) for r in rows] == [
        (1, "0.200 (0.100-0.300)", "200"),
        (2, "0.400 (0.200-0.600)", "200"),
    ]


def test_sd_mechanics_rows_take_medians_over_seeds_and_count_the_seeds_where_forget_rises_more():
    import torch

    from benchmarks.sd_mechanics import relative_change, table_row

    def run(forget_after, kept_after, change=0.1, finite=True):
        return {
            "finite": finite,
            "weight_change": change,
            "before": {"forget": 1.0, "retain": 1.0, "test": 1.0},
            "after": {"forget": forget_after, "retain": kept_after, "test": 1.0},
        }

    # forget up more than kept in seed 0 only; seed 1: both fall; seed 2: kept up more
    row = table_row("ga (full)", {0: run(1.5, 1.1), 1: run(0.9, 0.8, finite=False), 2: run(1.2, 1.4, 0.3)})
    assert row["forget rises more"] == "1/3" and row["finite losses"] == "2/3"
    assert row["forget loss after"] == 1.2 and row["kept loss after"] == 1.1
    assert row["forget up - kept up"] == pytest.approx(0.1)  # median of 0.4, 0.1, -0.2
    assert row["weight change"] == "1.00e-01"
    before = {"w": torch.tensor([3.0, 4.0])}
    assert relative_change(before, {"w": torch.tensor([3.0, 4.5])}) == pytest.approx(0.1)
