"""``torchao_int8``, ``torchao_int4``: weight-only quantization by a real backend, torchao (CPU and GPU).

Unlike ``quantize_8bit`` / ``quantize_4bit`` (fake quantization: the copy keeps float weights), the copy's
``nn.Linear`` weights become torchao's quantized tensors (int8 values and float scales) and its forward runs
torchao's weight-only kernels. GPT-2's ``Conv1D`` layers are replaced on the copy by the equivalent
``nn.Linear`` (weight transposed) so that torchao quantizes them too; LoRA models are merged first. torchao's
symmetric scheme differs from ours in its grid: ``s = max |w| / ((q_max - q_min) / 2)`` with the full signed
range ``[q_min, q_max] = [-2^(b-1), 2^(b-1) - 1]`` (int8: ``s = max |w| / 127.5``; int4: ``/ 7.5``), where ours
uses ``s = max |w| / (2^(b-1) - 1)`` and clamps to ``[-q_max, q_max]`` (docs/metrics.md, "Attacks").

torchao is an optional dependency (``pip install "hf-unlearn[quantization]"``), imported only when one of these
attacks is applied.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from . import register_attack
from .quantize import QuantizeAttack, _quantizable, plain_copy, skipped

logger = logging.getLogger(__name__)


def _torchao_quantization():
    """``torchao.quantization``, or a ValueError naming the extra to install."""
    quiet = logging.getLogger("torchao")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # torchao warns about its CUDA-only kernel libraries on a CPU build
    try:
        import torchao.quantization as quantization
    except ImportError as error:
        raise ValueError(
            'the torchao_int8 / torchao_int4 attacks need torchao: pip install "hf-unlearn[quantization]".'
        ) from error
    finally:
        quiet.setLevel(level)
    return quantization


def _conv1d_to_linear(model: torch.nn.Module) -> None:
    """Replace every GPT-2 ``Conv1D`` of ``model`` (``y = x W + b``, ``W: [in, out]``) by the equivalent
    ``nn.Linear`` (weight ``W^T``), in place."""
    _, conv1d = _quantizable()
    for name, module in list(model.named_modules()):
        if not isinstance(module, conv1d):
            continue
        weight = module.weight.detach()
        linear = torch.nn.Linear(weight.shape[0], weight.shape[1], dtype=weight.dtype, device=weight.device)
        linear.weight = torch.nn.Parameter(weight.t().contiguous(), requires_grad=False)
        linear.bias = torch.nn.Parameter(module.bias.detach().clone(), requires_grad=False)
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, linear)


class TorchaoQuantizeAttack(QuantizeAttack):
    """Weight-only quantization of every ``nn.Linear`` / ``Conv1D`` weight with torchao.

    Args:
        bits: 8 (``Int8WeightOnlyConfig``) or 4 (``IntxWeightOnlyConfig(weight_dtype=torch.int4)``, the int4
            path that runs on CPU).
        group_size: None: one scale per output channel; else one per ``group_size`` input positions (a layer
            whose input width is not a multiple of it, and wider, gets one scale per output channel, logged).
        skip_modules: module names (or name suffixes, e.g. ``"lm_head"``) left in full precision.
        name: the name in the keys (default ``torchao_int<bits>``).
    """

    def __init__(
        self,
        bits: int = 8,
        group_size: int | None = None,
        skip_modules: tuple[str, ...] = (),
        name: str | None = None,
    ):
        if bits not in (4, 8):
            raise ValueError(f"torchao quantization takes bits=8 or bits=4, got {bits!r}.")
        super().__init__(bits, group_size, skip_modules, name or f"torchao_int{bits}")

    def apply(
        self, model: torch.nn.Module, attack_data: Any = None, processing_class: Any = None
    ) -> torch.nn.Module:
        quantization = _torchao_quantization()
        copied = plain_copy(model)
        _conv1d_to_linear(copied)
        linears = [
            (name, m)
            for name, m in copied.named_modules()
            if isinstance(m, torch.nn.Linear) and not skipped(name, self.skip_modules)
        ]
        if not linears:
            logger.warning(
                "torchao: %s has no nn.Linear / Conv1D weight; the copy is unchanged.", type(model)
            )
        with torch.no_grad():
            for width, names in self._by_group(linears).items():
                config = self._config(quantization, width)
                quantization.quantize_(copied, config, filter_fn=lambda _m, fqn, names=names: fqn in names)
        return copied

    def _by_group(self, linears: list[tuple[str, torch.nn.Linear]]) -> dict[int | None, set[str]]:
        """Module names by the group size they are quantized with (None: per output channel)."""
        out: dict[int | None, set[str]] = {}
        fallback = []
        for name, module in linears:
            size = self.group_size
            if size is not None and module.in_features % size:
                if module.in_features > size:
                    fallback.append(name)
                size = None
            out.setdefault(size, set()).add(name)
        if fallback:
            logger.warning(
                "torchao: %d layers' input width is not a multiple of group_size=%s; one scale per output "
                "channel there (%s).",
                len(fallback),
                self.group_size,
                ", ".join(fallback[:3]),
            )
        return out

    def _config(self, quantization: Any, group_size: int | None) -> Any:
        from torchao.quantization.granularity import PerAxis, PerGroup, PerRow

        if self.bits == 8:
            granularity = PerRow() if group_size is None else PerGroup(group_size)
            return quantization.Int8WeightOnlyConfig(granularity=granularity, set_inductor_config=False)
        granularity = PerAxis(0) if group_size is None else PerGroup(group_size)
        return quantization.IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=granularity)


@register_attack("torchao_int8")
class TorchaoInt8(TorchaoQuantizeAttack):
    """torchao int8 weight-only quantization, one scale per output channel."""

    def __init__(self, group_size: int | None = None, skip_modules: tuple[str, ...] = ()):
        super().__init__(8, group_size, skip_modules)


@register_attack("torchao_int4")
class TorchaoInt4(TorchaoQuantizeAttack):
    """torchao int4 weight-only quantization, one scale per group of 128 input positions (per output channel
    where a layer is at most 128 wide)."""

    def __init__(self, group_size: int | None = 128, skip_modules: tuple[str, ...] = ()):
        super().__init__(4, group_size, skip_modules)
