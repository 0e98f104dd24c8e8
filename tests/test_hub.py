"""The model card: citations, the compact and the full results table, the hyperparameters shown, and the
round trip through ``huggingface_hub.ModelCard`` (the Hub's renderer is not reachable offline)."""

import re

import pytest

from hf_unlearn.reporting.card import build_model_card, write_report
from hf_unlearn.reporting.citations import METRIC_SOURCES, SEED_PAPERS, bibtex, entries, references_for
from hf_unlearn.reporting.headline import headline_keys

CLASSIFIER_ROW = {
    "forget/ua": 0.1,
    "forget/accuracy": 0.9,
    "retain/accuracy": 0.99,
    "test/accuracy": 0.8,
    "mia/efficacy": 0.2,
    "gap/average": 0.03,
    "mia/auc": 0.55,
    "rcd/steps": 12.0,
    "rcd/ratio_to_golden": 1.2,
    "rcd/ratio_to_heldout": 2.4,
    "golden/forget/ua": 0.12,
    "forget/loss": 0.0000123,
}
TOFU_ROW = {
    "forget/rouge_l_recall": 0.3,
    "forget/truth_ratio": 0.6,
    "forget_quality/truth_ratio_ks_pvalue": 0.4,
    "utility/model_utility": 0.5,
    "privleak": -12.5,
    "forget/extraction_strength": 0.1,
    "mia/min_k_04_auc": 0.6,
    "mia/min_k_plus_plus_auc": 0.6,
    "rcd/ratio_to_golden": 0.9,
}


def _report(row: dict, task: str = "classification", method: str = "ieu") -> dict:
    metrics = {
        "unlearned": dict(row),
        "golden": {k: v * 0.5 for k, v in row.items()},
        "original": {k: v * 2 for k, v in row.items()},
    }
    return {
        "method": method,
        "task": task,
        "scenario": "unit",
        "metrics": metrics,
        "hyperparameters": {"method": method, "ieu_decay": 4.0},
        "reproducibility": {"seed": 3, "world_size": 2, "effective_batch_per_part": 64},
        "forget_fingerprint": {"count": 5, "sha256": "ab" * 32},
        "versions": {"torch": "x"},
    }


def _entries(text: str) -> dict[str, str]:
    return dict(re.findall(r"@\w+\{(\w+),\n(.*?)\n\}", text, flags=re.S))


def _section(card: str, title: str) -> str:
    body = card[card.index(f"## {title}") + len(title) + 3 :]
    return body[: body.index("\n## ")] if "\n## " in body else body


def _table_header(markdown: str) -> list[str]:
    return [c.strip() for c in markdown.strip().splitlines()[0].strip("|").split("|")]


def test_both_seed_papers_are_cited_with_title_authors_year_and_arxiv_id():
    text = bibtex(set())
    found = _entries(text)
    assert len(found) == 2 and text.count("{") == text.count("}")
    for key in SEED_PAPERS:
        body = found[key]
        for field in ("title", "author", "year", "eprint"):
            assert re.search(rf"^  {field} = \{{.+\}}", body, flags=re.M), (key, field)
    assert "eprint = {2410.03833}" in text and "eprint = {2604.09391}" in text
    assert "Kaiyi Ji" in text and "Khoa Tran and Simon S. Woo" in text and "CVPR" in text


def test_every_entry_the_card_can_cite_is_in_the_shipped_bib_file():
    cited = set(SEED_PAPERS) | {key for _, key in METRIC_SOURCES}
    assert cited <= set(entries())
    for key, body in entries().items():
        assert body.count("{") == body.count("}") and re.search(
            r"^  eprint = \{\d{4}\.\d{5}\}", body, re.M
        ), key


def test_metric_sources_are_cited_for_the_metrics_the_report_has():
    tofu = set(references_for(set(TOFU_ROW)))
    assert {"maini2024tofu", "shi2025muse", "shi2024detecting", "zhang2025mink"} <= tofu
    assert "dorna2025openunlearning" in tofu and "fan2024salun" not in tofu
    classifier = set(references_for(set(CLASSIFIER_ROW)))
    assert {"fan2024salun", "chundawat2023zero", "kurmanji2023towards"} <= classifier
    assert "maini2024tofu" not in classifier


@pytest.mark.parametrize("row,task", [(CLASSIFIER_ROW, "classification"), (TOFU_ROW, "causal_lm")])
def test_the_summary_is_the_task_headline_and_the_full_table_one_row_per_metric(row, task):
    card = str(build_model_card(_report(row, task)))
    results = _section(card, "Results")
    summary, full = results.split("<details>")
    table = summary[summary.index("| model") :].split("\n\n")[0]
    assert _table_header(table) == ["model", *[k for k in headline_keys(task, {"m": row}) if k in row]]
    assert len(_table_header(table)) <= 9
    models = [line.split("|")[1].strip() for line in table.strip().splitlines()[2:]]
    assert models == ["original", "golden", "unlearned"]  # reference models first
    full = full[full.index("| metric") :]
    assert _table_header(full) == ["metric", "original", "golden", "unlearned"]
    lines = full[: full.index("</details>")].strip().splitlines()[2:]
    metrics = [line.split("|")[1].strip() for line in lines]
    assert metrics == sorted(k for k in row if not k.startswith("golden/"))  # golden's own column has them


def test_numbers_are_short_and_integers_stay_integers():
    card = str(build_model_card(_report(CLASSIFIER_ROW)))
    row = next(line for line in card.splitlines() if line.startswith("| rcd/steps |"))
    assert row == "| rcd/steps | 24 | 6 | 12 |"
    row = next(line for line in card.splitlines() if line.startswith("| forget/loss |"))
    assert row == "| forget/loss | 2.46e-05 | 6.15e-06 | 1.23e-05 |"
    row = next(line for line in card.splitlines() if line.startswith("| retain/accuracy |"))
    assert row == "| retain/accuracy | 1.980 | 0.495 | 0.990 |"


def test_hyperparameters_and_reproducibility_facts_are_on_the_card():
    card = str(build_model_card(_report(CLASSIFIER_ROW)))
    assert '"ieu_decay": 4.0' in _section(card, "Unlearning hyperparameters")
    facts = _section(card, "Reproducibility")
    for line in ("- seed: 3", "- world_size: 2", "- effective_batch_per_part: 64", "- torch: x"):
        assert line in facts


def test_the_card_round_trips_through_huggingface_hub(tmp_path):
    from huggingface_hub import ModelCard

    report = _report(TOFU_ROW, "causal_lm", method="npo")
    write_report(str(tmp_path), report)
    loaded = ModelCard.load(tmp_path / "README.md")
    assert "unlearning-npo" in loaded.data.tags and loaded.data.pipeline_tag == "text-generation"
    values = {r.metric_type: r.metric_value for r in loaded.data.eval_results}
    assert values["forget_quality"] == TOFU_ROW["forget_quality/truth_ratio_ks_pvalue"]
    assert values["privleak"] == TOFU_ROW["privleak"]
    assert "eprint = {2604.09391}" in loaded.text and "eprint = {2401.06121}" in loaded.text


def test_the_card_shows_the_figures_the_run_wrote():
    report = {**_report(CLASSIFIER_ROW), "plots": ["relearning_curves.png", "metrics.png"]}
    figures = _section(str(build_model_card(report)), "Figures")
    assert (
        "![metrics.png](metrics.png)" in figures
        and "![relearning_curves.png](relearning_curves.png)" in figures
    )
    assert "## Figures" not in str(build_model_card(_report(CLASSIFIER_ROW)))
