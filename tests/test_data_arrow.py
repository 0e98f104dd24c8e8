"""Arrow-backed preparation: the same numbers as the list-of-dicts path it replaced, read-only rows that behave
like a list, the on-disk cache, and vectorized validation that reports what the row-by-row checks did.

``python tests/test_data_arrow.py`` prints the digests of ``CASES`` (run it against an older checkout with
``PYTHONPATH=<checkout>`` to compare).
"""

import hashlib
import json
import logging
import os
import pickle

import datasets
import numpy as np
import pytest
from test_data_chat import CONVERSATION

from hf_unlearn.data import CAUSAL_LM, CLASSIFICATION, DatasetPreparer, UnlearningCollator
from hf_unlearn.testing.fixtures import fictitious_qa_task, mislabeled_task
from hf_unlearn.tiny import TINY_CHAT_TEMPLATE, train_tokenizer


def _classifier_text(max_length):
    task = mislabeled_task(seed=0)
    prep = DatasetPreparer(CLASSIFICATION, task.tokenizer, max_length=max_length, num_labels=2, seed=3)
    return prep(task.train, "d", with_wrong_labels=True)


def _classifier_ids():
    rng = np.random.default_rng(1)
    data = {
        "input_ids": [rng.integers(0, 50, size=int(n)).tolist() for n in rng.integers(1, 12, size=60)],
        "labels": rng.integers(0, 3, size=60).tolist(),
    }
    prep = DatasetPreparer(CLASSIFICATION, None, max_length=6, num_labels=3, seed=7, vocab_size=50)
    return prep(data, "d", with_wrong_labels=True)


def _qa(max_length, alternatives=True, shuffled=False):
    task = fictitious_qa_task(seed=0)
    rows = [{**r, "alternative": " I cannot say."} for r in task.train] if alternatives else task.train
    data = datasets.Dataset.from_list(rows)
    data = data.shuffle(seed=2).select(range(0, len(data), 2)) if shuffled else data
    return DatasetPreparer(CAUSAL_LM, task.tokenizer, max_length=max_length)(data, "d")


def _lm_text():
    task = fictitious_qa_task(seed=0)
    data = [{"text": r["prompt"] + r["completion"]} for r in task.train]
    return DatasetPreparer(CAUSAL_LM, task.tokenizer, max_length=10)(data, "d")


