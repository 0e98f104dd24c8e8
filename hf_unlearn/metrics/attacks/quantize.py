"""Weight-only fake quantization: quantize, then dequantize back into the weight's dtype.

For a weight ``W`` with output channels as rows (``nn.Linear``: ``[out, in]``; GPT-2's ``Conv1D`` stores
``[in, out]`` and is transposed first; a convolution's ``[out, in / groups, *kernel]`` is flattened to
``[out, in / groups * prod(kernel)]``, as in CNN and UNet weight-only quantization), ``b`` bits and ``q_max = 2^(b-1) - 1``, each output channel (or, with
``group_size = g``, each run of ``g`` consecutive input positions of it) gets its own scale::

    s = max |w| / q_max          (over the channel or group)
    w' = s * clamp(round(w / s), -q_max, q_max)      (w' = 0 where s = 0)

round-to-nearest (ties to even, ``torch.round``), symmetric, computed in float32 and cast back to the weight's
dtype. PEFT (LoRA) models are merged into their base weights first, on a copy.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
import torch.nn.functional as F

from . import Attack, register_attack

logger = logging.getLogger(__name__)


def fake_quantize(weight: torch.Tensor, bits: int, group_size: int | None = None) -> torch.Tensor:
    """``weight`` (``[out, in]``: one output channel per row) quantized to ``bits`` and dequantized, in its dtype:
    one scale per row, or per group of ``group_size`` consecutive columns of a row (a last, shorter group when
    ``in`` is not a multiple)."""
    if not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an integer in [2, 16], got {bits!r}.")
    if group_size is not None and group_size < 1:
        raise ValueError(f"group_size must be >= 1 or None (one scale per output channel), got {group_size}.")
    if weight.dim() != 2:
        raise ValueError(f"fake_quantize takes a 2-D weight [out, in], got shape {tuple(weight.shape)}.")
    q_max = 2 ** (bits - 1) - 1
    w = weight.detach().float()
    rows, cols = w.shape
    size = cols if group_size is None or group_size >= cols else group_size
    padding = (-cols) % size
    groups = F.pad(w, (0, padding)).view(rows, -1, size)  # zero padding leaves every max |w| unchanged
    scale = groups.abs().amax(-1, keepdim=True) / q_max
    q = torch.clamp(
        torch.round(groups / torch.where(scale > 0, scale, torch.ones_like(scale))), -q_max, q_max
    )
    return (q * scale).view(rows, -1)[:, :cols].to(weight.dtype)


def _quantizable() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D

    return torch.nn.Linear, Conv1D


#: convolutions (ResNet image classifiers, diffusion UNets): one scale per output channel over its flattened
#: input channels x kernel positions
CONVOLUTIONS = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


def skipped(name: str, skip_modules: tuple[str, ...]) -> bool:
    """Whether module ``name`` is one of ``skip_modules`` (a full name, or a suffix after a dot: ``"lm_head"``)."""
    return any(name == s or name.endswith("." + s) for s in skip_modules)


def plain_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A deep copy of ``model`` without wrappers (DDP, ``torch.compile``), a PEFT model merged into its base."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            break
    copied = copy.deepcopy(model)
    if hasattr(copied, "merge_and_unload"):
        copied = copied.merge_and_unload()
    return copied


@torch.no_grad()
def quantize_model(
    model: torch.nn.Module, bits: int, group_size: int | None = None, skip_modules: tuple[str, ...] = ()
) -> torch.nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` / ``Conv1D`` / convolution weight fake-quantized
    (``fake_quantize``);
    biases, embeddings and norms stay as they are. ``skip_modules``: module names (or name suffixes, e.g.
    ``"lm_head"``) left in full precision. A weight tied to an embedding is quantized in the linear layer only
    (the copy's tie is undone)."""
    linear, conv1d = _quantizable()
    copied = plain_copy(model)
    count = 0
    for name, module in copied.named_modules():
        if not isinstance(module, (linear, conv1d, *CONVOLUTIONS)) or skipped(name, skip_modules):
            continue
        weight = module.weight
        if isinstance(module, conv1d):  # [in, out]: the output channel is a column
            new = fake_quantize(weight.t(), bits, group_size).t().contiguous()
        elif isinstance(module, CONVOLUTIONS):  # [out, in / groups, *kernel]: a row per output channel
            new = fake_quantize(weight.flatten(1), bits, group_size).view_as(weight)
        else:
            new = fake_quantize(weight, bits, group_size)
        module.weight = torch.nn.Parameter(new, requires_grad=weight.requires_grad)
        count += 1
    if count == 0:
        logger.warning(
            "quantize: %s has no nn.Linear / Conv1D / convolution weight; the copy is unchanged.",
            type(model).__name__,
        )
    return copied


class QuantizeAttack(Attack):
    """Weight-only fake quantization to ``bits`` (``quantize_model``).

    Args:
        bits: bits per weight (8: ``q_max = 127``; 4: ``q_max = 7``).
        group_size: None: one scale per output channel (default); else one per ``group_size`` input positions.
        skip_modules: module names left in full precision (default none: every linear layer, heads included).
        name: the name in the keys (default ``quantize_<bits>bit``; give another one for other settings).
    """

    def __init__(
        self,
        bits: int = 8,
        group_size: int | None = None,
        skip_modules: tuple[str, ...] = (),
        name: str | None = None,
    ):
        fake_quantize(torch.zeros(1, 1), bits, group_size)  # checks the settings now
        self.bits, self.group_size, self.skip_modules = bits, group_size, tuple(skip_modules)
        self.name = name or f"quantize_{bits}bit"

    def apply(
        self, model: torch.nn.Module, attack_data: Any = None, processing_class: Any = None
    ) -> torch.nn.Module:
        return quantize_model(model, self.bits, self.group_size, self.skip_modules)

    def options(self) -> dict[str, Any]:
        return {"bits": self.bits, "group_size": self.group_size, "skip_modules": self.skip_modules}


@register_attack("quantize_8bit")
class Quantize8Bit(QuantizeAttack):
    """``QuantizeAttack`` at 8 bits."""

    def __init__(self, group_size: int | None = None, skip_modules: tuple[str, ...] = ()):
        super().__init__(8, group_size, skip_modules)


@register_attack("quantize_4bit")
class Quantize4Bit(QuantizeAttack):
    """``QuantizeAttack`` at 4 bits."""

    def __init__(self, group_size: int | None = None, skip_modules: tuple[str, ...] = ()):
        super().__init__(4, group_size, skip_modules)
