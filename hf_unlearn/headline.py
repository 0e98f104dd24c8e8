"""The few metrics that summarize an unlearning result, per kind of task: the quickstart table, the stage
lines and the model card's summary lead with them (the full set stays in the reports)."""

from __future__ import annotations

HEADLINE_KEYS = {
    # SalUn's layout (UA, RA, TA, MIA-efficacy, average gap to golden), then the loss attack and RCD
    "classification": [
        "forget/ua",
        "retain/accuracy",
        "test/accuracy",
        "mia/efficacy",
        "gap/average",
        "mia/auc",
        "rcd/ratio_to_golden",
        "rcd/ratio_to_heldout",
    ],
    "causal_lm": [
        "forget/loss",
        "retain/token_accuracy",
        "test/perplexity",
        "mia/auc",
        "forget_quality/ks_pvalue",
        "rcd/steps",
        "rcd/ratio_to_golden",
        "rcd/ratio_to_heldout",
    ],
    # TOFU-shaped data (paraphrased and perturbed answers, generations): OpenUnlearning's headline numbers
    "tofu": [
        "forget/rouge_l_recall",
        "forget/truth_ratio",
        "forget_quality/truth_ratio_ks_pvalue",
        "utility/model_utility",
        "privleak",
        "forget/extraction_strength",
        "rcd/ratio_to_golden",
        "rcd/ratio_to_heldout",
    ],
}

#: The shortest summary (one line per model in the quickstart's stage lines).
SHORT_KEYS = {
    "classification": ["forget/accuracy", "retain/accuracy", "rcd/ratio_to_golden"],
    "causal_lm": ["forget/loss", "retain/token_accuracy", "rcd/ratio_to_golden"],
    "tofu": [
        "forget/rouge_l_recall",
        "forget_quality/truth_ratio_ks_pvalue",
        "utility/model_utility",
        "rcd/ratio_to_golden",
    ],
}

#: A result with these keys is summarized the TOFU way.
TOFU_MARKERS = ("utility/model_utility", "forget_quality/truth_ratio_ks_pvalue")


def summary_kind(task: str, metrics: dict[str, dict]) -> str:
    """``"tofu"`` when any model of ``metrics`` (``{model name: {key: value}}``) has TOFU keys, else ``task``."""
    return "tofu" if any(key in row for row in metrics.values() for key in TOFU_MARKERS) else task


def headline_keys(task: str, metrics: dict[str, dict]) -> list[str]:
    """The headline keys for ``metrics`` of a ``task`` (TOFU's when the data had TOFU's columns)."""
    return list(HEADLINE_KEYS[summary_kind(task, metrics)])


def short_keys(task: str, metrics: dict[str, dict]) -> list[str]:
    """The one-line summary keys for ``metrics`` of a ``task``."""
    return list(SHORT_KEYS[summary_kind(task, metrics)])
