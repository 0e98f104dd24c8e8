"""Where the benchmarks keep their files."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS_DIR = ROOT / "results"
WORK_DIR = ROOT / "_work"  # scratch: scenario caches, trainer output dirs (git-ignored)
README = ROOT / "README.md"
SCENARIO_CACHE = WORK_DIR / "scenarios"
