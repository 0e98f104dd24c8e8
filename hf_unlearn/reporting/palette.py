"""One colour per model name in every figure the library draws: the reference models in greys (original
grey, golden black), each registered method its own fixed colour, anything else a stable colour of its
name. ``"dr + stopping"`` or ``"ieu (tuned)"`` take their method's colour."""

from __future__ import annotations

import zlib

#: Every figure is drawn at this size: the Hub's model-card column is about 800 pixels wide, so a figure this
#: wide is shown at its own resolution, with its labels readable.
FIGURE_WIDTH_INCHES = 7.2
FIGURE_DPI = 110

REFERENCE_COLORS = {"original": "#7f7f7f", "golden": "#000000"}
#: Qualitative colours (matplotlib's tab20 without its greys), in the order the methods get them.
COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5",
)  # fmt: skip
#: The order methods get their colour in (the seed methods first, so they keep the most distinct ones).
METHOD_ORDER = (
    "ieu", "dr", "grad_diff", "npo", "ga", "rl", "ft", "salun", "simnpo", "idk_nll", "idk_dpo", "wga",
    "satimp", "undial", "rmu", "esd",
)  # fmt: skip


def base_name(name: str) -> str:
    """The model or method a label names: ``"dr + stopping"`` -> ``"dr"``, ``"ieu (tuned)"`` -> ``"ieu"``."""
    return name.split(" ", 1)[0].split("(", 1)[0]


def color_of(name: str) -> str:
    """The colour of the model named ``name`` (a hex string), the same in every figure."""
    key = base_name(name)
    if key in REFERENCE_COLORS:
        return REFERENCE_COLORS[key]
    if key in METHOD_ORDER:
        return COLORS[METHOD_ORDER.index(key) % len(COLORS)]
    return COLORS[zlib.crc32(key.encode()) % len(COLORS)]


def ordered(names: list[str]) -> list[str]:
    """``names`` with the reference models first (original, golden), then in their given order."""
    refs = [n for ref in REFERENCE_COLORS for n in names if base_name(n) == ref]
    return refs + [n for n in names if n not in refs]
