"""The data layer: formats, truncation, collation, and clear errors for bad input (property-based too)."""

import logging

import datasets
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_unlearn.data import CAUSAL_LM, CLASSIFICATION, DatasetPreparer, PairedDataset, UnlearningCollator
from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier


@pytest.fixture(scope="module")
def tok(mislabeled):
    return mislabeled.tokenizer


def test_prompt_completion_masks_the_prompt_and_appends_eos(qa):
    prep = DatasetPreparer(CAUSAL_LM, qa.tokenizer, max_length=64)
    row = prep([{"prompt": "Where was Kalo born?", "completion": " Brisk."}], "d")[0]
    n_prompt = len(qa.tokenizer("Where was Kalo born?", add_special_tokens=False)["input_ids"])
    assert row["labels"][:n_prompt] == [-100] * n_prompt
    assert row["labels"][n_prompt:] == row["input_ids"][n_prompt:]
    assert row["input_ids"][-1] == qa.tokenizer.eos_token_id


def test_alternative_completion_becomes_a_second_sequence(qa):
    prep = DatasetPreparer(CAUSAL_LM, qa.tokenizer, max_length=64)
    rows = prep([{"prompt": "Q?", "completion": " yes.", "alternative": " I cannot say."}], "d")
    collated = UnlearningCollator(0, CAUSAL_LM)([{"retain": rows[0], "forget": rows[0]}])
    assert set(collated) == {"retain", "forget", "forget_alt"}
    alt = collated["forget_alt"]
    assert alt["input_ids"].shape == collated["forget"]["input_ids"].shape  # one common length
    assert (alt["labels"] != -100).sum() > 0


def test_long_lm_sequences_keep_the_completion_and_warn(qa, caplog):
    prep = DatasetPreparer(CAUSAL_LM, qa.tokenizer, max_length=8)
    with caplog.at_level(logging.WARNING):
        row = prep([{"prompt": "a b c d e f g h i j k l", "completion": " m n"}], "d")[0]
    assert len(row["input_ids"]) == 8 and "truncated" in caplog.text
    assert row["labels"][-1] == qa.tokenizer.eos_token_id and row["labels"][0] == -100


def test_paired_dataset_cycles_the_smaller_set():
    retain, forget = [{"i": i} for i in range(5)], [{"j": j} for j in range(2)]
    pairs = PairedDataset(retain, forget)
    assert len(pairs) == 5 and [pairs[i]["forget"]["j"] for i in range(5)] == [0, 1, 0, 1, 0]
    assert len(PairedDataset(forget, retain)) == 5


def test_wrong_labels_differ_from_the_true_label(tok):
    prep = DatasetPreparer(CLASSIFICATION, tok, max_length=32, num_labels=4, seed=1)
    rows = prep([{"text": "w1 w2", "label": y % 4} for y in range(40)], "d", with_wrong_labels=True)
    assert all(r["wrong_label"] != r["labels"] and 0 <= r["wrong_label"] < 4 for r in rows)


def test_accepts_datasets_lists_and_dicts_of_columns(tok):
    prep = DatasetPreparer(CLASSIFICATION, tok, max_length=32, num_labels=2)
    data = {"text": ["w1 good", "w2 bad"], "label": [1, 0]}
    expected = prep(data, "d")
    assert prep(datasets.Dataset.from_dict(data), "d") == expected
    assert prep([{"text": t, "label": y} for t, y in zip(data["text"], data["label"])], "d") == expected


