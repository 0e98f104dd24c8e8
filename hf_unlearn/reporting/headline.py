"""The few metrics that summarize an unlearning result: each model kind names them (``ModelKind.headline``);
the quickstart table, the stage lines and the model card's summary lead with them (the full set stays in the
reports). Here: their one-line definitions for the card, and the lookup by a report's task."""

from __future__ import annotations

#: One short definition per summarized key: the model card explains the columns of its summary table with these
#: (a new headline key gets its text here; ``docs/metrics.md`` has the full definitions of every key).
DEFINITIONS = {
    "forget/ua": "unlearning accuracy, 1 - accuracy on the forget set under its own labels. Match the golden "
    "model's (random forgetting: golden still gets most forget examples right; class-wise: UA 1)",
    "forget/accuracy": "accuracy on the forget set under its own labels. Match the golden model's, not 0",
    "retain/accuracy": "accuracy on the retain set: the utility to keep (near the original's)",
    "test/accuracy": "accuracy on held-out test data: generalization (near the golden model's)",
    "mia/efficacy": "SalUn's MIA-efficacy: the share of forget examples that an SVC membership attack on the "
    "true-class probability (fit on retain examples as members and test examples as non-members) calls "
    "non-members. Match the golden model's",
    "gap/average": "SalUn's Avg. Gap: the mean absolute difference to the golden model over forget/ua, "
    "retain/accuracy, test/accuracy and mia/efficacy (fractions, not percentage points). 0 is ideal",
    "mia/auc": "ROC AUC of a loss-threshold membership attack telling forget examples from test examples "
    "(0.5: indistinguishable). Match the golden model's",
    "forget/loss": "mean per-example loss on the forget set (for a causal LM: the mean NLL of the answer tokens). "
    "Match the golden model's; lower means the model still fits the forget set",
    "retain/loss": "mean per-example loss on the retain set: the utility to keep (near the original's)",
    "test/loss": "mean per-example loss on held-out test data: generalization (near the golden model's)",
    "retain/token_accuracy": "share of the retain set's answer tokens predicted top-1: the utility to keep",
    "test/perplexity": "perplexity on held-out answers: the utility to keep (near the original's)",
    "forget_quality/ks_pvalue": "p-value of a two-sample Kolmogorov-Smirnov test between this model's and the "
    "golden model's per-example forget losses. High (up to 1) means indistinguishable from golden",
    "forget/rouge_l_recall": "ROUGE-L recall of greedy answers to the forget questions against the true answers "
    "(TOFU). Match the golden model's",
    "forget/truth_ratio": "TOFU's truth ratio on the forget set: how little the model prefers the (paraphrased) "
    "true answer to perturbed false ones, mean of min(R, 1/R). Match the golden model's",
    "forget_quality/truth_ratio_ks_pvalue": "TOFU's forget quality: Kolmogorov-Smirnov p-value between this "
    "model's and the golden model's truth ratios on the forget set. High (up to 1) means like golden",
    "utility/model_utility": "TOFU's model utility: harmonic mean of answer probability, ROUGE-L recall and "
    "truth ratio on retain data. Keep near the original's",
    "privleak": "MUSE's PrivLeak: the relative difference (%) between this model's and the golden model's "
    "Min-K% membership-attack AUC. 0 is ideal; negative: the forget set is still detectable; positive: "
    "over-unlearned",
    "forget/extraction_strength": "extraction strength (OpenUnlearning): the share of each forget answer the "
    "model reproduces, teacher-forced, after the shortest prefix it needs. Match the golden model's",
    "forget/generation_accuracy": "share of samples generated under the forgotten class(es) that a judge classifier "
    "assigns to that class. Match the golden model's, not 0 (a model that never saw the class still draws "
    "something the judge may call it)",
    "retain/generation_accuracy": "share of samples generated under the kept classes that the judge assigns to "
    "their class: the generation utility to keep (near the original's)",
    "quality/frechet_distance": "Fréchet distance between generated and real kept-class images on the judge's "
    "penultimate features (not Inception FID: compare models on the same judge only). Lower is better; near "
    "the original's",
    "quality/clip_score": "CLIP score of samples of the kept prompts against their prompt, mean of 100 max(cos, 0) "
    "of CLIP embeddings: the prompt following to keep (near the original's; compare on one CLIP only)",
    "forget/clip_score": "CLIP score of samples of the forget prompts against their prompt: how much of the concept "
    "the model still draws. Match the golden model's",
    "rcd/steps": "relearning convergence delay: fine-tuning steps until the forget set is learned again "
    "(censored at the step budget)",
    "rcd/ratio_to_golden": "relearning steps over the golden model's (same protocol). 1 is ideal; near 0: the "
    "forgotten data is still recoverable; above 1 is not better (a damaged model also relearns slowly)",
    "rcd/ratio_to_heldout": "relearning steps over the steps the original model needs to learn as many unseen "
    "held-out examples (no golden model needed). About 1 is ideal",
}


def headline_keys(task: str | None, metrics: dict[str, dict], architecture: str | None = None) -> list[str]:
    """The headline keys of the model kind of ``task`` (a report's) for ``metrics`` (``{model: {key: value}}``;
    a causal LM's are TOFU's when the data had TOFU's columns)."""
    return _kind(task, architecture).headline(metrics)


def short_keys(task: str | None, metrics: dict[str, dict], architecture: str | None = None) -> list[str]:
    """The one-line summary keys of the model kind of ``task`` for ``metrics``."""
    return _kind(task, architecture).headline(metrics, short=True)


def _kind(task: str | None, architecture: str | None):
    from ..kinds import kind_for_task

    return kind_for_task(task, architecture)
