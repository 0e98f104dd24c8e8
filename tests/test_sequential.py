"""Unlearning requests that keep coming: ``unlearn_sequentially``, the scenarios' per-prefix golden models and
``hf-unlearn run`` with several forget sets."""

import copy
import json

import pytest
import torch
from conftest import make_config, state_copy

from hf_unlearn import UnlearningTrainer
from hf_unlearn.pipeline.sequential import check_requests, request_seed, unlearn_sequentially
from hf_unlearn.scenarios import TrainRecipe
from hf_unlearn.scenarios.definition import suggested_unlearning
from hf_unlearn.scenarios.sequential import load_sequential
from hf_unlearn.scenarios.tofu_like import TofuLlamaScenario
from hf_unlearn.tiny import tiny_classifier


def _requests(task, k=3):
    """``k`` disjoint forget sets: the task's forget set cut into ``k`` consecutive parts."""
    size = len(task.forget) // k
    return [task.forget[i * size : (i + 1) * size] for i in range(k)]


def _config(tmp_path, **kwargs):
    settings = {"method": "grad_diff", "learning_rate": 1e-3, "lr_scheduler_type": "constant", "max_steps": 3}
    return make_config(tmp_path, **{**settings, **kwargs})


def test_request_two_starts_from_request_one_weights_bit_for_bit(tmp_path, mislabeled):
    first, second = _requests(mislabeled, 2)
    config = _config(tmp_path)
    model = tiny_classifier(mislabeled.tokenizer, seed=0)
    result = unlearn_sequentially(
        copy.deepcopy(model),
        config,
        [first, second],
        mislabeled.retain,
        processing_class=mislabeled.tokenizer,
        evaluate=False,
    )
    assert result.steps == [3, 3]
    # the same two requests as two separate runs: request 1, then request 2 on its weights
    for i, forget in enumerate((first, second)):
        request = _config(tmp_path / f"alone_{i}", seed=request_seed(config.seed, i))
        trainer = UnlearningTrainer(
            model,
            request,
            forget_dataset=forget,
            retain_dataset=mislabeled.retain,
            processing_class=mislabeled.tokenizer,
        )
        trainer.train()
        model = trainer.model
        if i == 0:
            after_first = state_copy(model)
    final = result.model.state_dict()
    assert all(torch.equal(final[k], v) for k, v in model.state_dict().items())
    # and request 2 changed the weights (the comparison above is not of two untouched copies)
    assert any(not torch.equal(final[k], v) for k, v in after_first.items())


def test_keys_per_request_earlier_requests_and_the_golden_of_each_prefix(tmp_path, mislabeled):
    requests = _requests(mislabeled, 3)
    goldens = [tiny_classifier(mislabeled.tokenizer, seed=s) for s in (11, 12, 13)]
    asked = []

    def golden_for(so_far):
        asked.append(len(so_far))
        return goldens[len(so_far) - 1]

    result = unlearn_sequentially(
        tiny_classifier(mislabeled.tokenizer, seed=0),
        _config(tmp_path, max_steps=2),
        requests,
        mislabeled.retain,
        test_dataset=mislabeled.test,
        golden=golden_for,
        processing_class=mislabeled.tokenizer,
    )
    assert asked == [1, 2, 3] and [row["request"] for row in result.metrics] == [1, 2, 3]
    for i, row in enumerate(result.metrics, 1):
        expected = {"retain/accuracy", "test/accuracy", "mia/auc", "union/forget/accuracy"}
        expected |= {"union/golden/forget/accuracy", "union/forget_quality/ks_pvalue", "current/forget/loss"}
        expected |= {f"request_{j}/forget/accuracy" for j in range(1, i + 1)}
        expected |= {f"request_{j}/golden/forget/loss" for j in range(1, i + 1)}
        assert expected <= set(row)
        assert ("earlier/forget/accuracy" in row) == (i > 1)
        assert f"request_{i + 1}/forget/accuracy" not in row
        assert not any(k.startswith("forget/") or k.startswith("golden/forget/") for k in row)
        assert row["current/forget/loss"] == row[f"request_{i}/forget/loss"]
        assert row["n_forget"] == len(requests[i - 1])
    # each point is measured against its own golden model: golden i's loss on request 1's forget set
    from hf_unlearn.metrics import evaluate_unlearning

    for i, row in enumerate(result.metrics):
        direct = evaluate_unlearning(
            goldens[i],
            forget_dataset=requests[0],
            retain_dataset=mislabeled.retain,
            processing_class=mislabeled.tokenizer,
        )
        assert row["request_1/golden/forget/loss"] == pytest.approx(direct["forget/loss"], abs=1e-6)
    # the earlier requests' metrics are measured on the model after the later request (they change)
    assert result.metrics[2]["request_1/forget/loss"] != result.metrics[0]["request_1/forget/loss"]


