"""Exact resume: a run killed with SIGKILL and resumed from its checkpoint ends bit-identical to an
uninterrupted run (CPU), for methods with per-step randomness (IEU noise, random wrong tokens) and a
reference cache (NPO)."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    from transformers import TrainerCallback
    from hf_unlearn import UnlearningConfig, UnlearningTrainer
    from hf_unlearn.testing import fictitious_qa_task, mislabeled_task
    from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier

    method, kind, out, mode = sys.argv[1:5]
    task = mislabeled_task(seed=0) if kind == "classifier" else fictitious_qa_task(seed=0)
    build = tiny_classifier if kind == "classifier" else tiny_causal_lm
    model = build(task.tokenizer, seed=0)

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    args = UnlearningConfig(
        output_dir=out, method=method, max_steps=5, per_device_train_batch_size=4, learning_rate=1e-2,
        save_strategy="steps", save_steps=2, report_to=[], use_cpu=True, disable_tqdm=True, seed=3,
        logging_steps=1, ieu_noise_std=1e-3, ieu_decay=2.0, forget_loss_cap=50.0,
    )
    trainer = UnlearningTrainer(
        model, args, forget_dataset=task.forget, retain_dataset=task.retain, processing_class=task.tokenizer,
        callbacks=[KillAfterSave()] if mode == "kill" else None,
    )
    trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
    trainer.save_model(os.path.join(out, "final"))
    """
)


def _run(tmp_path, method, kind, out, mode):
    script = tmp_path / "run.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, str(script), method, kind, str(out), mode], env=env, capture_output=True, text=True
    )


@pytest.mark.slow
@pytest.mark.parametrize("method, kind", [("ieu", "classifier"), ("npo", "classifier"), ("rl", "causal_lm")])
def test_sigkilled_run_resumes_bit_identical(tmp_path, method, kind):
    full = _run(tmp_path, method, kind, tmp_path / "full", "plain")
    assert full.returncode == 0, full.stderr[-3000:]
    killed = _run(tmp_path, method, kind, tmp_path / "split", "kill")
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "split" / "checkpoint-2").is_dir() and not (
        tmp_path / "split" / "checkpoint-4"
    ).exists()
    resumed = _run(tmp_path, method, kind, tmp_path / "split", "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = json.loads(
        (tmp_path / "split" / "final" / ".." / "checkpoint-4" / "trainer_state.json").read_text()
    )
    assert state["global_step"] == 4
    a = load_file(tmp_path / "full" / "final" / "model.safetensors")
    b = load_file(tmp_path / "split" / "final" / "model.safetensors")
    start = load_file(tmp_path / "split" / "checkpoint-2" / "model.safetensors")
    assert a.keys() == b.keys()
    assert any(not torch.equal(a[k], start[k]) for k in a), "the resumed part trained nothing"
    for key in a:
        assert torch.equal(a[key], b[key]), key
