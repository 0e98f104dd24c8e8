"""TOFU's metric family on question/answer data, as OpenUnlearning computes it (``memorization.py``,
``privacy.py``, ``utility.py``, ``utils.py``).

``L(a | q)`` is the mean completion loss over the answer tokens (EOS included, as ``evaluate_probability``).

* Probability: ``P(a | q) = exp(-L(a | q))`` per question, averaged.
* Truth ratio per question: ``R = exp(-mean_k L(a~_k | q)) / (exp(-L(a_para | q)) + 1e-10)`` over the K
  perturbed answers ``a~_k`` and the paraphrased answer ``a_para``.
* Aggregates: forget ``mean(min(R, 1 / (R + 1e-10)))`` (1 = the model cannot tell true from false: ideal after
  unlearning); retain-side ``mean(max(0, 1 - R))`` (higher = prefers the true answer).
* Forget quality: the KS-test p-value between the truth ratios of the model and of the golden model on the
  forget set (OpenUnlearning feeds ``1 / (R + 1e-10)``; KS is rank-based, the p-value is the same).
* Model utility: the harmonic mean of the retain-side probability, ROUGE-L recall and truth ratio, and of the
  same three on every utility split given (TOFU: real authors and world facts, where the probability is
  normalised over the options, ``P(a) / (P(a) + sum_k P(a~_k))``, and the truth ratio compares the perturbed
  answers with the answer itself).

Datasets carry ``paraphrased_completion`` (str) and ``perturbed_completions`` (list of str) next to the
prompt/completion (plain, conversational or ``messages`` form).
"""

from __future__ import annotations

from typing import Any

import numpy as np

PARAPHRASED = "paraphrased_completion"
PERTURBED = "perturbed_completions"


def probability(losses: np.ndarray) -> np.ndarray:
    return np.exp(-np.asarray(losses, dtype=float))


def truth_ratio(paraphrased_losses: np.ndarray, perturbed_losses: np.ndarray) -> np.ndarray:
    """``R`` per question from ``[N]`` paraphrased losses and ``[N, K]`` perturbed losses."""
    perturbed = np.asarray(perturbed_losses, dtype=float)
    return np.exp(-perturbed.mean(axis=1)) / (np.exp(-np.asarray(paraphrased_losses, dtype=float)) + 1e-10)


def normalised_probability(correct_losses: np.ndarray, perturbed_losses: np.ndarray) -> np.ndarray:
    """``P(a) / (P(a) + sum_k P(a~_k) + 1e-10)`` per question from ``[N]`` and ``[N, K]`` losses: TOFU's
    probability on the real-authors and world-facts splits (OpenUnlearning's ``probability_w_options``)."""
    correct = probability(correct_losses)
    wrong = probability(perturbed_losses).sum(axis=1)
    return correct / (correct + wrong + 1e-10)


def truth_ratio_forget_score(ratios: np.ndarray) -> float:
    ratios = np.asarray(ratios, dtype=float)
    return float(np.mean(np.minimum(ratios, 1 / (ratios + 1e-10))))


def truth_ratio_retain_score(ratios: np.ndarray) -> float:
    return float(np.mean(np.maximum(0.0, 1 - np.asarray(ratios, dtype=float))))


def forget_quality(model_ratios: np.ndarray, golden_ratios: np.ndarray) -> float:
    from scipy.stats import ks_2samp

    return float(
        ks_2samp(1 / (np.asarray(model_ratios) + 1e-10), 1 / (np.asarray(golden_ratios) + 1e-10)).pvalue
    )


def model_utility(values: list[float]) -> float:
    from scipy.stats import hmean

    return float(hmean(values))


def has_truth_ratio_columns(data: Any) -> bool:
    from ..data import to_dataset

    columns = set(to_dataset(data, "dataset").column_names)
    return {PARAPHRASED, PERTURBED} <= columns


def answer_variants(data: Any, name: str) -> tuple[list[dict], list[list[dict]]]:
    """The dataset with each completion replaced by its paraphrase, and, for each perturbed position k, by the
    k-th perturbed answer: ``(paraphrased_rows, [perturbed_rows_k for k])`` of raw rows."""
    from ..data import to_dataset

    rows = to_dataset(data, name).to_list()
    return [_with_answer(row, row[PARAPHRASED]) for row in rows], perturbed_variants(data, name)


def perturbed_variants(data: Any, name: str) -> list[list[dict]]:
    """For each perturbed position k, the dataset with each completion replaced by its k-th perturbed answer."""
    from ..data import to_dataset

    rows = to_dataset(data, name).to_list()
    if not rows or PERTURBED not in rows[0]:
        raise ValueError(f"{name} needs a {PERTURBED!r} column (a list of wrong answers per example).")
    counts = {len(row[PERTURBED]) for row in rows}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(
            f"{name}: every example needs the same number (>= 1) of {PERTURBED!r}; found {counts}."
        )
    return [[_with_answer(row, row[PERTURBED][k]) for row in rows] for k in range(counts.pop())]


def _with_answer(row: dict, answer: str) -> dict:
    """``row`` (plain, conversational or messages form) with its (last) answer replaced by ``answer``."""
    if "messages" in row:
        messages = list(row["messages"])
        last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
        messages[last] = {**messages[last], "content": answer}
        return {"messages": messages}
    if isinstance(row["prompt"], list):
        return {"prompt": row["prompt"], "completion": [{"role": "assistant", "content": answer}]}
    return {"prompt": row["prompt"], "completion": answer}
