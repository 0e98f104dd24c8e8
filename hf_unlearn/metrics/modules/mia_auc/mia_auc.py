"""Membership-inference AUC of a threshold attack on per-example scores (an ``evaluate`` metric).

Shipped inside ``hf_unlearn``; load it offline by path::

    import evaluate
    from hf_unlearn.metrics import module_path

    mia = evaluate.load(module_path("mia_auc"))
    mia.compute(predictions=losses, references=is_member)
"""

import evaluate
import numpy as np
from sklearn.metrics import roc_auc_score

from hf_unlearn.metrics._two_sample import finite_samples, two_sample_info

_DESCRIPTION = """\
ROC AUC of a membership-inference attack that thresholds one score per example. By default the scores are
per-example losses and a *lower* loss means "member" (the loss-threshold attack): for unlearning, members are the
forget-set examples and non-members held-out test examples. An ideal unlearned model has the AUC of a model that
never saw the forget set (the golden model), often near 0.5; the original model that memorized the forget set
scores higher. Non-finite scores are dropped.

Inputs are a two-sample layout shared with ``ks_forget_quality``: ``predictions`` are the values, ``references``
the group (1 = member / forget, 0 = non-member / test), so the two modules combine with ``evaluate.combine``.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `float`): one score per example (by default the per-example loss).
    references (`list` of `int`): 1 for members (forget set), 0 for non-members (held-out data).
    higher_is_member (`bool`, defaults to `False`): set True for scores where higher means "member"
        (e.g. Min-K% Prob, log-likelihood).
Returns:
    auc (`float`): ROC AUC of the attack in [0, 1]; 0.5 is chance.
Examples:
    >>> mia = evaluate.load(module_path("mia_auc"))
    >>> mia.compute(predictions=[0.1, 0.2, 2.0, 3.0], references=[1, 1, 0, 0])
    {'auc': 1.0}
"""

_CITATION = """\
@inproceedings{yeom2018privacy,
  title={Privacy Risk in Machine Learning: Analyzing the Connection to Overfitting},
  author={Yeom, Samuel and Giacomelli, Irene and Fredrikson, Matt and Jha, Somesh},
  booktitle={IEEE Computer Security Foundations Symposium (CSF)},
  year={2018}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MiaAuc(evaluate.Metric):
    def _info(self):
        return two_sample_info(
            _DESCRIPTION, _CITATION, _KWARGS_DESCRIPTION, "https://arxiv.org/abs/1709.01604"
        )

    def _compute(self, predictions, references, higher_is_member=False):
        scores, groups = finite_samples(predictions, references)
        if not set(np.unique(groups)) <= {0, 1}:
            raise ValueError("references must be 1 (member) or 0 (non-member).")
        if len(np.unique(groups)) < 2:
            raise ValueError("mia_auc needs both members (1) and non-members (0).")
        signed = scores if higher_is_member else -scores
        return {"auc": float(roc_auc_score(groups, signed))}
