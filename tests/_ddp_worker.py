"""Worker for tests/test_distributed.py: a short IEU run; every rank dumps its final weights."""

import os
import sys

import torch
from safetensors.torch import save_file

from hf_unlearn import UnlearningConfig, UnlearningTrainer
from hf_unlearn.testing.fixtures import mislabeled_task
from hf_unlearn.tiny import tiny_classifier

torch.set_num_threads(1)
out, batch_size = sys.argv[1], int(sys.argv[2])
task = mislabeled_task(seed=0)
model = tiny_classifier(task.tokenizer, seed=0)
args = UnlearningConfig(
    output_dir=out,
    method="ieu",
    max_steps=4,
    per_device_train_batch_size=batch_size,
    learning_rate=1e-2,
    report_to=[],
    save_strategy="no",
    use_cpu=True,
    disable_tqdm=True,
    seed=0,
    ieu_noise_std=1e-3,
    ieu_noise_every=1,  # noise on every one of the 4 steps
    ieu_decay=1.0,
    logging_steps=1,
    ddp_find_unused_parameters=False,
)
trainer = UnlearningTrainer(
    model, args, forget_dataset=task.forget, retain_dataset=task.retain, processing_class=task.tokenizer
)
trainer.train()
os.makedirs(out, exist_ok=True)
rank = int(os.environ.get("RANK", 0))
save_file(
    {k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, f"rank{rank}.safetensors")
)
if (
    torch.distributed.is_initialized()
):  # leave the group together: exiting with it alive can abort at teardown
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
