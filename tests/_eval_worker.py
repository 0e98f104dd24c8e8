"""Worker for tests/test_metrics_distributed.py: ``evaluate_unlearning`` of a tiny GPT-2 (with generations)
and of a tiny classifier, first alone (no process group yet: the one-process reference), then in the process
group; writes both and how many forward passes this process made in each."""

import json
import os
import sys

import torch
import torch.distributed as dist

from hf_unlearn.metrics import evaluate_unlearning
from hf_unlearn.testing.fixtures import fictitious_qa_task, mislabeled_task
from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier

torch.set_num_threads(1)


def evaluate_tiny_models() -> dict:
    out = {}
    for kind, task, build in (
        ("causal_lm", fictitious_qa_task(seed=0), tiny_causal_lm),
        ("classifier", mislabeled_task(seed=0), tiny_classifier),
    ):
        model, golden = build(task.tokenizer, seed=0), build(task.tokenizer, seed=1)
        calls = []
        model.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        metrics = evaluate_unlearning(
            model,
            forget_dataset=task.forget,
            retain_dataset=task.retain,
            test_dataset=task.test,
            golden_model=golden,
            original_model=golden,
            processing_class=task.tokenizer,
            batch_size=4,
            generation=kind == "causal_lm",
            max_new_tokens=3,
        )
        out[kind] = {"metrics": metrics, "forward_calls": len(calls)}
    return out


alone = evaluate_tiny_models()
dist.init_process_group("gloo")
together = evaluate_tiny_models()
with open(os.path.join(sys.argv[1], f"rank{dist.get_rank()}.json"), "w") as f:
    json.dump({"alone": alone, "together": together}, f)
dist.barrier()  # leave the group together: exiting with it alive can abort at teardown
dist.destroy_process_group()
