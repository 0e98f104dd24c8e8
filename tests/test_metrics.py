"""Tests of hf_unlearn.metrics: relearning convergence delay, evaluate_unlearning, evaluate modules, callback, plots."""

import copy
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import make_config, state_copy

from hf_unlearn import UnlearningTrainer
from hf_unlearn.metrics import (
    RelearnConfig,
    RelearnResult,
    UnlearningMetricsCallback,
    evaluate_unlearning,
    module_path,
    per_example_losses,
    plot_relearning_curves,
    relearning_convergence_delay,
)
from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier

RCD = RelearnConfig(learning_rate=1e-3, max_steps=300, progress_bar=False)


def _relearn_all(task, models: dict, names=None) -> dict:
    """RCD of each named model against the golden one (whose relearning run is done once)."""
    golden = None
    results = {}
    for name in names or models:
        results[name] = relearning_convergence_delay(
            models[name],
            task.forget,
            original_model=models["original"],
            golden_model=models["golden"],
            processing_class=task.tokenizer,
            config=RCD,
            golden_result=golden,
        )
        golden = golden or results[name].golden
    return results


@pytest.fixture(scope="module")
def mislabeled_models(mislabeled_runs):
    """Seed 0's original (memorized the 10% flipped labels), golden (same init, retain only) and ft/dr/ieu
    unlearned from the original, with their relearning results against the golden model."""
    torch.set_num_threads(1)
    task, models = mislabeled_runs[0]
    return models, _relearn_all(task, models)


def _assert_same_state(before, model):
    after = model.state_dict()
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key


# -- relearning convergence delay ----------------------------------------------------------------------------


@pytest.mark.efficacy
def test_mislabeled_rcd_separates_ft_from_dr_and_ieu(mislabeled_models, mislabeled_runs):
    _, results = mislabeled_models
    assert results["original"].steps == 0 and results["original"].recovered
    golden = results["original"].golden
    assert golden.recovered and golden.steps > 0
    # every run relearned the same golden model with the same protocol
    assert {r.golden.steps for r in results.values()} == {golden.steps}
    assert results["golden"].ratio_to_golden == 1.0
    # the golden model never saw the flipped labels
    assert golden.curve[0]["accuracy"] <= 0.34
    assert golden.curve[0]["accuracy"] < golden.threshold <= golden.curve[-1]["accuracy"]
    # Relearning counts are heavy-tailed (one seed's ieu ratio ranged 0.14-1.05 over seeds and CPUs): the
    # claim is on medians over the seeds. Naive fine-tuning keeps the flipped labels and relearns them at once.
    ratios = {name: [results[name].ratio_to_golden] for name in ("ft", "dr", "ieu")}
    for seed, (task, models) in mislabeled_runs.items():
        if seed != 0:
            more = _relearn_all(task, models, names=list(ratios))
            for name in ratios:
                ratios[name].append(more[name].ratio_to_golden)
    median = {name: float(np.median(values)) for name, values in ratios.items()}
    assert median["ft"] <= 0.1, ratios
    for method in ("dr", "ieu"):
        assert median[method] >= 0.15 and median[method] >= median["ft"] + 0.1, ratios


def test_rcd_curve_and_weight_geometry_are_consistent(mislabeled_models):
    _, results = mislabeled_models
    golden = results["golden"]
    steps = [row["step"] for row in golden.curve]
    assert steps == list(range(golden.steps + 1))  # eval_every=1
    assert golden.start_distance == golden.curve[0]["distance"] > 0
    assert golden.curve[0]["path"] == 0.0 and golden.weight_path == golden.curve[-1]["path"]
    paths = [row["path"] for row in golden.curve]
    assert all(b >= a for a, b in zip(paths, paths[1:]))
    # the path is at least the straight-line displacement it caused (triangle inequality)
    moved = abs(golden.curve[-1]["distance"] - golden.curve[0]["distance"])
    assert golden.weight_path >= moved - 1e-4
    original = results["original"]
    assert original.start_distance == 0.0 and original.weight_path == 0.0 and len(original.curve) == 1


