"""``hf-unlearn run --attacks ...`` under ``accelerate launch`` with 2 CPU processes: every process attacks its own
copy of each model, evaluates its share of the forget set and the shares are gathered, so the report holds one
result per key, equal to a one-process run's for the models unlearning does not change."""

import json
import math
import time
from pathlib import Path

import pytest
from conftest import accelerate_ddp_launch, launch_workers, torchrun_launch, worker_env
from test_cli import write_model_dirs, write_recipe

from hf_unlearn.cli import main

ATTACKS = "quantize_8bit,relearn_partial"
WORKER = Path(__file__).with_name("_attack_worker.py")


@pytest.mark.slow
def test_attacks_under_two_processes_give_the_numbers_of_one(tmp_path, mislabeled):
    dirs = write_model_dirs(tmp_path, mislabeled)
    options = {"relearn": False, "attacks": ATTACKS, "attack_relearn_steps": 3}
    start = time.perf_counter()
    done = launch_workers(
        [
            *accelerate_ddp_launch(),
            "-m",
            "hf_unlearn.cli",
            "run",
            write_recipe(tmp_path, dirs, tmp_path / "two", **options),
        ],
        worker_env(),
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    assert main(["run", write_recipe(tmp_path, dirs, tmp_path / "one", **options)]) == 0
    two = json.loads((tmp_path / "two" / "unlearning_report.json").read_text())
    one = json.loads((tmp_path / "one" / "unlearning_report.json").read_text())
    assert two["reproducibility"]["world_size"] == 2
    for name in ("original", "golden", "unlearned"):
        keys = {k for k in two["metrics"][name] if k.startswith("attack/")}
        assert keys == {k for k in one["metrics"][name] if k.startswith("attack/")}, name
        for attack in ("quantize_8bit", "relearn_partial"):
            for key in ("forget/accuracy", "forget/loss", "golden/forget/loss", "gap_to_golden"):
                assert math.isfinite(two["metrics"][name][f"attack/{attack}/{key}"]), (name, attack, key)
    for name in (
        "original",
        "golden",
    ):  # unchanged by unlearning: the attacked copies score as in one process
        got = {k: v for k, v in two["metrics"][name].items() if k.startswith("attack/")}
        want = {k: one["metrics"][name][k] for k in got}
        assert got == pytest.approx(want, rel=1e-5, abs=1e-7), name
    print(f"2-process run with attacks: {seconds:.1f} s")


@pytest.mark.slow
def test_a_training_attack_measures_rank_0s_copy_on_every_process(tmp_path):
    done = launch_workers([*torchrun_launch(), str(WORKER), str(tmp_path)], worker_env())
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    one = ranks[0]["alone"]  # rank 0's copy (no noise), evaluated by one process
    assert ranks[1]["alone"] == one
    for rank in ranks:  # rank 1's noisy copy was replaced by rank 0's before the shares were evaluated
        assert rank["together"] == pytest.approx(one, rel=1e-6, abs=1e-9)
    assert {"attack/relearn_noisy/forget/loss", "attack/relearn_noisy/golden/forget/loss"} <= set(one)
