"""Real 2-process DDP on CPU (gloo) through the cpu_ddp accelerate recipe."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import accelerate_ddp_launch, launch_workers, worker_env
from safetensors.torch import load_file

WORKER = Path(__file__).with_name("_ddp_worker.py")


@pytest.mark.slow
def test_ieu_under_two_process_ddp_keeps_replicas_identical_and_matches_one_process(tmp_path):
    launch = [*accelerate_ddp_launch(), str(WORKER), str(tmp_path / "ddp"), "4"]
    ddp = launch_workers(launch, worker_env())
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, str(WORKER), str(tmp_path / "one"), "8"],
        env=worker_env(),
        capture_output=True,
        text=True,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    rank0 = load_file(tmp_path / "ddp" / "rank0.safetensors")
    rank1 = load_file(tmp_path / "ddp" / "rank1.safetensors")
    one = load_file(tmp_path / "one" / "rank0.safetensors")
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0), "IEU noise differs across replicas"
    # Same global batch (2 x 4 vs 1 x 8): same result up to float summation order.
    for key in rank0:
        torch.testing.assert_close(rank0[key], one[key], atol=1e-4, rtol=1e-4)