def test_rcd_leaves_its_inputs_unchanged_and_is_reproducible(mislabeled_models, mislabeled):
    models, _ = mislabeled_models
    model, original, golden = models["dr"], models["original"], models["golden"]
    model.train()
    original.eval()
    before = {
        name: state_copy(m) for name, m in (("model", model), ("original", original), ("golden", golden))
    }
    rng = torch.get_rng_state()
    kwargs = dict(
        original_model=original, golden_model=golden, processing_class=mislabeled.tokenizer, config=RCD
    )
    first = relearning_convergence_delay(model, mislabeled.forget, **kwargs)
    second = relearning_convergence_delay(model, mislabeled.forget, **kwargs)
    assert first.steps > 0
    assert model.training and not original.training
    _assert_same_state(before["model"], model)
    _assert_same_state(before["original"], original)
    _assert_same_state(before["golden"], golden)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is untouched
    assert (first.steps, first.curve, first.golden.steps) == (second.steps, second.curve, second.golden.steps)
    model.eval()
    relearning_convergence_delay(model, mislabeled.forget, **kwargs)
    assert not model.training


def test_original_recovers_in_zero_steps_and_golden_against_itself_has_ratio_one(
    mislabeled_models, mislabeled
):
    models, _ = mislabeled_models
    tok = mislabeled.tokenizer
    for target in ("accuracy", "loss"):
        config = RelearnConfig(learning_rate=1e-3, max_steps=50, target=target, progress_bar=False)
        result = relearning_convergence_delay(
            models["original"],
            mislabeled.forget,
            original_model=models["original"],
            processing_class=tok,
            config=config,
        )
        assert (result.steps, result.recovered, result.start_distance) == (0, True, 0.0)
        assert result.target == target
    golden = models["golden"]
    result = relearning_convergence_delay(
        golden,
        mislabeled.forget,
        original_model=models["original"],
        golden_model=golden,
        processing_class=tok,
        config=RCD,
    )
    assert result.steps == result.golden.steps > 0
    assert result.ratio_to_golden == 1.0
    # a golden result can be reused for other models, but only under the same protocol
    reused = relearning_convergence_delay(
        models["original"],
        mislabeled.forget,
        original_model=models["original"],
        processing_class=tok,
        config=RCD,
        golden_result=result.golden,
    )
    assert reused.golden is result.golden and reused.ratio_to_golden == 0.0
    with pytest.raises(ValueError, match="golden_result"):
        relearning_convergence_delay(
            models["original"],
            mislabeled.forget,
            original_model=models["original"],
            processing_class=tok,
            config=RelearnConfig(learning_rate=1e-3, max_steps=300, alpha=0.2, progress_bar=False),
            golden_result=result.golden,
        )


@pytest.mark.efficacy
def test_refined_sparse_evaluation_reproduces_every_step_evaluation(mislabeled_models, mislabeled):
    """Refinement finds the first recovered step inside the first recovered window of ``eval_every`` steps:
    the dense answer whenever the model stays recovered until the next evaluation. The loss target (a
    monotone descent here) makes that hold on any CPU; forget *accuracy* can dip back below its threshold
    for a step, and then the sparse count is the later recovery (measured under ATEN_CPU_CAPABILITY=default)."""
    models, _ = mislabeled_models
    kwargs = dict(original_model=models["original"], processing_class=mislabeled.tokenizer)

    def relearn(**config):
        return relearning_convergence_delay(
            models["ieu"],
            mislabeled.forget,
            # at 3e-3 the loss recovers in 77-93 steps (native and ATEN_CPU_CAPABILITY=default): well inside
            # (7, 300) on any CPU; at 1e-3 it takes 270-300+, and the run may end censored
            config=RelearnConfig(
                learning_rate=3e-3, max_steps=300, target="loss", progress_bar=False, **config
            ),
            **kwargs,
        )

    dense, sparse, coarse = relearn(), relearn(eval_every=7), relearn(eval_every=7, refine=False)
    assert dense.recovered and dense.steps > 7
    assert sparse.steps == dense.steps  # one-step resolution from evaluations every 7 steps
    assert coarse.steps % 7 == 0 and coarse.steps >= dense.steps
    rows = {row["step"]: row for row in dense.curve}
    assert len(sparse.curve) < len(dense.curve)
    for row in sparse.curve:  # same trajectory: kept weights and path lengths are exact
        for key in ("loss", "accuracy", "distance", "path"):
            assert row[key] == pytest.approx(rows[row["step"]][key], rel=1e-6, abs=1e-7), (row, key)


