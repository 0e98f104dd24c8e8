"""Worker of test_fsdp_setup: the trainer's measurements before the first step on FSDP2 shards (``fully_shard``)
across CPU processes (gloo), next to the same measurements on an unsharded copy in the same process.

Launched with ``python -m torch.distributed.run --standalone --nproc_per_node 2 _fsdp_setup_worker.py OUT_DIR``.
A tiny GPT-2 on the fictitious-people QA task, sharded per block and at the root: the per-example forget NLL,
the NPO reference log-probs, the held-out cap, influence removal ("mask"), SalUn's masks and the masked
gradients, plus ``global_top_fraction`` on synthetic scores with ties and non-finite values (uneven shards).
Each rank writes ``rank{R}.safetensors`` (full tensors of the unsharded runs, local shards of the sharded ones)
and ``rank{R}.json`` (shard offsets, counts, findings).
"""

import math
import os
import sys

import torch

torch.set_num_threads(1)

import torch.distributed as dist  # noqa: E402
from _rank_results import write_rank_results  # noqa: E402
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402
from torch.distributed.tensor import Shard, distribute_tensor  # noqa: E402

from hf_unlearn import UnlearningConfig, UnlearningTrainer  # noqa: E402
from hf_unlearn.testing.fixtures import fictitious_qa_task  # noqa: E402
from hf_unlearn.tiny import tiny_causal_lm  # noqa: E402
from hf_unlearn.trainer import state as trainer_state  # noqa: E402
from hf_unlearn.weights import masking as influence  # noqa: E402
from hf_unlearn.weights import sharded as sharded_selection  # noqa: E402
from hf_unlearn.weights.distributed import local_tensor, reshard, shard_offset  # noqa: E402

TASK = fictitious_qa_task(seed=0)
MASK_RATIO, SALUN_RATIO = 0.05, 0.3
SYNTHETIC_RATIOS = (0.1, 0.35, 0.6, 0.99)


