"""Worker for tests/test_attacks_distributed.py: ``attack_metrics`` of a tiny classifier under a relearning
attack whose copy differs by process (rank 1 adds noise to it, as non-deterministic GPU kernels could), first
alone (no process group: the one-process reference, rank 0's copy), then in the process group."""

import json
import os
import sys

import torch
import torch.distributed as dist

from hf_unlearn.metrics.attacks import RelearnPartialAttack, attack_metrics
from hf_unlearn.testing.fixtures import mislabeled_task
from hf_unlearn.tiny import tiny_classifier

torch.set_num_threads(1)


class RankDependentRelearn(RelearnPartialAttack):
    """``relearn_partial`` whose copy on rank 1 gets Gaussian noise (std 0.5) on every weight."""

    def apply(self, model, attack_data=None, processing_class=None):
        copied = super().apply(model, attack_data, processing_class)
        if dist.is_initialized() and dist.get_rank() == 1:
            generator = torch.Generator().manual_seed(1)
            for p in copied.parameters():
                p.data.add_(0.5 * torch.randn(p.shape, generator=generator))
        return copied


def attacked() -> dict:
    task = mislabeled_task(seed=0)
    attack = RankDependentRelearn(max_steps=3, learning_rate=1e-3)
    attack.name = "relearn_noisy"
    return attack_metrics(
        tiny_classifier(task.tokenizer, seed=0),
        [attack],
        forget_dataset=task.forget,
        golden_model=tiny_classifier(task.tokenizer, seed=1),
        processing_class=task.tokenizer,
        batch_size=4,
    )


alone = attacked()
dist.init_process_group("gloo")
together = attacked()
with open(os.path.join(sys.argv[1], f"rank{dist.get_rank()}.json"), "w") as f:
    json.dump({"alone": alone, "together": together}, f)
dist.barrier()  # leave the group together: exiting with it alive can abort at teardown
dist.destroy_process_group()
