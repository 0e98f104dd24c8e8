"""Sequential unlearning requests on a built-in scenario: its forget set cut into ``k`` disjoint requests, and the
golden model of each prefix (the same initial weights and recipe as the scenario's golden, trained on the retain
set plus the forget rows not yet requested), cached beside the scenario's models.

```python
from hf_unlearn.scenarios.sequential import load_sequential

seq = load_sequential("tofu-llama", k=4, output_dir="outputs/scenarios", seed=0)
seq.requests            # 4 forget sets (tofu-llama: 10 people -> groups of 3, 3, 2, 2 people)
seq.golden_model(2)     # retrained without requests 1 and 2
```

Any scenario works: the split keeps rows of one ``ScenarioBuilder.group_column`` value together (a person's
questions) and is by row otherwise. The golden after the last request is the scenario's own golden model (the
retain set only); the others are trained once and cached under ``<output_dir>/<name>/sequential_k<k>/``."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .definition import Scenario, ScenarioBuilder

logger = logging.getLogger(__name__)

META_FILE = "sequential.json"


def split_requests(forget: Any, k: int, seed: int = 0, group_column: str | None = None) -> list[list[int]]:
    """The row indices of ``k`` disjoint requests covering ``forget`` (a ``datasets.Dataset``): its groups (the
    values of ``group_column``, else its rows) in a seeded order, cut into ``k`` near-equal parts; each part's
    rows in their original order."""
    if k < 1:
        raise ValueError(f"k must be at least 1 (the number of requests), got {k}.")
    if group_column is not None and group_column not in forget.column_names:
        raise ValueError(
            f"group_column {group_column!r} is not a column of the forget set ({forget.column_names})."
        )
    keys = forget[group_column] if group_column is not None else list(range(len(forget)))
    groups = list(dict.fromkeys(keys))
    if k > len(groups):
        unit = f"values of {group_column!r}" if group_column else "examples"
        raise ValueError(
            f"k={k} requests but the forget set has {len(groups)} {unit}: choose k <= {len(groups)}."
        )
    order = np.random.default_rng([seed, 32]).permutation(len(groups))
    parts = np.array_split(order, k)
    request_of = {groups[g]: i for i, part in enumerate(parts) for g in part.tolist()}
    requests: list[list[int]] = [[] for _ in range(k)]
    for row, key in enumerate(keys):
        requests[request_of[key]].append(row)
    return requests


@dataclass
class SequentialScenario:
    """A scenario's forget set as ``k`` requests, with the golden model after each prefix of them.

    Attributes:
        scenario: the ``Scenario`` (original model, retain and test sets, tokenizer...).
        requests: the ``k`` forget sets (``datasets.Dataset``), in order.
        indices: each request's row indices in ``scenario.forget``.
        golden_dirs: ``golden_dirs[i - 1]``: the model retrained without requests ``1..i``.
        train_seconds: wall time of training each golden this call trained (empty when all were cached).
    """

    scenario: Scenario
    requests: list
    indices: list[list[int]]
    golden_dirs: list[str]
    train_seconds: dict = field(default_factory=dict)

    def golden_model(self, i: int) -> Any:
        """A fresh instance of the golden model after request ``i`` (1-based)."""
        if not 1 <= i <= len(self.golden_dirs):
            raise ValueError(f"request {i} is out of range: there are {len(self.golden_dirs)} requests.")
        return self.scenario._load(self.golden_dirs[i - 1])

    def golden_for(self, requests_so_far: list) -> Any:
        """``unlearn_sequentially``'s ``golden``: the golden model after ``len(requests_so_far)`` requests."""
        return self.golden_model(len(requests_so_far))


def load_sequential(
    name: str | ScenarioBuilder,
    k: int,
    output_dir: str = "outputs/scenarios",
    seed: int = 0,
    progress: bool = False,
) -> SequentialScenario:
    """Scenario ``name`` (or a builder) with its forget set as ``k`` requests and the golden after each prefix
    (trained into ``output_dir/<name>/sequential_k<k>`` on first use; the scenario itself is built if needed)."""
    from . import get_builder
    from .base import build_scenario

    builder = get_builder(name) if isinstance(name, str) else name
    sc = build_scenario(builder, output_dir, seed=seed, progress=progress)
    indices = split_requests(sc.forget, k, seed, builder.group_column)
    root = os.path.join(output_dir, builder.name, f"sequential_k{k}")
    dirs = [os.path.join(root, f"golden_{i}") for i in range(1, k)] + [sc.golden_dir]
    seconds = _build_goldens(builder, sc, indices, root, dirs[:-1], seed, progress)
    requests = [sc.forget.select(rows) for rows in indices]
    return SequentialScenario(sc, requests, indices, dirs, seconds)


def _build_goldens(builder, sc, indices, root, dirs, seed, progress) -> dict:
    """Train the goldens of the prefixes ``1..k-1`` into ``dirs`` unless ``root`` holds them for this very
    scenario cache and split; returns the training seconds by folder name."""
    from .base import _build_lock, _has_weights, data_fingerprint

    if not dirs:
        return {}
    meta = {
        "scenario_config": sc.config,
        "init_fingerprint": sc.init_fingerprint,
        "data_fingerprint": data_fingerprint({"forget": sc.forget, "retain": sc.retain, "test": sc.test}),
        "requests": _digest(indices),
    }
    os.makedirs(root, exist_ok=True)
    with _build_lock(root):
        cached = _read(os.path.join(root, META_FILE))
        if cached == meta and all(_has_weights(d) for d in dirs):
            return {}
        if progress:
            logger.warning("Training %d golden models of sequential requests under %s", len(dirs), root)
        seconds = _train_goldens(builder, sc, indices, dirs, seed, progress)
        with open(os.path.join(root, META_FILE), "w") as f:
            json.dump({**meta, "train_seconds": seconds}, f, indent=2)
    return seconds


def _train_goldens(builder, sc, indices, dirs, seed, progress) -> dict:
    """The golden of prefix ``i``: the scenario's initial weights and recipe, on retain + requests ``i+1..k``."""
    from ..data import build_preparer
    from .base import _save, weights_fingerprint
    from .training import train_model

    seconds = {}
    for i, path in enumerate(dirs, 1):
        model = builder.init_model(sc.tokenizer, seed)
        if sc.init_fingerprint and weights_fingerprint(model) != sc.init_fingerprint:
            raise ValueError(
                f"{builder.name}: the initial weights differ from the cached scenario's; rebuild it "
                "(load_scenario(..., rebuild=True))."
            )
        preparer, collator = build_preparer(model, sc.tokenizer)
        later = sorted(row for rows in indices[i:] for row in rows)
        rows = preparer(sc.retain, "retain") + preparer(sc.forget.select(later), "forget")
        name = os.path.basename(path)
        seconds[name] = round(train_model(model, rows, collator, builder.recipe, seed, progress, name), 2)
        _save(model, sc.tokenizer, path)
    return seconds


def _digest(indices: list[list[int]]) -> str:
    return hashlib.sha256(json.dumps(indices).encode()).hexdigest()[:16]


def _read(path: str) -> dict | None:
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    meta.pop("train_seconds", None)
    return meta
