"""The model card's and reports' "Robustness" tables: the ``attack/*`` keys of ``evaluate_unlearning``
(``hf_unlearn.metrics.attacks``) as one table of gaps to golden and one table per attack, golden beside the
model. Pure text; imports nothing heavy."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PREFIX = "attack/"
GAP = "gap_to_golden"
GAP_UNATTACKED = "gap_to_golden_unattacked"
#: the columns an attack's table gets from a row's own ``attack/<name>/<who>/...`` keys when no report row is it
REFERENCES = ("golden", "original")


def attack_names(rows: dict[str, dict]) -> list[str]:
    """The attacks measured in any row, ``none`` (no attack) first, then in the order they appear."""
    names: dict[str, None] = {}
    for values in rows.values():
        for key in values:
            if key.startswith(PREFIX):
                names[key.split("/")[1]] = None
    return sorted(names, key=lambda n: n != "none")


def _metric_keys(rows: dict[str, dict], name: str) -> list[str]:
    """The metrics of ``name``'s keys (``forget/loss``, ``mia/min_k_auc``, ...), without the reference copies."""
    start = f"{PREFIX}{name}/"
    keys: dict[str, None] = {}
    for values in rows.values():
        for key in values:
            if key.startswith(start):
                rest = key[len(start) :]
                if rest.split("/")[0] not in REFERENCES and rest not in (GAP, GAP_UNATTACKED):
                    keys[rest] = None
    return list(keys)


def robustness_tables(rows: dict[str, dict], fmt: Callable[[Any], str] = str) -> list[tuple[str, str]]:
    """``[(title, markdown table)]``: the gaps to golden of every model under every attack, then one table per
    attack (a row per forget metric, a column per model: the report's rows, and the attacked golden / original
    copies of its first row when the report has no such row). Empty without ``attack/*`` keys."""
    names = attack_names(rows)
    if not names:
        return []
    models = list(rows)
    gaps = [f"| attack | {' | '.join(models)} |", "|---|" + "---:|" * len(models)]
    for name in names:
        gaps.append(
            f"| {name} | " + " | ".join(fmt(rows[m].get(f"{PREFIX}{name}/{GAP}")) for m in models) + " |"
        )
    tables = [("gap to golden (primary forget metric)", "\n".join(gaps))]
    first = rows[models[0]]
    for name in names:
        columns = [(m, rows[m], "") for m in models]
        columns += [(f"{ref} (attacked)", first, f"{ref}/") for ref in REFERENCES if ref not in rows]
        columns = [c for c in columns if any(k.startswith(f"{PREFIX}{name}/{c[2]}") for k in c[1])]
        lines = [
            "| metric | " + " | ".join(c[0] for c in columns) + " |",
            "|---|" + "---:|" * len(columns),
        ]
        for key in _metric_keys(rows, name) + [GAP, GAP_UNATTACKED]:
            gap = key in (GAP, GAP_UNATTACKED)  # a model's own number: none for the attacked references
            cells = [
                None if gap and prefix else values.get(f"{PREFIX}{name}/{prefix}{key}")
                for _, values, prefix in columns
            ]
            if any(c is not None for c in cells):
                lines.append(f"| {key} | " + " | ".join(fmt(c) for c in cells) + " |")
        tables.append(("no attack" if name == "none" else name, "\n".join(lines)))
    return tables
