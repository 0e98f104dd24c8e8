"""hf_unlearn.metrics.tofu and .mia on hand-made values with known answers, and their keys in
evaluate_unlearning."""

import math
import zlib

import numpy as np
import pytest
import torch
from conftest import fit

from hf_unlearn.data import IGNORE_INDEX
from hf_unlearn.metrics import evaluate_unlearning, mia, tofu
from hf_unlearn.tiny import tiny_causal_lm


def test_truth_ratio_of_hand_set_probabilities_and_its_aggregates():
    # P(paraphrased) = 1/2; perturbed answers at 1/4 and 1/16: geometric mean 1/8; R = (1/8) / (1/2) = 1/4
    ratios = tofu.truth_ratio(np.array([math.log(2)]), np.array([[math.log(4), math.log(16)]]))
    np.testing.assert_allclose(ratios, [0.25], rtol=1e-8)
    assert tofu.truth_ratio_forget_score(np.array([0.25, 4.0])) == pytest.approx(0.25, rel=1e-8)
    assert tofu.truth_ratio_retain_score(np.array([0.25, 4.0])) == pytest.approx(0.375)  # (0.75 + 0) / 2
    np.testing.assert_allclose(tofu.probability(np.array([0.0, math.log(2)])), [1.0, 0.5])
    assert tofu.model_utility([0.5, 1.0, 0.25]) == pytest.approx(3 / 7)


def test_forget_quality_of_the_golden_model_against_itself_is_one():
    ratios = np.random.default_rng(0).lognormal(size=40)
    assert tofu.forget_quality(ratios, ratios) == 1.0
    assert tofu.forget_quality(ratios, ratios * 50) < 1e-6


def test_min_k_plus_plus_on_a_hand_made_distribution():
    # every position: p = (1/2, 1/4, 1/4); mu = E[log p], sigma^2 = Var[log p]; z = (log p(y) - mu) / sigma
    logp = np.log([0.5, 0.25, 0.25])
    mu = (np.exp(logp) * logp).sum()
    sigma = math.sqrt((np.exp(logp) * logp**2).sum() - mu**2)
    z = {token: (logp[token] - mu) / sigma for token in range(3)}
    assert z[0] == pytest.approx(1.0) and z[1] == pytest.approx(-1.0)
    logits = torch.log(torch.tensor([0.5, 0.25, 0.25])).expand(1, 7, 3).clone()
    # prompt of one token, completion 0 1 0 0 1 and EOS (2): five scored tokens, k = 0.4 -> the lowest two
    labels = torch.tensor([[IGNORE_INDEX, 0, 1, 0, 0, 1, 2]])
    scores = mia.min_k_plus_plus_scores(logits, labels, k=0.4)
    torch.testing.assert_close(scores, torch.tensor([-(z[1] + z[1]) / 2], dtype=torch.float32))
    plain = mia.min_k_scores(logits, labels, k=0.4)
    torch.testing.assert_close(plain, torch.tensor([-float(logp[1])]))


def test_a_uniform_prediction_gives_min_k_plus_plus_zero():
    logits = torch.zeros(1, 4, 5)
    labels = torch.tensor([[IGNORE_INDEX, 3, 1, 4]])
    assert mia.min_k_plus_plus_scores(logits, labels).abs().max() < 1e-4


def test_attack_auc_privleak_and_zlib_conventions():
    assert mia.attack_auc(np.array([0.1, 0.2]), np.array([1.0, 2.0])) == 1.0  # forget far more familiar
    assert mia.attack_auc(np.array([1.0, 2.0]), np.array([0.1, 0.2])) == 0.0
    assert mia.privleak(0.5, 0.5) == pytest.approx(0.0)
    assert mia.privleak(0.8, 0.5) == pytest.approx(-60.0)  # under-unlearned: negative
    assert mia.privleak(0.3, 0.5) == pytest.approx(40.0)  # over-unlearned: positive
    text = "In Aldham."
    np.testing.assert_allclose(
        mia.zlib_scores(np.array([2.0]), [text]), [2.0 / len(zlib.compress(text.encode()))]
    )


@pytest.fixture(scope="module")
def tofu_task(qa):
    """The QA task with TOFU's columns: the paraphrase is the answer itself, the perturbed answers are
    other people's answers to the same kind of question."""

    def with_columns(rows, others):
        same_kind = [r for r in others if r["prompt"].split()[0] == "Where"]
        return [
            {
                **row,
                "paraphrased_completion": row["completion"],
                "perturbed_completions": [o["completion"] for o in same_kind if o != row][:2],
            }
            for row in rows
        ]

    return with_columns(qa.forget, qa.test), with_columns(qa.retain, qa.test)


@pytest.fixture(scope="module")
def memorized(tmp_path_factory, qa):
    model = tiny_causal_lm(qa.tokenizer, hidden_size=64)
    return fit(
        tmp_path_factory.mktemp("tofu"), model, qa, qa.train, "ft", 250, 3e-3, "cosine", allow_overlap=True
    )


