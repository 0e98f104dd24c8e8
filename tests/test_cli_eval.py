"""``hf-unlearn eval``: the LoRA folder ``hf-unlearn run --lora_r`` writes measures as the run measured it, the
RCD protocol comes from the ``--relearn_*`` options or the run's report, and a skipped RCD says why."""

import json
import shutil

import pytest
from test_cli import write_model_dirs, write_recipe

from hf_unlearn.cli import main

RUN_RELEARN_LR = 2e-3  # not RunArguments' default (1e-4): eval can only match it by reading the report


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, mislabeled):
    """A ``hf-unlearn run --lora_r 2`` output folder (RCD: 10 steps at ``RUN_RELEARN_LR``), its inputs, its report."""
    root = tmp_path_factory.mktemp("lora")
    dirs = write_model_dirs(root, mislabeled)
    out = root / "lora"
    recipe = write_recipe(root, dirs, out, lora_r=2, relearn_learning_rate=RUN_RELEARN_LR)
    assert main(["run", recipe]) == 0
    return dirs, out, json.loads((out / "unlearning_report.json").read_text())


@pytest.fixture
def relearn_configs(monkeypatch):
    """The ``RelearnConfig`` of every ``relearning_convergence_delay`` call."""
    import hf_unlearn.metrics.relearning as relearning

    seen, real = [], relearning.relearning_convergence_delay

    def spy(*args, config, **kwargs):
        seen.append(config)
        return real(*args, config=config, **kwargs)

    monkeypatch.setattr(relearning, "relearning_convergence_delay", spy)
    return seen


def _data(dirs) -> list[str]:
    return [
        "--forget_dataset",
        dirs["forget"],
        "--retain_dataset",
        dirs["retain"],
        "--test_dataset",
        dirs["test"],
    ]


def _eval(capsys, *argv) -> tuple[dict, list[str]]:
    assert main(["eval", *argv]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err.strip().splitlines()


def test_eval_of_a_lora_run_folder_gives_the_runs_numbers(lora_run, capsys, relearn_configs):
    dirs, out, report = lora_run
    assert (out / "adapter_config.json").is_file()
    references = ["--original", dirs["model"], "--golden", dirs["golden"]]
    metrics, err = _eval(capsys, "--model", str(out), *references, *_data(dirs))
    # the adapters on their base, relearned as the run relearned them (its protocol, read from its report)
    assert metrics == pytest.approx(report["metrics"]["unlearned"], rel=1e-5, abs=1e-6)
    assert {(c.learning_rate, c.max_steps, c.batch_size) for c in relearn_configs} == {
        (RUN_RELEARN_LR, 10, 8)
    }
    assert [line for line in err if "RCD protocol of the run" in line] == [
        f"hf-unlearn eval: RCD protocol of the run (from {out / 'unlearning_report.json'}): "
        f"relearn_learning_rate={RUN_RELEARN_LR}, relearn_max_steps=10, relearn_batch_size=8."
    ]


def test_relearn_options_reach_relearn_config_over_the_runs(lora_run, capsys, relearn_configs):
    dirs, out, _ = lora_run
    flags = ["--relearn_max_steps", "3", "--relearn_learning_rate", "0.005", "--relearn_batch_size", "4"]
    metrics, err = _eval(
        capsys,
        "--model",
        str(out),
        "--original",
        dirs["model"],
        *_data(dirs),
        *flags,
        "--relearn_target",
        "loss",
    )
    assert relearn_configs
    assert {(c.max_steps, c.learning_rate, c.batch_size, c.target) for c in relearn_configs} == {
        (3, 0.005, 4, "loss")
    }
    assert metrics["rcd/steps"] <= 3
    assert not any("RCD protocol of the run" in line for line in err)  # every value was given


def test_eval_without_original_says_rcd_is_skipped(lora_run, capsys, relearn_configs):
    dirs, _, _ = lora_run
    metrics, err = _eval(capsys, "--model", dirs["model"], *_data(dirs))
    assert not any(key.startswith("rcd/") for key in metrics) and relearn_configs == []
    notices = [line for line in err if "RCD skipped" in line]
    assert len(notices) == 1 and "--original" in notices[0]
    _, err = _eval(capsys, "--model", dirs["model"], *_data(dirs), "--no_relearn")
    assert not any("RCD skipped" in line for line in err)  # asked for: nothing to say


def test_adapter_whose_base_is_elsewhere_needs_base_model(lora_run, tmp_path, capsys):
    dirs, out, report = lora_run
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    config = json.loads((moved / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = str(tmp_path / "gone")
    (moved / "adapter_config.json").write_text(json.dumps(config))
    assert main(["eval", "--model", str(moved), *_data(dirs), "--no_relearn"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path / "gone") in err[0] and "--base_model" in err[0]
    metrics, _ = _eval(
        capsys, "--model", str(moved), "--base_model", dirs["model"], *_data(dirs), "--no_relearn"
    )
    expected = {k: v for k, v in report["metrics"]["unlearned"].items() if k in metrics}
    assert metrics == pytest.approx(expected, rel=1e-5, abs=1e-6) and "forget/accuracy" in metrics


def test_an_adapter_folder_loads_merged_or_as_the_run_had_it(lora_run, mislabeled):
    """``load_model``: merged into a plain model (references), or a ``PeftModel`` with trainable adapters; both
    predict alike."""
    import torch
    from peft import PeftModel

    from hf_unlearn.loading import load_model

    _, out, _ = lora_run
    merged, adapted = load_model(str(out)), load_model(str(out), merge_adapter=False)
    assert not isinstance(merged, PeftModel) and type(merged).__name__ == "BertForSequenceClassification"
    assert isinstance(adapted, PeftModel) and any(
        p.requires_grad for n, p in adapted.named_parameters() if "lora_" in n
    )
    batch = mislabeled.tokenizer(
        [row["text"] for row in mislabeled.forget[:8]], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        torch.testing.assert_close(merged.eval()(**batch).logits, adapted.eval()(**batch).logits)
