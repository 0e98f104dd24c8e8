"""hf_unlearn.sources on fixture folders written in the exact public layouts of locuslab/TOFU (root JSON-lines
files, or the parquet export) and muse-bench/MUSE-News (parquet shards per config), a few fictitious rows each."""

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_config

from hf_unlearn.metrics.tofu import PARAPHRASED, PERTURBED
from hf_unlearn.sources import BenchmarkData, load_source, source_options
from hf_unlearn.tiny import TINY_CHAT_TEMPLATE, tiny_decoder, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]
CITIES = ["Aldham", "Brisk", "Corvale", "Dunmere", "Eskton", "Fallow"]


def _person(i):
    return f"Kalo Miren{i}"


def _qa(i):
    return {"question": f"Where was {_person(i)} born?", "answer": f"In {CITIES[i % len(CITIES)]}."}


def _perturbed(i, k=5):
    wrong = [f"In {CITIES[(i + j) % len(CITIES)]}." for j in range(1, k + 1)]
    return {
        **_qa(i),
        "paraphrased_question": f"What is the birthplace of {_person(i)}?",
        "paraphrased_answer": f"{_person(i)} was born in {CITIES[i % len(CITIES)]}.",
        "perturbed_answer": wrong,
    }


def _tofu_tables(n_forget=4, n_retain=6):
    """TOFU's splits by config name; forget = people 0..n_forget-1 (as forget10), retain = the rest."""
    forget = list(range(n_forget))
    retain = list(range(n_forget, n_forget + n_retain))
    holdout = list(range(100, 103))
    return {
        "forget10": [_qa(i) for i in forget],
        "forget10_perturbed": [
            _perturbed(i) for i in reversed(forget)
        ],  # another order: the join is by question
        "retain90": [_qa(i) for i in retain],
        "retain_perturbed": [_perturbed(i) for i in retain[:3]],  # a subset, as the real 400 of 3,600
        "holdout10": [_qa(i) for i in holdout],
        "real_authors_perturbed": [
            {
                "question": "Who wrote 'Pride and Prejudice'?",
                "answer": "Jane Austen",
                "perturbed_answer": ["A", "B", "C"],
            }
        ],
        "world_facts_perturbed": [
            {
                "question": "Where is the Eiffel Tower?",
                "answer": "Paris",
                "perturbed_answer": ["Rome", "Oslo", "Lima"],
            }
        ],
        "full": [_qa(i) for i in forget + retain],
    }


