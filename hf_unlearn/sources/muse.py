"""MUSE (``muse-bench/MUSE-News``, ``muse-bench/MUSE-Books``: one layout) from a local download folder.

The Hub repositories hold parquet shards per config and split, ``<config>/<split>-00000-of-00001.parquet``
(their README maps each split to ``<config>/<split>-*``); the parquet export (``refs/convert/parquet``:
``<config>/<split>/0000.parquet``) is read too. Older JSON files left in the same folders (``forget.json``,
``retain2-qa.json``, ...) are not read. What is read, as OpenUnlearning does (``configs/data/datasets/MUSE_*.yaml``,
``configs/eval/muse_metrics``):

* ``raw/forget`` and ``raw/retain1`` (option ``retain_split``), ``text``: the forget and retain sets. With a
  ``tokenizer`` the documents are joined with blank lines and cut into chunks, decoded back to text
  (OpenUnlearning's ``PretrainingDataset``), each chunk as long as fits in ``max_length`` tokens (the model's
  limit, at most 2048 as OpenUnlearning's) *with* the BOS / EOS the data layer adds: nothing is truncated
  later. Without a tokenizer, one row per document (the data layer truncates long ones: MUSE-Books' forget
  split is 4 whole books).
* ``privleak/holdout`` (``text``): ``test``, the non-members of MUSE's PrivLeak; ``privleak/forget`` is
  ``extra["privleak_forget"]``, its members. PrivLeak compares these two, not the raw corpora.
* ``verbmem/forget`` (``prompt``, ``gt``): ``extra["verbmem_forget"]`` as ``{"prompt", "completion": " " + gt}``
  (OpenUnlearning's ``insert_space: True``).
* ``knowmem/forget_qa`` and ``knowmem/retain_qa`` (``question``, ``answer``; ``retain2_qa`` in older copies):
  ``extra["knowmem_forget"]`` / ``extra["knowmem_retain"]`` as prompt/completion QA, after the few-shot pairs of
  ``*_qa_icl`` (option ``knowmem_icl``), in chat or plain ``Question:``/``Answer:`` form.

Only the forget and retain corpora are required; the evaluation splits are read when present and listed in
``info["missing"]`` when not.
"""

from __future__ import annotations

from typing import Any

from .files import Split, SplitReader
from .qa import QAFormat, check_strings
from .registry import BenchmarkData, register_source

FORGET_SUBSETS = {
    "forget": ("raw", "forget"),
    **{f"{kind}_forget_{k}": (kind, f"forget_{k}") for kind in ("scal", "sust") for k in range(1, 5)},
}
DEFAULT_SUBSET = "forget"
RETAIN_SPLITS = ("retain1", "retain2")
CHUNK_TOKENS = 2048  # OpenUnlearning's MUSE_forget / MUSE_retain max_length
DOWNLOAD = "hf download muse-bench/MUSE-News --repo-type dataset --local-dir DIR (or muse-bench/MUSE-Books)"
#: ``extra`` sets (and ``test``) that MUSE's own metrics read, by ``evaluate_unlearning(muse_datasets=...)`` name
EVALUATION_SETS = ("verbmem_forget", "knowmem_forget", "knowmem_retain", "privleak_forget")


def muse_split(config: str, splits: tuple[str, ...], columns: tuple[str, ...]) -> Split:
    """Where ``config/split`` lives (the first of ``splits`` found): parquet shards or the parquet export."""
    patterns = tuple(p for s in splits for p in (f"{config}/{s}-*.parquet", f"{config}/{s}/*.parquet"))
    older = tuple(p for s in splits for p in (f"{config}/{s}.json", f"{config}/{s.replace('_', '-')}.json"))
    return Split(f"{config}/{splits[0]}", patterns, columns, older)