NEW_KEYS = {
    "forget/probability",
    "forget/truth_ratio",
    "retain/truth_ratio",
    "forget_quality/truth_ratio_ks_pvalue",
    "forget/extraction_strength",
    "forget/exact_memorization",
    "mia/zlib_auc",
    "mia/min_k_plus_plus_auc",
    "mia/reference_auc",
    "privleak",
    "forget/rouge_l_recall",
    "retain/rouge_l_recall",
    "test/rouge_l_recall",
    "utility/model_utility",
}


@pytest.mark.efficacy
def test_evaluate_unlearning_adds_the_tofu_and_muse_keys(memorized, qa, tofu_task):
    forget, retain = tofu_task
    kwargs = dict(
        forget_dataset=forget,
        retain_dataset=retain,
        test_dataset=qa.test,
        processing_class=qa.tokenizer,
        generation=True,
        max_new_tokens=12,
    )
    untrained = tiny_causal_lm(qa.tokenizer, hidden_size=64, seed=1)
    metrics = evaluate_unlearning(memorized, original_model=untrained, golden_model=memorized, **kwargs)
    assert NEW_KEYS <= set(metrics), NEW_KEYS - set(metrics)
    assert metrics["forget_quality/truth_ratio_ks_pvalue"] == 1.0  # the golden model against itself
    assert metrics["privleak"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["forget/rouge_l_recall"] >= 0.9 and metrics["forget/extraction_strength"] > 0.8
    # the paraphrase is the answer itself: the memorized model prefers it to the perturbed answers
    assert metrics["retain/truth_ratio"] > 0.5
    other = evaluate_unlearning(untrained, golden_model=memorized, **kwargs)
    assert (
        other["forget/rouge_l_recall"] < 0.5 and other["forget/probability"] < metrics["forget/probability"]
    )
    assert other["forget_quality/truth_ratio_ks_pvalue"] < 0.05
    for key in NEW_KEYS - {"mia/reference_auc"}:
        assert math.isfinite(other[key]), key


def test_generation_keys_only_when_asked(memorized, qa):
    metrics = evaluate_unlearning(
        memorized, forget_dataset=qa.forget, retain_dataset=qa.retain, processing_class=qa.tokenizer
    )
    assert not any("rouge" in key or "truth_ratio" in key or "model_utility" in key for key in metrics)
    assert {"forget/probability", "forget/extraction_strength", "forget/exact_memorization"} <= set(metrics)


def test_normalised_probability_of_hand_set_losses():
    # P(a) = 1, two perturbed answers of probability 1/e each
    np.testing.assert_allclose(
        tofu.normalised_probability(np.array([0.0]), np.array([[1.0, 1.0]])),
        [1 / (1 + 2 / math.e)],
        rtol=1e-8,
    )
    # a model that puts the same probability on every option: 1 / (K + 1)
    np.testing.assert_allclose(
        tofu.normalised_probability(np.array([2.0, 0.5]), np.array([[2.0] * 3, [0.5] * 3])), [0.25, 0.25]
    )


@pytest.mark.efficacy
def test_utility_datasets_enter_model_utility_with_normalised_probability(memorized, qa, tofu_task):
    from scipy.stats import hmean

    forget, retain = tofu_task
    # a "world facts"-like split: the test questions with other answers as the perturbed options
    utility = [{k: v for k, v in row.items() if k != "paraphrased_completion"} for row in retain[:6]]
    kwargs = dict(
        forget_dataset=forget,
        retain_dataset=retain,
        processing_class=qa.tokenizer,
        generation=True,
        max_new_tokens=12,
    )
    base = evaluate_unlearning(memorized, **kwargs)
    metrics = evaluate_unlearning(memorized, utility_datasets={"world_facts": utility}, **kwargs)
    parts = [
        metrics[f"{split}/{key}"]
        for split in ("retain", "world_facts")
        for key in ("probability", "rouge_l_recall", "truth_ratio")
    ]
    assert metrics["utility/model_utility"] == pytest.approx(hmean(parts))
    assert 0 < metrics["world_facts/probability"] <= 1
    # the memorized model prefers its answer among 3 options: above the uniform 1/3
    assert metrics["world_facts/probability"] > 0.5
    assert metrics["retain/probability"] == pytest.approx(base["retain/probability"])
    for bad in ({"retain": utility}, {"a/b": utility}):
        with pytest.raises(ValueError, match="cannot name a split"):
            evaluate_unlearning(memorized, utility_datasets=bad, **kwargs)
    no_options = [{k: v for k, v in row.items() if k != "perturbed_completions"} for row in utility]
    with pytest.raises(ValueError, match="perturbed_completions"):
        evaluate_unlearning(memorized, utility_datasets={"world_facts": no_options}, **kwargs)
