"""Interleaved timing of the arms of a benchmark, and the paired ratios reported from it."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def interleaved_times(
    arms: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    inner: int = 1,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each arm: ``warmup`` uncounted rounds, then ``repeats`` rounds in which every arm
    runs ``inner`` times back to back; the arm order rotates every round. Returns ``{arm: [seconds, ...]}``."""
    sync = sync or (lambda: None)
    names = list(arms)
    for _ in range(warmup):
        for name in names:
            for _ in range(inner):
                arms[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            sync()
            start = time.perf_counter()
            for _ in range(inner):
                arms[name]()
            sync()
            times[name].append((time.perf_counter() - start) / inner)
    return times


def ratio_stats(numerator: list[float], denominator: list[float]) -> dict:
    """Paired (per-repeat) ratios of two interleaved arms: the median paired ratio is the reported figure."""
    pairs = [a / b for a, b in zip(numerator, denominator) if b > 0]
    return {
        "ratio": statistics.median(pairs),
        "ratio_of_medians": statistics.median(numerator) / statistics.median(denominator),
        "paired_ratios": [round(x, 5) for x in pairs],
        "ratio_min": min(pairs),
        "ratio_max": max(pairs),
        "median_s": statistics.median(numerator),
        "baseline_median_s": statistics.median(denominator),
        "repeats_s": [round(x, 6) for x in numerator],
        "baseline_repeats_s": [round(x, 6) for x in denominator],
    }


def median(values: list[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)
