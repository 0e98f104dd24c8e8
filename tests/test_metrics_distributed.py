"""Evaluation across processes: every process evaluates its share of the batches (and generations) and the
per-example values are gathered, so 2 CPU processes (gloo) give the numbers of one."""

import json
from pathlib import Path

import pytest
from conftest import launch_workers, torchrun_launch, worker_env

WORKER = Path(__file__).with_name("_eval_worker.py")


@pytest.mark.slow
def test_two_processes_share_the_passes_and_gather_the_numbers_of_one(tmp_path):
    done = launch_workers([*torchrun_launch(), str(WORKER), str(tmp_path)], worker_env())
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for kind in ("causal_lm", "classifier"):
        one = ranks[0]["alone"][kind]  # each process first evaluated on its own, before the group existed
        assert ranks[1]["alone"][kind]["metrics"] == one["metrics"]
        for rank in ranks:
            got = rank["together"][kind]["metrics"]
            assert set(got) == set(one["metrics"])
            assert got == pytest.approx(one["metrics"], rel=1e-6, abs=1e-9, nan_ok=True), kind
        # each process ran about half of the forward passes (one filler pass at most per split and pass)
        calls = [rank["together"][kind]["forward_calls"] for rank in ranks]
        assert calls[0] == calls[1], calls
        assert calls[0] < 0.7 * one["forward_calls"], (calls, one["forward_calls"])
    assert "forget/rouge_l_recall" in ranks[0]["alone"]["causal_lm"]["metrics"]  # generations shared too