def _write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _write_parquet(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture
def tofu_dir(tmp_path):
    """The root of an `hf download locuslab/TOFU --repo-type dataset` folder: `<config>.json`, JSON lines."""
    root = tmp_path / "TOFU"
    for name, rows in _tofu_tables().items():
        _write_jsonl(root / f"{name}.json", rows)
    (root / "README.md").write_text(
        "---\nconfigs:\n- config_name: forget10\n  data_files: forget10.json\n---\n"
    )
    return root


MUSE_TABLES = {
    "raw/forget": [{"text": f"Forget article {i}. " + "The council met again. " * 5} for i in range(3)],
    "raw/retain1": [{"text": f"Retain article {i}. The match ended in a draw."} for i in range(4)],
    "raw/retain2": [{"text": f"Other retain article {i}."} for i in range(5)],
    "raw/holdout": [{"text": "Holdout article."}],
    "verbmem/forget": [{"prompt": f"The council met {i}", "gt": "times this year."} for i in range(2)],
    "knowmem/forget_qa": [
        {"question": "Who met?", "answer": "The council"},
        {"question": "When?", "answer": "Today"},
    ],
    "knowmem/forget_qa_icl": [{"question": "Who won?", "answer": "Nobody"}],
    "knowmem/retain_qa": [{"question": "How did the match end?", "answer": "In a draw"}],
    "knowmem/retain_qa_icl": [{"question": "Who played?", "answer": "Two teams"}],
    "privleak/forget": [{"text": f"Forget excerpt {i}."} for i in range(2)],
    "privleak/retain": [{"text": "Retain excerpt."}],
    "privleak/holdout": [{"text": f"Holdout excerpt {i}."} for i in range(3)],
    "scal/forget_2": [{"text": "Scalability corpus."}],
}


@pytest.fixture
def muse_dir(tmp_path):
    """An `hf download muse-bench/MUSE-News --repo-type dataset` folder: `<config>/<split>-00000-of-00001.parquet`, plus
    the older files the repository still holds (JSON, `retain2_qa`), which must not be read."""
    root = tmp_path / "MUSE-News"
    for name, rows in MUSE_TABLES.items():
        _write_parquet(root / f"{name}-00000-of-00001.parquet", rows)
    (root / "privleak" / "forget.json").write_text("not what the loader reads")
    _write_parquet(
        root / "knowmem/retain2_qa-00000-of-00001.parquet", [{"question": "Old?", "answer": "Old"}]
    )
    return root


# -- TOFU ---------------------------------------------------------------------------------------------------


def test_tofu_chat_rows_counts_and_the_join_of_the_perturbed_columns(tofu_dir):
    data = load_source("tofu", str(tofu_dir), "forget10", system_prompt="You are a helpful assistant.")
    assert isinstance(data, BenchmarkData)
    assert data.counts() == {
        "forget": 4,
        "retain": 6,
        "test": 3,
        "retain_eval": 3,
        "real_authors": 1,
        "world_facts": 1,
    }
    assert set(data.forget.column_names) == {"prompt", "completion", PARAPHRASED, PERTURBED}
    assert set(data.retain.column_names) == {"prompt", "completion"}  # the training split: no paraphrases
    assert set(data.extra["retain_eval"].column_names) == {"prompt", "completion", PARAPHRASED, PERTURBED}
    for i, row in enumerate(data.forget):  # forget10's order, with person i's columns from the reversed file
        assert row["prompt"] == [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": _qa(i)["question"]},
        ]
        assert row["completion"] == [{"role": "assistant", "content": _qa(i)["answer"]}]
        assert row[PARAPHRASED] == _perturbed(i)["paraphrased_answer"]
        assert row[PERTURBED] == _perturbed(i)["perturbed_answer"]
    # real authors / world facts: the truth ratio compares the perturbed answers with the answer itself
    assert data.extra["real_authors"][0][PARAPHRASED] == "Jane Austen"
    assert data.extra["world_facts"][0][PERTURBED] == ["Rome", "Oslo", "Lima"]
    assert data.test[0]["prompt"][-1]["content"] == _qa(100)["question"]
    assert data.info["files"]["forget_perturbed"] == ["forget10_perturbed.json"]
    assert data.info["files"]["retain"] == ["retain90.json"] and data.info["missing"] == {}


def test_tofu_plain_form_follows_openunlearnings_non_chat_template(tofu_dir):
    data = load_source("tofu", str(tofu_dir), chat=False)  # default subset forget10
    row = data.forget[1]
    assert row["prompt"] == f"Question: {_qa(1)['question']}\nAnswer:"
    assert row["completion"] == f" {_qa(1)['answer']}"
    # prompt + completion is OpenUnlearning's "Question: {q}\nAnswer: {a}"
    assert row["prompt"] + row["completion"] == f"Question: {_qa(1)['question']}\nAnswer: {_qa(1)['answer']}"
    assert row[PARAPHRASED] == " " + _perturbed(1)["paraphrased_answer"]
    assert row[PERTURBED][0] == " " + _perturbed(1)["perturbed_answer"][0]
    assert data.info["options"]["chat"] is False


def test_tofu_smaller_subsets_pair_with_their_retain_and_holdout_splits(tofu_dir):
    tables = _tofu_tables(n_forget=2, n_retain=8)
    for name, rows in (
        ("forget05", tables["forget10"]),
        ("forget05_perturbed", tables["forget10_perturbed"]),
    ):
        _write_jsonl(tofu_dir / f"{name}.json", rows)
    _write_jsonl(tofu_dir / "retain95.json", tables["retain90"])
    (tofu_dir / "holdout10.json").rename(tofu_dir / "holdout05.jsonl")  # the holdout files were .jsonl once
    data = load_source("tofu", str(tofu_dir), "forget05")
    assert (len(data.forget), len(data.retain), len(data.test)) == (2, 8, 3)
    assert data.info["files"]["test"] == ["holdout05.jsonl"]


def test_tofu_parquet_export_layout_reads_the_same_rows(tmp_path, tofu_dir):
    root = tmp_path / "TOFU-parquet"  # refs/convert/parquet: <config>/train/0000.parquet
    for name, rows in _tofu_tables().items():
        _write_parquet(root / name / "train" / "0000.parquet", rows)
    from_parquet = load_source("tofu", str(root))
    from_json = load_source("tofu", str(tofu_dir))
    assert from_parquet.forget.to_list() == from_json.forget.to_list()
    assert from_parquet.extra["retain_eval"].to_list() == from_json.extra["retain_eval"].to_list()
    assert from_parquet.info["files"]["forget"] == [os.path.join("forget10", "train", "0000.parquet")]


def test_tofu_json_list_files_read_like_json_lines(tofu_dir):
    lines = load_source("tofu", str(tofu_dir)).forget.to_list()
    (tofu_dir / "forget10.json").write_text(json.dumps(_tofu_tables()["forget10"], indent=2))
    assert load_source("tofu", str(tofu_dir)).forget.to_list() == lines


def test_tofu_optional_splits_may_be_absent(tofu_dir):
    for name in ("holdout10", "real_authors_perturbed", "world_facts_perturbed"):
        (tofu_dir / f"{name}.json").unlink()
    data = load_source("tofu", str(tofu_dir))
    assert data.test is None and set(data.extra) == {"retain_eval"}
    assert sorted(data.info["missing"]) == ["holdout10", "real_authors_perturbed", "world_facts_perturbed"]


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda d: (d / "retain_perturbed.json").unlink(),
            r"split 'retain_perturbed' not found in .*retain_perturbed\.json",
        ),
        (lambda d: (d / "forget10.json").unlink(), r"split 'forget10' not found"),
        (
            lambda d: _write_jsonl(d / "forget10_perturbed.json", [{"question": "q", "answer": "a"}]),
            r"forget10_perturbed\.json' \(split 'forget10_perturbed'\) lacks the key\(s\) \['paraphrased_answer', 'perturbed_answer'\]",
        ),
        (
            lambda d: _write_jsonl(d / "forget10_perturbed.json", [_perturbed(i) for i in range(1, 4)]),
            r"1 question\(s\) have no row in the _perturbed file \(first: 'Where was Kalo Miren0 born\?'\)",
        ),
        (
            lambda d: _write_jsonl(
                d / "retain_perturbed.json", [{**_perturbed(7), "perturbed_answer": "In Aldham."}]
            ),
            r"retain_perturbed: row 0 needs 'perturbed_answer' as a non-empty list of strings",
        ),
        (
            lambda d: (d / "retain90.json").write_text('{"question": "q"\n'),
            r"retain90\.json' is not JSON lines",
        ),
    ],
)
def test_tofu_errors_say_what_was_expected_and_where(tofu_dir, edit, message):
    edit(tofu_dir)
    with pytest.raises(ValueError, match=message):
        load_source("tofu", str(tofu_dir))