# -- bad input: each case is a clear ValueError naming the problem ---------------------------------
@pytest.mark.parametrize(
    "task, data, match",
    [
        (CLASSIFICATION, [], "is empty"),
        (CLASSIFICATION, {"text": [], "label": []}, "is empty"),
        (CLASSIFICATION, [{"text": "w1"}], "no label column"),
        (CLASSIFICATION, [{"sentence": "w1", "label": 0}], "needs a 'text' or 'input_ids'"),
        (CLASSIFICATION, [{"text": "w1", "label": 2}], r"outside \[0, 2\)"),
        (CLASSIFICATION, [{"text": "w1", "label": -1}], r"outside \[0, 2\)"),
        (CLASSIFICATION, [{"text": "w1", "label": 0.5}], "must be integers"),
        (CLASSIFICATION, [{"text": 3, "label": 0}], "must hold strings"),
        (CLASSIFICATION, [{"prompt": "q", "completion": "a"}], "no label column"),
        (CAUSAL_LM, [{"question": "q"}], "neither 'text' nor 'prompt'/'completion'"),
        (CAUSAL_LM, [{"prompt": "q"}], "neither 'text' nor 'prompt'/'completion'"),
        (CLASSIFICATION, "w1 w2", "must be a datasets.Dataset"),
        (CLASSIFICATION, ["w1", "w2"], "list of dicts"),
    ],
)
def test_bad_datasets_raise_clear_errors(tok, task, data, match):
    prep = DatasetPreparer(task, tok, max_length=32, num_labels=2 if task == CLASSIFICATION else None)
    with pytest.raises(ValueError, match=match):
        prep(data, "forget_dataset")


def test_datasetdict_and_untokenized_text_without_tokenizer_are_rejected():
    with pytest.raises(ValueError, match="DatasetDict"):
        DatasetPreparer(CLASSIFICATION, None, num_labels=2)(
            datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a"], "label": [0]})}),
            "forget_dataset",
        )
    with pytest.raises(ValueError, match="processing_class"):
        DatasetPreparer(CLASSIFICATION, None, num_labels=2)([{"text": "a", "label": 0}], "forget_dataset")


def test_unsupported_model_class_is_rejected(tok):
    from transformers import BertConfig, BertModel

    from hf_unlearn.data import infer_task

    with pytest.raises(ValueError, match="Unsupported model class BertModel"):
        infer_task(
            BertModel(
                BertConfig(
                    vocab_size=10,
                    hidden_size=8,
                    num_hidden_layers=1,
                    num_attention_heads=1,
                    intermediate_size=8,
                )
            )
        )


def test_lm_tokenizer_without_pad_token_gets_eos_with_a_warning(qa, caplog):
    from hf_unlearn.data import pad_token_id_for

    tok = qa.tokenizer.__class__(tokenizer_object=qa.tokenizer.backend_tokenizer, eos_token="[EOS]")
    assert tok.pad_token_id is None
    with caplog.at_level(logging.WARNING):
        pad = pad_token_id_for(tiny_causal_lm(qa.tokenizer), tok, CAUSAL_LM)
    assert pad == tok.eos_token_id and "no pad token" in caplog.text


# -- property-based: random mixes either work or fail with a documented ValueError ------------------
COLUMNS = st.sampled_from(
    ["text", "label", "labels", "prompt", "completion", "alternative", "input_ids", "junk"]
)
VALUES = {
    "text": st.text(min_size=0, max_size=40),
    "prompt": st.text(min_size=0, max_size=20),
    "completion": st.text(min_size=0, max_size=20),
    "alternative": st.text(min_size=0, max_size=20),
    "label": st.integers(-3, 5),
    "labels": st.integers(-3, 5),
    "input_ids": st.lists(st.integers(0, 50), min_size=0, max_size=30),
    "junk": st.integers(),
}


@st.composite
def datasets_of_random_columns(draw):
    columns = draw(st.sets(COLUMNS, min_size=1, max_size=4))
    n = draw(st.integers(0, 4))
    return [{c: draw(VALUES[c]) for c in sorted(columns)} for _ in range(n)]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=datasets_of_random_columns(),
    task=st.sampled_from([CLASSIFICATION, CAUSAL_LM]),
    max_length=st.integers(2, 16),
)
def test_random_datasets_work_or_fail_with_a_value_error(tok, data, task, max_length):
    prep = DatasetPreparer(
        task,
        tok,
        max_length=max_length,
        num_labels=3 if task == CLASSIFICATION else None,
        vocab_size=len(tok),
    )
    try:
        rows = prep(data, "forget_dataset", with_wrong_labels=task == CLASSIFICATION)
    except ValueError:
        return
    assert rows and all(0 < len(r["input_ids"]) <= max_length for r in rows)
    batch = UnlearningCollator(0, task)(rows)
    assert batch["input_ids"].shape[0] == len(rows)
    model = tiny_classifier(tok, num_labels=3) if task == CLASSIFICATION else tiny_causal_lm(tok)
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert torch.isfinite(logits).all()
