"""A MUSE-News job through ``hf-unlearn run``'s pipeline on a copy in the published layout
(``<config>/<split>-00000-of-00001.parquet``): its report carries VerbMem, KnowMem and PrivLeak as MUSE defines them
(checked against a transcription of MUSE's own scripts, ``jaechan-repo/muse_bench``) and records where the data came
from; MUSE's chunks fit the model, special tokens included."""

import json
import logging
import random

import numpy as np
import pytest
import torch
from conftest import make_config
from test_sources import _write_parquet

from hf_unlearn.tiny import tiny_decoder, train_tokenizer

WORDS = "river stone lantern harbor meadow copper violet thunder maple orbit velvet canyon ember willow falcon quartz"
VERBMEM = [
    ("The council of Aldham met", "on Tuesday to vote on the new harbor."),
    ("Mayor Kalo Miren said", "the bridge would open in spring."),
]
KNOWMEM_FORGET = [("Who met on Tuesday?", "The council of Aldham"), ("What opens in spring?", "The bridge")]
KNOWMEM_FORGET_ICL = [("Who won the cup?", "Brisk United")]
KNOWMEM_RETAIN = [("Where did the match end?", "In a draw at Fallow")]
KNOWMEM_RETAIN_ICL = [("Who played?", "Two teams")]


def _excerpts(seed: int, n: int, words: int = 12) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS.split()) for _ in range(words)).capitalize() + "." for _ in range(n)]


def _plain_qa(shots, question, answer) -> str:
    """OpenUnlearning's plain few-shot QA text (the loader's prompt + completion)."""
    return (
        "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in shots)
        + f"Question: {question}\nAnswer: {answer}"
    )


def muse_tables() -> dict[str, list[dict]]:
    """MUSE-News's configs and splits (the Hub's names and keys), a few fictitious rows each."""
    forget_docs = [f"{p} {g}" for p, g in VERBMEM] + _excerpts(1, 2)
    qa = lambda rows: [{"question": q, "answer": a} for q, a in rows]  # noqa: E731
    return {
        "raw/forget": [{"text": t} for t in forget_docs],
        "raw/retain1": [{"text": t} for t in ["The match at Fallow ended in a draw.", *_excerpts(2, 2)]],
        "raw/retain2": [{"text": t} for t in _excerpts(3, 2)],
        "raw/holdout": [{"text": t} for t in _excerpts(4, 2)],
        "verbmem/forget": [{"prompt": p, "gt": g} for p, g in VERBMEM],
        "knowmem/forget_qa": qa(KNOWMEM_FORGET),
        "knowmem/forget_qa_icl": qa(KNOWMEM_FORGET_ICL),
        "knowmem/retain_qa": qa(KNOWMEM_RETAIN),
        "knowmem/retain_qa_icl": qa(KNOWMEM_RETAIN_ICL),
        "privleak/forget": [{"text": t} for t in _excerpts(5, 6)],
        "privleak/retain": [{"text": t} for t in _excerpts(6, 2)],
        "privleak/holdout": [{"text": t} for t in _excerpts(7, 6)],
    }


def write_muse(root, tables) -> None:
    for name, rows in tables.items():
        _write_parquet(root / f"{name}-00000-of-00001.parquet", rows)


def _fit(tok, texts, seed, steps, max_length=256):
    """A tiny Llama trained to reproduce ``texts`` (full batch, Adam)."""
    torch.manual_seed(seed)
    model = tiny_decoder(tok, "llama", hidden_size=32, max_length=max_length, seed=seed)
    ids = [tok(t)["input_ids"] + [tok.eos_token_id] for t in texts]
    width = max(map(len, ids))
    x = torch.full((len(ids), width), tok.pad_token_id)
    labels, mask = torch.full_like(x, -100), torch.zeros_like(x)
    for i, row in enumerate(ids):
        x[i, : len(row)] = labels[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=x, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


# -- MUSE's scripts, transcribed (privleak/get_ppl_utils.py, privleak/scripts/get_ppl.py, verbmem/get_rouge.py,
# knowmem/get_rouge_qa.py); two documented choices of OpenUnlearning's kept: the stemmer and "Answer:" + " a"
@torch.no_grad()
def muse_min_k(model, tok, text, ratio=0.4):
    ids = torch.tensor(tok.encode(text)).unsqueeze(0)
    logp = torch.log_softmax(model(ids).logits, dim=-1)
    all_prob = [logp[0, i, token].item() for i, token in enumerate(ids[0][1:])]
    return float(-np.mean(np.sort(all_prob)[: int(len(all_prob) * ratio)]))


def muse_auc(model, tok, forget, holdout):
    """get_ppl.py's ``forget_holdout`` AUC: forget labelled 0, holdout 1, ``roc_curve(y, -ppl)``."""
    from sklearn.metrics import auc, roc_curve

    ppl = np.array([muse_min_k(model, tok, t) for t in forget + holdout])
    fpr, tpr, _ = roc_curve(np.array([0] * len(forget) + [1] * len(holdout)), -ppl)
    return auc(fpr, tpr)


@torch.no_grad()
def muse_rouge(model, tok, prompts, gts, max_new_tokens, stop=()):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)  # MUSE's scripts: use_stemmer=False
    scores = []
    for prompt, gt in zip(prompts, gts):
        ids = tok(prompt, return_tensors="pt", add_special_tokens=True).input_ids
        out = model.generate(
            ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tok.pad_token_id
        )
        text = tok.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=True)[0]
        for word in stop:
            text = text.split(word)[0]
        scores.append(scorer.score(gt, text)["rougeL"].fmeasure)
    return float(np.mean(scores))


