"""Evaluation across processes: every process evaluates its share of the batches (and generations) and the
per-example values are gathered, so 2 CPU processes (gloo) give the numbers of one."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_eval_worker.py")


def _run(command: list[str], folder: Path) -> None:
    folder.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*command, str(WORKER), str(folder)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_two_processes_share_the_passes_and_gather_the_numbers_of_one(tmp_path):
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    _run(launch, tmp_path / "two")
    _run([sys.executable], tmp_path / "one")
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    ranks = [json.loads((tmp_path / "two" / f"rank{r}.json").read_text()) for r in (0, 1)]
    for kind in ("causal_lm", "classifier"):
        expected = one[kind]["metrics"]
        for rank in ranks:
            got = rank[kind]["metrics"]
            assert set(got) == set(expected)
            assert got == pytest.approx(expected, rel=1e-6, abs=1e-9, nan_ok=True), kind
        # each process ran about half of the forward passes (one filler pass at most per split and pass)
        calls = [rank[kind]["forward_calls"] for rank in ranks]
        assert calls[0] == calls[1], calls
        assert calls[0] < 0.7 * one[kind]["forward_calls"], (calls, one[kind]["forward_calls"])
    assert "forget/rouge_l_recall" in one["causal_lm"]["metrics"]  # the generations were shared too
