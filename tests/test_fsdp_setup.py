"""The measurements before the first step under sharding: on FSDP2 shards across 2 CPU processes (gloo,
``fully_shard``, see ``_fsdp_setup_worker.py``) they equal the unsharded ones; in ``UnlearningTrainer`` they wait
for the wrapped model when the Trainer shards it, and the gradient passes are refused where they cannot run."""

import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_config, state_copy, two_rank_results

from hf_unlearn import UnlearningTrainer
from hf_unlearn.weights.distributed import FSDP, ZERO3

ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("_fsdp_setup_worker.py")
SYNTHETIC_RATIOS = (0.1, 0.35, 0.6, 0.99)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    """``[(tensors, findings)]`` of rank 0 and rank 1."""
    return two_rank_results(WORKER, tmp_path_factory.mktemp("fsdp_setup"))


def _gathered(ranks, prefix: str, offsets: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """Global tensors from both ranks' local shards (rows at each rank's offset), checking that they tile them."""
    full = {}
    for name in offsets:
        shards = [tensors[f"{prefix}/{name}"] for tensors, _ in ranks]
        rows = sum(s.shape[0] for s in shards)
        tensor = torch.zeros((rows, *shards[0].shape[1:]), dtype=shards[0].dtype)
        cover = torch.zeros(rows, dtype=torch.int64)
        for shard, start in zip(shards, offsets[name]):
            tensor[start : start + shard.shape[0]] = shard
            cover[start : start + shard.shape[0]] += 1
        assert torch.equal(cover, torch.ones_like(cover)), name
        full[name] = tensor
    return full


def _model_offsets(ranks) -> dict[str, list[int]]:
    return {name: [found["layout"][name]["offset"] for _, found in ranks] for name in ranks[0][1]["layout"]}


def _plain(ranks, prefix: str) -> dict[str, torch.Tensor]:
    tensors = ranks[0][0]
    return {name: tensors[f"{prefix}/{name}"] for name in ranks[0][1]["layout"]}


def _first_in_flat_order(scores: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """The documented selection: the k highest finite scores, ties at the k-th going to the first in flat order."""
    flat = torch.cat([s.flatten() for s in scores.values()])
    finite = torch.isfinite(flat)
    k = min(max(1, int(ratio * flat.numel())), int(finite.sum()))
    kth = torch.sort(flat[finite], descending=True).values[k - 1]
    chosen = finite & (flat > kth)
    ties = (finite & (flat == kth)).nonzero().flatten()
    chosen[ties[: k - int(chosen.sum())]] = True
    masks, start = {}, 0
    for name, score in scores.items():
        masks[name] = chosen[start : start + score.numel()].view(score.shape)
        start += score.numel()
    return masks


@pytest.mark.slow
def test_per_example_passes_and_the_heldout_cap_on_shards_equal_the_unsharded_ones(ranks):
    for tensors, found in ranks:
        for key in ("ref_logprob", "forget_nll"):
            plain, sharded = tensors[f"plain/{key}"], tensors[f"sharded/{key}"]
            assert plain.shape == (len(sharded),) and plain.abs().min() > 0
            torch.testing.assert_close(sharded, plain, rtol=0, atol=1e-6)
        assert found["sharded/heldout_cap"] == pytest.approx(found["plain/heldout_cap"], abs=1e-6)


@pytest.mark.slow
def test_influence_removal_on_shards_resets_exactly_the_weights_the_unsharded_run_resets(ranks):
    found = ranks[0][1]
    assert found["removal/ties"] == 1  # the unsharded selection is unique: equality is required, not luck
    assert found["removal/sharded_count"] == found["removal/plain_count"] > 1000
    sharded = _gathered(ranks, "removal/sharded", _model_offsets(ranks))
    plain = _plain(ranks, "removal/plain")
    for name in plain:
        assert torch.equal(sharded[name], plain[name]), name
    assert sum(int((p == 0).sum()) for p in plain.values()) >= found["removal/plain_count"]


@pytest.mark.slow
def test_salun_masks_on_shards_are_the_unsharded_masks_cut_into_local_shards(ranks):
    found = ranks[0][1]
    assert found["salun/ties"] == 1 and found["salun/round_trip"] and found["salun/resumed"]
    offsets = _model_offsets(ranks)
    plain = _plain(ranks, "salun/plain")
    sharded = _gathered(ranks, "salun/sharded", offsets)
    gathered = _plain(ranks, "salun/gathered")  # sharded_selection.gather_masks, as checkpoints save them
    for name in plain:
        assert torch.equal(sharded[name], plain[name]) and torch.equal(gathered[name], plain[name]), name
    # each rank's own top 30% would pick another set: the selection has to be global
    per_shard = _gathered(ranks, "salun/per_shard", offsets)
    assert any(not torch.equal(per_shard[n], plain[n]) for n in plain)


@pytest.mark.slow
def test_masked_gradients_on_shards_equal_the_hooked_unsharded_gradients(ranks):
    offsets = _model_offsets(ranks)
    sharded = _gathered(ranks, "salun/grad/sharded", offsets)
    plain, masks = _plain(ranks, "salun/grad/plain"), _plain(ranks, "salun/plain")
    outside = sum(int((plain[n][masks[n] == 0] != 0).sum()) for n in plain)
    inside = sum(int((plain[n][masks[n] == 1] != 0).sum()) for n in plain)
    assert outside == 0 and inside > 1000
    for name in plain:
        torch.testing.assert_close(sharded[name], plain[name], rtol=0, atol=1e-7)


@pytest.mark.slow
def test_global_top_fraction_breaks_ties_in_flat_order_and_skips_non_finite_scores(ranks):
    sys.path.insert(0, str(WORKER.parent))
    from _fsdp_setup_worker import synthetic_scores

    scores = synthetic_scores()
    offsets = {name: [found["synthetic/offsets"][name] for _, found in ranks] for name in scores}
    assert offsets["a"] == [0, 4] and offsets["c"] == [0, 2]  # uneven shards
    per_shard_differs = False
    for ratio in SYNTHETIC_RATIOS:
        expected = _first_in_flat_order(scores, ratio)
        chosen = _gathered(ranks, f"synthetic/{ratio}", offsets)
        for name in scores:
            assert torch.equal(chosen[name].bool(), expected[name]), (ratio, name)
        per_shard = _gathered(ranks, f"synthetic/per_shard/{ratio}", offsets)
        per_shard_differs |= any(not torch.equal(per_shard[n].bool(), expected[n]) for n in scores)
    assert per_shard_differs
    assert int(sum(m.sum() for m in expected.values())) == 7 * 3 + 5 + 3 * 2 - 2  # 0.99: every finite score


# -- single process: when the trainer measures, and what it refuses ------------------------------------------
def _trainer(tmp_path, qa, monkeypatch=None, sharding=None, **kwargs):
    from hf_unlearn.tiny import tiny_causal_lm

    args = make_config(tmp_path, max_steps=2, learning_rate=1e-3, **kwargs)
    trainer = UnlearningTrainer(
        tiny_causal_lm(qa.tokenizer),
        args,
        forget_dataset=qa.forget,
        retain_dataset=qa.retain,
        processing_class=qa.tokenizer,
        eval_dataset=qa.test,
    )
    if sharding is not None:
        monkeypatch.setattr(trainer, "parameter_sharding_by_trainer", lambda: sharding)
    return trainer


def test_measurements_wait_for_the_wrapped_model_when_the_trainer_shards_and_give_the_same_run(
    tmp_path, qa, monkeypatch
):
    options = dict(method="npo", influence_removal="mask", mask_ratio=0.05)
    plain = _trainer(tmp_path / "plain", qa, **options)
    plain.train()
    waited = _trainer(tmp_path / "waited", qa, monkeypatch, sharding=FSDP, **options)
    monkeypatch.setattr(waited, "check_gradient_passes", lambda sharding: None)  # FSDP2 is not on CPU
    seen = []
    original = waited.prepare_unlearning

    def spy(checkpoint, model=None):
        seen.append((model, waited.optimizer is not None, waited.ref_logprob is None))
        original(checkpoint, model)

    monkeypatch.setattr(waited, "prepare_unlearning", spy)
    waited.train()
    assert len(seen) == 1 and seen[0][0] is waited.model_wrapped and seen[0][1] and seen[0][2]
    assert torch.equal(waited.ref_logprob, plain.ref_logprob)
    assert waited.influence_removed == plain.influence_removed > 0
    after, reference = state_copy(waited.model), state_copy(plain.model)
    assert all(torch.equal(after[n], reference[n]) for n in reference)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (dict(influence_removal="rbm", mask_ratio=0.05), "influence_removal='rbm'"),
        (dict(method="salun"), "method='salun'"),
    ],
)
def test_gradient_passes_are_refused_under_zero3_and_fsdp1_before_training(
    tmp_path, qa, monkeypatch, options, named
):
    for sharding, where in ((ZERO3, "ZeRO-3"), (FSDP, "FSDP1")):
        trainer = _trainer(tmp_path / sharding, qa, monkeypatch, sharding=sharding, **options)
        before = state_copy(trainer.model)
        with pytest.raises(ValueError, match=rf"{named}.*{where}"):
            trainer.train()
        assert trainer.state.global_step == 0
        assert all(torch.equal(p, before[n]) for n, p in state_copy(trainer.model).items())


def test_forward_passes_alone_wait_under_zero3_without_error(tmp_path, qa, monkeypatch):
    trainer = _trainer(tmp_path, qa, monkeypatch, sharding=ZERO3, method="npo")
    trainer.train()  # CPU: nothing is sharded, but nothing is refused either
    assert trainer.ref_logprob is not None and math.isfinite(float(trainer.ref_logprob.sum()))
