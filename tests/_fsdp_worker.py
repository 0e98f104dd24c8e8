"""Worker of test_fsdp: IEU's step hook on FSDP2 shards (``fully_shard``) across CPU processes (gloo).

Launched with ``python -m torch.distributed.run --standalone --nproc_per_node 2 _fsdp_worker.py OUT_DIR``,
with ``ACCELERATE_USE_FSDP=true``: first what accelerate makes of that on CPU (no sharding) and what
``check_sharding`` says, then a tiny BERT classifier (3 labels: uneven shards) plus a parameter outside the
forward pass (no gradient; an empty shard on rank 1), sharded per layer and at the root, trained with the
trainer's optimizer (fused AdamW, two param groups) and the hook as the trainer builds it. Each rank writes
``rank{R}.safetensors`` (local shards) and ``rank{R}.json`` (shard offsets, global shapes, findings).
"""

import sys

import torch

torch.set_num_threads(1)

import torch.distributed as dist  # noqa: E402
import torch.distributed.checkpoint as dcp  # noqa: E402
from _rank_results import write_rank_results  # noqa: E402
from torch.distributed.checkpoint.state_dict import (  # noqa: E402
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402

from hf_unlearn.testing.fixtures import mislabeled_task  # noqa: E402
from hf_unlearn.tiny import tiny_classifier  # noqa: E402
from hf_unlearn.weights.decay_noise import DecayNoiseHook  # noqa: E402
from hf_unlearn.weights.distributed import (  # noqa: E402
    ShardingNotAppliedError,
    check_sharding,
    local_tensor,
    shard_offset,
)

LR, MAX_STEPS = 1e-2, 8
TOKENIZER = mislabeled_task(seed=0).tokenizer


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.model = tiny_classifier(TOKENIZER, num_labels=3, seed=0)
        self.spare = torch.nn.Parameter(torch.ones(1, 5))  # not in the forward pass: grad stays None

    def forward(self, input_ids, labels):
        return self.model(input_ids=input_ids, labels=labels).loss


def accelerate_on_cpu() -> dict:
    """What ``accelerate`` does with the FSDP request on CPU, and ``check_sharding`` on its model."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = accelerator.prepare(Classifier())
    try:
        check_sharding(accelerator, model)
        error = None
    except ShardingNotAppliedError as err:
        error = str(err)
    kinds = sorted({type(p).__name__ for p in model.parameters()})
    return {"distributed_type": str(accelerator.distributed_type), "param_types": kinds, "error": error}


def build(mesh, decay: float, noise_std: float, step: list, rank_offset: int):
    """The sharded model, its optimizer and the IEU hook attached as the trainer attaches it."""
    net = Classifier()
    for layer in net.model.bert.encoder.layer:
        fully_shard(layer, mesh=mesh)
    fully_shard(net, mesh=mesh)
    matrices = [p for p in net.parameters() if p.dim() >= 2]
    others = [p for p in net.parameters() if p.dim() < 2]
    groups = [{"params": matrices, "weight_decay": 0.0}, {"params": others, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=LR, fused=True)
    hook = DecayNoiseHook(
        decay, noise_std, "constant", 0, lambda: step[0], lambda: MAX_STEPS, rank_offset=rank_offset
    )
    hook.attach(optimizer)
    return net, optimizer


def batch(step: int, rank: int) -> dict:
    generator = torch.Generator().manual_seed(1000 * step + rank)
    ids = torch.randint(5, len(TOKENIZER), (4, 12), generator=generator)
    return {"input_ids": ids, "labels": torch.randint(0, 3, (4,), generator=generator)}


def train_step(net, optimizer, step: list, rank: int, zero_grads: bool = False) -> None:
    net(**batch(step[0], rank)).backward()
    if zero_grads:  # no update from AdamW: what is left is the decay
        for p in net.parameters():
            if p.grad is not None:
                p.grad.zero_()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    step[0] += 1


def locals_of(net) -> dict[str, torch.Tensor]:
    return {name: local_tensor(p).detach().clone() for name, p in net.named_parameters()}


def main(out: str) -> None:
    found = {"accelerate": accelerate_on_cpu()}  # initializes the gloo process group
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    tensors = {}

    # decay alone (gradients zeroed): step 0 the hook's own pass, later steps folded into AdamW
    step = [0]
    net, optimizer = build(mesh, decay=5.0, noise_std=0.0, step=step, rank_offset=rank)
    found["sharding"] = check_sharding(None, net)
    found["layout"] = {
        name: {"global": list(p.shape), "offset": list(shard_offset(p)), "local": list(local_tensor(p).shape)}
        for name, p in net.named_parameters()
    }
    found["param_types"] = sorted({type(p).__name__ for p in net.parameters()})
    for t in range(3):
        before = locals_of(net)
        train_step(net, optimizer, step, rank, zero_grads=True)
        after = locals_of(net)
        tensors.update({f"decay/{t}/before/{k}": v for k, v in before.items()})
        tensors.update({f"decay/{t}/after/{k}": v for k, v in after.items()})
    found["folded"] = [g.get("ieu_folded_decay") for g in optimizer.param_groups]

    # noise alone (lr 0: no update, no decay), with the trainer's rank_offset and with none
    for label, offset in (("rank", rank), ("zero", 0)):
        step = [0]
        net, optimizer = build(mesh, decay=0.0, noise_std=0.02, step=step, rank_offset=offset)
        for group in optimizer.param_groups:
            group["lr"] = 0.0
        before = locals_of(net)
        train_step(net, optimizer, step, rank)
        after = locals_of(net)
        tensors.update({f"noise/{label}/{k}": after[k] - before[k] for k in before})

    # resume: 4 steps straight vs 2 steps, a distributed checkpoint, a fresh model and optimizer, 2 steps
    # (the spare parameter frozen: a distributed checkpoint cannot load optimizer state it never saw)
    def resumable(step):
        net, optimizer = build(mesh, decay=1.0, noise_std=1e-3, step=step, rank_offset=rank)
        net.spare.requires_grad_(False)
        return net, optimizer

    def run(steps: int, net, optimizer, step):
        while step[0] < steps:
            train_step(net, optimizer, step, rank)

    step = [0]
    net, optimizer = resumable(step)
    run(4, net, optimizer, step)
    tensors.update({f"straight/{k}": v for k, v in locals_of(net).items()})
    step = [0]
    net, optimizer = resumable(step)
    run(2, net, optimizer, step)
    dcp.save({"model": get_model_state_dict(net)}, checkpoint_id=f"{out}/model")
    state = {"optimizer": get_optimizer_state_dict(net, optimizer), "step": torch.tensor(step[0])}
    dcp.save(state, checkpoint_id=f"{out}/optimizer")
    step = [0]
    net, optimizer = resumable(step)
    # in the order transformers + accelerate resume FSDP2: the model, then the optimizer, whose state dict is
    # built (torch.distributed.checkpoint takes a step at lr 0 to create the state) and loaded into
    state = {"model": get_model_state_dict(net)}
    dcp.load(state, checkpoint_id=f"{out}/model")
    set_model_state_dict(net, state["model"])
    state = {"optimizer": get_optimizer_state_dict(net, optimizer), "step": torch.tensor(0)}
    dcp.load(state, checkpoint_id=f"{out}/optimizer")
    set_optimizer_state_dict(net, optimizer, state["optimizer"])
    step[0] = int(state["step"])
    found["resumed_folded"] = [g.get("ieu_folded_decay") for g in optimizer.param_groups]
    found["resumed_weight_decay"] = [g["weight_decay"] for g in optimizer.param_groups]
    run(4, net, optimizer, step)
    tensors.update({f"resumed/{k}": v for k, v in locals_of(net).items()})

    write_rank_results(out, rank, tensors, found)


if __name__ == "__main__":
    main(sys.argv[1])
