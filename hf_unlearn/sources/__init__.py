"""Loaders for local copies of public unlearning benchmarks, in their exact Hub layouts.

    from hf_unlearn.sources import load_source

    data = load_source("tofu", "path/to/TOFU", "forget10")       # hf download locuslab/TOFU --repo-type dataset ...
    data = load_source("muse", "path/to/MUSE-News", tokenizer=tok)  # muse-bench/MUSE-News or MUSE-Books
    data = load_source("cifar10", "path/to/cifar10", "random10")  # uoft-cs/cifar10 (or cifar100); or "class"

``load_source`` returns a ``BenchmarkData``: ``forget``, ``retain``, ``test`` (``datasets.Dataset``, ``test`` may be
``None``) ready for ``UnlearningTrainer`` and ``evaluate_unlearning``, the benchmark's other evaluation sets in
``extra``, and in ``info`` which files were read and how many rows each set has. Modules: ``registry``
(``register_source``, ``load_source``), ``files`` (finding and reading splits), ``qa`` (question/answer rows in
chat or plain form), ``tofu``, ``muse``, ``cifar``. Every loader's ``info`` has the same keys: ``source``,
``subset``, ``files``, ``counts``, ``missing``, ``options``. See ``docs/benchmarks.md``.
"""

from __future__ import annotations

from . import cifar, muse, tofu  # noqa: F401  (each registers its loader)
from .registry import SOURCES, BenchmarkData, load_source, register_source, source_options

__all__ = ["SOURCES", "BenchmarkData", "load_source", "register_source", "source_options"]
