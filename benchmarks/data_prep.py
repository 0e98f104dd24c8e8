"""``data_prep``: preparing 100k rows, the list-of-dicts preparer (before) vs the Arrow one (after).

Two corpora of 100k rows (``--quick``: 20k), written once with ``save_to_disk`` and read back with
``load_from_disk`` (memory-mapped, as a corpus from ``load_dataset`` is): plain-text causal-LM rows of 64
random words from a fixed 2,000-word list, and classifier rows of 16 words with 4 labels (as a forget set, so
with wrong labels). A word-level tokenizer is trained offline on the word list (``hf_unlearn.tiny``).

Each measurement runs in a fresh Python process whose ``hf_unlearn`` is either the checkout before the change
(``--before-tree``, default: ``git archive`` of ``BASELINE``) or this one, arms interleaved with the order
rotated every repeat. Measured: the preparation's wall time and peak RSS growth (``VmHWM`` above the RSS
before the call), the RSS the rows still hold afterwards, and the time to read every row once. The digests
of all rows of both arms must match. The after arm also times a second preparation of the same data, which
reads the cached, memory-mapped result back.

    python -m benchmarks.data_prep [--quick] [--threads N] [--before-tree PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

NAME = "data_prep"
REPO = Path(__file__).resolve().parent.parent
#: The last commit of the list-of-dicts preparer (the "before" arm).
BASELINE = "2356796"
KINDS = {
    "lm": {"task": "causal_lm", "words_per_row": 64},
    "classifier": {"task": "classification", "words_per_row": 16, "num_labels": 4},
}
SYLLABLES = ["ka", "lo", "mi", "ren", "to", "sa", "vi", "dor", "el", "qu", "ban", "zet", "pra", "os", "un"]


def word_list(n: int = 2000) -> list[str]:
    """``n`` distinct made-up words (two to four syllables), the same on every run."""
    import itertools

    words = []
    for size in (2, 3, 4):
        for parts in itertools.product(SYLLABLES, repeat=size):
            words.append("".join(parts))
            if len(words) == n:
                return words
    return words


def write_corpus(kind: str, n_rows: int, path: Path) -> None:
    """The raw corpus of ``kind`` saved to ``path`` (seeded)."""
    import datasets
    import numpy as np

    spec = KINDS[kind]
    words = np.array(word_list())
    rng = np.random.default_rng(0)
    choice = rng.integers(0, len(words), size=(n_rows, spec["words_per_row"]))
    columns = {"text": [" ".join(row) for row in words[choice].tolist()]}
    if "num_labels" in spec:
        columns["label"] = rng.integers(0, spec["num_labels"], size=n_rows).tolist()
    datasets.disable_progress_bars()
    datasets.Dataset.from_dict(columns).save_to_disk(str(path))


# -- one measurement (a fresh process) ---------------------------------------------------------------------
def one_arm(kind: str, corpus: str, tree: str, cached_rerun: bool) -> dict:
    """Prepare the corpus once with the ``hf_unlearn`` of ``tree``; time, memory and a digest of the rows."""
    import gc

    import datasets

    import hf_unlearn
    from hf_unlearn.data import DatasetPreparer
    from hf_unlearn.tiny import train_tokenizer

    if not Path(hf_unlearn.__file__).resolve().is_relative_to(Path(tree).resolve()):
        raise RuntimeError(f"imported {hf_unlearn.__file__}, not the hf_unlearn of {tree}")
    spec = KINDS[kind]
    words = word_list()
    tokenizer = train_tokenizer(words, vocab_size=len(words) + 64, model="word")
    prep = DatasetPreparer(
        spec["task"], tokenizer, max_length=128, num_labels=spec.get("num_labels"), vocab_size=len(tokenizer)
    )
    raw = datasets.load_from_disk(corpus)
    raw.cleanup_cache_files()  # an earlier after arm's cached result must not be read back
    with_wrong = "num_labels" in spec
    gc.collect()
    with common.PeakMemory("cpu") as peak:
        start = time.perf_counter()
        rows = prep(raw, "forget_dataset", with_wrong_labels=with_wrong)
        prep_s = time.perf_counter() - start
    held = common.rss_bytes() - peak.base
    mapped = _mapped_arrow_bytes()
    start = time.perf_counter()
    n_tokens = sum(len(row["input_ids"]) for row in rows)
    iterate_s = time.perf_counter() - start
    out = {"prep_s": prep_s, "peak_bytes": peak.peak, "held_bytes": held, "iterate_s": iterate_s}
    out["mapped_bytes"] = mapped
    out.update(n_rows=len(rows), n_tokens=n_tokens, digest=_digest(rows), type=type(rows).__name__)
    if cached_rerun:
        start = time.perf_counter()
        prep(datasets.load_from_disk(corpus), "forget_dataset", with_wrong_labels=with_wrong)
        out["cached_prep_s"] = time.perf_counter() - start
    return out


def _mapped_arrow_bytes() -> int:
    """Resident bytes of memory-mapped ``.arrow`` files (the raw corpus read, a cached result)."""
    total, arrow = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
            arrow = fields[-1].endswith(".arrow")
        elif arrow and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


def _digest(rows) -> str:
    hasher = hashlib.sha256()
    for row in rows:
        hasher.update(json.dumps(row, sort_keys=True).encode())
    return hasher.hexdigest()[:16]


def _child_main() -> None:
    kwargs = json.loads(sys.argv[1])
    print(json.dumps(one_arm(**kwargs)))


def in_fresh_python(tree: Path, threads: int, **kwargs) -> dict:
    """``one_arm(**kwargs)`` in a new interpreter that imports ``hf_unlearn`` from ``tree``."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tree), str(REPO)]),
        "MALLOC_MMAP_THRESHOLD_": "65536",  # freed memory goes back to the OS, as in common.in_fresh_process
        "OMP_NUM_THREADS": str(threads),
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    code = "from benchmarks.data_prep import _child_main; _child_main()"
    payload = json.dumps({**kwargs, "tree": str(tree)})
    done = subprocess.run(
        [sys.executable, "-c", code, payload],
        env=env,
        cwd=tempfile.gettempdir(),  # not a checkout: '' on sys.path must not find an hf_unlearn
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"arm {kwargs} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def baseline_tree(work: Path, ref: str = BASELINE) -> Path:
    """``hf_unlearn`` as of ``ref``, exported with ``git archive`` into ``work/before``."""
    target = work / "before"
    target.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "hf_unlearn"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


# -- the benchmark -------------------------------------------------------------------------------------------
def measure(n_rows: int, repeats: int, threads: int, before: Path, work: Path) -> dict[str, dict]:
    """``{kind: {arm: [one_arm result per repeat]}}``, the two arms interleaved, order rotated each repeat."""
    trees = {"before": before, "after": REPO}
    samples: dict[str, dict] = {}
    for kind in KINDS:
        corpus = work / f"raw_{kind}"
        write_corpus(kind, n_rows, corpus)
        samples[kind] = {arm: [] for arm in trees}
        for r in range(repeats):
            for arm in ["before", "after"] if r % 2 == 0 else ["after", "before"]:
                result = in_fresh_python(
                    trees[arm], threads, kind=kind, corpus=str(corpus), cached_rerun=arm == "after"
                )
                samples[kind][arm].append(result)
    return samples


def summarize(samples: dict[str, dict]) -> tuple[list[dict], list[dict], dict]:
    """Target rows, the markdown table and the summary numbers."""
    targets, table, summary = [], [], {}
    for kind, arms in samples.items():
        med = {arm: {k: common.median([r[k] for r in rows]) for k in _NUMBERS} for arm, rows in arms.items()}
        for arm, rows in arms.items():
            cached = [r["cached_prep_s"] for r in rows if "cached_prep_s" in r]
            table.append(
                {
                    "data": f"{kind} ({rows[0]['n_rows']:,} rows)",
                    "arm": arm,
                    "prepare (s)": round(med[arm]["prep_s"], 2),
                    "peak RSS growth": common.fmt_bytes(med[arm]["peak_bytes"]),
                    "RSS held after": common.fmt_bytes(med[arm]["held_bytes"]),
                    "of which mapped .arrow": common.fmt_bytes(med[arm]["mapped_bytes"]),
                    "read every row (s)": round(med[arm]["iterate_s"], 2),
                    "prepare again, cached (s)": round(common.median(cached), 2) if cached else "-",
                }
            )
        time_stats = common.ratio_stats(
            [r["prep_s"] for r in arms["after"]], [r["prep_s"] for r in arms["before"]]
        )
        memory_stats = common.ratio_stats(
            [r["peak_bytes"] for r in arms["after"]], [r["peak_bytes"] for r in arms["before"]]
        )
        digests = {r["digest"] for rows in arms.values() for r in rows}
        targets += [
            common.target(
                f"{kind}: peak RSS growth, after / before",
                "peak resident memory added by the preparation (median paired ratio)",
                memory_stats["ratio"],
                0.5,
                paired_ratios=memory_stats["paired_ratios"],
            ),
            common.ratio_target(
                f"{kind}: preparation time, after / before",
                "wall time of DatasetPreparer.__call__ (median paired ratio)",
                time_stats,
                1.0,
            ),
            common.target(
                f"{kind}: rows identical",
                "distinct digests of all rows over both arms and every repeat",
                len(digests),
                1,
                digests=sorted(digests),
            ),
        ]
        summary[kind] = {"median": med, "time": time_stats, "peak_memory": memory_stats}
    return targets, table, summary


_NUMBERS = ("prep_s", "peak_bytes", "held_bytes", "mapped_bytes", "iterate_s")


def run(
    quick: bool = False, threads: int | None = None, before_tree: str | None = None, repeats: int = 1
) -> dict:
    """Measure both corpora with both arms and write ``results/data_prep.json``."""
    report = common.Report(NAME, quick, threads)
    n_rows = 20_000 if quick else 100_000
    work = Path(tempfile.mkdtemp(prefix="data_prep_"))
    try:
        before = Path(before_tree).resolve() if before_tree else baseline_tree(work)
        samples = measure(n_rows, repeats, report.threads, before, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report.targets, table, summary = summarize(samples)
    columns = [c for c in table[0] if c != "data"]
    title = f"Preparing {n_rows:,} rows (medians of {repeats} fresh processes per arm)"
    report.tables.append({"title": title, "markdown": common.markdown_table(table, columns, "data")})
    report.details = {"n_rows": n_rows, "repeats": repeats, "summary": summary, "samples": samples}
    report.notes.append(
        f"before: hf_unlearn {'from ' + before_tree if before_tree else 'at git ' + BASELINE}; the corpora are "
        "memory-mapped (load_from_disk), so the after arm writes its result next to them and maps it. Both "
        "arms' RSS includes the raw corpus's pages read through the map ('of which mapped .arrow'), and the "
        "modules first imported during the call."
    )
    return report.write()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="20k rows instead of 100k")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--before-tree", help="a checkout whose hf_unlearn is the 'before' arm")
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per arm (1: about 2 min)")
    args = parser.parse_args(argv)
    print(run(args.quick, args.threads, args.before_tree, args.repeats))


if __name__ == "__main__":
    main()