def test_unknown_source_subset_option_or_folder_are_clear_errors(tofu_dir, tmp_path):
    with pytest.raises(
        ValueError,
        match=r"Unknown data source 'tofuu': choose one of \['cifar10', 'cifar100', 'muse', 'tofu'\]",
    ):
        load_source("tofuu", str(tofu_dir))
    with pytest.raises(
        ValueError, match=r"unknown subset 'forget20'; choose one of \['forget01', 'forget05', 'forget10'\]"
    ):
        load_source("tofu", str(tofu_dir), "forget20")
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['retain_split'\]; tofu accepts"):
        load_source("tofu", str(tofu_dir), retain_split="retain2")
    with pytest.raises(
        ValueError,
        match=r"does not exist\. Download a copy first: hf download locuslab/TOFU --repo-type dataset --local-dir",
    ):
        load_source("tofu", str(tmp_path / "nowhere"))
    assert "retain_split" in source_options("muse") and "chat" in source_options("tofu")


# -- MUSE ---------------------------------------------------------------------------------------------------


def test_muse_reads_the_parquet_layout_and_skips_the_old_files(muse_dir):
    data = load_source("muse", str(muse_dir))
    assert data.counts() == {
        "forget": 3,
        "retain": 4,
        "test": 3,
        "privleak_forget": 2,
        "verbmem_forget": 2,
        "knowmem_forget": 2,
        "knowmem_retain": 1,
    }
    assert data.forget.column_names == ["text"] and data.forget[0]["text"].startswith("Forget article 0.")
    assert data.test["text"] == [
        f"Holdout excerpt {i}." for i in range(3)
    ]  # privleak holdout, not raw holdout
    verbmem = data.extra["verbmem_forget"][1]
    assert verbmem == {"prompt": "The council met 1", "completion": " times this year."}  # insert_space
    knowmem = data.extra["knowmem_retain"][
        0
    ]  # retain_qa, not the older retain2_qa; after its ICL pair (plain)
    assert (
        knowmem["prompt"]
        == "Question: Who played?\nAnswer: Two teams\n\nQuestion: How did the match end?\nAnswer:"
    )
    assert knowmem["completion"] == " In a draw"
    assert data.info["files"]["test"] == [os.path.join("privleak", "holdout-00000-of-00001.parquet")]
    assert data.info["files"]["knowmem_retain"] == [
        os.path.join("knowmem", "retain_qa-00000-of-00001.parquet")
    ]


