"""TOFU (``locuslab/TOFU``) from a local download folder.

The Hub repository holds one JSON-lines file per split at its root (``forget10.json``, ``forget10_perturbed.json``,
``retain90.json``, ``retain_perturbed.json``, ``holdout10.json``, ``real_authors_perturbed.json``,
``world_facts_perturbed.json``, ...; its README maps each config to ``<config>.json``). The parquet export
(``refs/convert/parquet``: ``<config>/train/0000.parquet``) and ``.jsonl`` names (the holdout files were
``holdout10.jsonl`` before a rename) are read too.

What is read, as OpenUnlearning does (``configs/data/datasets/TOFU_*.yaml``, ``configs/eval/tofu_metrics``):

* training: ``forget{NN}`` and its complement ``retain{100-NN}`` (``question``, ``answer``);
* forget-side evaluation: ``forget{NN}_perturbed`` (the same questions, plus ``paraphrased_answer`` and a list
  ``perturbed_answer``): its two columns are joined onto the forget rows by question text, so
  ``BenchmarkData.forget`` trains *and* gives the truth ratio;
* retain-side evaluation: ``retain_perturbed`` (a 400-question subset of every retain split; ``retain90`` has
  no paraphrases), returned as ``extra["retain_eval"]`` while ``BenchmarkData.retain`` is the full retain split;
* held-out: ``holdout{NN}`` (``test``; ``None`` in older copies that lack it);
* utility: ``real_authors_perturbed`` and ``world_facts_perturbed`` as ``extra["real_authors"]`` and
  ``extra["world_facts"]``; their truth ratio compares the perturbed answers with the *answer* itself (TOFU's
  ``base_answer_key: answer``; they have no paraphrase). Both are optional.

TOFU's ``full`` set is 200 fictitious authors x 20 questions, each author's questions consecutive; ``retain{100-NN}``
is its first rows and ``forget{NN}`` its last ones (forget01/05/10: the last 2/10/20 authors). When both splits
hold a whole number of authors (multiples of 20 rows, as every public copy does), ``forget`` and ``retain`` get an
``author`` column: the author's index in ``full`` (``row // 20``; forget rows counted after the retain rows), so
that splits of the forget set (``relearn_partial``, sequential requests) keep an author's questions together.
"""

from __future__ import annotations

from collections import defaultdict, deque
from typing import Any

from ..metrics.tofu import PARAPHRASED, PERTURBED
from .files import Split, SplitReader
from .qa import QAFormat, check_answer_lists, check_strings
from .registry import BenchmarkData, register_source

SUBSETS = {
    "forget01": ("retain99", "holdout01"),
    "forget05": ("retain95", "holdout05"),
    "forget10": ("retain90", "holdout10"),
}
DEFAULT_SUBSET = "forget10"
QA_KEYS = ("question", "answer")
PERTURBED_KEYS = ("question", "answer", "paraphrased_answer", "perturbed_answer")
UTILITY_KEYS = ("question", "answer", "perturbed_answer")
DOWNLOAD = "hf download locuslab/TOFU --repo-type dataset --local-dir DIR"
#: questions per fictitious author in TOFU's ``full`` set (consecutive rows)
QUESTIONS_PER_AUTHOR = 20
AUTHOR = "author"


def tofu_split(name: str, columns: tuple[str, ...]) -> Split:
    """Where split ``name`` lives in a download folder: ``name.json``, ``name.jsonl`` or parquet shards (an
    older layout's ``name_dataset.json`` is named in the error, not read)."""
    patterns = (f"{name}.json", f"{name}.jsonl", f"{name}/*/*.parquet", f"{name}/*.parquet")
    return Split(name, patterns, columns, older=(f"{name}_dataset.json", "*_dataset.json"))


@register_source("tofu", download=DOWNLOAD)
def load_tofu(
    path: str,
    subset: str | None = None,
    *,
    chat: bool = True,
    system_prompt: str | None = None,
    tokenizer: Any = None,
) -> BenchmarkData:
    """TOFU's forget/retain/holdout splits for ``subset`` (``forget01``, ``forget05``, ``forget10`` (default)).

    Args:
        path: the download folder.
        subset: the forget split; the retain split is its complement and ``test`` the matching holdout.
        chat: rows in TRL's conversational form (rendered by the tokenizer's chat template), else plain
            ``"Question: ...\\nAnswer:"`` / ``" answer"`` strings (OpenUnlearning's non-chat template).
        system_prompt: a system turn put first in every chat prompt (OpenUnlearning's Llama TOFU models were
            fine-tuned with ``"You are a helpful assistant."``).
        tokenizer: unused (TOFU's rows need none); accepted so that every source takes the same call.

    Returns:
        ``forget`` (with ``paraphrased_completion`` / ``perturbed_completions``), ``retain`` (training split,
        prompt/completion only), ``test`` (holdout or ``None``), ``extra``: ``retain_eval`` (with the two
        columns) and, when present, ``real_authors`` and ``world_facts``. ``forget`` and ``retain`` have an
        ``author`` column when they hold whole authors (``add_authors``).
    """
    subset = subset or DEFAULT_SUBSET
    if subset not in SUBSETS:
        raise ValueError(f"tofu: unknown subset {subset!r}; choose one of {sorted(SUBSETS)}.")
    retain_name, holdout_name = SUBSETS[subset]
    fmt = QAFormat(chat=chat, system_prompt=system_prompt)
    reader = SplitReader(path, "tofu")
    raw = read_splits(reader, subset)
    data = BenchmarkData(
        forget=eval_dataset(fmt, raw["forget"], "paraphrased_answer", f"tofu {subset}"),
        retain=qa_dataset(fmt, raw["retain"], f"tofu {retain_name}"),
        test=qa_dataset(fmt, raw["test"], f"tofu {holdout_name}") if raw["test"] is not None else None,
        extra={
            "retain_eval": eval_dataset(
                fmt, raw["retain_eval"], "paraphrased_answer", "tofu retain_perturbed"
            )
        },
    )
    add_authors(data)
    for name in ("real_authors", "world_facts"):
        if raw[name] is not None:
            data.extra[name] = eval_dataset(fmt, raw[name], "answer", f"tofu {name}_perturbed")
            data.utility += (name,)
    data.info = _info(data, reader, subset, chat, system_prompt)
    return data


