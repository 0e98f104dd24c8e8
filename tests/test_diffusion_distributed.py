"""``accelerate launch`` (2 CPU processes, gloo) of ``hf-unlearn run`` on diffusion models: the run finishes, the
main process alone writes the model and the report, and the unlearned weights are those of a 1-process run with
the same global batch (each example's noise and timestep come from its index, not from the process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import accelerate_ddp_launch, launch_workers, worker_env
from safetensors.torch import load_file
from test_diffusion_run import FAST, RECIPES, data_flags, write_image_folders, write_prompt_files

DONE = "Unlearned model, report and model card written to"
#: plain SGD: the update is linear in the gradient, so the float summation order of 2 processes moves the weights by
#: ~1e-7 (Adam's g / sqrt(v) blows that up on near-zero gradients, to the size of the learning rate)
SGD = ["--optim", "sgd", "--learning_rate", "1e-2"]


def launch(argv: list[str], processes: int):
    """``hf-unlearn run argv`` under ``accelerate launch`` (2 processes) or in one plain process."""
    if processes == 2:
        return launch_workers([*accelerate_ddp_launch(), "-m", "hf_unlearn.cli", "run", *argv], worker_env())
    command = [sys.executable, "-m", "hf_unlearn.cli", "run", *argv]
    return subprocess.run(command, env=worker_env(), capture_output=True, text=True)


def assert_same_run(tmp_path, argv: list[str], batch: int, weights: str) -> dict:
    """Run ``argv`` on 2 processes (``batch`` each) and on 1 (``2 * batch``); the report exists and was written
    once, the weights file ``weights`` (relative to the output folder) matches. Returns the 2-process report."""
    runs = {}
    for processes in (2, 1):
        out = tmp_path / f"out{processes}"
        per_device = str(batch * (3 - processes))
        done = launch(
            [*argv, "--output_dir", str(out), "--per_device_train_batch_size", per_device], processes
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count(DONE) == 1, done.stdout[-2000:]  # the main process alone reports
        runs[processes] = out
    two = json.loads((runs[2] / "unlearning_report.json").read_text())
    assert two["reproducibility"]["world_size"] == 2 and two["hyperparameters"]["steps_run"] == 2
    a, b = load_file(runs[2] / weights), load_file(runs[1] / weights)
    assert set(a) == set(b)
    for key in a:  # the same global batch: the same result up to float summation order
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4)
    original = load_file(os.path.join(argv[argv.index("--model_name_or_path") + 1], weights))
    assert any(not torch.equal(a[k], original[k]) for k in a)  # and it did train
    return two


@pytest.mark.slow
def test_a_class_conditional_unet_under_two_processes_matches_one(tmp_path):
    from hf_unlearn.tiny import tiny_unet

    tiny_unet(num_classes=3, seed=0).save_pretrained(tmp_path / "unet")
    tiny_unet(num_classes=3, seed=1).save_pretrained(tmp_path / "golden")
    job = {"model": str(tmp_path / "unet"), "golden": str(tmp_path / "golden")}
    job.update(
        write_image_folders(tmp_path, {"forget": [0], "retain": [1, 2], "test": [0, 1, 2]}, per_class=4)
    )
    argv = [str(RECIPES / "digits-ddpm-baselines.yaml"), *data_flags(job), *FAST, *SGD]
    report = assert_same_run(tmp_path, argv, batch=2, weights="diffusion_pytorch_model.safetensors")
    assert set(report["metrics"]) == {"original", "golden", "unlearned"}


@pytest.mark.slow
def test_a_stable_diffusion_pipeline_with_lora_under_two_processes_matches_one(tmp_path):
    from hf_unlearn.testing.tiny_pipeline import concept_task, save_tiny_sd_pipeline

    folder = save_tiny_sd_pipeline(str(tmp_path / "sd"))
    data = write_prompt_files(tmp_path, concept_task())
    argv = [str(RECIPES / "sd-local-esd-lora.yaml"), "--model_name_or_path", folder, "--forget_dataset",
            data["forget"], "--retain_dataset", data["retain"], "--test_dataset", data["test"],
            "--gradient_accumulation_steps", "1", *FAST, *SGD]  # fmt: skip
    assert_same_run(tmp_path, argv, batch=2, weights="unet/diffusion_pytorch_model.safetensors")
