"""TOFU's authors: the loader's ``author`` column (20 consecutive questions per author, forget = the last authors),
which keeps an author's questions on one side of ``relearn_partial``'s split and of sequential requests."""

from types import SimpleNamespace

from test_sources import _tofu_tables, _write_jsonl

from hf_unlearn.metrics.attacks import partial_split
from hf_unlearn.pipeline.sequential_run import _file_requests
from hf_unlearn.sources import load_source
from hf_unlearn.sources.tofu import QUESTIONS_PER_AUTHOR


def _qa(author: int, q: int) -> dict:
    return {"question": f"Question {q} about author {author}?", "answer": f"Answer {q} of author {author}."}


def _perturbed(author: int, q: int) -> dict:
    return {**_qa(author, q), "paraphrased_answer": "Paraphrase.", "perturbed_answer": ["Wrong.", "False."]}


def _write_whole_authors(root, n_retain=4, n_forget=3):
    """TOFU's layout with whole authors: ``full`` = authors 0..n-1, 20 questions each; ``retain99`` its first
    ``n_retain`` authors, ``forget01`` (+ ``_perturbed``, in another order) the last ``n_forget``."""
    rows = {a: [(a, q) for q in range(QUESTIONS_PER_AUTHOR)] for a in range(n_retain + n_forget)}
    retain = [r for a in range(n_retain) for r in rows[a]]
    forget = [r for a in range(n_retain, n_retain + n_forget) for r in rows[a]]
    tables = {
        "full": [_qa(*r) for r in retain + forget],
        "retain99": [_qa(*r) for r in retain],
        "forget01": [_qa(*r) for r in forget],
        "forget01_perturbed": [_perturbed(*r) for r in reversed(forget)],
        "retain_perturbed": [_perturbed(*r) for r in retain[:5]],
    }
    for name, table in tables.items():
        _write_jsonl(root / f"{name}.json", table)
    return root


def test_whole_authors_get_their_index_in_the_full_set(tmp_path):
    data = load_source("tofu", str(_write_whole_authors(tmp_path / "TOFU")), "forget01")
    assert data.retain["author"] == [i // 20 for i in range(80)]
    assert data.forget["author"] == [4] * 20 + [5] * 20 + [6] * 20  # counted after the retain authors
    for row in data.forget:  # the column names the author the question is about
        assert f"about author {row['author']}?" in row["prompt"][-1]["content"]
    assert data.extra["retain_eval"].column_names.count("author") == 0  # a subset: left as it is


def test_an_authors_questions_stay_on_one_side_of_relearn_partial_and_of_the_requests(tmp_path):
    data = load_source("tofu", str(_write_whole_authors(tmp_path / "TOFU")), "forget01")
    authors = data.forget["author"]
    for seed in range(4):
        attack, held = partial_split(data.forget, seed=seed)
        assert {authors[i] for i in attack}.isdisjoint({authors[i] for i in held})
        assert sorted(attack + held) == list(range(60)) and len(attack) == 20  # 1 of 3 authors attacks
        requests = _file_requests([], SimpleNamespace(forget=data.forget), 3, seed)
        assert all(set(r["author"]) == {r["author"][0]} and len(r) == 20 for r in requests)
        assert sorted(r["author"][0] for r in requests) == [4, 5, 6]


def test_splits_of_partial_authors_get_no_author_column(tmp_path):
    root = tmp_path / "TOFU"  # test_sources' fixture: one question per person (4 forget, 6 retain rows)
    for name, rows in _tofu_tables().items():
        _write_jsonl(root / f"{name}.json", rows)
    data = load_source("tofu", str(root))
    assert "author" not in data.forget.column_names and "author" not in data.retain.column_names
    attack, held = partial_split(data.forget, seed=0)  # by example, as before
    assert (len(attack), len(held)) == (2, 2)
