"""The two-sample layout the shipped ``evaluate`` modules share (``modules/mia_auc``, ``modules/ks_forget_quality``):
``predictions`` are one value per example, ``references`` the sample it belongs to (1 or 0).

The module scripts import this by its absolute name: ``evaluate.load`` copies a script into its own cache and
imports it from there, where a relative import would not resolve.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np


def two_sample_info(
    description: str, citation: str, inputs_description: str, reference_url: str
) -> evaluate.MetricInfo:
    """The ``MetricInfo`` of a two-sample metric: float values, int sample labels."""
    return evaluate.MetricInfo(
        module_type="metric",
        description=description,
        citation=citation,
        inputs_description=inputs_description,
        features=datasets.Features(
            {"predictions": datasets.Value("float64"), "references": datasets.Value("int32")}
        ),
        reference_urls=[reference_url],
    )


def finite_samples(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    """``(values, groups)`` as arrays, without the examples whose value is not finite."""
    values = np.asarray(predictions, dtype=float)
    groups = np.asarray(references, dtype=int)
    keep = np.isfinite(values)
    return values[keep], groups[keep]