def _lm_ids():
    rng = np.random.default_rng(2)
    ids = [rng.integers(0, 40, size=int(n)).tolist() for n in rng.integers(2, 20, size=30)]
    labels = [[-100] * (len(x) // 2) + x[len(x) // 2 :] for x in ids]
    prep = DatasetPreparer(CAUSAL_LM, None, max_length=9, vocab_size=40)
    return prep({"input_ids": ids, "labels": labels}, "d")


def _chat():
    corpus = [m["content"] for m in CONVERSATION]
    tok = train_tokenizer(corpus, vocab_size=320, add_bos=True, chat_template=TINY_CHAT_TEMPLATE)
    prep = DatasetPreparer(CAUSAL_LM, tok, max_length=40)
    messages = prep([{"messages": CONVERSATION, "alternative": "No idea."}] * 3, "d")
    data = [{"prompt": CONVERSATION[:4], "completion": [CONVERSATION[4]], "alternative": "No idea."}] * 2
    return [*messages, *prep(data, "d")]


#: Each case and the digest of its rows from the list-of-dicts preparer (git 6b6fcf1), which this one must match.
CASES = {
    "classifier_text": (lambda: _classifier_text(32), "89f708ae021d0280"),
    "classifier_text_truncated": (lambda: _classifier_text(4), "b964f2500e9252d8"),
    "classifier_ids": (_classifier_ids, "713a8efb37f522e5"),
    "qa_alternatives": (lambda: _qa(64), "c794d79ffe8e3cc0"),
    "qa_truncated": (lambda: _qa(8), "8a3cf3774355a53a"),
    "qa_shuffled_view": (lambda: _qa(64, alternatives=False, shuffled=True), "c5af6a8e8297fcc5"),
    "lm_text": (_lm_text, "7d3cf0167542f831"),
    "lm_ids": (_lm_ids, "ff2b70ae1894f0dd"),
    "chat": (_chat, "ab3624d01f8b3dfb"),
}


def digest(rows) -> str:
    """A digest of the rows' contents (every key and value; tensors are not expected here)."""
    text = json.dumps([dict(sorted(row.items())) for row in rows])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.mark.parametrize("case", sorted(CASES))
def test_rows_are_the_numbers_of_the_list_path(case):
    build, expected = CASES[case]
    assert digest(build()) == expected


# -- the rows behave like a read-only list ---------------------------------------------------------
def test_rows_index_slice_iterate_and_compare_like_a_list():
    from hf_unlearn.data import TokenizedRows

    rows = _qa(64)
    as_list = list(rows)
    assert isinstance(rows, TokenizedRows) and isinstance(rows.dataset, datasets.Dataset)
    assert len(rows) == len(as_list) and rows == as_list and rows[-1] == as_list[-1]
    assert rows[np.int64(3)] == as_list[3] and [r["index"] for r in rows] == list(range(len(rows)))
    head = rows[2:5]
    assert isinstance(head, TokenizedRows) and head == as_list[2:5] and rows[::4] == as_list[::4]
    assert rows + rows[:1] == as_list + as_list[:1] and as_list[:1] + rows[:1] == [as_list[0]] * 2
    with pytest.raises(IndexError):
        rows[len(rows)]
    batch = UnlearningCollator(0, CAUSAL_LM)([{"retain": rows[0], "forget": rows[1]}])
    assert set(batch) == {"retain", "forget", "forget_alt"}


def test_rows_are_read_only_and_pickle():
    rows = _classifier_text(32)
    row = rows[0]
    row["input_ids"].append(7)
    row["labels"] = 99
    assert rows[0] != row and rows[0]["labels"] in (0, 1)
    again = pickle.loads(pickle.dumps(rows))
    assert again == rows and len(pickle.dumps(rows)) < 4 * rows.dataset.data.nbytes + 10_000


def test_an_on_disk_dataset_is_prepared_once_into_a_memory_mapped_cache(tmp_path, caplog):
    task = fictitious_qa_task(seed=0)
    datasets.Dataset.from_list(task.train).save_to_disk(tmp_path / "raw")
    raw = datasets.load_from_disk(str(tmp_path / "raw"))
    prep = DatasetPreparer(CAUSAL_LM, task.tokenizer, max_length=8)
    first = prep(raw, "forget_dataset")
    cache = [f["filename"] for f in first.dataset.cache_files]
    assert cache and all(str(tmp_path) in f for f in cache)
    with caplog.at_level(logging.WARNING):
        second = prep(datasets.load_from_disk(str(tmp_path / "raw")), "forget_dataset")
    assert [f["filename"] for f in second.dataset.cache_files] == cache  # read back, not recomputed
    assert second == first and "truncated" in caplog.text  # the warning holds for cached results too


def test_a_read_only_on_disk_dataset_is_prepared_in_memory(tmp_path, monkeypatch):
    from hf_unlearn.data import tokenized

    task = fictitious_qa_task(seed=0)
    datasets.Dataset.from_list(task.train).save_to_disk(tmp_path / "raw")
    before = sorted(os.listdir(tmp_path / "raw"))
    monkeypatch.setattr(tokenized.os, "access", lambda path, mode: False)  # as if the folder were read-only
    rows = DatasetPreparer(CAUSAL_LM, task.tokenizer)(
        datasets.load_from_disk(str(tmp_path / "raw")), "forget"
    )
    assert sorted(os.listdir(tmp_path / "raw")) == before  # nothing written next to it
    assert not rows.dataset.cache_files
    assert rows == DatasetPreparer(CAUSAL_LM, task.tokenizer)(task.train, "forget")


@pytest.mark.slow
def test_100k_rows_are_prepared_into_arrow_not_python_lists():
    words = [f"w{i}" for i in range(500)]
    tok = train_tokenizer(words, vocab_size=600, model="word")
    choice = np.random.default_rng(0).integers(0, len(words), size=(100_000, 8))
    texts = [" ".join(row) for row in np.array(words)[choice].tolist()]
    rows = DatasetPreparer(CAUSAL_LM, tok, max_length=32)({"text": texts}, "retain_dataset")
    table = rows.dataset.data
    assert len(rows) == 100_000 and table.schema.field("input_ids").type.value_type == "int32"
    assert table.nbytes < 100_000 * 9 * 2 * 4 * 1.5  # two int32 columns of 9 tokens, plus offsets
    assert rows[99_999]["index"] == 99_999 and rows[5]["input_ids"] == tok(texts[5])["input_ids"] + [
        tok.eos_token_id
    ]


# -- vectorized checks name the first bad row, as the row-by-row checks did -------------------------
@pytest.mark.parametrize(
    "data, match",
    [
        ({"text": ["a", "b", "c"], "label": [0, 5, -1]}, r"label 5 is outside \[0, 2\)"),
        ({"text": ["a", "b", "c"], "label": [0, None, 7]}, "must be integers, got None"),
        ({"text": ["a", "b", "c"], "label": [0, 7, None]}, "label 7 is outside"),
        ({"text": ["a"], "label": [True]}, "must be integers, got True"),
        ({"input_ids": [[1, 2], [3, None], [99]], "label": [0, 0, 0]}, "must hold lists of token ids"),
        ({"input_ids": [[1, 99], [None]], "label": [0, 0]}, "token id 99 in 'input_ids' is outside"),
        ({"input_ids": [[1], None], "label": [0, 0]}, "must hold lists of token ids"),
        ({"input_ids": [[1], [-100]], "label": [0, 0]}, "token id -100"),
        ({"input_ids": [[1], []], "label": [0, 1]}, "example 1 has no tokens"),
        ({"text": ["a", None], "label": [0, 1]}, "must hold strings"),
    ],
)
def test_classifier_columns_are_checked_whole(mislabeled, data, match):
    prep = DatasetPreparer(CLASSIFICATION, mislabeled.tokenizer, max_length=8, num_labels=2, vocab_size=50)
    with pytest.raises(ValueError, match=match):
        prep(data, "forget_dataset")


@pytest.mark.parametrize(
    "data, match",
    [
        ({"input_ids": [[1, 2], [3]], "labels": [[-100, 2], [3, 4]]}, "must have the length of 'input_ids'"),
        ({"input_ids": [[1, 2]], "labels": [[-100, 60]]}, "token id 60 in 'labels'"),
        ({"input_ids": [[1, 2]], "labels": [[-5, 2]]}, "token id -5 in 'labels'"),
        ({"prompt": ["q", "r"], "completion": ["a", None]}, "column 'completion' must hold strings"),
    ],
)
def test_causal_lm_columns_are_checked_whole(qa, data, match):
    with pytest.raises(ValueError, match=match):
        DatasetPreparer(CAUSAL_LM, qa.tokenizer, max_length=8, vocab_size=50)(data, "forget_dataset")


if __name__ == "__main__":
    for case, (build, _) in CASES.items():
        print(case, digest(build()))
