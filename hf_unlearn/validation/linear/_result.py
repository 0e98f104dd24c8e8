"""Result plumbing shared by every claim: dataclasses whose ``to_dict()`` holds only JSON-serializable
numbers (arrays needed for figures live in fields that ``to_dict()`` leaves out)."""

from __future__ import annotations

from dataclasses import field, fields
from typing import Any

import numpy as np


def _plain(value: Any) -> Any:
    """Convert numpy scalars / nested containers into JSON-serializable Python objects."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.integer | bool | np.bool_):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, np.floating | float):
        return float(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


class _Result:
    """Mixin: ``to_dict()`` returns the fields not marked ``metadata={"array": True}``, as plain types."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-serializable dict of the scalar fields."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if not f.metadata.get("array")}


def _array_field() -> Any:
    return field(default=None, repr=False, metadata={"array": True})
