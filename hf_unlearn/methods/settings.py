"""Each method family declares its own ``UnlearningConfig`` fields: a dataclass registered with
``register_settings``, with a ``check_settings(config)`` that validates them. ``UnlearningConfig`` is composed
of the training fields, the shared unlearning fields and every registered settings class."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: the registered settings dataclasses, in registration order (``UnlearningConfig`` inherits their fields)
SETTINGS: list[type] = []


def register_settings(cls: type) -> type:
    """Register a dataclass of a method family's config fields (a class decorator, above ``@dataclass``). Its
    ``check_settings(config)`` static method raises ``ValueError`` for a bad value."""
    if cls not in SETTINGS:
        SETTINGS.append(cls)
    return cls


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> None:
    """``ValueError`` unless ``value`` is one of ``allowed``."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"UnlearningConfig.{name} must be one of {allowed}, got {value!r}.")


def check_at_least_zero(config: Any, *names: str) -> None:
    """``ValueError`` for each field of ``names`` below 0."""
    for name in names:
        if getattr(config, name) < 0:
            raise ValueError(f"UnlearningConfig.{name} must be >= 0, got {getattr(config, name)}.")


def check_positive(config: Any, *names: str) -> None:
    """``ValueError`` for each field of ``names`` not above 0."""
    for name in names:
        if getattr(config, name) <= 0:
            raise ValueError(f"UnlearningConfig.{name} must be > 0, got {getattr(config, name)}.")


def check_fraction(config: Any, *names: str) -> None:
    """``ValueError`` for each field of ``names`` outside (0, 1)."""
    for name in names:
        if not 0 < getattr(config, name) < 1:
            raise ValueError(f"UnlearningConfig.{name} must be in (0, 1), got {getattr(config, name)}.")