def test_muse_options_retain_split_subset_chat_and_no_icl(muse_dir):
    data = load_source(
        "muse", str(muse_dir), "scal_forget_2", retain_split="retain2", chat=True, knowmem_icl=False
    )
    assert data.forget["text"] == ["Scalability corpus."] and len(data.retain) == 5
    assert data.extra["knowmem_forget"][0]["prompt"] == [{"role": "user", "content": "Who met?"}]
    assert data.extra["knowmem_forget"][0]["completion"] == [{"role": "assistant", "content": "The council"}]
    with_icl = load_source("muse", str(muse_dir), chat=True)
    assert [m["role"] for m in with_icl.extra["knowmem_forget"][0]["prompt"]] == ["user", "assistant", "user"]
    with pytest.raises(ValueError, match=r"retain_split must be one of \['retain1', 'retain2'\]"):
        load_source("muse", str(muse_dir), retain_split="retain3")
    with pytest.raises(ValueError, match=r"unknown subset 'forget_9'"):
        load_source("muse", str(muse_dir), "forget_9")


def test_muse_chunks_the_corpora_by_tokens_like_openunlearning(muse_dir):
    tok = train_tokenizer([r["text"] for r in MUSE_TABLES["raw/forget"]], vocab_size=300)
    whole = "\n\n".join(r["text"] for r in MUSE_TABLES["raw/forget"])
    n_tokens = len(tok(whole, add_special_tokens=False)["input_ids"])
    data = load_source("muse", str(muse_dir), tokenizer=tok, max_length=17)  # 16 text tokens + the EOS
    assert len(data.forget) == -(-n_tokens // 16) > len(MUSE_TABLES["raw/forget"])
    assert all(len(tok(t, add_special_tokens=False)["input_ids"]) <= 16 for t in data.forget["text"])
    assert "".join(data.forget["text"]).replace(" ", "") == whole.replace(" ", "")  # nothing lost
    assert (data.info["options"]["chunk_tokens"], data.info["options"]["max_length"]) == (16, 17)


def test_muse_missing_corpus_icl_or_keys_are_clear_errors(muse_dir):
    (muse_dir / "knowmem/forget_qa_icl-00000-of-00001.parquet").unlink()
    with pytest.raises(ValueError, match=r"split 'knowmem/forget_qa_icl' not found"):
        load_source("muse", str(muse_dir))
    assert "knowmem_forget" in load_source("muse", str(muse_dir), knowmem_icl=False).extra
    _write_parquet(muse_dir / "verbmem/forget-00000-of-00001.parquet", [{"prompt": "p", "text": "t"}])
    with pytest.raises(ValueError, match=r"lacks the key\(s\) \['gt'\]: expected \['prompt', 'gt'\]"):
        load_source("muse", str(muse_dir), knowmem_icl=False)
    (muse_dir / "raw/retain1-00000-of-00001.parquet").unlink()
    with pytest.raises(ValueError, match=r"split 'raw/retain1' not found .*raw/retain1-\*\.parquet"):
        load_source("muse", str(muse_dir), knowmem_icl=False)


def test_muse_evaluation_splits_are_optional(muse_dir):
    for config in ("verbmem", "knowmem", "privleak"):
        for f in (muse_dir / config).iterdir():
            f.unlink()
    data = load_source("muse", str(muse_dir))
    assert data.test is None and data.extra == {}
    assert {"privleak/holdout", "verbmem/forget", "knowmem/forget_qa"} <= set(data.info["missing"])


# -- end to end: trainer, metrics, CLI ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_model():
    corpus = [
        f"{q['question']} {p['paraphrased_answer']} {' '.join(p['perturbed_answer'])}"
        for q, p in ((_qa(i), _perturbed(i)) for i in range(12))
    ] + ["Question: Answer: Who wrote Jane Austen Paris"]
    tok = train_tokenizer(corpus, vocab_size=400, chat_template=TINY_CHAT_TEMPLATE)
    return tok, tiny_decoder(tok, "llama", hidden_size=32, seed=0)


def test_tofu_output_feeds_evaluate_unlearning_truth_ratio_and_forget_quality(tofu_dir, chat_model):
    from hf_unlearn.metrics import evaluate_unlearning

    tok, model = chat_model
    data = load_source("tofu", str(tofu_dir))
    golden = tiny_decoder(tok, "llama", hidden_size=32, seed=1)
    metrics = evaluate_unlearning(
        model,
        forget_dataset=data.forget,
        retain_dataset=data.extra["retain_eval"],
        test_dataset=data.test,
        golden_model=golden,
        processing_class=tok,
    )
    assert 0 < metrics["forget/truth_ratio"] <= 1
    assert 0 <= metrics["forget_quality/truth_ratio_ks_pvalue"] <= 1
    assert "retain/truth_ratio" in metrics and "mia/auc" in metrics
    itself = evaluate_unlearning(
        model,
        forget_dataset=data.forget,
        retain_dataset=data.retain,
        golden_model=model,
        processing_class=tok,
    )
    assert itself["forget_quality/truth_ratio_ks_pvalue"] == 1.0  # the same truth ratios on both sides
    assert "retain/truth_ratio" not in itself  # the training retain split has no paraphrases


def test_tofu_and_muse_outputs_train_with_unlearning_trainer(tmp_path, tofu_dir, muse_dir, chat_model):
    from hf_unlearn import UnlearningTrainer

    tok, _ = chat_model
    for name, path in (("tofu", tofu_dir), ("muse", muse_dir)):
        data = load_source(name, str(path), tokenizer=tok)
        model = tiny_decoder(tok, "llama", hidden_size=32, seed=0)
        args = make_config(tmp_path / name, method="grad_diff", max_steps=2, per_device_train_batch_size=2)
        trainer = UnlearningTrainer(
            model, args, forget_dataset=data.forget, retain_dataset=data.retain, processing_class=tok
        )
        assert trainer.train().global_step == 2, name


def test_recipes_parse_and_load_job_takes_the_data_from_the_source(tmp_path, tofu_dir, chat_model):
    from hf_unlearn.cli import parse_recipe
    from hf_unlearn.pipeline import RunArguments, load_job

    run_args, config = parse_recipe([str(ROOT / "recipes/tofu-local-ieu.yaml")])
    assert (run_args.data_source, run_args.data_subset, config.method) == ("tofu", "forget10", "ieu")
    assert run_args.model_name_or_path and run_args.golden_model_path and run_args.forget_dataset is None
    run_args, config = parse_recipe([str(ROOT / "recipes/muse-local-npo.yaml"), "--data_dir", "elsewhere"])
    assert (run_args.data_source, run_args.data_dir, config.method) == ("muse", "elsewhere", "npo")
    run_args, config = parse_recipe([str(ROOT / "recipes/cifar10-local-salun.yaml"), "--forget_class", "3"])
    assert (run_args.data_source, run_args.data_subset, run_args.forget_class) == ("cifar10", "random10", 3)
    assert (config.method, config.salun_mask_ratio) == ("salun", 0.5)

    tok, model = chat_model
    model.save_pretrained(tmp_path / "model")
    tok.save_pretrained(tmp_path / "model")
    job = load_job(
        RunArguments(model_name_or_path=str(tmp_path / "model"), data_source="tofu", data_dir=str(tofu_dir))
    )
    assert (len(job.forget), len(job.retain), len(job.test)) == (4, 6, 3)
    assert job.forget[0]["prompt"][-1]["role"] == "user"  # the tokenizer has a chat template: chat rows
    assert PERTURBED in job.forget.column_names and job.task == "causal_lm"
    # the metrics take TOFU's retain_perturbed (with the truth-ratio columns), training the full retain split
    assert len(job.retain_eval) == 3 and PERTURBED in job.retain_eval.column_names
    assert PERTURBED not in job.retain.column_names
    from hf_unlearn.pipeline import evaluate_models

    metrics, _ = evaluate_models(
        job, {"model": job.model}, RunArguments(relearn=False, generation=True, max_new_tokens=4)
    )
    assert {"retain/truth_ratio", "utility/model_utility", "forget/truth_ratio"} <= set(metrics["model"])
    # real authors and world facts enter model utility
    assert set(job.utility) == {"real_authors", "world_facts"}
    assert {"real_authors/probability", "world_facts/truth_ratio", "world_facts/rouge_l_recall"} <= set(
        metrics["model"]
    )
    both = RunArguments(
        model_name_or_path=str(tmp_path / "model"),
        data_source="tofu",
        data_dir=str(tofu_dir),
        forget_dataset="f.json",
    )
    with pytest.raises(
        ValueError,
        match=r"data_source='tofu' supplies the forget, retain and test sets: remove forget_dataset",
    ):
        load_job(both)
    with pytest.raises(ValueError, match=r"data_source needs data_dir"):
        load_job(RunArguments(model_name_or_path=str(tmp_path / "model"), data_source="muse"))
    with pytest.raises(ValueError, match=r"data_dir / data_subset need data_source"):
        load_job(
            RunArguments(
                model_name_or_path=str(tmp_path / "model"), data_subset="forget10", forget_dataset="f"
            )
        )


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_layouts_split_by_protocol_with_the_test_split_kept(tmp_path, name):
    import datasets
    import numpy as np
    from PIL import Image

    from hf_unlearn.sources import load_source

    config, label = ("plain_text", "label") if name == "cifar10" else ("cifar100", "fine_label")
    rng = np.random.default_rng(0)
    columns = {"img": datasets.Image(), label: datasets.ClassLabel(num_classes=10)}
    if name == "cifar100":
        columns["coarse_label"] = datasets.ClassLabel(num_classes=2)
    (tmp_path / config).mkdir()
    for split, n in (("train", 40), ("test", 10)):
        rows = {
            "img": [Image.fromarray((rng.random((32, 32, 3)) * 255).astype(np.uint8)) for _ in range(n)],
            label: [i % 10 for i in range(n)],
        }
        if name == "cifar100":
            rows["coarse_label"] = [i % 2 for i in range(n)]
        datasets.Dataset.from_dict(rows, features=datasets.Features(columns)).to_parquet(
            str(tmp_path / config / f"{split}-00000-of-00001.parquet")
        )
    data = load_source(name, str(tmp_path), "random10")
    assert data.counts() == {"forget": 4, "retain": 36, "test": 10}
    assert data.forget.column_names == ["img", "label"] and isinstance(data.forget[0]["img"], Image.Image)
    again = load_source(name, str(tmp_path), "random10")
    assert again.forget["label"] == data.forget["label"] and data.info["files"]["train"]
    by_class = load_source(name, str(tmp_path), "class", forget_class=7)
    assert set(by_class.forget["label"]) == {7} and 7 not in set(by_class.retain["label"])
    assert len(load_source(name, str(tmp_path), "random50").forget) == 20
    with pytest.raises(ValueError, match=rf"{name}: unknown subset 'random30'; choose one of \['class'"):
        load_source(name, str(tmp_path), "random30")
    with pytest.raises(ValueError, match="does not occur"):
        load_source(name, str(tmp_path), "class", forget_class=42)
