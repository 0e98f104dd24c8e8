"""Forget quality: two-sample Kolmogorov-Smirnov test between per-example losses (an ``evaluate`` metric).

Shipped inside ``hf_unlearn``; load it offline by path::

    import evaluate
    from hf_unlearn.metrics import module_path

    ks = evaluate.load(module_path("ks_forget_quality"))
    ks.compute(predictions=model_and_golden_losses, references=[1] * n + [0] * n)
"""

import evaluate
from scipy.stats import ks_2samp

from hf_unlearn.metrics._two_sample import finite_samples, two_sample_info

_DESCRIPTION = """\
TOFU's forget-quality idea: compare the distribution of the unlearned model's per-example forget-set losses with
the golden model's (a model trained without the forget set) using a two-sample Kolmogorov-Smirnov test. A high
p-value means the two distributions cannot be told apart (good forgetting); a tiny one means the unlearned model
still treats the forget set differently from the golden model.

Inputs are a two-sample layout shared with ``mia_auc``: ``predictions`` are the values (per-example losses),
``references`` the sample they belong to (1 = the unlearned model, 0 = the golden model). The samples may have
different sizes. Non-finite values are dropped.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): per-example losses of both samples, concatenated.
    references (`list` of `int`): 1 for the unlearned model's values, 0 for the golden model's.
Returns:
    ks_pvalue (`float`): p-value of the two-sided two-sample KS test (1.0 for identical samples).
    ks_statistic (`float`): the KS statistic (largest distance between the empirical CDFs).
Examples:
    >>> ks = evaluate.load(module_path("ks_forget_quality"))
    >>> ks.compute(predictions=[0.5, 0.7, 0.5, 0.7], references=[1, 1, 0, 0])
    {'ks_pvalue': 1.0, 'ks_statistic': 0.0}
"""

_CITATION = """\
@inproceedings{maini2024tofu,
  title={TOFU: A Task of Fictitious Unlearning for LLMs},
  author={Maini, Pratyush and Feng, Zhili and Schwarzschild, Avi and Lipton, Zachary C. and Kolter, J. Zico},
  booktitle={Conference on Language Modeling (COLM)},
  year={2024}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class KsForgetQuality(evaluate.Metric):
    def _info(self):
        return two_sample_info(
            _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, "https://arxiv.org/abs/2401.06121"
        )

    def _compute(self, predictions, references):
        values, groups = finite_samples(predictions, references)
        model, golden = values[groups == 1], values[groups == 0]
        if not len(model) or not len(golden):
            raise ValueError("ks_forget_quality needs values of both samples (references 1 and 0).")
        result = ks_2samp(model, golden)
        return {"ks_pvalue": float(result.pvalue), "ks_statistic": float(result.statistic)}