def test_ratio_to_golden_rule_when_golden_needs_no_step():
    from hf_unlearn.metrics.relearning import _ratio

    assert _ratio(0, 0, 1) == 1.0
    assert _ratio(6, 0, 1) == 6.0
    assert _ratio(6, 0, 3) == 2.0
    assert _ratio(6, 12, 1) == 0.5


@pytest.mark.efficacy
def test_censored_run_and_json(mislabeled_models, mislabeled):
    models, _ = mislabeled_models
    config = RelearnConfig(learning_rate=1e-3, max_steps=4, eval_every=3, progress_bar=False, optimizer="sgd")
    result = relearning_convergence_delay(
        models["golden"],
        mislabeled.forget,
        original_model=models["original"],
        golden_model=models["golden"],
        processing_class=mislabeled.tokenizer,
        config=config,
    )
    assert isinstance(result, RelearnResult)
    assert (result.steps, result.recovered) == (4, False)  # censored at max_steps, last step evaluated
    assert [row["step"] for row in result.curve] == [0, 3, 4]
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["steps"] == 4 and data["golden"]["steps"] == 4 and data["config"]["optimizer"] == "sgd"
    assert data["ratio_to_golden"] == 1.0


def test_relearn_config_is_validated():
    with pytest.raises(ValueError, match="optimizer"):
        RelearnConfig(optimizer="adam")
    with pytest.raises(ValueError, match="target"):
        RelearnConfig(target="f1")
    with pytest.raises(ValueError, match="alpha"):
        RelearnConfig(alpha=1.5)
    with pytest.raises(ValueError, match="eval_every"):
        RelearnConfig(eval_every=0)


def _lora_lm(qa, seed=0):
    from peft import LoraConfig, get_peft_model

    base = tiny_causal_lm(qa.tokenizer, seed=seed)
    original = copy.deepcopy(base)  # get_peft_model modifies the model it wraps
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True)
    )
    return model, original


def _merged_params(peft_model):
    merged = copy.deepcopy(peft_model).merge_and_unload()
    return {n: p.detach().clone() for n, p in merged.named_parameters()}


def test_rcd_on_lora_model_trains_adapters_only_and_leaves_input_unchanged(qa, monkeypatch):
    import hf_unlearn.metrics._relearn_protocol as protocol

    model, original = _lora_lm(qa)
    torch.manual_seed(1)
    with torch.no_grad():  # move the adapters away from the original (LoRA B starts at 0)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    captured = []
    make = protocol._make_optimizer

    def spy(params, config):
        captured.extend(params)
        return make(params, config)

    monkeypatch.setattr(protocol, "_make_optimizer", spy)
    before = state_copy(model)
    model.eval()
    config = RelearnConfig(learning_rate=1e-2, max_steps=3, alpha=0.0, target="loss", progress_bar=False)
    result = relearning_convergence_delay(
        model, qa.forget, original_model=original, processing_class=qa.tokenizer, config=config
    )
    n_lora = sum(1 for n, p in model.named_parameters() if p.requires_grad)
    assert n_lora == 4 and len(captured) == n_lora
    assert all(4 in p.shape for p in captured)  # r = 4: the LoRA A and B matrices only
    _assert_same_state(before, model)
    assert not model.training
    assert result.steps > 0 and result.weight_path > 0
    # the distance is taken between merged weights and the full-weight original
    merged = _merged_params(model)
    reference = {n: p.detach() for n, p in original.named_parameters()}
    expected = math.sqrt(sum(float((merged[n] - reference[n]).pow(2).sum()) for n in merged))
    assert result.start_distance == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("kind", ["full", "lora_lm", "lora_classifier"])
