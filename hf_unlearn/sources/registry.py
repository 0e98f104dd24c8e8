"""The registry of benchmark loaders: ``register_source`` (a decorator) and ``load_source`` (the one entry point).

A loader is a function ``loader(path, subset, **options) -> BenchmarkData`` registered under a name. Its keyword
options are the ones ``load_source`` accepts for that name: anything else is refused with the list of accepted
options, before a file is read.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class BenchmarkData:
    """What a benchmark loader returns: the three sets ``UnlearningTrainer`` / ``evaluate_unlearning`` take,
    the benchmark's other evaluation sets, and a record of what was read.

    Attributes:
        forget: the forget set (``datasets.Dataset``).
        retain: the retain set used for training.
        test: held-out data (non-members of the membership attacks), or ``None`` when the copy has none.
        extra: the benchmark's other evaluation sets by name (e.g. TOFU's ``retain_eval``, ``real_authors``;
            MUSE's ``verbmem_forget``, ``knowmem_forget``).
        info: which files were read (relative to the folder), row counts, the options used, splits not found.
        utility: the names in ``extra`` that are model-utility splits (``evaluate_unlearning``'s
            ``utility_datasets``; TOFU: ``real_authors``, ``world_facts``). ``extra["retain_eval"]``, when
            present, is the retain set the metrics use in place of the training one.
    """

    forget: Any
    retain: Any
    test: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    utility: tuple[str, ...] = ()

    def utility_datasets(self) -> dict[str, Any]:
        """``{name: dataset}`` of the model-utility splits, for ``evaluate_unlearning(utility_datasets=...)``."""
        return {name: self.extra[name] for name in self.utility}

    def counts(self) -> dict[str, int]:
        """Rows per set: ``forget``, ``retain``, ``test`` (if any) and each ``extra`` set."""
        sets = {"forget": self.forget, "retain": self.retain, "test": self.test, **self.extra}
        return {name: len(ds) for name, ds in sets.items() if ds is not None}


@dataclass(frozen=True)
class _Source:
    loader: Callable[..., BenchmarkData]
    download: str  # how to get a local copy, shown when the folder is missing


SOURCES: dict[str, _Source] = {}


def register_source(name: str, download: str) -> Callable:
    """Register ``loader(path, subset, **options)`` under ``name``; ``download`` tells users how to get a copy."""

    def decorate(loader: Callable[..., BenchmarkData]) -> Callable[..., BenchmarkData]:
        if name in SOURCES:
            raise ValueError(f"A data source named {name!r} is already registered.")
        SOURCES[name] = _Source(loader, download)
        return loader

    return decorate


def source_options(name: str) -> list[str]:
    """The keyword options the loader of ``name`` accepts."""
    params = list(inspect.signature(_source(name).loader).parameters.values())[2:]
    return [p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)]


def load_source(name: str, path: str, subset: str | None = None, **options: Any) -> BenchmarkData:
    """Load the local copy of benchmark ``name`` found in folder ``path``.

    Args:
        name: a registered source (``"tofu"``, ``"muse"``, ``"cifar10"``, ``"cifar100"``; see ``SOURCES``).
        path: the folder an ``hf download <repo> --repo-type dataset --local-dir DIR`` of the benchmark wrote
            (``huggingface_hub``'s ``hf`` command; ``SOURCES[name].download`` has each one).
        subset: which forget set (e.g. ``"forget05"`` for TOFU, ``"class"`` for CIFAR); ``None`` takes the
            source's default.
        **options: the source's own options (``chat``, ``system_prompt``, ``tokenizer``, ...).

    Raises:
        ValueError: unknown source or option, missing folder or file, a file without the expected keys.
    """
    source = _source(name)
    if not os.path.isdir(path):
        raise ValueError(
            f"{name}: the data folder {path!r} does not exist. Download a copy first: {source.download}"
        )
    accepted = source_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"{name}: unknown option(s) {unknown}; {name} accepts {accepted}.")
    return source.loader(path, subset, **options)


def _source(name: str) -> _Source:
    if name not in SOURCES:
        raise ValueError(f"Unknown data source {name!r}: choose one of {sorted(SOURCES)}.")
    return SOURCES[name]
