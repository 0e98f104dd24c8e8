"""The model card's "Sequential requests" table: the report's ``sequential`` entry (``hf-unlearn run`` with
several forget sets, ``unlearn_sequentially``'s per-request rows) as one row per request. Pure text; imports
nothing heavy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

#: the forget metric of the table (and of a request's printed line), by preference after the kind's own choice
LINE_METRICS = ("forget/rouge_l_recall", "forget/accuracy", "forget/token_accuracy", "forget/loss")
#: the relearning convergence delay of each request's forget set (``unlearn_sequentially(relearning=...)``)
RCD_COLUMNS = ("current/rcd/steps", "current/golden/rcd/steps", "current/rcd/ratio_to_golden")


def table_metric(rows: Sequence[dict], preferred: Sequence[str] = ()) -> str | None:
    """The first forget metric of ``preferred`` then ``LINE_METRICS`` that the rows have (``current/<metric>``)."""
    return next((m for m in (*preferred, *LINE_METRICS) if any(f"current/{m}" in row for row in rows)), None)


def table_columns(rows: Sequence[dict], preferred: Sequence[str] = ()) -> list[str]:
    """The keys shown for each request: its size and steps, the forget metric on the current request, the
    earlier ones and the union (golden beside each), the retain one, and the RCD columns, those the rows have."""
    columns = ["n_forget", "steps"]
    metric = table_metric(rows, preferred)
    if metric is not None:
        for prefix in ("current/", "earlier/", "union/"):
            columns += [prefix + metric, prefix + "golden/" + metric]
        columns.append("retain/" + metric.split("/", 1)[1])
    columns += RCD_COLUMNS
    return [c for c in columns if any(c in row for row in rows)]


def sequential_table(
    sequential: dict | None, fmt: Callable[[Any], str] = str, preferred: Sequence[str] = ()
) -> str | None:
    """The per-request markdown table of a report's ``sequential`` entry (``None`` without one)."""
    rows = (sequential or {}).get("table") or []
    if not rows:
        return None
    columns = table_columns(rows, preferred)
    lines = ["| request | " + " | ".join(columns) + " |", "|---:|" + "---:|" * len(columns)]
    for i, row in enumerate(rows, 1):
        lines.append(f"| {row.get('request', i)} | " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines)
