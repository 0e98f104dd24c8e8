"""hf_unlearn.metrics.generation: ROUGE-L, exact memorization and extraction strength on hand-made cases,
and batched greedy generation (left padding) against a per-example loop."""

import copy

import numpy as np
import pytest
import torch
from conftest import fit

from hf_unlearn.data import IGNORE_INDEX, build_preparer
from hf_unlearn.metrics.generation import (
    completion_start,
    generate_completions,
    memorization_scores,
    references_of,
    rouge_l,
)
from hf_unlearn.tiny import tiny_causal_lm


def test_rouge_l_recall_and_f1_of_known_strings():
    scores = rouge_l(
        ["the cat sat", "cats running", "nothing alike"],
        ["the cat sat on the mat", "cat run", "the cat sat"],
    )
    # LCS 3 of a 6-word reference: recall 1/2, precision 1, F1 2/3
    np.testing.assert_allclose(scores["recall"], [0.5, 1.0, 0.0])
    np.testing.assert_allclose(scores["f1"], [2 / 3, 1.0, 0.0])  # the stemmer maps cats->cat, running->run


def _logits_predicting(preds: list[list[int]], vocab: int = 10) -> torch.Tensor:
    """Logits whose argmax at position t is ``preds[b][t]``."""
    logits = torch.zeros(len(preds), len(preds[0]), vocab)
    for b, row in enumerate(preds):
        for t, token in enumerate(row):
            logits[b, t, token] = 5.0
    return logits


def test_exact_memorization_and_extraction_strength_boundary_cases():
    eos = 9
    # two prompt tokens, a completion of three tokens (5, 6, 7) and EOS; logits[t] predicts labels[t + 1]
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 5, 6, 7, eos]] * 4)
    x = 0  # a wrong prediction; the EOS prediction (last column but one) is always wrong: it is not scored
    preds = [
        [0, 5, 6, 7, x, 0],  # all correct
        [0, x, 6, 7, x, 0],  # first wrong, the rest reproduced: k = 1
        [0, x, x, x, x, 0],  # all wrong: k = T - 1 as in OpenUnlearning's loop
        [0, 5, 6, x, x, 0],  # last wrong: no suffix reproduced, k = T - 1
    ]
    scores = memorization_scores(_logits_predicting(preds), labels)
    torch.testing.assert_close(scores["exact_memorization"], torch.tensor([1.0, 2 / 3, 0.0, 2 / 3]))
    torch.testing.assert_close(scores["extraction_strength"], torch.tensor([1.0, 2 / 3, 1 / 3, 1 / 3]))


def test_scores_of_an_example_without_scored_tokens_are_nan():
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 9]])  # the completion is the EOS alone
    scores = memorization_scores(_logits_predicting([[0, 0, 0]]), labels)
    assert (
        torch.isnan(scores["exact_memorization"]).all() and torch.isnan(scores["extraction_strength"]).all()
    )


def test_completion_start_is_the_last_labeled_span():
    assert completion_start([IGNORE_INDEX, IGNORE_INDEX, 4, 5]) == 2
    assert completion_start([IGNORE_INDEX, 3, IGNORE_INDEX, IGNORE_INDEX, 4, 5]) == 4
    with pytest.raises(ValueError, match="no completion"):
        completion_start([IGNORE_INDEX])


@pytest.fixture(scope="module")
def memorized_lm(tmp_path_factory, qa):
    """A tiny GPT-2 that memorized every answer of the QA task (trained on forget + retain)."""
    model = tiny_causal_lm(qa.tokenizer, hidden_size=64)
    tmp = tmp_path_factory.mktemp("memorized_lm")
    return fit(tmp, model, qa, qa.train, "ft", 250, 3e-3, "cosine", allow_overlap=True)


@pytest.mark.efficacy
def test_batched_generation_equals_the_per_example_loop_and_reproduces_memorized_answers(memorized_lm, qa):
    rows = build_preparer(memorized_lm, qa.tokenizer)[0](qa.forget + qa.retain[:6], "rows")
    batched = generate_completions(memorized_lm, rows, qa.tokenizer, max_new_tokens=12, batch_size=8)
    one_by_one = [
        generate_completions(memorized_lm, [row], qa.tokenizer, max_new_tokens=12, batch_size=1)[0]
        for row in rows
    ]
    assert batched == one_by_one  # left padding changes nothing
    references = references_of(rows, qa.tokenizer)
    assert references[0] == qa.forget[0]["completion"].strip()
    recall = rouge_l(batched, references)["recall"]
    assert recall.mean() >= 0.9, list(zip(batched, references))
    untrained = tiny_causal_lm(qa.tokenizer, hidden_size=64, seed=1)
    assert rouge_l(generate_completions(untrained, rows, qa.tokenizer, 12), references)["recall"].mean() < 0.5


def test_generation_leaves_the_model_unchanged_and_in_its_mode(memorized_lm, qa):
    model = copy.deepcopy(memorized_lm).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = build_preparer(model, qa.tokenizer)[0](qa.forget[:2], "rows")
    generate_completions(model, rows, qa.tokenizer, max_new_tokens=4)
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
