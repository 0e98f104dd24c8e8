"""Smoke test of the benchmark harness (``benchmarks/``): its machinery on a trivial workload, no timing claims."""

import json

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
