"""BibTeX entries for the model card (``references.bib``, shipped with the package): the two seed papers
always, and the source of every metric family a report contains (TOFU, MUSE and OpenUnlearning, Min-K%,
Min-K%++, SalUn, the Anamnesis Index and SCRUB's relearn time)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

BIB_FILE = Path(__file__).with_name("references.bib")
SEED_PAPERS = ("ding2025understanding", "tran2026efficient")
# (metric keys a report may contain, the key of the entry that defines them)
METRIC_SOURCES = (
    (
        ("forget/truth_ratio", "forget_quality/truth_ratio_ks_pvalue", "utility/model_utility"),
        "maini2024tofu",
    ),
    (("privleak",), "shi2025muse"),
    (
        ("forget/truth_ratio", "forget/extraction_strength", "forget/exact_memorization", "privleak"),
        "dorna2025openunlearning",
    ),
    (("mia/min_k_auc", "mia/min_k_04_auc"), "shi2024detecting"),
    (("mia/min_k_plus_plus_auc",), "zhang2025mink"),
    (("forget/ua", "mia/efficacy", "gap/average"), "fan2024salun"),
    (("rcd/ratio_to_golden", "rcd/ratio_to_heldout"), "chundawat2023zero"),
    (("rcd/steps",), "kurmanji2023towards"),
)


@cache
def entries() -> dict[str, str]:
    """Every entry of ``references.bib`` by its key (the entry's full BibTeX text)."""
    text = BIB_FILE.read_text()
    return {key: body for body, key in re.findall(r"(@\w+\{([\w-]+),\n.*?\n\})", text, flags=re.S)}


def references_for(metric_keys: set[str]) -> list[str]:
    """The keys of the seed papers, then those of the source of each metric family in ``metric_keys``."""
    cited = [ref for keys, ref in METRIC_SOURCES if any(key in metric_keys for key in keys)]
    return list(dict.fromkeys([*SEED_PAPERS, *cited]))


def bibtex(metric_keys: set[str]) -> str:
    """One BibTeX block with the entries of ``references_for(metric_keys)``."""
    return "\n\n".join(entries()[key] for key in references_for(metric_keys))