def test_weight_tracker_path_and_distance_match_direct_computation(qa, mislabeled, kind):
    """Path length and distance in effective weights equal those of the merged models, computed directly
    (LoRA: merged adapters; LoRA classifier: also the trained copy of the head in modules_to_save)."""
    from hf_unlearn.metrics._weights import WeightTracker

    if kind == "full":
        original = tiny_causal_lm(qa.tokenizer)
        model = copy.deepcopy(original)

        def weights():
            return {n: p.detach().clone() for n, p in model.named_parameters()}
    else:
        if kind == "lora_lm":
            model, original = _lora_lm(qa)
        else:
            from peft import LoraConfig, get_peft_model

            original = tiny_classifier(mislabeled.tokenizer)
            model = get_peft_model(
                copy.deepcopy(original),
                LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"]),
            )
            assert any("modules_to_save" in n for n, p in model.named_parameters() if p.requires_grad)

        def weights():
            return _merged_params(model)

    tracker = WeightTracker(model, original)
    trainable = [p for p in model.parameters() if p.requires_grad]
    reference = {n: p.detach() for n, p in original.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    previous, expected_path = weights(), 0.0
    for _ in range(3):
        with torch.no_grad():
            for p in trainable:
                p.add_(torch.randn(p.shape, generator=generator) * 0.05)
        tracker.step()
        current = weights()
        expected_path += math.sqrt(sum(float((current[n] - previous[n]).pow(2).sum()) for n in current))
        previous = current
    distance = math.sqrt(sum(float((previous[n] - reference[n]).pow(2).sum()) for n in previous))
    assert tracker.path_length() == pytest.approx(expected_path, rel=1e-4)
    assert tracker.distance() == pytest.approx(distance, rel=1e-4)
    assert distance > 0


# -- evaluate_unlearning -------------------------------------------------------------------------------------


CLASSIFIER_KEYS = {
    f"{split}/{name}" for split in ("forget", "retain", "test") for name in ("loss", "accuracy")
} | {"mia/auc", "forget/ua", "mia/efficacy", "gap/average", "golden/mia/efficacy", "golden/forget/ua"}
GOLDEN_KEYS = {
    "golden/forget/loss",
    "golden/test/loss",
    "golden/mia/auc",
    "forget_quality/ks_pvalue",
    "forget_quality/ks_statistic",
    "forget/kl_to_golden",
    "distance/l2_to_golden",
}


@pytest.mark.efficacy
def test_evaluate_unlearning_original_vs_golden_on_mislabeled_data(mislabeled_models, mislabeled):
    models, _ = mislabeled_models
    kwargs = dict(
        forget_dataset=mislabeled.forget,
        retain_dataset=mislabeled.retain,
        test_dataset=mislabeled.test,
        original_model=models["original"],
        golden_model=models["golden"],
        processing_class=mislabeled.tokenizer,
    )
    original = evaluate_unlearning(models["original"], **kwargs)
    golden = evaluate_unlearning(models["golden"], **kwargs)
    assert CLASSIFIER_KEYS | GOLDEN_KEYS | {"distance/l2_to_original"} <= set(original)
    assert not any("token_accuracy" in k or "min_k" in k for k in original)
    assert all(isinstance(v, float) and math.isfinite(v) for v in original.values())
    # the original memorized the flipped labels; the golden model never saw them
    assert original["forget/accuracy"] >= 0.9 > 0.3 >= golden["forget/accuracy"]
    assert original["forget/loss"] < golden["forget/loss"]
    assert original["mia/auc"] > golden["mia/auc"] + 0.2
    assert golden["mia/auc"] == golden["golden/mia/auc"]
    # SalUn's layout: UA = 1 - forget accuracy; the SVC attack calls golden's flipped labels unseen
    assert original["forget/ua"] == pytest.approx(1 - original["forget/accuracy"])
    assert golden["mia/efficacy"] > original["mia/efficacy"] + 0.3
    assert golden["gap/average"] == 0.0 < 0.2 < original["gap/average"]
    # golden against itself
    assert golden["forget_quality/ks_pvalue"] == 1.0 and golden["forget_quality/ks_statistic"] == 0.0
    assert golden["distance/l2_to_golden"] == 0.0 and golden["forget/kl_to_golden"] == pytest.approx(
        0.0, abs=1e-6
    )
    assert original["forget_quality/ks_pvalue"] < 0.01 and original["forget/kl_to_golden"] > 1.0
    assert original["distance/l2_to_original"] == 0.0
    assert golden["distance/l2_to_original"] == pytest.approx(original["distance/l2_to_golden"], rel=1e-6)
    # only what the inputs allow
    bare = evaluate_unlearning(
        models["golden"],
        forget_dataset=mislabeled.forget,
        retain_dataset=mislabeled.retain,
        processing_class=mislabeled.tokenizer,
    )
    assert set(bare) == {"forget/loss", "forget/accuracy", "forget/ua", "retain/loss", "retain/accuracy"}
    assert bare["forget/accuracy"] == golden["forget/accuracy"]


def test_evaluate_unlearning_reuses_per_example_losses_and_restores_modes(mislabeled_models, mislabeled):
    models, _ = mislabeled_models
    model = models["ft"]
    model.train()
    losses = per_example_losses(model, mislabeled.forget, mislabeled.tokenizer, batch_size=5)
    assert model.training
    tok = mislabeled.tokenizer
    manual = []
    model.eval()
    with torch.no_grad():
        for row in mislabeled.forget:
            enc = tok(row["text"], return_tensors="pt")
            logits = model(**{k: enc[k] for k in ("input_ids", "attention_mask")}).logits
            manual.append(float(F.cross_entropy(logits, torch.tensor([row["label"]]))))
    np.testing.assert_allclose(losses, manual, rtol=1e-5, atol=1e-6)
    metrics = evaluate_unlearning(
        model, forget_dataset=mislabeled.forget, retain_dataset=mislabeled.retain, processing_class=tok
    )
    assert metrics["forget/loss"] == pytest.approx(float(np.mean(manual)), rel=1e-5)


def test_evaluate_unlearning_causal_lm_keys(qa):
    model = tiny_causal_lm(qa.tokenizer, seed=0)
    golden = tiny_causal_lm(qa.tokenizer, seed=1)
    metrics = evaluate_unlearning(
        model,
        forget_dataset=qa.forget,
        retain_dataset=qa.retain,
        test_dataset=qa.test,
        original_model=model,
        golden_model=golden,
        processing_class=qa.tokenizer,
        batch_size=4,
    )
    for split in ("forget", "retain", "test", "golden/forget", "golden/test"):
        assert {f"{split}/loss", f"{split}/token_accuracy", f"{split}/perplexity"} <= set(metrics)
        assert not any(k == f"{split}/accuracy" for k in metrics)
        assert math.isfinite(metrics[f"{split}/perplexity"]) and metrics[f"{split}/perplexity"] > 1
        assert 0 <= metrics[f"{split}/token_accuracy"] <= 1
    for key in ("mia/auc", "mia/min_k_auc", "golden/mia/auc", "golden/mia/min_k_auc"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["forget/kl_to_golden"] > 0 and metrics["distance/l2_to_golden"] > 0
    assert metrics["distance/l2_to_original"] == 0.0


def test_min_k_score_is_the_mean_of_the_lowest_token_logprobs():
    from hf_unlearn.metrics.evaluation import _min_k_scores

    logprob = torch.tensor([[-1.0, -5.0, -2.0, -3.0, -9.0, 0.0], [-4.0, -1.0, 0.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 0, 0, 0, 0]], dtype=torch.bool)
    scores = _min_k_scores(logprob, mask, 0.4)  # k = ceil(0.4 * 5) = 2 and ceil(0.4 * 2) = 1
    torch.testing.assert_close(scores, torch.tensor([-7.0, -4.0]))


# -- evaluate modules, callback, plots, imports --------------------------------------------------------------


def test_evaluate_modules_load_offline_and_match_sklearn_and_scipy(monkeypatch):
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    import evaluate
    from scipy.stats import ks_2samp
    from sklearn.metrics import roc_auc_score

    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", True)
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0.0, 1.0, 30), rng.normal(0.8, 1.0, 40)])
    groups = np.array([1] * 30 + [0] * 40)
    mia = evaluate.load(module_path("mia_auc"))
    ks = evaluate.load(module_path("ks_forget_quality"))
    expected_auc = roc_auc_score(groups, -values)
    expected_ks = ks_2samp(values[:30], values[30:])
    assert mia.compute(predictions=values, references=groups)["auc"] == pytest.approx(expected_auc, abs=1e-12)
    assert mia.compute(predictions=values, references=groups, higher_is_member=True)["auc"] == pytest.approx(
        1 - expected_auc, abs=1e-12
    )
    result = ks.compute(predictions=values, references=groups)
    assert result["ks_pvalue"] == pytest.approx(expected_ks.pvalue, rel=1e-9)
    assert result["ks_statistic"] == pytest.approx(expected_ks.statistic, rel=1e-9)
    combined = evaluate.combine([mia, ks])
    for start in range(0, 70, 10):
        combined.add_batch(predictions=values[start : start + 10], references=groups[start : start + 10])
    assert combined.compute() == pytest.approx(
        {"auc": expected_auc, "ks_pvalue": expected_ks.pvalue, "ks_statistic": expected_ks.statistic}
    )
    with pytest.raises(ValueError, match="Unknown evaluate module"):
        module_path("accuracy")


