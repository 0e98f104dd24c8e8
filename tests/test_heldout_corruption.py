"""The held-out reference of a forget set of wrong labels (mislabeled data): the user's
``heldout_label_corruption`` reaches the stopping rule and the golden-free RCD in the pipeline, the CLI and the
Python API, and a reference that cannot stand in for golden gives no ratio but a reason."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from conftest import fit, make_config

from hf_unlearn.metrics import RelearnConfig, relearning_convergence_delay
from hf_unlearn.metrics import relearning as relearning_module
from hf_unlearn.pipeline import LoadedJob, RunArguments, build_report, evaluate_models, unlearn
from hf_unlearn.pipeline.job import resolve_label_corruption
from hf_unlearn.stopping import corrupt_labels
from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier

RCD = RelearnConfig(learning_rate=1e-3, max_steps=60, progress_bar=False)
HELDOUT = "learning held-out (original)"


@pytest.fixture(scope="module")
def memorized(tmp_path_factory, mislabeled):
    """A tiny classifier that memorized the mislabeled task's flipped labels (as conftest's original)."""
    torch.set_num_threads(1)
    init = tiny_classifier(mislabeled.tokenizer, hidden_size=64, seed=0)
    tmp = tmp_path_factory.mktemp("memorized")
    return fit(tmp, init, mislabeled, mislabeled.train, "ft", 300, 3e-3, "cosine", allow_overlap=True)


@pytest.fixture
def heldout_labels(monkeypatch):
    """The labels of the rows each relearning run of ``hf_unlearn.metrics.relearning`` learns, by its name."""
    seen: dict[str, list] = {}
    run = relearning_module._Protocol.run

    def spy(self, model, original, desc):
        seen[desc] = [row["labels"] for row in self.rows]
        return run(self, model, original, desc)

    monkeypatch.setattr(relearning_module._Protocol, "run", spy)
    return seen


def _rcd(model, task, original, **kwargs):
    return relearning_convergence_delay(
        model, task.forget, original_model=original, processing_class=task.tokenizer, config=RCD, **kwargs
    )


def test_the_python_api_relabels_the_heldout_set_as_the_stopping_rule_does(memorized, mislabeled):
    explicit = _rcd(
        memorized,
        mislabeled,
        memorized,
        heldout_dataset=corrupt_labels(mislabeled.test, 2, seed=0, key="label"),
    )
    result = _rcd(
        memorized, mislabeled, memorized, heldout_dataset=mislabeled.test, heldout_label_corruption="random"
    )
    assert (
        result.heldout.curve == explicit.heldout.curve
    )  # the same wrong labels (seed RelearnConfig.seed = 0)
    # the original never learned wrong held-out labels: it needs steps, and the ratio is a real ratio
    assert result.heldout.steps > 0 and result.heldout_note is None
    assert result.ratio_to_heldout == result.steps / result.heldout.steps == 0.0  # the original itself
    with pytest.raises(ValueError, match="heldout_label_corruption must be one of"):
        _rcd(
            memorized, mislabeled, memorized, heldout_dataset=mislabeled.test, heldout_label_corruption="flip"
        )


def test_a_reference_the_original_already_predicts_gives_no_ratio_but_a_reason(memorized, mislabeled, caplog):
    # data it was trained on, with their true labels: met at step 0, so steps / 0 would be printed as a ratio
    with caplog.at_level("WARNING", logger="hf_unlearn.metrics.relearning"):
        result = _rcd(memorized, mislabeled, memorized, heldout_dataset=mislabeled.retain)
    assert result.heldout.steps == 0 and result.ratio_to_heldout is None
    assert "before any update (step 0)" in result.heldout_note
    assert "needs heldout_label_corruption='random'" in result.heldout_note
    assert result.to_dict()["heldout_note"] == result.heldout_note and "no ratio_to_heldout" in caplog.text


def test_a_causal_lm_reference_cannot_carry_label_corruption(qa, heldout_labels):
    model = tiny_causal_lm(qa.tokenizer)
    config = RelearnConfig(max_steps=2, progress_bar=False)
    result = relearning_convergence_delay(
        model,
        qa.forget,
        original_model=model,
        processing_class=qa.tokenizer,
        config=config,
        heldout_dataset=qa.test,
        heldout_label_corruption="random",
    )
    assert result.ratio_to_heldout is None and result.heldout is None
    assert "causal LM" in result.heldout_note and HELDOUT not in heldout_labels


def test_a_user_file_job_takes_the_users_corruption_for_stopping_and_rcd(
    tmp_path, memorized, mislabeled, caplog, heldout_labels
):
    """Before: the pipeline kept the job's 'none', warned 'set heldout_label_corruption='none'' and relearned
    the held-out set with its true labels (a ratio that was the raw step count)."""
    job = LoadedJob(
        model=copy.deepcopy(memorized),
        tokenizer=mislabeled.tokenizer,
        forget=mislabeled.forget,
        retain=mislabeled.retain,
        test=mislabeled.test,
        original=memorized,
        info={"scenario": None},
    )
    config = make_config(
        tmp_path, method="grad_diff", max_steps=2, stopping="heldout_pause", heldout_label_corruption="random"
    )
    with caplog.at_level("WARNING", logger="hf_unlearn"):
        trainer, seconds = unlearn(job, config, RunArguments(), quiet=True)
    assert "heldout_label_corruption" not in caplog.text
    true_labels = [row["label"] for row in mislabeled.test]
    label_of = {tuple(row["input_ids"]): row["labels"] for row in trainer._heldout_rows()}  # the true ones
    reference = trainer.stopping.reference  # a seeded subset of the held-out rows
    assert reference and all(row["labels"] != label_of[tuple(row["input_ids"])] for row in reference)
    run_args = RunArguments(evaluate=False, relearn_learning_rate=1e-3, relearn_max_steps=60)
    metrics, relearn = evaluate_models(job, {"unlearned": trainer.model}, run_args, progress=False)
    learned = heldout_labels[HELDOUT]
    assert len(learned) == len(mislabeled.forget)
    assert all(a != b for a, b in zip(learned, true_labels))  # relearned on wrong labels too
    assert relearn["unlearned"].heldout.steps > 0 and relearn["unlearned"].heldout_note is None
    assert metrics["unlearned"]["rcd/ratio_to_heldout"] == relearn["unlearned"].ratio_to_heldout
    report = build_report(job, config, run_args, metrics, relearn, seconds, trainer)
    assert report["hyperparameters"]["heldout_label_corruption"] == "random"
    assert not report["flags"]


def test_a_job_without_golden_or_heldout_set_says_why_it_has_no_ratio(tmp_path, mislabeled):
    model = tiny_classifier(mislabeled.tokenizer, seed=0)
    job = LoadedJob(
        model=model,
        tokenizer=mislabeled.tokenizer,
        forget=mislabeled.forget,
        retain=mislabeled.retain,
        original=copy.deepcopy(model),
    )
    run_args = RunArguments(evaluate=False, relearn_max_steps=2)
    metrics, relearn = evaluate_models(job, {"unlearned": model}, run_args, progress=False)
    assert "rcd/ratio_to_heldout" not in metrics["unlearned"]
    report = build_report(job, make_config(tmp_path), run_args, metrics, relearn, 0.0)
    assert any(
        "rcd/ratio_to_heldout not computed" in flag and "no golden model" in flag for flag in report["flags"]
    )


@pytest.mark.parametrize(
    "known, user, used, advice",
    [
        (None, None, "none", None),  # the user's own data, nothing set
        (None, "random", "random", None),  # the user's own mislabeled data
        ("random", None, "random", None),  # a scenario's value is the default
        ("random", "random", "random", None),
        (
            "random",
            "none",
            "none",
            "set heldout_label_corruption='random'",
        ),  # the user's wins, with a warning
        ("none", "random", "random", "set heldout_label_corruption='none'"),
    ],
)
def test_the_users_setting_wins_and_only_a_contradicted_scenario_warns(
    tmp_path, mislabeled, caplog, known, user, used, advice
):
    job = LoadedJob(model=None, tokenizer=None, forget=[], retain=[], heldout_label_corruption=known)
    job.info = {"scenario": "polarity-minilm" if known else None}
    config = make_config(tmp_path, heldout_label_corruption=user)
    with caplog.at_level("WARNING", logger="hf_unlearn.pipeline"):
        assert resolve_label_corruption(job, config) == used
    assert job.heldout_label_corruption == config.heldout_label_corruption == used
    if advice is None:
        assert not caplog.records
    else:
        assert advice in caplog.text and "polarity-minilm's forget set is" in caplog.text


def test_the_cli_takes_heldout_label_corruption_for_user_files(tmp_path, memorized, mislabeled, caplog):
    from hf_unlearn.cli import main

    memorized.save_pretrained(tmp_path / "model")
    mislabeled.tokenizer.save_pretrained(tmp_path / "model")
    files = {}
    for name in ("forget", "retain", "test"):
        files[name] = tmp_path / f"{name}.jsonl"
        files[name].write_text("".join(json.dumps(r) + "\n" for r in getattr(mislabeled, name)))
    out = tmp_path / "out"
    argv = [
        "run",
        *("--model_name_or_path", str(tmp_path / "model"), "--output_dir", str(out)),
        *("--forget_dataset", str(files["forget"]), "--retain_dataset", str(files["retain"])),
        *("--test_dataset", str(files["test"]), "--method", "grad_diff", "--max_steps", "2"),
        *("--stopping", "heldout_pause", "--heldout_label_corruption", "random", "--evaluate", "false"),
        *("--relearn_learning_rate", "1e-3", "--relearn_max_steps", "60", "--use_cpu", "true"),
        *("--disable_tqdm", "true", "--save_strategy", "no", "--report_to", "none"),
    ]
    with caplog.at_level("WARNING", logger="hf_unlearn"):
        assert main(argv) == 0
    assert "heldout_label_corruption" not in caplog.text
    report = json.loads((out / "unlearning_report.json").read_text())
    assert report["hyperparameters"]["heldout_label_corruption"] == "random"
    heldout = report["relearning"]["unlearned"]["heldout"]
    assert heldout["steps"] > 0 and report["relearning"]["unlearned"]["heldout_note"] is None
    ratio = report["metrics"]["unlearned"]["rcd/ratio_to_heldout"]
    assert ratio == report["relearning"]["unlearned"]["steps"] / heldout["steps"]
    # `hf-unlearn eval` of the folder relabels the held-out set as the run did (and relearns with its seed and
    # protocol, all read from the run's report), so it gives the run's ratio, not a step count over ~0 steps
    data = ["--forget_dataset", str(files["forget"]), "--retain_dataset", str(files["retain"])]
    data += ["--test_dataset", str(files["test"]), "--original", str(tmp_path / "model")]
    assert main(["eval", "--model", str(out), *data, "--output", str(tmp_path / "eval.json")]) == 0
    assert json.loads((tmp_path / "eval.json").read_text())["rcd/ratio_to_heldout"] == ratio
