"""Unlearning methods: the registry (``register_method``, ``get_method``, ``METHODS``), the base class and the
batch parts it sees (``base``), and one module per family, each declaring its own config fields
(``settings.register_settings``):

* ``ascent``: ``ft``, ``ga``, ``grad_diff``, ``ieu``
* ``preference``: ``npo``, ``simnpo``, ``idk_dpo``
* ``relabel``: ``rl``, ``salun``, ``dr``
* ``refusal``: ``idk_nll``
* ``token_weighted``: ``wga``, ``satimp``
* ``distill``: ``undial``
* ``representation``: ``rmu``

A new method is a class with ``@register_method("name")`` in a module imported here (or in the user's code,
before the ``UnlearningConfig`` is built).
"""

from __future__ import annotations

from . import ascent, distill, preference, refusal, relabel, representation, token_weighted  # noqa: F401
from .base import (
    METHODS,
    WEIGHTS,
    MethodOutput,
    Part,
    StepInputs,
    UnlearningMethod,
    get_method,
    load_optional_method,
    method_names,
    register_method,
)
from .settings import SETTINGS, register_settings

__all__ = [
    "METHODS",
    "SETTINGS",
    "WEIGHTS",
    "MethodOutput",
    "Part",
    "StepInputs",
    "UnlearningMethod",
    "get_method",
    "load_optional_method",
    "method_names",
    "register_method",
    "register_settings",
]