def add_authors(data: BenchmarkData) -> bool:
    """Add the ``author`` column (the author's index in TOFU's ``full`` set) to ``data.forget`` and
    ``data.retain`` when both hold whole authors (multiples of ``QUESTIONS_PER_AUTHOR`` rows): retain row ``i``
    is author ``i // 20``, forget row ``i`` author ``len(retain) // 20 + i // 20``. Returns whether it did."""
    n_forget, n_retain = len(data.forget), len(data.retain)
    if n_forget % QUESTIONS_PER_AUTHOR or n_retain % QUESTIONS_PER_AUTHOR:
        return False
    first = n_retain // QUESTIONS_PER_AUTHOR
    data.retain = data.retain.add_column(AUTHOR, [i // QUESTIONS_PER_AUTHOR for i in range(n_retain)])
    data.forget = data.forget.add_column(AUTHOR, [first + i // QUESTIONS_PER_AUTHOR for i in range(n_forget)])
    return True


def read_splits(reader: SplitReader, subset: str) -> dict[str, Any]:
    """The raw splits of ``subset`` by role (optional ones ``None`` when absent), the forget split joined
    with its ``_perturbed`` columns."""
    retain_name, holdout_name = SUBSETS[subset]
    forget = join_perturbed(
        reader.required("forget", tofu_split(subset, QA_KEYS)),
        reader.required("forget_perturbed", tofu_split(f"{subset}_perturbed", PERTURBED_KEYS)),
        f"tofu {subset}",
    )
    return {
        "forget": forget,
        "retain": reader.required("retain", tofu_split(retain_name, QA_KEYS)),
        "test": reader.optional("test", tofu_split(holdout_name, QA_KEYS)),
        "retain_eval": reader.required("retain_eval", tofu_split("retain_perturbed", PERTURBED_KEYS)),
        "real_authors": reader.optional("real_authors", tofu_split("real_authors_perturbed", UTILITY_KEYS)),
        "world_facts": reader.optional("world_facts", tofu_split("world_facts_perturbed", UTILITY_KEYS)),
    }


def join_perturbed(base: Any, perturbed: Any, where: str) -> Any:
    """``base`` (question, answer) with the ``paraphrased_answer`` and ``perturbed_answer`` of the perturbed
    row asking the same question (whitespace-insensitive; repeated questions are matched in file order)."""
    by_question: dict[str, deque] = defaultdict(deque)
    for row in perturbed.to_list():
        by_question[_key(row["question"])].append(row)
    joined, unmatched = [], []
    for row in base.to_list():
        queue = by_question.get(_key(row["question"]))
        if not queue:
            unmatched.append(row["question"])
            continue
        match = queue.popleft()
        joined.append(
            {
                **row,
                "paraphrased_answer": match["paraphrased_answer"],
                "perturbed_answer": match["perturbed_answer"],
            }
        )
    if unmatched:
        raise ValueError(
            f"{where}: {len(unmatched)} question(s) have no row in the _perturbed file (first: {unmatched[0]!r}); "
            "the two files must hold the same questions."
        )
    import datasets

    return datasets.Dataset.from_list(joined)


def qa_dataset(fmt: QAFormat, rows: Any, where: str) -> Any:
    import datasets

    return datasets.Dataset.from_list(fmt.rows(rows["question"], rows["answer"], where))


def eval_dataset(fmt: QAFormat, rows: Any, paraphrase_key: str, where: str) -> Any:
    """QA rows plus ``paraphrased_completion`` (from ``paraphrase_key``) and ``perturbed_completions``."""
    import datasets

    out = fmt.rows(rows["question"], rows["answer"], where)
    paraphrases, perturbed = list(rows[paraphrase_key]), list(rows["perturbed_answer"])
    check_strings(paraphrases, where, paraphrase_key)
    check_answer_lists(perturbed, where, "perturbed_answer")
    for row, para, wrong in zip(out, paraphrases, perturbed):
        row[PARAPHRASED] = fmt.answer(para)
        row[PERTURBED] = [fmt.answer(w) for w in wrong]
    return datasets.Dataset.from_list(out)


def _key(question: Any) -> str:
    return " ".join(str(question).split())


def _info(
    data: BenchmarkData, reader: SplitReader, subset: str, chat: bool, system_prompt: str | None
) -> dict:
    return {
        "source": "tofu",
        "subset": subset,
        "files": reader.files,
        "counts": data.counts(),
        "missing": reader.missing,
        "options": {"chat": chat, "system_prompt": system_prompt},
    }
