"""Unlearning requests that keep coming: ``unlearn_sequentially``, the scenarios' per-prefix golden models and
``hf-unlearn run`` with several forget sets."""

import copy

import pytest
import torch
from conftest import make_config, state_copy

from hf_unlearn import UnlearningTrainer
from hf_unlearn.pipeline.sequential import check_requests, request_seed, unlearn_sequentially
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
