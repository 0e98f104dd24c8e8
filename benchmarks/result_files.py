"""Target rows and the ``results/<name>.json`` files they are written to."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from .machine import machine_info
from .paths import RESULTS_DIR


def target(
    name: str,
    description: str,
    measured: float | None,
    goal: float,
    op: str = "<=",
    unit: str = "ratio",
    **details: Any,
) -> dict:
    """One target row: ``measured op goal`` passes. ``details`` go into the JSON (repeat times, sizes...)."""
    if measured is None or (isinstance(measured, float) and not math.isfinite(measured)):
        passed = False
    elif op == "<=":
        passed = measured <= goal
    elif op == ">=":
        passed = measured >= goal
    elif op == "abs<=":
        passed = abs(measured) <= goal
    else:
        raise ValueError(f"unknown comparison {op!r}")
    return {
        "name": name,
        "description": description,
        "target": goal,
        "op": op,
        "unit": unit,
        "measured": measured,
        "pass": bool(passed),
        **details,
    }


def ratio_target(name: str, description: str, stats: dict, goal: float, **details: Any) -> dict:
    """``target`` on the paired ratio of ``stats`` (``timing.ratio_stats``), keeping both arms' repeats and the
    paired ratios in the row."""
    return target(
        name,
        description,
        stats["ratio"],
        goal,
        repeats_s=stats["repeats_s"],
        baseline_repeats_s=stats["baseline_repeats_s"],
        paired_ratios=stats["paired_ratios"],
        **details,
    )


def write_result(
    name: str,
    targets: list[dict],
    machine: dict,
    *,
    quick: bool = False,
    seconds: float | None = None,
    details: dict | None = None,
    tables: list[dict] | None = None,
    notes: list[str] | None = None,
    results_dir: Path | None = None,
) -> Path:
    """Write ``results/<name>.json``. ``tables``: ``[{"title", "markdown"}]`` copied into the README."""
    results_dir = Path(results_dir or RESULTS_DIR)
    results_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "quick": quick,
        "machine": machine,
        "seconds": None if seconds is None else round(seconds, 2),
        "targets": targets,
        "passed": sum(t["pass"] for t in targets),
        "total": len(targets),
        "notes": notes or [],
        "tables": tables or [],
        "details": details or {},
    }
    path = results_dir / f"{name}.json"
    path.write_text(json.dumps(_json_safe(payload), indent=1) + "\n")
    return path


def write_cpu_result(name: str, targets: list[dict], start: float, quick: bool, **sections: Any) -> dict:
    """``write_result`` for a CPU benchmark that started at ``start`` (``time.perf_counter()``); returns
    ``{"path": ...}``. ``sections``: ``details``, ``tables``, ``notes``."""
    path = write_result(
        name, targets, machine_info("cpu"), quick=quick, seconds=time.perf_counter() - start, **sections
    )
    return {"path": str(path)}


def validate_result(payload: dict) -> None:
    """Raise ``ValueError`` unless ``payload`` has the shape ``write_result`` writes."""
    for key in ("benchmark", "machine", "targets", "quick"):
        if key not in payload:
            raise ValueError(f"result lacks {key!r}")
    for key in ("cpu_model", "torch", "torch_threads", "device", "date"):
        if key not in payload["machine"]:
            raise ValueError(f"machine description lacks {key!r}")
    for row in payload["targets"]:
        for key in ("name", "target", "op", "measured", "pass"):
            if key not in row:
                raise ValueError(f"target row lacks {key!r}: {row}")
        if not isinstance(row["pass"], bool):
            raise ValueError("'pass' must be a boolean")


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 6)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _json_safe(value.item())
    return value


def load_results(results_dir: Path | None = None) -> dict[str, dict]:
    """Every ``results/*.json`` by benchmark name (unreadable files are passed over)."""
    results_dir = Path(results_dir or RESULTS_DIR)
    out = {}
    for path in sorted(results_dir.glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except ValueError:
            continue
    return out