@register_source("muse", download=DOWNLOAD)
def load_muse(
    path: str,
    subset: str | None = None,
    *,
    retain_split: str = "retain1",
    tokenizer: Any = None,
    max_length: int | None = None,
    chat: bool = False,
    system_prompt: str | None = None,
    knowmem_icl: bool = True,
) -> BenchmarkData:
    """MUSE's forget/retain corpora and its evaluation splits.

    Args:
        path: the download folder (MUSE-News or MUSE-Books).
        subset: the forget corpus: ``"forget"`` (``raw/forget``, default), ``"scal_forget_K"`` or
            ``"sust_forget_K"`` (K = 1..4: the scalability / sustainability corpora).
        retain_split: ``"retain1"`` (default, as OpenUnlearning) or ``"retain2"``.
        tokenizer: cut the corpora into token chunks (recommended); ``None`` keeps one row per document.
        max_length: the longest sequence a chunk may become, in tokens, the special tokens the data layer adds
            (the tokenizer's BOS, if it adds one, and EOS) included: the model's limit (default
            ``min(2048, tokenizer.model_max_length)``; ``hf-unlearn run`` passes ``min(2048, the model's)``).
        chat: knowmem QA in chat form; default plain, as MUSE's base (non-chat) Llama-2 models expect.
        system_prompt: a system turn (chat) or first line (plain) of every knowmem prompt.
        knowmem_icl: put the ``*_qa_icl`` pairs before each knowmem question, as MUSE and OpenUnlearning do.

    Returns:
        ``forget`` and ``retain`` (``{"text"}``), ``test`` (privleak holdout or ``None``), ``extra``:
        ``privleak_forget``, ``verbmem_forget``, ``knowmem_forget``, ``knowmem_retain`` (those present).
    """
    subset = subset or DEFAULT_SUBSET
    if subset not in FORGET_SUBSETS:
        raise ValueError(f"muse: unknown subset {subset!r}; choose one of {sorted(FORGET_SUBSETS)}.")
    if retain_split not in RETAIN_SPLITS:
        raise ValueError(f"muse: retain_split must be one of {list(RETAIN_SPLITS)}, got {retain_split!r}.")
    config, split = FORGET_SUBSETS[subset]
    chunk = chunk_length(tokenizer, max_length)
    reader = SplitReader(path, "muse")
    forget = reader.required("forget", muse_split(config, (split,), ("text",)))
    retain = reader.required("retain", muse_split("raw", (retain_split,), ("text",)))
    test = reader.optional("test", muse_split("privleak", ("holdout",), ("text",)))
    data = BenchmarkData(
        forget=text_dataset(forget["text"], tokenizer, chunk, f"muse {config}/{split}"),
        retain=text_dataset(retain["text"], tokenizer, chunk, f"muse raw/{retain_split}"),
        test=text_dataset(test["text"], None, None, "muse privleak/holdout") if test is not None else None,
        extra=read_extras(reader, QAFormat(chat=chat, system_prompt=system_prompt), knowmem_icl),
    )
    data.info = {
        "source": "muse",
        "subset": subset,
        "files": reader.files,
        "counts": data.counts(),
        "missing": reader.missing,
        "options": {
            "retain_split": retain_split,
            "max_length": max_length if chunk is None else chunk + special_tokens(tokenizer),
            "chunk_tokens": chunk,
            "chat": chat,
            "knowmem_icl": knowmem_icl,
        },
    }
    return data


def read_extras(reader: SplitReader, fmt: QAFormat, icl: bool) -> dict[str, Any]:
    """MUSE's evaluation splits that the folder holds, by name."""
    import datasets

    extra = {}
    privleak = reader.optional("privleak_forget", muse_split("privleak", ("forget",), ("text",)))
    if privleak is not None:
        extra["privleak_forget"] = text_dataset(privleak["text"], None, None, "muse privleak/forget")
    verbmem = reader.optional("verbmem_forget", muse_split("verbmem", ("forget",), ("prompt", "gt")))
    if verbmem is not None:
        prompts, gts = list(verbmem["prompt"]), list(verbmem["gt"])
        check_strings(prompts, "muse verbmem/forget", "prompt")
        check_strings(gts, "muse verbmem/forget", "gt")
        extra["verbmem_forget"] = datasets.Dataset.from_dict(
            {"prompt": prompts, "completion": [f" {gt}" for gt in gts]}
        )
    for side, splits in (("forget", ("forget_qa",)), ("retain", ("retain_qa", "retain2_qa"))):
        qa = read_knowmem(reader, side, splits, fmt, icl)
        if qa is not None:
            extra[f"knowmem_{side}"] = qa
    return extra