def test_a_list_of_goldens_needs_one_per_request(tmp_path, mislabeled):
    goldens = [tiny_classifier(mislabeled.tokenizer, seed=1)]
    with pytest.raises(ValueError, match="one per request"):
        unlearn_sequentially(
            tiny_classifier(mislabeled.tokenizer, seed=0),
            _config(tmp_path, max_steps=1),
            _requests(mislabeled, 2),
            mislabeled.retain,
            golden=goldens,
            processing_class=mislabeled.tokenizer,
        )


def test_overlapping_or_empty_forget_sets_are_refused(mislabeled):
    model = tiny_classifier(mislabeled.tokenizer, seed=0)
    first, second = _requests(mislabeled, 2)
    with pytest.raises(ValueError, match="requests 1 and 2 share an example"):
        check_requests([first, second + first[:1]], model, mislabeled.tokenizer)
    with pytest.raises(ValueError, match="request 2 is empty"):
        check_requests([first, []], model, mislabeled.tokenizer)
    with pytest.raises(ValueError, match="non-empty list"):
        check_requests([], model, mislabeled.tokenizer)
    assert [len(d) for d in check_requests([first, second], model, mislabeled.tokenizer)] == [
        len(first),
        len(second),
    ]


class TinyTofu(TofuLlamaScenario):
    """tofu-llama shrunk: 4 people per split, a one-layer Llama, 3 epochs, 2-step unlearning."""

    name = "tofu-llama-sequential-tiny"
    hidden_size, num_layers = 32, 1
    recipe = TrainRecipe(learning_rate=3e-3, epochs=3, batch_size=64)
    unlearning_defaults = suggested_unlearning(learning_rate=1e-3, max_steps=2, batch_size=8)
    evaluation = {"generation": False}

    @staticmethod
    def _columns(seed: int) -> dict[str, dict[str, list]]:
        full = TofuLlamaScenario._columns(seed)
        return {split: {k: v[:24] for k, v in columns.items()} for split, columns in full.items()}


def test_scenario_requests_keep_people_together_and_each_prefix_golden_is_trained_without_them(
    tmp_path, monkeypatch
):
    from hf_unlearn.scenarios import base, training

    trained = []

    def counting(train_model):
        def train(model, rows, *args, **kwargs):
            trained.append((args[-1] if len(args) > 4 else kwargs.get("desc"), len(rows)))
            return train_model(model, rows, *args, **kwargs)

        return train

    monkeypatch.setattr(base, "train_model", counting(base.train_model))
    monkeypatch.setattr(training, "train_model", counting(training.train_model))
    seq = load_sequential(TinyTofu(), k=3, output_dir=str(tmp_path), seed=0)
    forget, n_retain = seq.scenario.forget, len(seq.scenario.retain)
    people = [set(request["person"]) for request in seq.requests]
    assert sorted(len(p) for p in people) == [1, 1, 2]  # 4 people in 3 requests, none split
    assert set.union(*people) == set(forget["person"]) and sum(map(len, people)) == 4
    assert sorted(i for rows in seq.indices for i in rows) == list(range(len(forget)))
    # golden i: retain + the requests after i (the last one is the scenario's own golden: retain only)
    sizes = [len(r) for r in seq.requests]
    assert trained[2:] == [("golden_1", n_retain + sizes[1] + sizes[2]), ("golden_2", n_retain + sizes[2])]
    assert seq.golden_dirs[-1] == seq.scenario.golden_dir
    # cached: a second load trains nothing and gives the same split
    count = len(trained)
    again = load_sequential(TinyTofu(), k=3, output_dir=str(tmp_path), seed=0)
    assert len(trained) == count and again.indices == seq.indices
    first, second = seq.golden_model(1), again.golden_model(1)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    with pytest.raises(ValueError, match="choose k <= 4"):
        load_sequential(TinyTofu(), k=5, output_dir=str(tmp_path), seed=0)


def _recipe(tmp_path, lines: dict) -> str:
    base = {
        "method": "grad_diff",
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "learning_rate": "1.0e-3",
        "relearn": False,
        "use_cpu": True,
        "disable_tqdm": True,
        "save_strategy": "no",
        "report_to": "none",
    }
    path = tmp_path / "recipe.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in {**base, **lines}.items()))
    return str(path)


