"""Worker of test_fsdp_attacks: ``evaluate_unlearning(..., attacks=[quantize_8bit, relearn_partial])`` of FSDP2-
sharded models (``fully_shard`` per layer and at the root, 2 CPU processes, gloo), first alone (before the
process group: the one-process reference on the same, unsharded weights), then sharded in the group.

Two models: a tiny BERT classifier with 3 labels (uneven shards of its head) whose original is sharded too, and a
tiny GPT-2 causal LM (``Conv1D`` weights ``[in, out]``: FSDP2's dimension-0 shards split every output channel
across the processes; tied embeddings) whose golden is sharded too. Each rank writes ``rank{R}.json``."""

import sys
import time

import torch

torch.set_num_threads(1)

import torch.distributed as dist  # noqa: E402
from _rank_results import write_rank_results  # noqa: E402
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402

from hf_unlearn.metrics import evaluate_unlearning  # noqa: E402
from hf_unlearn.metrics.attacks import RelearnPartialAttack, get_attack  # noqa: E402
from hf_unlearn.testing.fixtures import fictitious_qa_task, mislabeled_task  # noqa: E402
from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier  # noqa: E402
from hf_unlearn.weights.distributed import is_dtensor  # noqa: E402

CLASSIFIER, QA = mislabeled_task(seed=0), fictitious_qa_task(seed=0)


def attacks() -> list:
    return [get_attack("quantize_8bit"), RelearnPartialAttack(max_steps=3, learning_rate=1e-2, batch_size=4)]


def shard(model, blocks, mesh):
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    assert all(is_dtensor(p) for p in model.parameters())
    return model


def classifier(mesh=None) -> dict:
    model, golden = (tiny_classifier(CLASSIFIER.tokenizer, num_labels=3, seed=s) for s in (0, 1))
    original = tiny_classifier(CLASSIFIER.tokenizer, num_labels=3, seed=2)
    if mesh is not None:
        model = shard(model, model.bert.encoder.layer, mesh)
        original = shard(original, original.bert.encoder.layer, mesh)
    return evaluate_unlearning(
        model,
        forget_dataset=CLASSIFIER.forget,
        retain_dataset=CLASSIFIER.retain,
        golden_model=golden,
        original_model=original,
        processing_class=CLASSIFIER.tokenizer,
        batch_size=4,
        attacks=attacks(),
    )


def causal_lm(mesh=None) -> dict:
    model, golden = (tiny_causal_lm(QA.tokenizer, seed=s) for s in (0, 1))
    if mesh is not None:
        model = shard(model, model.transformer.h, mesh)
        golden = shard(golden, golden.transformer.h, mesh)
    return evaluate_unlearning(
        model,
        forget_dataset=QA.forget,
        retain_dataset=QA.retain,
        golden_model=golden,
        processing_class=QA.tokenizer,
        batch_size=4,
        generation=False,
        attacks=attacks(),
    )


def main(out: str) -> None:
    start = time.perf_counter()
    alone = {"classifier": classifier(), "causal_lm": causal_lm()}
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    middle = time.perf_counter()
    together = {"classifier": classifier(mesh), "causal_lm": causal_lm(mesh)}
    seconds = {"alone": middle - start, "sharded": time.perf_counter() - middle}
    found = {"alone": alone, "together": together, "seconds": seconds}
    write_rank_results(out, dist.get_rank(), {}, found)


if __name__ == "__main__":
    main(sys.argv[1])