def test_evaluate_unlearning_matches_the_shipped_modules(mislabeled_models, mislabeled):
    import evaluate

    models, _ = mislabeled_models
    model, golden = models["dr"], models["golden"]
    tok = mislabeled.tokenizer
    metrics = evaluate_unlearning(
        model,
        forget_dataset=mislabeled.forget,
        retain_dataset=mislabeled.retain,
        test_dataset=mislabeled.test,
        golden_model=golden,
        processing_class=tok,
    )
    forget = per_example_losses(model, mislabeled.forget, tok)
    test = per_example_losses(model, mislabeled.test, tok)
    forget_golden = per_example_losses(golden, mislabeled.forget, tok)
    mia = evaluate.load(module_path("mia_auc")).compute(
        predictions=np.concatenate([forget, test]), references=[1] * len(forget) + [0] * len(test)
    )
    ks = evaluate.load(module_path("ks_forget_quality")).compute(
        predictions=np.concatenate([forget, forget_golden]), references=[1] * len(forget) + [0] * len(forget)
    )
    assert metrics["mia/auc"] == pytest.approx(mia["auc"])
    assert metrics["forget_quality/ks_pvalue"] == pytest.approx(ks["ks_pvalue"])


def test_callback_adds_unlearning_metrics_to_evaluations_and_logs(tmp_path, mislabeled):
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self):
            self.logs = []

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs))

    model = tiny_classifier(mislabeled.tokenizer)
    golden = tiny_classifier(mislabeled.tokenizer, seed=1)
    recorder = Recorder()
    args = make_config(
        tmp_path, method="ft", max_steps=4, eval_strategy="steps", eval_steps=2, logging_steps=2
    )
    trainer = UnlearningTrainer(
        model,
        args,
        forget_dataset=mislabeled.forget,
        retain_dataset=mislabeled.retain,
        processing_class=mislabeled.tokenizer,
        eval_dataset=mislabeled.test,
        callbacks=[recorder],
    )
    callback = UnlearningMetricsCallback(
        mislabeled.forget, mislabeled.retain, mislabeled.test, golden_model=golden
    ).attach(trainer)
    trainer.train()
    assert [row["step"] for row in callback.history] == [2, 4]
    logged = [row for row in recorder.logs if "eval_unlearn/forget/accuracy" in row]
    assert len(logged) == 2  # reached the callbacks that report_to integrations are
    assert {"eval_unlearn/mia/auc", "eval_unlearn/forget_quality/ks_pvalue"} <= set(logged[0])
    assert sum("eval_unlearn/retain/loss" in row for row in trainer.state.log_history) == 2
    metrics = trainer.evaluate()
    assert metrics["eval_unlearn/forget/loss"] == pytest.approx(callback.history[-1]["forget/loss"])
    assert "eval_loss" in metrics

    # without attach: the values still reach evaluate()'s metrics and the log history
    plain = UnlearningMetricsCallback(
        mislabeled.forget, mislabeled.retain, processing_class=mislabeled.tokenizer
    )
    trainer = UnlearningTrainer(
        tiny_classifier(mislabeled.tokenizer),
        make_config(tmp_path, method="ft", max_steps=1),
        forget_dataset=mislabeled.forget,
        retain_dataset=mislabeled.retain,
        processing_class=mislabeled.tokenizer,
        eval_dataset=mislabeled.test,
        callbacks=[plain],
    )
    metrics = trainer.evaluate()
    assert set(metrics) >= {"eval_unlearn/forget/accuracy", "eval_unlearn/retain/accuracy", "eval_loss"}
    assert "eval_unlearn/forget/accuracy" in trainer.state.log_history[-1]


