"""DR's three variants as the seed paper states them, on hand-made classifier logits with known values."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from hf_unlearn.methods import Part, StepInputs, get_method

# 3 classes; retain example of class 0, forget example of class 1 with the fixed wrong label 2
RETAIN = Part(logits=torch.tensor([[2.0, 0.0, 0.0]]), labels=torch.tensor([0]))
FORGET = Part(logits=torch.tensor([[0.0, 1.0, 0.0]]), labels=torch.tensor([1]), wrong_label=torch.tensor([2]))


def _nll(logits: list[float], label: int) -> float:
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def _kl_wrong(logits: list[float], label: int) -> float:
    """KL(q || p) with q uniform over the classes other than ``label``."""
    z = math.log(sum(math.exp(v) for v in logits))
    wrong = [k for k in range(len(logits)) if k != label]
    return sum((1 / len(wrong)) * (math.log(1 / len(wrong)) - (logits[k] - z)) for k in wrong)


@pytest.mark.parametrize(
    "variant, expected",
    [
        ("kl", lambda a: _nll([2, 0, 0], 0) + a * _kl_wrong([0, 1, 0], 1)),
        ("ce", lambda a: _nll([2, 0, 0], 0) + a * _nll([0, 1, 0], 2)),
        ("inverse", lambda a: a * _nll([2, 0, 0], 0) + _nll([0, 1, 0], 2)),
    ],
)
def test_dr_variant_losses(variant, expected):
    alpha = 0.3
    args = SimpleNamespace(dr_alpha=alpha, dr_variant=variant, seed=0, forget_loss_cap=None)
    method = get_method("dr")(args, "classification")
    out = method.compute(StepInputs(retain=RETAIN, forget=FORGET))
    assert float(out.loss) == pytest.approx(expected(alpha), rel=1e-6)
    assert "dr_regularizer" in out.metrics


@pytest.mark.parametrize("kind", ["classifier", "causal_lm"])
def test_inverse_dr_trains_both_kinds_of_model(tmp_path, mislabeled, qa, kind):
    from conftest import make_config

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.tiny import tiny_causal_lm, tiny_classifier

    task = mislabeled if kind == "classifier" else qa
    model = tiny_classifier(task.tokenizer) if kind == "classifier" else tiny_causal_lm(task.tokenizer)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = make_config(tmp_path, method="dr", dr_variant="inverse", dr_alpha=0.5, learning_rate=1e-3)
    trainer = UnlearningTrainer(
        model, config, forget_dataset=task.forget, retain_dataset=task.retain, processing_class=task.tokenizer
    )
    trainer.train()
    logged = [e for e in trainer.state.log_history if "dr_regularizer" in e]
    assert logged and all(math.isfinite(e["dr_regularizer"]) for e in logged)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
