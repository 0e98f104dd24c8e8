"""Exact resume: for every registered method on every registered model kind, a run killed with SIGKILL right after a checkpoint and
resumed from it ends bit-identical to an uninterrupted run (CPU). Per-step randomness (IEU noise, random
wrong tokens), the NPO reference cache and the forget-loss cap measured before the first step must all come
back from the checkpoint."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import method_kind_matrix, worker_env

# every registered method x one test model per registered kind (idk_dpo carries both reference caches across a
# resume, undial and rmu a frozen copy, npo one cache, ieu its noise stream, salun its mask)
MATRIX = method_kind_matrix(one_model_per_kind=True)


WORKER = Path(__file__).with_name("_resume_worker.py")


@pytest.fixture(scope="module")
def resume_results(tmp_path_factory):
    """One worker process runs every defined (method, kind) pair: full run, SIGKILL after step 2, resume."""
    root = tmp_path_factory.mktemp("resume")
    done = subprocess.run(
        [sys.executable, str(WORKER), str(root), ",".join(f"{m}:{k}" for m, k in MATRIX)],
        env=worker_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [json.loads(line[7:]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return {(row["method"], row["kind"]): row for row in rows}


@pytest.mark.slow
@pytest.mark.parametrize(("method", "kind"), MATRIX)
def test_sigkilled_run_resumes_bit_identical(resume_results, method, kind):
    row = resume_results[(method, kind)]
    assert row["signal"] == signal.SIGKILL  # the child died hard, right after its checkpoint
    assert row["checkpoints_after_kill"] == ["checkpoint-2"]
    assert row["final_step"] == 4
    assert row["resumed_part_trained"], "the resumed part trained nothing"
    assert row["same_keys"] and row["different"] == [], row["different"]