def read_knowmem(reader: SplitReader, side: str, splits: tuple[str, ...], fmt: QAFormat, icl: bool) -> Any:
    """Knowledge QA of one side, after its in-context examples (required when ``icl`` and the QA is there)."""
    import datasets

    qa = reader.optional(f"knowmem_{side}", muse_split("knowmem", splits, ("question", "answer")))
    if qa is None:
        return None
    shots: list[tuple[str, str]] = []
    if icl:
        examples = reader.required(
            f"knowmem_{side}_icl",
            muse_split("knowmem", tuple(f"{s}_icl" for s in splits), ("question", "answer")),
        )
        questions, answers = list(examples["question"]), list(examples["answer"])
        check_strings(questions + answers, f"muse knowmem/{splits[0]}_icl", "question/answer")
        shots = list(zip(questions, answers))
    rows = fmt.rows(qa["question"], qa["answer"], f"muse knowmem/{splits[0]}", shots=shots)
    return datasets.Dataset.from_list(rows)


def text_dataset(texts: Any, tokenizer: Any, chunk: int | None, where: str) -> Any:
    """A ``{"text"}`` dataset: the texts, or (with a tokenizer) their ``chunk``-token pieces."""
    import datasets

    texts = list(texts)
    check_strings(texts, where, "text", allow_empty=True)
    if tokenizer is not None:
        texts = chunk_texts(texts, tokenizer, chunk)
    return datasets.Dataset.from_dict({"text": texts})


def chunk_texts(texts: list[str], tokenizer: Any, chunk: int) -> list[str]:
    """OpenUnlearning's ``PretrainingDataset._chunk_raw_text``: join with ``"\\n\\n"``, tokenize without
    special tokens, cut every ``chunk`` tokens, decode each piece (empty pieces dropped). A decoded piece can
    encode to more tokens than it was cut from (a word split at the cut): such a piece gives its last tokens to
    the next one until it encodes to at most ``chunk`` tokens."""
    ids = tokenizer("\n\n".join(texts), add_special_tokens=False, verbose=False)["input_ids"]
    pieces, start = [], 0
    while start < len(ids):
        end = min(start + chunk, len(ids))
        while True:
            piece = tokenizer.decode(ids[start:end])
            excess = len(tokenizer(piece, add_special_tokens=False, verbose=False)["input_ids"]) - chunk
            if excess <= 0 or end - start <= 1:
                break
            end = max(start + 1, end - excess)
        pieces.append(piece)
        start = end
    return [p for p in pieces if p.strip()]


def special_tokens(tokenizer: Any) -> int:
    """How many special tokens the data layer adds to a ``{"text"}`` row: the tokenizer's prefix (BOS) and EOS."""
    from ..data.lm import special_prefix

    return len(special_prefix(tokenizer)) + (tokenizer.eos_token_id is not None)


def chunk_length(tokenizer: Any, max_length: int | None) -> int | None:
    """Text tokens per chunk: ``max_length`` (default ``min(2048, tokenizer.model_max_length)``) less the
    special tokens the data layer adds; ``None`` without a tokenizer."""
    if tokenizer is None:
        return None
    if max_length is None:
        limit = getattr(tokenizer, "model_max_length", None) or CHUNK_TOKENS
        max_length = min(CHUNK_TOKENS, int(limit))
    chunk = max_length - special_tokens(tokenizer)
    if chunk < 1:
        raise ValueError(
            f"muse: max_length={max_length} leaves no room for text next to the {special_tokens(tokenizer)} "
            "special token(s) the data layer adds; give a larger max_length."
        )
    return chunk


def evaluation_sets(data: BenchmarkData) -> dict[str, Any]:
    """MUSE's evaluation sets of ``data`` by ``evaluate_unlearning(muse_datasets=...)`` name: ``verbmem_forget``,
    ``knowmem_forget``, ``knowmem_retain``, ``privleak_forget`` and ``privleak_holdout`` (``data.test``), those
    present."""
    sets = {name: data.extra[name] for name in EVALUATION_SETS if name in data.extra}
    if data.test is not None:
        sets["privleak_holdout"] = data.test
    return sets
