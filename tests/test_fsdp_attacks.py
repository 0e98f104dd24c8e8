"""Attacks as evaluation on FSDP2-sharded models (2 CPU processes, gloo, ``fully_shard``; see
``_fsdp_attack_worker.py``): every attack acts on the full weights gathered on every process, never on a shard's
rows (a ``Conv1D`` shard holds part of every output channel: its own per-channel scales would be wrong), so the
``attack/*`` keys, and the weight distances, equal one process's on the same weights."""

import math
from pathlib import Path

import pytest
from conftest import two_rank_results

WORKER = Path(__file__).with_name("_fsdp_attack_worker.py")


@pytest.mark.slow
def test_attacks_on_fsdp2_shards_give_the_numbers_of_one_process(tmp_path):
    ranks = [found for _, found in two_rank_results(WORKER, tmp_path)]
    for model in ("classifier", "causal_lm"):
        alone = ranks[0]["alone"][model]
        assert ranks[1]["alone"][model] == alone, model
        keys = {k for k in alone if k.startswith("attack/")}
        for attack in ("quantize_8bit", "relearn_partial"):
            assert {f"attack/{attack}/forget/loss", f"attack/{attack}/golden/forget/loss"} <= keys, model
            assert f"attack/{attack}/gap_to_golden" in keys
        # 8 bits move the forget loss, a little: the attack did run on the weights
        assert alone["attack/quantize_8bit/forget/loss"] != alone["attack/none/forget/loss"]
        for found in ranks:
            got = found["together"][model]
            assert {k for k in got if k.startswith("attack/")} == keys, model
            for key in sorted(keys) + [k for k in alone if k.startswith("distance/")]:
                assert math.isfinite(got[key]), (model, key)
                assert got[key] == pytest.approx(alone[key], rel=1e-5, abs=1e-6), (model, key)
    assert "attack/quantize_8bit/original/forget/accuracy" in ranks[0]["together"]["classifier"]
    print(f"seconds per rank: {ranks[0]['seconds']}")
