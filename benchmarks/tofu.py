"""``tofu``: TOFU's headline numbers on the ``tofu-llama`` scenario for the original, the golden model and each
method: forget ROUGE-L of greedy answers, forget truth ratio, forget quality (KS p-value of the truth ratios
against golden's), model utility, PrivLeak, extraction strength and the RCD ratio.

Targets, as the issue states the claim:

* ``ft`` keeps *generating* the forgotten answers: its forget ROUGE-L stays above the midpoint between golden's
  and the original's;
* every unlearning method brings forget ROUGE-L within 0.15 of golden's, with forget quality >= 0.05 (its
  truth ratios are not distinguishable from golden's at 5%), model utility within 0.03 of the original's and
  PrivLeak within +-25 (MUSE's sign: negative = still recognizable, positive = over-unlearned).

Uses ``benchmarks.quality`` (``evaluate_scenario``: the scenario's unlearning defaults, relearning protocol and
evaluation options, ``generation=True``); the scenario cache is ``benchmarks/_work/scenarios``.
"""

from __future__ import annotations

from hf_unlearn.kinds import kind_for_task

from . import common
from .quality import COMPARED, evaluate_scenario, golden_gap_target

NAME = "tofu"
SCENARIO = "tofu-llama"
#: the baselines and seed methods, then the compared LM methods of ``quality.COMPARED`` (salun is a classifier
#: method at heart: random labels)
METHODS = ["ft", "grad_diff", "npo", "dr", "ieu", *(m for m in COMPARED if m != "salun")]
UNLEARNING = METHODS[1:]
COLUMNS = [*kind_for_task("causal_lm").tofu_headline_keys, "retain/rouge_l_recall", "seconds"]


def targets_of(result: dict) -> list[dict]:
    m = result["metrics"]
    original, golden = m["original"], m["golden"]
    rouge = "forget/rouge_l_recall"
    rows = []
    if "ft" in m:
        midpoint = (original[rouge] + golden[rouge]) / 2
        rows.append(
            common.target(
                "ft keeps generating the forget answers",
                f"ft's forget ROUGE-L (original {original[rouge]:.3f}, golden {golden[rouge]:.3f}) >= the midpoint",
                m["ft"][rouge],
                midpoint,
                op=">=",
            )
        )
    for method in (k for k in UNLEARNING if k in m):
        row = m[method]
        rows += [
            golden_gap_target(
                f"{method}: forget ROUGE-L vs golden",
                rouge,
                row,
                golden,
                0.15,
                "ROUGE-L",
                shown="forget ROUGE-L",
            ),
            common.target(
                f"{method}: forget quality",
                "KS-test p-value of the forget truth ratios against golden's",
                row["forget_quality/truth_ratio_ks_pvalue"],
                0.05,
                op=">=",
                unit="p-value",
            ),
            common.target(
                f"{method}: model utility vs original",
                f"original's model utility - this (original {original['utility/model_utility']:.3f})",
                original["utility/model_utility"] - row["utility/model_utility"],
                0.03,
                unit="utility",
            ),
            common.target(
                f"{method}: PrivLeak",
                "MUSE's PrivLeak of the Min-K% attack relative to golden's AUC (0 = like golden)",
                row["privleak"],
                25.0,
                op="abs<=",
                unit="%",
            ),
        ]
    return rows


def table_of(result: dict) -> str:
    rows = [{"model": name, **row} for name, row in result["metrics"].items()]
    return common.markdown_table(rows, COLUMNS, first="model")


def run(quick: bool = False, threads: int | None = None) -> dict:
    report = common.Report(NAME, quick, threads)
    methods = ["ft", "ieu"] if quick else METHODS
    result = evaluate_scenario(SCENARIO, methods, tuned={})
    settings = ", ".join(f"{k}={v}" for k, v in result["defaults"].items())
    report.targets = targets_of(result)
    report.details = {SCENARIO: result}
    report.tables = [{"title": f"{SCENARIO} (defaults: {settings}; seed 0)", "markdown": table_of(result)}]
    report.notes = [
        f"{SCENARIO}: sizes {result['sizes']}; reference training {result['train_seconds']} s; relearning "
        f"protocol {result['relearn_protocol']}; evaluation of {len(result['metrics'])} models (with "
        f"generation) and their RCD took {result['eval_seconds']:.0f} s.",
        "Every method runs with the scenario's defaults and the default forget-loss cap; no setting was tuned "
        "against the golden model. Over-unlearning shows as PrivLeak >> 0 (the forget set less member-like than "
        "held-out people), which held-out-referenced stopping (in the defaults) is there to prevent.",
    ]
    return report.write()


if __name__ == "__main__":
    common.cli(run)
