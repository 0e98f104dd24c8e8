"""Attacks as evaluation: is the forgotten knowledge gone from the weights, or only hidden?

An attack makes a modified **copy** of a model (the model passed is never changed); the forget-set metrics are
then measured on the attacked copies of the unlearned, golden and original models, so an attacked model is
always read against the golden model under the same attack (``evaluate_unlearning(..., attacks=[...])``).

Built-in attacks (``docs/metrics.md``, "Attacks"):

* ``quantize_8bit``, ``quantize_4bit``: weight-only fake quantization of every ``nn.Linear`` and GPT-2
  ``Conv1D`` (round-to-nearest, symmetric, one scale per output channel; ``QuantizeAttack(group_size=...)`` for
  group-wise scales). Zhang et al. (ICLR 2025) found 4-bit quantization restores much of what GA/NPO-type
  methods "forgot".
* ``relearn_partial``: fine-tune a copy on a seeded half of the forget set for a small fixed budget, then measure
  the other half (Hu et al., arXiv 2406.13356): knowledge that comes back on examples never shown was hidden.
* ``torchao_int8``, ``torchao_int4``: weight-only quantization by torchao (a real backend, optional extra
  ``quantization``): the copy runs torchao's quantized weights.

A new attack is an ``Attack`` subclass registered with ``register_attack(name)``.
"""

from __future__ import annotations

from typing import Any

import torch

#: name -> ``Attack`` class (instantiated without arguments by ``get_attack``)
ATTACKS: dict[str, type[Attack]] = {}


class Attack:
    """One attack. Subclasses override ``apply`` (and ``split`` when the attack uses part of the forget set).

    Attributes:
        name: the name in the keys (``attack/<name>/...``), set by ``register_attack`` (or by the instance).
        trains: the copy comes out of floating-point training, which need not be bit-identical on every process
            (GPU kernels): under several processes, rank 0's copy is broadcast to the others before they
            evaluate their shares, so the gathered metrics are of one model.
    """

    name: str = ""
    trains: bool = False

    def split(self, forget_dataset: Any) -> tuple[Any, Any]:
        """``(attack_data, eval_data)``: the part of the forget set the attack may use (None: none) and the part
        the attacked copies are measured on (default: all of it)."""
        return None, forget_dataset

    def apply(
        self, model: torch.nn.Module, attack_data: Any = None, processing_class: Any = None
    ) -> torch.nn.Module:
        """A modified copy of ``model`` (``model`` itself is not changed)."""
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The attack's settings (they identify its results: equal settings, equal attacked copies)."""
        return {}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({settings})"


def register_attack(name: str):
    """Class decorator: register an ``Attack`` subclass under ``name`` (its ``name`` attribute is set)."""
    if not name or "/" in name or name == "none":
        raise ValueError(f"attack name {name!r} must be non-empty, without '/', and not 'none'.")

    def decorate(cls: type[Attack]) -> type[Attack]:
        cls.name = name
        ATTACKS[name] = cls
        return cls

    return decorate


def get_attack(attack: str | Attack) -> Attack:
    """An ``Attack`` instance: ``attack`` itself, or the registered attack of that name with its defaults."""
    if isinstance(attack, Attack):
        return attack
    if attack not in ATTACKS:
        raise ValueError(
            f"unknown attack {attack!r}; choose from {sorted(ATTACKS)} (or pass an Attack object)."
        )
    return ATTACKS[attack]()


def parse_attacks(text: str | list[str] | None) -> list[str]:
    """Attack names from a comma-separated string (the CLI's ``--attacks``) or a list; each must be registered."""
    if not text:
        return []
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n and n.strip()]
    for name in names:
        get_attack(name)  # unknown names fail here, before anything is trained
    return list(dict.fromkeys(names))


from . import quantize as _quantize  # noqa: E402,F401 (registers quantize_8bit, quantize_4bit)
from . import relearn as _relearn  # noqa: E402,F401 (registers relearn_partial)
from . import torchao_quant as _torchao_quant  # noqa: E402,F401 (registers torchao_int8, torchao_int4)
from .evaluate import attack_metrics  # noqa: E402
from .quantize import QuantizeAttack, fake_quantize, quantize_model  # noqa: E402
from .relearn import RelearnPartialAttack, partial_split  # noqa: E402
from .torchao_quant import TorchaoQuantizeAttack  # noqa: E402

__all__ = [
    "ATTACKS",
    "Attack",
    "QuantizeAttack",
    "RelearnPartialAttack",
    "TorchaoQuantizeAttack",
    "attack_metrics",
    "fake_quantize",
    "get_attack",
    "parse_attacks",
    "partial_split",
    "quantize_model",
    "register_attack",
]