def trainer_for(out: str) -> UnlearningTrainer:
    args = UnlearningConfig(
        output_dir=os.path.join(out, "run"),
        method="npo",
        influence_removal="mask",
        mask_ratio=MASK_RATIO,
        forget_loss_cap_from_eval=1.0,
        lm_loss_chunk_size=0,  # what the trainer does under FSDP (full logits)
        per_device_eval_batch_size=4,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    model = tiny_causal_lm(TASK.tokenizer)
    return UnlearningTrainer(
        model,
        args,
        forget_dataset=TASK.forget,
        retain_dataset=TASK.retain,
        processing_class=TASK.tokenizer,
        eval_dataset=TASK.test,
    )


def plain_model() -> torch.nn.Module:
    return tiny_causal_lm(TASK.tokenizer)


def sharded_model(mesh) -> torch.nn.Module:
    model = tiny_causal_lm(TASK.tokenizer)
    for block in model.transformer.h:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def weights(model, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}/{n}": local_tensor(p).detach().clone() for n, p in model.named_parameters()}


def grads(model, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}/{n}": local_tensor(p.grad).detach().clone() for n, p in model.named_parameters()}


def prefixed(masks: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}/{n}": m.to(torch.uint8) for n, m in masks.items()}


def ties_at_kth(scores: dict[str, torch.Tensor], ratio: float) -> int:
    """How many scores equal the k-th largest (1: the selection is unique)."""
    flat = torch.cat([s.flatten().float() for s in scores.values()])
    flat = torch.where(torch.isfinite(flat), flat, torch.full_like(flat, -math.inf))
    kth = torch.topk(flat, max(1, int(ratio * flat.numel()))).values[-1]
    return int((flat == kth).sum())


def forward_passes(trainer, plain, sharded) -> tuple[dict, dict]:
    tensors, found = {}, {}
    for label, model in (("plain", plain), ("sharded", sharded)):
        tensors[f"{label}/ref_logprob"] = trainer.reference_logprobs(model)["ref_logprob"]
        nll = trainer.per_example_losses(trainer.forget_rows, model)
        tensors[f"{label}/forget_nll"] = nll
        found[f"{label}/heldout_cap"] = trainer.heldout_cap(model)
    reshard(sharded)
    return tensors, found


def influence_removal(trainer, plain, sharded) -> tuple[dict, dict]:
    forget = influence.gradient_magnitudes(
        plain, trainer.device_batches(trainer.forget_rows, "f"), trainer.loss_sum
    )
    retain = influence.gradient_magnitudes(
        plain, trainer.device_batches(trainer.retain_rows, "r"), trainer.loss_sum
    )
    scores = influence.forget_only_scores(forget, retain, len(trainer.forget_rows), len(trainer.retain_rows))
    found = {
        "removal/ties": ties_at_kth(scores, MASK_RATIO),
        "removal/plain_count": trainer.remove_influence(plain),
        "removal/sharded_count": trainer.remove_influence(sharded),
    }
    return {**weights(plain, "removal/plain"), **weights(sharded, "removal/sharded")}, found


def salun(trainer, plain, sharded) -> tuple[dict, dict]:
    saliency = influence.gradient_magnitudes(
        plain, trainer.device_batches(trainer.forget_rows, "s"), trainer.loss_sum, per_batch=False
    )
    local_saliency = influence.gradient_magnitudes(
        sharded, trainer.device_batches(trainer.forget_rows, "s"), trainer.loss_sum, per_batch=False
    )
    plain_masks = trainer.saliency_masks(SALUN_RATIO, plain)
    sharded_masks = trainer.saliency_masks(SALUN_RATIO, sharded)
    shards = sharded_selection.sharded_parameters(sharded)
    gathered = sharded_selection.gather_masks(shards, sharded_masks)
    back = sharded_selection.local_masks(shards, gathered)
    tensors = {
        **prefixed(plain_masks, "salun/plain"),
        **prefixed(sharded_masks, "salun/sharded"),
        **prefixed(influence.top_fraction(local_saliency, SALUN_RATIO), "salun/per_shard"),
        **prefixed(gathered, "salun/gathered"),
    }
    # one backward with the masks applied: hooks on the plain model, after the backward on the shards
    batch = next(trainer.device_batches(trainer.forget_rows, "b"))
    handles = influence.mask_gradients(plain, plain_masks)
    trainer.loss_sum(plain, batch).backward()
    for handle in handles:
        handle.remove()
    trainer.loss_sum(sharded, batch).backward()
    sharded_selection.mask_local_gradients(sharded, sharded_masks)
    tensors.update({**grads(plain, "salun/grad/plain"), **grads(sharded, "salun/grad/sharded")})
    found = {
        "salun/ties": ties_at_kth(saliency, SALUN_RATIO),
        "salun/round_trip": all(torch.equal(back[n], sharded_masks[n]) for n in sharded_masks),
        "salun/resumed": resumed_masks_match(trainer, sharded, sharded_masks),
    }
    return tensors, found


def resumed_masks_match(trainer, sharded, masks) -> bool:
    """The trainer's own path: masks attached to the shards, saved to a checkpoint as the trainer saves them
    (gathered on every rank, written by rank 0) and attached again from it, local-shard shaped."""
    folder = os.path.join(trainer.args.output_dir, "checkpoint-1")
    trainer.attach_update_masks(SALUN_RATIO, None, sharded)
    attached = trainer.mask_shards is not None and all(
        torch.equal(trainer.update_masks[n], masks[n]) for n in masks
    )
    full = sharded_selection.gather_masks(trainer.mask_shards, trainer.update_masks)
    if dist.get_rank() == 0:
        os.makedirs(folder, exist_ok=True)
        trainer_state.save_run_state(trainer, folder, full)
    dist.barrier()
    trainer.update_masks = trainer.mask_shards = None
    measure, trainer.saliency_masks = trainer.saliency_masks, None  # from the checkpoint, not measured again
    trainer.attach_update_masks(SALUN_RATIO, folder, sharded)
    trainer.saliency_masks = measure
    return attached and all(torch.equal(trainer.update_masks[n], masks[n]) for n in masks)


def synthetic_scores() -> dict[str, torch.Tensor]:
    """Few distinct values (many ties), -0.0 next to 0.0, -inf and NaN, tensors of uneven rows (7, 5, 3)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randint(0, 4, (7, 3), generator=generator).float()
    a[0, 0], a[6, 2] = -math.inf, math.nan
    b = torch.randint(-1, 3, (5,), generator=generator).float()
    b[1] = -0.0
    c = torch.randint(0, 2, (3, 2), generator=generator).float() + 2.0  # high scores in one tensor
    return {"a": a, "b": b, "c": c}


def synthetic(mesh) -> tuple[dict, dict]:
    full = synthetic_scores()
    dtensors = {n: distribute_tensor(t, mesh, [Shard(0)]) for n, t in full.items()}
    local = {n: d.to_local() for n, d in dtensors.items()}
    tensors = {}
    for ratio in SYNTHETIC_RATIOS:
        tensors.update(
            prefixed(sharded_selection.global_top_fraction(local, dtensors, ratio), f"synthetic/{ratio}")
        )
        tensors.update(prefixed(influence.top_fraction(local, ratio), f"synthetic/per_shard/{ratio}"))
    found = {"synthetic/offsets": {n: shard_offset(d)[0] for n, d in dtensors.items()}}
    return tensors, found


def main(out: str) -> None:
    trainer = trainer_for(out)  # the trainer's arguments initialize the gloo process group
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    tensors, found = {}, {"world": world}
    for step in (
        lambda: forward_passes(trainer, plain_model(), sharded_model(mesh)),
        lambda: influence_removal(trainer, plain_model(), sharded_model(mesh)),
        lambda: salun(trainer, plain_model(), sharded_model(mesh)),
        lambda: synthetic(mesh),
    ):
        more_tensors, more_found = step()
        tensors.update(more_tensors)
        found.update(more_found)
    found["layout"] = {
        n: {"offset": shard_offset(p)[0], "rows": local_tensor(p).shape[0]}
        for n, p in sharded_model(mesh).named_parameters()
    }
    write_rank_results(out, rank, tensors, found)


if __name__ == "__main__":
    main(sys.argv[1])
