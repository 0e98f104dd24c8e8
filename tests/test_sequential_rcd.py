"""``unlearn_sequentially(..., relearning=RelearnConfig(...))``: the relearning convergence delay of each request's
forget set, for the model and for that point's golden model."""

import copy
import math

import pytest
from conftest import make_config

from hf_unlearn.metrics import RelearnConfig, relearning_convergence_delay
from hf_unlearn.pipeline.sequential import unlearn_sequentially
from hf_unlearn.tiny import tiny_causal_lm

KEYS = ("rcd/steps", "rcd/recovered", "rcd/start_distance", "rcd/weight_path", "rcd/ratio_to_golden")


def test_rcd_of_each_request_against_the_golden_of_that_point(tmp_path, qa):
    half = len(qa.forget) // 2
    requests = [qa.forget[:half], qa.forget[half:]]
    original = tiny_causal_lm(qa.tokenizer, seed=0)
    goldens = [tiny_causal_lm(qa.tokenizer, seed=s) for s in (11, 12)]
    config = make_config(tmp_path, method="ga", learning_rate=3e-3, lr_scheduler_type="constant", max_steps=4)
    protocol = RelearnConfig(learning_rate=3e-3, max_steps=40, batch_size=4, alpha=0.0, seed=0)
    result = unlearn_sequentially(
        copy.deepcopy(original),
        config,
        requests,
        qa.retain,
        processing_class=qa.tokenizer,
        golden=goldens,
        original_model=original,
        evaluate=False,
        relearning=protocol,
    )
    for row in result.metrics:
        for key in KEYS:
            assert math.isfinite(row[f"current/{key}"]) and math.isfinite(row[f"current/golden/{key}"]), key
        assert row["current/golden/rcd/ratio_to_golden"] == 1.0
        assert row["current/rcd/steps"] > 0  # ascent left the forget loss above the original's (alpha 0)
    # the last row is the RCD of the final model on request 2, against golden 2: computed directly, the same
    direct = relearning_convergence_delay(
        result.model,
        requests[1],
        original_model=original,
        golden_model=goldens[1],
        processing_class=qa.tokenizer,
        config=protocol,
    )
    last = result.metrics[-1]
    assert (last["current/rcd/steps"], last["current/golden/rcd/steps"]) == (
        direct.steps,
        direct.golden.steps,
    )
    assert last["current/rcd/ratio_to_golden"] == pytest.approx(direct.ratio_to_golden)
    no_rcd = unlearn_sequentially(
        copy.deepcopy(original),
        config,
        requests[:1],
        qa.retain,
        processing_class=qa.tokenizer,
        evaluate=False,
    )
    assert not any("rcd" in key for key in no_rcd.metrics[0])  # opt-in


def test_cli_sequential_run_reports_each_requests_rcd_in_the_report_and_the_card(
    tmp_path, mislabeled, capsys
):
    import json

    from test_cli import _write_jsonl, write_model_dirs
    from test_sequential import _recipe, _requests

    from hf_unlearn.cli import main

    dirs = write_model_dirs(tmp_path, mislabeled)
    files = [
        _write_jsonl(tmp_path / f"r{i}.jsonl", rows) for i, rows in enumerate(_requests(mislabeled, 2), 1)
    ]
    out = tmp_path / "out"
    lines = {
        "model_name_or_path": dirs["model"],
        "golden_model_path": f"{dirs['golden']},{dirs['golden']}",
        "forget_dataset": ",".join(files),
        "retain_dataset": dirs["retain"],
        "output_dir": str(out),
        "relearn": True,
        "relearn_max_steps": 6,
        "relearn_batch_size": 4,
        "relearn_learning_rate": "1.0e-2",
    }
    assert main(["run", _recipe(tmp_path, lines)]) == 0
    assert "current/rcd/steps" in capsys.readouterr().out.split("request 2/2")[1]
    report = json.loads((out / "unlearning_report.json").read_text())
    table = report["sequential"]["table"]
    for row in table:
        for key in KEYS:
            assert math.isfinite(row[f"current/{key}"]) and math.isfinite(row[f"current/golden/{key}"]), key
        assert row["current/golden/rcd/ratio_to_golden"] == 1.0
        assert 0 <= row["current/rcd/steps"] <= 6
    card = (out / "README.md").read_text().split("## Sequential requests")[1].split("\n## ")[0]
    header = next(line for line in card.splitlines() if line.startswith("| request |"))
    assert "current/rcd/ratio_to_golden" in header and "current/rcd/steps" in header
    assert "current/forget/accuracy" in header and len(card.split("\n| 2 |")) == 2