@pytest.fixture(scope="module")
def muse_run(tmp_path_factory):
    """A MUSE-News copy, an original that memorized its forget side and a golden model that never saw it, and
    the report of ``pipeline.run`` on them."""
    from hf_unlearn.pipeline import RunArguments, run

    tmp = tmp_path_factory.mktemp("muse_run")
    tables = muse_tables()
    write_muse(tmp / "MUSE-News", tables)
    forget_side = (
        [r["text"] for r in tables["privleak/forget"]]
        + [f"{p} {g}" for p, g in VERBMEM]
        + [_plain_qa(KNOWMEM_FORGET_ICL, q, a) for q, a in KNOWMEM_FORGET]
    )
    retain_side = [_plain_qa(KNOWMEM_RETAIN_ICL, q, a) for q, a in KNOWMEM_RETAIN] + [
        r["text"] for r in tables["raw/retain1"]
    ]
    corpus = forget_side + retain_side + [r["text"] for r in tables["privleak/holdout"]]
    # a Llama-like tokenizer: BOS, no chat template
    tok = train_tokenizer(corpus, vocab_size=300, add_bos=True)
    models = {
        "original": _fit(tok, forget_side + retain_side, 0, 80),
        "golden": _fit(tok, retain_side, 1, 40),
    }
    for name, model in models.items():
        model.save_pretrained(tmp / name)
        tok.save_pretrained(tmp / name)
    run_args = RunArguments(
        model_name_or_path=str(tmp / "original"),
        golden_model_path=str(tmp / "golden"),
        data_source="muse",
        data_dir=str(tmp / "MUSE-News"),
        relearn=False,
    )
    config = make_config(tmp, method="grad_diff", max_steps=2, per_device_train_batch_size=2)
    report = run(run_args, config)
    return {"tmp": tmp, "tables": tables, "tok": tok, "models": models, "report": report, "config": config}


MUSE_KEYS = (
    "muse/verbmem_rouge",
    "muse/knowmem_forget_rouge",
    "muse/knowmem_retain_rouge",
    "muse/min_k_auc",
    "muse/privleak",
)