def test_plot_relearning_curves_writes_a_png(tmp_path, mislabeled_models):
    _, results = mislabeled_models
    for metric in ("accuracy", "loss"):
        path = plot_relearning_curves(
            {k: results[k] for k in ("ft", "dr", "ieu")}, tmp_path / f"rcd_{metric}.png", metric=metric
        )
        data = open(path, "rb").read()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    with pytest.raises(ValueError, match="metric"):
        plot_relearning_curves(results, tmp_path / "x.png", metric="f1")


def test_importing_metrics_does_not_import_transformers():
    code = (
        "import sys, hf_unlearn.metrics as m; m.module_path('mia_auc'); print('transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.efficacy
def test_golden_free_rcd_ranks_methods_as_the_golden_ratio_does(mislabeled_runs):
    """``ratio_to_heldout``: the original learning held-out sentences with random wrong labels stands in for the
    golden model relearning the flipped ones. Measured (seeds 0-2): held-out 13/18/24 steps vs golden 28/20/38;
    ft 0-0.08, dr 0.42-1.31, ieu 0.29-1.15, golden 1.1-2.2."""
    from hf_unlearn.stopping import corrupt_labels

    torch.set_num_threads(1)
    ratios: dict[str, list[float]] = {name: [] for name in ("original", "golden", "ft", "dr", "ieu")}
    for task, models in mislabeled_runs.values():
        heldout = None
        for name in ratios:
            result = relearning_convergence_delay(
                models[name],
                task.forget,
                original_model=models["original"],
                processing_class=task.tokenizer,
                config=RCD,
                heldout_dataset=corrupt_labels(task.test, 2, seed=0, key="label")
                if heldout is None
                else None,
                heldout_result=heldout,
            )
            heldout = heldout or result.heldout
            assert result.heldout is heldout and result.ratio_to_golden is None
            ratios[name].append(result.ratio_to_heldout)
        assert heldout.steps > 0 and heldout.recovered
        assert len(heldout.curve) and heldout.to_dict()["steps"] == heldout.steps
    median = {name: float(np.median(values)) for name, values in ratios.items()}
    assert median["original"] == 0.0 and median["ft"] <= 0.1
    assert (
        median["dr"] >= 0.2
        and median["ieu"] >= 0.2
        and min(median["dr"], median["ieu"]) >= median["ft"] + 0.1
    )
    assert 0.5 <= median["golden"] <= 4.0  # the stand-in is of golden's order


def test_svc_mia_efficacy_counts_forget_examples_that_look_like_test_examples():
    from hf_unlearn.metrics.classifier import svc_mia_efficacy

    members = np.full(40, 0.99)  # retain: confident; only the first len(test) of them train the attack
    test = np.full(20, 0.30)
    forget = np.array([0.99] * 3 + [0.30] * 7)
    assert svc_mia_efficacy(members, test, forget) == pytest.approx(0.7)
    # SalUn's subset: retain examples past len(test) are not used (a far-off tail changes nothing)
    assert svc_mia_efficacy(np.r_[members[:20], np.full(20, 0.30)], test, forget) == pytest.approx(0.7)


def test_average_gap_is_the_mean_absolute_gap_over_ua_ra_ta_and_efficacy():
    from hf_unlearn.metrics.classifier import GAP_KEYS, average_gap

    row = dict(zip(GAP_KEYS, (0.10, 0.90, 0.80, 0.20)))
    row.update({f"golden/{k}": v for k, v in zip(GAP_KEYS, (0.20, 0.90, 0.70, 0.60))})
    assert average_gap(row)["gap/average"] == pytest.approx((0.1 + 0.0 + 0.1 + 0.4) / 4)
    assert average_gap({k: v for k, v in row.items() if k != "golden/mia/efficacy"}) == {}
