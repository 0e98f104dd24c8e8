"""What a causal LM *generates* and *reproduces*: greedy generations scored by ROUGE-L against the reference
completion (TOFU / MUSE), and the teacher-forced exact memorization and extraction strength.

Conventions follow OpenUnlearning (``src/evals/metrics/utils.py``, ``memorization.py``):

* Generation: the prompt is everything before the (last) completion of each example, left-padded, greedy
  (``do_sample=False``), up to ``max_new_tokens`` (TOFU: 200), stopped at EOS; the text is decoded without
  special tokens, cut at the EOS text and stripped. The reference is the decoded completion tokens.
* ROUGE-L: ``rouge_score.rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(reference, generation)``:
  recall (TOFU's ROUGE) and F1 (MUSE's VerbMem / KnowMem).
* EM and ES are teacher-forced over the completion tokens *without the last one* (the EOS, OpenUnlearning
  PR #101): ``EM = mean_t 1[argmax_t = y_t]``; ``ES = 1 - k / T`` with ``k`` the smallest index from which the
  argmax reproduces the rest of the completion. As in OpenUnlearning's loop, ``k`` is at most ``T - 1``, so an
  example whose last token is also wrong scores ``1 / T``, not 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..data import IGNORE_INDEX, unwrap_model
from ._passes import eval_mode, gather_from_processes, model_device, this_process_share

TOFU_MAX_NEW_TOKENS = 200


# -- pure functions ---------------------------------------------------------------------------------------
def rouge_l(generations: list[str], references: list[str]) -> dict[str, np.ndarray]:
    """Per-example ROUGE-L ``{"recall", "f1"}`` of each generation against its reference (stemmed)."""
    from rouge_score import rouge_scorer

    if len(generations) != len(references):
        raise ValueError(f"{len(generations)} generations for {len(references)} references.")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [scorer.score(ref, gen)["rougeL"] for gen, ref in zip(generations, references)]
    return {
        "recall": np.array([s.recall for s in scores], dtype=float),
        "f1": np.array([s.fmeasure for s in scores], dtype=float),
    }


def memorization_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """Teacher-forced ``{"exact_memorization", "extraction_strength"}`` per example (``[B]``; NaN for an
    example with fewer than two completion tokens) from ``logits [B, T, V]`` and ``labels [B, T]``."""
    preds = logits[:, :-1].argmax(-1)
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    # drop the last scored position of each example (the EOS)
    last = mask.long().cumsum(-1) == mask.sum(-1, keepdim=True)
    mask = mask & ~last
    correct = (preds == targets) & mask
    n = mask.sum(-1)
    em = correct.sum(-1).float() / n.clamp(min=1)
    # suffix_ok[t]: every scored position from t on is correct; k* = first scored position where it holds
    wrong = (mask & ~correct).flip(-1).cumsum(-1).flip(-1)
    suffix_ok = (wrong == 0) & mask
    rank = mask.long().cumsum(-1) - 1  # index of each scored position among the scored ones
    first_ok = torch.where(suffix_ok, rank, torch.full_like(rank, torch.iinfo(rank.dtype).max)).min(-1).values
    k = torch.minimum(first_ok, (n - 1).clamp(min=0))
    es = 1.0 - k.float() / n.clamp(min=1)
    nan = torch.full_like(em, float("nan"))
    return {
        "exact_memorization": torch.where(n > 0, em, nan),
        "extraction_strength": torch.where(n > 0, es, nan),
    }


# -- passes over a dataset ------------------------------------------------------------------------------------
def completion_start(labels: list[int]) -> int:
    """Position where the last completion span of a canonical row starts (its prompt is everything before)."""
    scored = [i for i, y in enumerate(labels) if y != IGNORE_INDEX]
    if not scored:
        raise ValueError("An example has no completion tokens to generate.")
    start = scored[-1]
    while start - 1 >= 0 and labels[start - 1] != IGNORE_INDEX:
        start -= 1
    return start


def references_of(rows: list[dict], tokenizer: Any) -> list[str]:
    """The decoded last completion of each row (special tokens skipped, stripped)."""
    texts = []
    for row in rows:
        start = completion_start(row["labels"])
        end = start
        while end < len(row["labels"]) and row["labels"][end] != IGNORE_INDEX:
            end += 1
        texts.append(tokenizer.decode(row["input_ids"][start:end], skip_special_tokens=True).strip())
    return texts


@torch.no_grad()
def generate_completions(
    model: torch.nn.Module,
    rows: list[dict],
    tokenizer: Any,
    max_new_tokens: int = TOFU_MAX_NEW_TOKENS,
    batch_size: int = 16,
    progress: bool = False,
    attention_mask: str = "length",
    stop: tuple[str, ...] = (),
) -> list[str]:
    """Greedy generations for the prompts of canonical ``rows``: batched, left-padded, stopped at EOS.
    Each text is cut at the EOS text and at every string of ``stop`` (MUSE's knowmem: ``"\\n\\n"``,
    ``"Question:"``, ...), in that order, before it is stripped, as OpenUnlearning's ``eval_text_similarity``.
    ``attention_mask="pad_token"`` masks every prompt token equal to the pad id (OpenUnlearning's collator)."""
    from tqdm.auto import tqdm

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}.")
    prompts = [row["input_ids"][: completion_start(row["labels"])] for row in rows]
    limit = getattr(unwrap_model(model).config, "max_position_embeddings", None)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    device = model_device(model)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    chunks = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    done = []  # (row positions, texts) of the chunks this process generated
    with eval_mode(model):
        for positions, keep in tqdm(
            this_process_share(chunks), desc="generating", disable=not progress, leave=False
        ):
            batch = [prompts[i] for i in positions]
            width = max(len(p) for p in batch)
            new_tokens = max_new_tokens if limit is None else max(1, min(max_new_tokens, limit - width))
            ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for j, p in enumerate(batch):  # left padding: the generation continues right after each prompt
                ids[j, width - len(p) :] = torch.tensor(p, dtype=torch.long)
                mask[j, width - len(p) :] = 1
            if attention_mask == "pad_token":
                mask = (ids != pad_id).long()
            out = model.generate(
                input_ids=ids.to(device),
                attention_mask=mask.to(device),
                max_new_tokens=new_tokens,
                do_sample=False,
                num_beams=1,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
            )
            if keep:  # else a filler pass (see this_process_share)
                done.append(
                    (positions, [_clean(tokenizer, out[j, width:].tolist(), stop) for j in range(len(batch))])
                )
    texts: list[str] = [""] * len(prompts)
    for positions, generated in (chunk for part in gather_from_processes(done) for chunk in part):
        for i, text in zip(positions, generated):
            texts[i] = text
    return texts


def _clean(tokenizer: Any, ids: list[int], stop: tuple[str, ...] = ()) -> str:
    text = tokenizer.decode(ids, skip_special_tokens=True)
    for word in (tokenizer.eos_token or "", *stop):
        if word:
            text = text.split(word)[0]
    return text.strip()
