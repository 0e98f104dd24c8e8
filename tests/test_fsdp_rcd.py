"""The relearning convergence delay (RCD) under 2 CPU processes (gloo; see ``_fsdp_rcd_worker.py``).

Plain models (a DDP run's): every process relearns its own copy, on the whole forget set, with no collective;
on one machine's CPU kernels the processes' results are identical, and equal one process's. FSDP2-sharded
models (``fully_shard``; FSDP2 refuses ``deepcopy``): every process gathers the full weights into plain copies
(``weights.unsharded.unsharded_copy``), rank 0 relearns them and broadcasts its result, so both ranks report
one process's steps, ratios and curves."""

from pathlib import Path

import pytest
from conftest import two_rank_results

WORKER = Path(__file__).with_name("_fsdp_rcd_worker.py")


@pytest.mark.slow
def test_rcd_on_fsdp2_shards_and_ddp_replicas_gives_the_numbers_of_one_process(tmp_path):
    ranks = [found for _, found in two_rank_results(WORKER, tmp_path)]
    for model in ("classifier", "causal_lm"):
        alone = ranks[0]["alone"][model]
        assert ranks[1]["alone"][model] == alone, model
        assert alone["golden"] is not None and alone["ratio_to_golden"] is not None, model
        assert alone["steps"] > 0 and len(alone["curve"]) > 1, model  # relearning took steps: a real run
        for found in ranks:
            for phase in ("plain", "sharded"):
                got = found[phase][model]
                assert got["steps"] == alone["steps"], (model, phase)
                assert got["ratio_to_golden"] == alone["ratio_to_golden"], (model, phase)
                assert got["golden"]["steps"] == alone["golden"]["steps"], (model, phase)
                assert [r["step"] for r in got["curve"]] == [r["step"] for r in alone["curve"]]
                for row, expected in zip(got["curve"], alone["curve"]):
                    for key in ("loss", "accuracy", "distance", "path"):
                        assert row[key] == pytest.approx(expected[key], rel=1e-5, abs=1e-6), (
                            model,
                            phase,
                            key,
                        )
    # the sharded golden (GPT-2) is relearned on its own copy: another count than the model's (4 vs 3 steps)
    causal_lm = ranks[0]["alone"]["causal_lm"]
    assert causal_lm["golden"]["steps"] != causal_lm["steps"]
    classifier = ranks[0]["alone"]["classifier"]
    assert classifier["heldout"] is not None
    for found in ranks:  # the held-out reference: the sharded original learning held-out examples
        assert found["sharded"]["classifier"]["heldout"]["steps"] == classifier["heldout"]["steps"]
        assert found["sharded"]["classifier"]["ratio_to_heldout"] == classifier["ratio_to_heldout"]
    # the plain (DDP) ranks relearn identically on their own: no collective, bit-equal numbers
    assert ranks[0]["plain"] == ranks[1]["plain"]
    # the sharded ranks report rank 0's result: equal by construction
    assert ranks[0]["sharded"] == ranks[1]["sharded"]
    for found in ranks:  # rank 0's mistake is raised on every process, as its class
        assert found["frozen_error"][0] == "ValueError"
        assert "no trainable parameter" in found["frozen_error"][1]
    print(f"seconds per rank: {ranks[0]['seconds']}")