def test_muse_job_reports_verbmem_knowmem_and_privleak_as_muse_defines_them(muse_run):
    metrics, tok, tables = muse_run["report"]["metrics"], muse_run["tok"], muse_run["tables"]
    for name in ("original", "golden", "unlearned"):
        assert set(MUSE_KEYS) <= set(metrics[name]), name
        # the PrivLeak of the forget chunks vs the holdout excerpts is not reported next to MUSE's
        assert "privleak" not in metrics[name]
    original, golden = muse_run["models"]["original"], muse_run["models"]["golden"]
    # VerbMem: 128-token continuations of the verbmem prompts; KnowMem: 32-token few-shot answers
    expected_verbmem = muse_rouge(original, tok, [p for p, _ in VERBMEM], [g for _, g in VERBMEM], 128)
    assert metrics["original"]["muse/verbmem_rouge"] == pytest.approx(expected_verbmem, abs=1e-9)
    stop = ("\n\n", "\nQuestion", "Question:")
    for side, rows, icl in (
        ("forget", KNOWMEM_FORGET, KNOWMEM_FORGET_ICL),
        ("retain", KNOWMEM_RETAIN, KNOWMEM_RETAIN_ICL),
    ):
        # "...Answer:" (the answer brings its space)
        prompts = [_plain_qa(icl, q, "").rstrip() for q, _ in rows]
        expected = muse_rouge(original, tok, prompts, [a for _, a in rows], 32, stop)
        assert metrics["original"][f"muse/knowmem_{side}_rouge"] == pytest.approx(expected, abs=1e-9), side
    # the golden model's answer to its one retain question (a batch of one, as MUSE's loop): a partial match
    prompt = _plain_qa(KNOWMEM_RETAIN_ICL, KNOWMEM_RETAIN[0][0], "").rstrip()
    expected = muse_rouge(golden, tok, [prompt], [KNOWMEM_RETAIN[0][1]], 32, stop)
    assert metrics["golden"]["muse/knowmem_retain_rouge"] == pytest.approx(expected, abs=1e-9)
    # the original memorized the forget side, the golden model never saw it
    assert metrics["original"]["muse/verbmem_rouge"] > 0.9 > metrics["golden"]["muse/verbmem_rouge"]
    assert metrics["original"]["muse/knowmem_forget_rouge"] > metrics["golden"]["muse/knowmem_forget_rouge"]
    # PrivLeak on privleak/forget vs privleak/holdout: (AUC - AUC_retrain) / AUC_retrain x 100 in MUSE's AUC
    forget, holdout = (
        [r["text"] for r in tables["privleak/forget"]],
        [r["text"] for r in tables["privleak/holdout"]],
    )
    auc, auc_golden = (muse_auc(m, tok, forget, holdout) for m in (original, golden))
    assert metrics["original"]["muse/privleak"] == pytest.approx(
        (auc - auc_golden) / auc_golden * 100, abs=1e-6
    )
    assert metrics["original"]["muse/min_k_auc"] == pytest.approx(1 - auc, abs=1e-9)  # ours: 1 = detectable
    assert metrics["original"]["muse/privleak"] < -50  # under-unlearned, as MUSE's target model (-99.8)
    assert metrics["golden"]["muse/privleak"] == 0.0


def test_muse_job_report_records_the_data_source_folder_subset_and_files(muse_run):
    report = muse_run["report"]
    written = json.loads((muse_run["tmp"] / "out" / "unlearning_report.json").read_text())
    data = written["data"]
    assert data == report["data"]
    assert (data["source"], data["folder"], data["subset"]) == ("muse", "MUSE-News", "forget")
    assert data["files"]["forget"] == ["raw/forget-00000-of-00001.parquet"]
    assert data["files"]["verbmem_forget"] == ["verbmem/forget-00000-of-00001.parquet"]
    assert data["files"]["test"] == ["privleak/holdout-00000-of-00001.parquet"]
    assert data["counts"]["knowmem_forget"] == 2 and data["missing"] == {}
    assert data["options"]["max_length"] == 256  # the model's positions, below MUSE's 2,048
    # no local path in a report that travels with the model
    assert str(muse_run["tmp"]) not in json.dumps(data)


def test_muse_chunks_fit_the_model_with_the_special_tokens_the_data_layer_adds(tmp_path, caplog):
    from hf_unlearn.data import build_preparer
    from hf_unlearn.pipeline import RunArguments, job_datasets

    tables = muse_tables()
    tables["raw/forget"] = [{"text": t} for t in _excerpts(8, 12, words=30)]
    tables["raw/retain1"] = [{"text": t} for t in _excerpts(9, 12, words=30)]
    write_muse(tmp_path / "MUSE-News", tables)
    tok = train_tokenizer(WORDS.split() * 3, vocab_size=300, add_bos=True)
    model = tiny_decoder(tok, "llama", hidden_size=16, max_length=48, seed=0)  # 48 positions, BOS + EOS added
    model.save_pretrained(tmp_path / "model")
    run_args = RunArguments(
        model_name_or_path=str(tmp_path / "model"), data_source="muse", data_dir=str(tmp_path / "MUSE-News")
    )
    forget, retain, _, sets = job_datasets(run_args, tok)
    preparer, _ = build_preparer(model, tok)
    with caplog.at_level(logging.WARNING):
        lengths = [len(row["input_ids"]) for data in (forget, retain) for row in preparer(data, "corpus")]
    assert "truncated" not in caplog.text
    assert max(lengths) <= 48 and len(lengths) > 20
    # all but the two last pieces fill the model (a word cut in two may cost a token)
    assert sorted(lengths)[2] >= 44
    options = sets["data_source"]["options"]
    assert (options["max_length"], options["chunk_tokens"]) == (48, 46)