def test_cli_runs_forget_files_one_after_another_with_a_golden_each(tmp_path, mislabeled, capsys):
    from test_cli import _write_jsonl, write_model_dirs

    from hf_unlearn.cli import main
    from hf_unlearn.reporting.card import forget_fingerprint

    dirs = write_model_dirs(tmp_path, mislabeled)
    requests = _requests(mislabeled, 2)
    files = [_write_jsonl(tmp_path / f"request_{i}.jsonl", rows) for i, rows in enumerate(requests, 1)]
    out = tmp_path / "out"
    lines = {
        "model_name_or_path": dirs["model"],
        "golden_model_path": f"{dirs['golden']},{dirs['golden']}",
        "forget_dataset": ",".join(files),
        "retain_dataset": dirs["retain"],
        "test_dataset": dirs["test"],
        "output_dir": str(out),
    }
    assert main(["run", _recipe(tmp_path, lines)]) == 0
    printed = capsys.readouterr().out
    assert "request 1/2: 6 examples, 2 steps" in printed and "request 2/2: 6 examples" in printed
    assert "earlier/forget/accuracy" in printed.split("request 2/2")[1]
    report = json.loads((out / "unlearning_report.json").read_text())
    table = report["sequential"]["table"]
    assert [row["request"] for row in table] == [1, 2] and report["sequential"]["steps"] == [2, 2]
    assert {"request_1/forget/accuracy", "request_2/golden/forget/accuracy", "earlier/forget/loss"} <= set(
        table[1]
    )
    assert {"union/forget/accuracy", "retain/accuracy", "test/accuracy"} <= set(table[0])
    # the final model's metrics are on the union of the requests, as a one-shot run's
    assert report["forget_fingerprint"] == forget_fingerprint(requests[0] + requests[1])
    assert report["metrics"]["unlearned"]["forget/accuracy"] == pytest.approx(
        table[1]["union/forget/accuracy"]
    )
    assert (out / "model.safetensors").is_file()
    assert not any("rcd" in key for row in table for key in row)  # relearn: false
    assert "## Sequential requests" in (card := (out / "README.md").read_text()) and "current/rcd" not in card
    bad = dict(lines, golden_model_path=dirs["golden"], output_dir=str(tmp_path / "bad"))
    assert main(["run", _recipe(tmp_path, bad)]) == 2
    assert "1 models for 2 requests" in capsys.readouterr().err


def test_cli_cuts_a_scenario_into_requests_with_the_golden_of_each_prefix(tmp_path, monkeypatch, capsys):
    import hf_unlearn.scenarios as scenarios
    from hf_unlearn.cli import main

    monkeypatch.setattr(scenarios, "_builders", lambda: {TinyTofu.name: TinyTofu})
    out = tmp_path / "out"
    lines = {
        "scenario": TinyTofu.name,
        "scenario_cache_dir": str(tmp_path / "cache"),
        "sequential_requests": 2,
        "output_dir": str(out),
        "generation": False,
    }
    assert main(["run", _recipe(tmp_path, lines)]) == 0
    printed = capsys.readouterr().out
    assert "request 1/2: 12 examples" in printed and "request 2/2: 12 examples" in printed
    table = json.loads((out / "unlearning_report.json").read_text())["sequential"]["table"]
    assert {"request_1/forget/token_accuracy", "earlier/golden/forget/loss", "retain/token_accuracy"} <= set(
        table[1]
    )
    # each point has its own golden: after request 1 (trained on request 2's people), after request 2 (retain only)
    assert table[0]["request_1/golden/forget/loss"] != table[1]["request_1/golden/forget/loss"]


def test_one_forget_file_is_cut_by_row_into_the_requests_asked_for(tmp_path, mislabeled):
    from test_cli import write_model_dirs

    from hf_unlearn.pipeline import RunArguments
    from hf_unlearn.pipeline.sequential_run import is_sequential, load_requests

    dirs = write_model_dirs(tmp_path, mislabeled)
    files = {"forget_dataset": dirs["forget"], "retain_dataset": dirs["retain"]}
    run_args = RunArguments(model_name_or_path=dirs["model"], sequential_requests=3, **files)
    job, requests, golden = load_requests(run_args, seed=0, progress=False)
    assert is_sequential(run_args) and golden is None and job.golden is None
    assert [len(r) for r in requests] == [4, 4, 4]
    rows = [row["text"] for r in requests for row in r]
    assert sorted(rows) == sorted(row["text"] for row in job.forget) and len(set(rows)) == 12
    assert not is_sequential(RunArguments(model_name_or_path=dirs["model"], **files))
    with pytest.raises(ValueError, match="drop forget_dataset"):
        load_requests(
            RunArguments(scenario="tofu-llama", sequential_requests=2, **files), seed=0, progress=False
        )
