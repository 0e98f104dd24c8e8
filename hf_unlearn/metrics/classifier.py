"""The classifier metrics of the image-unlearning literature, in SalUn's layout (Fan et al., 2024; Jia et al.,
2023): unlearning accuracy, the SVC membership attack's forget efficacy, and the average gap to retraining.

``mia/efficacy`` follows ``SVC_MIA_forget_efficacy["confidence"]`` of the SalUn / sparse-unlearning code: an
RBF ``SVC(C=3, gamma="auto")`` is fit on the true-class probability of the first ``len(test)`` retain examples
(members, label 1) and of the test examples (non-members, label 0); the efficacy is the fraction of forget
examples it predicts as non-members (higher: the forget set looks unseen).
"""

from __future__ import annotations

import math

import numpy as np

#: The four columns of SalUn's "Avg. Gap" (to the retrained model).
GAP_KEYS = ("forget/ua", "retain/accuracy", "test/accuracy", "mia/efficacy")


def svc_mia_efficacy(retain_conf: np.ndarray, test_conf: np.ndarray, forget_conf: np.ndarray) -> float:
    """Fraction of forget examples an SVC on true-class probabilities predicts as non-members; the SVC learns
    members from the first ``len(test_conf)`` retain examples and non-members from the test examples."""
    from sklearn.svm import SVC

    members = np.asarray(retain_conf, dtype=np.float64)[: len(test_conf)]
    shadow = np.concatenate([members, np.asarray(test_conf, dtype=np.float64)]).reshape(-1, 1)
    is_member = np.concatenate([np.ones(len(members)), np.zeros(len(test_conf))])
    if len(set(is_member)) < 2 or len(forget_conf) == 0:
        return math.nan
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(shadow, is_member)
    return float(1.0 - attack.predict(np.asarray(forget_conf, dtype=np.float64).reshape(-1, 1)).mean())


def efficacy_metrics(prefix: str, losses: dict[str, np.ndarray]) -> dict[str, float]:
    """``{prefix}mia/efficacy`` from per-example cross-entropies of the retain, test and forget splits (the
    true-class probability is ``exp(-loss)``)."""
    if not {"retain", "test", "forget"} <= set(losses):
        return {}
    conf = {name: np.exp(-np.asarray(values, dtype=np.float64)) for name, values in losses.items()}
    return {f"{prefix}mia/efficacy": svc_mia_efficacy(conf["retain"], conf["test"], conf["forget"])}


def average_gap(metrics: dict[str, float]) -> dict[str, float]:
    """``gap/average``: the mean absolute gap to the golden model over UA, RA, TA and MIA-efficacy (fractions,
    not SalUn's percentage points); left out unless all eight values are there."""
    pairs = [(metrics.get(key), metrics.get(f"golden/{key}")) for key in GAP_KEYS]
    if any(a is None or b is None for a, b in pairs):
        return {}
    return {"gap/average": float(np.mean([abs(a - b) for a, b in pairs]))}
