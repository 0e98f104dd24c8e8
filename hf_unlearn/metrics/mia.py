"""Membership-inference scores for causal LMs and MUSE's PrivLeak, as OpenUnlearning computes them
(``src/evals/metrics/mia/*.py``, ``privacy.py``).

Every score here is "higher = less likely a member" (a loss-like number), as in OpenUnlearning; the AUC is the
ROC AUC of telling the forget set (members) from held-out data (non-members) with it, so 1.0 means the forget
set is plainly still in the model, 0.5 indistinguishable, and below 0.5 the forget set looks *less* familiar
than unseen data (over-unlearning). Token-level scores use the completion tokens without the last one (EOS).

* LOSS: the mean completion loss ``L``.
* zlib: ``L / len(zlib.compress(text))``, the text being the decoded completion.
* Min-K%: ``-mean`` of the ``max(1, floor(k n))`` lowest token log-probs (k = 0.4 in OpenUnlearning's configs).
* Min-K%++: the same on ``z_t = (log p(y_t) - mu_t) / sigma_t``, ``mu_t`` and ``sigma_t^2`` the mean and
  variance of ``log p(v)`` under the model's own next-token distribution (variance clamped at 1e-6).
* Reference: ``L_model - L_reference`` (the reference here is the original model unless another is given).
* PrivLeak (MUSE): ``((1 - AUC) - (1 - AUC_golden)) / (1 - AUC_golden) x 100`` with the Min-K% AUC. 0 = like
  the golden model; **negative = under-unlearned** (the forget set is easier to detect than in the golden
  model), positive = over-unlearned.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from ..data import IGNORE_INDEX

MIA_K = 0.4  # OpenUnlearning's k for Min-K% and Min-K%++ (configs/eval/*_metrics/mia_min_k*.yaml)


def scored_positions(labels: torch.Tensor) -> torch.Tensor:
    """``[B, T-1]`` mask of the completion positions scored by token-level attacks: every labeled next token
    but the last one (the EOS), aligned with ``logits[:, :-1]``."""
    mask = labels[:, 1:] != IGNORE_INDEX
    last = mask.long().cumsum(-1) == mask.sum(-1, keepdim=True)
    return mask & ~last


def min_k_scores(logits: torch.Tensor, labels: torch.Tensor, k: float = MIA_K) -> torch.Tensor:
    """Min-K% score per example (``[B]``; higher = less likely a member; 0 without scored tokens)."""
    logp = F.log_softmax(logits[:, :-1].float(), -1)
    token_logp = logp.gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return _bottom_k_mean(token_logp, scored_positions(labels), k)


def min_k_plus_plus_scores(logits: torch.Tensor, labels: torch.Tensor, k: float = MIA_K) -> torch.Tensor:
    """Min-K%++ score per example (``[B]``; higher = less likely a member; 0 without scored tokens)."""
    logp = F.log_softmax(logits[:, :-1].float(), -1)
    p = logp.exp()
    mu = (p * logp).sum(-1)
    var = ((p * logp.square()).sum(-1) - mu.square()).clamp(min=1e-6)
    token_logp = logp.gather(-1, labels[:, 1:].clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return _bottom_k_mean((token_logp - mu) / var.sqrt(), scored_positions(labels), k)


def _bottom_k_mean(values: torch.Tensor, mask: torch.Tensor, k: float) -> torch.Tensor:
    n = mask.sum(-1)
    num = torch.clamp((n.float() * k).floor(), min=1)
    lowest, _ = values.masked_fill(~mask, math.inf).sort(-1)
    take = torch.arange(lowest.shape[-1], device=lowest.device)[None, :] < num[:, None]
    score = -torch.where(take, lowest, torch.zeros_like(lowest)).sum(-1) / num
    return torch.where(n > 0, score, torch.zeros_like(score))


def zlib_scores(losses: np.ndarray, texts: list[str]) -> np.ndarray:
    """``loss / len(zlib.compress(text))`` per example."""
    sizes = np.array([len(zlib.compress(text.encode("utf-8"))) for text in texts], dtype=float)
    return np.asarray(losses, dtype=float) / sizes


def membership_auc(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> float:
    """ROC AUC of a threshold attack: a higher score means "member". Non-finite scores are dropped."""
    from sklearn.metrics import roc_auc_score

    member = np.asarray(member_scores, dtype=float)
    nonmember = np.asarray(nonmember_scores, dtype=float)
    member, nonmember = member[np.isfinite(member)], nonmember[np.isfinite(nonmember)]
    if not len(member) or not len(nonmember):
        return math.nan
    labels = np.concatenate([np.ones(len(member)), np.zeros(len(nonmember))])
    return float(roc_auc_score(labels, np.concatenate([member, nonmember])))


def attack_auc(forget_scores: np.ndarray, holdout_scores: np.ndarray) -> float:
    """ROC AUC of telling forget (members) from holdout (non-members) with a "higher = non-member" score; the
    same number as OpenUnlearning's ``mia_auc`` (``roc_auc_score`` with forget labelled 0, holdout 1)."""
    return membership_auc(-np.asarray(forget_scores, dtype=float), -np.asarray(holdout_scores, dtype=float))


def privleak(auc: float, golden_auc: float) -> float:
    """MUSE's PrivLeak in percent: ``((1 - auc) - (1 - golden_auc)) / (1 - golden_auc) * 100``."""
    return ((1 - auc) - (1 - golden_auc)) / (1 - golden_auc + 1e-10) * 100
