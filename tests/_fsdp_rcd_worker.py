"""Worker of test_fsdp_rcd: ``relearning_convergence_delay`` on 2 CPU processes (gloo), three times on the same
weights: alone (before the process group: the one-process reference), in the group on plain models (a DDP run's
models: every process relearns its own copy) and in the group on FSDP2-sharded models (``fully_shard`` per layer
and at the root).

Two models: a tiny BERT classifier with 3 labels (accuracy target, with a held-out reference) whose original is
sharded too, and a tiny GPT-2 causal LM (loss target, ``Conv1D`` weights, tied embeddings) whose golden is sharded
too. ``eval_every=2`` with refinement, so the kept-weights window is exercised. Each rank writes ``rank{R}.json``."""

import sys
import time

import torch

torch.set_num_threads(1)

import torch.distributed as dist  # noqa: E402
from _rank_results import write_rank_results  # noqa: E402
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402

from hf_unlearn.metrics import RelearnConfig, relearning_convergence_delay  # noqa: E402
from hf_unlearn.metrics._passes import prepare  # noqa: E402
from hf_unlearn.testing.fixtures import fictitious_qa_task, mislabeled_task  # noqa: E402
from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier  # noqa: E402
from hf_unlearn.weights.distributed import is_dtensor  # noqa: E402

CLASSIFIER, QA = mislabeled_task(seed=0), fictitious_qa_task(seed=0)


def taught(model, task, steps: int):
    """``model`` after ``steps`` AdamW steps on the whole forget set: an original that knows it (the random
    tiny models all start near chance, so every model would recover in 0 steps)."""
    rows, collator, kind = prepare(model, task.forget, task.tokenizer, "forget")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        kind.per_example_losses(model, collator(rows), torch.device("cpu")).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


# the originals' weights, taught once (before the process group; the same on every process: CPU, one thread)
ORIGINALS = {
    "classifier": taught(
        tiny_classifier(CLASSIFIER.tokenizer, num_labels=3, seed=2), CLASSIFIER, 5
    ).state_dict(),
    "causal_lm": taught(tiny_causal_lm(QA.tokenizer, seed=2), QA, 3).state_dict(),
}


def config(**kw) -> RelearnConfig:
    return RelearnConfig(batch_size=4, eval_every=2, progress_bar=False, **kw)


def shard(model, blocks, mesh):
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    assert all(is_dtensor(p) for p in model.parameters())
    return model


def summary(result) -> dict:
    """What the test compares: steps, ratios and the curves (the golden's and held-out's too)."""
    out = {
        "steps": result.steps,
        "recovered": result.recovered,
        "ratio_to_golden": result.ratio_to_golden,
        "ratio_to_heldout": result.ratio_to_heldout,
        "curve": result.curve,
    }
    for name in ("golden", "heldout"):
        part = getattr(result, name)
        out[name] = None if part is None else {"steps": part.steps, "curve": part.curve}
    return out


def classifier(mesh=None) -> dict:
    model, golden, original = (tiny_classifier(CLASSIFIER.tokenizer, num_labels=3, seed=s) for s in (0, 1, 2))
    original.load_state_dict(ORIGINALS["classifier"])
    if mesh is not None:
        model = shard(model, model.bert.encoder.layer, mesh)
        original = shard(original, original.bert.encoder.layer, mesh)
    result = relearning_convergence_delay(
        model,
        CLASSIFIER.forget,
        original_model=original,
        golden_model=golden,
        processing_class=CLASSIFIER.tokenizer,
        heldout_dataset=CLASSIFIER.test,
        heldout_label_corruption="random",
        config=config(learning_rate=1e-2, max_steps=12, alpha=0.3),
    )
    return summary(result)


def causal_lm(mesh=None) -> dict:
    model, golden, original = (tiny_causal_lm(QA.tokenizer, seed=s) for s in (0, 3, 2))
    original.load_state_dict(ORIGINALS["causal_lm"])
    if mesh is not None:
        model = shard(model, model.transformer.h, mesh)
        golden = shard(golden, golden.transformer.h, mesh)
    result = relearning_convergence_delay(
        model,
        QA.forget,
        original_model=original,
        golden_model=golden,
        processing_class=QA.tokenizer,
        config=config(learning_rate=1e-2, max_steps=10),
    )
    return summary(result)


def frozen_error(mesh) -> list:
    """A sharded model with nothing trainable: rank 0's ValueError, raised on every process (none waits)."""
    model = shard(tiny_classifier(CLASSIFIER.tokenizer, num_labels=3, seed=0), [], mesh)
    model.requires_grad_(False)
    try:
        relearning_convergence_delay(
            model,
            CLASSIFIER.forget,
            original_model=model,
            processing_class=CLASSIFIER.tokenizer,
            config=config(),
        )
    except ValueError as error:
        return [type(error).__name__, str(error)]
    return []


def main(out: str) -> None:
    seconds, found = {}, {}
    for phase in ("alone", "plain", "sharded"):
        if phase == "plain":
            dist.init_process_group("gloo")
            mesh = init_device_mesh("cpu", (dist.get_world_size(),))
        start = time.perf_counter()
        on = mesh if phase == "sharded" else None
        found[phase] = {"classifier": classifier(on), "causal_lm": causal_lm(on)}
        seconds[phase] = round(time.perf_counter() - start, 2)
    found["frozen_error"] = frozen_error(mesh)
    found["seconds"] = seconds
    write_rank_results(out, dist.get_rank(), {}, found)


if __name__ == "__main__":
    main(sys.argv[1])
