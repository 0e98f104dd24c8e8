"""Per-token LM losses without the whole ``[B, T, V]`` logits.

A causal LM's logits are its LM head applied to the last hidden states, and every loss of ``losses.py`` needs
them one position at a time. ``capture_head_inputs`` lets the model's own forward pass run (PEFT, DDP and
gradient checkpointing included) but hands its LM head a zero-length input, keeping the hidden states the head
would have seen; ``ChunkedLogits`` holds them with the head and evaluates a per-position function
``chunk_size`` positions at a time under ``torch.utils.checkpoint``, so that the backward pass recomputes each
chunk's logits instead of storing them. ``find_head`` checks on a probe that the head (plus the model's
final-logit scaling or soft-capping, read from its config) reproduces the model's logits, and returns None
when it does not: the caller then keeps the full logits.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

logger = logging.getLogger(__name__)

PROBE_TOKENS = 16


@dataclass(frozen=True)
class LMHead:
    """``module`` (the model's output embeddings, adapters included) followed by the model's logit ``steps``:
    ``("mul", s)``, ``("div", s)`` or ``("softcap", c)`` (``c * tanh(x / c)``), applied in the model's order.
    ``context`` (e.g. PEFT's ``disable_adapter``) wraps every call; ``trainable=False`` runs without gradient
    (the frozen original)."""

    module: torch.nn.Module
    num_classes: int
    steps: tuple[tuple[str, float], ...] = ()
    context: Callable[[], Any] | None = None
    trainable: bool = True

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        with self.context() if self.context else nullcontext():
            with nullcontext() if self.trainable else torch.no_grad():
                return apply_steps(self.module(hidden), self.steps)

    def frozen(self, context: Callable[[], Any] | None = None) -> LMHead:
        """This head without gradient, under ``context`` (the adapters-disabled original with PEFT)."""
        return replace(self, context=context, trainable=False)


def apply_steps(logits: torch.Tensor, steps: Sequence[tuple[str, float]]) -> torch.Tensor:
    """The model's own operations after its LM head, in its order (the same ops give the same numbers)."""
    for op, value in steps:
        if op == "mul":
            logits = logits * value
        elif op == "div":
            logits = logits / value
        else:  # Gemma 2's final_logit_softcapping, written as transformers writes it
            logits = torch.tanh(logits / value) * value
    return logits


def logit_steps(config: Any) -> tuple[tuple[str, float], ...]:
    """What transformers' causal LMs do to the LM head's output, read from ``config``: Cohere's ``logit_scale``,
    Granite's ``logits_scaling``, MuseGlimmer's ``output_multiplier`` and Gemma 2/3's
    ``final_logit_softcapping`` (a model doing something else fails ``find_head``'s probe)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    steps = []
    for name, op in (("logit_scale", "mul"), ("logits_scaling", "div"), ("output_multiplier", "mul")):
        if isinstance(getattr(text, name, None), (int, float)):
            steps.append((op, float(getattr(text, name))))
    cap = getattr(text, "final_logit_softcapping", None)
    if cap:
        steps.append(("softcap", float(cap)))
    return tuple(steps)


@dataclass
class ChunkedLogits:
    """The logits ``head(hidden)`` of a causal LM, never materialised whole (``hidden``: ``[B, T, H]``, the
    inputs of the LM head)."""

    hidden: torch.Tensor
    head: LMHead
    chunk_size: int

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def shifted(self) -> ChunkedLogits:
        """The positions that predict a next token (all but the last)."""
        return replace(self, hidden=self.hidden[:, :-1])

    def split(self, sizes: list[int]) -> list[ChunkedLogits]:
        """Split along the batch, as ``Tensor.split`` does."""
        return [replace(self, hidden=part) for part in self.hidden.split(sizes)]


def map_positions(
    fn: Callable[..., torch.Tensor],
    sources: Sequence[ChunkedLogits],
    mask: torch.Tensor,
    token_args: Sequence[torch.Tensor] = (),
) -> torch.Tensor:
    """``fn(logits_1 [n, V], ..., arg_1 [n], ...) -> [n]`` on the positions where ``mask [B, P]`` is True, in
    chunks of ``chunk_size`` of them -> ``[B, P]`` (0 elsewhere). With gradients on, each chunk runs under
    ``torch.utils.checkpoint``: only its ``[n]`` result is kept, and the backward pass recomputes its logits."""
    rows = mask.flatten().nonzero().squeeze(-1)
    tensors = [s.hidden.flatten(0, 1).index_select(0, rows) for s in sources]
    tensors += [arg.flatten(0, 1).index_select(0, rows) for arg in token_args]
    heads = [s.head for s in sources]
    size = sources[0].chunk_size
    pieces = []
    for start in range(0, rows.numel(), size):
        chunk = [t[start : start + size] for t in tensors]
        if torch.is_grad_enabled():
            pieces.append(checkpoint(_evaluate, fn, heads, *chunk, use_reentrant=False))
        else:
            pieces.append(_evaluate(fn, heads, *chunk))
    anchor = sources[0].hidden
    if not pieces:  # nothing to score: zeros that still belong to the graph, as the full-logits path gives
        return torch.zeros(mask.shape, device=anchor.device) + 0.0 * anchor.sum()
    values = torch.cat(pieces)
    return values.new_zeros(mask.numel()).index_copy(0, rows, values).view(mask.shape)


def _evaluate(fn: Callable[..., torch.Tensor], heads: list[LMHead], *tensors: torch.Tensor) -> torch.Tensor:
    logits = [head(hidden) for head, hidden in zip(heads, tensors)]
    return fn(*logits, *tensors[len(heads) :])


@contextmanager
def capture_head_inputs(module: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """While open, ``module`` (the LM head) records its input in the yielded list and computes on a
    zero-length slice of it instead: the forward pass returns ``[B, 0, V]`` logits."""
    captured: list[torch.Tensor] = []

    def keep_and_empty(_module, args):
        captured.append(args[0])
        return (args[0].narrow(-2, 0, 0), *args[1:])

    handle = module.register_forward_pre_hook(keep_and_empty)
    try:
        yield captured
    finally:
        handle.remove()


def find_head(model: torch.nn.Module, probe_ids: torch.Tensor) -> LMHead | None:
    """The LM head of ``model`` if it reproduces the model's logits on ``probe_ids`` (``[1, T]``), else None
    (logged). Runs two small forward passes in eval mode, without gradient."""
    module = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if module is None:
        logger.warning(
            "%s has no output embeddings: the LM losses use the full logits.", type(model).__name__
        )
        return None
    steps = logit_steps(model.config)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            full = model(input_ids=probe_ids).logits
            with capture_head_inputs(module) as captured:
                model(input_ids=probe_ids)
            head = LMHead(module, num_classes=full.shape[-1], steps=steps)
            mine = head(captured[0]) if len(captured) == 1 else None
    finally:
        model.train(was_training)
    if mine is None or mine.shape != full.shape or not _close(mine, full):
        logger.warning(
            "lm_loss_chunk_size: the LM head of %s (with its logit steps %s) does not reproduce the model's "
            "logits, so the LM losses use the full logits (set lm_loss_chunk_size=0 to skip this check).",
            type(model).__name__,
            list(steps),
        )
        return None
    return head


def _close(mine: torch.Tensor, full: torch.Tensor) -> bool:
    try:
        torch.testing.assert_close(mine.to(full.dtype), full)
    except AssertionError:
        return False
    return True


class HeadCache:
    """``find_head`` once per model (held weakly)."""

    def __init__(self, probe_ids: torch.Tensor):
        self.probe_ids = probe_ids
        self._heads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __call__(self, model: torch.nn.Module) -> LMHead | None:
        if model not in self._heads:
            device = model.get_input_embeddings().weight.device
            self._heads[model] = find_head(model, self.probe_ids.to(device))
        return self._heads[model]
