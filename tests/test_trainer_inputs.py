"""What ``UnlearningTrainer`` checks and sets up when it is built: the seed of the LoRA adapters, classifier rows
given to a causal LM, and the warnings about the forget and retain sets."""

from __future__ import annotations

import pytest
import torch
from conftest import make_config

from hf_unlearn import UnlearningTrainer
from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier

LOGGER = "hf_unlearn.trainer.inputs"


def _lora_trainer(tmp_path, mislabeled, seed):
    from peft import LoraConfig

    lora = LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, target_modules=["query", "value"])
    return UnlearningTrainer(
        tiny_classifier(mislabeled.tokenizer, seed=0),
        make_config(tmp_path / str(seed), seed=seed),
        forget_dataset=mislabeled.forget,
        retain_dataset=mislabeled.retain,
        processing_class=mislabeled.tokenizer,
        peft_config=lora,
    )


def _adapters(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_A" in n}


def test_the_seed_sets_the_lora_initialization(tmp_path, mislabeled):
    torch.manual_seed(1234)  # whatever the global stream holds before, the adapters follow args.seed
    first = _adapters(_lora_trainer(tmp_path / "a", mislabeled, seed=0))
    torch.rand(7)  # the global stream moved on
    second = _adapters(_lora_trainer(tmp_path / "b", mislabeled, seed=0))
    other = _adapters(_lora_trainer(tmp_path / "c", mislabeled, seed=1))
    assert first and first.keys() == second.keys() == other.keys()
    for name, value in first.items():
        assert torch.equal(second[name], value), name
    assert any(not torch.equal(other[name], value) for name, value in first.items())


@pytest.mark.parametrize(
    "rows",
    [
        [{"text": "w1 w2 good", "label": 1}],
        [{"text": "w1 w2 good", "labels": 1}],
        [{"prompt": "Where?", "completion": " Brisk.", "label": 0}],
    ],
)
def test_classifier_rows_given_to_a_causal_lm_are_refused(tmp_path, qa, rows):
    key = "labels" if "labels" in rows[0] else "label"
    with pytest.raises(ValueError, match=f"forget_dataset has a class-label column '{key}'.*causal LM"):
        UnlearningTrainer(
            tiny_causal_lm(qa.tokenizer),
            make_config(tmp_path),
            forget_dataset=rows,
            retain_dataset=qa.retain,
            processing_class=qa.tokenizer,
        )


def test_pretokenized_lm_rows_with_token_labels_are_still_accepted(tmp_path, qa):
    rows = [{"input_ids": [5, 6, 7, 8], "labels": [-100, -100, 7, 8]}] * 2
    trainer = UnlearningTrainer(
        tiny_causal_lm(qa.tokenizer),
        make_config(tmp_path),
        forget_dataset=rows,
        retain_dataset=qa.retain,
        processing_class=qa.tokenizer,
    )
    assert trainer.forget_rows[0]["labels"] == [-100, -100, 7, 8]


def _build_warnings(tmp_path, task, caplog, forget, retain) -> str:
    caplog.clear()
    with caplog.at_level("WARNING", logger=LOGGER):
        UnlearningTrainer(
            tiny_classifier(task.tokenizer, seed=0),
            make_config(tmp_path),
            forget_dataset=forget,
            retain_dataset=retain,
            processing_class=task.tokenizer,
        )
    return "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER)


def test_a_forget_set_larger_than_the_retain_set_warns(tmp_path, mislabeled, caplog):
    n_forget, n_retain = len(mislabeled.forget), len(mislabeled.retain)
    swapped = _build_warnings(tmp_path, mislabeled, caplog, mislabeled.retain, mislabeled.forget)
    assert f"forget_dataset has {n_retain} examples, more than retain_dataset ({n_forget})" in swapped
    assert "swapped" in swapped
    assert _build_warnings(tmp_path, mislabeled, caplog, mislabeled.forget, mislabeled.retain) == ""


def test_the_same_input_with_another_label_in_both_sets_warns(tmp_path, mislabeled, caplog):
    corrected = [{"text": row["text"], "label": 1 - row["label"]} for row in mislabeled.forget[:2]]
    text = _build_warnings(tmp_path, mislabeled, caplog, mislabeled.forget, mislabeled.retain + corrected)
    assert "2 retain example(s) have the same input as a forget example but a different label" in text
