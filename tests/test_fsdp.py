"""IEU's step hook on real FSDP2 shards: 2 CPU processes (gloo), ``fully_shard``, see ``_fsdp_worker.py``."""

from pathlib import Path

import pytest
import torch
from conftest import two_rank_results

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_fsdp_worker.py")
LR, DECAY, SIGMA = 1e-2, 5.0, 0.02


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """``[(tensors, findings)]`` of rank 0 and rank 1."""
    out = tmp_path_factory.mktemp("fsdp")
    return two_rank_results(WORKER, out, ACCELERATE_USE_FSDP="true", FSDP_VERSION="2")


def _gathered(ranks, prefix: str) -> dict[str, torch.Tensor]:
    """The global tensors put together from both ranks' local shards (Shard(0): rows at the shard offset),
    checking that the shards tile them exactly once."""
    layout = ranks[0][1]["layout"]
    full = {}
    for name, info in layout.items():
        tensor, cover = torch.zeros(info["global"]), torch.zeros(info["global"][0], dtype=torch.int64)
        for tensors, found in ranks:
            shard, start = tensors[f"{prefix}{name}"], found["layout"][name]["offset"][0]
            tensor[start : start + shard.shape[0]] = shard
            cover[start : start + shard.shape[0]] += 1
        assert torch.equal(cover, torch.ones_like(cover)), name
        full[name] = tensor
    return full


@pytest.mark.slow
def test_parameters_are_dtensors_sharded_unevenly_across_the_two_processes(ranks):
    for _, found in ranks:
        assert found["sharding"] == "fsdp2" and found["param_types"] == ["DTensor"]
    layout0, layout1 = ranks[0][1]["layout"], ranks[1][1]["layout"]
    assert layout0["model.classifier.weight"]["local"] == [2, 32] and layout1["model.classifier.weight"][
        "local"
    ] == [1, 32]
    assert layout1["spare"]["local"] == [0, 5]  # an empty shard
    assert all(layout1[n]["offset"][0] == layout0[n]["local"][0] for n in layout0)


@pytest.mark.slow
def test_accelerate_fsdp_on_cpu_falls_back_to_replicas_and_check_sharding_says_so(ranks):
    for _, found in ranks:
        seen = found["accelerate"]
        assert seen["distributed_type"] == "DistributedType.MULTI_CPU" and seen["param_types"] == [
            "Parameter"
        ]
        assert (
            seen["error"] and "ACCELERATE_USE_FSDP=true" in seen["error"] and "not sharded" in seen["error"]
        )


@pytest.mark.slow
def test_decay_contracts_each_local_shard_exactly_by_the_hook_and_folded_into_adamw(ranks):
    factor = 1.0 - LR * DECAY
    for tensors, found in ranks:
        assert found["folded"] == [DECAY, DECAY]  # step 0 decayed by the hook, steps 1-2 by AdamW
        for step in range(3):
            for name in found["layout"]:
                before, after = tensors[f"decay/{step}/before/{name}"], tensors[f"decay/{step}/after/{name}"]
                assert torch.equal(after, before * factor), (step, name)


@pytest.mark.slow
def test_gathered_noise_has_std_sigma_and_no_shard_repeats_another(ranks):
    full = _gathered(ranks, "noise/rank/")
    noise = torch.cat([t.flatten() for name, t in full.items() if name != "spare"])
    assert noise.numel() > 40_000
    assert noise.std().item() == pytest.approx(SIGMA, rel=0.03) and abs(noise.mean().item()) < 5e-4
    assert full["spare"].abs().min() > 0  # noised though it has no gradient
    shards = [
        {k: t.flatten() for k, t in tensors.items() if k.startswith("noise/rank/")} for tensors, _ in ranks
    ]
    same_place = 0  # a stream shared by two shards of a parameter (seeded by parameter, not by shard)
    for name, first in shards[0].items():
        n = min(first.numel(), shards[1][name].numel())
        same_place += int((first[:n] == shards[1][name][:n]).sum())
    assert same_place == 0
    values = [set(torch.cat(list(s.values())).tolist()) for s in shards]
    assert len(values[0] & values[1]) < 0.005 * len(values[0])  # by chance only (float32 values, ~10 here)


@pytest.mark.slow
def test_shard_noise_is_seeded_by_where_the_shard_is_not_by_rank_offset(ranks):
    for tensors, found in ranks:
        for name in found["layout"]:
            assert torch.equal(tensors[f"noise/rank/{name}"], tensors[f"noise/zero/{name}"]), name


@pytest.mark.slow
def test_resume_from_a_distributed_checkpoint_replays_the_uninterrupted_run_exactly(ranks):
    for tensors, found in ranks:
        assert found["resumed_folded"] == [1.0, 1.0] and found["resumed_weight_decay"] == [1.0, 1.0]
        moved = [
            n
            for n in found["layout"]
            if not torch.equal(tensors[f"straight/{n}"], tensors[f"decay/0/before/{n}"])
        ]
        assert len(moved) == len(found["layout"]) - 1  # all but the frozen spare parameter trained
        for name in found["layout"]:
            assert torch.equal(tensors[f"resumed/{name}"], tensors[f"straight/{name}"]), name
