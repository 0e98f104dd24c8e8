"""Worker of test_trainer_resume: for each method x model kind, an uninterrupted run, a run that SIGKILLs
itself right after its step-2 checkpoint (in a forked child, so nothing is cleaned up), and a resumed run;
prints one JSON line per pair with what the test checks. One process keeps the cost of importing
transformers to one start-up for all pairs.

Usage: python _resume_worker.py OUT_DIR METHOD:TEST_MODEL[,METHOD:TEST_MODEL...]
"""

import json
import os
import signal
import sys

import torch

torch.set_num_threads(1)

from safetensors.torch import load_file  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from hf_unlearn import UnlearningConfig, UnlearningTrainer  # noqa: E402
from hf_unlearn.testing.fixtures import digits_task, fictitious_qa_task, mislabeled_task  # noqa: E402
from hf_unlearn.testing.tiny_pipeline import concept_task, tiny_pipeline_unet  # noqa: E402
from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier, tiny_image_classifier, tiny_unet  # noqa: E402

MAX_STEPS, SAVE_STEPS = 4, 2
#: the task and model builder of each test model of conftest.KIND_TEST_MODELS
TASKS = {
    "classifier": (mislabeled_task, tiny_classifier),
    "causal_lm": (fictitious_qa_task, tiny_causal_lm),
    "resnet": (digits_task, lambda processor, seed: tiny_image_classifier("resnet", seed=seed)),
    "vit": (digits_task, lambda processor, seed: tiny_image_classifier("vit", seed=seed)),
    "ddpm": (digits_task, lambda processor, seed: tiny_unet(num_classes=10, seed=seed)),
    "sd": (concept_task, tiny_pipeline_unet),  # a text-to-image pipeline's UNet, prompt rows
}


class KillAfterSave(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == SAVE_STEPS:
            os.kill(os.getpid(), signal.SIGKILL)


def train(task, build, method: str, out: str, kill: bool = False, resume: bool = False) -> None:
    args = UnlearningConfig(
        output_dir=out,
        method=method,
        max_steps=MAX_STEPS,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        save_strategy="steps",
        save_steps=SAVE_STEPS,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=3,
        logging_steps=1,
        ieu_noise_std=1e-3,
        ieu_noise_every=1,  # fresh noise on every step, on both sides of the checkpoint
        ieu_decay=2.0,
    )
    trainer = UnlearningTrainer(
        build(task.tokenizer, seed=0),
        args,
        forget_dataset=task.forget,
        retain_dataset=task.retain,
        processing_class=task.tokenizer,
        callbacks=[KillAfterSave()] if kill else None,
    )
    trainer.train(resume_from_checkpoint=True if resume else None)
    trainer.save_model(os.path.join(out, "final"))


def killed_run(task, build, method: str, out: str) -> int:
    """Runs the killed training in a forked child; returns the signal that ended it (0 if none)."""
    pid = os.fork()
    if pid == 0:
        try:
            train(task, build, method, out, kill=True)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0


def compare(method: str, kind: str, root: str) -> dict:
    task_fn, build = TASKS[kind]
    task = task_fn(seed=0)
    full, split = os.path.join(root, f"{method}-{kind}-full"), os.path.join(root, f"{method}-{kind}-split")
    train(task, build, method, full)
    signal_number = killed_run(task, build, method, split)
    checkpoints = sorted(name for name in os.listdir(split) if name.startswith("checkpoint-"))
    train(task, build, method, split, resume=True)
    a = load_file(os.path.join(full, "final", "model.safetensors"))
    b = load_file(os.path.join(split, "final", "model.safetensors"))
    start = load_file(os.path.join(split, f"checkpoint-{SAVE_STEPS}", "model.safetensors"))
    return {
        "method": method,
        "kind": kind,
        "signal": signal_number,
        "checkpoints_after_kill": checkpoints,
        "same_keys": a.keys() == b.keys(),
        "different": sorted(k for k in a if k in b and not torch.equal(a[k], b[k])),
        "resumed_part_trained": any(not torch.equal(a[k], start[k]) for k in a),
        "final_step": json.load(open(os.path.join(split, f"checkpoint-{MAX_STEPS}", "trainer_state.json")))[
            "global_step"
        ],
    }


if __name__ == "__main__":
    root, pairs = sys.argv[1], [pair.split(":") for pair in sys.argv[2].split(",")]
    for method, kind in pairs:
        print("RESULT", json.dumps(compare(method, kind, root)), flush=True)
